// Tells a participant who speaks while muted that nobody hears them. The microphone
// track sent to the call is disabled while muted (it carries silence), so a clone of
// it, kept enabled and never sent, feeds an analyser; sound over SPEAKING_RMS in most
// of the last second calls `onSpeaking` (at most once every QUIET_MS).

const SPEAKING_RMS = 0.02; // about -34 dBFS
const POLL_MS = 100;
const WINDOW = 10; // polls: the last second
const LOUD_IN_WINDOW = 6;
const QUIET_MS = 8000;

export class MutedSpeech {
  constructor(track, onSpeaking) {
    this.track = track;
    this.onSpeaking = onSpeaking;
    this.timer = null;
    this.loud = [];
    this.toldAt = -Infinity;
  }

  // Listens to `track` from now on (another microphone; null: none).
  setTrack(track) {
    clearInterval(this.timer);
    this.timer = null;
    this.analyser = null;
    this.context?.close().catch(() => {});
    this.context = null;
    this.clone?.stop();
    this.clone = null;
    this.track = track;
  }

  // Starts listening while muted, stops when not.
  watch(muted) {
    if (!muted) {
      clearInterval(this.timer);
      this.timer = null;
      return;
    }
    if (this.timer || !this.track) return;
    if (!this.analyser) this.#open();
    this.context.resume().catch(() => {});
    this.loud = [];
    this.timer = setInterval(() => this.#poll(), POLL_MS);
  }

  #open() {
    this.context = new AudioContext();
    const clone = this.track.clone();
    clone.enabled = true;
    this.clone = clone;
    const source = this.context.createMediaStreamSource(new MediaStream([clone]));
    this.analyser = this.context.createAnalyser();
    this.analyser.fftSize = 1024;
    source.connect(this.analyser);
    this.samples = new Float32Array(this.analyser.fftSize);
  }

  #poll() {
    this.analyser.getFloatTimeDomainData(this.samples);
    let sum = 0;
    for (const s of this.samples) sum += s * s;
    this.loud.push(Math.sqrt(sum / this.samples.length) > SPEAKING_RMS);
    if (this.loud.length > WINDOW) this.loud.shift();
    const now = performance.now();
    if (this.loud.filter(Boolean).length >= LOUD_IN_WINDOW && now - this.toldAt > QUIET_MS) {
      this.toldAt = now;
      this.onSpeaking();
    }
  }
}
