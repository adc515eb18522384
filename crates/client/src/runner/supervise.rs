//! Supervision: the pass that observes each task, advances it by the pure [`step`], does what
//! the step asks (start, kill), reports what changed to the servers, stops what the servers
//! want stopped, and forgets old terminal allocations.

use std::sync::Arc;

use super::step::{self, Action, Rules};
use super::*;
use crate::driver::{Driver, Handle, Seen};

/// How long the supervisor waits after a task ends for other changes to report with it.
pub(crate) const COALESCE: Duration = Duration::from_millis(5);

/// An allocation's client status from its tasks' states: failed if all ended and one failed,
/// complete if all ended, running if one runs, else pending.
pub(crate) fn alloc_status<'a>(
    mut states: impl Iterator<Item = &'a TaskState> + Clone,
) -> (&'static str, &'static str) {
    let all_dead = states.clone().all(|s| s.state == TASK_DEAD);
    if all_dead && states.clone().any(|s| s.failed) {
        (ALLOC_FAILED, "Failed tasks")
    } else if all_dead {
        (ALLOC_COMPLETE, "All tasks have completed")
    } else if states.any(|s| s.state == TASK_RUNNING) {
        (ALLOC_RUNNING, "Tasks are running")
    } else {
        (ALLOC_PENDING, "No tasks have started")
    }
}

