//! The scheduler: given the state and a job, decide which allocations to place, update in place,
//! replace or stop, and on which nodes. Pure: the leader's eval loop feeds it a state and turns
//! the [`Outcome`] into a Raft `ApplyPlan` command.
//!
//! Per task group the reconciler sorts the group's live allocations into buckets, Nomad-style:
//! *ignore* (already at this job version), *in-place update* (only non-destructive fields
//! changed), *destructive update* (task config/env/resources/driver changed: stop and replace),
//! *stop* (no longer wanted) and *place* (missing). System jobs want one allocation per
//! feasible node instead of `count`.

use std::collections::{BTreeMap, BTreeSet};

use yurt_types::constraint;
use yurt_types::diff::job_diff;
use yurt_types::status::*;

use crate::evals::new_eval;
use crate::features::Gates;
use crate::internal::{command, ApplyPlan, Command, DeploymentChange, JobRegister};
use crate::state::State;
use crate::v1::{
    AllocDeploymentStatus, AllocMetric, Allocation, Deployment, DeploymentState, DesiredUpdates,
    Evaluation, Job, JobDiff, Node, Port, RescheduleEvent, Resources, SchedulerConfiguration,
    TaskGroup, UpdateStrategy,
};

/// Everything one scheduler run decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Allocations to write: new ones, in-place updated ones and stopped ones.
    pub allocs: Vec<Allocation>,
    pub desired: BTreeMap<String, DesiredUpdates>,
    /// Per group, why allocations could not be placed.
    pub failed: BTreeMap<String, AllocMetric>,
    /// Per group, how many allocations wait for room.
    pub queued: BTreeMap<String, u32>,
    /// When a failed allocation becomes due for rescheduling (Unix ms), if one waits.
    pub followup_at: Option<i64>,
    /// When a system job's rolling update goes on (`stagger` after this step), if it must.
    pub rolling_at: Option<i64>,
    /// The job version that new and updated allocations run; they leave their own `job`
    /// empty (it travels once, in the plan).
    pub job: Option<Job>,
    /// The deployment this run creates for the job's version.
    pub deployment: Option<Deployment>,
    /// Deployments this run ends: the current one `successful`, older ones `cancelled`.
    pub deployment_changes: Vec<DeploymentChange>,
}

/// The scheduler settings a state runs with, defaults filled in (`scheduler get-config`).
pub fn scheduler_config(state: &State) -> SchedulerConfiguration {
    let mut c = state.scheduler_config.clone();
    if c.scheduler_algorithm.is_empty() {
        c.scheduler_algorithm = SCHEDULER_BINPACK.into();
    }
    c
}

/// The settings after `scheduler set-config`: `algorithm` replaces the current one unless empty.
/// The error is the sentence for the user.
pub fn set_scheduler_config(
    state: &State,
    algorithm: &str,
) -> Result<SchedulerConfiguration, String> {
    let mut c = scheduler_config(state);
    match algorithm {
        "" => {}
        SCHEDULER_BINPACK | SCHEDULER_SPREAD => c.scheduler_algorithm = algorithm.into(),
        other => {
            return Err(format!(
                "scheduler algorithm {other:?} is not one of {SCHEDULER_BINPACK:?} or {SCHEDULER_SPREAD:?}"
            ))
        }
    }
    Ok(c)
}

