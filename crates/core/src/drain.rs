//! Node drain (pure): taking a node out of service without downtime.
//!
//! `node drain -enable` sets the node's [`DrainStrategy`] (the node turns ineligible). The
//! leader's drainer ([`plan`], a function of the state and `now`) then, on every state change:
//! - marks service allocations on draining nodes for migration, group by group, so that at most
//!   `migrate.max_parallel` of a group are moving at once *across every draining node*: a group
//!   may have only as many allocations moving as its healthy ones exceed `count - max_parallel`
//!   (a replacement counts once its client has judged its health); the scheduler stops each
//!   marked allocation and places its replacement elsewhere;
//! - leaves batch allocations to finish, and stops them (without replacement) at the deadline;
//! - stops system allocations last, once everything else on the node has stopped, unless the
//!   drain ignores system jobs;
//! - marks every remaining service allocation at the deadline (`-force`: at once);
//! - ends the drain when every allocation on the node has stopped *on the client* (not merely
//!   been told to stop); the node stays ineligible until `node eligibility -enable`.
//!
//! The state lives in Raft (the node's strategy, the allocations' desired transitions): a new
//! leader's drainer carries on where the old one stopped.

use std::collections::{BTreeMap, BTreeSet};

use yurt_types::status::*;

use crate::internal::{DrainProgress, NodeDrainUpdate};
use crate::state::{push_event, ApplyError, State};
use crate::table::Row;
use crate::v1::{Allocation, DrainStrategy, Node, NodeEvent};

/// Whether the drainer has marked an allocation for migration.
pub fn marked(a: &Allocation) -> bool {
    a.desired_transition.as_ref().is_some_and(|t| t.migrate)
}

/// The command for `alloc stop`: the allocation (ID or unique prefix) marked to migrate, as
/// the drainer marks them, with `eval` of its job, whose scheduling stops it and places it
/// again. Refused, in a sentence, for one that does not exist (`Err((true, ..))`), has
/// already stopped or whose job is gone.
pub fn stop_alloc_command(
    state: &State,
    alloc: &str,
    eval_id: String,
) -> Result<crate::internal::command::Kind, (bool, String)> {
    let a = State::find_by_prefix(&state.allocs, alloc)
        .map_err(|e| (true, e.sentence("allocation", alloc)))?;
    let short = &a.id[..8.min(a.id.len())];
    if a.desired_status != ALLOC_DESIRED_RUN || alloc_client_terminal(&a.client_status) {
        return Err((
            false,
            format!(
                "allocation {short} has already stopped ({}, {})",
                a.desired_status, a.client_status
            ),
        ));
    }
    let job = state.job(&a.namespace, &a.job_id).ok_or_else(|| {
        (
            false,
            format!("the job {:?} of allocation {short} is gone", a.job_id),
        )
    })?;
    let eval = crate::evals::new_eval(job, eval_id, TRIGGER_ALLOC_STOP);
    Ok(crate::internal::command::Kind::DrainProgress(
        DrainProgress {
            migrate_allocs: vec![a.id.clone()],
            evals: vec![eval],
            ..DrainProgress::default()
        },
    ))
}

/// Whether an allocation has really stopped: its client says so, or it never started and
/// never will.
fn stopped(a: &Allocation) -> bool {
    alloc_client_terminal(&a.client_status)
        || (a.desired_status != ALLOC_DESIRED_RUN && a.client_status == ALLOC_PENDING)
}

/// Whether a node's drain deadline has passed.
fn deadline_passed(s: &DrainStrategy, now: i64) -> bool {
    s.deadline_ms < 0 || (s.force_deadline_unix_ms != 0 && now >= s.force_deadline_unix_ms)
}

/// The command for `node drain -enable` (`strategy` as the user gave it: `deadline_ms` < 0
/// forces, 0 waits forever) or `-disable` (`None`: ends a drain, and with `mark_eligible` makes
/// the node eligible again, also once its drain is complete).
pub fn drain_command(
    state: &State,
    node: &Node,
    strategy: Option<DrainStrategy>,
    mark_eligible: bool,
    now: i64,
    new_id: &mut dyn FnMut() -> String,
) -> NodeDrainUpdate {
    let strategy = strategy.map(|s| DrainStrategy {
        force_deadline_unix_ms: match s.deadline_ms {
            d if d < 0 => now,
            0 => 0,
            d => now + d,
        },
        started_at_unix_ms: node
            .drain_strategy
            .as_ref()
            .map_or(now, |o| o.started_at_unix_ms),
        ..s
    });
    // Back to eligible: the node's system jobs may place again.
    let evals = if strategy.is_none() && mark_eligible {
        crate::evals::node_evals(state, &node.id, new_id)
    } else {
        Vec::new()
    };
    NodeDrainUpdate {
        node_id: node.id.clone(),
        strategy,
        mark_eligible,
        evals,
    }
}

