// A job diff as Nomad's API gives it (`Diff` of a plan, `Diffs` of job versions): the job,
// its task groups, tasks, objects and fields, each Added, Deleted, Edited or None; drawn as a
// nested list with +, - and ~ as `job plan` prints it. Unchanged parts are left out.

import { h } from './html.js';

const MARK = { Added: '+', Deleted: '-', Edited: '~', None: ' ' };

function field(f) {
  const kind = (f.Type || 'None').toLowerCase();
  let text;
  if (f.Type === 'Added') text = h`${f.Name}: "${f.New}"`;
  else if (f.Type === 'Deleted') text = h`${f.Name}: "${f.Old}"`;
  else text = h`${f.Name}: "${f.Old}" => "${f.New}"`;
  const notes = (f.Annotations || []).length ? h` <span class="muted">(${f.Annotations.join(', ')})</span>` : '';
  return h`<li class="${kind}">${MARK[f.Type] || ' '} ${text}${notes}</li>`;
}

function node(label, d) {
  if (!d || d.Type === 'None') return '';
  const kind = (d.Type || 'None').toLowerCase();
  const fields = (d.Fields || []).filter((f) => f.Type !== 'None').map(field);
  const objects = (d.Objects || []).map((o) => node(o.Name, o));
  const groups = (d.TaskGroups || []).map((g) => node(h`Task Group: "${g.Name}"`, g));
  const tasks = (d.Tasks || []).map((t) => node(h`Task: "${t.Name}"`, t));
  const updates = Object.entries(d.Updates || {}).map(([k, n]) => `${n} ${k}`);
  const notes = updates.length ? h` <span class="muted">(${updates.join(', ')})</span>` : '';
  return h`<li class="${kind}">${MARK[d.Type] || ' '} ${label}${notes}
    <ul>${fields}${objects}${groups}${tasks}</ul></li>`;
}

// The diff of a whole job; `empty` says what to show when nothing changed.
export function jobDiff(diff, empty = 'No changes.') {
  if (!diff || diff.Type === 'None' || !diff.Type) return h`<p class="muted">${empty}</p>`;
  return h`<div class="diff"><ul>${node(h`Job: "${diff.ID}"`, diff)}</ul></div>`;
}