/// Runs the scheduler for `job_id` against `state`. `new_id` makes allocation IDs.
pub fn schedule(
    state: &State,
    job_id: &str,
    eval_id: &str,
    now: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Outcome {
    let mut usage = NodeUsage::of_state(state);
    schedule_with(state, &mut usage, Gates::ALL, job_id, eval_id, now, new_id)
}

/// What the nodes have taken: their live allocations, as scheduler runs leave them.
#[derive(Debug, Clone, Default)]
pub struct NodeUsage(BTreeMap<String, Usage>);

impl NodeUsage {
    /// Every node's usage by its live allocations, in one pass over the state.
    pub fn of_state(state: &State) -> NodeUsage {
        NodeUsage(Usage::of_state(state))
    }
}

/// [`schedule`] with the nodes' usage given: runs for several jobs on the same state share one,
/// so that each sees what the runs before it placed and stopped, and their plans do not compete
/// for the same room (the state machine would refuse all but the first).
/// `gates` says what the cluster's servers can all read (see [`crate::features`]): without
/// deployments, updates replace allocations at once as before them.
pub fn schedule_with(
    state: &State,
    usage: &mut NodeUsage,
    gates: Gates,
    job_id: &str,
    eval_id: &str,
    now: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Outcome {
    let mut run = Run {
        state,
        eval_id,
        now,
        new_id,
        out: Outcome::default(),
        usage: &mut usage.0,
        nodes: state.nodes.values().collect(),
        cursor: start_offset(eval_id, state.nodes.len()),
        spread: scheduler_config(state).scheduler_algorithm == SCHEDULER_SPREAD,
        regexes: Default::default(),
        deployment: None,
        pending: BTreeSet::new(),
        gates,
    };
    let job = state.job(job_id).filter(|j| !j.stop);
    let allocs: Vec<&Allocation> = state.job_allocs(job_id);
    let Some(job) = job else {
        for a in allocs.into_iter().filter(|a| !alloc_terminal(a)) {
            run.stop(a, DESC_JOB_STOPPED);
        }
        if gates.deployments {
            run.cancel_deployments(job_id, None);
        }
        return run.out;
    };
    // Allocations of a purged job of the same ID still running: they belong to no job now.
    for a in state.allocs.of_job(job_id) {
        if !alloc_terminal(a) && !crate::state::of_this_job(job, a) {
            run.stop(a, DESC_JOB_STOPPED);
        }
    }
    // Without the feature (an older server could not read them) deployments are left alone.
    if gates.deployments {
        run.deployment = run.cancel_deployments(job_id, Some(job));
    }
    // Groups that were removed from the job: stop their allocations.
    for a in &allocs {
        if !alloc_terminal(a) && !job.task_groups.iter().any(|g| g.name == a.task_group) {
            run.stop(a, DESC_NOT_NEEDED);
        }
    }
    for g in &job.task_groups {
        run.out.desired.entry(g.name.clone()).or_default();
        let group_allocs: Vec<&Allocation> = allocs
            .iter()
            .copied()
            .filter(|a| a.task_group == g.name)
            .collect();
        if job.r#type == JOB_TYPE_SYSTEM {
            run.system_group(job, g, &group_allocs);
        } else {
            run.count_group(job, g, &group_allocs);
        }
    }
    run.finish_deployment();
    if run.out.allocs.iter().any(|a| a.job.is_none()) {
        run.out.job = Some(job.clone());
    }
    // One delayed evaluation per due time is enough.
    if let Some(due) = run.out.followup_at {
        let waiting = state.evals.of_job(job_id).any(|e| {
            e.status == EVAL_PENDING && e.wait_until_unix_ms > now && e.wait_until_unix_ms <= due
        });
        if waiting {
            run.out.followup_at = None;
        }
    }
    if let Some(due) = run.out.rolling_at {
        let waiting = state.evals.of_job(job_id).any(|e| {
            e.status == EVAL_PENDING
                && e.triggered_by == TRIGGER_ROLLING_UPDATE
                && e.wait_until_unix_ms > now
                && e.wait_until_unix_ms <= due
        });
        if waiting {
            run.out.rolling_at = None;
        }
    }
    run.out
}

/// Turns an outcome into the Raft command that records it: the allocations, the evaluation
/// marked complete, and a blocked evaluation for allocations that found no room.
pub fn plan_command(
    eval: &Evaluation,
    superseded: &[&Evaluation],
    outcome: Outcome,
    now: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Command {
    let mut done = eval.clone();
    // Older evaluations of the same job: this run did their work.
    let mut new_evals: Vec<Evaluation> = superseded
        .iter()
        .map(|e| Evaluation {
            status: EVAL_CANCELED.into(),
            status_description: format!("superseded by evaluation {}", eval.id),
            ..(*e).clone()
        })
        .collect();
    done.failed_tg_allocs = outcome.failed.into_iter().collect();
    done.queued_allocations = outcome.queued.into_iter().collect();
    done.status = EVAL_COMPLETE.into();
    if !done.failed_tg_allocs.is_empty() {
        if eval.triggered_by == TRIGGER_QUEUED_ALLOCS {
            // Still no room: wait again for capacity.
            done.status = EVAL_BLOCKED.into();
        } else {
            let blocked = Evaluation {
                id: new_id(),
                priority: eval.priority,
                r#type: eval.r#type.clone(),
                triggered_by: TRIGGER_QUEUED_ALLOCS.into(),
                job_id: eval.job_id.clone(),
                job_modify_index: eval.job_modify_index,
                status: EVAL_BLOCKED.into(),
                status_description: DESC_BLOCKED_EVAL.into(),
                previous_eval: eval.id.clone(),
                ..Evaluation::default()
            };
            done.blocked_eval = blocked.id.clone();
            new_evals.push(blocked);
        }
    }
    if let Some(due) = outcome.followup_at {
        new_evals.push(Evaluation {
            id: new_id(),
            priority: eval.priority,
            r#type: eval.r#type.clone(),
            triggered_by: TRIGGER_ALLOC_RESCHEDULE.into(),
            job_id: eval.job_id.clone(),
            status: EVAL_PENDING.into(),
            status_description: DESC_DELAYED_EVAL.into(),
            previous_eval: eval.id.clone(),
            wait_until_unix_ms: due,
            ..Evaluation::default()
        });
    }
    if let Some(due) = outcome.rolling_at {
        new_evals.push(Evaluation {
            id: new_id(),
            priority: eval.priority,
            r#type: eval.r#type.clone(),
            triggered_by: TRIGGER_ROLLING_UPDATE.into(),
            job_id: eval.job_id.clone(),
            status: EVAL_PENDING.into(),
            previous_eval: eval.id.clone(),
            wait_until_unix_ms: due,
            ..Evaluation::default()
        });
    }
    Command {
        now_unix_ms: now,
        ignore_if_unknown: false,
        kind: Some(command::Kind::ApplyPlan(ApplyPlan {
            allocs: outcome.allocs,
            eval: Some(done),
            new_evals,
            job: outcome.job,
            deployment: outcome.deployment,
            deployment_changes: outcome.deployment_changes,
        })),
    }
}

/// The evaluations clients' reports call for: a newly failed allocation gets its job an
/// `alloc-failure` evaluation (it is rescheduled), a newly healthy one of a running deployment a
/// `deployment-watcher` one (the rollout goes on at once).
pub fn client_update_evals(
    state: &State,
    updates: &[crate::v1::AllocClientUpdate],
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Evaluation> {
    let mut evals: Vec<Evaluation> = state
        .jobs_with_new_failures(updates)
        .into_iter()
        .map(|j| new_eval(j, new_id(), TRIGGER_ALLOC_FAILURE))
        .collect();
    evals.extend(crate::deploy::health_evals(state, updates, new_id));
    evals
}

/// The result of `job plan`: what registering `job` would change, without changing anything.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanResult {
    /// The job's current `job_modify_index` (0 for a new job).
    pub job_modify_index: u64,
    /// The diff, its task groups annotated with the scheduler's counts.
    pub diff: JobDiff,
    pub desired: BTreeMap<String, DesiredUpdates>,
    pub failed: BTreeMap<String, AllocMetric>,
}

impl PlanResult {
    /// Whether running the job would create or destroy allocations (`job plan` exit code 1).
    pub fn changes_allocations(&self) -> bool {
        self.desired
            .values()
            .any(|d| d.place + d.stop + d.destructive_update + d.migrate + d.canary > 0)
    }
}

/// Dry-runs a registration of `job` on a copy of `state`.
pub fn plan_job(state: &State, job: &Job, now: i64, gates: Gates) -> PlanResult {
    plan_job_on(state.clone(), job, now, gates)
}

/// [`plan_job`] on a copy of the state the caller made (the server copies it under its lock
/// and plans after letting go of it).
pub fn plan_job_on(mut scratch: State, job: &Job, now: i64, gates: Gates) -> PlanResult {
    let existing: Option<Job> = scratch.job(&job.id).cloned();
    let existing = existing.as_ref();
    let mut diff = job_diff(existing, job);
    let cmd = Command {
        now_unix_ms: now,
        ignore_if_unknown: false,
        kind: Some(command::Kind::JobRegister(JobRegister {
            job: Some(job.clone()),
            eval: None,
            enforce_index: false,
            job_modify_index: 0,
        })),
    };
    // Registration without enforcement cannot fail.
    let _ = scratch.apply(scratch.index + 1, &cmd);
    let mut n = 0;
    let mut usage = NodeUsage::of_state(&scratch);
    let outcome = schedule_with(
        &scratch,
        &mut usage,
        gates,
        &job.id,
        "plan",
        now,
        &mut || {
            n += 1;
            format!("plan-{n}")
        },
    );
    for g in &mut diff.task_groups {
        if let Some(d) = outcome.desired.get(&g.name) {
            g.updates = annotations(d);
        }
    }
    PlanResult {
        job_modify_index: existing.map_or(0, |e| e.job_modify_index),
        diff,
        desired: outcome.desired,
        failed: outcome.failed,
    }
}

/// The scheduler's counts under the names `job plan` prints.
pub fn annotations(d: &DesiredUpdates) -> std::collections::BTreeMap<String, u64> {
    [
        ("create", d.place),
        ("destroy", d.stop),
        ("ignore", d.ignore),
        ("in-place update", d.in_place_update),
        ("create/destroy update", d.destructive_update),
        ("migrate", d.migrate),
        ("canary", d.canary),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(k, n)| (k.to_string(), n))
    .collect()
}

/// Whether moving an allocation from `old` to `new` needs a new allocation (Nomad's
/// `tasksUpdated`): tasks added or removed, or a task's driver, user, config, env, meta,
/// resources or logs changed, or the group's network changed.
pub fn tasks_updated(old: &Job, new: &Job, group: &str) -> bool {
    let (Some(a), Some(b)) = (
        old.task_groups.iter().find(|g| g.name == group),
        new.task_groups.iter().find(|g| g.name == group),
    ) else {
        return true;
    };
    if a.tasks.len() != b.tasks.len() || a.networks != b.networks || a.meta != b.meta {
        return true;
    }
    if old.meta != new.meta {
        return true;
    }
    b.tasks.iter().any(|t| {
        let Some(o) = a.tasks.iter().find(|o| o.name == t.name) else {
            return true;
        };
        o.driver != t.driver
            || o.user != t.user
            || o.config != t.config
            || o.env != t.env
            || o.meta != t.meta
            || o.resources != t.resources
            || o.logs != t.logs
    })
}

/// The resources an allocation of `group` asks for: the sum of its tasks'.
pub fn group_resources(group: &TaskGroup) -> Resources {
    group.tasks.iter().fold(Resources::default(), |acc, t| {
        let r = t.resources.unwrap_or_default();
        Resources {
            cpu: acc.cpu + r.cpu,
            memory_mb: acc.memory_mb + r.memory_mb,
        }
    })
}

/// Dynamic host ports come from this range (Nomad's default).
pub const DYNAMIC_PORTS: std::ops::Range<u32> = 20_000..32_000;

/// The index in an allocation name `job.group[3]`.
fn name_index(name: &str) -> Option<u32> {
    name.rsplit_once('[')?.1.strip_suffix(']')?.parse().ok()
}

struct Run<'a, 'u> {
    state: &'a State,
    eval_id: &'a str,
    now: i64,
    new_id: &'a mut dyn FnMut() -> String,
    out: Outcome,
    /// What each node has taken: its live allocations, less those this run stops, plus this
    /// run's placements. Kept up to date as the run goes.
    usage: &'u mut BTreeMap<String, Usage>,
    /// Every node, in a fixed order; placements look at them from a moving start.
    nodes: Vec<&'a Node>,
    /// Where the next placement starts looking.
    cursor: usize,
    /// `regexp` constraint values, compiled once per run.
    regexes: std::cell::RefCell<BTreeMap<String, Option<regex::Regex>>>,
    /// Rank by the spread algorithm instead of bin packing (`operator scheduler set-config`).
    spread: bool,
    /// The deployment of the job's current version: the state's, while it has not succeeded
    /// or been cancelled, or the one this run creates (`out.deployment`).
    deployment: Option<Deployment>,
    /// Groups with work left for later runs (updates held back by `max_parallel`, canaries
    /// awaiting promotion): their deployment is not complete.
    pending: BTreeSet<String>,
    gates: Gates,
}

/// A group's update strategy, when its updates go through deployments.
fn strategy<'g>(job: &Job, g: &'g TaskGroup) -> Option<&'g UpdateStrategy> {
    g.update
        .as_ref()
        .filter(|u| u.max_parallel > 0 && job.r#type == JOB_TYPE_SERVICE)
}

fn is_canary(a: &Allocation) -> bool {
    a.deployment_status.as_ref().is_some_and(|s| s.canary)
}

fn health(a: &Allocation) -> Option<bool> {
    a.deployment_status.as_ref().and_then(|s| s.healthy)
}

/// How an allocation comes to a job version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// It runs that version already.
    None,
    InPlace,
    /// It must be replaced ([`tasks_updated`]).
    Destructive,
}

