// DOM pieces of the room page: video tiles, the participant list and the chat log.

// The reactions the room page offers (and shows: others' data under the `reaction`
// topic that is none of these is ignored), and how long one stays on a tile.
export const REACTIONS = ['👍', '👏', '❤️', '😂', '🎉', '😮'];
const REACTION_MS = 4000;

// Signal bars for each connection quality.
const QUALITY_BARS = { excellent: '▂▄▆█', good: '▂▄▆', poor: '▂', lost: '✕' };

export class Stage {
  constructor(element) {
    this.element = element;
    this.tiles = new Map(); // participant id -> { tile, video, stream, label }
  }

  tile(id, { local = false } = {}) {
    let entry = this.tiles.get(id);
    if (entry) return entry;
    const tile = document.createElement('div');
    tile.className = `tile ${local ? 'local' : 'remote'}${id === this.speaker ? ' speaking' : ''}`;
    tile.dataset.participant = id;
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = local;
    if (this.sinkId && !local) video.setSinkId?.(this.sinkId).catch(() => {});
    const label = document.createElement('span');
    label.className = 'label';
    const signal = document.createElement('span');
    signal.className = 'signal';
    tile.append(video, label, signal);
    // A click pins a participant's tile (or a shared screen) across the stage, and
    // another click unpins it.
    if (!local) {
      tile.title = 'Click to pin';
      tile.addEventListener('click', () => this.pin(this.pinned === tile.dataset.key ? null : tile.dataset.key));
    }
    tile.dataset.key = id;
    const stream = new MediaStream();
    video.srcObject = stream;
    entry = { tile, video, stream, label, signal };
    this.tiles.set(id, entry);
    this.#showQuality(entry, this.qualities?.get(id));
    if (local) this.element.prepend(tile); else this.element.append(tile);
    this.#layout();
    return entry;
  }

  setName(id, name) { this.tile(id).label.textContent = name; }

  // Where every tile's sound plays (an `audiooutput` device id), tiles made later too.
  async setSink(deviceId) {
    this.sinkId = deviceId;
    const remote = [...this.tiles.values()].filter(({ video }) => !video.muted && video.setSinkId);
    await Promise.all(remote.map(({ video }) => video.setSinkId(deviceId)));
  }

  // A participant's shared screen: its own tile, across the whole stage.
  showScreen(id, name, track) {
    const key = `screen:${id}`;
    let entry = this.tiles.get(key);
    if (!entry) {
      entry = this.tile(key);
      entry.tile.className = 'tile screen';
      entry.tile.dataset.participant = id;
      this.element.prepend(entry.tile);
    }
    entry.label.textContent = `${name}'s screen`;
    this.addTrack(key, track);
    return entry;
  }

  hideScreen(id) { this.remove(`screen:${id}`); }

  // Shows one tile (`key`: a participant id, or `screen:<id>`) filling the stage and
  // the others small in a strip beneath it; null shows them all alike again. Each
  // video's shown size goes to the server, so the pinned one gets the high layer.
  pin(key) {
    this.pinned = key && this.tiles.has(key) ? key : null;
    for (const [tileKey, entry] of this.tiles) {
      entry.tile.classList.toggle('pinned', tileKey === this.pinned);
      if (!entry.tile.classList.contains('local')) entry.tile.title = tileKey === this.pinned ? 'Click to unpin' : 'Click to pin';
    }
    this.#layout();
  }

  // Outlines the tile of whoever is speaking (null: nobody).
  setSpeaker(id) {
    this.speaker = id; // tiles made later start outlined too
    for (const [tileId, entry] of this.tiles) entry.tile.classList.toggle('speaking', tileId === id);
  }

  // How well a participant's connection carries media: bars on its tile, shown once
  // it is less than excellent.
  setQuality(id, quality) {
    this.qualities ??= new Map(); // tiles made later show it too
    this.qualities.set(id, quality);
    const entry = this.tiles.get(id);
    if (entry) this.#showQuality(entry, quality);
  }

