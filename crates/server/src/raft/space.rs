//! Room on the file system of a server's data dir. sled, once one of its writes fails for want
//! of space, fails every later one until the process restarts, and openraft ends a server's
//! Raft at the first storage error: a full disk would leave a server up but dead. So the log
//! writes nothing while less than [`RESERVE`] is free: it waits for room (a follower lags, a
//! leader stops answering and is replaced), logging why once, and carries on when space is
//! freed; and a write sent to a leader in that state is refused at once in one sentence that
//! names the data dir.

use std::path::Path;
use std::time::Duration;

/// Free space under which nothing is written.
pub const RESERVE: u64 = 8 << 20;

/// How often a wait for room looks again.
const LOOK: Duration = Duration::from_millis(250);

/// Bytes free to an unprivileged writer on the file system of `path` (`None`: cannot tell).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    Some((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
}

/// Whether the file system of `path` has less than [`RESERVE`] free.
pub fn low(path: &Path) -> bool {
    short(path, 0)
}

/// Whether the file system of `path` has less than [`RESERVE`] free beside `bytes`.
fn short(path: &Path, bytes: u64) -> bool {
    free_bytes(path).is_some_and(|free| free < RESERVE.saturating_add(bytes))
}

/// Whether an I/O error is the file system's `no space left on device`.
pub fn is_full(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::ENOSPC)
}

/// The sentence refusing a write while the data dir's file system is nearly full.
pub fn refusal(data_dir: &Path) -> String {
    format!(
        "no space left on device for the data dir {} (less than {} MiB free): the write was not applied; free some space",
        data_dir.display(),
        RESERVE >> 20
    )
}

/// Waits until the file system of `path` has room for `bytes` beside the reserve (0 for the
/// log's small writes; a snapshot is written whole beside the one it replaces), saying once
/// that `what` (the Raft log, the snapshot) waits.
pub async fn wait_for_room(path: &Path, bytes: u64, what: &str) {
    if !short(path, bytes) {
        return;
    }
    tracing::error!(
        dir = %path.display(),
        bytes,
        "no space left on device for {what}: it writes nothing until space is freed"
    );
    while short(path, bytes) {
        tokio::time::sleep(LOOK).await;
    }
    tracing::info!(dir = %path.display(), "space freed: {what} carries on");
}
