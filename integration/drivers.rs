//! Task drivers with real agents (as root, which CI is): `exec` isolates its task (PID, mount,
//! IPC and UTS namespaces, its own root, user `nobody`) and enforces its resources through
//! cgroups (an OOM kill is reported and restarted by policy, a fork bomb stops at the pids
//! limit, CPU time splits by `cpu`, `memory_max` with oversubscription); a stop kills what
//! left the task's process group; raw_exec disabled and a driver no node has are placement
//! failures that name the missing driver; a task cannot read another's secrets; `alloc exec`
//! runs inside the task. Faults:
//! `driver_faults`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::*;

/// Writes `DIR/NAME.hcl`: a job of one `driver` task running `/bin/sh -c SCRIPT` with `cpu`
/// and `memory`, and `extra` lines in the group.
pub(crate) fn sh_job(
    dir: &Path,
    name: &str,
    kind: &str,
    driver: &str,
    script: &str,
    res: (u32, u32),
    extra: &str,
) -> PathBuf {
    let path = dir.join(format!("{name}.hcl"));
    let (cpu, memory) = res;
    let src = format!(
        "job {name:?} {{\n  type = {kind:?}\n  group \"g\" {{\n{extra}\n    task \"t\" {{\n      driver = {driver:?}\n      config {{\n        command = \"/bin/sh\"\n        args    = [\"-c\", {script:?}]\n      }}\n      resources {{\n        cpu    = {cpu}\n        memory = {memory}\n      }}\n    }}\n  }}\n}}\n"
    );
    std::fs::write(&path, src).unwrap();
    path
}

/// A restart policy that tries once more, a second later.
pub(crate) const RESTART_ONCE: &str =
    "    restart {\n      attempts = 1\n      delay    = \"1s\"\n      mode     = \"fail\"\n    }\n";

/// The one allocation of `job` (waits for it).
pub(crate) fn alloc_of(agent: &Agent, job: &str) -> Value {
    wait_for(&format!("an allocation of {job}"), || {
        job_allocations(agent, job)
            .into_iter()
            .next()
            .ok_or_else(|| "none yet".to_string())
    })
}

/// Runs `/bin/sh -c SCRIPT` as a service job NAME of one `driver` task (cpu 100, memory 32,
/// `extra` in the group) until it runs; the allocation's ID.
pub(crate) fn run_service(
    agent: &Agent,
    dir: &Path,
    name: &str,
    driver: &str,
    script: &str,
    extra: &str,
) -> String {
    let job = sh_job(dir, name, "service", driver, script, (100, 32), extra);
    agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    agent.wait_running(name, 1);
    alloc_id(agent, name)
}

/// The ID of the one allocation of `job` (waits for it).
pub(crate) fn alloc_id(agent: &Agent, job: &str) -> String {
    alloc_of(agent, job)["id"].as_str().unwrap().to_string()
}

/// Waits until the allocation's client status is `status`; returns `alloc status` text.
pub(crate) fn wait_alloc_status(agent: &Agent, job: &str, status: &str) -> (String, String) {
    wait_for(&format!("{job} to be {status}"), || {
        let a = alloc_of(agent, job);
        let id = a["id"].as_str().unwrap().to_string();
        if a["client_status"] == status {
            Ok((id.clone(), agent.ok(&["alloc", "status", &id])))
        } else {
            Err(format!("{a}"))
        }
    })
}

/// The task's stdout.
pub(crate) fn logs(agent: &Agent, alloc: &str) -> String {
    agent.ok(&["alloc", "logs", alloc])
}

/// The task's cgroup directory in the memory hierarchy (v1) or the unified one (v2).
pub(crate) fn cgroup_dir(alloc: &str, task: &str) -> PathBuf {
    let name = format!("yurt/{alloc}.{task}");
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers");
    if unified.exists() {
        Path::new("/sys/fs/cgroup").join(name)
    } else {
        Path::new("/sys/fs/cgroup/memory").join(name)
    }
}

