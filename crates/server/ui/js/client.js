// One client node: its facts, allocations and events, eligibility, and a Drain dialog
// (deadline, force, ignore system jobs) that sends what `node drain -enable` sends.

import { read, send, enc } from './api.js';
import { h, badge, when, short } from './html.js';
import { act } from './frame.js';
import { rights, lacksLevel } from './rights.js';

// A duration as Go writes it ("1h30m", "45s", "500ms") in nanoseconds; NaN when it is not one.
export function durationNs(text) {
  const units = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9, m: 6e10, h: 3.6e12 };
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  const t = text.trim();
  let total = 0;
  let seen = 0;
  let m;
  while ((m = re.exec(t))) {
    total += Number(m[1]) * units[m[2]];
    seen = re.lastIndex;
  }
  return t && seen === t.length ? Math.round(total) : NaN;
}

export default {
  title: ([id]) => `Client ${short(id)}`,

  mount(root, ctx) {
    root.innerHTML = `<div id="live"></div>
      <dialog id="drain-dialog" aria-labelledby="drain-title">
        <form method="dialog" id="drain-form">
          <h2 id="drain-title">Drain this client</h2>
          <label>Deadline (a duration: 1h, 30m, 90s)
            <input id="drain-deadline" value="1h" required></label>
          <label class="check"><input type="checkbox" id="drain-force"> Force: stop every allocation now</label>
          <label class="check"><input type="checkbox" id="drain-ignore-system"> Ignore system jobs</label>
          <p class="why" id="drain-why"></p>
          <div class="actions">
            <button id="drain-submit" value="drain">Drain</button>
            <button id="drain-cancel" value="cancel" class="secondary" formnovalidate>Cancel</button>
          </div>
        </form>
      </dialog>`;
    ctx.live = root.querySelector('#live');
    const id = ctx.params[0];
    const dialog = root.querySelector('#drain-dialog');
    const deadline = root.querySelector('#drain-deadline');
    const force = root.querySelector('#drain-force');
    const why = root.querySelector('#drain-why');
    force.addEventListener('change', () => { deadline.disabled = force.checked; });
    root.querySelector('#drain-submit').addEventListener('click', (ev) => {
      const ns = force.checked ? -1 : durationNs(deadline.value);
      if (Number.isNaN(ns) || ns <= 0 && !force.checked) {
        ev.preventDefault();
        why.textContent = `"${deadline.value}" is not a duration: write it as 1h, 30m or 90s.`;
        return;
      }
      why.textContent = '';
      const spec = { Deadline: ns, IgnoreSystemJobs: root.querySelector('#drain-ignore-system').checked };
      act('Drain', () => send('POST', `/v1/node/${enc(id)}/drain`, { DrainSpec: spec, Meta: { message: 'drained from the Yurt UI' } }));
    });
    root.addEventListener('click', (ev) => {
      const b = ev.target.closest('button');
      if (!b || b.disabled) return;
      if (b.id === 'drain-open') dialog.showModal();
      if (b.id === 'drain-stop') {
        act('Stopping the drain', () => send('POST', `/v1/node/${enc(id)}/drain`, { DrainSpec: null, MarkEligible: false }));
      }
      if (b.id === 'eligibility') {
        const to = b.dataset.to;
        act('Changing eligibility', () => send('POST', `/v1/node/${enc(id)}/eligibility`, { Eligibility: to }));
      }
    });
  },

  async load({ params: [id] }) {
    const [node, allocs, r] = await Promise.all([
      read(`/v1/node/${enc(id)}`),
      read(`/v1/node/${enc(id)}/allocations`),
      rights(),
    ]);
    return { node, allocs, r };
  },

  render({ node: n, allocs, r }) {
    const no = lacksLevel(r, 'Node', 'write');
    const off = no ? h` disabled title="${no}"` : '';
    const eligible = n.SchedulingEligibility === 'eligible';
    const drain = n.DrainStrategy;
    const rows = allocs.map((a) => h`<tr>
      <td><a href="/ui/allocations/${enc(a.ID)}">${short(a.ID)}</a></td>
      <td><a href="/ui/jobs/${enc(a.JobID)}">${a.JobID}</a></td><td>${a.TaskGroup}</td>
      <td>${badge(a.ClientStatus)}</td><td class="wide">${a.DesiredStatus}</td></tr>`);
    const events = [...(n.Events || [])].reverse().map((e) => h`<li>
      <time>${when(e.Timestamp || e.Time)}</time> <strong>${e.Subsystem}</strong> ${e.Message}</li>`);
    return h`<h1>${n.Name} ${badge(n.Status)} ${n.Drain ? badge('draining') : ''}</h1>
      <dl class="facts">
        <div><dt>ID</dt><dd>${n.ID}</dd></div>
        <div><dt>Address</dt><dd>${n.Address || n.HTTPAddr || ''}</dd></div>
        <div><dt>Datacenter</dt><dd>${n.Datacenter}</dd></div>
        <div><dt>Eligibility</dt><dd id="eligibility-state">${n.SchedulingEligibility}</dd></div>
        <div><dt>Drain</dt><dd id="drain-state">${drain ? (drain.ForceDeadline ? `until ${when(drain.ForceDeadline)}` : 'no deadline') : 'no'}</dd></div>
        <div><dt>Version</dt><dd>${n.Version || n.Attributes?.['nomad.version'] || ''}</dd></div>
      </dl>
      <div class="actions">
        ${n.Drain ? h`<button id="drain-stop" class="secondary"${off}>Stop draining</button>`
          : h`<button id="drain-open"${off}>Drain…</button>`}
        <button id="eligibility" class="secondary" data-to="${eligible ? 'ineligible' : 'eligible'}"${off}>
          ${eligible ? 'Mark ineligible' : 'Mark eligible'}</button>
        ${no ? h`<span class="why" id="node-why">You may not drain this client or change its eligibility: ${no}.</span>` : ''}
      </div>
      <h2>Allocations</h2>
      ${rows.length ? h`<div class="scroll"><table id="allocations"><thead><tr><th>ID</th><th>Job</th><th>Group</th>
        <th>Status</th><th class="wide">Desired</th></tr></thead><tbody>${rows}</tbody></table></div>`
        : h`<p class="muted" id="no-allocations">No allocations.</p>`}
      <h2>Events</h2><ol class="timeline" id="events">${events}</ol>`;
  },
};
