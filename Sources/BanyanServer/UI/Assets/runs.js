// /ui/runs: the run history (GET /v1/runs), filtered, paged by cursor. /ui/runs/{id}: one run,
// polled every POLL_MS until it ends: facts, the task DAG, a timeline of attempts, and actions.
import {api} from './api.js';
import {h, clear, navigate, errorBox, fmtNumber, fmtSeconds, fmtISO, fmtMs, jsonTree, table, poll} from './dom.js';
import {layered} from './graph.js';

const POLL_MS = 2000;
const STATES = ['pending', 'running', 'paused', 'cancelling', 'completed', 'failed', 'cancelled'];
const ENDED = new Set(['completed', 'failed', 'cancelled']);
const TASKS_MAX = 2000, BARS_MAX = 500;

export async function render(main, params, url) {
  return params.run === undefined ? list(main, url) : run(main, params.run);
}

// A 404 that is not a JSON error is a missing route: the server has no workflow API.
const noWorkflows = e => e.status === 404 && !(e.body && typeof e.body === 'object');
const disabled = () => h('p', {id: 'runs-disabled', class: 'notice'}, 'Workflows are not enabled on this server (banyan serve --workflows).');
const word = s => String(s).split(' ')[0];
const chip = (s, id) => h('span', {class: 'st', id, dataset: {state: word(s)}}, s);
const runLink = r => h('a', {href: `/ui/runs/${encodeURIComponent(r)}`}, r);

async function list(main, url) {
  const q = url.searchParams;
  const limit = Math.min(1000, Math.max(1, Number(q.get('limit')) || 50));
  const workflow = h('input', {id: 'runs-workflow', name: 'workflow', placeholder: 'any workflow', value: q.get('workflow') || ''});
  const boxes = STATES.map(s => h('input', {type: 'checkbox', name: 'status', value: s, checked: (q.get('status') || '').split(',').includes(s)}));
  const form = h('form', {id: 'runs-filter', class: 'row'}, h('label', {}, 'workflow ', workflow),
    h('fieldset', {class: 'states'}, h('legend', {class: 'sr'}, 'status'), boxes.map(b => h('label', {}, b, ' ', chip(b.value)))),
    h('button', {type: 'submit'}, 'Apply'));
  const total = h('div', {id: 'runs-total', role: 'status'});
  const rows = h('tbody', {id: 'runs-rows'});
  const prev = h('button', {type: 'button', id: 'runs-prev'}, '← Previous');
  const next = h('button', {type: 'button', id: 'runs-next'}, 'Next →');
  main.append(h('h1', {}, 'Runs'), form, total, table('runs-table', ['run', 'workflow', 'state', 'version', 'requested', 'took', 'error'], rows), h('div', {class: 'row'}, prev, next));

  let cursors = [null];  // the cursor of each page so far; the last is this page's
  async function load() {
    const p = new URLSearchParams();
    if (workflow.value.trim()) p.set('workflow', workflow.value.trim());
    const states = boxes.filter(b => b.checked).map(b => b.value);
    if (states.length) p.set('status', states.join(','));
    if (limit !== 50) p.set('limit', limit);
    navigate(`/ui/runs${p.size ? '?' + p : ''}`, {replace: true, quiet: true});
    p.set('limit', limit);
    if (cursors.at(-1) !== null) p.set('cursor', cursors.at(-1));
    let page;
    try {
      page = await api(`/v1/runs?${p}`);
    } catch (e) {
      if (noWorkflows(e)) main.replaceChildren(h('h1', {}, 'Runs'), disabled());
      else { total.replaceChildren(errorBox(e, 'read runs')); clear(rows); }
      return;
    }
    const from = (cursors.length - 1) * limit;
    total.textContent = page.total ? `${fmtNumber(page.total)} runs; ${fmtNumber(from + 1)}–${fmtNumber(from + page.runs.length)} shown (page ${cursors.length})` : 'No runs match.';
    prev.disabled = cursors.length === 1;
    next.disabled = !page.next_cursor;
    next.dataset.cursor = page.next_cursor ?? '';
    clear(rows).append(...page.runs.map(r => h('tr', {dataset: {run: r.run, state: r.state}},
      h('td', {}, runLink(r.run), r.parent ? ' (child)' : ''), h('td', {}, r.workflow), h('td', {}, chip(r.state)),
      h('td', {}, r.version ?? '–'), h('td', {}, fmtISO(r.requested_at)), h('td', {}, fmtMs(r.duration_ms)), h('td', {class: 'message'}, r.error ?? ''))));
  }
  const restart = () => { cursors = [null]; load(); };
  form.addEventListener('submit', e => { e.preventDefault(); restart(); });
  for (const b of boxes) b.addEventListener('change', restart);
  prev.addEventListener('click', () => { if (cursors.length > 1) { cursors.pop(); load(); } });
  next.addEventListener('click', () => { if (next.dataset.cursor) { cursors.push(next.dataset.cursor); load(); } });
  await load();
}

