// Before joining from a link that names nobody (a room's address, shared): the person
// sees their camera, gives their name (the last one given is offered again) and
// chooses to come in with the microphone or camera off, then joins.

const NAME_STORE = 'confer.name';
const MAX_NAME = 64;

// Shows the form over the room page until Join; resolves with the name given. A
// device turned off here goes in muted (`client.mutedKinds`; the page tells the
// server once joined).
export function prejoin({ $, client, local, room }) {
  const form = $('prejoin');
  form.hidden = false;
  $('prejoin-room').textContent = room;
  const preview = $('prejoin-video');
  preview.srcObject = local;
  preview.play().catch(() => {});
  const input = $('prejoin-name');
  input.value = savedName();
  input.focus();
  const off = { audio: false, video: false };
  const labels = { audio: ['Microphone on', 'Microphone off', 'No microphone'], video: ['Camera on', 'Camera off', 'No camera'] };
  for (const [kind, id] of [['audio', 'prejoin-mic'], ['video', 'prejoin-cam']]) {
    const button = $(id);
    const track = local.getTracks().find((t) => t.kind === kind);
    const show = () => {
      button.setAttribute('aria-pressed', String(!track || off[kind]));
      button.textContent = !track ? labels[kind][2] : labels[kind][off[kind] ? 1 : 0];
    };
    button.disabled = !track;
    button.addEventListener('click', () => {
      off[kind] = !off[kind];
      track.enabled = !off[kind];
      show();
    });
    show();
  }
  return new Promise((resolve) => {
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const name = input.value.trim().slice(0, MAX_NAME);
      if (!name) return;
      try {
        localStorage.setItem(NAME_STORE, name);
      } catch {
        // Not kept (private mode): asked again next time.
      }
      for (const kind of ['audio', 'video']) if (off[kind]) client.mutedKinds[kind] = true;
      preview.srcObject = null;
      form.hidden = true;
      resolve(name);
    });
  });
}

function savedName() {
  try {
    return localStorage.getItem(NAME_STORE) || '';
  } catch {
    return '';
  }
}
