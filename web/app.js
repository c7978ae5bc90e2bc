// The room page: /r/<room>?name=<display name>[&token=<access token>][&tenant=<id>]
// [&relay=1 to force TURN relay][&codec=vp8|h264: the camera's codec]. A link with
// neither a name nor a token (a room's address, shared) first shows who is about to
// join: the camera, a name to give, the microphone and camera to come in with.
import { ConferClient } from './sdk.js';
import { LocalMedia } from './local_media.js';
import { prejoin } from './prejoin.js';
import { Stage, renderParticipants, renderRoomControls, appendChat, chatNotice, failedChat, REACTIONS } from './ui.js';

const room = decodeURIComponent(location.pathname.split('/').pop());
const params = new URLSearchParams(location.search);
// With a token, the name in it wins; the page only asks when there is neither.
const token = params.get('token') || '';
const askName = !params.get('name') && !token;
const name = params.get('name') || 'Guest';

const $ = (id) => document.getElementById(id);
const stage = new Stage($('stage'));
const status = (text) => { $('status').textContent = text; };
$('room-name').textContent = room;

const client = new ConferClient({
  room, name, token,
  tenant: params.get('tenant') || '',
  iceTransportPolicy: params.get('relay') === '1' ? 'relay' : 'all',
  videoCodec: params.get('codec') || '',
});
window.conferClient = client;

// Whose hands are up, as last seen: a hand is told of once, when it goes up.
const handsUp = new Set();
const everyone = () => new Map([[client.self.id, client.self], ...client.participants]);
const refreshPeople = () => {
  renderParticipants($('participants'), everyone(), client.self, client.knocks, hostAction);
  refreshRoomControls();
};
const hostAction = (action, id, extra) => client.host(action, id, extra).catch((err) => status(`Error: ${err.message}`));

client.addEventListener('waiting', () => status('Waiting for a host to let you in…'));
client.addEventListener('knock', refreshPeopleIfJoined);
client.addEventListener('knock-resolved', refreshPeopleIfJoined);
// Whether the chat was open to everyone when last seen: a change is noted in the chat.
let chatOpen = null;
// Whether the room was being recorded when last seen: a change is noted in the chat.
let recording = null;
// The room's slow mode when last seen (seconds between messages; 0: off).
let slowMode = null;
client.addEventListener('room-state', ({ detail }) => {
  $('room-name').textContent = `${room}${detail.locked ? ' 🔒' : ''}`;
  const open = detail.allow_chat !== false;
  if (chatOpen !== null && open !== chatOpen) {
    chatNotice($('messages'), open ? 'A host opened the chat to everyone' : 'A host kept the chat to hosts');
  }
  chatOpen = open;
  const slow = detail.chat_slow_mode_secs || 0;
  if (slowMode !== null && slow !== slowMode) {
    chatNotice($('messages'), slow ? `A host turned on slow mode: one message every ${slow} s` : 'A host turned off slow mode');
  }
  slowMode = slow;
  showRecording(detail);
  refreshRoomControls();
});

// Everyone sees while the room is recorded, and is told when that starts and stops.
function showRecording(state) {
  const now = state.recording === true;
  $('recording-badge').hidden = !now;
  if (recording !== null && now !== recording) {
    chatNotice($('messages'), now ? 'Recording started' : 'Recording stopped');
  } else if (recording === null && now) {
    chatNotice($('messages'), 'This room is being recorded');
  }
  recording = now;
}

// The hosts' room switches, and whether this member may post in the chat now.
function refreshRoomControls() {
  const state = client.roomState || {};
  const isHost = client.self?.role === 'host';
  renderRoomControls($('room-controls'), state, isHost, (action, id, extra) => hostAction(action, id, extra));
  const mayPost = isHost || state.allow_chat !== false;
  const input = $('chat-input');
  input.disabled = !mayPost;
  const slow = state.chat_slow_mode_secs || 0;
  input.placeholder = !mayPost ? 'Only hosts can send messages now'
    : slow && !isHost ? `Slow mode: one message every ${slow} s` : 'Message everyone';
  $('chat-file').disabled = !mayPost;
  $('chat-form').querySelector('button[type="submit"]').disabled = !mayPost;
}
// A caller dialled in over SIP is shown as one.
function tileName(p) { return p.kind === 'sip' ? `📞 ${p.name}` : p.name; }
function refreshPeopleIfJoined() { if (client.pc) refreshPeople(); }

