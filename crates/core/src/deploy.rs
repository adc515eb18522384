//! Deployments (pure): how a job version with an `update` block rolls out.
//!
//! Three actors share the work, as in Nomad:
//! - the scheduler ([`crate::sched`]) creates a deployment when a new version has work to do,
//!   limits destructive updates to `max_parallel` allocations that are not yet healthy, places
//!   canaries, and ends the deployment (`successful`, or `cancelled` by a newer version or a
//!   stop);
//! - the state machine ([`State::change_deployment`], [`State::track_deployment`]) keeps each
//!   group's counters as allocations join and report health, applies status changes and
//!   promotions, and marks a job version stable when its deployment succeeds;
//! - the leader's watcher ([`watch`]) fails deployments (unhealthy allocations, progress
//!   deadline), reverts to the latest stable version when `auto_revert` asks for it, and
//!   promotes canaries when `auto_promote` does. It reads the time as an argument, so tests
//!   drive hours of deadlines in microseconds.
//!
//! Users act through [`pause`], [`fail`], [`promote`], [`set_alloc_health`] and [`revert`]:
//! each builds the command; the state machine checks it again against the state it applies to.

use yurt_types::status::*;

use crate::internal::{DeploymentChange, JobRegister};
use crate::state::{same_spec, ApplyError, State};
use crate::v1::{AllocClientUpdate, Allocation, Deployment, Evaluation, Job};

/// Why a deployment operation was refused: one sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployError {
    #[error("can't {0} terminal deployment")]
    Terminal(&'static str),
    #[error("Task group {group:?} has {healthy}/{desired} healthy allocations")]
    CanariesUnhealthy {
        group: String,
        healthy: u32,
        desired: u32,
    },
    #[error("deployment {0} has no canaries to promote")]
    NothingToPromote(String),
    #[error("allocation {alloc} is not part of deployment {deployment}")]
    NotInDeployment { alloc: String, deployment: String },
    #[error("job {job:?} has no version {version} (kept versions: {kept})")]
    NoSuchVersion {
        job: String,
        version: u64,
        kept: String,
    },
    #[error("job {job:?} is already at version {version}")]
    CurrentVersion { job: String, version: u64 },
    #[error("job {job:?} version {version} has the same specification as the current version {current}: nothing to revert")]
    SameSpec {
        job: String,
        version: u64,
        current: u64,
    },
}

/// The verb of a change, for [`DeployError::Terminal`].
fn verb(c: &DeploymentChange) -> &'static str {
    if c.promote {
        "promote"
    } else if !c.healthy_allocs.is_empty() || !c.unhealthy_allocs.is_empty() {
        "set health of allocations for a"
    } else {
        match c.status.as_str() {
            DEPLOYMENT_FAILED => "fail",
            DEPLOYMENT_PAUSED => "pause",
            DEPLOYMENT_RUNNING => "resume",
            _ => "change",
        }
    }
}

/// Whether an allocation's health has been decided healthy.
fn healthy(a: &Allocation) -> Option<bool> {
    a.deployment_status.as_ref().and_then(|s| s.healthy)
}

fn is_canary(a: &Allocation) -> bool {
    a.deployment_status.as_ref().is_some_and(|s| s.canary)
}

/// The live allocations of a deployment's group.
fn live_in<'s>(
    state: &'s State,
    d: &'s Deployment,
    group: &'s str,
) -> impl Iterator<Item = &'s Allocation> + 's {
    state
        .allocs
        .of_job(&d.namespace, &d.job_id)
        .filter(move |a| a.deployment_id == d.id && a.task_group == group && !alloc_terminal(a))
}

/// Healthy live allocations of a group in the deployment: (all, canaries).
pub fn healthy_counts(state: &State, d: &Deployment, group: &str) -> (u32, u32) {
    let mut all = 0;
    let mut canaries = 0;
    for a in live_in(state, d, group).filter(|a| healthy(a) == Some(true)) {
        all += 1;
        if is_canary(a) {
            canaries += 1;
        }
    }
    (all, canaries)
}

/// Whether the deployment waits for its canaries to be promoted.
pub fn requires_promotion(d: &Deployment) -> bool {
    d.status == DEPLOYMENT_RUNNING
        && d.task_groups
            .values()
            .any(|g| g.desired_canaries > 0 && !g.promoted)
}

