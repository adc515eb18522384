//! The replicated state of the cluster and the state machine that changes it.
//!
//! Architecture invariant: [`State::apply`] is deterministic. It reads no clock and no
//! randomness; timestamps arrive inside the command (`now_unix_ms`, written by the leader).
//! A command that fails (e.g. a `-check-index` mismatch) changes nothing.
//!
//! This file holds the state, the command dispatch and the rules shared with the scheduler
//! (`takes_placements`, `fits`); [`jobs`], [`plans`] (plans and clients' reports),
//! [`queries`] and [`snapshot`] hold the rest. Deployments, drains and GC implement their
//! parts of the state machine in their own modules (`deploy`, `drain`, `gc`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use prost::Message;
use yurt_types::status::*;

use crate::internal::{command, Command, StateSnapshot};
use crate::table::Table;
use crate::v1::{Allocation, Deployment, Evaluation, Job, Node, NodeEvent, SchedulerConfiguration};
/// The persistent map the state keeps its rows in: cloning the state shares them.
pub use imbl::OrdMap;

mod jobs;
mod plans;
mod queries;
mod snapshot;

pub use crate::table::{job_key, JobKey};
pub use jobs::{job_status, key_of, of_this_job, trim_versions, TRACKED_VERSIONS};
pub use queries::{ById, PrefixError};
pub use snapshot::{SnapshotError, SNAPSHOT_FORMAT};

/// A variable's namespace and path: how the state keys it.
pub type VarKey = (String, String);

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
    /// Keyed by namespace and ID.
    pub jobs: OrdMap<JobKey, Arc<Job>>,
    /// Kept versions of each job, oldest first; the last is the current one.
    pub job_versions: OrdMap<JobKey, Vec<Arc<Job>>>,
    pub nodes: OrdMap<String, Node>,
    pub allocs: Table<Allocation>,
    pub evals: Table<Evaluation>,
    /// Names the cluster; set once by its first leader.
    pub cluster_id: String,
    /// `operator scheduler set-config`; empty fields mean the defaults.
    pub scheduler_config: SchedulerConfiguration,
    /// Deployments, indexed by job and by active status (running, paused).
    pub deployments: Table<Deployment>,
    /// ACL policies by name.
    pub acl_policies: OrdMap<String, yurt_proto::v1::AclPolicy>,
    /// ACL tokens by secret ID.
    pub acl_tokens: OrdMap<String, yurt_proto::v1::AclToken>,
    /// The Raft index of the ACL bootstrap; 0: not done.
    pub acl_bootstrap_index: u64,
    /// Nomad Variables, sealed, by namespace and path.
    pub variables: OrdMap<VarKey, yurt_proto::internal::EncryptedVariable>,
    /// The keyring's keys (metadata only) by ID.
    pub root_keys: OrdMap<String, yurt_proto::v1::RootKeyMeta>,
    /// Namespaces by name, but `default` until someone describes it (see `State::namespace`).
    pub namespaces: OrdMap<String, yurt_proto::v1::Namespace>,
    /// Each job's scaling events by group (see `scaling`); gone with the job.
    pub scaling_events: OrdMap<JobKey, crate::internal::JobScalingEvents>,
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
    /// The current version of job `id` in namespace `ns`.
    pub fn job(&self, ns: &str, id: &str) -> Option<&Job> {
        self.jobs.get(&job_key(ns, id)).map(Arc::as_ref)
    }

    /// The kept versions of job `id` in namespace `ns`, oldest first (none when it is gone).
    pub fn versions(&self, ns: &str, id: &str) -> &[Arc<Job>] {
        self.job_versions
            .get(&job_key(ns, id))
            .map_or(&[], Vec::as_slice)
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
            Some(command::Kind::VariableWrite(w)) => {
                self.apply_variable_write(index, now, w)?;
                Ok(Applied::default())
            }
            Some(command::Kind::NamespaceUpdate(u)) => {
                self.apply_namespace_update(index, &u)?;
                Ok(Applied::default())
            }
            Some(command::Kind::EvalsCreate(c)) => {
                for e in c.evals {
                    self.insert_eval(index, now, e);
                }
                Ok(Applied::default())
            }
            Some(command::Kind::JobStability(j)) => {
                let key = job_key(&j.namespace, &j.job_id);
                if self.set_stable(&key, j.version, j.stable, index) {
                    Ok(Applied::default())
                } else {
                    Err(ApplyError::Refused(format!(
                        "job {:?} has no kept version {}",
                        j.job_id, j.version
                    )))
                }
            }
            Some(command::Kind::JobScalingEvent(e)) => {
                self.apply_scaling_event(index, now, &e)?;
                Ok(Applied::default())
            }
            Some(command::Kind::KeyringUpdate(u)) => {
                self.apply_keyring_update(index, now, u);
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

    pub(crate) fn insert_eval(&mut self, index: u64, now: i64, mut e: Evaluation) {
        let old = self.evals.get(&e.id);
        e.create_index = old.map_or(index, |o| o.create_index);
        e.create_time_unix_ms = old.map_or(now, |o| o.create_time_unix_ms);
        e.modify_index = index;
        e.modify_time_unix_ms = now;
        e.namespace = yurt_types::acl::namespace_or_default(&e.namespace).to_string();
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

    /// How a command that changed allocations ends: if it freed room, blocked evaluations get
    /// another chance (before its own evaluations, which saw that room already); its
    /// evaluations are stored; the status of every job it touched is recomputed.
    pub(crate) fn settle(
        &mut self,
        index: u64,
        now: i64,
        freed: bool,
        evals: &[Evaluation],
        jobs: Vec<JobKey>,
    ) {
        if freed {
            self.unblock_evals(index, now);
        }
        for e in evals {
            self.insert_eval(index, now, e.clone());
        }
        self.refresh_job_statuses(jobs, index);
    }

    /// Recomputes the status of each job named (once each).
    pub(crate) fn refresh_job_statuses(&mut self, mut jobs: Vec<JobKey>, index: u64) {
        jobs.sort();
        jobs.dedup();
        for j in jobs {
            self.refresh_job_status(&j, index);
        }
    }
}

#[cfg(test)]
mod tests;
