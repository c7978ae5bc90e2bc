// The page's microphone, camera and speaker: opening them (the ones chosen last time,
// kept in localStorage, while they are still there), listing what the machine has,
// and saying plainly why one could not be opened.

const STORE = 'confer.devices';
// What the camera is asked for: the simulcast layers are cut from it.
export const CAMERA = { width: 1280, height: 720 };
// `enumerateDevices` kinds, by the kind of track they give.
export const INPUT = { audio: 'audioinput', video: 'videoinput' };
const NAMES = { audio: 'microphone', video: 'camera' };

// The device chosen for each `enumerateDevices` kind: { audioinput, videoinput, audiooutput }.
export function chosen() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE));
    return saved && typeof saved === 'object' ? saved : {};
  } catch {
    return {};
  }
}

export function remember(deviceKind, deviceId) {
  try {
    localStorage.setItem(STORE, JSON.stringify({ ...chosen(), [deviceKind]: deviceId }));
  } catch {
    // Storage refused (private mode, quota): the choice holds for this page only.
  }
}

function constraint(kind, deviceId) {
  const base = kind === 'video' ? { ...CAMERA } : {};
  if (deviceId) base.deviceId = { exact: deviceId };
  return Object.keys(base).length ? base : true;
}

// A track of `kind` ('audio' or 'video') from `deviceId`, or from the one chosen last
// time; if that one is gone, from the browser's default. Rejects with the browser's
// error, `reason` added (see `reasonFor`).
export async function open(kind, deviceId = chosen()[INPUT[kind]]) {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ [kind]: constraint(kind, deviceId) });
    return stream.getTracks()[0];
  } catch (err) {
    const gone = err.name === 'OverconstrainedError' || err.name === 'NotFoundError';
    if (deviceId && gone) return open(kind, '');
    throw Object.assign(err, { reason: reasonFor(kind, err) });
  }
}

// What to tell someone whose `kind` device could not be opened with `err`.
export function reasonFor(kind, err) {
  const name = NAMES[kind];
  switch (err?.name) {
    case 'NotFoundError':
    case 'OverconstrainedError':
      return `No ${name} found`;
    case 'NotAllowedError':
    case 'SecurityError':
      return `The browser blocks the ${name}: allow it in the site's settings`;
    case 'NotReadableError':
    case 'AbortError':
      return `The ${name} is in use by another app`;
    default:
      return `The ${name} could not be opened${err?.message ? `: ${err.message}` : ''}`;
  }
}

// Both devices for joining a call, asked for together (one prompt) and, if that fails,
// one by one: the stream holds whichever could be opened, `missing` says why each
// other one could not ({ audio?: reason, video?: reason }).
export async function openForCall() {
  const saved = chosen();
  try {
    return {
      stream: await navigator.mediaDevices.getUserMedia({
        audio: constraint('audio', saved.audioinput),
        video: constraint('video', saved.videoinput),
      }),
      missing: {},
    };
  } catch {
    const stream = new MediaStream();
    const missing = {};
    for (const kind of ['audio', 'video']) {
      try {
        stream.addTrack(await open(kind));
      } catch (err) {
        missing[kind] = err.reason;
      }
    }
    return { stream, missing };
  }
}

// The machine's devices by `enumerateDevices` kind, each { deviceId, label } (labels
// are empty until a device of that kind was allowed once: numbered then).
export async function list() {
  const devices = await navigator.mediaDevices.enumerateDevices().catch(() => []);
  const byKind = { audioinput: [], videoinput: [], audiooutput: [] };
  for (const d of devices) {
    const kind = byKind[d.kind];
    if (!kind || !d.deviceId) continue;
    kind.push({ deviceId: d.deviceId, label: d.label || `${DEVICE_NAMES[d.kind]} ${kind.length + 1}` });
  }
  return byKind;
}

const DEVICE_NAMES = { audioinput: 'Microphone', videoinput: 'Camera', audiooutput: 'Speaker' };

// Whether this browser lets a page pick where sound plays.
export const canChooseSpeaker = typeof HTMLMediaElement !== 'undefined' && 'setSinkId' in HTMLMediaElement.prototype;
