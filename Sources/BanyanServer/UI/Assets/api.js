// The one way the pages talk to the server: the visitor's bearer token on every request, the
// server's JSON errors as ApiError, and one token prompt however many requests were refused.

const TOKEN_KEY = 'banyan.token';

export class ApiError extends Error {
  constructor(status, body, path) {
    const summary = body && typeof body === 'object' && body.error ? body.error : `HTTP ${status}`;
    super(`${summary} (${path})`);
    this.status = status;
    this.body = body;
  }
}

export function token() { return sessionStorage.getItem(TOKEN_KEY); }

export function authHeaders(headers = {}) {
  const t = token();
  return t ? {...headers, Authorization: `Bearer ${t}`} : headers;
}

let prompt = null;
// Set when the visitor cancels the prompt: pages that poll would otherwise open it again every
// few seconds. The header's "Enter token" button clears it.
let refused = false;

export function allowTokenPrompt() { refused = false; }

// The header's button: "Forget token" while there is one, "Enter token" right after a cancelled prompt.
export function drawTokenButton(cancelled = false) {
  const button = document.getElementById('token-button');
  button.hidden = !token() && !refused;
  button.textContent = token() && !cancelled ? 'Forget token' : 'Enter token';
}

// Shows the token dialog once for all the requests waiting on it; resolves true when a token
// was given, false when the visitor cancelled (now or before).
export function askForToken(reason) {
  if (refused) return Promise.resolve(false);
  if (prompt) return prompt;
  const dialog = document.getElementById('token-dialog');
  const input = document.getElementById('token-input');
  document.getElementById('token-reason').textContent = reason ||
    'Requests without a valid token are refused (401). The token is kept in this tab\'s session storage only.';
  prompt = new Promise(resolve => {
    const form = document.getElementById('token-form');
    const cancel = document.getElementById('token-cancel');
    const done = given => {
      form.removeEventListener('submit', onSubmit);
      cancel.removeEventListener('click', onCancel);
      dialog.removeEventListener('cancel', onCancel);
      if (dialog.open) dialog.close();
      prompt = null;
      refused = !given;
      drawTokenButton(!given);
      resolve(given);
    };
    const onSubmit = e => {
      e.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      input.value = '';
      done(true);
    };
    const onCancel = e => { e.preventDefault(); done(false); };
    form.addEventListener('submit', onSubmit);
    cancel.addEventListener('click', onCancel);
    dialog.addEventListener('cancel', onCancel);
    dialog.showModal();
    input.focus();
  });
  return prompt;
}

export function forgetToken() { sessionStorage.removeItem(TOKEN_KEY); }

// fetch with the token; a 401 asks for a token and tries again (at most 3 times). Answers the
// parsed JSON, or the text when `text` is set; throws ApiError for any other status >= 400.
export async function api(path, {method = 'GET', body, headers = {}, text = false, signal} = {}) {
  for (let attempt = 0; ; attempt++) {
    const h = authHeaders(headers);
    if (body !== undefined) h['Content-Type'] = 'application/json';
    const response = await fetch(path, {method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), signal});
    if (response.status === 401 && attempt < 3) {
      if (await askForToken(token() ? 'The token was refused (401). Enter another one.' : undefined)) continue;
    }
    const raw = await response.text();
    if (response.ok) return text ? raw : (raw ? JSON.parse(raw) : null);
    let parsed = raw;
    try { parsed = JSON.parse(raw); } catch { /* a plain-text error stays text */ }
    throw new ApiError(response.status, parsed, path);
  }
}

export function query(text, options = {}) {
  return api('/v1/query', {method: 'POST', body: {query: text, ...options}});
}
