// /ui/maintenance: snapshots and compactions. Their history is the `banyan.maintenance` stream
// (read at most PAGES pages of PAGE events at a time), newest first; the archives and the jobs
// (GET /v1/admin/snapshots, /v1/admin/jobs) need the admin role, and a 403 there leaves the rest.
import {api} from './api.js';
import {h, clear, errorBox, eventLink, fmtTime, fmtBytes, fmtNumber, fmtISO, fmtMs, typeChip, jsonTree, table, poll} from './dom.js';

const STREAM = 'banyan.maintenance';
const PAGE = 1000, PAGES = 20, KEPT_MAX = 20000, POLL_MS = 3000;
const ADMIN = 'see snapshots and jobs (admin role)';


export async function render(main) {
  const jobs = h('section', {id: 'jobs'}), snapshots = h('section', {id: 'snapshots'}), history = h('section', {id: 'maint-history'});
  const refresh = h('button', {type: 'button', id: 'maint-refresh'}, 'Refresh');
  main.append(h('div', {class: 'row'}, h('h1', {}, 'Maintenance'), refresh), jobs, snapshots, history);

  const events = [];  // oldest first
  let after = null, cut = false, seen = null, note = '', reading = null;

  // Reads on from where the last read stopped: until `next` reaches `last_id`, or PAGES pages.
  // One read at a time (a second caller shares it), so no page is read twice.
  const readHistory = () => reading ??= readOn().finally(() => { reading = null; });
  async function readOn() {
    try {
      // A pruned store holds nothing below first_id, and refuses reads that start there (410).
      if (after === null) {
        const status = await api('/v1/status');
        after = Math.max(0, (status.first_id ?? 1) - 1);
        if (after) note = `The store was pruned below #${status.first_id}: earlier maintenance events are only in its snapshots.`;
      }
      cut = true;
      for (let page = 0; page < PAGES; page++) {
        const r = await api(`/v1/events?stream=${encodeURIComponent(STREAM)}&after=${after}&limit=${PAGE}`);
        events.push(...r.events);
        after = r.next;
        if (r.next >= r.last_id) { cut = false; break; }
      }
      if (events.length > KEPT_MAX) events.splice(0, events.length - KEPT_MAX);
      drawHistory(history, events, cut);
      if (note) history.append(h('p', {class: 'muted', id: 'maint-pruned'}, note));
    } catch (e) {
      if (e.status === 410) { after = null; events.length = 0; }  // pruned meanwhile: read again from its start
      clear(history).append(h('h2', {}, 'History'), errorBox(e, `read the ${STREAM} stream`));
    }
  }

  async function readSnapshots() {
    clear(snapshots).append(h('h2', {}, 'Snapshots'));
    try {
      drawSnapshots(snapshots, await api('/v1/admin/snapshots'));
    } catch (e) {
      snapshots.append(errorBox(e, ADMIN));
    }
  }

  // Jobs are polled while the page is open; when one starts or ends, the rest is read again.
  // Without the admin role there is nothing to poll; any other failure (a restart) is retried.
  const poller = poll(async stale => {
    let list;
    try {
      list = await api('/v1/admin/jobs');
    } catch (e) {
      if (stale()) return false;
      clear(jobs).append(h('h2', {}, 'Jobs'), errorBox(e, ADMIN));
      if (seen === null) { seen = ''; await Promise.all([readHistory(), readSnapshots()]); }
      return e.status !== 403;
    }
    if (stale()) return;
    drawJobs(jobs, list);
    const now = `${list.running?.id}/${list.recent[0]?.id}`;
    if (now !== seen) { seen = now; await Promise.all([readHistory(), readSnapshots()]); }
    main.dataset.polled = String(Number(main.dataset.polled || 0) + 1);
  }, POLL_MS);
  refresh.addEventListener('click', () => { seen = null; poller.run(); });
  await poller.run();
  return poller.stop;
}

