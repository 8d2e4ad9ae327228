// Lineage graphs in SVG: layers from the ids (ids are a topological order, so every edge goes
// down), large fan-outs folded into "+N more" nodes, pan and zoom, a path between two nodes.
import {esc, typeColor} from './dom.js';

const NODE_W = 132, NODE_H = 38, GAP_X = 18, GAP_Y = 46;
// Links of one node shown before the rest fold into a "+N more" node.
const FANOUT_SHOWN = 12;

// nodes: [{id, type, key?, parents: [id]}]; focus: the event the graph is about (or null);
// up / down: the ids reached by walking parents / children from it (only those links are
// followed from the focus). onOpen(id) moves to an event; onSelect(ids) reports the selection.
export function drawGraph(container, {nodes, focus = null, up = null, down = null, onOpen, onSelect}) {
  const byId = new Map(nodes.map(n => [n.id, {...n, children: []}]));
  for (const node of byId.values()) {
    node.parents = (node.parents || []).filter(p => byId.has(p));
    for (const p of node.parents) byId.get(p).children.push(node.id);
  }
  for (const node of byId.values()) node.children.sort((a, b) => a - b);
  const expanded = new Set();
  const selected = [];
  const view = {k: 1, tx: 0, ty: 0};
  let layout = null;
  let path = [];

  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('class', 'graph');
  svg.setAttribute('tabindex', '0');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'Lineage graph: drag to pan, wheel or +/- to zoom, 0 to fit; Enter opens a node, Space selects it');
  container.replaceChildren(svg);

  function render(keepView) {
    layout = computeLayout(byId, {focus, up, down, expanded});
    svg.innerHTML = toSVG(layout, selected);
    svg.dataset.nodes = String(layout.nodes.filter(n => !n.more).length);
    // A "+N more" expanded redraws everything: the path shown stays shown.
    highlight(path);
    if (!keepView) fit();
    else apply();
  }

  function apply() {
    const g = svg.querySelector('g.viewport');
    if (g) g.setAttribute('transform', `translate(${view.tx},${view.ty}) scale(${view.k})`);
  }

  // The whole graph when it fits at a readable scale, else the focus (or the top) at scale 1.
  function fit() {
    if (!layout.nodes.length) return;
    const width = svg.clientWidth || 800, height = svg.clientHeight || 500;
    const {minX, maxX, maxY} = layout.bounds;
    const k = Math.min(1.2, (width - 20) / (maxX - minX + NODE_W), (height - 20) / (maxY + NODE_H));
    if (k >= 0.45) {
      view.k = k;
      view.tx = width / 2 - ((minX + maxX) / 2) * k;
      view.ty = 10 + (NODE_H / 2) * k;
    } else {
      const anchor = layout.nodes.find(n => n.id === focus) || layout.nodes[0];
      view.k = 1;
      view.tx = width / 2 - anchor.x;
      view.ty = height / 2 - anchor.y;
    }
    apply();
  }

  function zoom(factor, cx, cy) {
    const k = Math.max(0.05, Math.min(4, view.k * factor));
    view.tx = cx - (cx - view.tx) * (k / view.k);
    view.ty = cy - (cy - view.ty) * (k / view.k);
    view.k = k;
    apply();
  }

  svg.addEventListener('wheel', event => {
    event.preventDefault();
    const box = svg.getBoundingClientRect();
    zoom(Math.exp(-event.deltaY * 0.0015), event.clientX - box.left, event.clientY - box.top);
  }, {passive: false});

  let drag = null;
  svg.addEventListener('pointerdown', event => {
    drag = {x: event.clientX, y: event.clientY, tx: view.tx, ty: view.ty, moved: false, id: event.pointerId};
  });
  svg.addEventListener('pointermove', event => {
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < 4) return;
    if (!drag.moved) svg.setPointerCapture(drag.id);
    drag.moved = true;
    view.tx = drag.tx + dx;
    view.ty = drag.ty + dy;
    apply();
  });
  const endDrag = () => { setTimeout(() => { drag = null; }, 0); };
  svg.addEventListener('pointerup', endDrag);
  svg.addEventListener('pointercancel', endDrag);

  function toggleSelect(id) {
    const at = selected.indexOf(id);
    if (at >= 0) selected.splice(at, 1);
    else { selected.push(id); if (selected.length > 2) selected.shift(); }
    for (const el of svg.querySelectorAll('g.node')) el.classList.toggle('selected', selected.includes(Number(el.dataset.eventId)));
    onSelect && onSelect([...selected]);
  }

  function activate(target, select) {
    const more = target.closest('g.more');
    if (more) { expanded.add(Number(more.dataset.moreOf)); render(true); return; }
    const node = target.closest('g.node');
    if (!node) return;
    const id = Number(node.dataset.eventId);
    if (select) toggleSelect(id);
    else if (onOpen) onOpen(id);
  }

  svg.addEventListener('click', event => {
    if (drag && drag.moved) return;
    activate(event.target, event.shiftKey);
  });
  svg.addEventListener('keydown', event => {
    const box = svg.getBoundingClientRect();
    const step = 60;
    switch (event.key) {
      case '+': case '=': zoom(1.25, box.width / 2, box.height / 2); break;
      case '-': zoom(0.8, box.width / 2, box.height / 2); break;
      case '0': fit(); break;
      case 'ArrowLeft': view.tx += step; apply(); break;
      case 'ArrowRight': view.tx -= step; apply(); break;
      case 'ArrowUp': view.ty += step; apply(); break;
      case 'ArrowDown': view.ty -= step; apply(); break;
      case 'Enter': activate(event.target, false); break;
      case ' ': activate(event.target, true); break;
      default: return;
    }
    event.preventDefault();
  });

  // Marks the nodes and edges of a path (ids in order); answers how many of them are drawn.
  function highlight(ids) {
    path = ids;
    const on = new Set(path);
    const steps = new Set();
    for (let i = 1; i < path.length; i++) steps.add(`${path[i - 1]}-${path[i]}`);
    let shown = 0;
    for (const el of svg.querySelectorAll('g.node')) {
      const hit = on.has(Number(el.dataset.eventId));
      el.classList.toggle('on-path', hit);
      if (hit) shown++;
    }
    for (const el of svg.querySelectorAll('path.edge')) el.classList.toggle('on-path', steps.has(`${el.dataset.from}-${el.dataset.to}`));
    return shown;
  }

  render(false);
  return {highlight};
}