fn change_of(a: &Allocation, job: &Job) -> Change {
    let old = a.job.clone().unwrap_or_default();
    if old.job_modify_index == job.job_modify_index {
        Change::None
    } else if tasks_updated(&old, job, &a.task_group) {
        Change::Destructive
    } else {
        Change::InPlace
    }
}

/// Whether an allocation runs exactly this version of the job.
fn at_version(a: &Allocation, job: &Job) -> bool {
    a.job
        .as_ref()
        .is_some_and(|j| j.job_modify_index == job.job_modify_index)
}

impl<'a> Run<'a, '_> {
    fn desired(&mut self, group: &str) -> &mut DesiredUpdates {
        self.out.desired.entry(group.to_string()).or_default()
    }

    /// Gives back what a live allocation this run stops had taken on its node.
    fn release(&mut self, a: &Allocation) {
        if !alloc_terminal(a) {
            if let Some(u) = self.usage.get_mut(&a.node_id) {
                u.remove(a);
            }
        }
    }

    /// Writes an allocation stopped (`why`) and gives back its room, counting nothing: the
    /// callers count it as a stop, a destructive update or a migration.
    fn retire(&mut self, a: &Allocation, why: &str) {
        self.release(a);
        let mut s = a.clone();
        s.desired_status = ALLOC_DESIRED_STOP.into();
        s.desired_description = why.into();
        s.eval_id = self.eval_id.into();
        self.out.allocs.push(s);
    }

    fn stop(&mut self, a: &Allocation, why: &str) {
        self.retire(a, why);
        self.desired(&a.task_group).stop += 1;
    }

    /// Moves an allocation to the job's version in place (it keeps its ID).
    fn update_in_place(&mut self, a: &Allocation) {
        let mut u = a.clone();
        u.job = None;
        u.eval_id = self.eval_id.into();
        self.desired(&a.task_group).in_place_update += 1;
        self.out.allocs.push(u);
    }

    /// Marks an allocation on a node that went away as lost.
    fn lose(&mut self, a: &Allocation) {
        self.stop(a, "alloc is lost since its node is down");
        if let Some(s) = self.out.allocs.last_mut() {
            s.client_status = ALLOC_LOST.into();
        }
    }

    fn node_down(&self, node_id: &str) -> bool {
        self.state
            .nodes
            .get(node_id)
            .is_none_or(|n| n.status == NODE_DOWN)
    }

    /// Brings an existing allocation to the new job version: ignore, in place or replace.
    /// Returns false when it must be replaced (it has been stopped).
    fn update_existing(&mut self, job: &Job, a: &Allocation) -> bool {
        match change_of(a, job) {
            Change::None => self.desired(&a.task_group).ignore += 1,
            Change::InPlace => self.update_in_place(a),
            Change::Destructive => {
                self.retire(a, DESC_UPDATING);
                self.desired(&a.task_group).destructive_update += 1;
                return false;
            }
        }
        true
    }

    /// Ends the job's deployments that no longer apply (all of them when the job is stopped,
    /// those of older versions otherwise) and returns the current version's deployment, unless
    /// it succeeded (a later scale-up or replacement needs none) or was cancelled.
    fn cancel_deployments(&mut self, job_id: &str, job: Option<&Job>) -> Option<Deployment> {
        let mut current: Option<&Deployment> = None;
        for d in self.state.deployments.of_job(job_id) {
            let same = job.is_some_and(|j| {
                d.job_version == j.version && d.job_create_index == j.create_index
            });
            if same {
                if current.is_none_or(|c| c.create_index < d.create_index) {
                    current = Some(d);
                }
            } else if deployment_active(&d.status) {
                let why = if job.is_none() {
                    DESC_DEPLOYMENT_JOB_STOPPED
                } else {
                    DESC_DEPLOYMENT_NEWER_JOB
                };
                self.out.deployment_changes.push(DeploymentChange {
                    deployment_id: d.id.clone(),
                    status: DEPLOYMENT_CANCELLED.into(),
                    status_description: why.into(),
                    ..Default::default()
                });
            }
        }
        current
            .filter(|d| d.status != DEPLOYMENT_SUCCESSFUL && d.status != DEPLOYMENT_CANCELLED)
            .cloned()
    }

    /// The deployment's state for a group, if it has one.
    fn group_state(&self, group: &str) -> Option<&DeploymentState> {
        self.deployment.as_ref()?.task_groups.get(group)
    }

    /// Whether the current deployment accepts new work (not paused or failed).
    fn deployment_running(&self) -> bool {
        self.deployment
            .as_ref()
            .is_some_and(|d| d.status == DEPLOYMENT_RUNNING)
    }

    /// Creates the deployment of the job's version, or adds the group to the one this run
    /// created.
    fn deploy_group(&mut self, job: &Job, g: &TaskGroup, u: &UpdateStrategy, canarying: bool) {
        if self.deployment.is_none() {
            let d = Deployment {
                id: (self.new_id)(),
                job_id: job.id.clone(),
                job_version: job.version,
                job_modify_index: job.job_modify_index,
                job_create_index: job.create_index,
                status: DEPLOYMENT_RUNNING.into(),
                eval_priority: job.priority,
                ..Default::default()
            };
            self.out.deployment = Some(d.clone());
            self.deployment = Some(d);
        }
        let created = self.out.deployment.is_some();
        let d = self.deployment.as_mut().expect("just set");
        if created && !d.task_groups.contains_key(&g.name) {
            d.task_groups.insert(
                g.name.clone(),
                DeploymentState {
                    auto_revert: u.auto_revert,
                    auto_promote: u.auto_promote,
                    progress_deadline_ms: u.progress_deadline_ms,
                    desired_canaries: if canarying { u.canary } else { 0 },
                    desired_total: g.count,
                    ..Default::default()
                },
            );
            d.status_description = crate::deploy::running_description(d).into();
            self.out.deployment = Some(d.clone());
        }
    }

    /// How many more allocations of a group may be replaced now (Nomad's rolling limit):
    /// `max_parallel` less the group's allocations in the deployment that are not yet healthy;
    /// none while one is unhealthy, the deployment is paused or failed, or canaries wait.
    fn update_limit(&self, g: &TaskGroup, u: Option<&UpdateStrategy>, canarying: bool) -> usize {
        let Some(u) = u else { return usize::MAX };
        let max = u.max_parallel as usize;
        if canarying {
            return 0;
        }
        let Some(d) = &self.deployment else {
            return max;
        };
        if self.out.deployment.is_some() {
            return max;
        }
        if d.status != DEPLOYMENT_RUNNING {
            return 0;
        }
        // A failed allocation of the deployment not replaced yet (waiting for its reschedule,
        // or with no attempt left) holds the rollout: this run reschedules it at most.
        let failed_waiting = self.state.allocs.of_job(&d.job_id).any(|a| {
            a.deployment_id == d.id
                && a.task_group == g.name
                && a.client_status == ALLOC_FAILED
                && a.desired_status == ALLOC_DESIRED_RUN
                && a.next_allocation.is_empty()
        });
        if failed_waiting {
            return 0;
        }
        let mut waiting = 0;
        for a in self.live_of_job_id(&d.job_id, &g.name) {
            if a.deployment_id != d.id {
                continue;
            }
            match health(a) {
                Some(false) => return 0,
                Some(true) => {}
                None => waiting += 1,
            }
        }
        max.saturating_sub(waiting)
    }

    /// The job's live allocations in a group as this run leaves them so far.
    fn live_of_job_id(&self, job_id: &str, group: &str) -> Vec<&Allocation> {
        let touched: BTreeSet<&str> = self.out.allocs.iter().map(|a| a.id.as_str()).collect();
        self.state
            .allocs
            .of_job(job_id)
            .filter(|a| !alloc_terminal(a) && !touched.contains(a.id.as_str()))
            .chain(self.out.allocs.iter().filter(|a| !alloc_terminal(a)))
            .filter(|a| a.job_id == job_id && a.task_group == group)
            .collect()
    }

    /// The current deployment is complete when no group has work left and each has its
    /// desired count of healthy allocations (after promotion, if it had canaries): it
    /// succeeds, which marks the job version stable.
    fn finish_deployment(&mut self) {
        let Some(d) = self.deployment.as_ref().filter(|_| self.gates.deployments) else {
            return;
        };
        if self.out.deployment.is_some() || d.status != DEPLOYMENT_RUNNING {
            return;
        }
        let done = d.task_groups.iter().all(|(name, g)| {
            let busy = self.pending.contains(name)
                || self.out.desired.get(name).is_some_and(|u| {
                    u.place + u.destructive_update + u.canary + u.in_place_update > 0
                });
            let healthy = self
                .live_of_job_id(&d.job_id, name)
                .iter()
                .filter(|a| a.deployment_id == d.id && health(a) == Some(true))
                .count() as u32;
            !busy && (g.desired_canaries == 0 || g.promoted) && healthy >= g.desired_total
        });
        if done {
            self.out.deployment_changes.push(DeploymentChange {
                deployment_id: d.id.clone(),
                status: DEPLOYMENT_SUCCESSFUL.into(),
                status_description: DESC_DEPLOYMENT_SUCCESSFUL.into(),
                ..Default::default()
            });
        }
    }

    fn count_group(&mut self, job: &Job, g: &TaskGroup, allocs: &[&Allocation]) {
        let u = strategy(job, g).filter(|_| self.gates.deployments);
        let promoted = self.group_state(&g.name).is_some_and(|s| s.promoted);
        let current_id = self
            .deployment
            .as_ref()
            .map(|d| d.id.clone())
            .unwrap_or_default();
        let mut taken: BTreeMap<u32, ()> = BTreeMap::new();
        // Batch allocations that finished successfully are done: their slot stays filled.
        if job.r#type == JOB_TYPE_BATCH {
            for a in allocs {
                // So are those a drain stopped: they are not replaced elsewhere.
                let drained = a.desired_status == ALLOC_DESIRED_STOP && crate::drain::marked(a);
                if a.client_status == ALLOC_COMPLETE || drained {
                    if let Some(i) = name_index(&a.name) {
                        taken.insert(i, ());
                    }
                }
            }
        }
        let mut live: Vec<&Allocation> = allocs
            .iter()
            .copied()
            .filter(|a| !alloc_terminal(a))
            .collect();
        // For one name, the allocation at the job's version keeps the slot (a promoted canary
        // over the old allocation it replaces).
        live.sort_by_key(|a| {
            (
                name_index(&a.name).unwrap_or(u32::MAX),
                !at_version(a, job),
                a.create_index,
            )
        });
        let mut canaries = Vec::new();
        let mut migrating: Vec<(u32, &Allocation)> = Vec::new();
        let mut destructive: Vec<(u32, &Allocation)> = Vec::new();
        let mut in_place: Vec<&Allocation> = Vec::new();
        for a in live {
            if self.node_down(&a.node_id) {
                self.lose(a);
                continue;
            }
            // A canary whose deployment has not promoted it (a promoted one is a member).
            let waiting_canary = is_canary(a)
                && self
                    .state
                    .deployments
                    .get(&a.deployment_id)
                    .and_then(|d| d.task_groups.get(&g.name))
                    .is_none_or(|s| !s.promoted);
            if crate::drain::marked(a) && waiting_canary {
                // A canary on a draining node: a new one is placed elsewhere (below).
                self.stop(a, DESC_MIGRATING);
                continue;
            }
            if waiting_canary {
                // Canaries of the current deployment wait beside the allocations they will
                // replace (also while it is paused); those of an older or failed one go.
                let current = a.deployment_id == current_id
                    && self
                        .deployment
                        .as_ref()
                        .is_some_and(|d| deployment_active(&d.status));
                if current {
                    canaries.push(a);
                    self.desired(&g.name).ignore += 1;
                } else {
                    self.stop(a, DESC_NOT_NEEDED);
                }
                continue;
            }
            let idx = name_index(&a.name).unwrap_or(u32::MAX);
            if idx >= g.count || taken.contains_key(&idx) {
                self.stop(a, DESC_NOT_NEEDED);
                continue;
            }
            taken.insert(idx, ());
            if crate::drain::marked(a) {
                migrating.push((idx, a));
                continue;
            }
            match change_of(a, job) {
                Change::None => self.desired(&g.name).ignore += 1,
                Change::Destructive => destructive.push((idx, a)),
                Change::InPlace => in_place.push(a),
            }
        }
        let missing = (0..g.count).filter(|i| !taken.contains_key(i)).count();
        // Canaries are wanted for destructive changes, and the deployment waits for their
        // promotion even when the allocations they would replace are gone meanwhile.
        let waiting_promotion = self
            .group_state(&g.name)
            .is_some_and(|s| s.desired_canaries > 0 && !s.promoted);
        let canarying = !promoted
            && u.is_some_and(|u| u.canary > 0)
            && (!destructive.is_empty() || waiting_promotion);
        if let Some(u) = u {
            let had_running = allocs.iter().any(|a| at_version(a, job));
            let updating = !destructive.is_empty() || !in_place.is_empty();
            let wanted = (missing > 0 && !had_running) || updating;
            let new_one = self.deployment.is_none() || self.out.deployment.is_some();
            if wanted && new_one {
                self.deploy_group(job, g, u, canarying);
            }
        }
        let mut limit = self.update_limit(g, u, canarying);
        // In-place updates join the deployment without counting against the limit.
        let deployment_id = self.active_deployment_id();
        for a in in_place {
            self.update_in_place(a);
            let up = self.out.allocs.last_mut().expect("just pushed");
            if up.deployment_id != deployment_id {
                up.deployment_id = deployment_id.clone();
                up.deployment_status = None;
            }
        }
        // Allocations the drainer marked move: stopped here, placed again elsewhere (the
        // drainer meters how many at a time).
        for (idx, a) in migrating {
            self.retire(a, DESC_MIGRATING);
            self.desired(&g.name).migrate += 1;
            self.place(job, g, idx, &a.id, None, false, &[]);
        }
        if canarying {
            self.pending.insert(g.name.clone());
            let want = u.map_or(0, |u| u.canary).min(g.count) as usize;
            if self.deployment_running() {
                for i in canaries.len()..want {
                    // Canaries take the names of the allocations they will replace.
                    let idx = match destructive.len() {
                        0 => i as u32,
                        n => destructive[i % n].0,
                    };
                    if let Some(at) = self.place(job, g, idx, "", None, false, &[]) {
                        self.out.allocs[at].deployment_status = Some(AllocDeploymentStatus {
                            canary: true,
                            ..Default::default()
                        });
                        self.desired(&g.name).canary += 1;
                    }
                }
            }
        }
        self.reschedule_failed(job, g, allocs, &mut taken);
        // While canaries prove the new version, a missing allocation (its node went down) comes
        // back at the version the others run, not as an unproven one of the new version.
        let downgrade: Option<Job> = canarying
            .then(|| {
                allocs
                    .iter()
                    .filter(|a| !at_version(a, job) && !is_canary(a))
                    .filter_map(|a| a.job.as_ref())
                    .max_by_key(|j| j.version)
                    .cloned()
            })
            .flatten();
        let mut placed = 0;
        for idx in 0..g.count {
            if taken.contains_key(&idx) {
                continue;
            }
            placed += 1;
            let old = downgrade
                .as_ref()
                .and_then(|j| Some((j, j.task_groups.iter().find(|og| og.name == g.name)?)));
            match old {
                Some((old_job, old_group)) => {
                    if let Some(at) = self.place(old_job, old_group, idx, "", None, true, &[]) {
                        let a = &mut self.out.allocs[at];
                        a.job = Some(old_job.clone());
                        a.deployment_id.clear();
                    }
                }
                None => {
                    self.place(job, g, idx, "", None, true, &[]);
                }
            }
        }
        limit = limit.saturating_sub(placed);
        for (n, (idx, a)) in destructive.into_iter().enumerate() {
            if n >= limit {
                // Held back by max_parallel (or canaries): a later run replaces it.
                self.desired(&g.name).ignore += 1;
                self.pending.insert(g.name.clone());
                continue;
            }
            self.retire(a, DESC_UPDATING);
            self.desired(&g.name).destructive_update += 1;
            // A replacement is counted as the destructive update, not as a new placement.
            self.place(job, g, idx, &a.id, None, false, &[]);
        }
    }

    /// The deployment new allocations of this run join: the current one while it runs.
    fn active_deployment_id(&self) -> String {
        self.deployment
            .as_ref()
            .filter(|d| deployment_active(&d.status))
            .map(|d| d.id.clone())
            .unwrap_or_default()
    }

    /// Failed allocations not yet replaced: each takes its slot back with a replacement when
    /// the `reschedule` policy allows it now, waits for a follow-up evaluation when the policy
    /// wants a delay, and keeps its slot empty when no attempts are left.
    fn reschedule_failed(
        &mut self,
        job: &Job,
        g: &TaskGroup,
        allocs: &[&Allocation],
        taken: &mut BTreeMap<u32, ()>,
    ) {
        // Allocations of a failed deployment are not replaced: the rollout has stopped.
        let failed_deployment = self
            .deployment
            .as_ref()
            .filter(|d| d.status == DEPLOYMENT_FAILED)
            .map(|d| d.id.clone());
        let failed = allocs.iter().filter(|a| {
            a.client_status == ALLOC_FAILED
                && a.desired_status == ALLOC_DESIRED_RUN
                && a.next_allocation.is_empty()
        });
        for a in failed {
            let Some(idx) = name_index(&a.name).filter(|i| *i < g.count) else {
                continue;
            };
            if taken.insert(idx, ()).is_some()
                || failed_deployment.as_deref() == Some(a.deployment_id.as_str())
            {
                continue;
            }
            if !at_version(a, job) {
                // It failed at an older version: the new version gets its own chance there.
                if let Some(i) = self.place(job, g, idx, &a.id, None, true, &[]) {
                    let mut old = (*a).clone();
                    old.next_allocation = self.out.allocs[i].id.clone();
                    old.desired_status = ALLOC_DESIRED_STOP.into();
                    old.desired_description = DESC_RESCHEDULED.into();
                    old.eval_id = self.eval_id.into();
                    self.out.allocs.push(old);
                }
                continue;
            }
            let delay = g
                .reschedule
                .as_ref()
                .and_then(|p| crate::reschedule::next_delay(p, &a.reschedule_events, self.now));
            let Some(delay) = delay else { continue };
            let due = a.modify_time_unix_ms + delay as i64;
            if due > self.now {
                self.out.followup_at = Some(self.out.followup_at.map_or(due, |t| t.min(due)));
                continue;
            }
            // Nodes it already failed on come last (Nomad's reschedule penalty).
            let mut avoid: Vec<String> = a
                .reschedule_events
                .iter()
                .map(|e| e.prev_node_id.clone())
                .collect();
            avoid.push(a.node_id.clone());
            let Some(i) = self.place(job, g, idx, &a.id, None, true, &avoid) else {
                continue;
            };
            let mut events = a.reschedule_events.clone();
            events.push(RescheduleEvent {
                time_unix_ms: self.now,
                prev_alloc_id: a.id.clone(),
                prev_node_id: a.node_id.clone(),
                delay_ms: delay,
            });
            // Only the last few matter for the policy.
            let keep = events.len().saturating_sub(5);
            self.out.allocs[i].reschedule_events = events.split_off(keep);
            let mut old = (*a).clone();
            old.next_allocation = self.out.allocs[i].id.clone();
            old.desired_status = ALLOC_DESIRED_STOP.into();
            old.desired_description = DESC_RESCHEDULED.into();
            old.eval_id = self.eval_id.into();
            self.out.allocs.push(old);
        }
    }

    fn system_group(&mut self, job: &Job, g: &TaskGroup, allocs: &[&Allocation]) {
        let mut on_node: BTreeMap<&str, &Allocation> = BTreeMap::new();
        for a in allocs.iter().filter(|a| !alloc_terminal(a)) {
            if self.node_down(&a.node_id) {
                self.lose(a);
            } else if on_node.insert(&a.node_id, a).is_some() {
                self.stop(a, DESC_NOT_NEEDED);
            }
        }
        // A destructive update replaces `max_parallel` allocations per run, the next ones
        // `stagger` later (Nomad's system rolling update); max_parallel = 0: all at once.
        let rolling = g.update.as_ref().filter(|u| u.max_parallel > 0);
        let mut limit = rolling.map_or(usize::MAX, |u| u.max_parallel as usize);
        let nodes: Vec<&Node> = self.state.nodes.values().collect();
        for node in nodes {
            let feasible = g.count > 0 && self.filter(job, g, node).is_ok();
            match (on_node.get(node.id.as_str()), feasible) {
                (Some(a), true) => {
                    let destructive = change_of(a, job) == Change::Destructive;
                    if destructive && limit == 0 {
                        self.desired(&g.name).ignore += 1;
                        let at = self.now + rolling.map_or(0, |u| u.stagger_ms as i64);
                        self.out.rolling_at = Some(self.out.rolling_at.map_or(at, |t| t.min(at)));
                        continue;
                    }
                    if destructive {
                        limit -= 1;
                    }
                    if !self.update_existing(job, a) {
                        let prev = a.id.clone();
                        self.place(job, g, 0, &prev, Some(node), false, &[]);
                    }
                }
                // On a node that is only ineligible or draining it keeps running (the drainer
                // stops it last); one whose node no longer matches goes.
                (Some(_), false) if self.constraints(job, g, node).is_ok() => {
                    self.desired(&g.name).ignore += 1;
                }
                (Some(a), false) => self.stop(a, DESC_NOT_NEEDED),
                (None, true) => {
                    self.place(job, g, 0, "", Some(node), true, &[]);
                }
                (None, false) => {}
            }
        }
    }

    /// Why a node cannot take an allocation of the group (before resources), if it cannot.
    fn filter(&self, job: &Job, g: &TaskGroup, node: &Node) -> Result<(), String> {
        if !crate::state::takes_placements(node) {
            return Err("node not ready or not eligible".into());
        }
        self.constraints(job, g, node)
    }

    /// Whether a node matches the job's datacenters and constraints (whatever its eligibility).
    fn constraints(&self, job: &Job, g: &TaskGroup, node: &Node) -> Result<(), String> {
        if !job
            .datacenters
            .iter()
            .any(|d| dc_matches(d, &node.datacenter))
        {
            return Err("missing compatible datacenter".into());
        }
        let group_level = g.constraints.len();
        let all = g.constraints.iter().chain(&job.constraints);
        for (i, c) in all.enumerate() {
            // A group's constraint counts the group's allocations; a job's, the whole job's.
            let scope = (i < group_level).then_some(g.name.as_str());
            match c.operator.as_str() {
                "distinct_hosts" => {
                    if self.live_of_job(job, scope).any(|a| a.node_id == node.id) {
                        return Err("distinct_hosts".into());
                    }
                }
                "distinct_property" => {
                    let limit = c.value.parse::<usize>().unwrap_or(1).max(1);
                    let Some(mine) = resolve(&c.attribute, node) else {
                        return Err(format!("{} distinct_property", c.attribute));
                    };
                    let same = self
                        .live_of_job(job, scope)
                        .filter(|a| {
                            self.state
                                .nodes
                                .get(&a.node_id)
                                .and_then(|n| resolve(&c.attribute, n))
                                .is_some_and(|v| v == mine)
                        })
                        .count();
                    if same >= limit {
                        return Err(format!("{} distinct_property", c.attribute));
                    }
                }
                op => {
                    let mut cache = self.regexes.borrow_mut();
                    let regex = if op == "regexp" {
                        cache
                            .entry(c.value.clone())
                            .or_insert_with(|| regex::Regex::new(&c.value).ok())
                            .as_ref()
                    } else {
                        None
                    };
                    let left = resolve(&c.attribute, node);
                    let right = resolve(&c.value, node).unwrap_or_default();
                    if op == "regexp" && regex.is_none()
                        || !constraint::holds(op, left.as_deref(), &right, regex)
                    {
                        return Err(format!("{} {} {}", c.attribute, c.operator, c.value));
                    }
                }
            }
        }
        Ok(())
    }

    /// The job's allocations that will run after this run (of one group, if given): live ones
    /// it does not stop, and its own placements.
    fn live_of_job<'s>(
        &'s self,
        job: &'s Job,
        group: Option<&'s str>,
    ) -> impl Iterator<Item = &'s Allocation> + 's {
        // This run's version of an allocation replaces the state's (stopped or updated).
        let touched: BTreeSet<&str> = self.out.allocs.iter().map(|a| a.id.as_str()).collect();
        let live = self
            .state
            .job_allocs(&job.id)
            .into_iter()
            .filter(move |a| !alloc_terminal(a) && !touched.contains(a.id.as_str()));
        let planned = self
            .out
            .allocs
            .iter()
            .filter(|a| a.job_id == job.id && a.desired_status == ALLOC_DESIRED_RUN);
        live.chain(planned)
            .filter(move |a| group.is_none_or(|g| a.task_group == g))
    }

    /// CPU and memory of a node taken by live allocations and by this run's placements.
    fn used(&self, node: &Node) -> (u64, u64) {
        let used = self.usage.get(&node.id);
        (
            used.map_or(0, |u| u.cpu.max(0) as u64),
            used.map_or(0, |u| u.memory_mb.max(0) as u64),
        )
    }

    /// Resources on a node not taken by live allocations or by this run's placements.
    fn free(&self, node: &Node) -> (i64, i64) {
        let total = node.resources.unwrap_or_default();
        let used = self.usage.get(&node.id);
        (
            i64::from(total.cpu) - used.map_or(0, |u| u.cpu),
            i64::from(total.memory_mb) - used.map_or(0, |u| u.memory_mb),
        )
    }

    /// The group's ports on `node`: its static ports if free, and the lowest free dynamic port
    /// for each of the others. The error names the dimension that ran out.
    fn assign_ports(&self, g: &TaskGroup, node: &Node) -> Result<Vec<Port>, String> {
        if g.networks.is_empty() {
            return Ok(Vec::new());
        }
        let mut used = self
            .usage
            .get(&node.id)
            .map(|u| u.ports.clone())
            .unwrap_or_default();
        let mut out = Vec::new();
        for n in &g.networks {
            for p in &n.reserved_ports {
                if !used.insert(p.value) {
                    return Err(format!(
                        "network: reserved port collision {}={}",
                        p.label, p.value
                    ));
                }
                out.push(p.clone());
            }
        }
        for n in &g.networks {
            for p in &n.dynamic_ports {
                let value = DYNAMIC_PORTS
                    .clone()
                    .find(|v| !used.contains(v))
                    .ok_or_else(|| "network: dynamic port range exhausted".to_string())?;
                used.insert(value);
                out.push(Port {
                    label: p.label.clone(),
                    value,
                    to: p.to,
                });
            }
        }
        Ok(out)
    }

    /// Places allocation `idx` of a group on the best feasible node (on `only`, if given);
    /// nodes in `avoid` are used only when no other node fits.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        job: &Job,
        g: &TaskGroup,
        idx: u32,
        previous: &str,
        only: Option<&'a Node>,
        count_as_place: bool,
        avoid: &[String],
    ) -> Option<usize> {
        let need = group_resources(g);
        let mut metric = AllocMetric::default();
        let mut best: Option<(f64, usize, &'a Node)> = None;
        // Score a sample of the feasible nodes (about log2 of the cluster, at least 2), found
        // from where the last placement landed: a full node is passed over once, not every time.
        let n = self.nodes.len();
        let (looks, limit) = match only {
            Some(_) => (1, 1),
            None => (n, sample_size(n)),
        };
        let mut feasible = 0;
        for i in 0..looks {
            if feasible >= limit {
                break;
            }
            let at = (self.cursor + i) % n.max(1);
            let node: &'a Node = match only {
                Some(node) => node,
                None => self.nodes[at],
            };
            metric.nodes_evaluated += 1;
            if let Err(why) = self.filter(job, g, node) {
                metric.nodes_filtered += 1;
                *metric.constraint_filtered.entry(why).or_default() += 1;
                continue;
            }
            let (cpu, mem) = self.free(node);
            // The state machine's rule of room (`state::fits`), per dimension for the metric.
            let total = node.resources.unwrap_or_default();
            let (used_cpu, used_mem) = self.used(node);
            let exhausted = if !crate::state::fits(&total, 0, used_mem + u64::from(need.memory_mb))
            {
                Some("memory")
            } else if !crate::state::fits(&total, used_cpu + u64::from(need.cpu), 0) {
                Some("cpu")
            } else {
                None
            };
            if let Some(dim) = exhausted {
                metric.nodes_exhausted += 1;
                *metric.dimension_exhausted.entry(dim.into()).or_default() += 1;
                continue;
            }
            if let Err(why) = self.assign_ports(g, node) {
                metric.nodes_exhausted += 1;
                *metric.dimension_exhausted.entry(why).or_default() += 1;
                continue;
            }
            feasible += 1;
            // What the node would have left after this placement, as fractions (0 to 2).
            let total = node.resources.unwrap_or_default();
            let left = (cpu - i64::from(need.cpu)) as f64 / f64::from(total.cpu.max(1))
                + (mem - i64::from(need.memory_mb)) as f64 / f64::from(total.memory_mb.max(1));
            // Bin packing prefers the fullest node, spread the emptiest.
            let fit = if self.spread { left } else { 2.0 - left };
            let penalty = if avoid.contains(&node.id) { 3.0 } else { 0.0 };
            let score = fit - penalty;
            if best.is_none_or(|(s, _, _)| score > s) {
                best = Some((score, at, node));
            }
        }
        let Some((_, at, node)) = best else {
            metric.nodes_available = self.state.nodes.len() as u32;
            let f = self.out.failed.entry(g.name.clone()).or_default();
            f.nodes_evaluated = f.nodes_evaluated.max(metric.nodes_evaluated);
            f.nodes_filtered = f.nodes_filtered.max(metric.nodes_filtered);
            f.nodes_exhausted = f.nodes_exhausted.max(metric.nodes_exhausted);
            f.nodes_available = metric.nodes_available;
            for (k, v) in metric.constraint_filtered {
                let e = f.constraint_filtered.entry(k).or_default();
                *e = (*e).max(v);
            }
            for (k, v) in metric.dimension_exhausted {
                let e = f.dimension_exhausted.entry(k).or_default();
                *e = (*e).max(v);
            }
            *self.out.queued.entry(g.name.clone()).or_default() += 1;
            return None;
        };
        if only.is_none() {
            self.cursor = at;
        }
        let ports = self.assign_ports(g, node).unwrap_or_default();
        let alloc = Allocation {
            ports,
            id: (self.new_id)(),
            eval_id: self.eval_id.into(),
            name: format!("{}.{}[{idx}]", job.id, g.name),
            node_id: node.id.clone(),
            node_name: node.name.clone(),
            job_id: job.id.clone(),
            job: None,
            task_group: g.name.clone(),
            resources: Some(need),
            desired_status: ALLOC_DESIRED_RUN.into(),
            client_status: ALLOC_PENDING.into(),
            previous_allocation: previous.into(),
            deployment_id: if job.r#type == JOB_TYPE_SERVICE {
                self.active_deployment_id()
            } else {
                String::new()
            },
            ..Allocation::default()
        };
        self.usage.entry(node.id.clone()).or_default().add(&alloc);
        self.out.allocs.push(alloc);
        if count_as_place {
            self.desired(&g.name).place += 1;
        }
        Some(self.out.allocs.len() - 1)
    }
}

