// What the ACL token kept in this browser may do, read from its policies' parsed rules (the
// `RulesJSON` a token may read of the policies it carries), so that pages show the actions it
// may not take as disabled, with the reason. Unknown (no token, ACLs off, a read that failed):
// nothing is disabled, and the server's refusal says what was missing.

import { read, token } from './api.js';

let cached = null;

// Reads the rights again at the next call (the frame calls it on every page shown).
export function forgetRights() {
  cached = null;
}

// The token's rights: `{ management: true }`, `{ name, rules: [RulesJSON...] }`, or null.
export function rights() {
  const t = token();
  if (!cached || cached.token !== t) cached = { token: t, promise: load() };
  return cached.promise;
}

async function load() {
  if (!token()) return null;
  try {
    const self = await read('/v1/acl/token/self');
    if (self.Type === 'management') return { management: true };
    const policies = await Promise.all((self.Policies || []).map((p) =>
      read(`/v1/acl/policy/${encodeURIComponent(p)}`).then((x) => x.RulesJSON || {}, () => ({}))));
    return { name: self.Name || self.AccessorID, rules: policies };
  } catch {
    return null;
  }
}

// A glob of Nomad's ACL rules (`*` is any run of characters).
function globMatch(glob, name) {
  const re = new RegExp(`^${glob.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(name);
}

// The capabilities of namespace `ns`: its own rule if it has one, else the closest glob's.
function capabilities(r, ns) {
  const found = new Set();
  for (const rules of r.rules) {
    const list = rules.Namespaces || [];
    const exact = list.find((n) => n.Name === ns);
    const globs = list.filter((n) => n.Name.includes('*') && globMatch(n.Name, ns))
      .sort((a, b) => b.Name.replace(/\*/g, '').length - a.Name.replace(/\*/g, '').length);
    const rule = exact || globs[0];
    for (const c of rule?.Capabilities || []) found.add(c);
  }
  return found;
}

function who(r) {
  return `your ACL token${r.name ? ` (${r.name})` : ''}`;
}

// Why the token may not use `capability` in namespace `ns`; null when it may (or unknown).
export function lacks(r, ns, capability) {
  if (!r || r.management) return null;
  const caps = capabilities(r, ns);
  if (caps.has(capability) && !caps.has('deny')) return null;
  return `${who(r)} lacks ${capability} on namespace "${ns}"`;
}

// Why the token may not `level` (read or write) the `what` rules (Node, Agent, Operator).
export function lacksLevel(r, what, level) {
  if (!r || r.management) return null;
  const order = { deny: 0, read: 1, write: 2 };
  const best = Math.max(0, ...r.rules.map((rules) => order[rules[what]?.Policy] ?? 0));
  const deny = r.rules.some((rules) => rules[what]?.Policy === 'deny');
  if (!deny && best >= order[level]) return null;
  return `${who(r)} lacks ${what.toLowerCase()} ${level}`;
}