  #showQuality({ tile, signal }, quality = 'excellent') {
    tile.dataset.quality = quality;
    signal.textContent = QUALITY_BARS[quality] ?? '';
    signal.title = `Connection: ${quality}`;
    signal.hidden = quality === 'excellent';
  }

  setVideoOff(id, off) { this.tiles.get(id)?.tile.classList.toggle('video-off', off); }

  // A reaction floats up from the participant's tile for a few seconds.
  showReaction(id, emoji) {
    const entry = this.tiles.get(id);
    if (!entry) return;
    const reaction = document.createElement('span');
    reaction.className = 'reaction';
    reaction.textContent = emoji;
    entry.tile.append(reaction);
    setTimeout(() => reaction.remove(), REACTION_MS);
  }

  // A raised hand shows on the participant's tile.
  setHand(id, raised) { this.tiles.get(id)?.tile.classList.toggle('hand', raised); }

  // A participant whose connection was lost keeps its tile, marked, while it comes back.
  setReconnecting(id, on) { this.tiles.get(id)?.tile.classList.toggle('reconnecting', on); }

  // The tile of `from` is now `to`'s (a participant back under a new id), in its place.
  rename(from, to) {
    const entry = this.tiles.get(from);
    if (!entry || this.tiles.has(to)) {
      this.remove(from);
      return;
    }
    this.tiles.delete(from);
    this.tiles.set(to, entry);
    entry.tile.dataset.participant = to;
    entry.tile.dataset.key = to;
    if (this.pinned === from) this.pinned = to;
    this.#showQuality(entry, this.qualities?.get(to));
    entry.tile.classList.toggle('speaking', to === this.speaker);
  }

  addTrack(id, track) {
    const entry = this.tile(id);
    for (const old of entry.stream.getTracks()) if (old.kind === track.kind) entry.stream.removeTrack(old);
    entry.stream.addTrack(track);
    entry.video.play().catch(() => {});
  }

  removeTrack(id, track) { if (track) this.tiles.get(id)?.stream.removeTrack(track); }

  hasTracks(id) { return (this.tiles.get(id)?.stream.getTracks().length ?? 0) > 0; }

  // Every tile goes (the call moved, or ended).
  clear() {
    for (const entry of this.tiles.values()) entry.tile.remove();
    this.tiles.clear();
    this.pinned = null;
    this.#layout();
  }

  remove(id) {
    this.tiles.get(id)?.tile.remove();
    this.tiles.delete(id);
    if (this.pinned === id) this.pin(null);
    else this.#layout();
  }

  #layout() {
    if (this.pinned && !this.tiles.has(this.pinned)) this.pinned = null;
    this.element.className = this.pinned ? 'pinned' : `count-${Math.min(this.tiles.size, 9)}`;
  }
}

// The people list. Hosts also see who waits to be admitted, and controls per person.
function button(label, onClick) {
  const b = document.createElement('button');
  b.textContent = label;
  b.className = 'small';
  b.type = 'button';
  b.addEventListener('click', onClick);
  return b;
}

// Raised hands in the order they went up: participant id -> place in line (from 1).
function handQueue(participants) {
  const raised = [...participants.values()].filter((p) => p.hand_raised_at)
    .sort((a, b) => a.hand_raised_at - b.hand_raised_at);
  return new Map(raised.map((p, i) => [p.id, i + 1]));
}

export function renderParticipants(list, participants, self, knocks, act) {
  const isHost = self.role === 'host';
  const hands = handQueue(participants);
  const waiting = isHost ? [...knocks.values()].map((p) => {
    const item = document.createElement('li');
    item.className = 'knock';
    item.dataset.participant = p.id;
    const name = document.createElement('span');
    name.textContent = `${p.name} is waiting`;
    item.append(name, button('Admit', () => act('admit', p.id)), button('Deny', () => act('deny', p.id)));
    return item;
  }) : [];
  const people = [...participants.values()].map((p) => {
    const item = document.createElement('li');
    item.dataset.participant = p.id;
    const name = document.createElement('span');
    const phone = p.kind === 'sip';
    name.textContent = `${p.name}${p.id === self.id ? ' (you)' : ''}${p.role === 'host' ? ' · host' : ''}${phone ? ' · by phone' : ''}${p.reconnecting ? ' · reconnecting…' : ''}`;
    const state = document.createElement('span');
    state.textContent = `${p.audio_muted ? '🔇' : '🎤'} ${phone ? '📞' : p.video_muted ? '🚫' : '📷'}`;
    item.append(name, state);
    const place = hands.get(p.id);
    if (place) {
      const hand = document.createElement('span');
      hand.className = 'hand';
      hand.title = 'Hand raised';
      hand.textContent = `✋ ${place}`;
      item.append(hand);
      if (isHost && p.id !== self.id && !p.reconnecting) item.append(button('Lower hand', () => act('lower_hand', p.id)));
    }
    if (isHost && p.id !== self.id && !p.reconnecting) {
      item.append(
        button(p.audio_blocked ? 'Unmute' : 'Mute', () => act(p.audio_blocked ? 'unmute' : 'mute', p.id, { kind: 'audio' })),
        button(p.video_blocked ? 'Allow video' : 'Stop video', () => act(p.video_blocked ? 'unmute' : 'mute', p.id, { kind: 'video' })),
        button('Remove', () => act('remove', p.id)),
      );
    }
    return item;
  });
  list.replaceChildren(...waiting, ...people);
}