#[test]
fn an_exec_task_sees_only_its_own_root_processes_and_user() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let data = dir.path.join("data");
    let script = format!(
        "id -u; echo procs $(ps -e -o comm= | sort | tr '\\n' ' '); \
         ls {data} >/dev/null 2>&1 && echo SAW-DATA-DIR; ls /root >/dev/null 2>&1 && echo SAW-ROOT; \
         echo x > /etc/yurt-test 2>/dev/null && echo WROTE-ETC; \
         cat /executor/spec.json >/dev/null 2>&1 && echo SAW-SPEC; \
         mv /alloc/logs /alloc/moved 2>/dev/null && echo MOVED-LOGS; \
         echo dirs $NOMAD_TASK_DIR $NOMAD_ALLOC_DIR $NOMAD_SECRETS_DIR; \
         touch /local/f /secrets/s /alloc/shared /tmp/t && echo wrote-own-dirs; \
         stat -c %a /secrets",
        data = data.display()
    );
    let job = sh_job(&dir.path, "iso", "batch", "exec", &script, (100, 64), "");
    agent.ok(&["job", "run", job.to_str().unwrap()]);
    let (id, status) = wait_alloc_status(&agent, "iso", "complete");
    assert!(status.contains("Exit Code: 0"), "{status}");
    let out = logs(&agent, &id);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "65534", "runs as nobody: {out}");
    // Its PID namespace: the init, the shell and what the shell runs, nothing of the host.
    assert!(lines[1].starts_with("procs "), "{out}");
    let procs: Vec<&str> = lines[1]["procs ".len()..].split_whitespace().collect();
    assert!(
        procs.contains(&"yurt-init") && procs.contains(&"ps"),
        "{out}"
    );
    assert!(
        procs
            .iter()
            .all(|p| ["yurt-init", "sh", "ps", "sort", "tr"].contains(p)),
        "a process of the host is visible: {out}"
    );
    for leak in [
        "SAW-DATA-DIR",
        "SAW-ROOT",
        "WROTE-ETC",
        "SAW-SPEC",
        "MOVED-LOGS",
    ] {
        assert!(!out.contains(leak), "{leak}: {out}");
    }
    assert!(out.contains("dirs /local /alloc /secrets"), "{out}");
    assert!(out.contains("wrote-own-dirs"), "{out}");
    assert!(
        out.trim_end().ends_with("700"),
        "secrets are the task's own: {out}"
    );
    // Nothing was written to the host's /etc, and the task's cgroup is gone with it.
    assert!(!Path::new("/etc/yurt-test").exists());
    wait_for("the task's cgroup to be removed", || {
        let d = cgroup_dir(&id, "t");
        if d.exists() {
            Err(format!("{} remains", d.display()))
        } else {
            Ok(())
        }
    });
}

#[test]
fn a_task_over_its_memory_is_oom_killed_and_restarted_while_its_neighbour_runs_on() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let data = dir.path.join("data");
    let _ = run_service(&agent, &dir.path, "calm", "exec", "exec sleep 3600", "");
    let calm = wait_task_pids(&data, 1);
    // `tail` keeps the whole of a line-less input: far more than 32 MB.
    let hog = sh_job(
        &dir.path,
        "hog",
        "batch",
        "exec",
        "echo start; exec tail /dev/zero",
        (100, 32),
        RESTART_ONCE,
    );
    agent.ok(&["job", "run", "-detach", hog.to_str().unwrap()]);
    let (_, status) = wait_alloc_status(&agent, "hog", "failed");
    assert_eq!(
        status.matches("OOM Killed, Exit Code: 137").count(),
        2,
        "killed, restarted once, killed again: {status}"
    );
    assert!(status.contains("Restarting"), "{status}");
    assert!(status.contains("Exceeded allowed attempts"), "{status}");
    // The neighbour never noticed.
    assert!(alive(calm[0]));
    let now: Vec<i32> = task_pids(&data).into_iter().filter(|p| alive(*p)).collect();
    assert_eq!(now, calm);
    let json = agent.ok(&["alloc", "status", "-json", &alloc_id(&agent, "hog")]);
    assert!(json.contains("\"oom_killed\": true"), "{json}");
}

