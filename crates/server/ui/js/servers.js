// The Servers page: members, Raft peers and the leader, each server's version and last log
// index (as the leader knows it), the feature gates and whether they are open, and the result
// of `operator upgrade-check` laid out as the seeds' rolling-upgrade procedure: which server
// may go down now, and what to check before the next.

import { read } from './api.js';
import { h, badge } from './html.js';

export default {
  title: () => 'Servers',
  // Membership and replication are not in the state: read them again every second as well.
  poll: '1s',

  mount(root, ctx) {
    root.innerHTML = '<h1>Servers</h1><div id="live"></div>';
    ctx.live = root.querySelector('#live');
  },

  async load() {
    const [members, raft, check] = await Promise.all([
      read('/v1/agent/members'),
      read('/v1/operator/raft/configuration'),
      read('/v1/operator/upgrade-check'),
    ]);
    return { members, raft, check };
  },

  render({ members, raft, check }) {
    const byName = new Map((check.Servers || []).map((s) => [s.Name, s]));
    const peers = new Map((raft.Servers || []).map((p) => [p.Node, p]));
    const rows = (members.Members || []).map((m) => {
      const s = byName.get(m.Name) || {};
      const p = peers.get(m.Name);
      return h`<tr data-server="${m.Name}">
        <td>${m.Name}</td><td class="wide">${m.Addr}:${m.Port}</td>
        <td>${badge(m.Status)}</td>
        <td>${s.Leader || m.Tags?.leader === 'true' ? badge('leader') : p ? 'follower' : 'not a peer'}</td>
        <td>${p ? (p.Voter ? 'voter' : 'non-voter') : ''}</td>
        <td class="index">${s.LastLogIndex ?? h`<span class="muted">unknown</span>`}</td>
        <td class="version">${s.Version || m.Tags?.build || ''}</td></tr>`;
    });
    const gates = (check.Features || []).map((f) => h`<tr>
      <td>${f.Name}</td><td>${f.Since}</td><td>${f.Open ? badge('open') : badge('closed')}</td>
      <td class="why">${f.HeldBackBy}</td></tr>`);
    const checks = (check.Checks || []).map((c) => h`<li class="${c.Ok ? 'added' : 'deleted'}">
      ${c.Ok ? '✓' : '✗'} <strong>${c.Name}</strong>: ${c.Detail}</li>`);
    const next = check.Safe
      ? h`<p id="upgrade-next">Safe to take one server down now${check.NextServer ? h`: upgrade
          <strong>${check.NextServer}</strong> next` : ''}${check.NextReason ? ` (${check.NextReason})` : ''}.</p>`
      : h`<p id="upgrade-next">Not safe to take a server down now: see the failed checks.</p>`;
    return h`<div class="scroll"><table id="servers"><thead><tr><th>Name</th><th class="wide">Address</th>
      <th>Status</th><th>Raft</th><th>Vote</th><th>Last log index</th><th>Version</th></tr></thead>
      <tbody>${rows}</tbody></table></div>
      <h2>Rolling upgrade</h2>
      <p class="muted">One server at a time: check, stop it, replace its binary, start it, wait
        until it has caught up, then check again before the next. New features wait until every
        server runs the version that has them.</p>
      ${next}
      <ul class="diff" id="upgrade-checks">${checks}</ul>
      <h2>Feature gates</h2>
      <div class="scroll"><table id="gates"><thead><tr><th>Feature</th><th>Since</th><th>Gate</th>
        <th>Held back by</th></tr></thead><tbody>${gates}</tbody></table></div>`;
  },
};
