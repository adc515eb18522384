// A deployment drawn as it progresses: per task group desired, placed, healthy and unhealthy
// allocations and canaries, the progress deadline counting down, and the actions a deployment
// takes (promote the canaries, fail, pause, resume), each enabled only when it applies.

import { read, send, enc } from './api.js';
import { h, badge, short } from './html.js';
import { act } from './frame.js';
import { rights, lacks } from './rights.js';

// Seconds left until a time in ns, in words.
function left(ns) {
  if (!ns) return 'no deadline yet';
  const s = Math.round((ns / 1e6 - Date.now()) / 1000);
  if (s <= 0) return 'passed';
  const m = Math.floor(s / 60);
  return m ? `${m}m ${s % 60}s left` : `${s}s left`;
}

// What can be done to the deployment `d` now, and why not when not.
export function deploymentActions(d, r) {
  const no = lacks(r, d.Namespace || 'default', 'submit-job');
  if (no) return { promote: no, fail: no, pause: no, resume: no };
  const groups = Object.values(d.TaskGroups || {});
  const active = d.Status === 'running' || d.Status === 'paused';
  const waiting = groups.some((g) => g.DesiredCanaries > 0 && !g.Promoted);
  const healthy = groups.every((g) => !g.DesiredCanaries || g.Promoted ||
    g.HealthyAllocs >= g.DesiredCanaries);
  return {
    promote: !active ? 'the deployment has ended'
      : !waiting ? 'it has no canaries waiting for promotion'
        : !healthy ? 'its canaries are not all healthy yet' : null,
    fail: active ? null : 'the deployment has ended',
    pause: d.Status === 'running' ? null : 'only a running deployment can be paused',
    resume: d.Status === 'paused' ? null : 'only a paused deployment can be resumed',
  };
}

function button(id, label, why, cls = '') {
  return h`<button id="${id}" class="${cls}" ${why ? h`disabled title="${why}"` : ''}>${label}</button>`;
}

export default {
  title: ([id]) => `Deployment ${short(id)}`,

  mount(root, ctx) {
    root.innerHTML = '<div id="live"></div>';
    ctx.live = root.querySelector('#live');
    const id = ctx.params[0];
    const path = (what) => `/v1/deployment/${what}/${enc(id)}`;
    root.addEventListener('click', (ev) => {
      const b = ev.target.closest('button');
      if (!b || b.disabled) return;
      const actions = {
        promote: () => send('POST', path('promote'), { DeploymentID: id, All: true }),
        fail: () => send('POST', path('fail'), { DeploymentID: id }),
        pause: () => send('POST', path('pause'), { DeploymentID: id, Pause: true }),
        resume: () => send('POST', path('pause'), { DeploymentID: id, Pause: false }),
      };
      const run = actions[b.id];
      if (run) act(b.textContent.trim(), run);
    });
    // The deadline counts down between changes of the state.
    const tick = setInterval(() => {
      for (const el of root.querySelectorAll('[data-deadline]')) {
        el.textContent = left(Number(el.dataset.deadline));
      }
    }, 1000);
    ctx.signal.addEventListener('abort', () => clearInterval(tick));
  },

  async load({ params: [id] }) {
    const [d, allocs, r] = await Promise.all([
      read(`/v1/deployment/${enc(id)}`),
      read(`/v1/deployment/allocations/${enc(id)}`),
      rights(),
    ]);
    return { d, allocs, r };
  },

  render({ d, allocs, r }) {
    const can = deploymentActions(d, r);
    const groups = Object.entries(d.TaskGroups || {}).map(([name, g]) => h`<tr data-group="${name}">
      <td>${name}</td>
      <td class="desired">${g.DesiredTotal}</td>
      <td class="canaries">${g.DesiredCanaries ? `${(g.PlacedCanaries || []).length} of ${g.DesiredCanaries}` : '—'}
        ${g.DesiredCanaries ? (g.Promoted ? badge('promoted') : badge('waiting')) : ''}</td>
      <td class="placed">${g.PlacedAllocs}</td>
      <td class="healthy">${g.HealthyAllocs}</td>
      <td class="unhealthy">${g.UnhealthyAllocs}</td>
      <td><span data-deadline="${g.RequireProgressBy || 0}">${left(g.RequireProgressBy)}</span></td>
    </tr>`);
    const rows = allocs.map((a) => h`<tr>
      <td><a href="/ui/allocations/${enc(a.ID)}">${short(a.ID)}</a></td><td>${a.TaskGroup}</td>
      <td>${badge(a.ClientStatus)}</td>
      <td>${a.DeploymentStatus?.Healthy === true ? badge('healthy')
        : a.DeploymentStatus?.Healthy === false ? badge('unhealthy') : h`<span class="muted">pending</span>`}</td>
      <td>${a.DeploymentStatus?.Canary ? 'canary' : ''}</td></tr>`);
    const reasons = Object.entries(can).filter(([, why]) => why)
      .map(([what, why]) => h`<li>${what[0].toUpperCase() + what.slice(1)}: ${why}.</li>`);
    return h`<h1>Deployment ${short(d.ID)} ${badge(d.Status)}</h1>
      <p>Job <a href="/ui/jobs/${enc(d.JobID)}${d.Namespace && d.Namespace !== 'default' ? `?namespace=${enc(d.Namespace)}` : ''}">${d.JobID}</a>,
        version ${d.JobVersion}. <span id="description">${d.StatusDescription}</span></p>
      <div class="actions">
        ${button('promote', 'Promote', can.promote)}
        ${button('pause', 'Pause', can.pause, 'secondary')}
        ${button('resume', 'Resume', can.resume, 'secondary')}
        ${button('fail', 'Fail', can.fail, 'danger')}
      </div>
      <ul class="why">${reasons}</ul>
      <div class="scroll"><table id="groups"><thead><tr><th>Group</th><th>Desired</th><th>Canaries</th>
        <th>Placed</th><th>Healthy</th><th>Unhealthy</th><th>Progress deadline</th></tr></thead>
        <tbody>${groups}</tbody></table></div>
      <h2>Allocations</h2>
      <div class="scroll"><table id="allocations"><thead><tr><th>ID</th><th>Group</th><th>Status</th>
        <th>Health</th><th></th></tr></thead><tbody>${rows}</tbody></table></div>`;
  },
};
