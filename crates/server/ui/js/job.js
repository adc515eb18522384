// A job's page: overview, task groups with their allocations by state, allocations, versions
// with their diffs (and which are stable), deployments and evaluations; all live. Stop (asked
// twice), Start a stopped job again, and Revert to an earlier version, as Nomad's UI offers;
// disabled with the reason for a token that may not submit jobs.

import { read, send, enc } from './api.js';
import { h, badge, when, ago, short } from './html.js';
import { jobDiff } from './diff.js';
import { summaryBar } from './jobs.js';
import { act } from './frame.js';
import { rights, lacks } from './rights.js';

function nsQuery() {
  const ns = new URLSearchParams(location.search).get('namespace');
  return ns ? `?namespace=${enc(ns)}` : '';
}

export default {
  title: ([id]) => `Job ${id}`,

  mount(root, ctx) {
    root.innerHTML = '<div id="live"></div>';
    ctx.live = root.querySelector('#live');
    ctx.confirmStop = false;
    const id = ctx.params[0];
    const base = `/v1/job/${enc(id)}`;
    root.addEventListener('click', (ev) => {
      const b = ev.target.closest('button');
      if (!b || b.disabled) return;
      const q = nsQuery();
      if (b.id === 'job-stop' || b.id === 'job-stop-cancel') {
        ctx.confirmStop = b.id === 'job-stop';
        ctx.redraw();
        document.getElementById(ctx.confirmStop ? 'job-stop-confirm' : 'job-stop')?.focus();
      } else if (b.id === 'job-stop-confirm') {
        ctx.confirmStop = false;
        act('Stopping the job', () => send('DELETE', base + q));
      } else if (b.id === 'job-start') {
        // As Nomad's UI: the job as it is, registered again without its stop.
        act('Starting the job', async () => {
          const job = await read(base + q);
          job.Stop = false;
          await send('POST', `/v1/jobs${q}`, { Job: job });
        });
      } else if (b.dataset.revert !== undefined) {
        const version = Number(b.dataset.revert);
        act(`Reverting to version ${version}`, () =>
          send('POST', `${base}/revert${q}`, { JobID: id, JobVersion: version }));
      }
    });
  },

  async load({ params: [id] }) {
    const base = `/v1/job/${enc(id)}`;
    const q = nsQuery();
    const [job, summary, allocs, versions, deployments, evals, r] = await Promise.all([
      read(base + q),
      read(`${base}/summary${q}`),
      read(`${base}/allocations${q}`),
      read(`${base}/versions${q}${q ? '&' : '?'}diffs=true`),
      read(`${base}/deployments${q}`),
      read(`${base}/evaluations${q}`),
      rights(),
    ]);
    return { job, summary, allocs, versions, deployments, evals, r };
  },

  render({ job, summary, allocs, versions, deployments, evals, r }, ctx) {
    const no = lacks(r, job.Namespace || 'default', 'submit-job');
    const off = no ? h` disabled title="${no}"` : '';
    let actions;
    if (job.Stop) {
      actions = h`<button id="job-start"${off}>Start</button>`;
    } else if (ctx.confirmStop) {
      actions = h`<button id="job-stop-confirm" class="danger"${off}>Yes, stop ${job.Name}</button>
        <button id="job-stop-cancel" class="secondary">Cancel</button>`;
    } else {
      actions = h`<button id="job-stop" class="danger"${off}>Stop</button>`;
    }
    const groups = (job.TaskGroups || []).map((g) => h`<tr>
      <td>${g.Name}</td><td>${g.Count}</td>
      <td>${(g.Tasks || []).map((t) => h`<div>${t.Name} <span class="muted">(${t.Driver})</span></div>`)}</td>
      <td>${summaryBar(summary?.Summary?.[g.Name])}</td></tr>`);
    const allocRows = [...allocs]
      .sort((a, b) => (b.CreateTime || 0) - (a.CreateTime || 0))
      .map((a) => h`<tr data-alloc="${a.ID}">
        <td><a href="/ui/allocations/${enc(a.ID)}">${short(a.ID)}</a></td>
        <td>${a.TaskGroup}</td><td class="wide">${a.NodeName || short(a.NodeID)}</td>
        <td>${badge(a.ClientStatus)}</td><td class="wide">${a.DesiredStatus}</td>
        <td>${a.JobVersion ?? a.Job?.Version}</td><td class="wide">${ago(a.CreateTime)}</td></tr>`);
    const list = versions?.Versions || [];
    const diffs = versions?.Diffs || [];
    const versionItems = list.map((v, i) => h`<li data-version="${v.Version}">
      <strong>Version ${v.Version}</strong> ${v.Stable ? badge('stable') : ''}
      <span class="muted">submitted ${when(v.SubmitTime)}</span>
      ${v.Version !== job.Version ? h`<button class="secondary" id="revert-${v.Version}"
        data-revert="${v.Version}"${off}>Revert to version ${v.Version}</button>` : ''}
      ${i < diffs.length ? jobDiff(diffs[i], 'No changes from the version before.') : h`<p class="muted">The first version.</p>`}
    </li>`);
    const deploymentRows = deployments.map((d) => h`<tr>
      <td><a href="/ui/deployments/${enc(d.ID)}">${short(d.ID)}</a></td><td>${d.JobVersion}</td>
      <td>${badge(d.Status)}</td><td>${d.StatusDescription}</td></tr>`);
    const evalRows = evals.map((e) => h`<tr><td>${short(e.ID)}</td><td>${e.TriggeredBy}</td>
      <td>${badge(e.Status)}</td><td class="wide">${e.StatusDescription || ''}</td></tr>`);
    return h`<h1>${job.Name} ${badge(job.Status)}</h1>
      <div class="actions">${actions}
        ${no ? h`<span class="why" id="job-why">You may not change this job: ${no}.</span>` : ''}</div>
      <dl class="facts">
        <div><dt>Type</dt><dd>${job.Type}</dd></div>
        <div><dt>Namespace</dt><dd>${job.Namespace}</dd></div>
        <div><dt>Version</dt><dd>${job.Version}</dd></div>
        <div><dt>Priority</dt><dd>${job.Priority}</dd></div>
        <div><dt>Datacenters</dt><dd>${(job.Datacenters || []).join(', ')}</dd></div>
        <div><dt>Stable</dt><dd>${job.Stable ? 'yes' : 'no'}</dd></div>
      </dl>
      <h2>Task groups</h2>
      <div class="scroll"><table id="groups"><thead><tr><th>Group</th><th>Count</th><th>Tasks</th>
        <th>Allocations</th></tr></thead><tbody>${groups}</tbody></table></div>
      <h2>Allocations</h2>
      ${allocRows.length ? h`<div class="scroll"><table id="allocations"><thead><tr><th>ID</th><th>Group</th>
        <th class="wide">Client</th><th>Status</th><th class="wide">Desired</th><th>Version</th>
        <th class="wide">Created</th></tr></thead><tbody>${allocRows}</tbody></table></div>`
        : h`<p class="muted">No allocations.</p>`}
      <h2>Deployments</h2>
      ${deploymentRows.length ? h`<div class="scroll"><table id="deployments"><thead><tr><th>ID</th>
        <th>Version</th><th>Status</th><th>Description</th></tr></thead><tbody>${deploymentRows}</tbody></table></div>`
        : h`<p class="muted">No deployments.</p>`}
      <h2>Versions</h2><ul id="versions" class="plain">${versionItems}</ul>
      <h2>Evaluations</h2>
      <div class="scroll"><table id="evaluations"><thead><tr><th>ID</th><th>Triggered by</th><th>Status</th>
        <th class="wide">Description</th></tr></thead><tbody>${evalRows}</tbody></table></div>`;
  },
};
