// Small DOM helpers shared by every page: element building, formatting, errors.

// h('a', {href: '/ui/'}, 'text', child…): attributes starting with "on" are listeners,
// `dataset` objects are merged, null/false attributes and children are skipped.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name === 'style') throw new Error('style attributes are refused by the CSP; set el.style');
    else if (name === 'class') el.className = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el) { el.replaceChildren(); return el; }

// Escapes text for markup built as a string (the graph's SVG, built in one piece for speed).
export function esc(text) {
  return String(text).replace(/[&<>"']/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
}

export function eventLink(id, label) {
  return h('a', {href: `/ui/events/${id}`, class: 'eid'}, label ?? `#${id}`);
}

// Nanoseconds since 1970 as an ISO time (millisecond precision is what Date holds).
export function fmtTime(ns) {
  if (ns === null || ns === undefined) return '';
  const ms = Number(BigInt(ns) / 1000000n);
  const d = new Date(ms);
  return isNaN(d) ? String(ns) : d.toISOString().replace('T', ' ').replace('Z', ' UTC');
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// An RFC 3339 time from the API (`requested_at`, `created_at`) the way fmtTime writes one.
export function fmtISO(text) {
  return text ? text.replace('T', ' ').replace('Z', ' UTC') : '–';
}

export function fmtMs(ms) {
  return ms === null || ms === undefined ? '–' : fmtSeconds(ms / 1000);
}

export function fmtNumber(n) {
  return n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US');
}

export function fmtSeconds(s) {
  if (s === null || s === undefined) return '–';
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

// A stable color per event type: the same type has the same hue on every page.
export function typeColor(type) {
  let hash = 2166136261;
  for (let i = 0; i < type.length; i++) hash = Math.imul(hash ^ type.charCodeAt(i), 16777619);
  return `hsl(${(hash >>> 0) % 360} 55% 78%)`;
}

export function typeChip(type) {
  // CSSOM, not a style attribute: the page's Content-Security-Policy refuses inline styles.
  const chip = h('span', {class: 'chip'}, type);
  chip.style.background = typeColor(type);
  return chip;
}

// A results table: column headings, and rows (or a <tbody> the caller keeps to refill).
export function table(id, columns, body) {
  const tbody = body instanceof Element && body.tagName === 'TBODY' ? body : h('tbody', {}, body);
  return h('table', {class: 'results', id}, h('thead', {}, h('tr', {}, columns.map(c => h('th', {scope: 'col'}, c)))), tbody);
}

// Calls tick every `ms` until stop() (a page's cleanup) or until tick answers false; the next
// call is timed from the end of the last. run() calls it at once (a button, an action); only the
// latest call goes on, and tick's `stale()` says when its answer should no longer be drawn.
export function poll(tick, ms) {
  let stopped = false, timer = null, serial = 0;
  async function run() {
    clearTimeout(timer);
    const mine = ++serial;
    const stale = () => stopped || mine !== serial;
    const again = await tick(stale);
    if (!stale() && again !== false) timer = setTimeout(run, ms);
  }
  return {run, stop() { stopped = true; clearTimeout(timer); }};
}

// An API error as the server put it: summary, detail, and the field at fault; a 403 says what
// the token's role may not do rather than failing silently.
export function errorBox(error, doing) {
  const body = error && error.body && typeof error.body === 'object' ? error.body : {};
  const box = h('div', {class: 'error', role: 'alert', dataset: {status: error.status ?? ''}});
  if (error.status === 403 && body.error === 'forbidden') {
    box.append(h('strong', {}, 'Not allowed: '), `this token's role may not ${doing || 'do this'}.`);
    return box;
  }
  box.append(h('strong', {}, body.error || error.message || String(error)));
  if (body.detail) box.append(h('pre', {class: 'detail'}, body.detail));
  if (body.field) box.append(h('div', {class: 'muted'}, `field: ${body.field}`));
  return box;
}

// Pretty-printed JSON whose objects and arrays fold (<details>), open to `depth` levels. A closed
// fold builds its entries when first opened, and a level shows at most JSON_ENTRIES_SHOWN of
// them, so a large payload costs what is looked at.
const JSON_ENTRIES_SHOWN = 200;
export function jsonTree(value, depth = 2) {
  if (value === null || typeof value !== 'object') {
    return h('span', {class: `json-${value === null ? 'null' : typeof value}`}, JSON.stringify(value));
  }
  const isArray = Array.isArray(value);
  const count = isArray ? value.length : Object.keys(value).length;
  const [open, close] = isArray ? ['[', ']'] : ['{', '}'];
  if (count === 0) return h('span', {}, open + close);
  const details = h('details', {class: 'json', open: depth > 0});
  details.append(h('summary', {}, `${open} ${count} ${isArray ? 'items' : 'fields'} ${close}`));
  const fill = () => {
    const list = h('div', {class: 'json-body'});
    const entries = (isArray ? value.slice(0, JSON_ENTRIES_SHOWN).map((v, i) => [i, v]) : Object.entries(value).slice(0, JSON_ENTRIES_SHOWN));
    for (const [k, v] of entries) {
      list.append(h('div', {}, isArray ? null : h('span', {class: 'json-key'}, JSON.stringify(k) + ': '), jsonTree(v, depth - 1)));
    }
    if (count > entries.length) list.append(h('div', {class: 'muted'}, `… ${count - entries.length} more not shown`));
    details.append(list);
  };
  if (depth > 0) fill();
  else details.addEventListener('toggle', fill, {once: true});
  return details;
}

// Moves to another dashboard page without reloading (app.js draws it).
// `quiet`: only the address changes (a page recording its own state in the URL).
export function navigate(url, {replace = false, quiet = false} = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  window.dispatchEvent(new CustomEvent(quiet ? 'banyan:address' : 'banyan:navigate'));
}
