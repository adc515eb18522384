// The UI's client of the agent's /v1 API: the ACL token kept in the browser (localStorage, under
// the key Nomad's UI uses), blocking queries, and errors as one sentence with their status.

const TOKEN_KEY = 'nomadTokenSecret';

export function token() {
  return localStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(secret) {
  if (secret) localStorage.setItem(TOKEN_KEY, secret);
  else localStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, sentence, path) {
    super(sentence || `HTTP ${status}`);
    this.status = status;
    this.path = path;
  }

  // What the user reads: a 403 says that the token lacks the right, and which call needed it.
  get explained() {
    if (this.status === 403) {
      const who = token() ? 'your ACL token' : 'anonymous access (no ACL token set)';
      return `Permission denied: ${who} may not do this (${this.path}: ${this.message}).`;
    }
    return this.message;
  }
}

function headers(extra) {
  const h = { ...extra };
  const t = token();
  if (t) h['X-Nomad-Token'] = t;
  return h;
}

async function failure(res, path) {
  const text = (await res.text()).trim();
  return new ApiError(res.status, text, path);
}

// GET `path`: its JSON body. (Pages follow changes through `changedAfter`, then read again.)
export async function read(path) {
  const res = await fetch(path, { headers: headers() });
  if (!res.ok) throw await failure(res, path);
  return res.json();
}

// POST (or another method) with a JSON body; returns the JSON answer, if any.
export async function send(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: headers({ 'Content-Type': 'application/json' }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw await failure(res, path);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

// Waits until the cluster's state passes `index` (any Raft apply), or `wait` ends; returns the
// new index. Every page follows changes through this one query (a page that shows what is not
// in the state, as the Servers page's membership, asks for a short `wait`).
export async function changedAfter(index, signal, wait = '30s') {
  const res = await fetch(`/v1/agent/health?index=${index}&wait=${wait}`, { headers: headers(), signal });
  return Number(res.headers.get('X-Nomad-Index') || index);
}

// Streams a text file of an allocation (`/v1/client/fs/logs`, plain), calling `onText` with
// each piece as it arrives, until `signal` aborts.
export async function streamLogs(alloc, task, type, onText, signal) {
  const q = new URLSearchParams({ task, type, follow: 'true', plain: 'true', origin: 'start' });
  const path = `/v1/client/fs/logs/${encodeURIComponent(alloc)}?${q}`;
  const res = await fetch(path, { headers: headers(), signal });
  if (!res.ok) throw await failure(res, path);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onText(decoder.decode(value, { stream: true }));
  }
}

export function enc(id) {
  return encodeURIComponent(id);
}

// The namespace the pages show (`*`: all), kept in the browser.
export function namespace() {
  return localStorage.getItem('yurt.namespace') || '*';
}

export function setNamespace(ns) {
  localStorage.setItem('yurt.namespace', ns);
}
