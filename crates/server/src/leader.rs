//! The leader's loops:
//! - scheduling: take the pending evaluations (one per job, duplicates coalesced: see
//!   `State::evals_to_schedule`), run the pure scheduler for several jobs on the current state,
//!   and commit their plans through Raft together;
//! - autopilot: name the cluster once, and keep the Raft configuration in line with the live
//!   servers.
//!
//! Plans computed side by side share the nodes' usage, so each sees what the ones before it
//! placed; a plan can still meet a state that changed under it (a node went away, a client
//! report): the state machine checks each plan's placements against the state it commits on
//! and refuses those that no longer fit, leaving the evaluation pending to be scheduled again
//! (Nomad's optimistic plan applier).

use std::time::Duration;

use tokio::sync::watch;
use yurt_core::internal::{command, Command};
use yurt_core::sched::{plan_command, schedule_with, NodeUsage};

use crate::raft::state_machine::StateHandle;
use crate::raft::Raft;
use crate::write::{now_unix_ms, Writer};

/// What every leader loop works with: the state it reads, the writer it commits through,
/// Raft (is this server still leading?) and the cluster's view (feature gates, members).
#[derive(Clone)]
pub struct Leader {
    pub state: StateHandle,
    pub writer: Writer,
    pub raft: Raft,
    pub cluster: crate::cluster::Cluster,
}

/// Jobs whose plans are computed and committed together (one Raft entry, thanks to the
/// writer's batching).
const JOBS_AT_ONCE: usize = 32;

/// Marks an evaluation failed with the scheduler's error, changing nothing else.
fn failed_eval_command(eval: &yurt_core::v1::Evaluation, why: &str, now: i64) -> Command {
    let mut failed = eval.clone();
    failed.status = yurt_types::status::EVAL_FAILED.into();
    failed.status_description = format!("scheduler error: {why}");
    Command {
        now_unix_ms: now,
        ignore_if_unknown: false,
        kind: Some(yurt_core::internal::command::Kind::ApplyPlan(
            yurt_core::internal::ApplyPlan {
                allocs: vec![],
                eval: Some(failed),
                new_evals: vec![],
                job: None,
                deployment: None,
                deployment_changes: vec![],
            },
        )),
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// One round of the evaluation loop: the evaluations due, each scheduled on a snapshot of
/// the state taken for it (the state lock is held only for the copy, which shares the state's
/// rows), on a blocking thread. The runs share the nodes' usage as the round's start saw it
/// plus their own placements; a plan that no longer fits what changed meanwhile is refused by
/// the state machine and its evaluation runs again.
fn plan_round(
    state: &StateHandle,
    now: i64,
    gates: yurt_core::features::Gates,
) -> Vec<(String, String, Command)> {
    type Due = Vec<(yurt_core::v1::Evaluation, Vec<yurt_core::v1::Evaluation>)>;
    let start = state.snapshot();
    let due: Due = start
        .evals_to_schedule(now, JOBS_AT_ONCE)
        .into_iter()
        .map(|(e, sup)| (e.clone(), sup.into_iter().cloned().collect()))
        .collect();
    let mut usage = NodeUsage::of_state(&start);
    drop(start);
    let mut plans = Vec::new();
    for (eval, superseded) in due {
        let superseded: Vec<&yurt_core::v1::Evaluation> = superseded.iter().collect();
        let snapshot = state.snapshot();
        // A bug in the scheduler fails this evaluation, not the server.
        let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let outcome = schedule_with(
                &snapshot,
                &mut usage,
                gates,
                &yurt_core::state::job_key(&eval.namespace, &eval.job_id),
                &eval.id,
                now,
                &mut new_id,
            );
            plan_command(&eval, &superseded, outcome, now, &mut new_id)
        }));
        let cmd = planned.unwrap_or_else(|panic| {
            let why = yurt_types::limits::panic_text(&*panic);
            tracing::error!(eval = %eval.id, job = %eval.job_id, error = %why, "scheduler failed");
            failed_eval_command(&eval, &why, now)
        });
        plans.push((eval.id.clone(), eval.job_id.clone(), cmd));
    }
    plans
}

