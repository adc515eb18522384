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
    let me = raft.metrics().borrow().id;
    loop {
        let leader = raft.metrics().borrow().current_leader == Some(me);
        if leader {
            let pending: Vec<yurt_core::v1::Evaluation> =
                state.read(|s| s.pending_evals().into_iter().cloned().collect());
            for eval in pending {
                let cmd = state.read(|s| {
                    let outcome = schedule(s, &eval.job_id, &eval.id, &mut new_id);
                    plan_command(&eval, outcome, now_unix_ms(), &mut new_id)
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
