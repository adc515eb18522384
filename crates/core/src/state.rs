//! The replicated state of the cluster and the state machine that changes it.
//!
//! Architecture invariant: [`State::apply`] is deterministic. It reads no clock and no
//! randomness; timestamps arrive inside the command (`now_unix_ms`, written by the leader).
//! A command that fails (e.g. a `-check-index` mismatch) changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use prost::Message;
use yurt_types::status::*;

use crate::internal::{command, Command, StateSnapshot};
use crate::table::Table;
use crate::v1::{Allocation, Deployment, Evaluation, Job, Node, NodeEvent, SchedulerConfiguration};

/// How many versions of a job are kept (Nomad's `job_tracked_versions`).
pub const TRACKED_VERSIONS: usize = 6;

/// Whether an allocation belongs to `job` as registered now: a job registered again after a
/// purge is a new job (a new create index), and the allocations of the purged one are not its.
pub fn of_this_job(job: &Job, a: &Allocation) -> bool {
    a.job
        .as_ref()
        .is_none_or(|j| j.create_index == job.create_index)
}

/// Node events kept per node.
const KEPT_EVENTS: usize = 10;

/// Adds an event to a node, keeping the last few.
pub(crate) fn push_event(node: &mut Node, e: NodeEvent) {
    node.events.push(e);
    let extra = node.events.len().saturating_sub(KEPT_EVENTS);
    node.events.drain(..extra);
}

/// Whether a node takes new placements: ready, eligible and not draining. The scheduler's
/// feasibility and the state machine's check of a plan both ask this, and nothing else.
pub fn takes_placements(node: &Node) -> bool {
    node.status == NODE_READY && node.scheduling_eligibility == NODE_ELIGIBLE && !node.drain
}

/// Whether `cpu` MHz and `memory_mb` MB in all fit a node's capacity: the one rule of room, for
/// the scheduler (what is used plus what it places) and for a plan's check.
pub fn fits(capacity: &crate::v1::Resources, cpu: u64, memory_mb: u64) -> bool {
    cpu <= u64::from(capacity.cpu) && memory_mb <= u64::from(capacity.memory_mb)
}

/// A job's status by Nomad's rules: a stopped job is dead; otherwise it runs while any of its
/// allocations is not terminal, is pending while any of its evaluations is (pending or
/// blocked), and is dead once all of them are done (pending while it has had none at all).
pub fn job_status(stopped: bool, live_allocs: bool, open_evals: bool, any: bool) -> &'static str {
    if stopped {
        JOB_DEAD
    } else if live_allocs {
        JOB_RUNNING
    } else if open_evals || !any {
        JOB_PENDING
    } else {
        JOB_DEAD
    }
}

/// Keeps a job's [`TRACKED_VERSIONS`] newest versions (oldest first), dropping the oldest
/// beyond that, except the newest stable version: the one a revert or an auto-revert goes back
/// to is kept even when it is older than all the others (Nomad keeps it too).
pub fn trim_versions(versions: &mut Vec<Arc<Job>>) {
    while versions.len() > TRACKED_VERSIONS {
        let stable = versions.iter().rposition(|j| j.stable);
        let drop = if stable == Some(0) { 1 } else { 0 };
        versions.remove(drop);
    }
}

/// Version of the snapshot format ([`StateSnapshot::format_version`]). Bump it on every change
/// an older binary could misread, and teach [`State::from_snapshot`] to migrate the old one.
/// 2 (Yurt 0.2): deployments, node drains and allocations' desired transitions, ACLs.
pub const SNAPSHOT_FORMAT: u32 = 2;

/// Refused plans after which an evaluation fails instead of being scheduled again.
pub const MAX_PLAN_REJECTIONS: u32 = 5;

/// Why a command was refused. The message is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("Enforcing job modify index {0}: {1}")]
    EnforceIndex(u64, String),
    #[error("job {0:?} not found")]
    JobNotFound(String),
    #[error("node {0:?} not found")]
    NodeNotFound(String),
    #[error("{0}")]
    Deployment(String),
    #[error("{0}")]
    Refused(String),
    #[error("cannot restore: {0}")]
    BadSnapshot(String),
    #[error("this server does not understand a command in the Raft log (written by a newer version); upgrade this server")]
    UnknownCommand,
}

/// A snapshot that cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is corrupt: {0}")]
    Corrupt(String),
    #[error("snapshot format {found} was written by Yurt {written_by}, but this binary (Yurt {ours}) reads formats up to {SNAPSHOT_FORMAT}: downgrades are not supported")]
    TooNew {
        found: u32,
        written_by: String,
        ours: &'static str,
    },
}

/// What a successful command produced, returned to the caller that proposed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub job_modify_index: u64,
    pub eval_id: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Raft index of the last applied command.
    pub index: u64,
    /// The current version of each job. It shares its `Arc` with the last of the job's kept
    /// versions until one of them changes (copy on write: `Arc::make_mut`), so registering a
    /// job stores it once, not twice.
    pub jobs: BTreeMap<String, Arc<Job>>,
    /// Kept versions of each job, oldest first; the last is the current one.
    pub job_versions: BTreeMap<String, Vec<Arc<Job>>>,
    pub nodes: BTreeMap<String, Node>,
    pub allocs: Table<Allocation>,
    pub evals: Table<Evaluation>,
    /// Names the cluster; set once by its first leader.
    pub cluster_id: String,
    /// `operator scheduler set-config`; empty fields mean the defaults.
    pub scheduler_config: SchedulerConfiguration,
    /// Deployments, indexed by job and by active status (running, paused).
    pub deployments: Table<Deployment>,
    /// ACL policies by name.
    pub acl_policies: BTreeMap<String, yurt_proto::v1::AclPolicy>,
    /// ACL tokens by secret ID.
    pub acl_tokens: BTreeMap<String, yurt_proto::v1::AclToken>,
    /// The Raft index of the ACL bootstrap; 0: not done.
    pub acl_bootstrap_index: u64,
}

/// Whether two jobs have the same spec (ignoring the fields the servers manage).
pub fn same_spec(a: &Job, b: &Job) -> bool {
    fn strip(j: &Job) -> Job {
        Job {
            status: String::new(),
            version: 0,
            stable: false,
            create_index: 0,
            modify_index: 0,
            job_modify_index: 0,
            submit_time_unix_ms: 0,
            ..j.clone()
        }
    }
    strip(a) == strip(b)
}