#[test]
fn cpu_time_splits_by_the_tasks_cpu_under_contention() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    // One spinner in each task, both on the first core (`taskset`), so that they contend
    // whatever else the machine runs: the kernel shares a core by weight, while spinners on
    // different cores would each get one.
    let spin = "exec taskset -c 0 sh -c 'while :; do :; done'";
    let mut ids = Vec::new();
    for (name, cpu) in [("light", 100), ("heavy", 300)] {
        let job = sh_job(&dir.path, name, "service", "exec", spin, (cpu, 32), "");
        agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
        agent.wait_running(name, 1);
        ids.push(alloc_of(&agent, name)["id"].as_str().unwrap().to_string());
    }
    let used = |id: &str| -> u64 {
        let out = agent.ok(&["alloc", "status", "-stats", "-json", id]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["tasks"]["t"]["resource_usage"]["cpu_stats"]["total_time"]
            .as_u64()
            .unwrap_or(0)
    };
    let before: Vec<u64> = ids.iter().map(|i| used(i)).collect();
    std::thread::sleep(std::time::Duration::from_secs(4));
    let after: Vec<u64> = ids.iter().map(|i| used(i)).collect();
    let light = (after[0] - before[0]) as f64;
    let heavy = (after[1] - before[1]) as f64;
    let ratio = heavy / light.max(1.0);
    assert!(
        (2.25..=3.75).contains(&ratio),
        "cpu 300 against cpu 100 got {heavy} ns against {light} ns: {ratio:.2}, not 3 ± 25%"
    );
    // The same figures for people: a task's memory and CPU, and the node's allocated and used.
    // Its percent is since the previous reading: one a moment after the last may see little
    // of the spinner's time on a loaded machine, a later one sees it busy.
    wait_for("the spinner to show as busy", || {
        let human = agent.ok(&["alloc", "status", "-stats", &ids[1]]);
        assert!(
            human.contains("Memory Stats") && human.contains("CPU Stats"),
            "{human}"
        );
        let percent: f64 = human
            .lines()
            .skip_while(|l| !l.starts_with("CPU Stats"))
            .nth(2)
            .and_then(|l| l.split('%').next())
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0.0);
        if percent > 10.0 {
            Ok(())
        } else {
            Err(human)
        }
    });
    let node_id = alloc_of(&agent, "heavy")["node_id"]
        .as_str()
        .unwrap()
        .to_string();
    let node = agent.ok(&["node", "status", "-stats", &node_id]);
    let allocated = node
        .lines()
        .skip_while(|l| !l.starts_with("Allocated Resources"))
        .nth(2)
        .unwrap_or_default();
    assert!(allocated.starts_with("400/"), "{node}");
    assert!(node.contains("Allocation Resource Utilization"), "{node}");
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit_and_the_node_keeps_working() {
    let dir = TestDir::new();
    let config = dir.path.join("exec.hcl");
    std::fs::write(
        &config,
        "plugin \"exec\" {\n  config {\n    pids_limit = 64\n  }\n}\n",
    )
    .unwrap();
    let agent = Agent::start(
        &dir.path.join("data"),
        &["-dev", "-config", config.to_str().unwrap()],
    );
    agent.wait_node_ready();
    let bomb = sh_job(
        &dir.path,
        "bomb",
        "service",
        "exec",
        "b() { b | b & }; b; sleep 3600",
        (100, 64),
        "",
    );
    agent.ok(&["job", "run", "-detach", bomb.to_str().unwrap()]);
    let id = alloc_id(&agent, "bomb");
    let pids = cgroup_dir(&id, "t")
        .to_str()
        .unwrap()
        .replace("/memory/", "/pids/");
    let peak = wait_for("the bomb to reach its limit", || {
        let events = std::fs::read_to_string(format!("{pids}/pids.events")).unwrap_or_default();
        let current = std::fs::read_to_string(format!("{pids}/pids.current")).unwrap_or_default();
        match events.split_whitespace().nth(1) {
            Some(n) if n != "0" => Ok(current.trim().parse::<u32>().unwrap_or(0)),
            _ => Err(format!("pids.current {current}, events {events}")),
        }
    });
    assert!(peak <= 64, "{peak} processes");
    // The node still answers and runs other work.
    let other = sh_batch_job(&dir.path, "other", 1, "echo fine");
    agent.ok(&["job", "run", other.to_str().unwrap()]);
    let (other_id, _) = wait_alloc_status(&agent, "other", "complete");
    assert_eq!(logs(&agent, &other_id).trim(), "fine");
    // Stopping the bomb ends every one of its processes.
    agent.ok(&["job", "stop", "bomb"]);
    wait_for("the bomb's cgroup to be gone", || {
        if Path::new(&pids).exists() {
            Err(std::fs::read_to_string(format!("{pids}/pids.current")).unwrap_or_default())
        } else {
            Ok(())
        }
    });
}

