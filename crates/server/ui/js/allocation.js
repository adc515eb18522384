// An allocation: its tasks' states and events as a timeline, live logs (stdout or stderr,
// followed as they are written), and memory and CPU as small charts from its stats; Restart
// its tasks, or Stop it (asked twice), while it runs and the token may.

import { read, send, enc, streamLogs } from './api.js';
import { h, put, badge, when, short } from './html.js';
import { act } from './frame.js';
import { rights, lacks } from './rights.js';

const POINTS = 60;
const KEEP = 256 * 1024;

// A sparkline of `values` (the last POINTS), scaled to its maximum.
function chart(label, values, format) {
  const max = Math.max(...values, 1);
  const step = 200 / (POINTS - 1);
  const pts = values.map((v, i) => `${(i + POINTS - values.length) * step},${40 - (v / max) * 38}`).join(' ');
  const last = values.length ? format(values[values.length - 1]) : 'no reading yet';
  return h`<figure class="chart"><figcaption>${label}: <strong>${last}</strong></figcaption>
    <svg viewBox="0 0 200 40" width="200" height="40" role="img" aria-label="${label} ${last}">
      <polyline fill="none" stroke="currentColor" stroke-width="1.5" points="${pts}"></polyline>
    </svg></figure>`;
}

const mib = (b) => `${(b / 1048576).toFixed(1)} MiB`;
const pct = (p) => `${p.toFixed(1)} %`;

export default {
  title: ([id]) => `Allocation ${short(id)}`,

  mount(root, ctx) {
    root.innerHTML = `<div id="live"></div>
      <h2>Resources</h2><div id="stats" class="charts"></div>
      <h2>Logs</h2>
      <div class="filters">
        <label>Task <select id="log-task"></select></label>
        <label>Stream <select id="log-type"><option>stdout</option><option>stderr</option></select></label>
        <label class="check"><input type="checkbox" id="log-follow" checked> Follow</label>
      </div>
      <pre class="logs" id="logs" tabindex="0" aria-label="Task logs"></pre>`;
    ctx.live = root.querySelector('#live');
    const id = ctx.params[0];
    ctx.confirmStop = false;
    root.addEventListener('click', (ev) => {
      const b = ev.target.closest('#live button');
      if (!b || b.disabled) return;
      if (b.id === 'alloc-restart') {
        act('Restarting', () => send('POST', `/v1/client/allocation/${enc(id)}/restart`, {}));
      } else if (b.id === 'alloc-stop' || b.id === 'alloc-stop-cancel') {
        ctx.confirmStop = b.id === 'alloc-stop';
        ctx.redraw();
      } else if (b.id === 'alloc-stop-confirm') {
        ctx.confirmStop = false;
        act('Stopping the allocation', () => send('POST', `/v1/allocation/${enc(id)}/stop`, {}));
      }
    });
    const pre = root.querySelector('#logs');
    const task = root.querySelector('#log-task');
    const type = root.querySelector('#log-type');
    const follow = root.querySelector('#log-follow');
    let stream = null;
    const restart = () => {
      if (stream) stream.abort();
      pre.textContent = '';
      if (!task.value) return;
      stream = new AbortController();
      const signal = stream.signal;
      ctx.signal.addEventListener('abort', () => stream.abort());
      const append = (text) => {
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.textContent = (pre.textContent + text).slice(-KEEP);
        if (follow.checked && atEnd) pre.scrollTop = pre.scrollHeight;
      };
      act('Reading the logs', () => streamLogs(id, task.value, type.value, append, signal)
        .catch((e) => { if (!signal.aborted) throw e; }));
    };
    ctx.tasks = (names) => {
      if (task.options.length === names.length) return;
      task.replaceChildren(...names.map((n) => new Option(n, n)));
      restart();
    };
    task.addEventListener('change', restart);
    type.addEventListener('change', restart);
    follow.addEventListener('change', () => { if (follow.checked) pre.scrollTop = pre.scrollHeight; });

    // Stats every second while the page is open.
    const memory = [];
    const cpu = [];
    const stats = root.querySelector('#stats');
    const poll = async () => {
      try {
        const s = await read(`/v1/client/allocation/${enc(id)}/stats`);
        memory.push(s.ResourceUsage?.MemoryStats?.RSS || 0);
        cpu.push(s.ResourceUsage?.CpuStats?.Percent || 0);
        if (memory.length > POINTS) { memory.shift(); cpu.shift(); }
        put(stats, h`${chart('Memory (RSS)', memory, mib)}${chart('CPU', cpu, pct)}`);
      } catch (e) {
        put(stats, h`<p class="muted">No stats: ${e.explained || e.message}</p>`);
      }
    };
    poll();
    const timer = setInterval(poll, 1000);
    ctx.signal.addEventListener('abort', () => clearInterval(timer));
  },

  async load({ params: [id] }) {
    const [alloc, r] = await Promise.all([read(`/v1/allocation/${enc(id)}`), rights()]);
    return { ...alloc, rights: r };
  },

  render(a, ctx) {
    const ended = ['complete', 'failed', 'lost'].includes(a.ClientStatus) || a.DesiredStatus !== 'run';
    const no = ended ? 'the allocation is not running'
      : lacks(a.rights, a.Namespace || 'default', 'alloc-lifecycle');
    const off = no ? h` disabled title="${no}"` : '';
    const actions = ctx.confirmStop && !no
      ? h`<button id="alloc-stop-confirm" class="danger">Yes, stop it</button>
          <button id="alloc-stop-cancel" class="secondary">Cancel</button>`
      : h`<button id="alloc-restart" class="secondary"${off}>Restart</button>
          <button id="alloc-stop" class="danger"${off}>Stop</button>`;
    const states = Object.entries(a.TaskStates || {});
    ctx.tasks(states.length ? states.map(([n]) => n) : (a.Job?.TaskGroups || [])
      .find((g) => g.Name === a.TaskGroup)?.Tasks?.map((t) => t.Name) || []);
    const tasks = states.map(([name, t]) => h`<section class="task" data-task="${name}">
      <h3>${name} ${badge(t.State)} ${t.Failed ? badge('failed') : ''}
        <span class="muted">restarts: ${t.Restarts || 0}</span></h3>
      <ol class="timeline">${[...(t.Events || [])].reverse().map((e) => h`<li>
        <time>${when(e.Time)}</time> <strong>${e.Type}</strong>
        <span>${e.DisplayMessage || e.Message || ''}</span></li>`)}</ol></section>`);
    return h`<h1>Allocation ${short(a.ID)} ${badge(a.ClientStatus)}</h1>
      <div class="actions">${actions}${no ? h`<span class="why" id="alloc-why">${no[0].toUpperCase() + no.slice(1)}.</span>` : ''}</div>
      <dl class="facts">
        <div><dt>Job</dt><dd><a href="/ui/jobs/${enc(a.JobID)}">${a.JobID}</a></dd></div>
        <div><dt>Group</dt><dd>${a.TaskGroup}</dd></div>
        <div><dt>Client</dt><dd><a href="/ui/clients/${enc(a.NodeID)}">${a.NodeName || short(a.NodeID)}</a></dd></div>
        <div><dt>Desired</dt><dd>${a.DesiredStatus}</dd></div>
        <div><dt>Version</dt><dd>${a.JobVersion ?? a.Job?.Version}</dd></div>
      </dl>
      <h2>Tasks</h2>${tasks.length ? tasks : h`<p class="muted">No task has started yet.</p>`}`;
  },
};