// Which nodes are drawn, in which layer and order, and where.
function computeLayout(byId, {focus, up, down, expanded}) {
  const visible = new Map();  // id -> node or more-node
  const mores = [];
  const queue = [];
  const show = id => { if (!visible.has(id)) { visible.set(id, byId.get(id)); queue.push(id); } };

  // Links followed from a node: from the focus, parents inside `up` and children inside `down`;
  // without a focus, every child (the graph grows down from its sources).
  const follow = (node, direction) => {
    const links = direction === 'up' ? node.parents.filter(p => !up || up.has(p)) : node.children.filter(c => !down || down.has(c));
    // Nearest first: parents from the highest id, children from the lowest.
    if (direction === 'up') links.sort((a, b) => b - a);
    if (links.length > FANOUT_SHOWN && !expanded.has(node.id * 2 + (direction === 'up' ? 1 : 0))) {
      links.slice(0, FANOUT_SHOWN).forEach(show);
      mores.push({more: true, of: node.id, direction, count: links.length - FANOUT_SHOWN, key: node.id * 2 + (direction === 'up' ? 1 : 0)});
    } else links.forEach(show);
  };

  if (focus !== null && byId.has(focus)) {
    show(focus);
    for (let i = 0; i < queue.length; i++) {
      const node = byId.get(queue[i]);
      const isUp = node.id === focus || (up && up.has(node.id));
      const isDown = node.id === focus || (down && down.has(node.id));
      if (isUp) follow(node, 'up');
      if (isDown) follow(node, 'down');
    }
  } else {
    for (const node of byId.values()) if (node.parents.length === 0) show(node.id);
    for (let i = 0; i < queue.length; i++) follow(byId.get(queue[i]), 'down');
  }

  const items = new Map([...visible].map(([id, node]) => [id, {...node}]));
  const upMores = new Map();
  for (const m of mores) {
    const id = `more-${m.key}`;
    items.set(id, {...m, id, parents: m.direction === 'down' ? [m.of] : []});
    if (m.direction === 'up') upMores.set(m.of, id);
  }
  const ids = [...items.keys()].sort(cmpIds);
  const parentsOf = id => {
    const node = items.get(id);
    const drawn = (node.parents || []).filter(p => items.has(p));
    return upMores.has(id) ? [...drawn, upMores.get(id)] : drawn;
  };
  const layers = layered(ids, parentsOf).map(layer => layer.map(id => items.get(id)));
  for (const n of items.values()) n.parents = parentsOf(n.id);
  const nodes = [];
  let minX = Infinity, maxX = -Infinity, maxY = 0;
  layers.forEach((layer, row) => {
    layer.forEach((n, i) => {
      n.x = (i - (layer.length - 1) / 2) * (NODE_W + GAP_X);
      n.y = row * (NODE_H + GAP_Y);
      minX = Math.min(minX, n.x); maxX = Math.max(maxX, n.x); maxY = Math.max(maxY, n.y);
      nodes.push(n);
    });
  });
  const at = new Map(nodes.map(n => [n.id, n]));
  const edges = [];
  for (const n of nodes) for (const p of n.parents || []) if (at.has(p)) edges.push([at.get(p), n]);
  return {nodes, edges, bounds: {minX, maxX, maxY}, focus};
}

