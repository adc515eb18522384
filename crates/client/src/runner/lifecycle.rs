//! Tasks signalled and restarted on a user's request (`alloc signal`, `alloc restart`): the
//! running tasks of one allocation, or the one named. The step is [`super::step`]'s; the
//! change is persisted and reported with the next pass of the supervisor.

use nix::sys::signal::Signal;
use tonic::Status;
use yurt_types::status::TASK_RUNNING;

use super::group_of;
use super::{handle, now_ms, step};
use crate::Client;

/// Nomad's names for signals (`SIGHUP`, or `HUP`).
pub(crate) fn parse_signal(name: &str) -> Result<Signal, Status> {
    let upper = name.trim().to_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse()
        .map_err(|_| Status::invalid_argument(format!("invalid signal: {name:?}")))
}

impl Client {
    /// The running tasks a request names (all of them when it names none).
    fn running_tasks(local: &crate::LocalAlloc, task: &str) -> Result<Vec<String>, Status> {
        if !task.is_empty() {
            let t = local.tasks.get(task).ok_or_else(|| {
                Status::not_found(format!(
                    "task {task:?} is not in allocation {}",
                    local.alloc.id
                ))
            })?;
            if t.state.state != TASK_RUNNING || t.starting {
                return Err(Status::failed_precondition(format!(
                    "task {task:?} is not running"
                )));
            }
            return Ok(vec![task.to_string()]);
        }
        let running: Vec<String> = local
            .tasks
            .iter()
            .filter(|(_, t)| t.state.state == TASK_RUNNING && !t.starting)
            .map(|(name, _)| name.clone())
            .collect();
        if running.is_empty() {
            return Err(Status::failed_precondition(format!(
                "allocation {} has no running task",
                local.alloc.id
            )));
        }
        Ok(running)
    }

    /// Sends `signal` to the allocation's running tasks (or to `task`); the tasks signalled.
    pub(crate) fn signal_tasks(
        &self,
        alloc_id: &str,
        task: &str,
        signal: &str,
    ) -> Result<Vec<String>, Status> {
        let sig = parse_signal(signal)?;
        let now = now_ms();
        let mut allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
        let local = allocs.get_mut(alloc_id).ok_or_else(|| {
            Status::not_found(format!("allocation {alloc_id:?} is not on this client"))
        })?;
        let names = Self::running_tasks(local, task)?;
        for name in &names {
            let driver = self.driver_of(local, name);
            let t = local.tasks.get_mut(name).expect("a task just listed");
            driver
                .signal(handle(t), sig)
                .map_err(|e| Status::internal(format!("cannot signal task {name:?}: {e}")))?;
            t.state.events.push(step::event_at(
                "Signaling",
                format!("Task being sent signal {sig}"),
                now,
            ));
        }
        local.dirty = true;
        self.persist(local);
        drop(allocs);
        self.flush_state();
        Ok(names)
    }

    /// Restarts the allocation's running tasks (or `task`) in place: each is stopped with its
    /// `kill_signal` (SIGKILL after its `kill_timeout`) and started again once it exited.
    pub(crate) fn restart_tasks(&self, alloc_id: &str, task: &str) -> Result<Vec<String>, Status> {
        let now = now_ms();
        let mut allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
        let local = allocs.get_mut(alloc_id).ok_or_else(|| {
            Status::not_found(format!("allocation {alloc_id:?} is not on this client"))
        })?;
        if local.stopping {
            return Err(Status::failed_precondition(format!(
                "allocation {alloc_id} is being stopped"
            )));
        }
        let names = Self::running_tasks(local, task)?;
        let specs = group_of(&local.alloc)
            .map(|g| g.tasks.clone())
            .unwrap_or_default();
        for name in &names {
            let (timeout, signal) =
                specs
                    .iter()
                    .find(|s| &s.name == name)
                    .map_or((5_000, Signal::SIGTERM), |s| {
                        (
                            s.kill_timeout_ms,
                            s.kill_signal.parse().unwrap_or(Signal::SIGTERM),
                        )
                    });
            let driver = self.driver_of(local, name);
            let t = local.tasks.get_mut(name).expect("a task just listed");
            if let Some(sig) = step::request_restart(t, timeout, signal, now) {
                driver.stop(handle(t), sig);
            }
        }
        local.dirty = true;
        self.persist(local);
        drop(allocs);
        self.flush_state();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_nomads_names() {
        assert_eq!(parse_signal("SIGHUP").unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal("usr1").unwrap(), Signal::SIGUSR1);
        assert_eq!(
            parse_signal("SIGFOO").unwrap_err().message(),
            "invalid signal: \"SIGFOO\""
        );
    }
}