/// The description of a running deployment.
pub fn running_description(d: &Deployment) -> &'static str {
    if !requires_promotion(d) {
        return DESC_DEPLOYMENT_RUNNING;
    }
    let auto = d
        .task_groups
        .values()
        .filter(|g| g.desired_canaries > 0)
        .all(|g| g.auto_promote);
    if auto {
        DESC_DEPLOYMENT_AUTO_PROMOTION
    } else {
        DESC_DEPLOYMENT_NEEDS_PROMOTION
    }
}

/// The deployments of job `job_id` in namespace `ns`, newest first.
pub fn of_job(state: &State, ns: &str, job_id: &str) -> Vec<Deployment> {
    let mut v: Vec<Deployment> = state.deployments.of_job(ns, job_id).cloned().collect();
    v.sort_by_key(|d| std::cmp::Reverse(d.create_index));
    v
}

fn eval_for(job: &Job, id: String) -> Evaluation {
    crate::evals::new_eval(job, id, TRIGGER_DEPLOYMENT_WATCHER)
}

/// `base`, with what auto-revert does about it: the description and the job to register.
fn rollback(state: &State, job: &Job, base: &str) -> (String, Option<Job>) {
    let stable = state
        .versions(&job.namespace, &job.id)
        .iter()
        .rev()
        .find(|v| v.stable && v.version < job.version);
    match stable {
        None => (
            format!("{base} - no stable job version to auto revert to"),
            None,
        ),
        Some(v) if same_spec(v, job) => (
            format!(
                "{base} - not rolling back to stable job version {} as current job has same specification",
                v.version
            ),
            None,
        ),
        Some(v) => (
            format!("{base} - rolling back to job version {}", v.version),
            Some(Job::clone(v)),
        ),
    }
}

/// The change that fails a deployment, reverting when `revert` asks for it.
fn failure(
    state: &State,
    d: &Deployment,
    base: &str,
    revert: bool,
    new_id: &mut dyn FnMut() -> String,
) -> DeploymentChange {
    let job = state.job(&d.namespace, &d.job_id);
    let (desc, job_back) = match job {
        Some(job) if revert => rollback(state, job, base),
        _ => (base.to_string(), None),
    };
    DeploymentChange {
        deployment_id: d.id.clone(),
        status: DEPLOYMENT_FAILED.into(),
        status_description: desc,
        eval: job.map(|j| eval_for(j, new_id())),
        rollback: job_back,
        ..Default::default()
    }
}

/// `deployment pause` (`pause`) or `deployment resume`.
pub fn pause(
    state: &State,
    d: &Deployment,
    pause: bool,
    new_id: &mut dyn FnMut() -> String,
) -> Result<DeploymentChange, DeployError> {
    let c = DeploymentChange {
        deployment_id: d.id.clone(),
        status: if pause {
            DEPLOYMENT_PAUSED
        } else {
            DEPLOYMENT_RUNNING
        }
        .into(),
        eval: (!pause)
            .then(|| {
                state
                    .job(&d.namespace, &d.job_id)
                    .map(|j| eval_for(j, new_id()))
            })
            .flatten(),
        ..Default::default()
    };
    check(state, d, &c)?;
    Ok(c)
}

/// `deployment fail`: reverts when any group has `auto_revert`.
pub fn fail(
    state: &State,
    d: &Deployment,
    new_id: &mut dyn FnMut() -> String,
) -> Result<DeploymentChange, DeployError> {
    let revert = d.task_groups.values().any(|g| g.auto_revert);
    let c = failure(state, d, DESC_DEPLOYMENT_FAILED_BY_USER, revert, new_id);
    check(state, d, &c)?;
    Ok(c)
}

/// `deployment promote`: every group's canaries, once they are healthy.
pub fn promote(
    state: &State,
    d: &Deployment,
    new_id: &mut dyn FnMut() -> String,
) -> Result<DeploymentChange, DeployError> {
    let c = DeploymentChange {
        deployment_id: d.id.clone(),
        promote: true,
        eval: state
            .job(&d.namespace, &d.job_id)
            .map(|j| eval_for(j, new_id())),
        ..Default::default()
    };
    check(state, d, &c)?;
    Ok(c)
}

/// `deployment allocation-health`: the operator's verdict on allocations of the deployment.
pub fn set_alloc_health(
    state: &State,
    d: &Deployment,
    healthy: Vec<String>,
    unhealthy: Vec<String>,
    new_id: &mut dyn FnMut() -> String,
) -> Result<DeploymentChange, DeployError> {
    let c = DeploymentChange {
        deployment_id: d.id.clone(),
        healthy_allocs: healthy,
        unhealthy_allocs: unhealthy,
        eval: state
            .job(&d.namespace, &d.job_id)
            .map(|j| eval_for(j, new_id())),
        ..Default::default()
    };
    check(state, d, &c)?;
    Ok(c)
}