client.addEventListener('joined', () => {
  chatOpen = client.roomState.allow_chat !== false;
  slowMode = client.roomState.chat_slow_mode_secs || 0;
  showRecording(client.roomState);
  stage.tile(client.self.id, { local: true });
  stage.setName(client.self.id, `${client.self.name} (you)`);
  $('connection-notice').hidden = true; // a new connection is rated afresh
  showOwnHand();
  for (const p of client.participants.values()) {
    stage.tile(p.id);
    stage.setName(p.id, tileName(p));
    stage.setVideoOff(p.id, p.video_muted);
    stage.setHand(p.id, !!p.hand_raised_at);
    if (p.hand_raised_at) handsUp.add(p.id);
  }
  refreshPeople();
  status('Connected');
});
client.addEventListener('participant-joined', ({ detail: p }) => {
  stage.tile(p.id);
  stage.setReconnecting(p.id, false);
  stage.setName(p.id, tileName(p));
  stage.setVideoOff(p.id, p.video_muted);
  stage.setHand(p.id, !!p.hand_raised_at);
  // Back after a lost connection with its hand up: nothing new to tell.
  if (p.hand_raised_at) handsUp.add(p.id);
  refreshPeople();
});
// Someone's connection was lost: its tile stays, marked, until it is back.
client.addEventListener('participant-reconnecting', ({ detail: p }) => {
  stage.setReconnecting(p.id, true);
  stage.hideScreen(p.id);
  refreshPeople();
});
client.addEventListener('participant-left', ({ detail: { id, returnedAs } }) => {
  // Back under a new id: the same tile, in the same place.
  if (returnedAs) stage.rename(id, returnedAs);
  else stage.remove(id);
  stage.hideScreen(id);
  refreshPeople();
});
client.addEventListener('participant-updated', ({ detail: p }) => {
  const own = client.self && p.id === client.self.id;
  if (own) client.self = p;
  // Only a tile already there: an update may be of someone waiting or just gone.
  if (stage.tiles.has(p.id)) stage.setName(p.id, own ? `${p.name} (you)` : tileName(p));
  stage.setVideoOff(p.id, p.video_muted);
  stage.setHand(p.id, !!p.hand_raised_at);
  if (own) showOwnHand();
  else noteHand(p);
  if (own) media.watchMutedSpeech();
  refreshPeople();
});
// Hosts are told in the chat when someone's hand goes up (it also shows on the tile
// and in the people list, which may be out of sight).
function noteHand(p) {
  if (!p.hand_raised_at) {
    handsUp.delete(p.id);
    return;
  }
  if (handsUp.has(p.id)) return;
  handsUp.add(p.id);
  if (client.self?.role === 'host') chatNotice($('messages'), `✋ ${p.name} raised a hand`);
}
// The hand button says what pressing it does: up, or (raised, by you or lowered by a host) down.
function showOwnHand() {
  const raised = !!client.self?.hand_raised_at;
  const button = $('raise-hand');
  button.setAttribute('aria-pressed', String(raised));
  button.textContent = raised ? 'Lower hand' : 'Raise hand';
  stage.setHand(client.self.id, raised);
}
client.addEventListener('track', ({ detail }) => {
  if (detail.source === 'screen_share') {
    const name = client.participants.get(detail.participantId)?.name || 'Someone';
    watchSize(detail.mid, stage.showScreen(detail.participantId, name, detail.track).video);
    return;
  }
  stage.addTrack(detail.participantId, detail.track);
  if (detail.kind === 'video') watchSize(detail.mid, stage.tile(detail.participantId).video);
});
client.addEventListener('track-ended', ({ detail }) => {
  if (detail.kind === 'video') unwatchSize(detail.mid);
  if (detail.source === 'screen_share') {
    stage.hideScreen(detail.participantId);
    return;
  }
  stage.removeTrack(detail.participantId, detail.track);
  // Media of someone the room does not list (let go while its media connection was
  // still at the SFU): its tile goes with its last track, as no leave will come.
  const known = client.participants.has(detail.participantId);
  if (!known && !stage.hasTracks(detail.participantId)) stage.remove(detail.participantId);
});
client.addEventListener('screen-share', ({ detail }) => {
  const button = $('share-screen');
  button.setAttribute('aria-pressed', String(detail.active));
  button.textContent = detail.active ? 'Stop sharing' : 'Share screen';
});
// Chat: a reply or an edit in progress changes what the form sends.
let chatContext = null; // { reply: message } | { edit: message }
function setChatContext(context) {
  chatContext = context;
  const label = $('chat-context');
  label.hidden = !context;
  label.textContent = !context ? '' : context.edit ? 'Editing your message' : `Replying to ${context.reply.name}`;
  if (context?.edit) $('chat-input').value = context.edit.text;
  $('chat-input').focus();
}
const chatActions = {
  get selfId() { return client.self?.id; },
  get isHost() { return client.self?.role === 'host'; },
  isMine: (message) => client.isOwn(message.participant_id),
  reply: (message) => setChatContext({ reply: message }),
  edit: (message) => setChatContext({ edit: message }),
  remove: (message) => client.deleteChat(message.seq).catch((err) => status(`Error: ${err.message}`)),
};
client.addEventListener('chat', ({ detail }) => {
  appendChat($('messages'), detail, chatActions);
  $('chat-earlier').hidden = !client.chatMore;
});
$('chat-file').addEventListener('change', (event) => {
  const file = event.target.files[0];
  event.target.value = '';
  if (file) client.shareFile(file).catch((err) => status(`File: ${err.message}`));
});
$('chat-earlier').addEventListener('click', () => {
  client.loadEarlierChat().then(() => { $('chat-earlier').hidden = !client.chatMore; })
    .catch((err) => status(`Error: ${err.message}`));
});
client.addEventListener('active-speaker', ({ detail }) => stage.setSpeaker(detail.participantId));
// Bars on the tile of someone whose connection is struggling; told plainly when it is
// one's own, so nobody blames the call (or the others) for it.
client.addEventListener('connection-quality', ({ detail: { participantId, quality } }) => {
  stage.setQuality(participantId, quality);
  if (participantId !== client.self?.id) return;
  const notice = $('connection-notice');
  notice.dataset.quality = quality;
  notice.hidden = quality === 'excellent' || quality === 'good';
  notice.textContent = quality === 'lost' ? 'Your audio and video are not reaching the call' : 'Your connection is unstable: others may not see or hear you well';
});
// Why the call ended, when the server said; the connection closing after it says no more.
let ended = false;
const ENDINGS = {
  removed: 'A host removed you from the call',
  replaced: 'You joined this call from another tab or device',
};
client.addEventListener('error', ({ detail }) => {
  if (ENDINGS[detail.code]) ended = true;
  status(ENDINGS[detail.code] ?? `Error: ${detail.message}`);
});
client.addEventListener('closed', () => { if (!ended) status('Disconnected'); });
// Moved to another media server, or the connection was lost and is joined again:
// everyone comes back under new ids, so the stage starts over; the camera (and a
// shared screen) go on, and the chat fills in what was said meanwhile.
client.addEventListener('reconnecting', ({ detail }) => {
  status(detail.reason === 'node_draining' ? 'Moving the call to another server…' : 'Connection lost; reconnecting…');
  stage.clear();
});
client.addEventListener('reconnected', () => {
  media.joined();
  status('Connected');
});