async function run(main, id) {
  const path = `/v1/runs/${encodeURIComponent(id)}`;
  main.append(h('h1', {}, 'Run ', h('code', {}, id), ' ', h('a', {href: '/ui/runs', class: 'small'}, 'all runs')));
  let first;
  try {
    first = await api(path);
  } catch (e) {
    return void main.append(noWorkflows(e) ? disabled() : errorBox(e, 'read this run'));
  }
  const facts = h('div', {id: 'run-facts'}), dag = h('div', {id: 'run-dag', class: 'dag'});
  const tasks = h('div', {id: 'run-tasks'}), timeline = h('div', {id: 'run-timeline', class: 'timeline'});
  const status = h('div', {id: 'run-poll', class: 'muted small', role: 'status'});
  const inputs = h('dl', {class: 'facts', id: 'run-inputs'}, h('dt', {}, 'inputs'), h('dd', {}, jsonTree(first.inputs ?? {}, 1)));
  main.append(facts, inputs, actions(path, () => poller.run()), status, h('h2', {}, 'Tasks'),
    h('p', {class: 'legend small'}, ['pending', 'scheduled', 'started', 'retrying', 'completed', 'failed', 'cancelled', 'skipped', 'compensated'].map(s => chip(s))),
    dag, tasks, h('h2', {}, 'Attempts'), timeline);

  let drawn = '', initial = true;
  // An action refreshes at once while a poll may be under way: the latest call is drawn.
  const poller = poll(async stale => {
    try {
      const [r, t] = await Promise.all([initial ? first : api(path), api(`${path}/tasks`)]);
      initial = false;
      if (stale()) return;
      drawFacts(facts, r);
      main.dataset.runState = r.state;
      const key = JSON.stringify(t.tasks);
      if (key !== drawn) { drawn = key; drawDag(dag, t.tasks); drawTable(tasks, t.tasks); }
      drawTimeline(timeline, r, t.tasks);
      const ended = ENDED.has(r.state);
      for (const b of main.querySelectorAll('[data-live]')) b.disabled = ended;
      status.textContent = ended ? `The run ended: ${r.state}.` : `Live: refreshed every ${POLL_MS / 1000} s (last ${new Date().toLocaleTimeString()}).`;
      main.dataset.polled = String(Number(main.dataset.polled || 0) + 1);
      return !ended;
    } catch (e) {
      if (!stale()) status.replaceChildren(errorBox(e, 'read this run'));
    }
  }, POLL_MS);
  await poller.run();
  return poller.stop;
}

