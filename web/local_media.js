// The page's own microphone and camera in the call: the mute buttons, the Devices
// panel (microphone, camera, speaker), and what happens when a device is missing,
// chosen or unplugged. A call is joined with whatever could be opened; a missing one
// counts as muted, and unmuting it opens one.

import { MutedSpeech } from './muted.js';
import { INPUT, canChooseSpeaker, chosen, list, open, openForCall, remember } from './devices.js';

const NOTICE_MS = 10_000;
const LABELS = {
  audio: { on: 'Mute mic', off: 'Unmute mic', name: 'microphone' },
  video: { on: 'Stop camera', off: 'Start camera', name: 'camera' },
};

export class LocalMedia {
  // `$` finds the page's elements by id; `onSpeakingMuted` is called when someone
  // muted speaks.
  constructor({ client, stage, $, onSpeakingMuted }) {
    this.client = client;
    this.stage = stage;
    this.$ = $;
    this.buttons = { audio: $('toggle-mic'), video: $('toggle-cam') };
    this.mutedSpeech = new MutedSpeech(null, onSpeakingMuted);
    for (const kind of ['audio', 'video']) {
      this.buttons[kind].addEventListener('click', () => this.toggle(kind));
    }
    $('devices-button').addEventListener('click', () => this.#showPanel($('devices').hidden));
    for (const deviceKind of ['audioinput', 'videoinput', 'audiooutput']) {
      $(`device-${deviceKind}`).addEventListener('change', (event) => this.choose(deviceKind, event.target.value));
    }
    $('speaker-choice').hidden = !canChooseSpeaker;
    if (canChooseSpeaker && chosen().audiooutput) stage.setSink(chosen().audiooutput);
    navigator.mediaDevices?.addEventListener?.('devicechange', () => this.refreshPanel());
  }

  // Opens the devices to join with; tells why any is missing.
  async start() {
    const { stream, missing } = await openForCall();
    this.missing = missing;
    for (const track of stream.getTracks()) this.#watchEnded(track);
    const reasons = Object.values(missing);
    if (reasons.length) this.notice(`${reasons.join('; ')}: you joined without ${reasons.length > 1 ? 'them' : 'it'}`);
    return stream;
  }

  // The call is joined (or joined again): a missing device counts as muted, and the
  // others see what this page shows.
  joined() {
    const self = this.client.self;
    for (const kind of ['audio', 'video']) {
      if (this.isMuted(kind) && !self[`${kind}_muted`]) this.client.setMuted(kind, true);
      this.#showMuted(kind);
    }
    const camera = this.client.localTrack('video');
    if (camera) this.stage.addTrack(self.id, camera);
    this.mutedSpeech.setTrack(this.client.localTrack('audio'));
    this.watchMutedSpeech();
    this.refreshPanel();
  }

  isMuted(kind) { return !!this.client.mutedKinds[kind] || !this.client.localTrack(kind); }

  // The button: mutes, or unmutes (opening a device first when there is none).
  async toggle(kind) {
    const muting = !this.isMuted(kind);
    if (!muting && !this.client.localTrack(kind)) {
      let track;
      try {
        track = await open(kind);
      } catch (err) {
        this.notice(err.reason);
        return;
      }
      await this.#use(kind, track);
    }
    this.client.setMuted(kind, muting);
    this.#showMuted(kind);
  }

  // A device picked in the panel (`deviceKind` as `enumerateDevices` names it).
  async choose(deviceKind, deviceId) {
    if (deviceKind === 'audiooutput') {
      try {
        await this.stage.setSink(deviceId);
        remember(deviceKind, deviceId);
      } catch (err) {
        this.notice(`The speaker could not be used: ${err.message}`);
      }
      return;
    }
    const kind = deviceKind === 'audioinput' ? 'audio' : 'video';
    let track;
    try {
      track = await open(kind, deviceId);
    } catch (err) {
      this.notice(err.reason);
      this.refreshPanel();
      return;
    }
    remember(deviceKind, deviceId);
    await this.#use(kind, track);
    // Chosen while there was none: it is meant to be heard (or seen).
    if (this.client.mutedKinds[kind] && this.missing?.[kind]) {
      delete this.missing[kind];
      this.client.setMuted(kind, false);
    }
    this.#showMuted(kind);
  }

  // Sends `track` (or nothing) as the `kind` device, shows it, lets the old one go.
  async #use(kind, track) {
    const old = await this.client.setTrack(kind, track);
    if (old && old !== track) old.stop();
    if (track) this.#watchEnded(track);
    const self = this.client.self;
    if (kind === 'video' && self) {
      if (track) this.stage.addTrack(self.id, track);
      else this.stage.removeTrack(self.id, old);
    }
    if (kind === 'audio') {
      this.mutedSpeech.setTrack(track);
      this.watchMutedSpeech();
    }
    this.refreshPanel();
  }

