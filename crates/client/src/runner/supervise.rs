//! Supervision: the pass that observes each task, advances it by the pure [`step`], does what
//! the step asks (start, kill), reports what changed to the servers, stops what the servers
//! want stopped, and forgets old terminal allocations.

use super::step::{self, Action, Rules, Seen};
use super::*;

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
        let running: Vec<PathBuf> = {
            let allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
            allocs
                .values()
                .flat_map(|a| a.tasks.values())
                .filter(|t| t.state.state == TASK_RUNNING)
                .map(|t| t.exec_dir.clone())
                .collect()
        };
        for dir in running {
            self.watch_exit(&dir);
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
        let gone: Vec<String> = {
            let mut allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
            let gone = crate::gc::victims(&allocs, self.inner.config.gc_max_allocs);
            for id in &gone {
                allocs.remove(id);
                if let Err(e) = self.inner.db.remove(id.as_bytes()) {
                    tracing::error!(alloc = %id, error = %e, "cannot save client state");
                }
            }
            gone
        };
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

    /// Wakes the supervisor when the task under `exec_dir` ends. An executor that cannot be
    /// reached (not listening yet, from an older release, gone) is left to the periodic pass.
    pub(crate) fn watch_exit(&self, exec_dir: &Path) {
        let client = self.clone();
        let dir = exec_dir.to_path_buf();
        tokio::spawn(async move {
            for _ in 0..100 {
                match executor::wait(&dir).await {
                    Ok(_) => break,
                    Err(_) if executor::read_exit(&dir).is_some() => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            client.inner.wake.notify_one();
        });
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
        for (name, t) in local.tasks.iter_mut() {
            let (timeout, signal) = how.get(name).copied().unwrap_or((5_000, Signal::SIGTERM));
            if let Some(signal) = step::stop(t, timeout, signal, now) {
                executor::stop(&t.exec_dir, signal);
            }
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
        {
            let mut allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
            for local in allocs.values_mut() {
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
            self.start_executors(spawns).await;
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
        match servers.check(servers.get().update_allocs(req).await) {
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

    /// One step of one task: what its executor says of it, the pure [`step::step`], then what
    /// the step asks for (ready the task to start, or SIGKILL it).
    pub(crate) fn advance_task(
        &self,
        local: &LocalAlloc,
        name: &str,
        t: &mut LocalTask,
        now: i64,
        spawns: &mut Vec<Spawn>,
    ) {
        let seen = if t.state.state == TASK_RUNNING {
            observe(t)
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
                Ok(()) => {
                    step::started(t, now);
                    spawns.push(Spawn {
                        alloc_id: local.alloc.id.clone(),
                        task: name.to_string(),
                        exec_dir: t.exec_dir.clone(),
                    })
                }
                Err(e) => step::start_failed(t, e, now),
            },
            Action::Kill => executor::stop(&t.exec_dir, Signal::SIGKILL),
            Action::Nothing => {}
        }
    }
}

/// What a running task's executor says of it: its recorded exit, or that the executor and the
/// task are gone without one (the executor records the exit; if it is gone too, nobody will.
/// It may have written the exit and ended just now: look once more before calling it lost).
fn observe(t: &LocalTask) -> Seen {
    if let Some(status) = executor::read_exit(&t.exec_dir) {
        return Seen::Exited {
            status,
            driver_error: std::fs::read_to_string(t.exec_dir.join("error")).ok(),
        };
    }
    let executor_gone = t.executor_pid.is_none_or(|p| !executor::alive(p));
    let task_alive = executor::read_pid(&t.exec_dir).is_some_and(executor::alive);
    if executor_gone && !task_alive && executor::read_exit(&t.exec_dir).is_none() {
        Seen::Lost
    } else {
        Seen::Nothing
    }
}