function drawFacts(el, r) {
  const p = r.progress || {};
  const bar = h('div', {class: 'progress', role: 'img', 'aria-label': `${p.completed} of ${p.total} tasks completed`});
  for (const k of ['completed', 'running', 'failed', 'skipped']) bar.appendChild(h('span', {dataset: {state: k}})).style.width = `${p.total ? (100 * (p[k] || 0)) / p.total : 0}%`;
  const parent = r.parent && r.parent.match(/^run\/([^/]+)\//);
  const row = (k, ...v) => [h('dt', {}, k), h('dd', {}, ...v)];
  clear(el).append(h('dl', {class: 'facts'},
    row('state', chip(r.state, 'run-state')),
    row('workflow', h('a', {href: `/ui/runs?workflow=${encodeURIComponent(r.workflow)}`}, r.workflow), ` version ${r.version ?? '– (from a file)'}, hash ${r.hash}`),
    r.error ? row('error', h('span', {class: 'warn', id: 'run-error'}, r.error)) : null,
    row('progress', h('div', {id: 'run-progress'}, bar, ['completed', 'running', 'failed', 'pending', 'skipped'].map(k => `${p[k] ?? 0} ${k}`).join(' · ') + ` of ${p.total ?? 0}`)),
    row('requested', fmtISO(r.requested_at)), row('started', fmtISO(r.started_at)), row('ended', fmtISO(r.ended_at)),
    row('took', fmtMs(r.duration_ms) + (r.ended_at ? '' : ' so far')),
    parent ? row('parent', runLink(parent[1])) : null));
}

function actions(path, refresh) {
  const result = h('div', {id: 'run-action-result', 'aria-live': 'polite'});
  const show = (outcome, node) => { result.dataset.outcome = outcome; result.replaceChildren(node); };
  async function act(label, sub, body) {
    show('pending', h('span', {class: 'muted'}, `${label}…`));
    try {
      const r = await api(path + sub, {method: 'POST', body});
      show('ok', h('span', {}, `${label}: ${r.recorded ? 'recorded' : 'nothing new to record (already so)'}.`));
      refresh();
    } catch (e) {
      show('error', errorBox(e, 'change runs (write role)'));
    }
  }
  const now = h('input', {type: 'checkbox', id: 'pause-now'});
  const reason = h('input', {id: 'cancel-reason', placeholder: 'reason (optional)'});
  const name = h('input', {id: 'signal-name', required: true, pattern: '[A-Za-z0-9_\\-]{1,128}', placeholder: 'approval'});
  const payload = h('textarea', {id: 'signal-payload', rows: 3, placeholder: '{"approved": true} (empty: null)'});
  const cancelForm = h('form', {id: 'cancel-form', class: 'row', hidden: true}, h('label', {}, 'reason ', reason), h('button', {type: 'submit', id: 'cancel-confirm'}, 'Cancel the run'));
  const signalForm = h('form', {id: 'signal-form', hidden: true}, h('label', {}, 'signal ', name),
    h('label', {class: 'block'}, 'payload (JSON) ', payload), h('button', {type: 'submit', id: 'signal-send'}, 'Send signal'));
  cancelForm.addEventListener('submit', e => {
    e.preventDefault();
    cancelForm.hidden = true;
    act('Cancel', '/cancel', reason.value.trim() ? {reason: reason.value.trim()} : undefined);
  });
  signalForm.addEventListener('submit', e => {
    e.preventDefault();
    let body = null;
    try { if (payload.value.trim()) body = JSON.parse(payload.value); } catch (error) {
      return show('error', h('div', {class: 'error', role: 'alert'}, `The payload is not JSON: ${error.message}`));
    }
    act(`Signal ${name.value.trim()}`, `/signals/${encodeURIComponent(name.value.trim())}`, body);
  });
  // Cancel… and Signal… open (or close) their small forms.
  const toggle = (form, input) => () => { form.hidden = !form.hidden; if (!form.hidden) input.focus(); };
  const button = (id, label, onclick, live = true) => h('button', {type: 'button', id, onclick, dataset: live ? {live: ''} : {}}, label);
  return h('section', {class: 'actions', 'aria-label': 'change the run'},
    h('div', {class: 'row'},
      button('run-pause', 'Pause', () => act('Pause', now.checked ? '/pause?now=true' : '/pause')),
      h('label', {class: 'small'}, now, ' stop running work'),
      button('run-resume', 'Resume', () => act('Resume', '/resume')),
      button('run-cancel', 'Cancel…', toggle(cancelForm, reason)),
      button('run-signal', 'Signal…', toggle(signalForm, name), false)),
    cancelForm, signalForm, result);
}

function svg(tag, attrs, ...kids) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...kids);
  return el;
}

