// Streamed replies appear at a steady pace whatever the size of the batches the server sends (it
// coalesces chunks for longer under load): animation frames show a little more of the text
// received so far, at the reply's average arrival rate, faster when a backlog builds up. A 250 ms
// batch is then spread over the frames until the next one instead of landing all at once.
const CATCH_UP_MS = 300; // a backlog is shown within about this long
const UNDER = 0.8; // of the arrival rate
const MAX_FRAME_MS = 100; // a background tab's long pause does not dump the backlog at once
const states = new Map(); // message_id -> {message, view, shown, first, last, frame}

/** Show `message.content` (all text received so far) progressively: `update(view)` each frame, where
 * `view` reads like the message with `content` cut to what is shown. Once the reply is no longer
 * streaming, the page renders it whole and this stops. */
export function reveal(message, update) {
  let state = states.get(message.message_id);
  if (!state || state.message !== message) {
    state = { message, shown: 0, credit: 0, first: performance.now(), frame: null };
    // A render already queued with the view may run after the reply ended: then it shows it whole.
    state.view = Object.create(message, { content: { get: () => (message.streaming
      ? message.content.slice(0, state.shown) : message.content) } });
    states.set(message.message_id, state);
  }
  state.shown = Math.min(state.shown, message.content.length);
  if (state.frame === null) {
    state.last = performance.now();
    state.frame = requestAnimationFrame((now) => step(state, update, now));
  }
}

function step(state, update, now) {
  state.frame = null;
  const { message, view } = state;
  const total = message.content.length;
  if (!message.streaming || state.shown >= total) {
    if (!message.streaming) states.delete(message.message_id);
    return;
  }
  const elapsed = Math.min(Math.max(now - state.last, 0), MAX_FRAME_MS);
  state.last = now;
  // Characters per ms: a little under the reply's arrival rate so far (a first chunk alone is
  // spread over CATCH_UP_MS, the gap before the next batch), so a small backlog builds up and
  // rides out batches that come late; faster once that backlog is more than CATCH_UP_MS of text.
  const arrival = total / Math.max(now - state.first, CATCH_UP_MS);
  state.credit += Math.max(UNDER * arrival, (total - state.shown) / CATCH_UP_MS) * elapsed;
  let next = Math.min(total, state.shown + Math.floor(state.credit));
  const code = message.content.charCodeAt(next - 1);
  if (next < total && code >= 0xd800 && code <= 0xdbff) next += 1; // never split a surrogate pair
  if (next > state.shown) {
    state.credit = Math.max(0, state.credit - (next - state.shown));
    state.shown = next;
    update(view);
  }
  if (next < total) state.frame = requestAnimationFrame((later) => step(state, update, later));
}
