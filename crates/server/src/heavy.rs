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
    let out = tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("{what} failed: {e}")))?;
    drop(turn);
    Ok(out)
}