/// What the allocations on one node take.
#[derive(Debug, Clone, Default)]
struct Usage {
    cpu: i64,
    memory_mb: i64,
    ports: BTreeSet<u32>,
}

impl Usage {
    /// Every node's usage by its live allocations, in one pass over the state.
    fn of_state(state: &State) -> BTreeMap<String, Usage> {
        let mut out: BTreeMap<String, Usage> = BTreeMap::new();
        // A pass over the map is cheaper than looking up each open row by ID.
        for a in state.allocs.values().filter(|a| !alloc_terminal(a)) {
            match out.get_mut(&a.node_id) {
                Some(u) => u.add(a),
                None => {
                    let mut u = Usage::default();
                    u.add(a);
                    out.insert(a.node_id.clone(), u);
                }
            }
        }
        out
    }

    fn add(&mut self, a: &Allocation) {
        let r = a.resources.unwrap_or_default();
        self.cpu += i64::from(r.cpu);
        self.memory_mb += i64::from(r.memory_mb);
        self.ports.extend(a.ports.iter().map(|p| p.value));
    }

    fn remove(&mut self, a: &Allocation) {
        let r = a.resources.unwrap_or_default();
        self.cpu -= i64::from(r.cpu);
        self.memory_mb -= i64::from(r.memory_mb);
        for p in &a.ports {
            self.ports.remove(&p.value);
        }
    }
}

