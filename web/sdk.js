// Confer JS SDK: join a room, publish camera and microphone, receive everyone else.
//
//   import { ConferClient } from '/static/sdk.js';
//   const client = new ConferClient({ room: 'standup', name: 'Ada', token });
//   client.addEventListener('track', (e) => attach(e.detail.participantId, e.detail.track));
//   await client.join(await navigator.mediaDevices.getUserMedia({ audio: true, video: true }));
//
// The stream may lack a microphone or a camera (none found, or not allowed), or be
// empty: the call is joined all the same, and `setTrack` sends one later, or another
// device, or a processed track, in place of what goes out (never renegotiating).
//
// The session is negotiated once: the offer publishes the local tracks (sendonly) and
// opens receive slots (recvonly). The server assigns other participants' tracks to
// slots with `track_assigned`, so people joining and leaving never renegotiate.
// Camera video goes out as three simulcast layers (quarter, half and full size); tell
// the server how large each received video is shown with `setTrackSettings` and it
// forwards the layer that fits (nothing while hidden). One more send m-line, marked
// `a=content:slides`, is kept for a shared screen (`shareScreen` / `stopScreenShare`).
// Events: waiting, joined, active-speaker, participant-joined, participant-left
// (`reason`: left, connection_lost, or returned with `returnedAs`, the id it came back
// under), participant-reconnecting (its connection was lost: it stays listed, with
// `reconnecting`, until it comes back or the time it had runs out), participant-updated
// (mute state, name, role, host blocks, `hand_raised_at` of a raised hand),
// connection-quality (`participantId`, `quality`: excellent, good, poor or lost, as the
// media server measures each connection, this participant's own included; see
// `qualityOf`), track, track-ended, chat, knock, knock-resolved (hosts), room-state, data, error
// (codes as in docs/signalling.md: removed, admission_denied, ...), reconnecting and
// reconnected (the call moved to another media server, or the connection to the
// server was lost and joined again, by itself; `reason`: node_draining,
// connection_lost or media_lost), closed (left, removed, or not back within
// RECONNECT_FOR_MS), local-track (`kind`, `track`: what `setTrack` now sends, null
// for nothing).

const DEFAULT_SLOTS = 8;
// How long a chat post waits for the server's answer before it fails (or, when it is
// safe to, is sent again).
const POST_ANSWER_MS = 5000;
// A lost connection is joined again after these waits, the last repeated, for as
// long as RECONNECT_FOR_MS. Requests waiting on it fail with `disconnected`, except
// chat messages, which go again (under their client id) once the room is joined again.
const RECONNECT_WAITS_MS = [1000, 2000, 4000, 8000];
const RECONNECT_FOR_MS = 120_000;
// A place kept for someone whose connection was lost goes this long after the time
// the server gave it to come back: its join may be on the way.
const HOLD_MARGIN_MS = 2000;
// After these the server is not to be joined again by itself (`replaced`: this
// identity is in the call through another connection, which a rejoin would end).
const FINAL_ERRORS = new Set(['removed', 'replaced', 'admission_denied']);
// Lowest first: the server ranks layers by the picture size it sees, this order until then.
const SIMULCAST_LAYERS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

