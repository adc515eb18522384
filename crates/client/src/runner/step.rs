//! One task's life as pure steps: from what the supervisor observed of a task (its recorded
//! exit, or that its executor is gone) and the current time, the next state of the task and
//! what the shell must do about it (start it, kill it). Nothing here reads a clock or touches
//! a process or a file: the tests drive hours of restarts and kill deadlines in microseconds.

use nix::sys::signal::Signal;
use yurt_proto::v1::{RestartPolicy, TaskEvent};
use yurt_types::status::*;

use super::LocalTask;
use crate::executor::ExitStatus;
use crate::restart::{decide, Decision};

pub(crate) use crate::driver::Seen;

/// What decides a task's next step besides its own state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules<'a> {
    /// The servers want the allocation stopped.
    pub stopping: bool,
    /// The job runs to completion (a batch task that exits 0 is done).
    pub batch: bool,
    pub restart: &'a RestartPolicy,
}

/// How long after a SIGKILL a task that still runs is sent another.
pub(crate) const KILL_AGAIN_MS: i64 = 2_000;

/// What the shell must do after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Nothing,
    /// Ready the task and start its executor; then call [`started`] or [`start_failed`].
    Start,
    /// The kill deadline passed: send SIGKILL.
    Kill,
}

/// A task event at `now` (Unix ms).
pub(crate) fn event_at(kind: &str, message: impl Into<String>, now: i64) -> TaskEvent {
    TaskEvent {
        r#type: kind.into(),
        time_unix_ms: now,
        message: message.into(),
        ..TaskEvent::default()
    }
}

/// Marks a task as ended.
pub(crate) fn finish(t: &mut LocalTask, failed: bool, now: i64) {
    t.starting = false;
    t.state.state = TASK_DEAD.into();
    t.state.failed = failed;
    t.state.finished_at_unix_ms = now;
}

/// Advances one task: a pending task whose start is due starts (unless the allocation is
/// stopping); a running task that exited restarts or ends per the `restart` policy; a lost one
/// ends; a stopping one past its kill deadline is killed.
pub(crate) fn step(t: &mut LocalTask, seen: Seen, rules: Rules, now: i64) -> Action {
    match t.state.state.as_str() {
        TASK_PENDING if !rules.stopping && t.restart_at_ms.is_some_and(|at| at <= now) => {
            t.restart_at_ms = None;
            Action::Start
        }
        TASK_RUNNING => match seen {
            Seen::Exited {
                status,
                driver_error,
            } => {
                exited(t, status, driver_error, rules, now);
                Action::Nothing
            }
            Seen::Lost => {
                finish(t, !rules.stopping, now);
                t.state.events.push(event_at(
                    "Task Lost",
                    "the task's executor exited unexpectedly",
                    now,
                ));
                Action::Nothing
            }
            Seen::Nothing if t.kill_at_ms.is_some_and(|at| at <= now) => {
                // Again later while it still runs: a SIGKILL its driver could not deliver (an
                // executor not listening yet) must not leave it running.
                t.kill_at_ms = Some(now + KILL_AGAIN_MS);
                Action::Kill
            }
            Seen::Nothing => Action::Nothing,
        },
        _ => Action::Nothing,
    }
}