/// Whether a user's change may apply to `d` as the state is.
pub fn check(state: &State, d: &Deployment, c: &DeploymentChange) -> Result<(), DeployError> {
    if !deployment_active(&d.status) {
        return Err(DeployError::Terminal(verb(c)));
    }
    if c.promote {
        let mut any = false;
        for (name, g) in &d.task_groups {
            if g.desired_canaries == 0 || g.promoted {
                continue;
            }
            any = true;
            let (_, canaries) = healthy_counts(state, d, name);
            if canaries < g.desired_canaries {
                return Err(DeployError::CanariesUnhealthy {
                    group: name.clone(),
                    healthy: canaries,
                    desired: g.desired_canaries,
                });
            }
        }
        if !any {
            return Err(DeployError::NothingToPromote(d.id.clone()));
        }
    }
    for id in c.healthy_allocs.iter().chain(&c.unhealthy_allocs) {
        if state.allocs.get(id).is_none_or(|a| a.deployment_id != d.id) {
            return Err(DeployError::NotInDeployment {
                alloc: id.clone(),
                deployment: d.id.clone(),
            });
        }
    }
    Ok(())
}

/// `job revert JOB VERSION`: registers the spec of a kept version of job `job_id` in namespace
/// `ns` as a new version.
pub fn revert(
    state: &State,
    ns: &str,
    job_id: &str,
    version: u64,
    new_id: &mut dyn FnMut() -> String,
) -> Result<JobRegister, DeployError> {
    let versions = state.versions(ns, job_id);
    let current = state.job(ns, job_id).cloned().unwrap_or_default();
    if version == current.version {
        return Err(DeployError::CurrentVersion {
            job: job_id.into(),
            version,
        });
    }
    let Some(target) = versions.iter().find(|v| v.version == version) else {
        let kept: Vec<String> = versions.iter().map(|v| v.version.to_string()).collect();
        return Err(DeployError::NoSuchVersion {
            job: job_id.into(),
            version,
            kept: kept.join(", "),
        });
    };
    if same_spec(target, &current) {
        return Err(DeployError::SameSpec {
            job: job_id.into(),
            version,
            current: current.version,
        });
    }
    let eval = crate::evals::new_eval(target, new_id(), TRIGGER_JOB_REGISTER);
    Ok(JobRegister {
        job: Some(Job::clone(target)),
        eval: Some(eval),
        enforce_index: false,
        job_modify_index: 0,
        scaling_event: None,
    })
}