/// How many feasible nodes a placement scores: about log2 of the cluster, at least 2.
fn sample_size(nodes: usize) -> usize {
    (usize::BITS - nodes.leading_zeros()).max(2) as usize
}

/// Where an evaluation starts looking at nodes: spread over the cluster by its ID, the same
/// for the same evaluation.
fn start_offset(eval_id: &str, nodes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    eval_id.hash(&mut h);
    (h.finish() % nodes.max(1) as u64) as usize
}

fn dc_matches(pattern: &str, dc: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => dc.starts_with(prefix),
        None => pattern == dc,
    }
}

/// Resolves `${attr.x}`, `${node.datacenter}`, `${node.unique.name}`, `${node.unique.id}`,
/// `${node.class}` and `${meta.x}` against a node; anything else is a literal.
fn resolve(term: &str, node: &Node) -> Option<String> {
    let Some(inner) = term.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
        return Some(term.to_string());
    };
    match inner {
        "node.datacenter" => Some(node.datacenter.clone()),
        "node.unique.name" => Some(node.name.clone()),
        "node.unique.id" => Some(node.id.clone()),
        "node.class" => Some(node.node_class.clone()),
        _ => match inner.strip_prefix("meta.") {
            Some(key) => node.meta.get(key).cloned(),
            None => {
                let key = inner.strip_prefix("attr.").unwrap_or(inner);
                node.attributes.get(key).cloned()
            }
        },
    }
}

#[cfg(test)]
#[path = "sched_tests.rs"]
mod tests;