#[test]
fn a_stop_kills_a_child_that_left_the_task_s_process_group() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let id = run_service(
        &agent,
        &dir.path,
        "daemon",
        "raw_exec",
        "setsid sleep 3600 & echo $! > $NOMAD_ALLOC_DIR/child; exec sleep 3600",
        "",
    );
    let file = dir
        .path
        .join("data/client/allocs")
        .join(&id)
        .join("alloc/child");
    let child: i32 = wait_for("the child's PID", || {
        std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())?
            .trim()
            .parse()
            .map_err(|e| format!("{e}"))
    });
    let task = task_pids(&dir.path.join("data"))[0];
    let group_of = |pid: i32| nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid))).ok();
    assert!(alive(child));
    assert_ne!(group_of(child), group_of(task), "the child left the group");
    agent.ok(&["job", "stop", "daemon"]);
    wait_for("the child to be killed", || {
        if alive(child) {
            Err(format!("{child} alive"))
        } else {
            Ok(())
        }
    });
}

#[test]
fn an_unknown_user_fails_the_task_with_its_name() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let job = dir.path.join("who.hcl");
    std::fs::write(
        &job,
        "job \"who\" {\n  type = \"batch\"\n  group \"g\" {\n    restart {\n      attempts = 0\n      mode = \"fail\"\n    }\n    task \"t\" {\n      driver = \"exec\"\n      user = \"no-such-user-here\"\n      config {\n        command = \"/bin/true\"\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    let (_, status) = wait_alloc_status(&agent, "who", "failed");
    assert!(
        status.contains("user \"no-such-user-here\" not found"),
        "{status}"
    );
}