impl Client {
    /// Runs the supervisor pass when a task ends (its executor answers the `wait` request), a
    /// few milliseconds later so that changes close together go out in one report, and at
    /// least every `tick` for restart and kill deadlines.
    pub(crate) async fn supervise_loop(self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        // Tasks re-attached after a restart are watched like new ones.
        let running: Vec<(Arc<dyn Driver>, PathBuf, Option<i32>)> = {
            let allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
            allocs
                .values()
                .flat_map(|a| {
                    a.tasks
                        .iter()
                        .filter(|(_, t)| t.state.state == TASK_RUNNING)
                        .map(|(name, t)| {
                            (self.driver_of(a, name), t.exec_dir.clone(), t.executor_pid)
                        })
                })
                .collect()
        };
        for (driver, dir, pid) in running {
            self.watch_exit(&driver, &dir, pid);
        }
        let mut last_gc = tokio::time::Instant::now();
        loop {
            self.tick().await;
            if last_gc.elapsed() >= self.inner.config.gc_interval {
                last_gc = tokio::time::Instant::now();
                self.collect_garbage();
            }
            tokio::select! {
                _ = tokio::time::sleep(self.inner.config.tick) => {}
                _ = self.inner.wake.notified() => {
                    tokio::time::sleep(COALESCE).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Forgets the terminal allocations [`crate::gc::victims`] names: their saved state, their
    /// health checks and their alloc dirs.
    pub(crate) fn collect_garbage(&self) {
        let gone = {
            let allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
            crate::gc::victims(&allocs, self.inner.config.gc_max_allocs)
        };
        self.forget(gone);
    }

    /// Forgets a terminal allocation now (`/v1/client/allocation/:id/gc`), or all of them
    /// (`/v1/client/gc`); the allocations forgotten.
    pub(crate) fn gc_now(&self, alloc_id: &str) -> Result<Vec<String>, tonic::Status> {
        let gone = {
            let allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
            if alloc_id.is_empty() {
                crate::gc::victims(&allocs, 0)
            } else {
                let a = allocs.get(alloc_id).ok_or_else(|| {
                    tonic::Status::not_found(format!(
                        "allocation {alloc_id:?} is not on this client"
                    ))
                })?;
                if !crate::gc::collectable(a) {
                    return Err(tonic::Status::failed_precondition(format!(
                        "allocation {alloc_id} is not terminal: stop it first"
                    )));
                }
                vec![alloc_id.to_string()]
            }
        };
        self.forget(gone.clone());
        Ok(gone)
    }

    /// Forgets allocations: their saved state, their health checks and their alloc dirs.
    fn forget(&self, gone: Vec<String>) {
        {
            let mut allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
            for id in &gone {
                allocs.remove(id);
                if let Err(e) = self.inner.db.remove(id.as_bytes()) {
                    tracing::error!(alloc = %id, error = %e, "cannot save client state");
                }
            }
        }
        if gone.is_empty() {
            return;
        }
        {
            let mut checkers = self
                .inner
                .checkers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for id in &gone {
                checkers.remove(id);
            }
        }
        self.inner
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(a, _), _| !gone.contains(a));
        self.flush_state();
        for id in &gone {
            let dir = alloc_dir(&self.inner.dir, id);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => tracing::info!(alloc = %id, "garbage collected the allocation"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(alloc = %id, error = %e, "cannot remove the alloc dir {}", dir.display())
                }
            }
        }
    }

    /// Wakes the supervisor when the task under `exec_dir` ends (or its driver can no longer
    /// say; the periodic pass looks then).
    pub(crate) fn watch_exit(&self, driver: &Arc<dyn Driver>, exec_dir: &Path, pid: Option<i32>) {
        let client = self.clone();
        let waiting = driver.wait(Handle { dir: exec_dir, pid });
        tokio::spawn(async move {
            waiting.await;
            client.inner.wake.notify_one();
        });
    }

    /// The driver of an allocation's task (the executor's for a task this build has no
    /// driver for).
    pub(crate) fn driver_of(&self, local: &LocalAlloc, task: &str) -> Arc<dyn Driver> {
        let name = group_of(&local.alloc)
            .and_then(|g| g.tasks.iter().find(|t| t.name == task))
            .map_or("", |t| t.driver.as_str());
        self.inner.drivers.of_task(name)
    }

    /// Asks every running task of an allocation to stop: its `kill_signal` now, SIGKILL after
    /// its `kill_timeout`.
    pub(crate) fn stop_tasks(&self, local: &mut LocalAlloc, now: i64) {
        let how: BTreeMap<String, (u64, Signal)> = group_of(&local.alloc)
            .map(|g| {
                g.tasks
                    .iter()
                    .map(|t| {
                        let signal = t.kill_signal.parse().unwrap_or(Signal::SIGTERM);
                        (t.name.clone(), (t.kill_timeout_ms, signal))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let drivers: BTreeMap<String, Arc<dyn Driver>> = local
            .tasks
            .keys()
            .map(|name| (name.clone(), self.driver_of(local, name)))
            .collect();
        for (name, t) in local.tasks.iter_mut() {
            let (timeout, signal) = how.get(name).copied().unwrap_or((5_000, Signal::SIGTERM));
            if let Some(signal) = step::stop(t, timeout, signal, now) {
                drivers[name].stop(handle(t), signal);
            }
        }
    }

    /// How long since a server last answered this client's heartbeat, since this start or
    /// (until one answers) before it (`None`: never).
    fn silent_ms(&self) -> Option<u64> {
        let since_start = *self
            .inner
            .last_heartbeat
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match since_start {
            Some(t) => Some(t.elapsed().as_millis() as u64),
            None => self
                .inner
                .heard_before
                .map(|at| (now_ms() - at).max(0) as u64),
        }
    }

    /// One pass of the task supervisor: start due tasks, notice exits, enforce kill deadlines,
    /// derive allocation status, persist and report changes.
    pub(crate) async fn tick(&self) {
        let _serial = self.inner.tick_serial.lock().await;
        let now = now_ms();
        let mut updates = Vec::new();
        let mut changed = false;
        let mut spawns = Vec::new();
        let silent_ms = self.silent_ms();
        {
            let mut allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
            for local in allocs.values_mut() {
                if !local.stopping
                    && !alloc_client_terminal(&local.client_status)
                    && step::stop_for_lost_contact(group_of(&local.alloc), silent_ms)
                {
                    tracing::warn!(alloc = %local.alloc.id, silent_ms, "no server has answered a heartbeat for longer than the group's disconnect.stop_on_client_after: stopping the allocation");
                    local.stopping = true;
                    self.stop_tasks(local, now);
                }
                let before = (
                    local.client_status.clone(),
                    local.tasks.clone(),
                    local.health.clone(),
                );
                let names: Vec<String> = local.tasks.keys().cloned().collect();
                for name in names {
                    let mut t = local.tasks[&name].clone();
                    self.advance_task(local, &name, &mut t, now, &mut spawns);
                    local.tasks.insert(name, t);
                }
                let (status, desc) = alloc_status(local.tasks.values().map(|t| &t.state));
                local.client_status = status.into();
                local.client_description = desc.into();
                // Tasks started in this pass count from when they started, not from the pass.
                self.track_health(local, now_ms());
                if before.0 != local.client_status
                    || before.1 != local.tasks
                    || before.2 != local.health
                {
                    local.dirty = true;
                    self.persist(local);
                    changed = true;
                }
                if local.dirty {
                    updates.push(AllocClientUpdate {
                        alloc_id: local.alloc.id.clone(),
                        client_status: local.client_status.clone(),
                        client_description: local.client_description.clone(),
                        task_states: local
                            .tasks
                            .iter()
                            .map(|(k, t)| (k.clone(), t.state.clone()))
                            .collect(),
                        deployment_status: local.health.healthy.map(|h| AllocDeploymentStatus {
                            healthy: Some(h),
                            timestamp_unix_ms: local.health.decided_ms,
                            ..AllocDeploymentStatus::default()
                        }),
                    });
                }
            }
        }
        if changed {
            self.flush_state();
        }
        if !spawns.is_empty() {
            // Starting can take long (a docker image pull): the tasks stay pending meanwhile
            // and the supervisor carries on with the others.
            tokio::spawn(self.clone().start_tasks(spawns));
        }
        if updates.is_empty() {
            return;
        }
        let sent: BTreeSet<String> = updates.iter().map(|u| u.alloc_id.clone()).collect();
        let req = UpdateAllocsRequest {
            node_id: self.inner.node_id.clone(),
            updates,
        };
        let servers = &self.inner.servers;
        // A server that stopped answering (a link cut under an open connection) holds a call
        // for as long as the connection's timeout: the report moves on to the next server.
        let mut server = servers.get();
        let call = server.update_allocs(req);
        let answer = match tokio::time::timeout(crate::SERVER_CALL_TIMEOUT, call).await {
            Ok(r) => r,
            Err(_) => Err(tonic::Status::deadline_exceeded(
                "no answer to the report in time",
            )),
        };
        match servers.check(answer) {
            Ok(_) => {
                let mut allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
                for id in sent {
                    if let Some(a) = allocs.get_mut(&id) {
                        a.dirty = false;
                        self.persist(a);
                    }
                }
                self.flush_state();
            }
            Err(s) => {
                tracing::warn!(error = %s.message(), "cannot report allocation status; will retry")
            }
        }
    }

    /// One step of one task: what its driver says of it, the pure [`step::step`], then what
    /// the step asks for (ready the task to start, or SIGKILL it).
    pub(crate) fn advance_task(
        &self,
        local: &LocalAlloc,
        name: &str,
        t: &mut LocalTask,
        now: i64,
        spawns: &mut Vec<Spawn>,
    ) {
        let driver = self.driver_of(local, name);
        let seen = if t.state.state == TASK_RUNNING {
            driver.recover(handle(t))
        } else {
            Seen::Nothing
        };
        let restart = group_of(&local.alloc)
            .and_then(|g| g.restart.clone())
            .unwrap_or_default();
        let rules = Rules {
            stopping: local.stopping,
            batch: local
                .alloc
                .job
                .as_ref()
                .is_some_and(|j| j.r#type == JOB_TYPE_BATCH),
            restart: &restart,
        };
        match step::step(t, seen, rules, now) {
            Action::Start => match self.prepare_task(local, name, t) {
                Ok(driver) => {
                    step::starting(t);
                    spawns.push(Spawn {
                        alloc_id: local.alloc.id.clone(),
                        task: name.to_string(),
                        exec_dir: t.exec_dir.clone(),
                        driver,
                    })
                }
                Err(e) => step::start_failed(t, e, now),
            },
            Action::Kill => driver.stop(handle(t), Signal::SIGKILL),
            Action::Nothing => {}
        }
    }
}

/// Where a task's driver finds it.
pub(crate) fn handle(t: &LocalTask) -> Handle<'_> {
    Handle {
        dir: &t.exec_dir,
        pid: t.executor_pid,
    }
}
