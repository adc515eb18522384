//! Yurt's pure cluster logic. Nothing here performs I/O or reads a clock: every function that
//! depends on time takes `now` (Unix milliseconds) as an argument.
//!
//! - [`state`]: the replicated state and the deterministic state machine `apply(index, command)`,
//!   plus snapshot encoding with a format version.
//! - [`reschedule`]: when a failed allocation may be replaced, and after what delay.
//! - [`heartbeat`]: heartbeat TTLs and node expiry.
//! - [`backup`]: snapshot files for `operator snapshot save/restore`, checksummed.
//! - [`autopilot`]: the leader's Raft membership decisions (join, promote, remove).
//! - [`table`]: the state's allocation and evaluation tables, indexed by job, node and state.
//! - [`deploy`]: deployments: the state machine's part, the leader's watcher (deadlines,
//!   auto-revert, auto-promote) and the users' operations (promote, fail, pause, revert).
//! - [`evals`]: the evaluations and node commands that carry them (new_eval, node_*_command).
//! - [`drain`]: node drain: the leader's drainer (migrations metered by `migrate` blocks,
//!   deadlines, system jobs last) and the state machine's part.
//! - [`acl`]: ACL policies and tokens in the state, and what a token's secret may do.
//! - [`namespaces`]: namespaces in the state, and the namespace of a job's objects.
//! - [`variables`]: Nomad Variables (sealed) and the keyring's metadata in the state.
//! - [`features`]: which features a cluster of mixed server versions may use.
//! - [`upgrade`]: `operator upgrade-check`: whether one server may go down for its upgrade now.
//! - [`scaling`]: `job scale` and each group's scale status.
//! - [`search`]: prefix and fuzzy search over the state.
//! - [`sched`]: the reconciler and placement (service, batch and system jobs), producing the
//!   allocations a plan writes; and the `job plan` dry run.

pub mod acl;
pub mod autopilot;
pub mod backup;
pub mod deploy;
pub mod disconnect;
pub mod drain;
pub mod evals;
pub mod events;
pub mod features;
#[cfg(test)]
mod fit_tests;
pub mod gc;
pub mod heartbeat;
pub mod namespaces;
pub mod reschedule;
pub mod scaling;
pub mod sched;
pub mod search;
pub mod state;
pub mod table;
#[cfg(test)]
mod testkit;
pub mod upgrade;
pub mod variables;

pub use yurt_proto::{internal, v1};