fn exited(
    t: &mut LocalTask,
    status: ExitStatus,
    driver_error: Option<String>,
    rules: Rules,
    now: i64,
) {
    let code = match status.signal {
        0 => status.code,
        sig => 128 + sig,
    };
    let mut ev = event_at(
        "Terminated",
        match (status.oom_killed, status.signal) {
            (true, _) => format!("OOM Killed, Exit Code: {code}"),
            (false, 0) => format!("Exit Code: {code}"),
            (false, sig) => format!("Exit Code: {code}, Signal: {sig}"),
        },
        now,
    );
    ev.exit_code = status.code;
    ev.signal = status.signal;
    ev.oom_killed = status.oom_killed;
    t.state.events.push(ev);
    if let Some(why) = driver_error {
        t.state.events.push(event_at("Driver Failure", why, now));
    }
    if rules.stopping {
        finish(t, false, now);
        return;
    }
    if std::mem::take(&mut t.restart_requested) {
        // A user's restart: at once, and not one of the policy's attempts.
        t.kill_at_ms = None;
        t.state.state = TASK_PENDING.into();
        t.state.restarts += 1;
        t.restart_at_ms = Some(now);
        t.state
            .events
            .push(event_at("Restarting", "User requested restart", now));
        return;
    }
    match decide(
        rules.restart,
        &t.restarts_ms,
        now,
        status.success(),
        rules.batch,
    ) {
        Decision::Complete => finish(t, false, now),
        Decision::Fail { reason } => {
            finish(t, true, now);
            t.state.events.push(event_at("Not Restarting", reason, now));
        }
        Decision::Restart { at_ms, reason } => {
            t.state.state = TASK_PENDING.into();
            t.state.restarts += 1;
            t.restarts_ms.push(now);
            t.restart_at_ms = Some(at_ms);
            t.state.events.push(event_at("Restarting", reason, now));
        }
    }
}

/// The task was readied and handed to its driver to start.
pub(crate) fn starting(t: &mut LocalTask) {
    t.starting = true;
}

/// The time of the task's last event (when it was last seen to change).
pub(crate) fn event_time(t: &LocalTask) -> i64 {
    t.state.events.last().map_or(0, |e| e.time_unix_ms)
}

/// The driver started the task: it runs from `now`.
pub(crate) fn started(t: &mut LocalTask, now: i64) {
    t.starting = false;
    t.state.state = TASK_RUNNING.into();
    t.state.started_at_unix_ms = now;
    t.state
        .events
        .push(event_at("Started", "Task started by client", now));
}

/// What the driver did on the way to starting the task (pulling its image, say): events
/// that come before `Started`.
pub(crate) fn driver_events(t: &mut LocalTask, events: Vec<(String, String)>, now: i64) {
    for (kind, message) in events {
        t.state.events.push(event_at(&kind, message, now));
    }
}

/// The task could not be started: it ends, failed, saying why.
pub(crate) fn start_failed(t: &mut LocalTask, why: impl Into<String>, now: i64) {
    finish(t, true, now);
    t.state.events.push(event_at("Driver Failure", why, now));
}

/// A user asks for a running task's restart (`alloc restart`): it is sent `signal` now (the
/// returned signal) and SIGKILL at `now + kill_timeout_ms`, and starts again once it exited.
/// A task that is not running is not restarted (`None`).
pub(crate) fn request_restart(
    t: &mut LocalTask,
    kill_timeout_ms: u64,
    signal: Signal,
    now: i64,
) -> Option<Signal> {
    if t.state.state != TASK_RUNNING || t.starting {
        return None;
    }
    t.restart_requested = true;
    t.kill_at_ms = Some(now + kill_timeout_ms as i64);
    t.state
        .events
        .push(event_at("Restart Signaled", "User requested restart", now));
    Some(signal)
}

/// The servers want the task stopped: a running task is sent `signal` now (the returned
/// signal, for the shell to send) and SIGKILL at `now + kill_timeout_ms`; a pending one ends
/// without starting.
pub(crate) fn stop(
    t: &mut LocalTask,
    kill_timeout_ms: u64,
    signal: Signal,
    now: i64,
) -> Option<Signal> {
    t.restart_at_ms = None;
    match t.state.state.as_str() {
        TASK_RUNNING => {
            t.kill_at_ms = Some(now + kill_timeout_ms as i64);
            t.state
                .events
                .push(event_at("Killing", format!("Sent {signal}"), now));
            Some(signal)
        }
        TASK_PENDING => {
            finish(t, false, now);
            None
        }
        _ => None,
    }
}

