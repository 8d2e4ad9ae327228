// /ui/events/{id} and /ui/events/by-key/{key}: one event, its parents and children, and its
// lineage graph to a chosen depth.
import {api, query, ApiError} from './api.js';
import {h, clear, eventLink, fmtTime, typeChip, errorBox, jsonTree, navigate, fmtNumber} from './dom.js';
import {drawGraph} from './graph.js';

const LINKS_SHOWN = 50;
const LINKS_MAX = 1000;
// Deep enough for wide histories; the node cap bounds what is drawn.
const DEPTH_MAX = 1000;

export async function render(main, params, url) {
  let event;
  try {
    event = params.key !== undefined
      ? await api(`/v1/events/by-key/${encodeURIComponent(params.key)}`)
      : await api(`/v1/events/${params.id}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      main.append(h('h1', {}, 'No such event'), h('p', {}, params.key !== undefined ? `No event has the key “${params.key}”.` : `There is no event ${params.id}.`));
      return;
    }
    throw error;
  }
  const id = event.id;
  if (!main.isConnected) return;  // the visitor moved on while the event loaded
  document.title = `#${id} ${event.type} · Banyan`;
  const children = await api(`/children/${id}`).catch(() => null);

  main.append(h('h1', {}, `Event #${id} `, typeChip(event.type)));
  const facts = h('dl', {class: 'facts'});
  const fact = (name, ...value) => facts.append(h('dt', {}, name), h('dd', {}, ...value));
  fact('id', String(id));
  fact('type', event.type);
  fact('time', fmtTime(event.time_unix_nano));
  if (event.stream !== undefined) fact('stream', event.stream);
  if (event.key !== undefined) fact('key', h('code', {}, event.key));
  fact('compacted', event.compacted ? `yes (dropped: ${(event.dropped || []).join(', ') || '–'})` : 'no');
  fact('parents', event.parents.length ? links(event.parents) : h('span', {class: 'muted'}, 'none (a root)'));
  fact('children', children === null ? h('span', {class: 'muted'}, 'unknown') : children.length ? links(children, ' ', LINKS_SHOWN, `descendants(${id}, depth <= 1)`) : h('span', {class: 'muted'}, 'none yet (a head)'));
  main.append(facts);
  if (event.message !== undefined) main.append(h('h2', {}, 'Message'), h('pre', {class: 'message'}, event.message));
  if (event.payload !== undefined) main.append(h('h2', {}, 'Payload'), h('div', {class: 'payload'}, jsonTree(event.payload, 3)));

  const upDepth = clamp(Number(url.searchParams.get('up') ?? 3));
  const downDepth = clamp(Number(url.searchParams.get('down') ?? 3));
  const nodesMax = Math.max(10, Math.min(10000, Number(url.searchParams.get('nodes') ?? 2000) || 2000));
  const controls = h('form', {class: 'row graph-controls'},
    h('label', {}, 'ancestors to depth ', h('input', {name: 'up', type: 'number', min: 0, max: DEPTH_MAX, value: upDepth})),
    h('label', {}, 'descendants to depth ', h('input', {name: 'down', type: 'number', min: 0, max: DEPTH_MAX, value: downDepth})),
    h('label', {}, 'at most ', h('input', {name: 'nodes', type: 'number', min: 10, max: 10000, value: nodesMax}), ' nodes'),
    h('button', {type: 'submit'}, 'Draw'));
  controls.addEventListener('submit', e => {
    e.preventDefault();
    const form = new FormData(controls);
    const next = new URL(location.href);
    for (const name of ['up', 'down', 'nodes']) next.searchParams.set(name, form.get(name));
    navigate(next.pathname + next.search, {replace: true});
  });
  const note = h('p', {class: 'muted graph-note'});
  const pathInfo = h('p', {class: 'path-info', 'aria-live': 'polite'}, 'Shift-click (or Space on) two nodes to highlight the path between them.');
  const area = h('div', {class: 'graph-area'});
  main.append(h('h2', {}, 'Lineage'), controls, note, pathInfo, area);

  const [ancestors, descendants] = await Promise.all([lineage('ancestors', id, upDepth, nodesMax), lineage('descendants', id, downDepth, nodesMax)]);
  const told = (a, name, asked) => `${fmtNumber(a.results.length)} ${name} (depth ≤ ${a.depth}${a.depth < asked ? `, lowered from ${asked} to stay within ${fmtNumber(nodesMax)} nodes` : ''})`;
  note.textContent = `${told(ancestors, 'ancestors', upDepth)} and ${told(descendants, 'descendants', downDepth)}. Drag to pan, wheel to zoom, click a node to open it.`;
  const nodes = [{id, type: event.type, key: event.key, parents: event.parents}, ...ancestors.results, ...descendants.results];
  let pathAsked = 0;
  const graph = drawGraph(area, {
    nodes, focus: id,
    up: new Set(ancestors.results.map(n => n.id)),
    down: new Set(descendants.results.map(n => n.id)),
    onOpen: target => navigate(`/ui/events/${target}`),
    onSelect: async selected => {
      const mine = ++pathAsked;  // a later selection's answer wins
      if (selected.length < 2) { pathInfo.textContent = selected.length ? `Selected #${selected[0]}; select one more.` : ''; return; }
      const [a, b] = [...selected].sort((x, y) => x - y);
      try {
        const answer = await query(`path(${a}, ${b})`);
        if (mine !== pathAsked) return;
        const path = (answer.paths && answer.paths[0]) || [];
        if (!path.length) { graph.highlight([]); clear(pathInfo).append(`No path from #${a} to #${b}: neither descends from the other.`); return; }
        const shown = graph.highlight(path);
        clear(pathInfo).append(`Path from #${a} to #${b}: ${path.length - 1} hops`, shown < path.length ? ` (${path.length - shown} of its events are outside the graph)` : '', ': ', links(path, ' → '));
      } catch (error) {
        clear(pathInfo).append(errorBox(error, 'run queries'));
      }
    },
  });
  performance.mark('banyan-graph-drawn');
  area.dataset.drawn = 'true';
}

// The events within `depth` hops, with their parents. When there are more than `nodesMax`, the
// depth is lowered (a binary search over counts) so the graph is whole around the event rather
// than a cut through it.
async function lineage(direction, id, depth, nodesMax) {
  if (depth === 0) return {results: [], depth};
  const fetch = d => query(`${direction}(${id}, depth <= ${d})`, {page_size: nodesMax, include: ['parents']});
  const answer = await fetch(depth);
  if (!answer.next && !answer.truncated) return {results: answer.results, depth};
  let [low, high] = [0, depth - 1];  // the largest depth whose count fits is in [low, high]
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    const {count} = await query(`count(${direction}(${id}, depth <= ${mid}))`);
    if (count <= nodesMax) low = mid; else high = mid - 1;
  }
  return low === 0 ? {results: [], depth: 0} : {results: (await fetch(low)).results, depth: low};
}

function clamp(n) { return Math.max(0, Math.min(DEPTH_MAX, Number.isFinite(n) ? Math.floor(n) : 3)); }

// Links to events: the first LINKS_SHOWN, then "+N more" shows up to LINKS_MAX, and past that
// a link to the query console holds the rest (a fan-out can be any size).
function links(ids, separator = ' ', shown = LINKS_SHOWN, rest = null) {
  const span = h('span', {class: 'links'});
  ids.slice(0, shown).forEach((x, i) => { if (i) span.append(separator); span.append(eventLink(x)); });
  if (ids.length > shown && shown < LINKS_MAX) {
    const more = h('button', {type: 'button', class: 'link'}, `+${ids.length - shown} more`);
    more.addEventListener('click', () => span.replaceWith(links(ids, separator, LINKS_MAX, rest)));
    span.append(' ', more);
  } else if (ids.length > shown) {
    span.append(` … and ${ids.length - shown} more`, rest ? [' (', h('a', {href: `/ui/query?q=${encodeURIComponent(rest)}`}, rest), ')'] : '');
  }
  return span;
}
