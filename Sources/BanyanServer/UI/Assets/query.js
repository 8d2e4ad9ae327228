// /ui/query?q=…: the query console (docs/QUERY_LANGUAGE.md): run, explain, page through `next`
// cursors, errors at their line and column, event answers drawn as a graph.
import {query, ApiError} from './api.js';
import {h, clear, eventLink, fmtTime, typeChip, errorBox, navigate, fmtNumber, table} from './dom.js';
import {drawGraph} from './graph.js';

// Each is in docs/QUERY_LANGUAGE.md, "Examples" (a browser test checks).
const EXAMPLES = [
  'ancestors(42)',
  'ancestors(key "8bc9a0c7...") where type = "merge" limit 100',
  'descendants(42, depth <= 3) where payload.status = "error" and time >= "2026-01-01T00:00:00Z"',
  'path(12, 99)',
  'paths(12, 99) limit 10',
  'between(12, 99)',
  'roots(ancestors(42))',
  'count(descendants(7))',
  'events where stream = "job_events:job_001" order by id desc limit 20',
  'explain ancestors(42) where type = "merge"',
];
const GRAPH_NODES_MAX = 2000;

export async function render(main, params, url) {
  const text = h('textarea', {id: 'query-text', rows: 4, spellcheck: 'false', 'aria-label': 'Query text'});
  text.value = url.searchParams.get('q') || '';
  const pageSize = h('select', {id: 'page-size', 'aria-label': 'Page size'}, [20, 100, 1000].map(n => h('option', {value: n, selected: n === 100}, `${n} per page`)));
  const run = h('button', {type: 'submit', id: 'run'}, 'Run');
  const explain = h('button', {type: 'button', id: 'explain'}, 'Explain');
  const form = h('form', {class: 'query-form'}, text, h('div', {class: 'row'}, run, explain, pageSize, h('span', {class: 'muted'}, 'Ctrl+Enter runs')));
  const examples = h('details', {class: 'examples'}, h('summary', {}, 'Examples'),
    h('ul', {}, EXAMPLES.map(example => h('li', {}, h('button', {type: 'button', class: 'link example', onclick: () => { text.value = example; text.focus(); }}, example)))));
  const out = h('section', {id: 'query-output', 'aria-live': 'polite'});
  main.append(h('h1', {}, 'Query'), form, examples, out);

  let cursors = [];  // the cursor of each page shown so far; cursors[0] is null (the first page)
  const submit = async (body, label) => {
    const textValue = text.value.trim();
    if (!textValue) return;
    navigate(`/ui/query?q=${encodeURIComponent(textValue)}`, {replace: true, quiet: true});
    clear(out).append(h('p', {class: 'muted'}, `${label}…`));
    out.dataset.state = 'running';
    const started = performance.now();
    try {
      const answer = await query(body(textValue), {page_size: Number(pageSize.value), cursor: cursors[cursors.length - 1] ?? undefined, include: ['stream']});
      show(answer, textValue, performance.now() - started);
      out.dataset.state = 'done';
    } catch (error) {
      clear(out).append(errorAt(error, text));
      out.dataset.state = 'error';
    }
  };
  const first = () => { cursors = [null]; return submit(t => t, 'Running'); };
  form.addEventListener('submit', e => { e.preventDefault(); first(); });
  text.addEventListener('keydown', e => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); first(); } });
  explain.addEventListener('click', () => { cursors = [null]; submit(t => t.startsWith('explain ') ? t : `explain ${t}`, 'Explaining'); });

  function show(answer, textValue, ms) {
    clear(out);
    const stats = answer.stats || {};
    out.append(h('p', {class: 'stats'},
      `${ms.toFixed(0)} ms · visited ${fmtNumber(stats.visited)} · snapshot ${fmtNumber(stats.snapshot)}`,
      answer.truncated ? h('strong', {class: 'warn'}, ` · truncated: ${stats.reason || 'budget spent'}`) : '',
      stats.compacted ? ` · ${stats.compacted} compacted events left unknown (${stats.horizon})` : ''));
    if (answer.plan !== undefined) { out.append(h('pre', {class: 'plan'}, answer.plan)); return; }
    if (answer.count !== undefined) { out.append(h('p', {class: 'count'}, h('strong', {}, fmtNumber(answer.count)), ' events')); return; }
    if (answer.paths !== undefined) {
      out.append(h('ol', {class: 'paths'}, answer.paths.map(p => h('li', {}, `${p.length - 1} hops: `, p.flatMap((id, i) => i ? [' → ', eventLink(id)] : [eventLink(id)])))));
    } else {
      const rows = answer.results.map(e => h('tr', {}, h('td', {}, eventLink(e.id)), h('td', {}, fmtTime(e.time_unix_nano)), h('td', {}, typeChip(e.type)), h('td', {}, e.key ?? ''), h('td', {}, e.stream ?? '')));
      out.append(table('results', ['id', 'time', 'type', 'key', 'stream'], rows));
      if (answer.results.length) {
        const asGraph = h('button', {type: 'button', id: 'as-graph'}, 'Open as graph');
        asGraph.addEventListener('click', () => graph(textValue));
        out.append(h('div', {class: 'row'}, asGraph));
      }
    }
    const pages = h('div', {class: 'row pager'}, `page ${cursors.length}`);
    if (cursors.length > 1) pages.append(h('button', {type: 'button', id: 'prev', onclick: () => { cursors.pop(); submit(t => t, 'Loading'); }}, 'Previous page'));
    if (answer.next) pages.append(h('button', {type: 'button', id: 'next', onclick: () => { cursors.push(answer.next); submit(t => t, 'Loading'); }}, 'Next page'));
    out.append(pages);
  }

  async function graph(textValue) {
    const area = h('div', {class: 'graph-area'});
    const note = h('p', {class: 'muted'}, 'Drawing…');
    out.append(note, area);
    try {
      const answer = await query(textValue, {page_size: GRAPH_NODES_MAX, include: ['parents']});
      note.textContent = `${fmtNumber(answer.results.length)} events` + (answer.next ? ` (the first ${fmtNumber(GRAPH_NODES_MAX)})` : '') + ', links between them. Click a node to open it.';
      drawGraph(area, {nodes: answer.results, onOpen: id => navigate(`/ui/events/${id}`)});
      area.scrollIntoView({block: 'nearest'});
    } catch (error) {
      note.replaceWith(errorBox(error, 'run queries'));
    }
  }

  // A linked query (?q=) is part of the page: it is drawn once its answer is.
  if (text.value) await first();
}

// The server's error, with the caret at its line and column in the text.
function errorAt(error, text) {
  const body = error instanceof ApiError && error.body && typeof error.body === 'object' ? error.body : null;
  if (!body || body.line === undefined) return errorBox(error, 'run queries');
  const lines = text.value.split('\n');
  let offset = 0;
  for (let i = 0; i < body.line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  offset += Math.max(0, body.column - 1);
  text.focus();
  text.setSelectionRange(offset, Math.min(text.value.length, offset + 1));
  const box = errorBox(error, 'run queries');
  box.id = 'query-error';
  box.dataset.line = body.line;
  box.dataset.column = body.column;
  box.insertBefore(h('div', {class: 'where'}, `line ${body.line}, column ${body.column}`), box.children[1] || null);
  return box;
}
