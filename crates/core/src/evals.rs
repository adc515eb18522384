//! The evaluations and the node commands that carry them, built for the leader and the API
//! handlers to submit: a job's new evaluation, the `node-update` evaluations a node's change
//! calls for, and the commands of a node's status, eligibility and registration (with the
//! node's event). Every domain module that asks for evaluations builds them here; this module
//! reads the state and builds nothing else.

use yurt_types::status::*;

use crate::internal::command;
use crate::state::State;
use crate::v1::{Evaluation, Job, Node};

/// The command that changes a node's status, with a `node-update` evaluation for each job the
/// change concerns (see [`State::jobs_affected_by_node`]) and, with `events` (every server
/// reads them), the node's event for it.
pub fn node_status_command(
    state: &State,
    node_id: &str,
    status: &str,
    events: bool,
    new_id: &mut dyn FnMut() -> String,
) -> command::Kind {
    let from = state.nodes.get(node_id).map(|n| n.status.as_str());
    let gone = |s: &str| s == NODE_DOWN || s == NODE_DISCONNECTED;
    let message = match (from, status) {
        (Some(from), to) if gone(to) && !gone(from) => Some(NODE_EVENT_HEARTBEAT_MISSED),
        (Some(NODE_DOWN), NODE_READY) => Some(NODE_EVENT_REREGISTERED_BY_HEARTBEAT),
        (Some(NODE_DISCONNECTED), NODE_READY) => Some(NODE_EVENT_RECONNECTED),
        _ => None,
    };
    command::Kind::NodeStatusUpdate(crate::internal::NodeStatusUpdate {
        node_id: node_id.to_string(),
        status: status.to_string(),
        evals: node_evals(state, node_id, new_id),
        event: message.filter(|_| events).map(cluster_event),
    })
}

/// A node event of the `Cluster` subsystem; the state machine gives it the entry's time.
fn cluster_event(message: &str) -> crate::v1::NodeEvent {
    crate::v1::NodeEvent {
        subsystem: NODE_EVENT_SUBSYSTEM_CLUSTER.into(),
        message: message.into(),
        ..Default::default()
    }
}

/// The command that makes a node eligible or ineligible for placements. Becoming eligible
/// brings `node-update` evaluations for the jobs the node concerns (its system jobs); the
/// state machine also gives blocked evaluations another chance then.
pub fn node_eligibility_command(
    state: &State,
    node_id: &str,
    eligible: bool,
    new_id: &mut dyn FnMut() -> String,
) -> command::Kind {
    command::Kind::NodeEligibilityUpdate(crate::internal::NodeEligibilityUpdate {
        node_id: node_id.to_string(),
        eligibility: if eligible {
            NODE_ELIGIBLE
        } else {
            NODE_INELIGIBLE
        }
        .into(),
        evals: if eligible {
            node_evals(state, node_id, new_id)
        } else {
            Vec::new()
        },
    })
}

/// The command that registers (or re-registers) a node, with a `node-update` evaluation for
/// each job it concerns (a new node gets its system jobs' allocations at once) and, with
/// `events`, the node's event: a first registration, or one after it was down (a restart
/// within the grace period is no event).
pub fn node_register_command(
    state: &State,
    node: Node,
    events: bool,
    new_id: &mut dyn FnMut() -> String,
) -> command::Kind {
    let message = match state.nodes.get(&node.id).map(|n| n.status.as_str()) {
        None => Some(NODE_EVENT_REGISTERED),
        Some(NODE_DOWN | NODE_DISCONNECTED) => Some(NODE_EVENT_REREGISTERED),
        Some(_) => None,
    };
    command::Kind::NodeRegister(crate::internal::NodeRegister {
        evals: node_evals(state, &node.id, new_id),
        node: Some(node),
        event: message.filter(|_| events).map(cluster_event),
    })
}

pub(crate) fn node_evals(
    state: &State,
    node_id: &str,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Evaluation> {
    state
        .jobs_affected_by_node(node_id)
        .into_iter()
        .map(|j| {
            let mut e = new_eval(j, new_id(), TRIGGER_NODE_UPDATE);
            e.node_id = node_id.to_string();
            e
        })
        .collect()
}

/// The evaluations of `/v1/node/:id/evaluate`: one for each job the node concerns.
pub fn node_evaluate_command(
    state: &State,
    node_id: &str,
    new_id: &mut dyn FnMut() -> String,
) -> command::Kind {
    command::Kind::EvalsCreate(crate::internal::EvalsCreate {
        evals: node_evals(state, node_id, new_id),
    })
}

/// Why a job has allocations waiting for room, for `job status`: while one of its evaluations
/// is blocked, the newest of them with placement failures.
pub fn placement_failure(evals: &[Evaluation]) -> Option<&Evaluation> {
    if !evals.iter().any(|e| e.status == EVAL_BLOCKED) {
        return None;
    }
    evals
        .iter()
        .filter(|e| !e.failed_tg_allocs.is_empty())
        .max_by_key(|e| e.create_index)
}

/// A new evaluation for a job, as written with a registration or a stop.
pub fn new_eval(job: &Job, id: String, triggered_by: &str) -> Evaluation {
    Evaluation {
        id,
        priority: job.priority,
        r#type: job.r#type.clone(),
        triggered_by: triggered_by.into(),
        job_id: job.id.clone(),
        status: EVAL_PENDING.into(),
        namespace: yurt_types::acl::namespace_or_default(&job.namespace).to_string(),
        ..Evaluation::default()
    }
}
