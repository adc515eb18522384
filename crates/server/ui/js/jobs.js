// The Jobs page: every job the token may read, with its status, type, and per task group a bar
// of its allocations by state; filtered by name, status and namespace as one types.

import { read, enc, namespace, setNamespace, token } from './api.js';
import { h, badge } from './html.js';

const STATES = ['Running', 'Starting', 'Queued', 'Failed', 'Lost', 'Unknown', 'Complete'];

// A task group's allocations by state, as a bar (with the counts in words beside it).
export function summaryBar(counts) {
  const total = STATES.reduce((n, s) => n + (counts?.[s] || 0), 0);
  const parts = STATES.filter((s) => counts?.[s]).map((s) => `${counts[s]} ${s.toLowerCase()}`);
  const segments = STATES.filter((s) => counts?.[s]).map((s) =>
    h`<span class="${s.toLowerCase()}" style="flex: ${counts[s]}"></span>`);
  return h`<div class="bar" role="img" aria-label="${parts.join(', ') || 'no allocations'}"
    title="${parts.join(', ')}">${total ? segments : ''}</div>
    <div class="legend">${parts.join(' · ') || 'no allocations'}</div>`;
}

const filters = { name: '', status: '' };

export default {
  title: () => 'Jobs',

  mount(root, ctx) {
    root.innerHTML = `<h1>Jobs</h1>
      <div class="filters">
        <label>Name <input id="f-name" type="search" placeholder="Filter by name"></label>
        <label>Status <select id="f-status">
          <option value="">Any</option><option>pending</option><option>running</option>
          <option>dead</option></select></label>
        <label>Namespace <select id="f-ns"><option value="*">All</option></select></label>
      </div>
      <div class="scroll" id="live"></div>`;
    ctx.live = root.querySelector('#live');
    const name = root.querySelector('#f-name');
    const status = root.querySelector('#f-status');
    name.value = filters.name;
    status.value = filters.status;
    name.addEventListener('input', () => { filters.name = name.value; ctx.redraw(); });
    status.addEventListener('change', () => { filters.status = status.value; ctx.redraw(); });
    root.querySelector('#f-ns').addEventListener('change', (ev) => {
      setNamespace(ev.target.value);
      ctx.redraw();
    });
  },

  async load() {
    const [list, namespaces] = await Promise.all([
      read('/v1/jobs?namespace=*'),
      read('/v1/namespaces').catch(() => []),
    ]);
    // With ACLs on, no token reads only what the anonymous policy grants: an empty list says
    // so (the agent's configuration tells, or its refusal to show it).
    const anonymous = !list.length && !token() && await read('/v1/agent/self')
      .then((a) => a.config?.ACL?.Enabled === true, (e) => e.status === 403);
    return { list, namespaces, anonymous };
  },

  render({ list, namespaces, anonymous }) {
    const select = document.getElementById('f-ns');
    const names = ['*', ...namespaces.map((n) => n.Name)];
    if (select && select.options.length !== names.length) {
      select.replaceChildren(...names.map((n) => new Option(n === '*' ? 'All' : n, n)));
    }
    if (select) select.value = names.includes(namespace()) ? namespace() : '*';
    const ns = select ? select.value : '*';
    const shown = list.filter((j) =>
      (!filters.name || j.Name.toLowerCase().includes(filters.name.toLowerCase())) &&
      (!filters.status || j.Status === filters.status) &&
      (ns === '*' || j.Namespace === ns));
    if (!list.length && anonymous) {
      return h`<p id="no-jobs">No jobs that anonymous access may see: ACLs are on and no token is
        set. <a href="/ui/settings/tokens">Sign in with an ACL token</a> to see more.</p>`;
    }
    if (!list.length) {
      return h`<p class="muted" id="no-jobs">No jobs yet. <a href="/ui/run">Run one</a>.</p>`;
    }
    const rows = shown.map((j) => {
      const groups = Object.entries(j.JobSummary?.Summary || {});
      const link = `/ui/jobs/${enc(j.ID)}${j.Namespace && j.Namespace !== 'default' ? `?namespace=${enc(j.Namespace)}` : ''}`;
      return h`<tr data-job="${j.ID}">
        <td><a href="${link}">${j.Name}</a></td>
        <td class="wide">${j.Namespace}</td>
        <td>${badge(j.Status)}</td>
        <td>${j.Type}</td>
        <td class="wide">${j.Priority}</td>
        <td>${groups.map(([g, counts]) => h`<div class="group"><span class="muted">${g}</span>
          ${summaryBar(counts)}</div>`)}</td>
      </tr>`;
    });
    return h`<table id="jobs">
      <thead><tr><th>Name</th><th class="wide">Namespace</th><th>Status</th><th>Type</th>
        <th class="wide">Priority</th><th>Allocations by group</th></tr></thead>
      <tbody>${rows}</tbody></table>
      ${shown.length ? '' : h`<p class="muted">No job matches the filters.</p>`}`;
  },
};
