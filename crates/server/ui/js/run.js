// Run a job: paste or edit a job file (HCL), see what the plan would change (its diff and the
// scheduler's annotations: what is placed, updated, stopped; what cannot be placed), then run
// it with the plan's check index, so that a job changed meanwhile is refused, not overwritten.

import { send, enc } from './api.js';
import { h, put } from './html.js';
import { jobDiff } from './diff.js';
import { act, navigate } from './frame.js';
import { rights, lacks } from './rights.js';

const EXAMPLE = `job "example" {
  datacenters = ["dc1"]
  type        = "service"

  group "web" {
    count = 1

    task "server" {
      driver = "raw_exec"

      config {
        command = "/bin/sleep"
        args    = ["3600"]
      }
    }
  }
}
`;

let draft = EXAMPLE;

function annotations(plan) {
  const updates = Object.entries(plan.Annotations?.DesiredTGUpdates || {});
  const rows = updates.map(([g, u]) => {
    const parts = ['Place', 'InPlaceUpdate', 'DestructiveUpdate', 'Stop', 'Migrate', 'Canary', 'Ignore']
      .filter((k) => u[k]).map((k) => `${u[k]} ${k.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase()}`);
    return h`<li>Task group "${g}": ${parts.join(', ') || 'nothing to do'}</li>`;
  });
  const failed = Object.entries(plan.FailedTGAllocs || {}).map(([g, m]) =>
    h`<li class="deleted">Task group "${g}" cannot be placed: ${m.CoalescedFailures ? `${m.CoalescedFailures + 1} allocations` : 'an allocation'}
      (${Object.entries(m.DimensionExhausted || {}).map(([k, n]) => `${k} exhausted on ${n} nodes`).join(', ') || `${m.NodesEvaluated ?? 0} nodes evaluated`})</li>`);
  return h`<ul id="annotations">${rows}${failed}</ul>`;
}

export default {
  title: () => 'Run a job',

  mount(root) {
    root.innerHTML = `<h1>Run a job</h1>
      <label for="jobspec">Job file (HCL)</label>
      <textarea id="jobspec" rows="20" spellcheck="false"></textarea>
      <div class="actions">
        <button id="plan">Plan</button>
        <button id="run" disabled>Run</button>
        <span class="why" id="why">Plan first: the run uses the plan's check index.</span>
      </div>
      <section id="plan-result" aria-live="polite"></section>`;
    const text = root.querySelector('#jobspec');
    const runButton = root.querySelector('#run');
    const why = root.querySelector('#why');
    const out = root.querySelector('#plan-result');
    text.value = draft;
    let planned = null;
    const onInput = () => {
      draft = text.value;
      planned = null;
      runButton.disabled = true;
      why.textContent = 'The job file changed: plan it again.';
    };
    text.addEventListener('input', onInput);
    const planButton = root.querySelector('#plan');
    // A token that may not submit jobs sees why before it tries.
    rights().then((r) => {
      const no = lacks(r, 'default', 'submit-job');
      if (!no) return;
      planButton.disabled = true;
      runButton.disabled = true;
      planButton.title = no;
      why.textContent = `You may not plan or run jobs: ${no}.`;
      text.removeEventListener('input', onInput);
    });
    planButton.addEventListener('click', () => act('Plan', async () => {
      const job = await send('POST', '/v1/jobs/parse', { JobHCL: text.value, Canonicalize: true });
      const ns = job.Namespace ? `?namespace=${enc(job.Namespace)}` : '';
      const plan = await send('POST', `/v1/job/${enc(job.ID)}/plan${ns}`, { Job: job, Diff: true });
      planned = { job, index: plan.JobModifyIndex, ns };
      put(out, h`<h2>Plan</h2>
        ${jobDiff(plan.Diff, 'No changes: the job is as it runs.')}
        <h2>Scheduler dry-run</h2>${annotations(plan)}
        <p class="muted">Check index ${plan.JobModifyIndex}.</p>`);
      runButton.disabled = false;
      why.textContent = `Runs version with check index ${plan.JobModifyIndex}.`;
    }));
    runButton.addEventListener('click', () => act('Run', async () => {
      if (!planned) return;
      const { job, index, ns } = planned;
      await send('POST', `/v1/jobs${ns}`, { Job: job, EnforceIndex: true, JobModifyIndex: index });
      navigate(`/ui/jobs/${enc(job.ID)}${ns}`);
    }));
  },
};