/// Whether a client that has not had a heartbeat answered for `silent_ms` (`None`: not since
/// it started) stops an allocation of `group` by itself: its `disconnect.stop_on_client_after`
/// has passed. The servers delay its replacement as long.
pub(crate) fn stop_for_lost_contact(
    group: Option<&yurt_proto::v1::TaskGroup>,
    silent_ms: Option<u64>,
) -> bool {
    let after = group
        .and_then(|g| g.disconnect.as_ref())
        .map_or(0, |d| d.stop_on_client_after_ms);
    after > 0 && silent_ms.is_some_and(|s| s > after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use yurt_proto::v1::TaskState;

    const HOUR: i64 = 3_600_000;

    fn task() -> LocalTask {
        LocalTask {
            state: TaskState {
                state: TASK_PENDING.into(),
                ..TaskState::default()
            },
            exec_dir: PathBuf::from("/nonexistent"),
            executor_pid: None,
            restart_at_ms: Some(0),
            restarts_ms: vec![],
            kill_at_ms: None,
            starting: false,
            restart_requested: false,
        }
    }

    fn policy(attempts: u32, mode: &str) -> RestartPolicy {
        RestartPolicy {
            attempts,
            interval_ms: 30 * 60_000,
            delay_ms: 15_000,
            mode: mode.into(),
        }
    }

    fn exit(code: i32) -> Seen {
        Seen::Exited {
            status: ExitStatus {
                code,
                signal: 0,
                oom_killed: false,
            },
            driver_error: None,
        }
    }

    fn kinds(t: &LocalTask) -> Vec<&str> {
        t.state.events.iter().map(|e| e.r#type.as_str()).collect()
    }

    /// Runs a task that fails whenever it runs, stepping every second for `hours`, and returns
    /// the times it was started.
    fn crash_loop(restart: &RestartPolicy, hours: i64) -> (LocalTask, Vec<i64>) {
        let rules = Rules {
            stopping: false,
            batch: false,
            restart,
        };
        let mut t = task();
        let mut starts = vec![];
        let mut now = 0;
        while now < hours * HOUR {
            let seen = if t.state.state == TASK_RUNNING {
                exit(1)
            } else {
                Seen::Nothing
            };
            if step(&mut t, seen, rules, now) == Action::Start {
                started(&mut t, now);
                starts.push(now);
            }
            now += 1_000;
        }
        (t, starts)
    }

    #[test]
    fn a_crashing_task_in_fail_mode_stops_after_its_attempts() {
        let (t, starts) = crash_loop(&policy(2, "fail"), 3);
        // The first run, then two restarts 15 s after each exit (exits are seen 1 s later).
        assert_eq!(starts, vec![0, 16_000, 32_000]);
        assert_eq!(t.state.state, TASK_DEAD);
        assert!(t.state.failed);
        assert_eq!(t.state.restarts, 2);
        assert_eq!(kinds(&t).last(), Some(&"Not Restarting"));
        assert_eq!(t.state.finished_at_unix_ms, 33_000);
    }

    #[test]
    fn a_crashing_task_in_delay_mode_waits_for_its_interval_for_hours() {
        let (t, starts) = crash_loop(&policy(2, "delay"), 3);
        // As in Nomad: two restarts 15 s apart, then a wait until the 30-minute window of the
        // first one ends, then two more in the new window: never given up on.
        assert_eq!(
            starts[..9],
            [0, 16_000, 32_000, 1_801_000, 1_817_000, 1_833_000, 3_602_000, 3_618_000, 3_634_000]
        );
        assert_ne!(t.state.state, TASK_DEAD);
        assert!(t
            .state
            .events
            .iter()
            .any(|e| e.message == "Exceeded allowed attempts, applying a delay"));
    }

    #[test]
    fn a_batch_task_that_succeeds_completes_and_a_service_one_restarts() {
        let restart = policy(1, "fail");
        for (batch, want) in [(true, TASK_DEAD), (false, TASK_PENDING)] {
            let rules = Rules {
                stopping: false,
                batch,
                restart: &restart,
            };
            let mut t = task();
            assert_eq!(step(&mut t, Seen::Nothing, rules, 5), Action::Start);
            started(&mut t, 5);
            assert_eq!(step(&mut t, exit(0), rules, 10), Action::Nothing);
            assert_eq!(t.state.state, want);
            assert!(!t.state.failed);
            assert_eq!(
                t.state.events[1].time_unix_ms, 10,
                "events carry the step's time"
            );
        }
    }

    #[test]
    fn a_pending_task_starts_only_when_due_and_never_while_stopping() {
        let restart = policy(1, "fail");
        let mut rules = Rules {
            stopping: false,
            batch: false,
            restart: &restart,
        };
        let mut t = task();
        t.restart_at_ms = Some(HOUR);
        assert_eq!(
            step(&mut t, Seen::Nothing, rules, HOUR - 1),
            Action::Nothing
        );
        rules.stopping = true;
        assert_eq!(step(&mut t, Seen::Nothing, rules, HOUR), Action::Nothing);
        rules.stopping = false;
        assert_eq!(step(&mut t, Seen::Nothing, rules, HOUR), Action::Start);
        assert_eq!(t.restart_at_ms, None, "a start is asked for once");
        assert_eq!(
            step(&mut t, Seen::Nothing, rules, HOUR + 1),
            Action::Nothing
        );
    }

    #[test]
    fn a_restart_a_user_asked_for_starts_at_once_and_spends_no_attempt() {
        let no_restarts = policy(0, "fail");
        let mut t = task();
        t.state.state = TASK_RUNNING.into();
        assert_eq!(
            request_restart(&mut t, 1000, Signal::SIGINT, 10),
            Some(Signal::SIGINT)
        );
        assert_eq!(t.kill_at_ms, Some(1010));
        let rules = Rules {
            stopping: false,
            batch: false,
            restart: &no_restarts,
        };
        // It exits from the signal: pending again, due now, no attempt used, no kill pending.
        assert_eq!(step(&mut t, exit(130), rules, 20), Action::Nothing);
        assert_eq!(t.state.state, TASK_PENDING);
        assert_eq!((t.restart_at_ms, t.kill_at_ms), (Some(20), None));
        assert!(t.restarts_ms.is_empty());
        assert!(!t.restart_requested);
        assert_eq!(step(&mut t, Seen::Nothing, rules, 20), Action::Start);
        assert_eq!(
            kinds(&t)[kinds(&t).len() - 3..],
            ["Restart Signaled", "Terminated", "Restarting"]
        );
        // A task that is not running is not restarted; one that exits on its own later still
        // follows its policy (here: no attempts, so it fails).
        let mut dead = task();
        dead.state.state = TASK_DEAD.into();
        assert_eq!(request_restart(&mut dead, 1000, Signal::SIGINT, 10), None);
        started(&mut t, 30);
        step(&mut t, exit(1), rules, 40);
        assert_eq!(t.state.state, TASK_DEAD);
        assert!(t.state.failed);
    }

    #[test]
    fn a_stopped_task_is_signalled_then_killed_at_its_deadline() {
        let restart = policy(3, "fail");
        let rules = Rules {
            stopping: true,
            batch: false,
            restart: &restart,
        };
        let mut t = task();
        started(&mut t, 0);
        assert_eq!(
            stop(&mut t, 5_000, Signal::SIGINT, 1_000),
            Some(Signal::SIGINT)
        );
        assert_eq!(kinds(&t).last(), Some(&"Killing"));
        assert_eq!(step(&mut t, Seen::Nothing, rules, 5_999), Action::Nothing);
        assert_eq!(step(&mut t, Seen::Nothing, rules, 6_000), Action::Kill);
        assert_eq!(
            step(&mut t, Seen::Nothing, rules, 7_000),
            Action::Nothing,
            "SIGKILL is sent once, and again only if the task still runs later"
        );
        assert_eq!(step(&mut t, Seen::Nothing, rules, 8_000), Action::Kill);
        // Its exit while stopping ends it, not failed, whatever its code: no restart.
        assert_eq!(step(&mut t, exit(137), rules, 7_500), Action::Nothing);
        assert_eq!(t.state.state, TASK_DEAD);
        assert!(!t.state.failed);
        assert_eq!(t.state.restarts, 0);
        // A pending task of a stopped allocation ends without starting.
        let mut p = task();
        assert_eq!(stop(&mut p, 5_000, Signal::SIGTERM, 1), None);
        assert_eq!(p.state.state, TASK_DEAD);
        assert_eq!(step(&mut p, Seen::Nothing, rules, 2), Action::Nothing);
    }

    #[test]
    fn a_lost_task_fails_unless_it_was_being_stopped_and_a_driver_error_is_kept() {
        let restart = policy(3, "fail");
        for stopping in [false, true] {
            let rules = Rules {
                stopping,
                batch: false,
                restart: &restart,
            };
            let mut t = task();
            started(&mut t, 0);
            step(&mut t, Seen::Lost, rules, 9);
            assert_eq!(t.state.state, TASK_DEAD);
            assert_eq!(t.state.failed, !stopping);
            assert_eq!(kinds(&t).last(), Some(&"Task Lost"));
        }
        let rules = Rules {
            stopping: false,
            batch: false,
            restart: &restart,
        };
        let mut t = task();
        started(&mut t, 0);
        let seen = Seen::Exited {
            status: ExitStatus {
                code: 0,
                signal: 9,
                oom_killed: false,
            },
            driver_error: Some("cannot exec /bin/nope".into()),
        };
        step(&mut t, seen, rules, 3);
        assert_eq!(
            kinds(&t),
            vec!["Started", "Terminated", "Driver Failure", "Restarting"]
        );
        assert_eq!(t.state.events[1].message, "Exit Code: 137, Signal: 9");
        let mut f = task();
        start_failed(&mut f, "no such file", 4);
        assert!(f.state.failed && f.state.state == TASK_DEAD);
    }

    #[test]
    fn a_starting_task_stays_pending_until_its_driver_says_and_is_not_started_twice() {
        let restart = policy(2, "fail");
        let rules = Rules {
            stopping: false,
            batch: false,
            restart: &restart,
        };
        let mut t = task();
        assert_eq!(step(&mut t, Seen::Nothing, rules, 0), Action::Start);
        starting(&mut t);
        // An image pull takes long: passes meanwhile leave it alone.
        for now in [1_000, 60_000, HOUR] {
            assert_eq!(step(&mut t, Seen::Nothing, rules, now), Action::Nothing);
            assert_eq!(t.state.state, TASK_PENDING);
        }
        driver_events(
            &mut t,
            vec![("Downloading Image".into(), "Pulled image x".into())],
            HOUR,
        );
        started(&mut t, HOUR);
        assert_eq!(kinds(&t), ["Downloading Image", "Started"]);
        assert_eq!(t.state.started_at_unix_ms, HOUR);
        assert!(!t.starting);
        // Stopped while starting: it ends without a signal, and is no longer starting.
        let mut u = task();
        step(&mut u, Seen::Nothing, rules, 0);
        starting(&mut u);
        assert_eq!(stop(&mut u, 5_000, Signal::SIGTERM, 10), None);
        assert_eq!(u.state.state, TASK_DEAD);
        assert!(!u.starting);
    }

    #[test]
    fn a_client_stops_an_allocation_itself_only_past_stop_on_client_after() {
        let mut g = yurt_proto::v1::TaskGroup::default();
        assert!(!stop_for_lost_contact(Some(&g), Some(HOUR as u64)));
        g.disconnect = Some(yurt_proto::v1::Disconnect {
            stop_on_client_after_ms: 30_000,
            ..Default::default()
        });
        assert!(
            !stop_for_lost_contact(Some(&g), None),
            "never heard from a server"
        );
        assert!(!stop_for_lost_contact(Some(&g), Some(30_000)));
        assert!(stop_for_lost_contact(Some(&g), Some(30_001)));
        assert!(!stop_for_lost_contact(None, Some(HOUR as u64)));
    }
}