/// Evaluations for the jobs whose deployments these client reports move forward: an allocation
/// of an active deployment newly healthy lets the scheduler place the next ones.
pub fn health_evals(
    state: &State,
    updates: &[AllocClientUpdate],
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Evaluation> {
    let mut jobs: Vec<&Job> = updates
        .iter()
        .filter(|u| u.deployment_status.as_ref().and_then(|d| d.healthy) == Some(true))
        .filter_map(|u| state.allocs.get(&u.alloc_id))
        .filter(|a| healthy(a).is_none())
        .filter(|a| {
            state
                .deployments
                .get(&a.deployment_id)
                .is_some_and(|d| d.status == DEPLOYMENT_RUNNING)
        })
        .filter_map(|a| state.job(&a.namespace, &a.job_id))
        .collect();
    jobs.sort_by_key(|j| crate::state::key_of(j));
    jobs.dedup_by_key(|j| crate::state::key_of(j));
    jobs.into_iter().map(|j| eval_for(j, new_id())).collect()
}

/// The leader's deployment watcher, one pass: the changes that running deployments need now.
/// Applying them and calling again yields nothing new (the deployments have moved on).
pub fn watch(state: &State, now: i64, new_id: &mut dyn FnMut() -> String) -> Vec<DeploymentChange> {
    let mut out = Vec::new();
    for d in state.deployments.in_state(DEPLOYMENT_RUNNING) {
        // No allocation has joined it yet (its placements are blocked, say): nothing can have
        // failed, turned healthy or started a progress deadline. Its counters say so without
        // reading its job and allocations: a cluster out of room holds many such deployments.
        if d.task_groups.values().all(|g| g.placed_allocs == 0) {
            continue;
        }
        if let Some(c) = watch_one(state, d, now, new_id) {
            out.push(c);
        }
    }
    out
}

fn watch_one(
    state: &State,
    d: &Deployment,
    now: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Option<DeploymentChange> {
    let job = state.job(&d.namespace, &d.job_id)?;
    // An unhealthy allocation fails the deployment at once when the group has no progress
    // deadline, or when it cannot be replaced (no reschedule attempts left).
    for (name, g) in &d.task_groups {
        let policy = job
            .task_groups
            .iter()
            .find(|tg| &tg.name == name)
            .and_then(|tg| tg.reschedule.as_ref());
        let fatal = state.allocs.of_job(&d.namespace, &d.job_id).any(|a| {
            a.deployment_id == d.id
                && &a.task_group == name
                && healthy(a) == Some(false)
                && a.desired_status == ALLOC_DESIRED_RUN
                && a.next_allocation.is_empty()
                && (g.progress_deadline_ms == 0
                    || (a.client_status == ALLOC_FAILED
                        && policy.is_none_or(|p| {
                            crate::reschedule::next_delay(p, &a.reschedule_events, now).is_none()
                        })))
        });
        if fatal {
            return Some(failure(
                state,
                d,
                DESC_DEPLOYMENT_FAILED_ALLOCS,
                g.auto_revert,
                new_id,
            ));
        }
    }
    // The progress deadline of a group that is not done yet.
    for (name, g) in &d.task_groups {
        let (all, canaries) = healthy_counts(state, d, name);
        let done = if g.desired_canaries > 0 && !g.promoted {
            canaries >= g.desired_canaries
        } else {
            all >= g.desired_total
        };
        if !done && g.require_progress_by_unix_ms != 0 && now >= g.require_progress_by_unix_ms {
            return Some(failure(
                state,
                d,
                DESC_DEPLOYMENT_PROGRESS_DEADLINE,
                g.auto_revert,
                new_id,
            ));
        }
    }
    // Auto-promotion: every group with canaries wants it and has them all healthy.
    if requires_promotion(d) {
        let ready = d
            .task_groups
            .iter()
            .filter(|(_, g)| g.desired_canaries > 0)
            .all(|(name, g)| {
                g.auto_promote
                    && (g.promoted || healthy_counts(state, d, name).1 >= g.desired_canaries)
            });
        if ready {
            return Some(DeploymentChange {
                deployment_id: d.id.clone(),
                promote: true,
                eval: Some(eval_for(job, new_id())),
                ..Default::default()
            });
        }
    }
    None
}

/// When the watcher has something to do next without any new event: the earliest progress
/// deadline of a running deployment (Unix ms).
pub fn next_deadline(state: &State) -> Option<i64> {
    state
        .deployments
        .in_state(DEPLOYMENT_RUNNING)
        .flat_map(|d| d.task_groups.values())
        .map(|g| g.require_progress_by_unix_ms)
        .filter(|t| *t != 0)
        .min()
}

impl State {
    /// Applies a [`DeploymentChange`]. `strict` (a user's or the watcher's command) refuses a
    /// change the deployment no longer allows; otherwise (a plan's) it is skipped.
    pub(crate) fn change_deployment(
        &mut self,
        index: u64,
        now: i64,
        c: &DeploymentChange,
        strict: bool,
    ) -> Result<crate::state::Applied, ApplyError> {
        let Some(d) = self.deployments.get(&c.deployment_id).cloned() else {
            return if strict {
                Err(ApplyError::Deployment(format!(
                    "deployment {:?} not found",
                    c.deployment_id
                )))
            } else {
                Ok(Default::default())
            };
        };
        if let Err(e) = check(self, &d, c) {
            return if strict {
                Err(ApplyError::Deployment(e.to_string()))
            } else {
                Ok(Default::default())
            };
        }
        for (ids, verdict) in [(&c.healthy_allocs, true), (&c.unhealthy_allocs, false)] {
            for id in ids {
                let before = self.allocs.get(id).cloned();
                self.allocs.update(id, |a| {
                    let s = a.deployment_status.get_or_insert_with(Default::default);
                    s.healthy = Some(verdict);
                    s.timestamp_unix_ms = now;
                    s.modify_index = index;
                    a.modify_index = index;
                    a.modify_time_unix_ms = now;
                });
                if let (Some(before), Some(after)) = (before, self.allocs.get(id).cloned()) {
                    self.track_deployment(index, now, Some(&before), &after);
                }
            }
        }
        if c.promote {
            // Promoted canaries are members like the others from now on.
            let canaries: Vec<String> = d
                .task_groups
                .values()
                .filter(|g| g.desired_canaries > 0 && !g.promoted)
                .flat_map(|g| g.placed_canaries.iter().cloned())
                .collect();
            for id in canaries {
                self.allocs.update(&id, |a| {
                    if let Some(s) = a.deployment_status.as_mut() {
                        s.canary = false;
                        s.modify_index = index;
                    }
                    a.modify_index = index;
                    a.modify_time_unix_ms = now;
                });
            }
        }
        let mut succeeded = false;
        self.deployments.update(&d.id, |d| {
            if c.promote {
                for g in d.task_groups.values_mut() {
                    if g.desired_canaries > 0 && !g.promoted {
                        g.promoted = true;
                        if g.progress_deadline_ms > 0 {
                            g.require_progress_by_unix_ms = now + g.progress_deadline_ms as i64;
                        }
                    }
                }
            }
            if !c.status.is_empty() {
                let resuming = d.status == DEPLOYMENT_PAUSED && c.status == DEPLOYMENT_RUNNING;
                let pausing = c.status == DEPLOYMENT_PAUSED;
                if resuming || pausing {
                    // Time spent paused does not count against the progress deadline.
                    for g in d.task_groups.values_mut() {
                        if g.progress_deadline_ms > 0 && g.require_progress_by_unix_ms != 0 {
                            g.require_progress_by_unix_ms = now + g.progress_deadline_ms as i64;
                        }
                    }
                }
                d.status = c.status.clone();
                succeeded = d.status == DEPLOYMENT_SUCCESSFUL;
            }
            d.status_description = match (c.status_description.as_str(), d.status.as_str()) {
                ("", DEPLOYMENT_RUNNING) => running_description(d).into(),
                ("", DEPLOYMENT_PAUSED) => DESC_DEPLOYMENT_PAUSED.into(),
                ("", _) => d.status_description.clone(),
                (given, _) => given.into(),
            };
            d.modify_index = index;
            d.modify_time_unix_ms = now;
        });
        if succeeded {
            let key = crate::state::job_key(&d.namespace, &d.job_id);
            self.set_stable(&key, d.job_version, true, index);
        }
        let mut applied = crate::state::Applied::default();
        if let Some(job) = &c.rollback {
            applied = self.register_job_version(index, now, job.clone());
        }
        if let Some(e) = &c.eval {
            applied.eval_id = e.id.clone();
            self.insert_eval(index, now, e.clone());
        }
        Ok(applied)
    }

    /// Keeps a deployment's counters as one of its allocations changes from `old` to `new`:
    /// joining it (placed, canary, the progress deadline starts), and its health once decided.
    pub(crate) fn track_deployment(
        &mut self,
        index: u64,
        now: i64,
        old: Option<&Allocation>,
        new: &Allocation,
    ) {
        if new.deployment_id.is_empty() {
            return;
        }
        let joined = old.is_none_or(|o| o.deployment_id != new.deployment_id);
        let before = if joined { None } else { old.and_then(healthy) };
        let after = healthy(new);
        if !joined && before == after {
            return;
        }
        let health_ms = new
            .deployment_status
            .as_ref()
            .map_or(now, |s| s.timestamp_unix_ms);
        self.deployments.update(&new.deployment_id, |d| {
            let Some(g) = d.task_groups.get_mut(&new.task_group) else {
                return;
            };
            let pd = g.progress_deadline_ms as i64;
            if joined {
                g.placed_allocs += 1;
                if is_canary(new) {
                    g.placed_canaries.push(new.id.clone());
                }
                if pd > 0 && g.require_progress_by_unix_ms == 0 {
                    g.require_progress_by_unix_ms = now + pd;
                }
            }
            match (before, after) {
                (None, Some(true)) => {
                    g.healthy_allocs += 1;
                    if pd > 0 {
                        g.require_progress_by_unix_ms =
                            g.require_progress_by_unix_ms.max(health_ms + pd);
                    }
                }
                (None, Some(false)) => g.unhealthy_allocs += 1,
                (Some(true), Some(false)) => {
                    g.healthy_allocs = g.healthy_allocs.saturating_sub(1);
                    g.unhealthy_allocs += 1;
                }
                _ => {}
            }
            d.modify_index = index;
            d.modify_time_unix_ms = now;
        });
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