/// One pass of the leader's drainer: what the draining nodes need now, or `None`. Applying it
/// and calling again does not repeat it.
pub fn plan(state: &State, now: i64, new_id: &mut dyn FnMut() -> String) -> Option<DrainProgress> {
    let draining: Vec<(&Node, &DrainStrategy)> = state
        .nodes
        .values()
        .filter_map(|n| n.drain_strategy.as_ref().map(|s| (n, s)))
        .collect();
    if draining.is_empty() {
        return None;
    }
    let mut out = DrainProgress::default();
    let job_type = |a: &Allocation| -> String {
        state
            .job(&a.namespace, &a.job_id)
            .map(|j| j.r#type.clone())
            .or_else(|| a.job.as_ref().map(|j| j.r#type.clone()))
            .unwrap_or_default()
    };
    // Service allocations that may move, by (job, group), across every draining node.
    let mut waiting: BTreeMap<(&str, &str, &str), Vec<&Allocation>> = BTreeMap::new();
    for (node, s) in &draining {
        let force = deadline_passed(s, now);
        let live = state
            .allocs
            .on_node(&node.id)
            .filter(|a| !alloc_terminal(a));
        let mut others_stopped = true;
        let mut system = Vec::new();
        for a in live {
            match job_type(a).as_str() {
                JOB_TYPE_SYSTEM => system.push(a),
                JOB_TYPE_BATCH => {
                    others_stopped = false;
                    if force {
                        out.stop_allocs.push(a.id.clone());
                    }
                }
                _ => {
                    others_stopped = false;
                    if marked(a) {
                        continue;
                    }
                    if force {
                        out.migrate_allocs.push(a.id.clone());
                    } else {
                        waiting
                            .entry((Row::namespace(a), a.job_id.as_str(), a.task_group.as_str()))
                            .or_default()
                            .push(a);
                    }
                }
            }
        }
        // Allocations told to stop that have not stopped on the client yet hold the drain.
        let on_node: Vec<&Allocation> = state.allocs.on_node(&node.id).collect();
        let busy = |system: bool| {
            on_node
                .iter()
                .filter(|a| (job_type(a) == JOB_TYPE_SYSTEM) == system)
                .any(|a| !stopped(a))
        };
        others_stopped &= !busy(false);
        if others_stopped && !s.ignore_system_jobs {
            for a in &system {
                out.stop_allocs.push(a.id.clone());
            }
        }
        if others_stopped && (s.ignore_system_jobs || !busy(true)) {
            out.done_nodes.push(node.id.clone());
            if s.force_deadline_unix_ms != 0 && now >= s.force_deadline_unix_ms {
                out.deadline_nodes.push(node.id.clone());
            }
        }
    }
    for ((ns, job_id, group), mut allocs) in waiting {
        let Some(job) = state.job(ns, job_id) else {
            continue;
        };
        let Some(g) = job.task_groups.iter().find(|g| g.name == group) else {
            continue;
        };
        let max_parallel = g.migrate.as_ref().map_or(1, |m| m.max_parallel.max(1));
        // Allocations of the group whose health is known and that are not moving already.
        let healthy = state
            .allocs
            .of_job(ns, job_id)
            .filter(|a| a.task_group == group && !alloc_terminal(a) && !marked(a))
            .filter(|a| {
                a.deployment_status
                    .as_ref()
                    .is_some_and(|d| d.healthy.is_some())
            })
            .count();
        let floor = g.count.saturating_sub(max_parallel) as usize;
        let allowed = healthy.saturating_sub(floor);
        allocs.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        for a in allocs.into_iter().take(allowed) {
            out.migrate_allocs.push(a.id.clone());
        }
    }
    let mut jobs: BTreeSet<(&str, &str)> = BTreeSet::new();
    for id in out.migrate_allocs.iter().chain(&out.stop_allocs) {
        if let Some(a) = state.allocs.get(id) {
            jobs.insert((Row::namespace(a), a.job_id.as_str()));
        }
    }
    out.evals = jobs
        .into_iter()
        .filter_map(|(ns, j)| state.job(ns, j))
        .map(|j| crate::evals::new_eval(j, new_id(), TRIGGER_NODE_DRAIN))
        .collect();
    let empty =
        out.migrate_allocs.is_empty() && out.stop_allocs.is_empty() && out.done_nodes.is_empty();
    (!empty).then_some(out)
}

/// When the drainer has something to do without any new event: the earliest drain deadline.
pub fn next_deadline(state: &State) -> Option<i64> {
    state
        .nodes
        .values()
        .filter_map(|n| n.drain_strategy.as_ref())
        .map(|s| s.force_deadline_unix_ms)
        .filter(|t| *t != 0)
        .min()
}

fn event(now: i64, message: &str, details: &[(&str, String)]) -> NodeEvent {
    NodeEvent {
        time_unix_ms: now,
        subsystem: NODE_EVENT_SUBSYSTEM_DRAIN.into(),
        message: message.into(),
        details: details
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

impl State {
    /// Makes a node eligible or ineligible for placements; eligible is refused while it drains.
    pub(crate) fn apply_eligibility_update(
        &mut self,
        index: u64,
        now: i64,
        u: crate::internal::NodeEligibilityUpdate,
    ) -> Result<(), ApplyError> {
        let node = self
            .nodes
            .get_mut(&u.node_id)
            .ok_or_else(|| ApplyError::NodeNotFound(u.node_id.clone()))?;
        if u.eligibility == NODE_ELIGIBLE {
            check_eligible(node).map_err(ApplyError::Refused)?;
        }
        node.scheduling_eligibility = u.eligibility.clone();
        node.modify_index = index;
        for e in u.evals {
            self.insert_eval(index, now, e);
        }
        if u.eligibility == NODE_ELIGIBLE {
            self.unblock_evals(index, now);
        }
        Ok(())
    }

    pub(crate) fn apply_drain_update(
        &mut self,
        index: u64,
        now: i64,
        u: &NodeDrainUpdate,
    ) -> Result<crate::state::Applied, ApplyError> {
        let node = self
            .nodes
            .get_mut(&u.node_id)
            .ok_or_else(|| ApplyError::NodeNotFound(u.node_id.clone()))?;
        let mut eligible = false;
        match &u.strategy {
            Some(s) => {
                let message = if node.drain_strategy.is_some() {
                    NODE_EVENT_DRAIN_UPDATED
                } else {
                    NODE_EVENT_DRAIN_SET
                };
                let deadline = match s.deadline_ms {
                    d if d < 0 => "force".to_string(),
                    0 => "none".to_string(),
                    d => yurt_types::duration::format_ms(d as u64),
                };
                push_event(node, event(now, message, &[("deadline", deadline)]));
                node.drain_strategy = Some(*s);
                node.drain = true;
                node.scheduling_eligibility = NODE_INELIGIBLE.into();
            }
            None => {
                if node.drain_strategy.take().is_some() {
                    push_event(node, event(now, NODE_EVENT_DRAIN_DISABLED, &[]));
                }
                node.drain = false;
                if u.mark_eligible {
                    node.scheduling_eligibility = NODE_ELIGIBLE.into();
                    eligible = true;
                }
            }
        }
        node.modify_index = index;
        for e in &u.evals {
            self.insert_eval(index, now, e.clone());
        }
        if eligible {
            self.unblock_evals(index, now);
        }
        Ok(Default::default())
    }

    pub(crate) fn apply_drain_progress(&mut self, index: u64, now: i64, p: &DrainProgress) {
        let mut jobs = Vec::new();
        for id in &p.migrate_allocs {
            self.allocs.update(id, |a| {
                if !alloc_terminal(a) {
                    a.desired_transition
                        .get_or_insert_with(Default::default)
                        .migrate = true;
                    a.modify_index = index;
                    a.modify_time_unix_ms = now;
                }
            });
        }
        let mut freed = false;
        for id in &p.stop_allocs {
            self.allocs.update(id, |a| {
                if !alloc_terminal(a) {
                    a.desired_status = ALLOC_DESIRED_STOP.into();
                    a.desired_description = DESC_NODE_TAINTED.into();
                    a.desired_transition
                        .get_or_insert_with(Default::default)
                        .migrate = true;
                    a.modify_index = index;
                    a.modify_time_unix_ms = now;
                    jobs.push(crate::state::job_key(&a.namespace, &a.job_id));
                    freed = true;
                }
            });
        }
        for id in &p.done_nodes {
            let Some(node) = self.nodes.get_mut(id) else {
                continue;
            };
            if node.drain_strategy.take().is_none() {
                continue;
            }
            node.drain = false;
            node.modify_index = index;
            if p.deadline_nodes.contains(id) {
                push_event(node, event(now, NODE_EVENT_DRAIN_DEADLINE, &[]));
            }
            let reached = p.deadline_nodes.contains(id).to_string();
            push_event(
                node,
                event(
                    now,
                    NODE_EVENT_DRAIN_COMPLETE,
                    &[("deadline_reached", reached)],
                ),
            );
        }
        self.settle(index, now, freed, &p.evals, jobs);
    }
}

/// Whether `node` may be made eligible now (not while it drains).
pub fn check_eligible(node: &Node) -> Result<(), String> {
    if node.drain_strategy.is_some() {
        return Err(
            "can not set node's scheduling eligibility to eligible while it is draining".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
