//! Watching a docker task: its output copied into the allocation's log files (resumed after a
//! client or daemon restart from the last line copied), its end recorded in its handle dir
//! (exit code, OOM kill) and its container removed; or, when the container disappears
//! without an end, `lost`. A daemon that does not answer is waited for: the container is
//! left alone. Also `alloc exec` in a container.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;

use super::{container_id, not_found, reason, record_exit, record_lost, Inner};
use crate::driver::ExecOutput;
use crate::executor::{self, ExitStatus};
use crate::logfiles::Writer;

/// Where the copy of a task's output stopped: the Docker timestamps of the last stdout line
/// and of the last stderr line copied (one line each; a file of one line, from before, is both).
const SINCE_FILE: &str = "logs.since";

/// A Docker log time: seconds and nanoseconds.
type Stamp = (i64, u32);

/// The time of the last line copied of each stream. Docker copies the two streams apart, so
/// their lines do not come in the order of their times: each stream resumes after its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Since {
    out: Option<Stamp>,
    err: Option<Stamp>,
}

impl Since {
    fn of(&mut self, to_err: bool) -> &mut Option<Stamp> {
        if to_err {
            &mut self.err
        } else {
            &mut self.out
        }
    }

    /// What to ask Docker for (whole seconds): the earlier stream's time, or everything
    /// while a stream has copied nothing yet.
    fn request(&self) -> i32 {
        match (self.out, self.err) {
            (Some(o), Some(e)) => o.min(e).0 as i32,
            _ => 0,
        }
    }
}
/// The most output an `alloc exec` answer carries.
const EXEC_OUTPUT_LIMIT: usize = 1 << 20;

/// A Docker log timestamp (`2026-12-06T21:20:41.505093032Z`) as seconds and nanoseconds.
fn parse_timestamp(ts: &str) -> Option<(i64, u32)> {
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp(), t.nanosecond()))
}

/// A line of `docker logs -t` split into its time and its text.
fn split_line(message: &[u8]) -> Option<((i64, u32), &[u8])> {
    let space = message.iter().position(|b| *b == b' ')?;
    let ts = std::str::from_utf8(&message[..space]).ok()?;
    Some((parse_timestamp(ts)?, &message[space + 1..]))
}

fn read_since(dir: &Path) -> Since {
    let Ok(text) = std::fs::read_to_string(dir.join(SINCE_FILE)) else {
        return Since::default();
    };
    let stamp = |line: &str| -> Option<Stamp> {
        let (s, n) = line.trim().split_once('.')?;
        Some((s.parse().ok()?, n.parse().ok()?))
    };
    let mut lines = text.lines();
    let out = lines.next().and_then(stamp);
    let err = match lines.next() {
        Some(line) => stamp(line),
        None => out,
    };
    Since { out, err }
}

