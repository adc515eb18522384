//! Starting tasks: a task's environment made, the task readied by its driver, and the tasks a
//! pass readied started by their drivers, several at once.

use super::*;
use crate::driver::{interpolate, Driver, Started, TaskStart};

/// A task a pass starts.
pub(crate) struct Spawn {
    pub(crate) alloc_id: String,
    pub(crate) task: String,
    pub(crate) exec_dir: PathBuf,
    pub(crate) driver: std::sync::Arc<dyn Driver>,
}

impl Client {
    /// Readies a task to start: its environment, then its driver's part (directories, what
    /// it runs); the pass then starts it ([`Client::start_tasks`]) once it has let go of the
    /// allocations. Only a driver fingerprinted healthy readies a task.
    pub(crate) fn prepare_task(
        &self,
        local: &LocalAlloc,
        task_name: &str,
        t: &mut LocalTask,
    ) -> Result<std::sync::Arc<dyn Driver>, String> {
        let a = &local.alloc;
        let task = group_of(a)
            .and_then(|g| g.tasks.iter().find(|x| x.name == task_name))
            .ok_or_else(|| format!("task {task_name:?} is not in the allocation's job"))?;
        let driver = self.inner.drivers.to_start(&task.driver)?;
        let adir = alloc_dir(&self.inner.dir, &a.id);
        let task_dir = adir.join(task_name);
        let logs = adir.join("alloc").join("logs");
        for d in [&task_dir, &logs, &t.exec_dir] {
            std::fs::create_dir_all(d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert(
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        );
        for prefix in ["YURT", "NOMAD"] {
            env.insert(format!("{prefix}_ALLOC_ID"), a.id.clone());
            env.insert(format!("{prefix}_ALLOC_NAME"), a.name.clone());
            env.insert(format!("{prefix}_JOB_NAME"), a.job_id.clone());
            env.insert(format!("{prefix}_GROUP_NAME"), a.task_group.clone());
            env.insert(format!("{prefix}_TASK_NAME"), task_name.into());
            if let Some(i) = a
                .name
                .rsplit_once('[')
                .and_then(|(_, r)| r.strip_suffix(']'))
            {
                env.insert(format!("{prefix}_ALLOC_INDEX"), i.to_string());
            }
            for p in &a.ports {
                let host = self.host_ip();
                let port = if p.to > 0 { p.to } else { p.value };
                env.insert(format!("{prefix}_PORT_{}", p.label), port.to_string());
                env.insert(
                    format!("{prefix}_HOST_PORT_{}", p.label),
                    p.value.to_string(),
                );
                env.insert(format!("{prefix}_IP_{}", p.label), host.clone());
                env.insert(
                    format!("{prefix}_ADDR_{}", p.label),
                    format!("{host}:{}", p.value),
                );
            }
        }
        let base = env.clone();
        for (k, v) in &task.env {
            env.insert(k.clone(), interpolate(v, &base));
        }
        let host_ip = self.host_ip();
        driver.prepare(TaskStart {
            alloc_id: &a.id,
            job: &a.job_id,
            group: &a.task_group,
            node_id: &self.inner.node_id,
            ports: &a.ports,
            host_ip: &host_ip,
            memory_oversubscription: a.memory_oversubscription,
            task,
            alloc_dir: &adir,
            task_dir: &task_dir,
            handle_dir: &t.exec_dir,
            env,
            stdout: log_rotation(&self.inner.dir, a, task_name, false),
            stderr: log_rotation(&self.inner.dir, a, task_name, true),
        })?;
        Ok(driver)
    }

    /// Starts the tasks a pass readied, each driver's several at once (an executor's start
    /// waits for the `exec` of the `yurt` binary, a millisecond or two), then records their
    /// PIDs; a task that cannot start fails with a `Driver Failure` event.
    pub(crate) async fn start_tasks(self, spawns: Vec<Spawn>) {
        let batches: Vec<(std::sync::Arc<dyn Driver>, Vec<PathBuf>)> = {
            let mut by: BTreeMap<&'static str, (std::sync::Arc<dyn Driver>, Vec<PathBuf>)> =
                BTreeMap::new();
            for s in &spawns {
                by.entry(s.driver.name())
                    .or_insert_with(|| (s.driver.clone(), Vec::new()))
                    .1
                    .push(s.exec_dir.clone());
            }
            by.into_values().collect()
        };
        let started = tokio::task::spawn_blocking(move || {
            let mut out: BTreeMap<PathBuf, Result<Started, String>> = BTreeMap::new();
            for (driver, dirs) in batches {
                out.extend(dirs.iter().cloned().zip(driver.start(&dirs)));
            }
            out
        })
        .await
        .unwrap_or_default();
        let started: Vec<Result<Started, String>> = spawns
            .iter()
            .map(|s| {
                started
                    .get(&s.exec_dir)
                    .cloned()
                    .unwrap_or_else(|| Err("the task's driver did not start it".into()))
            })
            .collect();
        let now = now_ms();
        let mut allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
        for (s, result) in spawns.iter().zip(started) {
            let Some(local) = allocs.get_mut(&s.alloc_id) else {
                continue;
            };
            let Some(t) = local.tasks.get_mut(&s.task) else {
                continue;
            };
            match result {
                Ok(started) if t.starting && !local.stopping => {
                    t.executor_pid = Some(started.pid);
                    super::step::driver_events(t, started.events, now);
                    super::step::started(t, now);
                    self.watch_exit(&s.driver, &s.exec_dir, Some(started.pid));
                }
                Ok(started) => {
                    // Stopped while its driver started it: it runs now, and is killed as a
                    // stopped task past its deadline, again at later passes until its driver
                    // says it ended (its executor may not listen yet, nor have written the
                    // task's PID, and a SIGKILL sent now would be lost).
                    t.executor_pid = Some(started.pid);
                    super::step::started(t, now);
                    t.kill_at_ms = Some(now + super::step::KILL_AGAIN_MS);
                    s.driver.stop(super::supervise::handle(t), Signal::SIGKILL);
                    self.watch_exit(&s.driver, &s.exec_dir, Some(started.pid));
                }
                Err(e) if t.starting => super::step::start_failed(t, e, now),
                Err(_) => {}
            }
            local.dirty = true;
            self.persist(local);
        }
        drop(allocs);
        self.flush_state();
        // What a start changed (a failure, the driver's events) is reported by the next pass.
        self.inner.wake.notify_one();
    }
}
