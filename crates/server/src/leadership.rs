//! Leadership as one lifecycle: the leader's loops (evaluations, deployment watcher, drainer,
//! garbage collector, autopilot) run only while this server leads, and a majority confirms
//! it (check-quorum). One task
//! starts them when Raft makes this server leader, and stops and joins them (within a
//! deadline) when it stops leading or the server shuts down; a follower runs none of them.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::raft::Raft;

/// How long the loops of an ended term get to finish what they are doing.
const JOIN_DEADLINE: Duration = Duration::from_secs(5);

/// Starts the leader's loops, each stopping when the receiver it is given changes.
pub type StartLoops = Box<dyn Fn(watch::Receiver<bool>) -> Vec<JoinHandle<()>> + Send + Sync>;

/// The loops of one term: how to stop them, and their tasks.
struct Term {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Term {
    async fn end(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            if tokio::time::timeout(JOIN_DEADLINE, t).await.is_err() {
                tracing::warn!("a leader loop did not stop within {JOIN_DEADLINE:?}");
            }
        }
    }
}

/// How long a new leader waits at most, per try, for its state to apply what was committed
/// before its term.
const CATCH_UP: Duration = Duration::from_secs(2);

/// Failed confirmations in a row after which a leader counts itself cut off.
const QUORUM_TRIES: u32 = 3;

/// Check-quorum, for the server's lifetime: every `election_max` a leader confirms with a
/// majority that it still leads (a round of heartbeats, each try bounded by twice
/// `election_max`). After [`QUORUM_TRIES`] failures in a row it counts itself cut off (`lost`
/// becomes true) until a confirmation succeeds again: its leader loops stop, and writes sent to
/// it fail at once with one sentence instead of waiting for a commit that cannot come (Raft
/// already keeps it from committing anything). openraft 0.9 has no way for a leader to give up
/// its term: it stays leader in name until it hears of a newer one, which happens as soon as
/// the partition heals. A leader merely slow for a moment passes the next try.
pub async fn check_quorum(
    raft: Raft,
    election_max: Duration,
    lost: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let each = (2 * election_max).max(Duration::from_millis(100));
    let mut failed = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(election_max) => {}
            _ = shutdown.changed() => return,
        }
        if !crate::raft::is_leader(&raft) {
            failed = 0;
            lost.send_if_modified(|l| std::mem::replace(l, false));
            continue;
        }
        let confirmed = tokio::time::timeout(each, raft.get_read_log_id()).await;
        if let Ok(Ok(_)) = confirmed {
            failed = 0;
            if lost.send_if_modified(|l| std::mem::replace(l, false)) {
                tracing::info!(
                    "leader: a majority of servers confirms this server's leadership again"
                );
            }
            continue;
        }
        failed += 1;
        if failed >= QUORUM_TRIES && lost.send_if_modified(|l| !std::mem::replace(l, true)) {
            tracing::warn!(
                tries = failed,
                "leader: no majority of servers confirms this server's leadership; it stops acting as leader"
            );
        }
    }
}

/// Follows this server's Raft state until `shutdown`: the leader's loops run while it leads.
pub async fn run(
    raft: Raft,
    start: StartLoops,
    mut lost: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut metrics = raft.server_metrics();
    let mut term: Option<Term> = None;
    loop {
        // A leader cut off from the majority (check-quorum) runs no loops.
        let leading = crate::raft::leads(&metrics.borrow()) && !*lost.borrow();
        match (leading, term.is_some()) {
            (true, false) => {
                // A new leader acts on everything committed before its term: until its state
                // machine has applied up to its own first entry, a plan its predecessor
                // committed just before the election would be made again.
                let caught_up = tokio::time::timeout(CATCH_UP, raft.ensure_linearizable()).await;
                if !matches!(caught_up, Ok(Ok(_))) {
                    tracing::debug!("leader: not caught up with the log yet; loops wait");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                        _ = shutdown.changed() => break,
                    }
                }
                let (stop, stopped) = watch::channel(false);
                term = Some(Term {
                    stop,
                    tasks: start(stopped),
                });
                tracing::info!("leader loops started");
            }
            (false, true) => {
                if let Some(t) = term.take() {
                    t.end().await;
                }
                tracing::info!("leader loops stopped");
            }
            _ => {}
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { break },
            changed = lost.changed() => if changed.is_err() { break },
            _ = shutdown.changed() => break,
        }
    }
    if let Some(t) = term.take() {
        t.end().await;
        tracing::info!("leader loops stopped");
    }
}