// The spacing the slow-mode switch sets between a participant's chat messages.
const SLOW_MODE_SECS = 30;

// Hosts' switches for the whole room: the lock, screen sharing, who may chat, muting
// everyone but the hosts, lowering every raised hand, recording, and slow mode.
export function renderRoomControls(box, state, isHost, act) {
  box.hidden = !isHost;
  if (!isHost) {
    box.replaceChildren();
    return;
  }
  const locked = state.locked === true;
  const screens = state.allow_screen_share !== false;
  const chat = state.allow_chat !== false;
  const lockButton = button(locked ? 'Unlock room' : 'Lock room', () => act(locked ? 'unlock' : 'lock'));
  const screenButton = button(screens ? 'Stop screen sharing' : 'Allow screen sharing',
    () => act(screens ? 'deny_screen_share' : 'allow_screen_share'));
  const chatButton = button(chat ? 'Chat: hosts only' : 'Let everyone chat', () => act(chat ? 'deny_chat' : 'allow_chat'));
  const muteButton = button('Mute everyone', () => act('mute_all', '', { kind: 'audio' }));
  lockButton.dataset.control = 'lock';
  screenButton.dataset.control = 'screen-share';
  chatButton.dataset.control = 'chat';
  const handsButton = button('Lower all hands', () => act('lower_all_hands'));
  muteButton.dataset.control = 'mute-all';
  handsButton.dataset.control = 'lower-hands';
  const recording = state.recording === true;
  const recordButton = button(recording ? 'Stop recording' : 'Record',
    () => act(recording ? 'stop_recording' : 'start_recording'));
  recordButton.dataset.control = 'record';
  const slow = state.chat_slow_mode_secs || 0;
  const slowButton = button(slow ? 'Slow mode off' : `Slow mode (${SLOW_MODE_SECS} s)`,
    () => act('slow_mode', '', { seconds: slow ? 0 : SLOW_MODE_SECS }));
  slowButton.dataset.control = 'slow-mode';
  box.replaceChildren(lockButton, screenButton, chatButton, muteButton, handsButton, recordButton, slowButton);
}

// Emoji shortcodes people type, shown as the emoji.
const EMOJI = {
  ':)': '🙂', ':-)': '🙂', ':(': '🙁', ':D': '😄', ';)': '😉', '<3': '❤️',
  ':smile:': '😄', ':laughing:': '😆', ':wink:': '😉', ':heart:': '❤️', ':thumbsup:': '👍', ':+1:': '👍',
  ':thumbsdown:': '👎', ':clap:': '👏', ':tada:': '🎉', ':fire:': '🔥', ':eyes:': '👀', ':wave:': '👋',
  ':rocket:': '🚀', ':100:': '💯', ':thinking:': '🤔', ':cry:': '😢', ':ok_hand:': '👌', ':pray:': '🙏',
};
const EMOJI_PATTERN = new RegExp(
  `(^|\\s)(${Object.keys(EMOJI).map((k) => k.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})(?=\\s|$)`, 'g');
const LINK_PATTERN = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;

// Message text as DOM nodes: links become anchors (http and https only), shortcodes
// become emoji; everything else stays text (never parsed as HTML).
export function richText(text) {
  const nodes = [];
  let at = 0;
  for (const match of text.matchAll(LINK_PATTERN)) {
    if (match.index > at) nodes.push(document.createTextNode(withEmoji(text.slice(at, match.index))));
    const link = document.createElement('a');
    link.href = match[0];
    link.textContent = match[0];
    link.target = '_blank';
    link.rel = 'noopener noreferrer';
    nodes.push(link);
    at = match.index + match[0].length;
  }
  if (at < text.length) nodes.push(document.createTextNode(withEmoji(text.slice(at))));
  return nodes;
}