impl State {
    /// The current version of a job.
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.get(id).map(Arc::as_ref)
    }

    /// Applies one Raft command at `index`. On error nothing has changed.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Result<Applied, ApplyError> {
        self.apply_owned(index, cmd.clone())
    }

    /// [`State::apply`], taking the command: the job a registration carries is stored as
    /// decoded, not copied.
    pub fn apply_owned(&mut self, index: u64, cmd: Command) -> Result<Applied, ApplyError> {
        let now = cmd.now_unix_ms;
        let out = match cmd.kind {
            None if cmd.ignore_if_unknown => Ok(Applied::default()),
            None => Err(ApplyError::UnknownCommand),
            Some(command::Kind::JobRegister(r)) => self.register_job(index, now, r),
            Some(command::Kind::JobDeregister(d)) => self.deregister_job(index, now, &d),
            Some(command::Kind::NodeRegister(r)) => {
                let node = r.node.unwrap_or_default();
                let id = node.id.clone();
                self.upsert_node(index, now, node);
                self.push_node_event(&id, now, r.event);
                for e in r.evals {
                    self.insert_eval(index, now, e);
                }
                Ok(Applied::default())
            }
            Some(command::Kind::NodeStatusUpdate(u)) => {
                let node = self
                    .nodes
                    .get_mut(&u.node_id)
                    .ok_or_else(|| ApplyError::NodeNotFound(u.node_id.clone()))?;
                node.status = u.status;
                node.modify_index = index;
                node.status_updated_unix_ms = now;
                self.push_node_event(&u.node_id, now, u.event);
                for e in u.evals {
                    self.insert_eval(index, now, e);
                }
                Ok(Applied::default())
            }
            Some(command::Kind::ApplyPlan(p)) => {
                self.apply_plan(index, now, &p);
                Ok(Applied::default())
            }
            Some(command::Kind::AllocClientUpdates(u)) => {
                self.update_allocs_from_client(index, now, &u);
                Ok(Applied::default())
            }
            Some(command::Kind::SetClusterId(c)) => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = c.cluster_id;
                }
                Ok(Applied::default())
            }
            Some(command::Kind::NodeEligibilityUpdate(u)) => {
                self.apply_eligibility_update(index, now, u)?;
                Ok(Applied::default())
            }
            Some(command::Kind::SetSchedulerConfig(c)) => {
                let mut config = c.config.unwrap_or_default();
                config.create_index = match self.scheduler_config.create_index {
                    0 => index,
                    i => i,
                };
                config.modify_index = index;
                self.scheduler_config = config;
                Ok(Applied::default())
            }
            Some(command::Kind::DeploymentChange(c)) => {
                self.change_deployment(index, now, &c, true)
            }
            Some(command::Kind::NodeDrainUpdate(u)) => self.apply_drain_update(index, now, &u),
            Some(command::Kind::AclUpdate(u)) => {
                self.apply_acl_update(index, &u)?;
                Ok(Applied::default())
            }
            Some(command::Kind::DrainProgress(p)) => {
                self.apply_drain_progress(index, now, &p);
                Ok(Applied::default())
            }
            Some(command::Kind::Gc(gc)) => {
                self.apply_gc(&gc);
                Ok(Applied::default())
            }
            Some(command::Kind::RestoreState(r)) => {
                // Verified by the server that proposed it; a bad one is refused, not applied.
                let restored = State::from_snapshot(&r.state)
                    .map_err(|e| ApplyError::BadSnapshot(e.to_string()))?;
                // A restore replaces the contents, not the cluster's identity.
                let id = std::mem::take(&mut self.cluster_id);
                *self = restored;
                if !id.is_empty() {
                    self.cluster_id = id;
                }
                Ok(Applied::default())
            }
        };
        // The index advances even for refused commands: the entry is in the log either way.
        self.index = index;
        out.map(|mut a| {
            a.index = index;
            a
        })
    }

    fn register_job(
        &mut self,
        index: u64,
        now: i64,
        r: crate::internal::JobRegister,
    ) -> Result<Applied, ApplyError> {
        let job = r.job.unwrap_or_default();
        let existing = self.jobs.get(&job.id);
        if r.enforce_index {
            let n = r.job_modify_index;
            match existing {
                Some(_) if n == 0 => {
                    return Err(ApplyError::EnforceIndex(n, "job already exists".into()))
                }
                Some(e) if e.job_modify_index != n => {
                    return Err(ApplyError::EnforceIndex(
                        n,
                        format!(
                            "job exists with conflicting job modify index: {}",
                            e.job_modify_index
                        ),
                    ))
                }
                None if n != 0 => {
                    return Err(ApplyError::EnforceIndex(n, "job does not exist".into()))
                }
                _ => {}
            }
        }
        let mut applied = self.register_job_version(index, now, job);
        if let Some(e) = r.eval {
            applied.eval_id = e.id.clone();
            self.insert_eval(index, now, e);
        }
        Ok(applied)
    }

    /// Makes `job` the job's current version: a new version when its spec changed.
    pub(crate) fn register_job_version(&mut self, index: u64, now: i64, mut job: Job) -> Applied {
        let id = job.id.clone();
        let existing = self.jobs.get(&job.id);
        let job_modify_index = match existing {
            Some(e) if same_spec(e, &job) => e.job_modify_index,
            _ => {
                job.version = existing.map_or(0, |e| e.version + 1);
                job.create_index = existing.map_or(index, |e| e.create_index);
                job.modify_index = index;
                job.job_modify_index = index;
                job.submit_time_unix_ms = now;
                job.stable = false;
                job.status = JOB_PENDING.into();
                let job = Arc::new(job);
                self.put_job_version(job.clone());
                self.jobs.insert(job.id.clone(), job);
                index
            }
        };
        self.refresh_job_status(&id, index);
        Applied {
            index,
            job_modify_index,
            eval_id: String::new(),
        }
    }

    fn put_job_version(&mut self, job: Arc<Job>) {
        let versions = self.job_versions.entry(job.id.clone()).or_default();
        versions.push(job);
        trim_versions(versions);
    }

    fn deregister_job(
        &mut self,
        index: u64,
        now: i64,
        d: &crate::internal::JobDeregister,
    ) -> Result<Applied, ApplyError> {
        let Some(existing) = self.jobs.get(&d.job_id) else {
            return Err(ApplyError::JobNotFound(d.job_id.clone()));
        };
        let mut job_modify_index = existing.job_modify_index;
        if d.purge {
            self.jobs.remove(&d.job_id);
            self.job_versions.remove(&d.job_id);
            let gone: Vec<String> = self
                .deployments
                .of_job(&d.job_id)
                .map(|d| d.id.clone())
                .collect();
            for id in gone {
                self.deployments.remove(&id);
            }
        } else if !existing.stop {
            // Stopping is a change of spec: a new version, as in Nomad.
            let mut job = Job::clone(existing);
            job.stop = true;
            job.version += 1;
            job.modify_index = index;
            job.job_modify_index = index;
            job.submit_time_unix_ms = now;
            job.stable = false;
            job_modify_index = index;
            let job = Arc::new(job);
            self.put_job_version(job.clone());
            self.jobs.insert(job.id.clone(), job);
        }
        let mut eval_id = String::new();
        if let Some(e) = &d.eval {
            eval_id = e.id.clone();
            self.insert_eval(index, now, e.clone());
        }
        self.refresh_job_status(&d.job_id, index);
        Ok(Applied {
            index,
            job_modify_index,
            eval_id,
        })
    }

    pub(crate) fn insert_eval(&mut self, index: u64, now: i64, mut e: Evaluation) {
        let old = self.evals.get(&e.id);
        e.create_index = old.map_or(index, |o| o.create_index);
        e.create_time_unix_ms = old.map_or(now, |o| o.create_time_unix_ms);
        e.modify_index = index;
        e.modify_time_unix_ms = now;
        self.evals.insert(e);
    }

    /// Records a node event a command carries, at the entry's time.
    fn push_node_event(&mut self, node_id: &str, now: i64, event: Option<crate::v1::NodeEvent>) {
        if let (Some(node), Some(e)) = (self.nodes.get_mut(node_id), event) {
            let e = crate::v1::NodeEvent {
                time_unix_ms: now,
                ..e
            };
            push_event(node, e);
        }
    }

    fn upsert_node(&mut self, index: u64, now: i64, mut node: Node) {
        let old = self.nodes.get(&node.id);
        node.create_index = old.map_or(index, |o| o.create_index);
        node.modify_index = index;
        node.status_updated_unix_ms = now;
        if node.scheduling_eligibility.is_empty() {
            node.scheduling_eligibility = old
                .map(|o| o.scheduling_eligibility.clone())
                .unwrap_or_else(|| NODE_ELIGIBLE.into());
        }
        // A client that registers again (a restart) does not end its node's drain.
        if let Some(old) = old {
            node.drain_strategy = old.drain_strategy;
            node.drain = old.drain;
            node.events = old.events.clone();
            if old.drain_strategy.is_some() {
                node.scheduling_eligibility = NODE_INELIGIBLE.into();
            }
        }
        self.nodes.insert(node.id.clone(), node);
        self.unblock_evals(index, now);
    }

    /// Room may have appeared (a node registered, an allocation ended): the evaluations that
    /// wait for room get another chance. One that still finds none is blocked again.
    pub(crate) fn unblock_evals(&mut self, index: u64, now: i64) {
        let blocked: Vec<String> = self
            .evals
            .in_state(EVAL_BLOCKED)
            .map(|e| e.id.clone())
            .collect();
        for id in blocked {
            self.evals.update(&id, |e| {
                e.status = EVAL_PENDING.into();
                e.modify_index = index;
                e.modify_time_unix_ms = now;
            });
        }
    }

    /// Commits a scheduler's plan after checking its new placements against the state as it
    /// is now (the plan was computed from an earlier one): a node that went away or is no
    /// longer eligible, or that the placements would over-commit (resources or ports), gets
    /// none of them. Stops and updates always apply. A plan that lost placements leaves its
    /// evaluation pending, to be scheduled again on fresh state (failed after
    /// [`MAX_PLAN_REJECTIONS`]).
    fn apply_plan(&mut self, index: u64, now: i64, p: &crate::internal::ApplyPlan) {
        let refused = self.refused_nodes(p);
        if let Some(d) = &p.deployment {
            if !self.deployments.contains_key(&d.id) {
                let mut d = d.clone();
                d.create_index = index;
                d.modify_index = index;
                d.create_time_unix_ms = now;
                d.modify_time_unix_ms = now;
                self.deployments.insert(d);
            }
        }
        let allocs: Vec<&Allocation> = p
            .allocs
            .iter()
            .filter(|a| self.allocs.contains_key(&a.id) || !refused.contains_key(&a.node_id))
            .collect();
        let mut jobs = Vec::new();
        let mut freed = false;
        for a in allocs {
            let mut a = a.clone();
            if a.job.is_none() {
                a.job = p.job.clone();
            }
            let old = self.allocs.get(&a.id);
            let was_live = old.is_some_and(|o| !alloc_terminal(o));
            a.create_index = old.map_or(index, |o| o.create_index);
            a.create_time_unix_ms = old.map_or(now, |o| o.create_time_unix_ms);
            if let Some(old) = old {
                // The client owns what it reports; a plan computed before its last report must
                // not roll that back. The scheduler only ever sets `lost`.
                if a.client_status != ALLOC_LOST {
                    a.client_status = old.client_status.clone();
                    a.client_description = old.client_description.clone();
                }
                a.task_states = old.task_states.clone();
                // Health belongs to a deployment: one updated in place into a new deployment
                // is judged afresh.
                if old.deployment_id == a.deployment_id {
                    a.deployment_status = old.deployment_status;
                }
            }
            a.modify_index = index;
            a.modify_time_unix_ms = now;
            jobs.push(a.job_id.clone());
            freed |= was_live && alloc_terminal(&a);
            let old = self.allocs.get(&a.id).cloned();
            self.track_deployment(index, now, old.as_ref(), &a);
            self.allocs.insert(a);
        }
        for c in &p.deployment_changes {
            // Lenient: a deployment another command ended meanwhile stays as it is.
            let _ = self.change_deployment(index, now, c, false);
        }
        // Before this plan's own evaluations: a blocked one it creates saw the room already.
        if freed {
            self.unblock_evals(index, now);
        }
        if refused.is_empty() {
            if let Some(e) = &p.eval {
                jobs.push(e.job_id.clone());
                self.insert_eval(index, now, e.clone());
            }
            for e in &p.new_evals {
                self.insert_eval(index, now, e.clone());
            }
        } else if let Some(e) = p.eval.as_ref().and_then(|e| self.evals.get(&e.id)) {
            // What the plan concluded (blocked evaluations, follow-ups) came from stale state.
            let mut e = e.clone();
            e.plan_rejections += 1;
            let why: Vec<String> = refused.iter().map(|(n, w)| format!("{n}: {w}")).collect();
            if e.plan_rejections >= MAX_PLAN_REJECTIONS {
                e.status = EVAL_FAILED.into();
                e.status_description = format!(
                    "plan refused {} times, last because {}",
                    e.plan_rejections,
                    why.join("; ")
                );
            } else {
                e.status = EVAL_PENDING.into();
                e.status_description = format!("plan refused because {}", why.join("; "));
            }
            jobs.push(e.job_id.clone());
            self.insert_eval(index, now, e);
        }
        jobs.sort();
        jobs.dedup();
        for j in jobs {
            self.refresh_job_status(&j, index);
        }
    }

    /// The nodes that cannot take a plan's new placements, with the reason.
    fn refused_nodes(&self, p: &crate::internal::ApplyPlan) -> BTreeMap<String, String> {
        let in_plan: BTreeMap<&str, &Allocation> =
            p.allocs.iter().map(|a| (a.id.as_str(), a)).collect();
        let placing: BTreeSet<&str> = p
            .allocs
            .iter()
            .filter(|a| !self.allocs.contains_key(&a.id) && a.desired_status == ALLOC_DESIRED_RUN)
            .map(|a| a.node_id.as_str())
            .collect();
        let mut refused = BTreeMap::new();
        for node_id in placing {
            let Some(node) = self.nodes.get(node_id) else {
                refused.insert(node_id.to_string(), "the node is gone".to_string());
                continue;
            };
            if !takes_placements(node) {
                refused.insert(
                    node_id.to_string(),
                    "the node is not ready for placements".into(),
                );
                continue;
            }
            // What will run on the node: its live allocations, as the plan leaves them.
            let staying = self
                .node_allocs(node_id)
                .into_iter()
                .map(|a| in_plan.get(a.id.as_str()).copied().unwrap_or(a))
                .chain(
                    p.allocs
                        .iter()
                        .filter(|a| a.node_id == node_id && !self.allocs.contains_key(&a.id)),
                )
                .filter(|a| !alloc_terminal(a));
            let cap = node.resources.unwrap_or_default();
            let (mut cpu, mut mem) = (0u64, 0u64);
            let mut ports = BTreeSet::new();
            let mut clash = None;
            for a in staying {
                let r = a.resources.unwrap_or_default();
                cpu += u64::from(r.cpu);
                mem += u64::from(r.memory_mb);
                for port in &a.ports {
                    if !ports.insert(port.value) {
                        clash = Some(port.value);
                    }
                }
            }
            if !fits(&cap, cpu, mem) {
                refused.insert(
                    node_id.to_string(),
                    "the node would be over-committed".into(),
                );
            } else if let Some(port) = clash {
                refused.insert(
                    node_id.to_string(),
                    format!("port {port} would be taken twice"),
                );
            }
        }
        refused
    }

    fn update_allocs_from_client(
        &mut self,
        index: u64,
        now: i64,
        u: &crate::internal::AllocClientUpdates,
    ) {
        let mut jobs = Vec::new();
        let mut freed = false;
        for up in &u.updates {
            // A client may only report on its own allocations.
            if self.allocs.get(&up.alloc_id).map(|a| a.node_id.as_str()) != Some(&u.node_id) {
                continue;
            }
            let before = self.allocs.get(&up.alloc_id).cloned();
            self.allocs.update(&up.alloc_id, |a| {
                let was_live = !alloc_terminal(a);
                // `lost` is the servers' verdict on an allocation whose node went down; what
                // the client says when it comes back does not undo it.
                if a.client_status != ALLOC_LOST {
                    a.client_status = up.client_status.clone();
                    a.client_description = up.client_description.clone();
                }
                a.task_states = up.task_states.clone();
                if let Some(h) = up.deployment_status.as_ref().and_then(|d| d.healthy) {
                    let status = a.deployment_status.get_or_insert_with(Default::default);
                    if status.healthy != Some(h) {
                        status.healthy = Some(h);
                        status.timestamp_unix_ms = up
                            .deployment_status
                            .as_ref()
                            .map_or(now, |d| d.timestamp_unix_ms);
                        status.modify_index = index;
                    }
                }
                a.modify_index = index;
                a.modify_time_unix_ms = now;
                jobs.push(a.job_id.clone());
                freed |= was_live && alloc_terminal(a);
            });
            if let (Some(before), Some(after)) = (before, self.allocs.get(&up.alloc_id).cloned()) {
                self.track_deployment(index, now, Some(&before), &after);
            }
        }
        if freed {
            self.unblock_evals(index, now);
        }
        for e in &u.evals {
            self.insert_eval(index, now, e.clone());
        }
        jobs.sort();
        jobs.dedup();
        for j in jobs {
            self.refresh_job_status(&j, index);
        }
    }

    /// Recomputes a job's status from its allocations and evaluations (Nomad's rules).
    pub(crate) fn refresh_job_status(&mut self, job_id: &str, index: u64) {
        let allocs = self.job_allocs(job_id);
        let live = allocs.iter().any(|a| !alloc_terminal(a));
        let waiting = self
            .evals
            .of_job(job_id)
            .any(|e| e.status == EVAL_PENDING || e.status == EVAL_BLOCKED);
        let any = !allocs.is_empty() || self.evals.of_job(job_id).next().is_some();
        let Some(job) = self.jobs.get_mut(job_id) else {
            return;
        };
        let status = job_status(job.stop, live, waiting, any);
        if job.status != status {
            let job = Arc::make_mut(job);
            job.status = status.into();
            job.modify_index = index;
            if let Some(v) = self.job_versions.get_mut(job_id).and_then(|v| v.last_mut()) {
                Arc::make_mut(v).status = status.into();
            }
        }
    }

    /// Allocations of a job, oldest first: of the job as registered now, not of an earlier job
    /// of the same ID that was purged (all of them while no job has the ID).
    pub fn job_allocs(&self, job_id: &str) -> Vec<&Allocation> {
        let job = self.jobs.get(job_id);
        let mut v: Vec<&Allocation> = self
            .allocs
            .of_job(job_id)
            .filter(|a| job.is_none_or(|j| of_this_job(j, a)))
            .collect();
        v.sort_by(|a, b| (a.create_index, &a.name).cmp(&(b.create_index, &b.name)));
        v
    }

    /// Allocations placed on a node.
    pub fn node_allocs(&self, node_id: &str) -> Vec<&Allocation> {
        self.allocs.on_node(node_id).collect()
    }

    /// The highest modify index among the allocations on `node_id` (0 for none): it moves
    /// when one of them is placed or changed (or the newest is removed) and with no other
    /// write, so a client waits on it instead of on every entry the cluster applies.
    pub fn node_allocs_index(&self, node_id: &str) -> u64 {
        self.allocs.node_version(node_id)
    }

    /// The jobs a change of `node_id`'s status concerns: those with allocations on it that are
    /// still meant to run, and every system job.
    pub fn jobs_affected_by_node(&self, node_id: &str) -> Vec<&Job> {
        let on_node: BTreeSet<&str> = self
            .allocs
            .on_node(node_id)
            .filter(|a| !alloc_terminal(a))
            .map(|a| a.job_id.as_str())
            .collect();
        self.jobs
            .values()
            .map(Arc::as_ref)
            .filter(|j| j.r#type == JOB_TYPE_SYSTEM || on_node.contains(j.id.as_str()))
            .collect()
    }

    /// The jobs whose allocations these client reports newly mark failed (each once): they
    /// need an evaluation to reschedule.
    pub fn jobs_with_new_failures(&self, updates: &[crate::v1::AllocClientUpdate]) -> Vec<&Job> {
        let mut jobs: Vec<&Job> = updates
            .iter()
            .filter(|u| u.client_status == ALLOC_FAILED)
            .filter_map(|u| self.allocs.get(&u.alloc_id))
            .filter(|a| a.desired_status == ALLOC_DESIRED_RUN && a.client_status != ALLOC_FAILED)
            .filter_map(|a| self.job(&a.job_id))
            .collect();
        jobs.sort_by(|a, b| a.id.cmp(&b.id));
        jobs.dedup_by(|a, b| a.id == b.id);
        jobs
    }

    /// What the scheduler should work on now (Nomad's eval broker, pure): at most `jobs` jobs
    /// with due pending evaluations, in the order of the queue (higher priority first, then
    /// the job waiting longest); for each, its newest due evaluation with the older ones it
    /// supersedes. One evaluation per job at a time, duplicates coalesced. It reads the head
    /// of the pending queue (kept in that order by the table) and the chosen jobs' own
    /// evaluations, not the whole queue: under a backlog of thousands the eval loop took a
    /// full scan and sort for every few jobs it scheduled.
    pub fn evals_to_schedule(&self, now: i64, jobs: usize) -> Vec<(&Evaluation, Vec<&Evaluation>)> {
        let mut chosen: Vec<&str> = Vec::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for e in self.evals.in_state(EVAL_PENDING) {
            if chosen.len() == jobs {
                break;
            }
            if e.wait_until_unix_ms <= now && seen.insert(e.job_id.as_str()) {
                chosen.push(e.job_id.as_str());
            }
        }
        chosen
            .into_iter()
            .filter_map(|job| {
                let mut due: Vec<&Evaluation> = self
                    .evals
                    .of_job(job)
                    .filter(|e| e.status == EVAL_PENDING && e.wait_until_unix_ms <= now)
                    .collect();
                due.sort_by_key(|e| e.create_index);
                let newest = due.pop()?;
                Some((newest, due))
            })
            .collect()
    }

    /// Evaluations due at `now`, in the queue's order (higher priority first, then older).
    /// Delayed ones wait until their `wait_until`.
    pub fn pending_evals(&self, now: i64) -> Vec<&Evaluation> {
        self.evals
            .in_state(EVAL_PENDING)
            .filter(|e| e.wait_until_unix_ms <= now)
            .collect()
    }

    /// Finds an object by full ID or unique prefix.
    pub fn find_by_prefix<'a, T>(
        map: &'a BTreeMap<String, T>,
        prefix: &str,
    ) -> Result<&'a T, PrefixError> {
        if let Some(v) = map.get(prefix) {
            return Ok(v);
        }
        let mut hits = map
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix));
        match (hits.next(), hits.next()) {
            (Some((_, v)), None) if !prefix.is_empty() => Ok(v),
            (None, _) | (Some(_), None) => Err(PrefixError::NotFound),
            (Some(_), Some(_)) => Err(PrefixError::Ambiguous),
        }
    }

    /// A node by full ID, unique ID prefix, or else exact name.
    pub fn find_node(&self, key: &str) -> Result<&Node, PrefixError> {
        State::find_by_prefix(&self.nodes, key).or_else(|e| {
            let mut named = self.nodes.values().filter(|n| n.name == key);
            match (named.next(), named.next()) {
                (Some(n), None) => Ok(n),
                _ => Err(e),
            }
        })
    }

    /// The oldest snapshot format that holds this state: while a cluster still has servers of
    /// an older version (features gated), its snapshots stay readable by them, and a state that
    /// an older server would misread is refused by it loudly (its format is too new).
    pub fn snapshot_format(&self) -> u32 {
        let format_2 = !self.deployments.is_empty()
            || self.acl_bootstrap_index != 0
            || !self.acl_policies.is_empty()
            || !self.acl_tokens.is_empty()
            || self
                .nodes
                .values()
                .any(|n| n.drain_strategy.is_some() || !n.events.is_empty())
            || self
                .allocs
                .values()
                .any(|a| a.desired_transition.is_some() || !a.deployment_id.is_empty());
        if format_2 {
            2
        } else {
            1
        }
    }

    /// Encodes the whole state for a snapshot file.
    pub fn to_snapshot(&self, written_by: &str) -> Vec<u8> {
        let snap = StateSnapshot {
            format_version: self.snapshot_format(),
            written_by: written_by.into(),
            index: self.index,
            jobs: self.jobs.values().map(|j| Job::clone(j)).collect(),
            job_versions: self
                .job_versions
                .values()
                .flatten()
                .map(|j| Job::clone(j))
                .collect(),
            nodes: self.nodes.values().cloned().collect(),
            allocs: self.allocs.values().cloned().collect(),
            evals: self.evals.values().cloned().collect(),
            cluster_id: self.cluster_id.clone(),
            scheduler_config: Some(self.scheduler_config.clone()),
            deployments: self.deployments.values().cloned().collect(),
            acl_policies: self.acl_policies.values().cloned().collect(),
            acl_tokens: self.acl_tokens.values().cloned().collect(),
            acl_bootstrap_index: self.acl_bootstrap_index,
        };
        snap.encode_to_vec()
    }

    /// Decodes a snapshot written by [`State::to_snapshot`] of this or an older version.
    pub fn from_snapshot(bytes: &[u8]) -> Result<State, SnapshotError> {
        let snap =
            StateSnapshot::decode(bytes).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        if snap.format_version > SNAPSHOT_FORMAT {
            return Err(SnapshotError::TooNew {
                found: snap.format_version,
                written_by: snap.written_by,
                ours: yurt_types::VERSION,
            });
        }
        let mut job_versions: BTreeMap<String, Vec<Arc<Job>>> = BTreeMap::new();
        for j in snap.job_versions {
            job_versions
                .entry(j.id.clone())
                .or_default()
                .push(Arc::new(j));
        }
        for v in job_versions.values_mut() {
            v.sort_by_key(|j| j.version);
        }
        Ok(State {
            index: snap.index,
            jobs: snap
                .jobs
                .into_iter()
                .map(|j| (j.id.clone(), Arc::new(j)))
                .collect(),
            job_versions,
            nodes: snap.nodes.into_iter().map(|n| (n.id.clone(), n)).collect(),
            allocs: snap.allocs.into_iter().collect(),
            evals: snap.evals.into_iter().collect(),
            cluster_id: snap.cluster_id,
            scheduler_config: snap.scheduler_config.unwrap_or_default(),
            deployments: snap.deployments.into_iter().collect(),
            acl_policies: snap
                .acl_policies
                .into_iter()
                .map(|p| (p.name.clone(), p))
                .collect(),
            acl_tokens: snap
                .acl_tokens
                .into_iter()
                .map(|t| (t.secret_id.clone(), t))
                .collect(),
            acl_bootstrap_index: snap.acl_bootstrap_index,
        })
    }
}