export class ConferClient extends EventTarget {
  // `videoCodec`: 'vp8' or 'h264' to send video (the camera and a shared screen) in
  // that codec (the browser's choice when empty); subscribers get it whatever they
  // prefer, as long as their browser decodes it.
  // `leaveOnPageHide`: closing the page (or leaving it) leaves the call, so the others
  // do not keep a place for someone who is not coming back.
  // `traceparent`: an optional function returning the W3C traceparent of the app's own
  // current span (e.g. from OpenTelemetry JS); each request then carries it and the
  // server's spans for the join and offer become its children.
  constructor({ room, name, token = '', password = '', tenant = '', iceTransportPolicy = 'all', url = defaultSignalUrl(), audioSlots = DEFAULT_SLOTS, videoSlots = DEFAULT_SLOTS, simulcast = true, videoCodec = '', traceparent = null, leaveOnPageHide = true }) {
    super();
    Object.assign(this, { room, name, token, password, tenant, iceTransportPolicy, url, audioSlots, videoSlots, simulcast, videoCodec, traceparent, leaveOnPageHide });
    this.knocks = new Map(); // id -> participant waiting to be admitted (hosts only)
    this.participants = new Map(); // id -> { id, name, audio_muted, video_muted, reconnecting }
    this.held = new Map(); // id -> timer: places kept for participants whose connection was lost
    this.qualities = new Map(); // id -> connection quality, once the server rated it
    this.self = null;
    this.pc = null;
    this.ws = null;
    this.slotTracks = new Map(); // mid -> MediaStreamTrack (from ontrack)
    this.assignments = new Map(); // mid -> { participantId, kind }
    this.nextRequest = 1;
    this.pending = new Map(); // request_id -> { resolve, reject }
    this.chatSeen = new Set(); // seqs of the chat entries emitted
    this.chatFirst = 0;
    this.chatLast = 0;
    this.chatMore = false;
    this.chatLimit = null; // {per_second, burst} from `joined`: how fast this member may post
    this.chatNextAt = 0; // when the next post is on time at the steady rate (performance.now())
    this.chatPosts = Promise.resolve(); // the last chat post, settled: the next one goes after it
    this.joinedOnce = false; // a lost connection is joined again only after a join
    this.done = false; // left, or removed: never joined again by itself
    this.rejoining = false;
    this.rejoinTicket = null; // from the last `joined`: shown when joining again after a lost connection
    this.ownIds = new Set(); // this participant's ids through its connections so far
    this.mutedKinds = { audio: false, video: false }; // as this participant last set them
  }

  // Joins in two steps so the peer connection can use the ICE servers (TURN) the
  // server hands out: `join` -> `joined` (or `waiting` until a host admits), then
  // `offer` -> `answer`.
  async join(localStream = new MediaStream()) {
    this.localStream = localStream;
    await this.#connect();
    // After a lost connection, the ticket of the last join brings this participant
    // back as it was (name, role, host blocks; past the lock and the waiting room).
    const rejoin = this.rejoinTicket || '';
    const joined = await this.request({ join: { room: this.room, name: this.name, token: this.token, password: this.password || '', tenant: this.tenant || '', chat_batches: true, participant_batches: true, rejoin } });
    this.rejoinTicket = joined.rejoin || null;
    // Back as the same person, what it sent through its earlier connections is still
    // its own (the server lets it edit and delete those); otherwise only the new one's.
    if (this.self?.identity !== joined.you.identity) this.ownIds.clear();
    this.ownIds.add(joined.you.id);
    this.self = joined.you;
    this.roomState = joined.room_state || {};
    this.chatLimit = joined.chat_limit || null;
    // After a reconnect, everything since the last message seen fills the gap.
    const lastSeen = this.chatLast;
    const gap = lastSeen && (!joined.chat_history.length || joined.chat_history[0].seq > lastSeen + 1);
    if (!lastSeen) this.chatMore = joined.chat_history_more;
    for (const message of joined.chat_history) this.#takeChat(message);
    if (gap) this.#chatAfter(lastSeen).catch(() => {});
    for (const p of joined.participants) this.participants.set(p.id, p);
    this.pc = new RTCPeerConnection({
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
      iceServers: (joined.ice_servers || []).map((s) => ({ urls: s.urls, username: s.username, credential: s.credential })),
      iceTransportPolicy: this.iceTransportPolicy || 'all',
    });
    // One microphone and one camera sender, whether the stream has them or not: a
    // device found, allowed or chosen later goes out through them (`setTrack`). One
    // without a track sends nothing, so the server opens no track for it and lists no
    // such source until a track is set.
    const init = { direction: 'sendonly', streams: [localStream] };
    this.micTransceiver = this.pc.addTransceiver(localStream.getAudioTracks()[0] || 'audio', init);
    const cameraInit = this.simulcast ? { ...init, sendEncodings: SIMULCAST_LAYERS.map((layer) => ({ ...layer })) } : init;
    this.cameraTransceiver = this.pc.addTransceiver(localStream.getVideoTracks()[0] || 'video', cameraInit);
    preferVideoCodec(this.cameraTransceiver, this.videoCodec);
    // Empty until the screen is shared; filled with replaceTrack, so sharing never renegotiates.
    const screenIndex = this.pc.getTransceivers().length;
    this.screenTransceiver = this.pc.addTransceiver('video', { direction: 'sendonly' });
    preferVideoCodec(this.screenTransceiver, this.videoCodec);
    for (let i = 0; i < this.audioSlots; i++) this.pc.addTransceiver('audio', { direction: 'recvonly' });
    for (let i = 0; i < this.videoSlots; i++) this.pc.addTransceiver('video', { direction: 'recvonly' });
    this.pc.ontrack = (event) => {
      const mid = event.transceiver.mid;
      this.slotTracks.set(mid, event.track);
      this.#bind(mid);
    };
    this.pc.onicecandidate = (event) => {
      const c = event.candidate;
      this.send({ trickle: c ? { candidate: c.candidate, sdp_mid: c.sdpMid || '', sdp_mline_index: c.sdpMLineIndex || 0 } : { candidate: '' } });
    };
    this.pc.onconnectionstatechange = () => {
      this.dispatchEvent(new CustomEvent('connection-state', { detail: this.pc.connectionState }));
    };
    const offer = await this.pc.createOffer();
    const answerPromise = this.request({ offer: { sdp: markSlides(offer.sdp, screenIndex) } });
    await this.pc.setLocalDescription(offer);
    const answer = await answerPromise;
    await this.pc.setRemoteDescription({ type: 'answer', sdp: answer.answer.sdp });
    for (const mid of this.assignments.keys()) this.#bind(mid);
    if (!this.joinedOnce && this.leaveOnPageHide && typeof window !== 'undefined') {
      // Closing the page (or going elsewhere) is leaving, not a lost connection.
      window.addEventListener('pagehide', () => { if (!this.done) this.leave(); });
    }
    this.joinedOnce = true;
    this.dispatchEvent(new CustomEvent('joined', { detail: joined }));
    return joined;
  }

