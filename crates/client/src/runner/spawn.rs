//! Starting tasks: a task's directory, environment and executor spec prepared, and its
//! executors spawned through the launcher (or directly when there is none).

use super::*;

/// A task whose executor a pass starts.
pub(crate) struct Spawn {
    pub(crate) alloc_id: String,
    pub(crate) task: String,
    pub(crate) exec_dir: PathBuf,
}

/// Starts an executor for each dir; the results in order. They are forked by the launcher
/// ([`crate::launcher`]), started first if need be; when `exe` has no launcher, or it ends,
/// the rest are started directly ([`spawn_direct`]).
pub(crate) fn spawn_executors(
    handle: &tokio::runtime::Handle,
    exe: &Path,
    launcher: &std::sync::Mutex<Option<Launcher>>,
    dirs: &[PathBuf],
) -> Vec<Result<i32, String>> {
    let mut launcher = launcher.lock().unwrap_or_else(|e| e.into_inner());
    if launcher.is_none() {
        match Launcher::start(exe) {
            Ok(l) => *launcher = Some(l),
            Err(e) => {
                tracing::debug!(error = %e, "no executor launcher; starting executors directly")
            }
        }
    }
    let mut out = Vec::with_capacity(dirs.len());
    let mut rest = dirs;
    while let (Some(l), Some((dir, more))) = (launcher.as_mut(), rest.split_first()) {
        match l.launch(dir) {
            Ok(pid) => out.push(Ok(pid)),
            Err(LaunchError::Unsuitable) => {
                out.extend(spawn_direct(handle, exe, std::slice::from_ref(dir)))
            }
            Err(LaunchError::Failed(why)) => {
                out.push(Err(format!("cannot start the executor: {why}")))
            }
            Err(LaunchError::Gone { sent, why }) => {
                tracing::warn!(%why, "the executor launcher ended; starting executors directly until it is restarted");
                *launcher = None;
                if !sent {
                    break;
                }
                // It may have forked this one before it ended: starting another could run the
                // task twice, so this start fails (and the restart policy takes over).
                out.push(Err(format!(
                    "the executor launcher ended before it answered ({why})"
                )));
            }
        }
        rest = more;
    }
    drop(launcher);
    out.extend(spawn_direct(handle, exe, rest));
    out
}

/// Starts `yurt executor DIR` for each dir, on a few threads at once; the results in order.
/// Each executor is reaped by the runtime when it ends while this agent runs (after a restart,
/// init does).
pub(crate) fn spawn_direct(
    handle: &tokio::runtime::Handle,
    exe: &Path,
    dirs: &[PathBuf],
) -> Vec<Result<i32, String>> {
    let start = |dir: &PathBuf| -> Result<i32, String> {
        let _runtime = handle.enter();
        let mut child = tokio::process::Command::new(exe)
            .arg("executor")
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the executor {}: {e}", exe.display()))?;
        let pid = child.id().map_or(0, |p| p as i32);
        handle.spawn(async move {
            let _ = child.wait().await;
        });
        Ok(pid)
    };
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    if dirs.len() < 2 * threads {
        return dirs.iter().map(start).collect();
    }
    let chunk = dirs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = dirs
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(start).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .zip(dirs.chunks(chunk))
            .flat_map(|(w, part)| {
                w.join().unwrap_or_else(|_| {
                    vec![Err("the thread starting executors panicked".to_string()); part.len()]
                })
            })
            .collect()
    })
}

/// Replaces `${NAME}` with values from `env`; unknown names are left as written.
pub(crate) fn interpolate(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match env.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

impl Client {
    /// Readies a task to start: its directories, environment and `spec.json`; the pass then
    /// starts its executor ([`spawn_executors`]) once it has let go of the allocations.
    pub(crate) fn prepare_task(
        &self,
        local: &LocalAlloc,
        task_name: &str,
        t: &mut LocalTask,
    ) -> Result<(), String> {
        let a = &local.alloc;
        let task = group_of(a)
            .and_then(|g| g.tasks.iter().find(|x| x.name == task_name))
            .ok_or_else(|| format!("task {task_name:?} is not in the allocation's job"))?;
        let adir = alloc_dir(&self.inner.dir, &a.id);
        let task_dir = adir.join(task_name);
        let logs = adir.join("alloc").join("logs");
        for d in [&task_dir, &logs, &t.exec_dir] {
            std::fs::create_dir_all(d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        let _ = std::fs::remove_file(executor::exit_path(&t.exec_dir));
        let _ = std::fs::remove_file(executor::pid_path(&t.exec_dir));
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
            env.insert(
                format!("{prefix}_ALLOC_DIR"),
                adir.join("alloc").display().to_string(),
            );
            env.insert(format!("{prefix}_TASK_DIR"), task_dir.display().to_string());
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
        let string = |key: &str| match task.config.get(key).and_then(|v| v.kind.as_ref()) {
            Some(value::Kind::StringValue(s)) => Some(s.clone()),
            _ => None,
        };
        let command = string("command").ok_or("task has no config.command")?;
        let args = match task.config.get("args").and_then(|v| v.kind.as_ref()) {
            Some(value::Kind::ListValue(l)) => l
                .values
                .iter()
                .filter_map(|v| match &v.kind {
                    Some(value::Kind::StringValue(s)) => Some(interpolate(s, &env)),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        };
        let spec = ExecSpec {
            command: interpolate(&command, &env),
            args,
            env,
            dir: task_dir,
            stdout: log_rotation(&self.inner.dir, a, task_name, false),
            stderr: log_rotation(&self.inner.dir, a, task_name, true),
        };
        let bytes = serde_json::to_vec(&spec).map_err(|e| e.to_string())?;
        std::fs::write(executor::spec_path(&t.exec_dir), bytes)
            .map_err(|e| format!("cannot write task spec: {e}"))?;
        Ok(())
    }

    /// Starts the executors of the tasks a pass readied, several at once (each start waits for
    /// the `exec` of the `yurt` binary, a millisecond or two), then records their PIDs; a task
    /// whose executor cannot start fails with a `Driver Failure` event.
    pub(crate) async fn start_executors(&self, spawns: Vec<Spawn>) {
        let exe = self.inner.config.executor_exe.clone();
        let dirs: Vec<PathBuf> = spawns.iter().map(|s| s.exec_dir.clone()).collect();
        let handle = tokio::runtime::Handle::current();
        let launcher = self.inner.launcher.clone();
        let started =
            tokio::task::spawn_blocking(move || spawn_executors(&handle, &exe, &launcher, &dirs))
                .await
                .unwrap_or_else(|e| {
                    vec![Err(format!("cannot start executors: {e}")); spawns.len()]
                });
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
                Ok(pid) => {
                    t.executor_pid = Some(pid);
                    self.watch_exit(&s.exec_dir);
                }
                Err(e) => {
                    super::step::start_failed(t, e, now);
                    local.dirty = true;
                }
            }
            self.persist(local);
        }
        drop(allocs);
        self.flush_state();
    }
}