function withEmoji(text) {
  return text.replace(EMOJI_PATTERN, (_, space, code) => space + EMOJI[code]);
}

function setText(element, message) {
  element.classList.toggle('deleted', !!message.deleted);
  if (message.deleted) element.replaceChildren('message deleted');
  else if (message.kind === 'file') element.replaceChildren(...fileNodes(message));
  else element.replaceChildren(...richText(message.text));
}

function fileSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

// A shared file: a download link (signed for this member), and a preview of pictures.
function fileNodes(message) {
  const link = document.createElement('a');
  link.href = message.download_url;
  link.textContent = `📎 ${message.text} (${fileSize(message.file_size)})`;
  link.className = 'file';
  if (!message.file_type.startsWith('image/')) return [link];
  const preview = document.createElement('img');
  preview.src = message.download_url;
  preview.alt = message.text;
  preview.className = 'preview';
  return [link, preview];
}

// A line in the chat from the room itself, not from anyone in it.
export function chatNotice(log, text) {
  const item = document.createElement('li');
  item.className = 'notice';
  item.textContent = text;
  log.append(item);
  log.scrollTop = log.scrollHeight;
}

// A message of this member's that was not sent, kept with what went wrong so that
// nothing typed is lost: `retry()` sends it again (resolving once it is stored, when
// the line goes: the stored message comes in the chat as any other does); Discard
// drops the line.
export function failedChat(log, text, error, retry) {
  const item = document.createElement('li');
  item.className = 'failed';
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  const note = document.createElement('span');
  note.className = 'note';
  const bar = document.createElement('span');
  bar.className = 'actions';
  const show = (err) => { note.textContent = `Not sent: ${err.message}`; };
  const again = button('Retry', () => {
    again.disabled = true;
    note.textContent = 'Sending…';
    retry().then(() => item.remove(), (err) => { show(err); again.disabled = false; });
  });
  bar.append(again, button('Discard', () => item.remove()));
  show(error);
  item.append(body, note, bar);
  log.append(item);
  log.scrollTop = log.scrollHeight;
}

// Shows one chat entry in `log` (kept in seq order): a message, or an edit or delete
// of one already shown. `actions` decides which buttons a message gets:
// { selfId, isHost, isMine(message), reply(message), edit(message), remove(message) }.
export function appendChat(log, message, actions = {}) {
  if (message.kind === 'edit' || message.kind === 'delete') {
    const item = log.querySelector(`li[data-seq="${message.target_seq}"]`);
    if (!item) return;
    const text = item.querySelector('.text');
    if (message.kind === 'delete') {
      setText(text, { deleted: true });
      item.querySelector('.actions')?.remove();
    } else {
      setText(text, message);
      item.querySelector('.author').textContent = `${item.dataset.name} (edited)`;
    }
    return;
  }
  const item = document.createElement('li');
  item.dataset.seq = message.seq;
  item.dataset.name = message.name;
  const author = document.createElement('span');
  author.className = 'author';
  author.textContent = message.edited ? `${message.name} (edited)` : message.name;
  item.append(author);
  if (message.reply_to) {
    const quoted = log.querySelector(`li[data-seq="${message.reply_to}"]`);
    const quote = document.createElement('span');
    quote.className = 'reply';
    quote.textContent = quoted ? `↪ ${quoted.dataset.name}: ${quoted.querySelector('.text').textContent.slice(0, 80)}` : '↪ an earlier message';
    item.append(quote);
  }
  const text = document.createElement('span');
  text.className = 'text';
  setText(text, message);
  item.append(text);
  if (!message.deleted && actions.selfId) {
    const mine = actions.isMine ? actions.isMine(message) : message.participant_id === actions.selfId;
    const bar = document.createElement('span');
    bar.className = 'actions';
    bar.append(button('Reply', () => actions.reply?.(message)));
    if (mine && message.kind !== 'file') bar.append(button('Edit', () => actions.edit?.(message)));
    if (mine || actions.isHost) bar.append(button('Delete', () => actions.remove?.(message)));
    item.append(bar);
  }
  // In seq order: live entries go last, earlier pages go first.
  const next = [...log.children].find((other) => Number(other.dataset.seq) > message.seq);
  log.insertBefore(item, next || null);
  if (!message.earlier) log.scrollTop = log.scrollHeight;
}
