// DOM pieces of the room page: video tiles, the participant list and the chat log.

export class Stage {
  constructor(element) {
    this.element = element;
    this.tiles = new Map(); // participant id -> { tile, video, stream, label }
  }

  tile(id, { local = false } = {}) {
    let entry = this.tiles.get(id);
    if (entry) return entry;
    const tile = document.createElement('div');
    tile.className = `tile ${local ? 'local' : 'remote'}`;
    tile.dataset.participant = id;
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = local;
    const label = document.createElement('span');
    label.className = 'label';
    tile.append(video, label);
    const stream = new MediaStream();
    video.srcObject = stream;
    entry = { tile, video, stream, label };
    this.tiles.set(id, entry);
    if (local) this.element.prepend(tile); else this.element.append(tile);
    this.#layout();
    return entry;
  }

  setName(id, name) { this.tile(id).label.textContent = name; }

  setVideoOff(id, off) { this.tiles.get(id)?.tile.classList.toggle('video-off', off); }

  addTrack(id, track) {
    const entry = this.tile(id);
    for (const old of entry.stream.getTracks()) if (old.kind === track.kind) entry.stream.removeTrack(old);
    entry.stream.addTrack(track);
    entry.video.play().catch(() => {});
  }

  removeTrack(id, track) { if (track) this.tiles.get(id)?.stream.removeTrack(track); }

  remove(id) {
    this.tiles.get(id)?.tile.remove();
    this.tiles.delete(id);
    this.#layout();
  }

  #layout() {
    this.element.className = `count-${Math.min(this.tiles.size, 9)}`;
  }
}

export function renderParticipants(list, participants, selfId) {
  list.replaceChildren(...[...participants.values()].map((p) => {
    const item = document.createElement('li');
    item.dataset.participant = p.id;
    const name = document.createElement('span');
    name.textContent = p.id === selfId ? `${p.name} (you)` : p.name;
    const state = document.createElement('span');
    state.textContent = `${p.audio_muted ? '🔇' : '🎤'} ${p.video_muted ? '🚫' : '📷'}`;
    item.append(name, state);
    return item;
  }));
}

export function appendChat(log, message) {
  const item = document.createElement('li');
  item.dataset.seq = message.seq;
  const author = document.createElement('span');
  author.className = 'author';
  author.textContent = message.name;
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = message.text;
  item.append(author, text);
  log.append(item);
  log.scrollTop = log.scrollHeight;
}
