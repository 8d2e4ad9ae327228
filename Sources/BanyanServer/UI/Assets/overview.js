// /ui/: the node at a glance, refreshed every POLL_MS from /v1/status and /metrics: role and
// epoch, the ingest rate since the page opened (a live chart), disk use, followers and their lag,
// open streams, error answers, maintenance jobs.
import {api} from './api.js';
import {h, clear, fmtBytes, fmtNumber, fmtSeconds, errorBox, table, poll} from './dom.js';
import {drawJobs} from './maintenance.js';

const POLL_MS = 2000;
// Samples kept for the chart: 5 minutes at one per POLL_MS.
const SAMPLES_MAX = 150;

export async function render(main) {
  const cards = h('div', {class: 'cards', id: 'cards'});
  const chart = h('div', {class: 'chart', id: 'ingest-chart'});
  const rate = h('span', {id: 'ingest-rate'}, '–');
  const replication = h('section', {id: 'replication'});
  const errors = h('section', {id: 'errors'});
  const jobs = h('section', {id: 'jobs'});
  main.append(h('h1', {}, 'Overview'), cards,
    h('h2', {}, 'Ingest ', h('small', {class: 'muted'}, 'events/s since this page opened: '), rate), chart,
    replication, errors, jobs);

  const samples = [];  // [ms, last_id]
  let firstErrors = null;
  const poller = poll(async stale => {
    try {
      const status = await api('/v1/status');
      if (stale()) return;
      samples.push([performance.now(), status.last_id]);
      if (samples.length > SAMPLES_MAX + 1) samples.shift();
      drawCards(cards, status);
      drawChart(chart, rate, samples);
      drawReplication(replication, status);
      const metrics = await api('/metrics', {text: true}).catch(e => e);
      if (stale()) return;
      drawErrors(errors, metrics, firstErrors ??= metrics instanceof Error ? null : errorCounts(metrics));
      const jobList = await api('/v1/admin/jobs').catch(e => e);
      if (stale()) return;
      if (jobList instanceof Error) clear(jobs).append(h('h2', {}, 'Maintenance jobs'), errorBox(jobList, 'see maintenance jobs (admin role)'));
      else drawJobs(jobs, jobList);
      main.dataset.polled = String(Number(main.dataset.polled || 0) + 1);
    } catch (error) {
      if (!stale()) clear(cards).append(errorBox(error, 'read the status'));
    }
  }, POLL_MS);
  await poller.run();
  return poller.stop;
}

function card(label, value, id) {
  return h('div', {class: 'card', dataset: {card: id}}, h('div', {class: 'label'}, label), h('div', {class: 'value'}, value));
}

function drawCards(cards, s) {
  clear(cards).append(
    card('role', s.role, 'role'),
    card('epoch', String(s.epoch), 'epoch'),
    card('leader', s.leader ?? 'unknown', 'leader'),
    card('last id', fmtNumber(s.last_id), 'last_id'),
    card('first id', fmtNumber(s.first_id) + (s.pruned ? ' (pruned)' : ''), 'first_id'),
    card('edges · roots · heads', `${fmtNumber(s.edges)} · ${fmtNumber(s.roots)} · ${fmtNumber(s.heads)}`, 'shape'),
    card('disk', fmtBytes(s.disk_bytes), 'disk'),
    card('durability', s.durability, 'durability'),
    card('streams open', String(s.streams), 'streams'),
    card('up for', fmtSeconds(s.uptime_seconds), 'uptime'),
    card('version', s.version, 'version'));
}

// The rate between successive samples, as an SVG line with its scale.
function drawChart(chart, rateLabel, samples) {
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i][0] - samples[i - 1][0]) / 1000;
    rates.push(dt > 0 ? Math.max(0, samples[i][1] - samples[i - 1][1]) / dt : 0);
  }
  rateLabel.textContent = rates.length ? `${fmtNumber(Math.round(rates[rates.length - 1]))}/s now` : 'measuring…';
  const width = 600, height = 120, top = Math.max(10, ...rates);
  const step = width / SAMPLES_MAX;
  const points = rates.map((r, i) => `${(width - (rates.length - 1 - i) * step).toFixed(1)},${(height - (r / top) * (height - 10)).toFixed(1)}`).join(' ');
  chart.innerHTML = `<svg viewBox="0 0 ${width} ${height + 16}" role="img" aria-label="ingest rate, events per second">`
    + `<line class="axis" x1="0" y1="${height}" x2="${width}" y2="${height}"/>`
    + `<text class="scale" x="4" y="12">${fmtNumber(Math.round(top))}/s</text>`
    + `<text class="scale" x="4" y="${height + 14}">${fmtSeconds((SAMPLES_MAX * POLL_MS) / 1000)} ago</text><text class="scale" x="${width - 4}" y="${height + 14}" text-anchor="end">now</text>`
    + (rates.length ? `<polyline class="rate" points="${points}"/>` : '')
    + '</svg>';
  chart.dataset.samples = String(rates.length);
}

function drawReplication(section, s) {
  clear(section).append(h('h2', {}, 'Replication'));
  if (s.role === 'follower' || s.applied_id !== undefined) {
    section.append(h('p', {}, `Following ${s.leader ?? 'no known leader'}: applied ${fmtNumber(s.applied_id)}, durable ${fmtNumber(s.durable_id)}, behind by ${fmtNumber(s.lag_ids)} ids (${fmtSeconds(s.lag_seconds)}), last contact ${fmtSeconds(s.last_contact_seconds)} ago.`));
    return;
  }
  const followers = s.followers || [];
  if (!followers.length) { section.append(h('p', {class: 'muted'}, 'No followers.')); return; }
  section.append(table('followers', ['follower', 'applied', 'durable', 'lag (ids)', 'lag', 'last contact'],
    followers.map(f => h('tr', {}, h('td', {}, f.url), h('td', {}, fmtNumber(f.applied_id)), h('td', {}, fmtNumber(f.durable_id)),
      h('td', {}, fmtNumber(f.lag_ids)), h('td', {}, fmtSeconds(f.lag_seconds)), h('td', {}, `${fmtSeconds(f.last_contact_seconds)} ago`)))));
}

// Error answers by route, method and status, from the request-duration histogram's counts.
function errorCounts(text) {
  const counts = new Map();
  const re = /^banyan_http_request_duration_seconds_count\{route="([^"]*)",method="([^"]*)",status="(\d+)"\} (\d+)/gm;
  for (const m of text.matchAll(re)) if (Number(m[3]) >= 400) counts.set(`${m[2]} ${m[1]} ${m[3]}`, Number(m[4]));
  return counts;
}

function drawErrors(section, metrics, first) {
  clear(section).append(h('h2', {}, 'Error answers'));
  if (metrics instanceof Error) { section.append(errorBox(metrics, 'read /metrics')); return; }
  const now = errorCounts(metrics);
  if (!now.size) { section.append(h('p', {class: 'muted'}, 'None since the server started.')); return; }
  const rows = [...now].sort((a, b) => b[1] - a[1]).map(([what, n]) => h('tr', {}, h('td', {}, what), h('td', {}, fmtNumber(n)), h('td', {}, `+${fmtNumber(n - (first.get(what) ?? 0))}`)));
  section.append(table('error-answers', ['request and status', 'since start', 'since this page opened'], rows));
}
