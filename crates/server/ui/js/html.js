// Safe HTML from templates: h`<td>${value}</td>` escapes every value put in, unless it is
// itself made by h`` (or an array of such); so text from the cluster (job names, log lines,
// error sentences) is always shown as text, never run as markup.

class Safe {
  constructor(text) { this.text = text; }
  toString() { return this.text; }
}

const escapes = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function esc(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => escapes[c]);
}

function piece(value) {
  if (value instanceof Safe) return value.text;
  if (Array.isArray(value)) return value.map(piece).join('');
  if (value === false || value === null || value === undefined) return '';
  return esc(value);
}

export function h(strings, ...values) {
  let out = strings[0];
  values.forEach((v, i) => { out += piece(v) + strings[i + 1]; });
  return new Safe(out);
}

// Puts what h`` made into an element.
export function put(el, safe) {
  el.innerHTML = piece(safe);
}

// A time in Nomad's nanoseconds (or an ISO string) as local date and time.
export function when(t) {
  if (!t) return '';
  const ms = typeof t === 'number' ? t / 1e6 : Date.parse(t);
  if (!ms || ms < 0) return '';
  return new Date(ms).toLocaleString();
}

// How long ago, in words a person reads at a glance.
export function ago(t) {
  if (!t) return '';
  const ms = typeof t === 'number' ? t / 1e6 : Date.parse(t);
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 60) return `${Math.max(s, 0)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function short(id) {
  return String(id ?? '').slice(0, 8);
}

// A status as a badge whose colour says good, bad, busy or neutral.
export function badge(status) {
  const tone = {
    running: 'good', successful: 'good', ready: 'good', complete: 'good', alive: 'good',
    eligible: 'good', healthy: 'good', leader: 'good',
    failed: 'bad', lost: 'bad', down: 'bad', dead: 'neutral', cancelled: 'neutral',
    unhealthy: 'bad', ineligible: 'warn', disconnected: 'warn', unknown: 'warn',
    pending: 'busy', blocked: 'busy', paused: 'warn', draining: 'warn', initializing: 'busy',
  }[String(status).toLowerCase()] || 'neutral';
  return h`<span class="badge ${tone}">${status}</span>`;
}