// Each remote video's shown size goes to the server, which forwards the simulcast
// layer that fits it, and nothing while it is hidden (zero size, or the page is).
const watched = new Map(); // mid -> { element, timer }
const sizeObserver = new ResizeObserver((entries) => {
  for (const entry of entries) {
    for (const [mid, w] of watched) if (w.element === entry.target) reportSize(mid);
  }
});
function watchSize(mid, element) {
  unwatchSize(mid);
  watched.set(mid, { element, timer: null });
  sizeObserver.observe(element);
  reportSize(mid);
}
function unwatchSize(mid) {
  const w = watched.get(mid);
  if (!w) return;
  clearTimeout(w.timer);
  watched.delete(mid);
  if (![...watched.values()].some((other) => other.element === w.element)) sizeObserver.unobserve(w.element);
}
function reportSize(mid) {
  const w = watched.get(mid);
  if (!w) return;
  clearTimeout(w.timer);
  w.timer = setTimeout(() => {
    const box = w.element.getBoundingClientRect();
    const scale = window.devicePixelRatio || 1;
    const hidden = document.hidden || box.width === 0 || box.height === 0;
    client.setTrackSettings(mid, { width: box.width * scale, height: box.height * scale, hidden });
  }, 100);
}
document.addEventListener('visibilitychange', () => { for (const mid of watched.keys()) reportSize(mid); });