/// Waits until the task's container ends, then records how; resolves once it is recorded (or
/// the container is gone). Runs until then, across daemon restarts.
pub(crate) async fn watch(inner: Arc<Inner>, dir: PathBuf) {
    if executor::read_exit(&dir).is_some() || dir.join(super::LOST_FILE).exists() {
        return;
    }
    let Some(id) = container_id(&dir) else {
        // Readied but never made (the client stopped in between): nothing runs.
        record_lost(&dir);
        return;
    };
    let logs = tokio::spawn(follow_logs(inner.clone(), dir.clone(), id.clone()));
    let mut backoff = Duration::from_millis(100);
    loop {
        let c = match inner.client().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        match c.wait_container(&id, None).next().await {
            Some(Ok(_)) | Some(Err(bollard::errors::Error::DockerContainerWaitError { .. })) => {
                break
            }
            Some(Err(e)) if not_found(&e) => {
                logs.abort();
                record_lost(&dir);
                return;
            }
            _ => {
                inner.forget().await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    let state = match inner.client().await {
        Ok(c) => c
            .inspect_container(&id, None)
            .await
            .ok()
            .and_then(|i| i.state),
        Err(_) => None,
    };
    let Some(state) = state else {
        logs.abort();
        record_lost(&dir);
        return;
    };
    // The copy of the output ends with the container's; it is given a moment to finish.
    let _ = tokio::time::timeout(Duration::from_secs(5), logs).await;
    record_exit(
        &dir,
        &ExitStatus {
            code: state.exit_code.unwrap_or(0) as i32,
            signal: 0,
            oom_killed: state.oom_killed.unwrap_or(false),
        },
    );
    if let Err(e) = inner.remove(&id).await {
        tracing::warn!(container = %id, error = %e, "cannot remove the ended task's container");
    }
    if let Ok(p) = super::read_plan(&dir) {
        inner.image_unused(p.image);
    }
}

/// Copies the container's output into the task's log files until the container ends,
/// resuming after the last line copied when the stream breaks (a daemon restart).
async fn follow_logs(inner: Arc<Inner>, dir: PathBuf, id: String) {
    let Ok(p) = super::read_plan(&dir) else {
        return;
    };
    let (Ok(mut out), Ok(mut err)) = (Writer::open(p.stdout), Writer::open(p.stderr)) else {
        tracing::warn!(container = %id, "cannot open the task's log files");
        return;
    };
    let mut since = read_since(&dir);
    let mut saved = since;
    let mut last_save = tokio::time::Instant::now();
    loop {
        let Ok(c) = inner.client().await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            timestamps: true,
            since: since.request(),
            ..Default::default()
        };
        let mut stream = c.logs(&id, Some(options));
        while let Some(item) = stream.next().await {
            let Ok(item) = item else { break };
            let (message, to_err) = match &item {
                LogOutput::StdOut { message } | LogOutput::Console { message } => (message, false),
                LogOutput::StdErr { message } => (message, true),
                LogOutput::StdIn { .. } => continue,
            };
            let Some((at, text)) = split_line(message) else {
                continue;
            };
            let last = since.of(to_err);
            if last.is_some_and(|s| at <= s) {
                continue;
            }
            *last = Some(at);
            let w = if to_err { &mut err } else { &mut out };
            if let Err(e) = w.write_all(text) {
                tracing::warn!(container = %id, error = %e, "cannot write the task's logs");
            }
            if last_save.elapsed() >= Duration::from_secs(1) {
                save_since(&dir, since);
                saved = since;
                last_save = tokio::time::Instant::now();
            }
        }
        if since != saved {
            save_since(&dir, since);
            saved = since;
        }
        // The stream ends when the container does, or when the daemon goes away.
        let running = match c.inspect_container(&id, None).await {
            Ok(i) => i.state.and_then(|s| s.running).unwrap_or(false),
            Err(e) if not_found(&e) => false,
            Err(_) => true,
        };
        if !running {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn save_since(dir: &Path, since: Since) {
    let line = |stamp: Option<Stamp>| stamp.map_or("-".to_string(), |(s, n)| format!("{s}.{n}"));
    let text = format!("{}\n{}\n", line(since.out), line(since.err));
    let _ = super::write_atomic(&dir.join(SINCE_FILE), text.as_bytes());
}

/// Runs a command in a running container (`alloc exec`), its output bounded, killed when
/// `timeout` passes (Docker has no call to kill an exec: its process, which Docker names by
/// its host PID, is killed here).
pub(crate) async fn exec(
    inner: &Inner,
    id: &str,
    command: &[String],
    timeout: Duration,
) -> Result<ExecOutput, String> {
    let c = inner.client().await?;
    let created = c
        .create_exec(
            id,
            CreateExecOptions {
                cmd: Some(command.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| reason(&e))?;
    let mut out = ExecOutput::default();
    let run = async {
        if let StartExecResults::Attached { mut output, .. } = c
            .start_exec(&created.id, None)
            .await
            .map_err(|e| reason(&e))?
        {
            while let Some(item) = output.next().await {
                let (buf, bytes) = match item.map_err(|e| reason(&e))? {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        (&mut out.stdout, message)
                    }
                    LogOutput::StdErr { message } => (&mut out.stderr, message),
                    LogOutput::StdIn { .. } => continue,
                };
                let room = EXEC_OUTPUT_LIMIT.saturating_sub(buf.len());
                if bytes.len() > room {
                    out.truncated = true;
                }
                buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
        }
        Ok::<(), String>(())
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r?,
        Err(_) => {
            let pid = c.inspect_exec(&created.id).await.ok().and_then(|i| i.pid);
            if let Some(pid) = pid.filter(|p| *p > 0) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Err(format!(
                "the command did not finish within {}",
                yurt_types::duration::format(timeout)
            ));
        }
    }
    let done = c.inspect_exec(&created.id).await.map_err(|e| reason(&e))?;
    out.exit_code = done.exit_code.unwrap_or(0) as i32;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_carry_their_time_and_resume_after_it() {
        let ((s, n), text) = split_line(b"2026-12-06T21:20:41.505093032Z hello world\n").unwrap();
        assert_eq!(text, b"hello world\n");
        assert_eq!(n, 505_093_032);
        let ((s2, n2), _) = split_line(b"2026-12-06T21:20:41.5Z x\n").unwrap();
        assert_eq!(s, s2);
        assert!(
            (s2, n2) < (s, n),
            "trailing zeros trimmed by Docker compare as numbers"
        );
        assert!(split_line(b"no timestamp here").is_none());
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_since(dir.path()), Since::default());
        let both = Since {
            out: Some((s, n)),
            err: Some((s2, n2)),
        };
        save_since(dir.path(), both);
        assert_eq!(read_since(dir.path()), both);
        assert_eq!(both.request(), s as i32);
        let half = Since {
            out: Some((s, n)),
            err: None,
        };
        save_since(dir.path(), half);
        assert_eq!(read_since(dir.path()), half);
        assert_eq!(half.request(), 0, "stderr has copied nothing yet");
        // A file of one line (from before) stands for both streams.
        std::fs::write(dir.path().join(SINCE_FILE), format!("{s}.{n}\n")).unwrap();
        assert_eq!(
            read_since(dir.path()),
            Since {
                out: Some((s, n)),
                err: Some((s, n))
            }
        );
    }

    #[test]
    fn a_stream_s_line_older_than_the_other_stream_s_last_is_still_copied() {
        let mut since = Since::default();
        *since.of(false) = Some((10, 5));
        // stderr's first line, a moment older than stdout's last: not yet seen on its stream.
        let last = since.of(true);
        assert!(!last.is_some_and(|s| (10, 1) <= s));
        *last = Some((10, 1));
        assert_eq!(since.request(), 10);
    }
}