  // Host controls: admit, deny, mute, unmute, remove, set_role, lock, unlock,
  // allow_screen_share, deny_screen_share, allow_chat, deny_chat, approve_name,
  // reject_name, lower_hand, lower_all_hands, mute_all (everyone but the hosts; `kind`),
  // start_recording, stop_recording, slow_mode (`seconds` between a participant's chat
  // messages; 0: off).
  host(action, participantId = '', { kind = '', role = '', seconds = 0 } = {}) {
    return this.request({ host: { action, participant_id: participantId, kind, role, seconds } });
  }

  setName(name) { return this.request({ set_name: { name } }); }

  // Raises this participant's hand (or lowers it): everyone sees its `hand_raised_at`
  // (when it went up; the earliest is first in line). Hosts lower others' with
  // host('lower_hand', id).
  raiseHand(raised = true) { return this.request({ raise_hand: { raised } }); }

  // Sends `payload` (a string, up to 15 KiB) under `topic` to everyone else in the
  // room, or only to the participant ids in `to`; they get a `data` event with
  // `from_participant_id`. Nothing is stored: who is not in the room misses it.
  // Up to 30 a second (60 at once); more fail with `data_rate_limited`.
  publishData(topic, payload, { to = [] } = {}) {
    return this.request({ send_data: { topic, payload, destination: to } });
  }

  // How well `participantId`'s connection carries media (this participant's own with
  // `self.id`): 'excellent', 'good', 'poor' or 'lost'; 'excellent' until rated.
  qualityOf(participantId) { return this.qualities.get(participantId) || 'excellent'; }

  // Whether a chat entry's `participant_id` is this participant's, through this
  // connection or an earlier one it came back from.
  isOwn(participantId) { return this.ownIds.has(participantId); }

  // Shares the screen (asks the browser which one), or `track` when given (a canvas,
  // a tab capture). Others get it as a video whose source is `screen_share`.
  async shareScreen(track = null) {
    if (!track) {
      const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      track = stream.getVideoTracks()[0];
    }
    await this.screenTransceiver.sender.replaceTrack(track);
    this.screenTrack = track;
    track.addEventListener('ended', () => this.stopScreenShare());
    this.#emit('screen-share', { active: true, track });
    return track;
  }