  // A device unplugged (or taken by the system): the default one of its kind takes
  // over; with none, it counts as muted.
  #watchEnded(track) {
    track.addEventListener('ended', async () => {
      const kind = track.kind;
      if (this.client.localTrack(kind) !== track) return;
      try {
        await this.#use(kind, await open(kind, ''));
        this.notice(`Your ${LABELS[kind].name} was disconnected: now using another one`);
      } catch (err) {
        await this.#use(kind, null);
        if (!this.client.mutedKinds[kind]) this.client.setMuted(kind, true);
        this.notice(`Your ${LABELS[kind].name} was disconnected. ${err.reason}`);
      }
      this.#showMuted(kind);
    });
  }

  #showMuted(kind) {
    const muted = this.isMuted(kind);
    const button = this.buttons[kind];
    button.setAttribute('aria-pressed', String(muted));
    button.textContent = muted ? LABELS[kind].off : LABELS[kind].on;
    const self = this.client.self;
    if (kind === 'video' && self) this.stage.setVideoOff(self.id, muted);
    if (kind === 'audio') this.watchMutedSpeech();
  }

  // Speaking while muted (by oneself or a host) is pointed out, briefly.
  watchMutedSpeech() {
    const muted = this.isMuted('audio') || this.client.self?.audio_blocked === true;
    this.mutedSpeech.watch(muted);
  }

  notice(text) {
    const notice = this.$('device-notice');
    notice.textContent = text;
    notice.hidden = false;
    clearTimeout(notice.hideTimer);
    notice.hideTimer = setTimeout(() => { notice.hidden = true; }, NOTICE_MS);
  }

  #showPanel(show) {
    this.$('devices').hidden = !show;
    this.$('devices-button').setAttribute('aria-expanded', String(show));
    if (show) this.refreshPanel();
  }

  // The panel's lists, each with what is in use now selected.
  async refreshPanel() {
    const devices = await list();
    const inUse = {
      audioinput: this.client.localTrack('audio')?.getSettings().deviceId,
      videoinput: this.client.localTrack('video')?.getSettings().deviceId,
      audiooutput: this.stage.sinkId || 'default',
    };
    for (const [deviceKind, options] of Object.entries(devices)) {
      const select = this.$(`device-${deviceKind}`);
      const none = deviceKind === INPUT.audio ? 'No microphone' : deviceKind === INPUT.video ? 'No camera' : 'Default';
      select.replaceChildren(...(options.length ? options : [{ deviceId: '', label: none }]).map(({ deviceId, label }) => {
        const option = document.createElement('option');
        option.value = deviceId;
        option.textContent = label;
        return option;
      }));
      select.disabled = !options.length;
      const current = inUse[deviceKind];
      if (current && options.some((o) => o.deviceId === current)) select.value = current;
      else if (!inUse[deviceKind] && deviceKind !== 'audiooutput') select.selectedIndex = -1;
    }
  }
}
