// The dashboard's router: one document for every /ui/ path; the path picks the page module.
// A page's render(main, params, url) draws into <main> and may answer a cleanup function
// (close streams, stop timers) run before the next page is drawn.
import {navigate, h, errorBox} from './dom.js';
import {forgetToken} from './api.js';

const pages = [
  [/^\/ui\/?$/, 'overview', () => import('./overview.js')],
  [/^\/ui\/tail$/, 'tail', () => import('./tail.js')],
  [/^\/ui\/query$/, 'query', () => import('./query.js')],
  [/^\/ui\/events\/by-key\/(.+)$/, 'event', () => import('./event.js'), m => ({key: decodeURIComponent(m[1])})],
  [/^\/ui\/events\/(\d+)$/, 'event', () => import('./event.js'), m => ({id: Number(m[1])})],
  [/^\/ui\/runs$/, 'runs', () => import('./runs.js')],
  [/^\/ui\/runs\/([^/]+)$/, 'run', () => import('./runs.js'), m => ({run: decodeURIComponent(m[1])})],
  [/^\/ui\/maintenance$/, 'maintenance', () => import('./maintenance.js')],
];

let cleanup = null;
let drawing = 0;

async function draw() {
  const main = document.getElementById('main');
  const url = new URL(location.href);
  if (cleanup) { try { cleanup(); } catch { /* the old page is gone either way */ } cleanup = null; }
  const serial = ++drawing;
  delete main.dataset.ready;
  for (const link of document.querySelectorAll('nav a')) {
    const here = link.getAttribute('href') === url.pathname || (link.getAttribute('href') !== '/ui/' && url.pathname.startsWith(link.getAttribute('href')));
    if (here) link.setAttribute('aria-current', 'page'); else link.removeAttribute('aria-current');
  }
  for (const [pattern, name, load, params] of pages) {
    const match = url.pathname.match(pattern);
    if (!match) continue;
    document.body.dataset.page = name;
    const module = await load();
    if (serial !== drawing) return;
    main.replaceChildren();
    try {
      cleanup = (await module.render(main, params ? params(match) : {}, url)) || null;
    } catch (error) {
      if (serial !== drawing) return;
      main.append(errorBox(error, 'read this page'));
    }
    if (serial === drawing) main.dataset.ready = 'true';
    return;
  }
  document.body.dataset.page = 'missing';
  main.replaceChildren(h('h1', {}, 'No such page'), h('p', {}, h('a', {href: '/ui/'}, 'Back to the overview')));
  main.dataset.ready = 'true';
}

document.addEventListener('click', event => {
  const link = event.target.closest('a[href]');
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/ui') || link.target) return;
  event.preventDefault();
  navigate(url.pathname + url.search + url.hash);
});

window.addEventListener('popstate', draw);
window.addEventListener('banyan:navigate', draw);

document.getElementById('goto').addEventListener('submit', event => {
  event.preventDefault();
  const input = document.getElementById('goto-input');
  const value = input.value.trim();
  if (!value) return;
  input.value = '';
  navigate(/^\d+$/.test(value) ? `/ui/events/${value}` : `/ui/events/by-key/${encodeURIComponent(value)}`);
});

const tokenButton = document.getElementById('token-button');
tokenButton.hidden = !sessionStorage.getItem('banyan.token');
tokenButton.textContent = 'Forget token';
tokenButton.addEventListener('click', () => { forgetToken(); tokenButton.hidden = true; draw(); });

draw();