/// How soon a loop tries again after Raft did not take what it wrote (no leader for a moment,
/// a full log): the state did not change, so nothing else would wake it.
const RETRY: Duration = Duration::from_millis(500);

/// The longest a leader loop sleeps with nothing due: it wakes on a change or a deadline, and
/// this only bounds the sleep.
const IDLE: Duration = Duration::from_secs(3600);

/// The time until `at` (Unix ms) from `now`, at most [`IDLE`].
fn until(at: Option<i64>, now: i64) -> Duration {
    at.map_or(IDLE, |at| Duration::from_millis((at - now).max(0) as u64))
        .min(IDLE)
}

/// The leader's scheduling loop: a round whenever the state changes (a new evaluation, a
/// client report) or a delayed evaluation comes due, and again at once while evaluations
/// remain; never on a fixed poll.
pub async fn run_eval_loop(leader: Leader, mut shutdown: watch::Receiver<bool>) {
    let Leader {
        state,
        writer,
        raft,
        cluster,
    } = leader;
    let mut applied = state.subscribe();
    loop {
        // Not leader any more: the leadership task is about to stop this loop.
        let mut wait = RETRY;
        if crate::raft::is_leader(&raft) {
            let now = now_unix_ms();
            // New kinds of plans only once every server can read them.
            let gates = cluster.gates();
            let plans = {
                let state = state.clone();
                tokio::task::spawn_blocking(move || plan_round(&state, now, gates))
                    .await
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "scheduling round failed; trying again");
                        Vec::new()
                    })
            };
            let more = plans.len() == JOBS_AT_ONCE;
            let mut commits = tokio::task::JoinSet::new();
            for (eval, job, cmd) in plans {
                let writer = writer.clone();
                commits.spawn(async move {
                    let started = std::time::Instant::now();
                    let r = writer.submit(cmd).await;
                    crate::metrics::metrics().observe("yurt.plan.apply", started.elapsed());
                    (eval, job, r)
                });
            }
            let mut all_committed = true;
            while let Some(Ok((eval, job, result))) = commits.join_next().await {
                match result {
                    Ok(r) => tracing::info!(%eval, %job, index = r.index, "plan committed"),
                    Err(e) => {
                        all_committed = false;
                        tracing::warn!(%eval, error = %e, "plan not committed; will retry");
                    }
                }
            }
            if more && all_committed {
                continue;
            }
            let next = state.read(|s| s.next_delayed_eval(now));
            wait = if all_committed {
                until(next, now)
            } else {
                RETRY
            };
        }
        tokio::select! {
            _ = applied.changed() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// What one of the leader's state watchers does: the commands the state needs now (pure, from
/// `yurt_core`), and when it will need something without any new event (Unix ms).
type Watch = fn(&yurt_core::state::State, i64) -> (Vec<command::Kind>, Option<i64>);

/// Runs a state watcher on the leader: after state changes (at most every [`WATCH_COALESCE`]),
/// at its next deadline, and when the feature gates change (an upgrade finished), it commits
/// what `watch` asks for, one command at a time; `allowed` says whether every server can read
/// its commands yet.
async fn run_watcher(
    what: &'static str,
    leader: Leader,
    allowed: impl Fn(yurt_core::features::Gates) -> bool,
    watch: Watch,
    mut shutdown: watch::Receiver<bool>,
) {
    let Leader {
        state,
        writer,
        raft,
        cluster,
    } = leader;
    let mut applied = state.subscribe();
    let mut roster = cluster.roster();
    loop {
        // Not leader any more: the leadership task is about to stop this loop. Gates closed:
        // the roster's change wakes it.
        let leading = crate::raft::is_leader(&raft);
        let mut wait = if leading { IDLE } else { RETRY };
        if leading && allowed(cluster.gates()) {
            let now = now_unix_ms();
            // On a snapshot: the look reads every deployment (or draining node) without
            // holding the state lock.
            let (commands, next) = state.scan(|s| watch(s, now));
            let mut all_committed = true;
            for kind in commands {
                match writer.apply(kind).await {
                    Ok(r) => tracing::info!(index = r.index, "{what}: change committed"),
                    Err(e) => {
                        all_committed = false;
                        tracing::warn!(error = %e, "{what}: change not committed")
                    }
                }
            }
            wait = if all_committed {
                until(next.filter(|at| *at > now), now)
            } else {
                RETRY
            };
        }
        tokio::select! {
            _ = applied.changed() => {
                // Under load changes come hundreds a second, and each look reads every
                // deployment (or draining node) while holding the state: one look after a
                // short pause covers a burst.
                tokio::time::sleep(WATCH_COALESCE).await;
            }
            _ = roster.changed() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// How long a watcher lets changes gather before it looks at the state again.
const WATCH_COALESCE: Duration = Duration::from_millis(50);

/// The leader's deployment watcher: fails deployments whose allocations turned unhealthy or
/// whose progress deadline passed (reverting when asked to), and promotes canaries for
/// `auto_promote` (`yurt_core::deploy::watch`).
pub async fn run_deployment_watcher(leader: Leader, shutdown: watch::Receiver<bool>) {
    run_watcher(
        "deployment watcher",
        leader,
        |gates| gates.deployments,
        |s, now| {
            let changes = yurt_core::deploy::watch(s, now, &mut new_id)
                .into_iter()
                .map(command::Kind::DeploymentChange)
                .collect();
            (changes, yurt_core::deploy::next_deadline(s))
        },
        shutdown,
    )
    .await
}

/// The leader's drainer: moves allocations off draining nodes, metered by their groups'
/// `migrate` blocks, and ends drains (`yurt_core::drain::plan`).
pub async fn run_drainer(leader: Leader, shutdown: watch::Receiver<bool>) {
    run_watcher(
        "drainer",
        leader,
        |gates| gates.node_drain,
        |s, now| {
            let progress = yurt_core::drain::plan(s, now, &mut new_id)
                .map(command::Kind::DrainProgress)
                .into_iter()
                .collect();
            (progress, yurt_core::drain::next_deadline(s))
        },
        shutdown,
    )
    .await
}

/// The leader's garbage collector: every interval, removes what has been finished for longer
/// than its threshold (`yurt_core::gc`).
pub async fn run_gc(
    Leader {
        state,
        writer,
        raft,
        ..
    }: Leader,
    (thresholds, interval): (yurt_core::gc::Thresholds, Duration),
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        if !crate::raft::is_leader(&raft) {
            continue;
        }
        let gc = state.scan(|s| yurt_core::gc::collect(s, now_unix_ms(), thresholds));
        if yurt_core::gc::is_empty(&gc) {
            continue;
        }
        let counts = (
            gc.job_ids.len() + gc.namespaced_jobs.len(),
            gc.alloc_ids.len(),
            gc.eval_ids.len(),
            gc.node_ids.len(),
        );
        match writer
            .apply(yurt_core::internal::command::Kind::Gc(gc))
            .await
        {
            Ok(_) => tracing::info!(
                ?counts,
                "garbage collected (jobs, allocations, evaluations, nodes)"
            ),
            Err(e) => tracing::warn!(error = %e, "garbage collection not committed"),
        }
    }
}

/// Autopilot settings from the agent's configuration.
#[derive(Debug, Clone, Copy)]
pub struct AutopilotSettings {
    pub stabilization: Duration,
    pub dead_server: Duration,
}

/// The leader's autopilot loop: applies `yurt_core::autopilot::decide` to the live Raft
/// configuration, one membership change at a time. It looks when the Raft configuration or
/// the members' liveness changes, and at the time [`yurt_core::autopilot::next_look`] names.
pub async fn run_autopilot(
    leader: Leader,
    settings: AutopilotSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let cfg = yurt_core::autopilot::Config {
        stabilization_ms: settings.stabilization.as_millis() as i64,
        dead_server_ms: settings.dead_server.as_millis() as i64,
        max_trailing_logs: 256,
    };
    let mut config_changes = leader.raft.server_metrics();
    let mut roster = leader.cluster.roster();
    loop {
        // The first look comes at once: a new leader names an unnamed cluster without delay.
        let wait = autopilot_look(&leader, &cfg).await;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = config_changes.changed() => {}
            _ = roster.changed() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// How long the autopilot waits after a change it made before its next look, unless the Raft
/// configuration's change wakes it first.
const GOSSIP_SETTLE: Duration = crate::cluster::GOSSIP_INTERVAL;

/// One look of the autopilot; returns how long it may wait for the next one if nothing
/// changes.
async fn autopilot_look(
    Leader {
        state,
        writer,
        raft,
        cluster,
    }: &Leader,
    cfg: &yurt_core::autopilot::Config,
) -> Duration {
    use openraft::{BasicNode, ChangeMembers};
    use std::collections::{BTreeMap, BTreeSet};
    use yurt_core::autopilot::{decide, next_look, Action, RaftView};

    if !crate::raft::is_leader(raft) {
        // Not leader any more: the leadership task is about to stop this loop.
        return RETRY;
    }
    let m = raft.metrics().borrow().clone();
    if state.read(|s| s.cluster_id.is_empty()) {
        // The cluster's first leader names it, once: with the name a server that
        // bootstrapped alone has gone by since it started, or a new one.
        let id = match cluster.founding_id() {
            "" => uuid::Uuid::new_v4().to_string(),
            founding => founding.to_string(),
        };
        let set =
            yurt_core::internal::command::Kind::SetClusterId(yurt_core::internal::SetClusterId {
                cluster_id: id.clone(),
            });
        // Membership changes wait for the name: it is how strays are recognised.
        return match writer.apply(set).await {
            Ok(_) => {
                tracing::info!(cluster_id = %id, "named the cluster");
                Duration::ZERO
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not name the cluster; will retry");
                RETRY
            }
        };
    }
    let membership = m.membership_config.membership().clone();
    // A joint configuration is in progress: its end changes the configuration.
    if membership.get_joint_config().len() > 1 {
        return IDLE;
    }
    let view = RaftView {
        leader: m.id,
        learners: membership.learner_ids().collect(),
        addrs: membership
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect(),
        matched: crate::raft::matched_indexes(&m),
        last_log_index: m.last_log_index.unwrap_or(0),
        voters: membership.voter_ids().collect(),
    };
    let members = cluster.autopilot_members();
    let now = now_unix_ms();
    let Some(action) = decide(&members, &view, now, cfg) else {
        return until(next_look(&members, &view, now, cfg), now);
    };
    tracing::info!(?action, "autopilot");
    let result = match &action {
        Action::AddLearner { id, addr } => raft
            .add_learner(*id, BasicNode::new(addr), false)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Action::Promote { id } => raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([*id])), false)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Action::Remove { id, .. } => crate::raft::remove_member(raft, *id)
            .await
            .map(|()| cluster.removed(*id))
            .map_err(|s| s.message().to_string()),
        Action::SetAddr { id, addr } => raft
            .change_membership(
                ChangeMembers::SetNodes(BTreeMap::from([(*id, BasicNode::new(addr))])),
                false,
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    };
    match result {
        // The next change, if any, once this one shows in the Raft metrics (their change
        // wakes the loop sooner).
        Ok(()) => GOSSIP_SETTLE,
        Err(e) => {
            tracing::warn!(?action, error = %e, "autopilot change failed; will retry");
            RETRY
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_scheduler_fails_only_its_evaluation() {
        let eval = yurt_core::v1::Evaluation {
            id: "e1".into(),
            job_id: "web".into(),
            status: yurt_types::status::EVAL_PENDING.into(),
            ..Default::default()
        };
        let caught = std::panic::catch_unwind(|| -> Command { panic!("index {} out of range", 3) })
            .unwrap_err();
        let why = yurt_types::limits::panic_text(&*caught);
        assert_eq!(why, "index 3 out of range");
        let cmd = failed_eval_command(&eval, &why, 7);
        let mut state = yurt_core::state::State::default();
        state.evals.insert(eval);
        state.apply(1, &cmd).unwrap();
        let e = &state.evals["e1"];
        assert_eq!(e.status, yurt_types::status::EVAL_FAILED);
        assert_eq!(
            e.status_description,
            "scheduler error: index 3 out of range"
        );
        assert!(state.allocs.is_empty());
    }
}
