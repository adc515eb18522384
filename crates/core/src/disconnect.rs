//! The `disconnect` block's rules (pure, Nomad 1.8's semantics): what a node that stopped
//! heartbeating becomes (`disconnected` while one of its allocations' groups waits for it with
//! `lost_after`, else `down`), until when its allocations stay `unknown`, when the node is
//! down for good, and which of an allocation back from a disconnected node and its replacement
//! runs on (`reconcile`). The heartbeat tracker and the reconciler ask; nothing here reads a
//! clock.

use yurt_types::status::*;

use crate::features::Gates;
use crate::state::State;
use crate::v1::{Allocation, Node, TaskGroup};

/// The group's `lost_after` (0: none, the allocations are lost with their node).
pub fn lost_after_ms(g: &TaskGroup) -> u64 {
    g.disconnect.as_ref().map_or(0, |d| d.lost_after_ms)
}

/// Whether `unknown` allocations of the group are replaced meanwhile (`replace`, default true).
pub fn replaces(g: &TaskGroup) -> bool {
    g.disconnect
        .as_ref()
        .and_then(|d| d.replace)
        .unwrap_or(true)
}

/// The group's `stop_on_client_after` (0: none).
pub fn stop_on_client_after_ms(g: &TaskGroup) -> u64 {
    g.disconnect
        .as_ref()
        .map_or(0, |d| d.stop_on_client_after_ms)
}

/// The group the job's current version gives an allocation.
fn group_of<'s>(state: &'s State, a: &Allocation) -> Option<&'s TaskGroup> {
    state
        .job(&a.namespace, &a.job_id)
        .and_then(|j| j.task_groups.iter().find(|g| g.name == a.task_group))
}

/// The longest `lost_after` of the groups of the node's live allocations (0 when none has one).
fn longest_lost_after(state: &State, node_id: &str) -> u64 {
    state
        .allocs
        .on_node(node_id)
        .filter(|a| !alloc_terminal(a) && a.desired_status == ALLOC_DESIRED_RUN)
        .filter(|a| a.client_status != ALLOC_PENDING)
        .filter_map(|a| group_of(state, a))
        .map(lost_after_ms)
        .max()
        .unwrap_or(0)
}

/// What a node whose heartbeat deadline passed becomes: `disconnected` when one of its running
/// allocations belongs to a group with `lost_after` (and every server knows the status), else
/// `down`. A node already disconnected stays so until [`node_lost_at`].
pub fn silent_node_status(state: &State, node_id: &str, gates: Gates) -> &'static str {
    let Some(node) = state.nodes.get(node_id) else {
        return NODE_DOWN;
    };
    if !gates.disconnect || node.status == NODE_DOWN {
        return NODE_DOWN;
    }
    if node.status == NODE_DISCONNECTED || longest_lost_after(state, node_id) > 0 {
        NODE_DISCONNECTED
    } else {
        NODE_DOWN
    }
}

/// When a disconnected node goes down: once the longest `lost_after` of its allocations' groups
/// has passed since it was marked disconnected (`None` for a node that is not disconnected).
pub fn node_lost_at(state: &State, node_id: &str) -> Option<i64> {
    let node = state
        .nodes
        .get(node_id)
        .filter(|n| n.status == NODE_DISCONNECTED)?;
    Some(node.status_updated_unix_ms + longest_lost_after(state, node_id) as i64)
}

/// Until when an allocation of group `g` on `node` stays `unknown` (`None`: the node is not
/// disconnected or the group has no `lost_after`, so the allocation is lost if its node is not
/// ready).
pub fn unknown_until(node: &Node, g: &TaskGroup) -> Option<i64> {
    let lost_after = lost_after_ms(g);
    (node.status == NODE_DISCONNECTED && lost_after > 0)
        .then(|| node.status_updated_unix_ms + lost_after as i64)
}

/// Which of two allocations of one slot runs on after a node reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Original,
    Replacement,
}

/// When an allocation's first task started (`None` if none has).
fn started_at(a: &Allocation) -> Option<i64> {
    a.task_states
        .values()
        .map(|t| t.started_at_unix_ms)
        .filter(|t| *t > 0)
        .min()
}

/// Picks between an allocation back from a disconnected node (`original`) and the one placed
/// in its stead (`replacement`), per the group's `reconcile`: `keep_original`,
/// `keep_replacement`, `longest_running` (the one whose tasks started first), or `best_score`
/// (the default: the replacement only if it runs and its node scored strictly higher). A tie
/// keeps the original.
pub fn pick(g: &TaskGroup, original: &Allocation, replacement: &Allocation) -> Keep {
    let strategy = g
        .disconnect
        .as_ref()
        .map_or(RECONCILE_BEST_SCORE, |d| d.reconcile.as_str());
    let replacement_wins = match strategy {
        RECONCILE_KEEP_ORIGINAL => false,
        RECONCILE_KEEP_REPLACEMENT => true,
        RECONCILE_LONGEST_RUNNING => match (started_at(original), started_at(replacement)) {
            (None, Some(_)) => true,
            (Some(o), Some(r)) => r < o,
            _ => false,
        },
        _ => replacement.client_status == ALLOC_RUNNING && replacement.score > original.score,
    };
    if replacement_wins {
        Keep::Replacement
    } else {
        Keep::Original
    }
}

#[cfg(test)]
mod tests;
