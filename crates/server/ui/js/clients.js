// The Clients page: every node with its status, drain, eligibility and Yurt version; live.

import { read, enc } from './api.js';
import { h, badge, short } from './html.js';

export default {
  title: () => 'Clients',

  mount(root, ctx) {
    root.innerHTML = '<h1>Clients</h1><div class="scroll" id="live"></div>';
    ctx.live = root.querySelector('#live');
  },

  async load() {
    return read('/v1/nodes');
  },

  render(nodes) {
    if (!nodes.length) return h`<p class="muted">No client has registered.</p>`;
    const rows = nodes.map((n) => h`<tr data-node="${n.Name}">
      <td><a href="/ui/clients/${enc(n.ID)}">${n.Name}</a></td>
      <td class="wide">${short(n.ID)}</td>
      <td>${badge(n.Status)}</td>
      <td>${n.Drain ? badge('draining') : 'no'}</td>
      <td>${badge(n.SchedulingEligibility)}</td>
      <td class="wide">${n.Address}</td>
      <td class="wide">${n.Datacenter}</td>
      <td>${n.Version}</td></tr>`);
    return h`<table id="clients"><thead><tr><th>Name</th><th class="wide">ID</th><th>Status</th>
      <th>Drain</th><th>Eligibility</th><th class="wide">Address</th><th class="wide">Datacenter</th>
      <th>Version</th></tr></thead><tbody>${rows}</tbody></table>`;
  },
};