  // Stops sharing; the server takes the screen away from the others when it stops arriving.
  async stopScreenShare() {
    if (!this.screenTrack) return;
    const track = this.screenTrack;
    this.screenTrack = null;
    await this.screenTransceiver.sender.replaceTrack(null);
    track.stop();
    this.#emit('screen-share', { active: false });
  }

  // How the video received on slot `mid` is shown, in device pixels; `hidden` when it
  // is not shown at all. The server picks the simulcast layer from it.
  setTrackSettings(mid, { width = 0, height = 0, hidden = false } = {}) {
    // While the call is joined again, the old connection's slots are gone.
    if (this.rejoining || !this.ws || this.ws.readyState !== WebSocket.OPEN) return null;
    return this.send({ track_settings: { mid, width: Math.round(width), height: Math.round(height), hidden } });
  }

  // Sends a chat message; resolves with {client_id, seq} once the server has stored it.
  // A resend after a lost answer carries the same client id, so it is stored once.
  // Messages sent together wait their turns under the room's chat limit, in order.
  // To send a message that failed again, pass its `clientId` (the error's `clientId`):
  // if the first try was stored after all, it is not stored twice.
  async sendChat(text, { replyTo = 0, clientId = newClientId() } = {}) {
    const message = { chat: { text, client_id: clientId, reply_to: replyTo } };
    try {
      return (await this.#post(message, { idempotent: true })).chat_sent;
    } catch (err) {
      throw Object.assign(err, { clientId });
    }
  }

  editChat(seq, text) { return this.#post({ chat_edit: { seq, text } }); }

  // Shares a File (from an <input type=file> or a drop) in the chat; resolves with
  // {seq} once it is stored. Allowed: PNG, JPEG, GIF, WebP, PDF, plain text.
  async shareFile(file) {
    const content_type = file.type || (file.name.endsWith('.txt') ? 'text/plain' : 'application/octet-stream');
    const { file_upload } = await this.#post({ file_upload: { name: file.name, content_type, size: file.size } });
    const base = new URL(this.url.replace(/^ws/, 'http'));
    const response = await fetch(new URL(file_upload.url, base), { method: 'PUT', body: file });
    const answer = await response.json();
    if (!response.ok) throw Object.assign(new Error(answer.error?.message || 'upload failed'), { code: answer.error?.code });
    return answer;
  }
  deleteChat(seq) { return this.request({ chat_delete: { seq } }); } // never rate limited

  // A chat post (send, edit, file share). Posts go one after another, each once the
  // one before is answered, so they are stored in the order they were made even when
  // one has to be sent again: when the server says it came too soon
  // (`chat_rate_limited`, after its `retry_after_ms`; network jitter can bunch posts
  // up), and, when `idempotent`, after a lost answer.
  #post(message, options) {
    const post = this.chatPosts.then(() => this.#postInTurn(message, options));
    this.chatPosts = post.catch(() => {});
    return post;
  }

  // One post, in its turn under the chat limit, sent until it is answered. A post
  // not answered in time fails with `timeout` (sent again first when `idempotent`), so
  // the posts after it never wait on a lost one.
  // An `idempotent` post whose connection was lost goes again once the room is joined
  // again (it fails if the client gives up).
  async #postInTurn(message, { idempotent = false } = {}) {
    await this.#chatTurn();
    let timeouts = 0;
    let lost = 0;
    for (let limited = 0; ; ) {
      try {
        return await this.request(message, POST_ANSWER_MS);
      } catch (err) {
        if (err.code === 'chat_rate_limited' && ++limited <= 10) {
          await new Promise((resolve) => setTimeout(resolve, err.retryAfterMs || 100));
        } else if (err.code === 'disconnected' && idempotent && ++lost <= 3) {
          await this.#joinedAgain(err);
        } else if (!(err.code === 'timeout' && idempotent && ++timeouts <= 2)) {
          throw err;
        }
      }
    }
  }

  // Resolves once the room is joined again after a lost connection (at once if it
  // already is); fails with `err` if the client gives up or leaves.
  #joinedAgain(err) {
    if (this.done) return Promise.reject(err);
    if (!this.rejoining) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const back = () => { this.removeEventListener('closed', gone); resolve(); };
      const gone = () => { this.removeEventListener('reconnected', back); reject(err); };
      this.addEventListener('reconnected', back, { once: true });
      this.addEventListener('closed', gone, { once: true });
    });
  }

  // Waits for a post's turn under the limit `joined` announced (`chat_limit`): `burst`
  // posts at once, then `per_second`. Turns are handed out in call order, so posts
  // made together keep their order; one post of the burst is kept back for jitter.
  #chatTurn() {
    const limit = this.chatLimit;
    if (!limit?.per_second) return Promise.resolve();
    const period = 1000 / limit.per_second;
    const ahead = Math.max(0, (limit.burst || 1) - 2) * period;
    const now = performance.now();
    const next = Math.max(this.chatNextAt, now);
    this.chatNextAt = next + period;
    const wait = next - ahead - now;
    return wait > 0 ? new Promise((resolve) => setTimeout(resolve, wait)) : Promise.resolve();
  }

  // Older messages, before the oldest one this client has; false when there are none.
  async loadEarlierChat(limit = 50) {
    if (!this.chatMore) return false;
    const before = this.chatFirst || 0;
    const page = (await this.request({ chat_history: { before_seq: before, limit } })).chat_history;
    this.chatMore = page.more;
    for (const message of page.messages.slice().reverse()) this.#takeChat(message, true);
    return page.messages.length > 0;
  }

  async #chatAfter(after) {
    for (;;) {
      const page = (await this.request({ chat_history: { after_seq: after, limit: 200 } })).chat_history;
      for (const message of page.messages) this.#takeChat(message);
      if (!page.more || !page.messages.length) return;
      after = page.messages[page.messages.length - 1].seq;
    }
  }

  // Every chat entry once: `chat` events carry {seq, kind: text|edit|delete, ...};
  // `earlier` is set on entries paged in from before the first one shown.
  #takeChat(message, earlier = false) {
    if (this.chatSeen.has(message.seq)) return;
    this.chatSeen.add(message.seq);
    this.chatFirst = Math.min(this.chatFirst || message.seq, message.seq);
    this.chatLast = Math.max(this.chatLast || 0, message.seq);
    this.#emit('chat', { ...message, kind: message.kind || 'text', earlier });
  }

  setMuted(kind, muted) {
    this.mutedKinds[kind] = muted;
    for (const sender of this.#senders(kind)) if (sender.track) sender.track.enabled = !muted;
    return this.send({ mute: { kind, muted } });
  }

  // The track sent as this participant's microphone (`kind` 'audio') or camera
  // ('video'), null when it sends none.
  localTrack(kind) { return this.localStream?.getTracks().find((t) => t.kind === kind) || null; }

  // Sends `track` as the microphone (`kind` 'audio') or camera ('video') in place of
  // what goes out now (null: nothing): another device, one found or allowed after
  // joining, or a processed track. It goes out muted while this participant is muted
  // or a host blocks that kind. Never renegotiates; before joining, or while the call
  // is joined again, it is what the next connection sends. Resolves with the track it
  // replaced, which the caller may stop.
  async setTrack(kind, track) {
    if (kind !== 'audio' && kind !== 'video') throw new Error(`no ${kind} track to set: 'audio' or 'video'`);
    if (track && track.kind !== kind) throw new Error(`a ${track.kind} track cannot be sent as ${kind}`);
    this.localStream ??= new MediaStream();
    const old = this.localTrack(kind);
    if (old === track) return old;
    if (track) track.enabled = !this.mutedKinds[kind] && !this.self?.[`${kind}_blocked`];
    const transceiver = kind === 'audio' ? this.micTransceiver : this.cameraTransceiver;
    if (transceiver && this.pc?.signalingState !== 'closed') await transceiver.sender.replaceTrack(track);
    if (old) this.localStream.removeTrack(old);
    if (track) this.localStream.addTrack(track);
    this.#emit('local-track', { kind, track });
    return old;
  }

  #senders(kind) {
    return (this.pc?.getSenders() || []).filter((s) => s.track && s.track.kind === kind);
  }

  // The call's media server is shutting down: join again (the server places the room on
  // another one), keeping the local media and the chat position.
  async #moveToAnotherServer() {
    this.#emit('reconnecting', { reason: 'node_draining' });
    try {
      await this.#joinAgain();
      this.#emit('reconnected', { reason: 'node_draining' });
    } catch (err) {
      this.#emit('error', { code: err.code || 'internal', message: err.message });
    }
  }

  // The connection to the server ended without a leave, or the call's media did: what
  // waited on it fails, and the room is joined again (a gateway restarted, the network
  // dropped or changed), keeping the local media and the chat position, so the chat
  // fills in what was missed.
  async #connectionLost(reason = 'connection_lost') {
    this.#failPending('disconnected', 'the connection to the server was lost');
    // A connection that a join made again lost: that try fails, and the next follows.
    if (this.rejoining) return;
    if (this.done || !this.joinedOnce) {
      this.dispatchEvent(new CustomEvent('closed'));
      return;
    }
    this.rejoining = true;
    this.#emit('reconnecting', { reason });
    const giveUpAt = Date.now() + RECONNECT_FOR_MS;
    for (let attempt = 0; !this.done && Date.now() < giveUpAt; attempt++) {
      // Each wait from half to one and a half times its length: a gateway's clients,
      // cut off together by its restart, do not all come back in the same instant.
      const wait = RECONNECT_WAITS_MS[Math.min(attempt, RECONNECT_WAITS_MS.length - 1)];
      await new Promise((resolve) => setTimeout(resolve, wait * (0.5 + Math.random())));
      if (this.done) break;
      try {
        await this.#joinAgain();
        this.rejoining = false;
        this.#emit('reconnected', { reason });
        return;
      } catch (err) {
        this.#failPending('disconnected', 'the connection to the server was lost');
        if (FINAL_ERRORS.has(err.code) || (err.code && err.code.startsWith('token_'))) {
          this.#emit('error', { code: err.code, message: err.message });
          break;
        }
      }
    }
    this.rejoining = false;
    this.done = true;
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
    }
    this.pc?.close();
    this.dispatchEvent(new CustomEvent('closed'));
  }

  // Drops the connection and the call's media and joins the room again.
  async #joinAgain() {
    const ws = this.ws;
    if (ws) {
      ws.onclose = null;
      ws.close();
    }
    this.pc?.close();
    for (const mid of [...this.assignments.keys()]) this.#unbind(mid);
    this.assignments.clear();
    this.slotTracks.clear();
    this.participants.clear();
    this.qualities.clear(); // a new connection hears the room's levels afresh
    this.#forgetHeld();
    await this.join(this.localStream);
    // A screen being shared goes on through the new connection's screen sender.
    if (this.screenTrack) await this.screenTransceiver.sender.replaceTrack(this.screenTrack);
  }

  // Every request still waiting for an answer fails with `code`.
  #failPending(code, text) {
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const waiter of waiting) waiter.reject(Object.assign(new Error(text), { code }));
  }

  leave() {
    this.done = true;
    this.#forgetHeld();
    this.rejoinTicket = null;
    const { ws, pc } = this;
    if (ws && ws.readyState === WebSocket.OPEN) {
      this.send({ leave: {} });
      // The media goes once the server has taken the leave (the connection closes
      // after it): ended first, it would reach the server as a lost connection.
      ws.addEventListener('close', () => pc?.close(), { once: true });
      ws.close();
    } else {
      ws?.close();
      pc?.close();
    }
  }

  send(message) {
    const request_id = String(this.nextRequest++);
    const traceparent = typeof this.traceparent === 'function' ? this.traceparent() : null;
    this.ws.send(JSON.stringify(traceparent ? { request_id, traceparent, ...message } : { request_id, ...message }));
    return request_id;
  }

  // Sends `message` and resolves with the answer to it, or rejects with the server's
  // error ({code, message}); with `timeoutMs`, rejects with code `timeout` when no
  // answer comes in time.
  request(message, timeoutMs = 0) {
    return new Promise((resolve, reject) => {
      const id = this.send(message);
      let timer = null;
      const done = (settle) => (value) => { clearTimeout(timer); this.pending.delete(id); settle(value); };
      this.pending.set(id, { resolve: done(resolve), reject: done(reject) });
      if (timeoutMs) {
        timer = setTimeout(() => done(reject)(Object.assign(new Error('no answer in time'), { code: 'timeout' })), timeoutMs);
      }
    });
  }

  #connect() {
    return new Promise((resolve, reject) => {
      this.ws = new WebSocket(this.url);
      this.ws.onopen = () => resolve();
      this.ws.onerror = () => reject(new Error('cannot reach the signalling server'));
      this.ws.onclose = () => this.#connectionLost();
      this.ws.onmessage = (event) => this.#onMessage(JSON.parse(event.data));
    });
  }

  // A participant as it is now (this one, or another in the room).
  #updated(p) {
    if (this.self && p.id === this.self.id) {
      this.self = p;
      // Muted by a host: stop sending too, so the local indicator tells the truth.
      for (const kind of ['audio', 'video']) {
        if (p[`${kind}_blocked`]) this.#senders(kind).forEach((s) => { if (s.track) s.track.enabled = false; });
      }
    } else {
      this.participants.set(p.id, p);
    }
    this.#emit('participant-updated', p);
  }

  #onMessage(message) {
    const waiter = message.request_id && this.pending.get(message.request_id);
    if (waiter && message.waiting) {
      // Not an answer yet: the join waits for a host.
      this.self = message.waiting.you;
      this.#emit('waiting', message.waiting);
      return;
    }
    if (waiter) {
      this.pending.delete(message.request_id);
      if (message.error) waiter.reject(Object.assign(new Error(message.error.message), { code: message.error.code, retryAfterMs: message.error.retry_after_ms || 0 }));
      else waiter.resolve(message.joined ?? message);
      return;
    }
    if (message.participant_joined) {
      this.#arrived(message.participant_joined.participant);
    } else if (message.participant_left) {
      const { participant_id: id, reason = 'left', rejoin_within_ms: within = 0 } = message.participant_left;
      for (const [mid, a] of this.assignments) if (a.participantId === id) this.#unbind(mid);
      const p = this.participants.get(id);
      if (p && reason === 'connection_lost' && within > 0) this.#holdPlace(p, within);
      else this.#gone(id, reason);
    } else if (message.participant_updated) {
      this.#updated(message.participant_updated.participant);
    } else if (message.participants_changed) {
      // One change to many at once (a host muted everyone, lowered every hand): each
      // listed participant takes the fields it carries.
      const { participant_ids: ids = [], change = {} } = message.participants_changed;
      for (const id of ids) {
        const was = this.self && id === this.self.id ? this.self : this.participants.get(id);
        if (was) this.#updated({ ...was, ...change });
      }
    } else if (message.track_assigned) {
      const { mid, participant_id, kind, source } = message.track_assigned;
      this.#unbind(mid);
      this.assignments.set(mid, { participantId: participant_id, kind, source: source || (kind === 'audio' ? 'microphone' : 'camera') });
      this.#bind(mid);
    } else if (message.track_unassigned) {
      this.#unbind(message.track_unassigned.mid);
    } else if (message.knock) {
      const p = message.knock.participant;
      this.knocks.set(p.id, p);
      this.#emit('knock', p);
    } else if (message.knock_resolved) {
      this.knocks.delete(message.knock_resolved.participant_id);
      this.#emit('knock-resolved', message.knock_resolved);
    } else if (message.room_state) {
      this.roomState = message.room_state;
      this.#emit('room-state', message.room_state);
    } else if (message.connection_quality) {
      for (const { participant_id: participantId, quality } of message.connection_quality.updates) {
        this.qualities.set(participantId, quality);
        this.#emit('connection-quality', { participantId, quality });
      }
    } else if (message.active_speaker) {
      this.activeSpeaker = message.active_speaker.participant_id || null;
      this.#emit('active-speaker', { participantId: this.activeSpeaker });
    } else if (message.data) {
      this.#emit('data', message.data);
    } else if (message.chat) {
      this.#takeChat(message.chat);
    } else if (message.chat_batch) {
      // A busy room's entries that went out together, in order.
      for (const entry of message.chat_batch.entries) this.#takeChat(entry);
    } else if (message.error?.code === 'node_draining') {
      this.#moveToAnotherServer();
    } else if (message.error?.code === 'media_disconnected' && this.joinedOnce && !this.done) {
      // The media server lost this call's media (the network changed, the peer
      // connection closed): the server let the room go; join again, as before.
      this.#connectionLost('media_lost');
    } else if (message.error?.code === 'not_joined' && this.rejoining) {
      // What the old connection still carried after its participant left: the call
      // is being joined again.
    } else if (message.error) {
      if (FINAL_ERRORS.has(message.error.code)) this.done = true;
      this.#emit('error', message.error);
    }
  }

  // Someone joined; or came back after a lost connection (`previous_id`), into the
  // place it had; or joined afresh while its place was kept: the old place goes.
  #arrived(p) {
    if (p.previous_id && this.participants.has(p.previous_id)) {
      this.#gone(p.previous_id, 'returned', p.id);
    } else if (p.identity) {
      for (const [id, held] of this.participants) {
        if (held.reconnecting && held.identity === p.identity) this.#gone(id, 'connection_lost');
      }
    }
    this.participants.set(p.id, p);
    this.#emit('participant-joined', p);
  }

  // `p`'s connection was lost: it keeps its place (listed, `reconnecting`) until it
  // comes back, for `withinMs` at most.
  #holdPlace(p, withinMs) {
    const held = { ...p, reconnecting: true };
    this.participants.set(p.id, held);
    this.held.set(p.id, setTimeout(() => this.#gone(p.id, 'connection_lost'), withinMs + HOLD_MARGIN_MS));
    this.#emit('participant-reconnecting', held);
  }

  // `id` has left: `reason` left (or removed), connection_lost (not back in time),
  // or returned (back as `returnedAs`, whose participant-joined follows).
  #gone(id, reason, returnedAs = null) {
    clearTimeout(this.held.get(id));
    this.held.delete(id);
    this.qualities.delete(id);
    if (!this.participants.delete(id)) return;
    this.#emit('participant-left', returnedAs ? { id, reason, returnedAs } : { id, reason });
  }

  // Places kept for others are this connection's; a new one learns the room afresh.
  #forgetHeld() {
    for (const timer of this.held.values()) clearTimeout(timer);
    this.held.clear();
  }

  #bind(mid) {
    const assignment = this.assignments.get(mid);
    const track = this.slotTracks.get(mid);
    if (!assignment || !track || assignment.bound) return;
    assignment.bound = true;
    this.#emit('track', { participantId: assignment.participantId, kind: assignment.kind, source: assignment.source, track, mid });
  }

  #unbind(mid) {
    const assignment = this.assignments.get(mid);
    if (!assignment) return;
    this.assignments.delete(mid);
    if (assignment.bound) this.#emit('track-ended', { participantId: assignment.participantId, kind: assignment.kind, source: assignment.source, track: this.slotTracks.get(mid), mid });
  }

  #emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }
}

// Marks the `index`th m-line as a shared screen (RFC 4796) for the server.
function markSlides(sdp, index) {
  const sections = sdp.split('\r\nm=');
  const at = index + 1; // sections[0] is the session part
  if (at < sections.length) sections[at] = sections[at].replace(/(a=mid:[^\r\n]*)/, '$1\r\na=content:slides');
  return sections.join('\r\nm=');
}

// A chat message's own id, which makes its resends idempotent.
function newClientId() {
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

function defaultSignalUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/v1/signal`;
}

// Puts the codec named `codec` ('vp8', 'h264') first in what a sending transceiver
// offers, so the browser sends it (the SFU answers in the offer's order). Unknown or
// empty: the browser's own order.
function preferVideoCodec(transceiver, codec) {
  if (!codec || !transceiver.setCodecPreferences || !RTCRtpSender.getCapabilities) return;
  const wanted = `video/${codec}`.toLowerCase();
  const codecs = RTCRtpSender.getCapabilities('video').codecs;
  const first = codecs.filter((c) => c.mimeType.toLowerCase() === wanted);
  if (!first.length) return;
  transceiver.setCodecPreferences([...first, ...codecs.filter((c) => c.mimeType.toLowerCase() !== wanted)]);
}