// What a maintenance event says, in words: the payloads of banyan.{snapshot,compaction}.*.
function summary(e) {
  const p = e.payload || {};
  if (e.compacted) return 'compacted (payload dropped)';
  if (e.type.endsWith('.failed')) return `failed: ${p.error ?? ''}`;
  if (e.type.endsWith('.started')) {
    const s = p.spec;
    return [`requested by ${p.requested_by ?? '–'}`, s && s.before != null ? `before #${s.before}` : null,
      s && s.older_than_unix_nano != null ? `older than ${fmtTime(s.older_than_unix_nano)}` : null,
      s && s.stream ? `stream ${s.stream}` : null, s && s.type ? `type ${s.type}` : null].filter(Boolean).join(', ');
  }
  if (e.type === 'banyan.snapshot.finished') {
    const pr = p.pruned;
    return `${p.name}: archive ${fmtBytes(p.archive_bytes)}, image ${fmtBytes(p.image_bytes)}, ${fmtNumber(p.files)} files; checkpoint ${fmtMs(p.checkpoint_ms)}, took ${fmtMs(p.duration_ms)}`
      + (p.removed?.length ? `; removed ${p.removed.join(', ')}` : '')
      + (pr ? `; pruned below #${pr.first_id}: ${fmtNumber(pr.events_removed)} events, ${fmtBytes(pr.bytes_before)} → ${fmtBytes(pr.bytes_after)}${pr.note ? ` (${pr.note})` : ''}` : '');
  }
  if (e.type === 'banyan.compaction.finished') {
    return `${fmtNumber(p.compacted)} of ${fmtNumber(p.examined)} events compacted; records ${fmtBytes(p.record_bytes_before)} → ${fmtBytes(p.record_bytes_after)}, `
      + `log ${fmtBytes(p.log_bytes_before)} → ${fmtBytes(p.log_bytes_after)}, ${fmtBytes(p.bytes_reclaimed)} reclaimed; took ${fmtMs(p.duration_ms)}`;
  }
  return '';
}

function drawHistory(el, events, cut) {
  clear(el).append(h('h2', {}, 'History ', h('small', {class: 'muted'}, `${fmtNumber(events.length)} events in ${STREAM}, newest first`)));
  if (cut) el.append(h('p', {class: 'warn', id: 'maint-cut'}, `The list was cut after ${PAGES} pages of ${fmtNumber(PAGE)}: newer events were not read yet. Refresh reads on.`));
  if (!events.length) return el.append(h('p', {class: 'muted'}, 'No snapshot or compaction has been recorded.'));
  el.append(table('maint-events', ['event', 'time', 'type', 'job', 'what'], events.slice().reverse().map(e => h('tr', {dataset: {eventId: e.id, type: e.type}},
    h('td', {}, eventLink(e.id)), h('td', {}, fmtTime(e.time_unix_nano)), h('td', {}, typeChip(e.type)), h('td', {}, e.payload?.job ?? ''),
    h('td', {class: 'message'}, summary(e), e.payload ? h('details', {}, h('summary', {}, 'payload'), jsonTree(e.payload, 1)) : null)))));
}

function drawSnapshots(el, r) {
  el.append(h('p', {class: 'muted'}, `In ${r.snapshot_dir}; the server keeps the newest ${r.keep}.`));
  if (!r.snapshots.length) return el.append(h('p', {class: 'muted'}, 'No snapshots.'));
  el.append(table('snapshot-list', ['name', 'snapshot id', 'first id', 'epoch', 'created', 'archive', 'image', 'files'], r.snapshots.map(s => h('tr', {dataset: {name: s.name}},
    h('td', {}, s.name), ...(s.error ? [h('td', {colspan: 7, class: 'warn'}, `unreadable: ${s.error} (${fmtBytes(s.archive_bytes)})`)]
      : [fmtNumber(s.snapshot_id), fmtNumber(s.first_id), s.epoch, fmtISO(s.created_at), fmtBytes(s.archive_bytes), fmtBytes(s.image_bytes), fmtNumber(s.files)].map(v => h('td', {}, v)))))));
}

// The running job and the recent ones (GET /v1/admin/jobs); the overview shows the same table.
export function drawJobs(el, r) {
  clear(el).append(h('h2', {}, 'Jobs'));
  const j = r.running;
  if (j) {
    const bar = h('progress', {max: j.total || 1, value: j.total ? j.done : 0});
    el.append(h('p', {id: 'job-running', dataset: {job: j.id}}, h('strong', {}, `Running: ${j.kind}`), ` ${j.id}, ${j.phase}, `, bar,
      j.total ? (j.unit === 'bytes' ? ` ${fmtBytes(j.done)} of ${fmtBytes(j.total)}` : ` ${fmtNumber(j.done)} of ${fmtNumber(j.total)} ${j.unit}`) : '', `; started ${fmtISO(j.started_at)} by ${j.requested_by}`));
  }
  if (!r.recent.length) return el.append(h('p', {class: 'muted'}, j ? '' : 'No job has run since the server started.'));
  el.append(table('job-list', ['job', 'kind', 'state', 'by', 'started', 'took', 'outcome'], r.recent.map(o => h('tr', {dataset: {job: o.id, state: o.state}},
    [o.id, o.kind, h('span', {class: 'st', dataset: {state: o.state}}, o.state), o.requested_by, fmtISO(o.started_at), fmtMs(o.duration_ms)].map(v => h('td', {}, v)),
    h('td', {class: o.error ? 'message warn' : 'message'}, o.error ? String(o.error) : summary({type: `banyan.${o.kind}.finished`, payload: o.result}))))));
}