#[test]
fn raw_exec_off_and_a_driver_nobody_has_are_placement_failures_naming_them() {
    let dir = TestDir::new();
    let server = Agent::start(&dir.path.join("s"), &["-server"]);
    // A client configuration without a plugin block: raw_exec is off, as in Nomad.
    let off = dir.path.join("off.hcl");
    std::fs::write(&off, "client {\n  enabled = true\n}\n").unwrap();
    let _client = Agent::start(
        &dir.path.join("c"),
        &[
            "-client",
            "-servers",
            &server.grpc,
            "-config",
            off.to_str().unwrap(),
        ],
    );
    server.wait_node_ready();
    let node = wait_for("the node", || {
        let out = server.ok(&["node", "status", "-json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["nodes"][0]["id"].as_str().map(str::to_string).ok_or(out)
    });
    let verbose = server.ok(&["node", "status", "-verbose", &node]);
    assert!(verbose.contains("\nDrivers\n"), "{verbose}");
    let raw = verbose
        .lines()
        .find(|l| l.starts_with("raw_exec "))
        .unwrap_or_default();
    assert!(
        raw.contains("false")
            && raw.contains("disabled: the client enables it with plugin \"raw_exec\""),
        "{verbose}"
    );
    assert!(
        verbose
            .lines()
            .any(|l| l.starts_with("Drivers ") && l.ends_with("= exec")),
        "{verbose}"
    );
    // The HTTP API in Nomad's shape.
    let (_, body) = http_get(server.http.as_deref().unwrap(), &format!("/v1/node/{node}"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Drivers"]["raw_exec"]["Healthy"], false, "{body}");
    assert_eq!(v["Drivers"]["exec"]["Detected"], true, "{body}");
    for (name, driver) in [("raw", "raw_exec"), ("pod", "podman")] {
        let job = sh_job(&dir.path, name, "service", driver, "sleep 1", (100, 32), "");
        let out = server.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
        assert!(out.contains("Evaluation ID"), "{out}");
        let status = wait_for(&format!("{name}'s placement failure"), || {
            let s = server.ok(&["job", "status", name]);
            if s.contains("Placement Failure") {
                Ok(s)
            } else {
                Err(s)
            }
        });
        assert!(
            status.contains("Constraint \"missing drivers\": 1 nodes excluded by filter"),
            "{status}"
        );
    }
    // The client's log says why raw_exec tasks do not come.
    let log = _client.log_text();
    assert!(log.contains("task driver raw_exec: disabled"), "{log}");
}

#[test]
fn memory_max_is_the_limit_once_the_cluster_allows_oversubscription() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    // 60 MB held at once by `tail`: over `memory` (32), under `memory_max` (128).
    let script = "head -c 60000000 /dev/zero | tail > /dev/null && echo fits || echo killed";
    let job = |name: &str| {
        let path = dir.path.join(format!("{name}.hcl"));
        std::fs::write(
            &path,
            format!(
                "job {name:?} {{\n  type = \"batch\"\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"exec\"\n      config {{\n        command = \"/bin/sh\"\n        args    = [\"-c\", {script:?}]\n      }}\n      resources {{\n        memory     = 32\n        memory_max = 128\n      }}\n    }}\n  }}\n}}\n"
            ),
        )
        .unwrap();
        path
    };
    agent.ok(&["job", "run", job("off").to_str().unwrap()]);
    let (off, _) = wait_alloc_status(&agent, "off", "complete");
    assert_eq!(
        logs(&agent, &off).trim(),
        "killed",
        "memory is the limit by default"
    );
    let set = agent.ok(&[
        "operator",
        "scheduler",
        "set-config",
        "-memory-oversubscription",
        "true",
    ]);
    assert!(set.contains("Scheduler configuration updated"), "{set}");
    let config = agent.ok(&["operator", "scheduler", "get-config"]);
    assert!(
        config
            .lines()
            .any(|l| l.starts_with("Memory Oversubscription") && l.ends_with("= true")),
        "{config}"
    );
    agent.ok(&["job", "run", job("on").to_str().unwrap()]);
    let (on, _) = wait_alloc_status(&agent, "on", "complete");
    assert_eq!(
        logs(&agent, &on).trim(),
        "fits",
        "memory_max is the limit now"
    );
    let bad = agent.yurt(&[
        "operator",
        "scheduler",
        "set-config",
        "-memory-oversubscription",
        "maybe",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("memory oversubscription must be true or false, not \"maybe\""),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn alloc_exec_runs_a_command_inside_the_task_and_bounds_it() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let id = run_service(&agent, &dir.path, "inside", "exec", "exec sleep 3600", "");
    wait_task_pids(&dir.path.join("data"), 1);
    assert_eq!(
        agent.ok(&["alloc", "exec", &id, "id", "-u"]).trim(),
        "65534"
    );
    // Its PID namespace: the task's processes and the command, nothing of the host.
    let procs = agent.ok(&["alloc", "exec", &id, "ps", "-e", "-o", "comm="]);
    let mut names: Vec<&str> = procs.lines().map(str::trim).collect();
    names.sort();
    assert_eq!(names, vec!["ps", "sleep", "yurt-init"], "{procs}");
    assert_eq!(
        agent
            .ok(&["alloc", "exec", &id, "cat", "/proc/1/comm"])
            .trim(),
        "yurt-init"
    );
    let out = agent.yurt(&["alloc", "exec", &id, "sh", "-c", "echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stderr(&out), "err\n");
    // A command past its deadline is killed, with whatever it started.
    let out = agent.yurt(&[
        "alloc",
        "exec",
        "-timeout",
        "1s",
        &id,
        "sh",
        "-c",
        "sleep 300 & sleep 300",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the command did not finish within 1s"),
        "{}",
        stderr(&out)
    );
    let procs_file = cgroup_dir(&id, "t").join("cgroup.procs");
    wait_for("the timed-out command's processes to be gone", || {
        let procs = std::fs::read_to_string(&procs_file).unwrap_or_default();
        if procs.lines().count() == 2 {
            Ok(())
        } else {
            Err(procs)
        }
    });
    // A raw_exec task: its own directory and environment.
    let raw_id = run_service(&agent, &dir.path, "host", "raw_exec", "exec sleep 3600", "");
    wait_task_pids(&dir.path.join("data"), 2);
    let pwd = agent.ok(&[
        "alloc",
        "exec",
        &raw_id,
        "sh",
        "-c",
        "pwd; echo $NOMAD_ALLOC_ID",
    ]);
    assert!(
        pwd.starts_with(&format!("{}", dir.path.join("data").display())),
        "{pwd}"
    );
    assert!(pwd.trim_end().ends_with(&raw_id), "{pwd}");
    // A raw_exec task is tracked in a cgroup too: its usage is there.
    let stats = agent.ok(&["alloc", "status", "-stats", "-json", &raw_id]);
    let v: Value = serde_json::from_str(&stats).unwrap();
    let rss = &v["tasks"]["t"]["resource_usage"]["memory_stats"]["rss"];
    assert!(rss.as_u64().is_some_and(|b| b > 0), "{stats}");
    // Nothing runs in a task that is not running.
    agent.ok(&["job", "stop", "inside"]);
    wait_for("the task to stop", || {
        let a = alloc_of(&agent, "inside");
        if a["client_status"] == "complete" {
            Ok(())
        } else {
            Err(a.to_string())
        }
    });
    let out = agent.yurt(&["alloc", "exec", &id, "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("task \"t\" is not running"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_task_cannot_read_another_task_s_secrets() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let data = dir.path.join("data");
    // Task `a` keeps a secret; task `b` of the same allocation looks for it by every path it
    // might know: beside its own root, through the shared alloc dir, by the host's path.
    let task = |name: &str, script: &str| {
        format!(
            "    task {name:?} {{\n      driver = \"exec\"\n      config {{\n        command = \"/bin/sh\"\n        args    = [\"-c\", {script:?}]\n      }}\n      resources {{\n        memory = 32\n      }}\n    }}\n"
        )
    };
    let a = task(
        "a",
        "echo hush > /secrets/token; cat /secrets/token; sleep 3",
    );
    let b = task(
        "b",
        &format!(
            "sleep 1; for p in /../a/secrets/token /alloc/../a/secrets/token {}/client/allocs/*/a/secrets/token; do cat $p 2>/dev/null; done; echo looked",
            data.display()
        ),
    );
    let src = format!("job \"secret\" {{\n  type = \"batch\"\n  group \"g\" {{\n{a}{b}  }}\n}}\n");
    let job = dir.path.join("secret.hcl");
    std::fs::write(&job, src).unwrap();
    agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    let (id, _) = wait_alloc_status(&agent, "secret", "complete");
    // The secret is there on the host, where `b` looked for it.
    let on_host = data.join("client/allocs").join(&id).join("a/secrets/token");
    assert_eq!(std::fs::read_to_string(on_host).unwrap().trim(), "hush");
    assert_eq!(agent.ok(&["alloc", "logs", &id, "a"]).trim(), "hush");
    let b_out = agent.ok(&["alloc", "logs", &id, "b"]);
    assert_eq!(b_out.trim(), "looked", "b read a's secret: {b_out}");
}
