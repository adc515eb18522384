//! Request work that may take long (parsing a large job file, planning a job): it runs off the
//! async runtime's worker threads, so heartbeats and Raft are never starved by it, at most
//! [`AT_ONCE`] requests at a time, and a request that waits too long for its turn is refused
//! with one sentence instead of queueing without end.

use std::time::Duration;

use tokio::sync::Semaphore;
use tonic::Status;

/// How many such requests run at once: one core of two stays free for everything else.
pub const AT_ONCE: usize = 1;
/// How long a request waits for its turn.
const QUEUE_WAIT: Duration = Duration::from_secs(30);

static TURNS: Semaphore = Semaphore::const_new(AT_ONCE);

/// Runs `work` on a blocking thread once it is this request's turn.
pub async fn run<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Status> {
    let turn = tokio::time::timeout(QUEUE_WAIT, TURNS.acquire())
        .await
        .map_err(|_| {
            Status::resource_exhausted(format!(
                "the server is busy {what} for other requests; try again later"
            ))
        })?
        .map_err(|_| Status::unavailable("the server is shutting down"))?;
    // The work holds the turn, not the request: a caller that gives up (its client went away)
    // does not free the turn while the work still runs.
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        work()
    })
    .await
    .map_err(|e| Status::internal(format!("{what} failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_that_gives_up_keeps_its_turn_until_its_work_ends() {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let first = tokio::spawn(run("planning", move || {
            let _ = released.recv();
            1
        }));
        // Let the first request start its work, then give it up.
        tokio::time::sleep(Duration::from_millis(50)).await;
        first.abort();
        let _ = first.await;
        // Its work still runs: a second request waits for the turn.
        let second = tokio::spawn(run("planning", || 2));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!second.is_finished(), "two at once past the bound");
        release.send(()).unwrap();
        assert_eq!(second.await.unwrap().unwrap(), 2);
    }
}
