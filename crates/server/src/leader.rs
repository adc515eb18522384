//! The leader's scheduling loop: take each pending evaluation, run the pure scheduler on the
//! current state, and commit the resulting plan through Raft.
//!
//! One loop processes evaluations one at a time, so a plan is always computed against the
//! latest committed state and needs no re-validation (Nomad's plan applier is the later,
//! concurrent version of this; see docs/ARCHITECTURE.md).

use std::time::Duration;

use tokio::sync::watch;
use yurt_core::sched::{plan_command, schedule};

use crate::raft::state_machine::StateHandle;
use crate::raft::Raft;
use crate::write::{now_unix_ms, Writer};

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub async fn run_eval_loop(
    state: StateHandle,
    writer: Writer,
    raft: Raft,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut applied = state.subscribe();
    loop {
        let leader = crate::raft::is_leader(&raft);
        if leader && state.read(|s| s.cluster_id.is_empty()) {
            let id = uuid::Uuid::new_v4().to_string();
            let set = yurt_core::internal::command::Kind::SetClusterId(
                yurt_core::internal::SetClusterId {
                    cluster_id: id.clone(),
                },
            );
            match writer.apply(set).await {
                Ok(_) => tracing::info!(cluster_id = %id, "named the cluster"),
                Err(e) => tracing::warn!(error = %e, "could not name the cluster; will retry"),
            }
        }
        if leader {
            let now = now_unix_ms();
            let pending: Vec<yurt_core::v1::Evaluation> =
                state.read(|s| s.pending_evals(now).into_iter().cloned().collect());
            for eval in pending {
                let cmd = state.read(|s| {
                    let outcome = schedule(s, &eval.job_id, &eval.id, now, &mut new_id);
                    plan_command(&eval, outcome, now, &mut new_id)
                });
                match writer.submit(cmd).await {
                    Ok(r) => {
                        tracing::info!(eval = %eval.id, job = %eval.job_id, index = r.index, "evaluation complete")
                    }
                    Err(e) => {
                        tracing::warn!(eval = %eval.id, error = %e, "plan not committed; will retry");
                        break;
                    }
                }
            }
        }
        tokio::select! {
            _ = applied.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
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
/// configuration, one membership change at a time.
pub async fn run_autopilot(
    cluster: crate::cluster::Cluster,
    raft: Raft,
    settings: AutopilotSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    use openraft::{BasicNode, ChangeMembers, ServerState};
    use std::collections::{BTreeMap, BTreeSet};
    use yurt_core::autopilot::{decide, Action, Config, RaftView};

    let cfg = Config {
        stabilization_ms: settings.stabilization.as_millis() as i64,
        dead_server_ms: settings.dead_server.as_millis() as i64,
        max_trailing_logs: 256,
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => return,
        }
        let m = raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            continue;
        }
        let membership = m.membership_config.membership().clone();
        // A joint configuration is in progress: let it finish.
        if membership.get_joint_config().len() > 1 {
            continue;
        }
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let view = RaftView {
            leader: m.id,
            learners: membership.learner_ids().collect(),
            addrs: membership
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect(),
            matched: m
                .replication
                .as_ref()
                .map(|r| {
                    r.iter()
                        .map(|(id, l)| (*id, l.map_or(0, |l| l.index)))
                        .collect()
                })
                .unwrap_or_default(),
            last_log_index: m.last_log_index.unwrap_or(0),
            voters: voters.clone(),
        };
        let Some(action) = decide(&cluster.autopilot_members(), &view, now_unix_ms(), &cfg) else {
            continue;
        };
        tracing::info!(?action, "autopilot");
        let result = match &action {
            Action::AddLearner { id, addr } => raft
                .add_learner(*id, BasicNode::new(addr), false)
                .await
                .map(|_| ()),
            Action::Promote { id } => raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([*id])), false)
                .await
                .map(|_| ()),
            Action::Remove { id, .. } => {
                let change = if voters.contains(id) {
                    ChangeMembers::RemoveVoters(BTreeSet::from([*id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([*id]))
                };
                raft.change_membership(change, false).await.map(|_| ())
            }
            Action::SetAddr { id, addr } => raft
                .change_membership(
                    ChangeMembers::SetNodes(BTreeMap::from([(*id, BasicNode::new(addr))])),
                    false,
                )
                .await
                .map(|_| ()),
        };
        if let Err(e) = result {
            tracing::warn!(?action, error = %e, "autopilot change failed; will retry");
        }
    }
}
