//! The scheduler: given the state and a job, decide which allocations to place, update in place,
//! replace or stop, and on which nodes. Pure: the leader's eval loop feeds it a state and turns
//! the [`Outcome`] into a Raft `ApplyPlan` command.
//!
//! Per task group the reconciler sorts the group's live allocations into buckets, Nomad-style:
//! *ignore* (already at this job version), *in-place update* (only non-destructive fields
//! changed), *destructive update* (task config/env/resources/driver changed: stop and replace),
//! *stop* (no longer wanted) and *place* (missing). System jobs want one allocation per
//! feasible node instead of `count`.
//!
//! This file holds the entry points (`schedule`, `plan_command`, `plan_job`) and the run's
//! shared pieces; the run's work is in [`reconcile`] (the buckets, rescheduling, system
//! groups), [`deployments`] (gating updates by the current deployment) and [`place`]
//! (feasibility, usage, ports, the choice of a node).

mod deployments;
mod place;
mod reconcile;

use std::collections::{BTreeMap, BTreeSet};

use yurt_types::constraint;
use yurt_types::diff::job_diff;
use yurt_types::status::*;

use crate::evals::new_eval;
use crate::features::Gates;
use crate::internal::{command, ApplyPlan, Command, DeploymentChange, JobRegister};
use crate::state::{JobKey, State};
use crate::table::Row;
use place::{start_offset, Usage};

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
    /// When the first of the job's `unknown` allocations is lost (its `lost_after` ends).
    pub disconnect_at: Option<i64>,
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

/// The settings after `scheduler set-config`: `algorithm` replaces the current one unless
/// empty, `oversubscription` (`true`/`false`) the memory oversubscription setting unless
/// empty. The error is the sentence for the user.
pub fn set_scheduler_config(
    state: &State,
    algorithm: &str,
    oversubscription: &str,
) -> Result<SchedulerConfiguration, String> {
    let mut c = scheduler_config(state);
    match oversubscription {
        "" => {}
        "true" => c.memory_oversubscription_enabled = true,
        "false" => c.memory_oversubscription_enabled = false,
        other => {
            return Err(format!(
                "memory oversubscription must be true or false, not {other:?}"
            ))
        }
    }
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

/// Runs the scheduler for job `job` (namespace and ID) against `state`. `new_id` makes
/// allocation IDs.
pub fn schedule(
    state: &State,
    job: &JobKey,
    eval_id: &str,
    now: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Outcome {
    let mut usage = NodeUsage::of_state(state);
    schedule_with(state, &mut usage, Gates::ALL, job, eval_id, now, new_id)
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
    key: &JobKey,
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
        oversubscribe: state.scheduler_config.memory_oversubscription_enabled,
        regexes: Default::default(),
        deployment: None,
        pending: BTreeSet::new(),
        gates,
    };
    let (ns, job_id) = (key.0.as_str(), key.1.as_str());
    let job = state.job(ns, job_id).filter(|j| !j.stop);
    let allocs: Vec<&Allocation> = state.job_allocs(ns, job_id);
    let Some(job) = job else {
        for a in allocs.into_iter().filter(|a| !alloc_terminal(a)) {
            run.stop(a, DESC_JOB_STOPPED);
        }
        if gates.deployments {
            run.cancel_deployments(key, None);
        }
        return run.out;
    };
    // Allocations of a purged job of the same ID still running: they belong to no job now.
    for a in state.allocs.of_job(ns, job_id) {
        if !alloc_terminal(a) && !crate::state::of_this_job(job, a) {
            run.stop(a, DESC_JOB_STOPPED);
        }
    }
    // Without the feature (an older server could not read them) deployments are left alone.
    if gates.deployments {
        run.deployment = run.cancel_deployments(key, Some(job));
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
        let waiting = state.evals.of_job(ns, job_id).any(|e| {
            e.status == EVAL_PENDING && e.wait_until_unix_ms > now && e.wait_until_unix_ms <= due
        });
        if waiting {
            run.out.followup_at = None;
        }
    }
    for (due, trigger) in [
        (&mut run.out.rolling_at, TRIGGER_ROLLING_UPDATE),
        (&mut run.out.disconnect_at, TRIGGER_MAX_DISCONNECT_TIMEOUT),
    ] {
        let waiting = due.is_some_and(|due| {
            state.evals.of_job(ns, job_id).any(|e| {
                e.status == EVAL_PENDING
                    && e.triggered_by == trigger
                    && e.wait_until_unix_ms > now
                    && e.wait_until_unix_ms <= due
            })
        });
        if waiting {
            *due = None;
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
                namespace: eval.namespace.clone(),
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
            namespace: eval.namespace.clone(),
            status: EVAL_PENDING.into(),
            status_description: DESC_DELAYED_EVAL.into(),
            previous_eval: eval.id.clone(),
            wait_until_unix_ms: due,
            ..Evaluation::default()
        });
    }
    let delayed = [
        (outcome.rolling_at, TRIGGER_ROLLING_UPDATE),
        (outcome.disconnect_at, TRIGGER_MAX_DISCONNECT_TIMEOUT),
    ];
    for (due, trigger) in delayed {
        let Some(due) = due else { continue };
        new_evals.push(Evaluation {
            id: new_id(),
            priority: eval.priority,
            r#type: eval.r#type.clone(),
            triggered_by: trigger.into(),
            job_id: eval.job_id.clone(),
            namespace: eval.namespace.clone(),
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
    evals.extend(
        state
            .jobs_reconnecting(updates)
            .into_iter()
            .map(|j| new_eval(j, new_id(), TRIGGER_RECONNECT)),
    );
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
    let existing: Option<Job> = scratch.job(&job.namespace, &job.id).cloned();
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
            scaling_event: None,
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
        &crate::state::key_of(job),
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
/// `memory_max_mb` is what the group may reach when one of its tasks has a `memory_max` (each
/// task's max, or its reservation without one), else 0.
pub fn group_resources(group: &TaskGroup) -> Resources {
    let mut sum = group.tasks.iter().fold(Resources::default(), |acc, t| {
        let r = t.resources.unwrap_or_default();
        Resources {
            cpu: acc.cpu + r.cpu,
            memory_mb: acc.memory_mb + r.memory_mb,
            memory_max_mb: acc.memory_max_mb + r.memory_max_mb.max(r.memory_mb),
        }
    });
    let any_max = group
        .tasks
        .iter()
        .any(|t| t.resources.is_some_and(|r| r.memory_max_mb > 0));
    if !any_max {
        sum.memory_max_mb = 0;
    }
    sum
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
    /// New allocations may use their tasks' `memory_max` (`-memory-oversubscription`).
    oversubscribe: bool,
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

#[cfg(test)]
mod tests;