// Event ids ascending, "+N more" nodes after them.
function cmpIds(a, b) { return (typeof a === 'number' ? a : Infinity) - (typeof b === 'number' ? b : Infinity) || String(a).localeCompare(String(b)); }

// Layers of a DAG for drawing, shared by the lineage graph and a run's task graph: each node one
// layer past its deepest parent (longest path, in Kahn's order, so any DAG works), then ordered
// inside its layer by the mean position of its parents, then of its children (two sweeps each
// way; O(sweeps x (nodes + links))). `ids`: the nodes in a stable order, which breaks ties;
// `parentsOf(id)`: its parents, of which those not in `ids` are ignored. Answers the layers, top
// first, each a list of ids.
export function layered(ids, parentsOf) {
  const parents = new Map(), children = new Map(ids.map(id => [id, []])), waiting = new Map();
  for (const id of ids) {
    const ps = [...new Set(parentsOf(id))].filter(p => p !== id && children.has(p));
    parents.set(id, ps);
    waiting.set(id, ps.length);
    for (const p of ps) children.get(p).push(id);
  }
  const layerOf = new Map();
  const queue = ids.filter(id => waiting.get(id) === 0);
  for (const id of queue) layerOf.set(id, 0);
  for (let i = 0; i < queue.length; i++) {
    for (const c of children.get(queue[i])) {
      layerOf.set(c, Math.max(layerOf.get(c) ?? 0, layerOf.get(queue[i]) + 1));
      waiting.set(c, waiting.get(c) - 1);
      if (waiting.get(c) === 0) queue.push(c);
    }
  }
  // A node on a cycle (never in a log; a broken definition) is never freed: it goes on top.
  const layers = [];
  for (const id of ids) (layers[layerOf.get(id) ?? 0] ||= []).push(id);
  const rank = new Map(ids.map((id, i) => [id, i]));
  const pos = new Map();
  const place = layer => layer.forEach((id, i) => pos.set(id, i - layer.length / 2));
  const mean = (id, links) => {
    const xs = links.map(l => pos.get(l)).filter(x => x !== undefined);
    return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : pos.get(id);
  };
  const sort = (layer, links) => { layer.sort((a, b) => mean(a, links.get(a)) - mean(b, links.get(b)) || rank.get(a) - rank.get(b)); place(layer); };
  const present = layers.filter(Boolean);
  present.forEach(place);
  for (let sweep = 0; sweep < 2; sweep++) {
    present.forEach(layer => sort(layer, parents));
    present.slice().reverse().forEach(layer => sort(layer, children));
  }
  return present;
}

function toSVG({nodes, edges, focus}, selected) {
  const parts = ['<g class="viewport"><g class="edges">'];
  for (const [from, to] of edges) {
    const x1 = from.x, y1 = from.y + NODE_H / 2, x2 = to.x, y2 = to.y - NODE_H / 2, my = (y1 + y2) / 2;
    parts.push(`<path class="edge" data-from="${esc(from.id)}" data-to="${esc(to.id)}" d="M${x1} ${y1}C${x1} ${my} ${x2} ${my} ${x2} ${y2}"/>`);
  }
  parts.push('</g><g class="nodes">');
  for (const n of nodes) {
    const x = n.x - NODE_W / 2, y = n.y - NODE_H / 2;
    if (n.more) {
      parts.push(`<g class="more" data-more-of="${n.key}" tabindex="0" role="button" aria-label="show ${n.count} more"><rect x="${x}" y="${y}" width="${NODE_W}" height="${NODE_H}" rx="18"/><text x="${n.x}" y="${n.y + 5}" text-anchor="middle">+${n.count} more</text></g>`);
      continue;
    }
    const classes = ['node'];
    if (n.id === focus) classes.push('focus');
    if (selected.includes(n.id)) classes.push('selected');
    const key = n.key ? (n.key.length > 16 ? n.key.slice(0, 15) + '…' : n.key) : '';
    parts.push(`<g class="${classes.join(' ')}" data-event-id="${n.id}" tabindex="0" role="link" aria-label="event ${n.id} ${esc(n.type)}">`
      + `<title>#${n.id} ${esc(n.type)}${n.key ? '\n' + esc(n.key) : ''}</title>`
      + `<rect x="${x}" y="${y}" width="${NODE_W}" height="${NODE_H}" rx="6" fill="${typeColor(n.type)}"/>`
      + `<text x="${x + 8}" y="${y + 15}"><tspan class="nid">#${n.id}</tspan> ${esc(n.type.length > 12 ? n.type.slice(0, 11) + '…' : n.type)}</text>`
      + (key ? `<text class="key" x="${x + 8}" y="${y + 30}">${esc(key)}</text>` : '')
      + '</g>');
  }
  parts.push('</g></g>');
  return parts.join('');
}