/// Why an ID (prefix) named nothing: `what` is the kind of object, for the sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixError {
    NotFound,
    Ambiguous,
}

use yurt_types::limits::shown;

impl PrefixError {
    /// The sentence a user sees, for both APIs.
    pub fn sentence(self, what: &str, id: &str) -> String {
        match self {
            PrefixError::NotFound => format!("{what} {} not found", shown(id)),
            PrefixError::Ambiguous => format!(
                "{what} ID prefix {} matches more than one {what}: give more characters",
                shown(id)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::internal::ApplyPlan;
    use crate::v1::{Port, Resources};

    fn ready_node(id: &str, cpu: u32, memory_mb: u32) -> Node {
        Node {
            id: id.into(),
            status: NODE_READY.into(),
            scheduling_eligibility: NODE_ELIGIBLE.into(),
            resources: Some(Resources { cpu, memory_mb }),
            ..Node::default()
        }
    }

    fn placement(id: &str, node: &str, memory_mb: u32, port: u32) -> Allocation {
        Allocation {
            id: id.into(),
            node_id: node.into(),
            job_id: "web".into(),
            desired_status: ALLOC_DESIRED_RUN.into(),
            client_status: ALLOC_PENDING.into(),
            resources: Some(Resources { cpu: 10, memory_mb }),
            ports: vec![Port {
                label: "http".into(),
                value: port,
                to: 0,
            }],
            ..Allocation::default()
        }
    }

    fn plan(eval: &str, allocs: Vec<Allocation>) -> Command {
        Command {
            kind: Some(command::Kind::ApplyPlan(ApplyPlan {
                allocs,
                eval: Some(Evaluation {
                    id: eval.into(),
                    job_id: "web".into(),
                    status: EVAL_COMPLETE.into(),
                    ..Evaluation::default()
                }),
                new_evals: vec![],
                job: None,
                ..Default::default()
            })),
            ..Command::default()
        }
    }

    #[test]
    fn registration_and_status_changes_leave_node_events_once_every_server_reads_them() {
        use crate::evals::{node_register_command, node_status_command};
        let mut s = State::default();
        let mut index = 0;
        let mut apply = |s: &mut State, kind| {
            index += 1;
            let cmd = Command {
                kind: Some(kind),
                now_unix_ms: index as i64 * 1000,
                ..Command::default()
            };
            s.apply(index, &cmd).unwrap();
        };
        let mut ids = || "e".to_string();
        let register = |s: &State, events, ids: &mut dyn FnMut() -> String| {
            node_register_command(s, ready_node("n1", 1000, 1000), events, ids)
        };
        let messages = |s: &State| -> Vec<String> {
            s.nodes["n1"]
                .events
                .iter()
                .map(|e| format!("{} {}: {}", e.time_unix_ms, e.subsystem, e.message))
                .collect()
        };
        // While an older server may read the state, the commands carry no event.
        let kind = register(&s, false, &mut ids);
        apply(&mut s, kind);
        let kind = node_status_command(&s, "n1", NODE_DOWN, false, &mut ids);
        apply(&mut s, kind);
        assert!(messages(&s).is_empty());
        let kind = register(&s, true, &mut ids);
        apply(&mut s, kind);
        // A restart within the grace registers again: nothing happened to the node.
        let kind = register(&s, true, &mut ids);
        apply(&mut s, kind);
        let kind = node_status_command(&s, "n1", NODE_DOWN, true, &mut ids);
        apply(&mut s, kind);
        let kind = node_status_command(&s, "n1", NODE_DOWN, true, &mut ids);
        apply(&mut s, kind);
        let kind = node_status_command(&s, "n1", NODE_READY, true, &mut ids);
        apply(&mut s, kind);
        assert_eq!(
            messages(&s),
            [
                "3000 Cluster: Node re-registered",
                "5000 Cluster: Node heartbeat missed",
                "7000 Cluster: Node reregistered by heartbeat",
            ]
        );
        let mut fresh = State::default();
        let kind = register(&fresh, true, &mut ids);
        apply(&mut fresh, kind);
        assert_eq!(messages(&fresh).len(), 1);
        assert!(messages(&fresh)[0].ends_with("Cluster: Node registered"));
    }

    #[test]
    fn a_nodes_allocations_index_moves_only_with_its_own_allocations() {
        let mut s = State::default();
        s.nodes.insert("n1".into(), ready_node("n1", 1000, 1000));
        s.nodes.insert("n2".into(), ready_node("n2", 1000, 1000));
        assert_eq!(s.node_allocs_index("n1"), 0);
        s.apply(3, &plan("e1", vec![placement("a1", "n1", 100, 20000)]))
            .unwrap();
        assert_eq!(s.node_allocs_index("n1"), 3);
        // A placement on another node, and a write that touches no allocation, leave it.
        s.apply(4, &plan("e2", vec![placement("a2", "n2", 100, 20000)]))
            .unwrap();
        s.apply(5, &plan("e3", vec![])).unwrap();
        assert_eq!(s.node_allocs_index("n1"), 3);
        assert_eq!(s.node_allocs_index("n2"), 4);
        // The client's own report changes the allocation, and so the index.
        let report = Command {
            kind: Some(command::Kind::AllocClientUpdates(
                crate::internal::AllocClientUpdates {
                    node_id: "n1".into(),
                    evals: vec![],
                    updates: vec![crate::v1::AllocClientUpdate {
                        alloc_id: "a1".into(),
                        client_status: ALLOC_RUNNING.into(),
                        ..Default::default()
                    }],
                },
            )),
            ..Command::default()
        };
        s.apply(6, &report).unwrap();
        assert_eq!(s.node_allocs_index("n1"), 6);
    }

    #[test]
    fn one_evaluation_per_job_the_newest_with_the_older_ones_it_supersedes() {
        let mut s = State::default();
        let eval = |id: &str, job: &str, index: u64, priority: i32, wait: i64| Evaluation {
            id: id.into(),
            job_id: job.into(),
            create_index: index,
            priority,
            status: EVAL_PENDING.into(),
            wait_until_unix_ms: wait,
            ..Evaluation::default()
        };
        for e in [
            eval("a1", "a", 1, 50, 0),
            eval("a2", "a", 5, 50, 0),
            eval("a3", "a", 6, 50, 10_000),
            eval("b1", "b", 3, 70, 0),
        ] {
            s.evals.insert(e);
        }
        let picked: Vec<(&str, Vec<&str>)> = s
            .evals_to_schedule(100, 32)
            .into_iter()
            .map(|(e, older)| (e.id.as_str(), older.iter().map(|o| o.id.as_str()).collect()))
            .collect();
        // b first (higher priority); a's newest due evaluation, superseding a1; a3 waits.
        assert_eq!(picked, vec![("b1", vec![]), ("a2", vec!["a1"])]);
        // At most the asked number of jobs, from the head of the queue.
        let first: Vec<&str> = s
            .evals_to_schedule(100, 1)
            .into_iter()
            .map(|(e, _)| e.id.as_str())
            .collect();
        assert_eq!(first, ["b1"]);
        let cmd = crate::sched::plan_command(
            &s.evals["a2"],
            &[&s.evals["a1"]],
            crate::sched::Outcome::default(),
            100,
            &mut || "x".into(),
        );
        s.apply(7, &cmd).unwrap();
        assert_eq!(s.evals["a1"].status, EVAL_CANCELED);
        assert_eq!(
            s.evals["a1"].status_description,
            "superseded by evaluation a2"
        );
        assert_eq!(s.evals["a2"].status, EVAL_COMPLETE);
        assert_eq!(s.evals["a3"].status, EVAL_PENDING);
    }

    #[test]
    fn plans_from_stale_state_lose_the_placements_that_no_longer_fit() {
        let mut s = State::default();
        s.nodes.insert("n1".into(), ready_node("n1", 1000, 1000));
        s.nodes.insert("n2".into(), ready_node("n2", 1000, 1000));
        for id in ["e1", "e2"] {
            s.evals.insert(Evaluation {
                id: id.into(),
                job_id: "web".into(),
                status: EVAL_PENDING.into(),
                ..Evaluation::default()
            });
        }
        // Two plans computed from the same state each fill n1; the first wins.
        s.apply(1, &plan("e1", vec![placement("a1", "n1", 800, 20000)]))
            .unwrap();
        s.apply(
            2,
            &plan(
                "e2",
                vec![
                    placement("a2", "n1", 800, 20001),
                    placement("a3", "n2", 100, 20000),
                ],
            ),
        )
        .unwrap();
        assert!(s.allocs.contains_key("a1") && s.allocs.contains_key("a3"));
        assert!(!s.allocs.contains_key("a2"), "n1 would be over-committed");
        assert_eq!(s.evals["e1"].status, EVAL_COMPLETE);
        let e2 = &s.evals["e2"];
        assert_eq!((e2.status.as_str(), e2.plan_rejections), (EVAL_PENDING, 1));
        assert_eq!(
            e2.status_description,
            "plan refused because n1: the node would be over-committed"
        );

        // A port taken twice, a node gone or ineligible: refused the same way.
        s.apply(3, &plan("e2", vec![placement("a4", "n2", 10, 20000)]))
            .unwrap();
        assert!(s.evals["e2"]
            .status_description
            .ends_with("n2: port 20000 would be taken twice"));
        s.nodes.get_mut("n2").unwrap().scheduling_eligibility = NODE_INELIGIBLE.into();
        for i in 4..7 {
            s.apply(i, &plan("e2", vec![placement("a5", "n2", 10, 1)]))
                .unwrap();
        }
        let e2 = &s.evals["e2"];
        assert_eq!((e2.status.as_str(), e2.plan_rejections), (EVAL_FAILED, 5));
        assert_eq!(
            e2.status_description,
            "plan refused 5 times, last because n2: the node is not ready for placements"
        );
        // Stopping an allocation always applies, and makes room.
        let mut stop = s.allocs["a1"].clone();
        stop.desired_status = ALLOC_DESIRED_STOP.into();
        s.apply(
            7,
            &plan("e3", vec![stop, placement("a6", "n1", 900, 20000)]),
        )
        .unwrap();
        assert!(s.allocs.contains_key("a6"));
    }
    use crate::internal::{JobRegister, NodeRegister};

    fn job(count: u32) -> Job {
        let src = format!(
            "job \"web\" {{\n group \"app\" {{\n count = {count}\n task \"t\" {{\n driver = \"raw_exec\"\n config {{\n command = \"/bin/true\"\n }}\n }}\n }}\n}}\n"
        );
        yurt_types::jobspec::parse_hcl("t.hcl", &src).unwrap()
    }

    fn register(job: Job, enforce: Option<u64>) -> Command {
        Command {
            now_unix_ms: 1000,
            ignore_if_unknown: false,
            kind: Some(command::Kind::JobRegister(JobRegister {
                job: Some(job),
                eval: None,
                enforce_index: enforce.is_some(),
                job_modify_index: enforce.unwrap_or(0),
            })),
        }
    }

    #[test]
    fn an_allocation_that_ends_gives_blocked_evaluations_another_chance() {
        let blocked = |id: &str| Evaluation {
            id: id.into(),
            job_id: "other".into(),
            status: EVAL_BLOCKED.into(),
            ..Evaluation::default()
        };
        let mut s = State::default();
        s.nodes.insert("n1".into(), ready_node("n1", 1000, 1000));
        s.apply(1, &plan("e1", vec![placement("a1", "n1", 500, 20000)]))
            .unwrap();
        s.apply(2, &plan("e2", vec![placement("a2", "n1", 500, 20001)]))
            .unwrap();
        s.evals.insert(blocked("b1"));
        // Still running: nothing to retry.
        let report = |alloc: &str, status: &str| Command {
            kind: Some(command::Kind::AllocClientUpdates(
                crate::internal::AllocClientUpdates {
                    node_id: "n1".into(),
                    evals: vec![],
                    updates: vec![crate::v1::AllocClientUpdate {
                        alloc_id: alloc.into(),
                        client_status: status.into(),
                        ..Default::default()
                    }],
                },
            )),
            ..Command::default()
        };
        s.apply(3, &report("a1", ALLOC_RUNNING)).unwrap();
        assert_eq!(s.evals["b1"].status, EVAL_BLOCKED);
        // The client reports a1 finished: room.
        s.apply(4, &report("a1", ALLOC_COMPLETE)).unwrap();
        assert_eq!(s.evals["b1"].status, EVAL_PENDING);

        // A plan that stops a2 frees its room as well.
        s.evals.insert(blocked("b2"));
        let mut stop = s.allocs["a2"].clone();
        stop.desired_status = ALLOC_DESIRED_STOP.into();
        s.apply(5, &plan("e3", vec![stop])).unwrap();
        assert_eq!(s.evals["b2"].status, EVAL_PENDING);
    }

    #[test]
    fn versions_advance_only_on_spec_change() {
        let mut s = State::default();
        assert_eq!(
            s.apply(5, &register(job(1), None))
                .unwrap()
                .job_modify_index,
            5
        );
        assert_eq!(
            s.apply(6, &register(job(1), None))
                .unwrap()
                .job_modify_index,
            5
        );
        assert_eq!(s.jobs["web"].version, 0);
        s.apply(7, &register(job(2), None)).unwrap();
        let j = &s.jobs["web"];
        assert_eq!((j.version, j.job_modify_index, j.create_index), (1, 7, 5));
        assert_eq!(s.job_versions["web"].len(), 2);
        for i in 0..10 {
            s.apply(8 + i, &register(job(3 + i as u32), None)).unwrap();
        }
        assert_eq!(s.job_versions["web"].len(), TRACKED_VERSIONS);
        assert_eq!(s.job_versions["web"].last().unwrap().version, 11);
    }

    #[test]
    fn job_status_follows_nomad_s_rules() {
        // (stopped, live allocations, open evaluations, any at all) -> status
        for (args, want) in [
            ((true, true, true, true), JOB_DEAD),
            ((false, true, true, true), JOB_RUNNING),
            ((false, false, true, true), JOB_PENDING),
            ((false, false, false, true), JOB_DEAD),
            ((false, false, false, false), JOB_PENDING),
        ] {
            assert_eq!(job_status(args.0, args.1, args.2, args.3), want, "{args:?}");
        }
    }

    #[test]
    fn a_service_job_whose_allocations_all_failed_for_good_is_dead() {
        let mut s = crate::testkit::Sim::new();
        let job = yurt_types::jobspec::parse_hcl(
            "t.hcl",
            "job \"web\" {\n  group \"app\" {\n    count = 2\n    reschedule {\n      attempts = 0\n      unlimited = false\n    }\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"/bin/false\"\n      }\n    }\n  }\n}\n",
        )
        .unwrap();
        s.run(job);
        assert_eq!(s.state.jobs["web"].status, JOB_RUNNING);
        let ids: Vec<String> = s.state.allocs.values().map(|a| a.id.clone()).collect();
        s.report(&ids[0], ALLOC_FAILED, None);
        assert_eq!(s.state.jobs["web"].status, JOB_RUNNING, "one still runs");
        s.report(&ids[1], ALLOC_FAILED, None);
        assert_eq!(s.state.jobs["web"].status, JOB_DEAD);
    }

    #[test]
    fn the_newest_stable_version_is_kept_beyond_the_tracked_ones() {
        let kept = |stable: &[u64], n: u64| {
            let mut v: Vec<Arc<Job>> = Vec::new();
            for version in 0..n {
                v.push(Arc::new(Job {
                    version,
                    stable: stable.contains(&version),
                    ..Job::default()
                }));
                trim_versions(&mut v);
            }
            v.iter().map(|j| j.version).collect::<Vec<u64>>()
        };
        // Older than the six newest: kept, with the five newest.
        assert_eq!(kept(&[0], 9), vec![0, 4, 5, 6, 7, 8]);
        // Only the newest stable one is kept; an older stable one goes in turn.
        assert_eq!(kept(&[0, 1], 9), vec![1, 4, 5, 6, 7, 8]);
        // No stable version: the six newest.
        assert_eq!(kept(&[], 9), vec![3, 4, 5, 6, 7, 8]);
        // The stable one among the six newest: the six newest.
        assert_eq!(kept(&[5], 9), vec![3, 4, 5, 6, 7, 8]);
        assert_eq!(kept(&[8], 9), vec![3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn a_registered_job_is_stored_once_and_copied_only_when_its_status_changes() {
        let mut s = State::default();
        s.apply_owned(5, register(job(1), None)).unwrap();
        let current = &s.jobs["web"];
        let version = s.job_versions["web"].last().unwrap();
        assert!(Arc::ptr_eq(current, version), "one copy for both");
        assert_eq!(current.status, JOB_PENDING);

        // A running allocation makes the job running: the current job and its last version
        // both say so, and only the current job records the index of the change.
        s.nodes.insert("n1".into(), ready_node("n1", 1000, 1000));
        let mut a = placement("a1", "n1", 100, 20000);
        a.client_status = ALLOC_RUNNING.into();
        s.apply(6, &plan("e1", vec![a])).unwrap();
        let current = &s.jobs["web"];
        let version = s.job_versions["web"].last().unwrap();
        assert_eq!(
            (current.status.as_str(), current.modify_index),
            (JOB_RUNNING, 6)
        );
        assert_eq!(
            (version.status.as_str(), version.modify_index),
            (JOB_RUNNING, 5)
        );
        assert!(!Arc::ptr_eq(current, version));
    }

    #[test]
    fn check_index_is_compare_and_swap() {
        let mut s = State::default();
        let err = s.apply(3, &register(job(1), Some(9))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Enforcing job modify index 9: job does not exist"
        );
        assert!(s.jobs.is_empty());
        s.apply(4, &register(job(1), Some(0))).unwrap();
        let err = s.apply(5, &register(job(2), Some(0))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Enforcing job modify index 0: job already exists"
        );
        let err = s.apply(6, &register(job(2), Some(3))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Enforcing job modify index 3: job exists with conflicting job modify index: 4"
        );
        assert_eq!(s.jobs["web"].task_groups[0].count, 1);
        s.apply(7, &register(job(2), Some(4))).unwrap();
        assert_eq!(s.jobs["web"].task_groups[0].count, 2);
    }

    #[test]
    fn unknown_command_is_refused_unless_ignorable() {
        let mut s = State::default();
        let mut cmd = Command::default();
        assert_eq!(s.apply(1, &cmd), Err(ApplyError::UnknownCommand));
        cmd.ignore_if_unknown = true;
        assert!(s.apply(2, &cmd).is_ok());
    }

    #[test]
    fn snapshot_round_trips_and_refuses_newer_formats() {
        let mut s = State::default();
        s.apply(1, &register(job(1), None)).unwrap();
        s.apply(2, &register(job(2), None)).unwrap();
        let node = Node {
            id: "n1".into(),
            status: NODE_READY.into(),
            ..Node::default()
        };
        s.apply(
            3,
            &Command {
                kind: Some(command::Kind::NodeRegister(NodeRegister {
                    node: Some(node),
                    evals: vec![],
                    event: None,
                })),
                ..Command::default()
            },
        )
        .unwrap();
        s.apply(
            4,
            &Command {
                kind: Some(command::Kind::SetSchedulerConfig(
                    crate::internal::SetSchedulerConfig {
                        config: Some(SchedulerConfiguration {
                            scheduler_algorithm: SCHEDULER_SPREAD.into(),
                            ..Default::default()
                        }),
                    },
                )),
                ..Command::default()
            },
        )
        .unwrap();
        assert_eq!(
            (
                s.scheduler_config.create_index,
                s.scheduler_config.modify_index
            ),
            (4, 4)
        );
        let back = State::from_snapshot(&s.to_snapshot("0.1.0")).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.scheduler_config.scheduler_algorithm, SCHEDULER_SPREAD);

        let mut snap = StateSnapshot::decode(s.to_snapshot("0.1.0").as_slice()).unwrap();
        snap.format_version = SNAPSHOT_FORMAT + 1;
        snap.written_by = "9.9.9".into();
        let err = State::from_snapshot(&snap.encode_to_vec()).unwrap_err();
        assert!(err.to_string().contains("written by Yurt 9.9.9"), "{err}");
        assert!(
            err.to_string().contains("downgrades are not supported"),
            "{err}"
        );
        assert!(State::from_snapshot(b"\xff\xff garbage").is_err());
    }

    #[test]
    fn a_plan_never_rolls_back_what_the_client_reported() {
        use crate::internal::AllocClientUpdates;
        use crate::v1::AllocClientUpdate;
        let mut s = State::default();
        s.nodes.insert("n1".into(), ready_node("n1", 1000, 1000));
        let placed = Allocation {
            id: "a1".into(),
            node_id: "n1".into(),
            job_id: "web".into(),
            desired_status: ALLOC_DESIRED_RUN.into(),
            client_status: ALLOC_PENDING.into(),
            ..Allocation::default()
        };
        let plan = |allocs: Vec<Allocation>| Command {
            kind: Some(command::Kind::ApplyPlan(ApplyPlan {
                allocs,
                eval: None,
                new_evals: vec![],
                job: None,
                ..Default::default()
            })),
            ..Command::default()
        };
        s.apply(1, &plan(vec![placed.clone()])).unwrap();
        let report = Command {
            kind: Some(command::Kind::AllocClientUpdates(AllocClientUpdates {
                node_id: "n1".into(),
                evals: vec![],
                updates: vec![AllocClientUpdate {
                    alloc_id: "a1".into(),
                    client_status: ALLOC_RUNNING.into(),
                    ..AllocClientUpdate::default()
                }],
            })),
            ..Command::default()
        };
        s.apply(2, &report).unwrap();
        // An in-place update computed from the state at index 1 arrives after the report.
        let mut stale = placed.clone();
        stale.desired_description = "updated in place".into();
        s.apply(3, &plan(vec![stale.clone()])).unwrap();
        let a = &s.allocs["a1"];
        assert_eq!(
            (a.client_status.as_str(), a.desired_description.as_str()),
            (ALLOC_RUNNING, "updated in place")
        );
        assert_eq!((a.create_index, a.modify_index), (1, 3));
        // Health the client decided is recorded with its index and kept through later plans.
        let mut healthy = report.clone();
        if let Some(command::Kind::AllocClientUpdates(u)) = &mut healthy.kind {
            u.updates[0].deployment_status = Some(crate::v1::AllocDeploymentStatus {
                healthy: Some(true),
                timestamp_unix_ms: 42,
                ..Default::default()
            });
        }
        s.apply(4, &healthy).unwrap();
        s.apply(5, &report).unwrap();
        s.apply(6, &plan(vec![stale])).unwrap();
        let d = s.allocs["a1"].deployment_status.unwrap();
        assert_eq!(
            (d.healthy, d.timestamp_unix_ms, d.modify_index),
            (Some(true), 42, 4)
        );
        // Another node cannot report on it.
        let mut foreign = report.clone();
        if let Some(command::Kind::AllocClientUpdates(u)) = &mut foreign.kind {
            u.node_id = "n2".into();
            u.updates[0].client_status = ALLOC_FAILED.into();
        }
        s.apply(4, &foreign).unwrap();
        assert_eq!(s.allocs["a1"].client_status, ALLOC_RUNNING);
        // A report of failure needs a rescheduling evaluation once, not when repeated.
        let failed = vec![AllocClientUpdate {
            alloc_id: "a1".into(),
            client_status: ALLOC_FAILED.into(),
            ..AllocClientUpdate::default()
        }];
        s.jobs.insert(
            "web".into(),
            Job {
                id: "web".into(),
                ..Job::default()
            }
            .into(),
        );
        assert_eq!(s.jobs_with_new_failures(&failed).len(), 1);
        s.allocs
            .update("a1", |a| a.client_status = ALLOC_FAILED.into());
        assert!(s.jobs_with_new_failures(&failed).is_empty());
        s.allocs
            .update("a1", |a| a.client_status = ALLOC_RUNNING.into());
        // Losing an allocation is the scheduler's call.
        let mut lost = placed;
        lost.client_status = ALLOC_LOST.into();
        s.apply(5, &plan(vec![lost])).unwrap();
        assert_eq!(s.allocs["a1"].client_status, ALLOC_LOST);
    }

    #[test]
    fn prefix_lookup() {
        let mut m = BTreeMap::new();
        m.insert("abc1".to_string(), 1);
        m.insert("abd2".to_string(), 2);
        assert_eq!(State::find_by_prefix(&m, "abc"), Ok(&1));
        assert_eq!(State::find_by_prefix(&m, "ab"), Err(PrefixError::Ambiguous));
        assert_eq!(State::find_by_prefix(&m, "x"), Err(PrefixError::NotFound));
    }
}
