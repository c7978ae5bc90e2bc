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

  // Outlines the tile of whoever is speaking (null: nobody).
  setSpeaker(id) {
    for (const [tileId, entry] of this.tiles) entry.tile.classList.toggle('speaking', tileId === id);
  }

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

// The people list. Hosts also see who waits to be admitted, and controls per person.
export function renderParticipants(list, participants, self, knocks, act) {
  const isHost = self.role === 'host';
  const button = (label, onClick) => {
    const b = document.createElement('button');
    b.textContent = label;
    b.className = 'small';
    b.addEventListener('click', onClick);
    return b;
  };
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
    name.textContent = `${p.name}${p.id === self.id ? ' (you)' : ''}${p.role === 'host' ? ' · host' : ''}`;
    const state = document.createElement('span');
    state.textContent = `${p.audio_muted ? '🔇' : '🎤'} ${p.video_muted ? '🚫' : '📷'}`;
    item.append(name, state);
    if (isHost && p.id !== self.id) {
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
