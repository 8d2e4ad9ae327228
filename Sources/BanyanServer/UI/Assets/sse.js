// Server-Sent Events over fetch, so the bearer token can be sent (EventSource cannot set
// headers). Reconnects after a dropped connection with Last-Event-ID, the id of the last event
// delivered, so nothing is skipped; an event at or below that id is never delivered twice.
import {askForToken, authHeaders} from './api.js';

export function openStream(path, {onEvent, onFrame, onState}) {
  const controller = new AbortController();
  let lastId = null;
  let delay = 500;
  // Events the server sent again at or below lastId: none when it honoured Last-Event-ID.
  let replayed = 0;
  const state = s => onState && onState(s);

  (async () => {
    while (!controller.signal.aborted) {
      try {
        const headers = authHeaders({Accept: 'text/event-stream'});
        if (lastId !== null) headers['Last-Event-ID'] = String(lastId);
        const response = await fetch(path, {headers, signal: controller.signal, cache: 'no-store'});
        if (response.status === 401) {
          state('unauthorized');
          if (!(await askForToken())) return;
          continue;
        }
        if (!response.ok) {
          let body = null;
          try { body = await response.json(); } catch { /* not JSON */ }
          state(response.status === 403 ? 'forbidden' : 'error', body);
          if (response.status < 500) return;
          throw new Error(`HTTP ${response.status}`);
        }
        state('live');
        delay = 500;
        await readFrames(response.body, frame => {
          if (frame.event === 'truncated') {
            // The log was cut at this id (a new leader); what follows it is new.
            lastId = Number(frame.id);
            onFrame && onFrame(frame);
            return;
          }
          if (frame.id === undefined || frame.data === undefined) return;
          const id = Number(frame.id);
          if (lastId !== null && id <= lastId) { replayed++; return; }
          lastId = id;
          onEvent(JSON.parse(frame.data), id);
        });
        if (!controller.signal.aborted) throw new Error('stream ended');
      } catch (error) {
        if (controller.signal.aborted) return;
        state('reconnecting', String(error));
        await new Promise(resolve => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 10000);
      }
    }
  })();
  return {close: () => controller.abort(), get replayed() { return replayed; }};
}

async function readFrames(body, deliver) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let frame = {};
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += value;
    let newline;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline).replace(/\r$/, '');
      buffer = buffer.slice(newline + 1);
      if (line === '') {
        if (Object.keys(frame).length) deliver(frame);
        frame = {};
      } else if (!line.startsWith(':')) {
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        frame[field] = field === 'data' && frame.data !== undefined ? `${frame.data}\n${value}` : value;
      }
    }
  }
}