function drawDag(el, all) {
  if (!all.length) return void clear(el).append(h('p', {class: 'muted'}, 'No tasks yet.'));
  const tasks = all.slice(0, TASKS_MAX);
  const at = new Map(tasks.map((t, i) => [t.id, i]));
  const needs = tasks.map(t => [...new Set((t.needs || []).filter(n => at.has(n) && n !== t.id))]);
  // Columns by dependency depth, left to right; in a column, ordered by where their needs are.
  const layers = layered(tasks.map((t, i) => i), i => needs[i].map(n => at.get(n)));
  const depth = [], y = [];
  const W = 156, H = 44, GX = 56, GY = 14;
  layers.forEach((layer, column) => layer.forEach((i, row) => { depth[i] = column; y[i] = row * (H + GY) + 4; }));
  const x = i => depth[i] * (W + GX) + 4;
  const width = layers.length * (W + GX) - GX + 8, height = Math.max(0, ...layers.map(l => l.length)) * (H + GY) - GY + 8;
  const pic = svg('svg', {id: 'run-dag-svg', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `graph of ${tasks.length} tasks, listed below`});
  needs.forEach((ns, i) => ns.forEach(n => {
    const j = at.get(n), x1 = x(j) + W, y1 = y[j] + H / 2, x2 = x(i), y2 = y[i] + H / 2, mx = (x1 + x2) / 2;
    pic.append(svg('path', {class: 'edge', 'data-from': n, 'data-to': tasks[i].id, d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`}));
  }));
  tasks.forEach((t, i) => {
    const n = t.attempts.length;
    pic.append(svg('g', {class: 'task', 'data-task': t.id, 'data-state': word(t.state), transform: `translate(${x(i)},${y[i]})`},
      svg('title', {}, `${t.id}: ${t.state}, ${n} attempt${n === 1 ? '' : 's'}${t.error ? ': ' + t.error : ''}`),
      svg('rect', {width: W, height: H, rx: 6}),
      svg('text', {x: 8, y: 17, class: 'name'}, t.id.length > 20 ? t.id.slice(0, 19) + '…' : t.id),
      svg('text', {x: 8, y: 34, class: 'sub'}, word(t.state) + (n > 1 ? ` · ${n} attempts` : ''))));
  });
  clear(el).append(pic);
  if (all.length > tasks.length) el.append(h('p', {class: 'muted'}, `The first ${TASKS_MAX} of ${all.length} tasks.`));
  if (tasks.length > 1 && needs.every(ns => !ns.length)) el.append(h('p', {class: 'muted small'}, 'No task waits for another (a Swift workflow\'s steps declare none).'));
}

function drawTable(el, tasks) {
  clear(el).append(table('run-tasks-table', ['task', 'state', 'attempts', 'took (last)', 'error', 'output (last)'],
    h('tbody', {}, tasks.slice(0, TASKS_MAX).map(t => {
      const last = t.attempts.at(-1), out = t.attempts.findLast(a => a.output !== undefined);
      return h('tr', {dataset: {task: t.id, state: word(t.state)}}, h('td', {}, t.id), h('td', {}, chip(t.state)), h('td', {}, t.attempts.length),
        h('td', {}, fmtMs(last?.duration_ms)), h('td', {class: 'message'}, t.error ?? last?.error ?? ''), h('td', {class: 'message'}, out ? jsonTree(out.output, 0) : ''));
    }))));
}

// A bar per attempt that started, from its start to its end (or now), over the run's span.
function drawTimeline(el, r, tasks) {
  const all = tasks.slice(0, TASKS_MAX).flatMap(t => t.attempts.filter(a => a.started_at).map(a => ({t, a, from: Date.parse(a.started_at), to: a.ended_at ? Date.parse(a.ended_at) : null})));
  const bars = all.sort((p, q) => p.from - q.from).slice(-BARS_MAX);
  clear(el);
  if (!bars.length) return el.append(h('p', {class: 'muted'}, 'No attempt has started yet.'));
  const end = r.ended_at ? Date.parse(r.ended_at) : Date.now();
  const t0 = Math.min(Date.parse(r.started_at || r.requested_at), bars[0].from);
  const span = Math.max(end, ...bars.map(b => b.to ?? end)) - t0 || 1;
  el.append(h('p', {class: 'muted small'}, `From ${fmtISO(new Date(t0).toISOString())}, over ${fmtSeconds(span / 1000)}`,
    all.length > bars.length ? `; the latest ${BARS_MAX} of ${all.length} attempts` : '', '.'));
  for (const {t, a, from, to} of bars) {
    const bar = h('span', {class: 'tl-bar', dataset: {state: a.state}, title: `${a.state}${a.error ? ': ' + a.error : ''}`});
    bar.style.left = `${(100 * (from - t0)) / span}%`;
    bar.style.width = `${Math.max(0.4, (100 * ((to ?? end) - from)) / span)}%`;
    el.append(h('div', {class: 'tl-row', dataset: {task: t.id, attempt: a.attempt, state: a.state}},
      h('span', {class: 'tl-label'}, `${t.id} #${a.attempt}`), h('span', {class: 'tl-track'}, bar),
      h('span', {class: 'tl-dur'}, `${a.state} ${to === null ? fmtMs(end - from) + '…' : fmtMs(a.duration_ms ?? to - from)}`)));
  }
}