$('chat-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('chat-input');
  const text = input.value.trim();
  const context = chatContext;
  setChatContext(null);
  input.value = '';
  if (!text) return;
  if (context?.edit) {
    // An edit that fails goes back in the box, as it was.
    client.editChat(context.edit.seq, text).catch((err) => {
      status(`Chat: ${err.message}`);
      if (!input.value) setChatContext({ edit: { ...context.edit, text } });
    });
    return;
  }
  const replyTo = context?.reply?.seq || 0;
  client.sendChat(text, { replyTo }).catch((err) => {
    // Kept in the chat as not sent: sent again with the same client id, so a try
    // that was stored after all is not stored twice.
    failedChat($('messages'), text, err, () => client.sendChat(text, { replyTo, clientId: err.clientId }));
  });
});

// Speaking while muted (by oneself or a host) is pointed out, briefly.
function showMutedNotice() {
  const notice = $('muted-notice');
  notice.hidden = false;
  clearTimeout(notice.hideTimer);
  notice.hideTimer = setTimeout(() => { notice.hidden = true; }, 4000);
}

// The microphone and camera: the mute buttons, the Devices panel, missing devices.
const media = new LocalMedia({ client, stage, $, onSpeakingMuted: showMutedNotice });
$('share-screen').addEventListener('click', () => {
  const sharing = client.screenTrack != null;
  (sharing ? client.stopScreenShare() : client.shareScreen()).catch((err) => status(`Screen share: ${err.message}`));
});
// Reactions go to everyone as data under the `reaction` topic, and show on one's own
// tile at once.
for (const emoji of REACTIONS) {
  const button = document.createElement('button');
  button.className = 'reaction-button';
  button.textContent = emoji;
  button.title = `React ${emoji}`;
  button.addEventListener('click', () => {
    if (!client.self) return;
    stage.showReaction(client.self.id, emoji);
    client.publishData('reaction', emoji).catch((err) => status(`Reaction: ${err.message}`));
  });
  $('reactions').append(button);
}
client.addEventListener('data', ({ detail }) => {
  if (detail.topic === 'reaction' && REACTIONS.includes(detail.payload) && detail.from_participant_id) {
    stage.showReaction(detail.from_participant_id, detail.payload);
  }
});
$('raise-hand').addEventListener('click', () => {
  const raised = $('raise-hand').getAttribute('aria-pressed') !== 'true';
  client.raiseHand(raised).catch((err) => status(`Raise hand: ${err.message}`));
});
$('leave').addEventListener('click', () => {
  client.leave();
  stage.element.replaceChildren();
  status('You left the call');
});

// Joins with whatever devices could be opened (none at all: listening and watching).
async function start() {
  const local = await media.start();
  if (askName) {
    status('Ready to join');
    client.name = await prejoin({ $, client, local, room });
    status('Connecting…');
  }
  for (;;) {
    try {
      await client.join(local);
      media.joined();
      return;
    } catch (err) {
      if (err.code !== 'password_required' && err.code !== 'password_invalid') throw err;
      const password = prompt(err.code === 'password_invalid' ? 'Wrong password. Room password:' : 'Room password:');
      if (!password) throw err;
      client.password = password;
      client.ws?.close();
    }
  }
}

try {
  await start();
} catch (err) {
  status(err.code === 'admission_denied' ? 'A host did not let you in' : `Could not join: ${err.message}`);
  console.error(err);
}
