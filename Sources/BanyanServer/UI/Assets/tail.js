// /ui/tail?type=…&stream=…: the live log through /v1/stream. Keeps the newest ROWS_MAX rows;
// pausing closes the stream and resuming reopens it after the last event shown, so nothing is
// skipped; a dropped connection is resumed the same way (sse.js).
import {api} from './api.js';
import {h, clear, navigate, eventLink, fmtTime, typeChip, table, errorBox} from './dom.js';
import {openStream} from './sse.js';

const ROWS_MAX = 500;
const BACKLOG = 50;

export async function render(main, params, url) {
  const type = h('input', {name: 'type', placeholder: 'any type', value: url.searchParams.get('type') || ''});
  const stream = h('input', {name: 'stream', placeholder: 'any stream', value: url.searchParams.get('stream') || ''});
  const apply = h('button', {type: 'submit'}, 'Filter');
  const pause = h('button', {type: 'button', id: 'pause'}, 'Pause');
  const state = h('span', {id: 'tail-state', class: 'state', role: 'status'}, 'connecting');
  const count = h('span', {class: 'muted'});
  const form = h('form', {class: 'row'}, h('label', {}, 'type ', type), h('label', {}, 'stream ', stream), apply, pause, state, count);
  const body = h('tbody', {id: 'tail-rows'});
  const problem = h('div');
  main.append(h('h1', {}, 'Tail'), form, problem, table('tail', ['id', 'time', 'type', 'stream', 'key', 'parents', 'message'], body));

  let source = null;
  let received = 0;
  let after = null;   // the last event shown; null: start BACKLOG events before the end
  let paused = false;
  let serial = 0;     // the latest (re)start wins; an older one still reading the status gives up

  const setState = (s, detail) => {
    state.textContent = s === 'error' || s === 'forbidden' ? `${s}: ${detail && detail.error ? detail.error : ''}` : s;
    state.dataset.state = s;
  };

  // Closes the stream there is and, unless paused, opens one after `after` with the filters.
  async function restart() {
    const mine = ++serial;
    if (source) { source.close(); source = null; }
    pause.textContent = paused ? 'Resume' : 'Pause';
    if (paused) { setState('paused'); return; }
    setState('connecting');
    try {
      if (after === null) {
        const status = await api('/v1/status');
        if (mine !== serial) return;
        after = Math.max(0, status.last_id - BACKLOG);
      }
    } catch (error) {
      if (mine === serial) { setState('error', error.body); problem.replaceChildren(errorBox(error, 'read the log')); }
      return;
    }
    problem.replaceChildren();
    const q = new URLSearchParams({after: String(after)});
    if (type.value.trim()) q.set('type', type.value.trim());
    if (stream.value.trim()) q.set('stream', stream.value.trim());
    const opened = openStream(`/v1/stream?${q}`, {
      onEvent: (event, id) => { after = id; add(event); state.dataset.replayed = String(opened.replayed); },
      onFrame: frame => {
        after = Number(frame.id);
        body.prepend(h('tr', {class: 'note'}, h('td', {colspan: 7}, `The log was cut after #${frame.id} (a new leader); what follows replaces what was shown above it.`)));
      },
      onState: setState,
    });
    source = opened;
  }

  function add(event) {
    received++;
    // When the row appeared, in the page's clock (epoch ms): a test reads how fast events show.
    const row = h('tr', {dataset: {eventId: event.id, shownAt: Math.round(performance.timeOrigin + performance.now())}},
      h('td', {}, eventLink(event.id)), h('td', {}, fmtTime(event.time_unix_nano)), h('td', {}, typeChip(event.type)),
      h('td', {}, event.stream ?? ''), h('td', {}, event.key ?? ''),
      h('td', {}, event.parents.slice(0, 5).flatMap((p, i) => i ? [' ', eventLink(p)] : [eventLink(p)]), event.parents.length > 5 ? ` +${event.parents.length - 5}` : ''),
      h('td', {class: 'message'}, (event.message ?? '').slice(0, 120)));
    body.prepend(row);
    while (body.rows.length > ROWS_MAX) body.lastElementChild.remove();
    count.textContent = `${received} received, ${body.rows.length} shown`;
  }

  form.addEventListener('submit', e => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (type.value.trim()) q.set('type', type.value.trim());
    if (stream.value.trim()) q.set('stream', stream.value.trim());
    navigate(`/ui/tail${q.size ? '?' + q : ''}`, {replace: true, quiet: true});
    clear(body);
    received = 0;
    after = null;
    restart();
  });

  pause.addEventListener('click', () => { paused = !paused; restart(); });

  await restart();
  return () => { serial++; if (source) source.close(); };
}
