// The dashboard's router: one document for every /ui/ path; the path picks the page module.
// A page's render(view, params, url) draws into a fresh element inside <main> and may answer a
// cleanup function (close streams, stop timers), run before the next page is drawn.
import {navigate, h, errorBox} from './dom.js';
import {forgetToken, token, allowTokenPrompt, drawTokenButton} from './api.js';

const pages = [
  [/^\/ui\/?$/, 'overview', 'Overview', () => import('./overview.js')],
  [/^\/ui\/tail$/, 'tail', 'Tail', () => import('./tail.js')],
  [/^\/ui\/query$/, 'query', 'Query', () => import('./query.js')],
  [/^\/ui\/events\/by-key\/(.+)$/, 'event', 'Event', () => import('./event.js'), m => ({key: decodeURIComponent(m[1])})],
  [/^\/ui\/events\/(\d+)$/, 'event', 'Event', () => import('./event.js'), m => ({id: Number(m[1])})],
  [/^\/ui\/runs$/, 'runs', 'Runs', () => import('./runs.js')],
  [/^\/ui\/runs\/([^/]+)$/, 'run', 'Run', () => import('./runs.js'), m => ({run: decodeURIComponent(m[1])})],
  [/^\/ui\/maintenance$/, 'maintenance', 'Maintenance', () => import('./maintenance.js')],
];

let cleanup = null;
let drawing = 0;
let drawn = null;  // the path and query of the page drawn

async function draw() {
  const main = document.getElementById('main');
  const url = new URL(location.href);
  if (cleanup) { try { cleanup(); } catch { /* the old page is gone either way */ } cleanup = null; }
  const serial = ++drawing;
  drawn = url.pathname + url.search;
  delete main.dataset.ready;
  drawHeader(url);
  for (const [pattern, name, title, load, params] of pages) {
    const match = url.pathname.match(pattern);
    if (!match) continue;
    document.body.dataset.page = name;
    document.title = `${title} · Banyan`;
    const module = await load();
    if (serial !== drawing) return;
    // Each draw has its own element: a page still loading when the visitor moves on writes into
    // a detached one, never into the next page.
    const view = h('div', {class: 'view'});
    main.replaceChildren(view);
    let done = null;
    try {
      done = (await module.render(view, params ? params(match) : {}, url)) || null;
    } catch (error) {
      if (serial === drawing) view.append(errorBox(error, 'read this page'));
    }
    if (serial !== drawing) {
      // Moved on while this page loaded: it must not poll or stream behind the next one.
      if (done) done();
      return;
    }
    cleanup = done;
    main.dataset.ready = 'true';
    return;
  }
  document.body.dataset.page = 'missing';
  document.title = 'No such page · Banyan';
  main.replaceChildren(h('h1', {}, 'No such page'), h('p', {}, h('a', {href: '/ui/'}, 'Back to the overview')));
  main.dataset.ready = 'true';
}

function drawHeader(url) {
  for (const link of document.querySelectorAll('nav a')) {
    const href = link.getAttribute('href');
    const here = href === url.pathname || (href !== '/ui/' && url.pathname.startsWith(href));
    if (here) link.setAttribute('aria-current', 'page'); else link.removeAttribute('aria-current');
  }
  drawTokenButton();
}

document.addEventListener('click', event => {
  const link = event.target.closest('a[href]');
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/ui') || link.target) return;
  // A link within the page (the skip link) is the browser's: it moves focus, not the page.
  if (url.hash && url.pathname === location.pathname && url.search === location.search) return;
  event.preventDefault();
  navigate(url.pathname + url.search + url.hash);
});

// A fragment navigation (the skip link) fires popstate too: only a new path or query redraws.
window.addEventListener('popstate', () => {
  if (location.pathname + location.search !== drawn) draw();
});
window.addEventListener('banyan:navigate', draw);
window.addEventListener('banyan:address', () => { drawn = location.pathname + location.search; });

document.getElementById('goto').addEventListener('submit', event => {
  event.preventDefault();
  const input = document.getElementById('goto-input');
  const value = input.value.trim();
  if (!value) return;
  input.value = '';
  navigate(/^\d+$/.test(value) ? `/ui/events/${value}` : `/ui/events/by-key/${encodeURIComponent(value)}`);
});

// Forgets the token, or (after the prompt was cancelled) asks for one again; the page is redrawn.
document.getElementById('token-button').addEventListener('click', () => {
  if (token()) forgetToken();
  allowTokenPrompt();
  draw();
});

draw();
