//! Leadership as one lifecycle: the leader's loops (evaluations, deployment watcher, drainer,
//! garbage collector, autopilot) run only while this server leads. One task starts them when
//! Raft makes this server leader, and stops and joins them (within a deadline) when it stops
//! leading or the server shuts down; a follower runs none of them.

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

/// Follows this server's Raft state until `shutdown`: the leader's loops run while it leads.
pub async fn run(raft: Raft, start: StartLoops, mut shutdown: watch::Receiver<bool>) {
    let mut metrics = raft.server_metrics();
    let mut term: Option<Term> = None;
    loop {
        let leading = crate::raft::leads(&metrics.borrow());
        match (leading, term.is_some()) {
            (true, false) => {
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
            _ = shutdown.changed() => break,
        }
    }
    if let Some(t) = term.take() {
        t.end().await;
        tracing::info!("leader loops stopped");
    }
}
