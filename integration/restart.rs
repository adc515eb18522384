//! An agent killed with SIGKILL and started again on the same data dir has lost nothing: the
//! Raft log and snapshot bring back jobs, versions and allocations, and the client re-attaches
//! to the tasks that kept running. A task that died meanwhile is found lost, also when another
//! process has been given its PID (which is then never signalled).

use crate::harness::*;

#[test]
fn sigkilled_agent_recovers_state_and_keeps_tasks() {
    let dir = TestDir::new();
    let data = dir.path.join("data");
    // A low snapshot threshold so recovery uses a snapshot plus the log after it.
    let args = ["-dev", "-raft-snapshot-threshold", "5"];
    let mut agent = Agent::start(&data, &args);
    agent.wait_node_ready();
    agent.ok(&["job", "run", web_job(&dir.path, "hello").to_str().unwrap()]);
    agent.wait_running("web", 2);
    agent.ok(&["job", "run", web_job(&dir.path, "hi").to_str().unwrap()]);
    let allocs = agent.wait_running("web", 2);
    let live_pids = || -> Vec<i32> {
        let mut v: Vec<i32> = task_pids(&data).into_iter().filter(|p| alive(*p)).collect();
        v.sort();
        v
    };
    let pids = wait_for("only the new tasks to run", || {
        let v = live_pids();
        if v.len() == 2 {
            Ok(v)
        } else {
            Err(format!("{v:?}"))
        }
    });
    let before = agent.ok(&["agent-info"]);
    assert!(before.contains("last_snapshot_index"), "{before}");
    // Each task's executor was forked by the agent's executor launcher.
    let launchers: Vec<i32> = pids
        .iter()
        .map(|&task| {
            let executor = parent_of(task).unwrap();
            let comm = std::fs::read_to_string(format!("/proc/{executor}/comm")).unwrap();
            assert_eq!(comm.trim_end(), "yurt executor");
            let launcher = parent_of(executor).unwrap();
            assert!(
                cmdline(launcher).ends_with(" executor-launcher "),
                "{}",
                cmdline(launcher)
            );
            assert_eq!(parent_of(launcher), agent.pid());
            launcher
        })
        .collect();
    assert!(launchers.windows(2).all(|w| w[0] == w[1]), "{launchers:?}");

    agent.kill9();
    assert_eq!(live_pids(), pids, "tasks outlive the agent");
    // The launcher goes with the agent; the executors and tasks stay.
    wait_for("the executor launcher to end with the agent", || {
        if alive(launchers[0]) {
            Err(cmdline(launchers[0]))
        } else {
            Ok(())
        }
    });
    assert_eq!(live_pids(), pids, "tasks outlive the launcher");

    let agent = Agent::start(&data, &args);
    let after = agent.wait_running("web", 2);
    let (mut a, mut b) = (allocs.clone(), after.clone());
    a.sort();
    b.sort();
    assert_eq!(a, b, "same allocations after the restart");
    assert_eq!(live_pids(), pids, "the same task processes, re-attached");

    let history = agent.ok(&["job", "history", "web"]);
    assert!(
        history.contains("Version     = 1") && history.contains("Version     = 0"),
        "{history}"
    );

    let info = agent.ok(&["agent-info"]);
    for field in [
        "applied_index",
        "commit_index",
        "fsm_pending",
        "last_contact",
        "last_log_index",
        "last_log_term",
        "last_snapshot_index",
        "last_snapshot_term",
        "num_peers",
        "leader",
        "server",
        "bootstrap",
        "known_regions",
    ] {
        assert!(
            info.contains(&format!("  {field} = ")),
            "agent-info lacks {field}:\n{info}"
        );
    }
    let value = |k: &str| -> u64 {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{k} = ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} in {info}"))
    };
    assert!(
        value("last_snapshot_index") > 0,
        "a snapshot was taken:\n{info}"
    );
    assert_eq!(value("fsm_pending"), 0);
    assert!(info.contains("  leader = true"), "{info}");

    // The restarted agent still manages the re-attached tasks: stopping ends them.
    agent.ok(&["job", "stop", "web"]);
    wait_for("the re-attached tasks to exit", || {
        let v = live_pids();
        if v.is_empty() {
            Ok(())
        } else {
            Err(format!("{v:?}"))
        }
    });
}

#[test]
fn a_batch_task_that_ends_while_the_agent_is_down_is_reported_with_its_exit_code() {
    let dir = TestDir::new();
    let data = dir.path.join("data");
    let mut agent = Agent::start(&data, &["-dev"]);
    agent.wait_node_ready();
    let job = once_job(
        &dir.path,
        "short",
        "batch",
        r#"command = "/bin/sh"
        args    = ["-c", "sleep 2; echo finishing; exit 3"]"#,
    );
    agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    let id = agent.wait_running("short", 1).remove(0);
    let pids = wait_task_pids(&data, 1);

    agent.kill9();
    wait_for("the task to end while the agent is down", || {
        if alive(pids[0]) {
            Err(format!("{} still runs", pids[0]))
        } else {
            Ok(())
        }
    });

    let agent = Agent::start(&data, &["-dev"]);
    let status = wait_for("the allocation to be reported failed", || {
        let out = agent.yurt(&["alloc", "status", &id]);
        let text = stdout(&out);
        if text.contains("Client Status       = failed") {
            Ok(text)
        } else {
            Err(format!("{text}{}", stderr(&out)))
        }
    });
    assert!(status.contains("Exit Code: 3"), "{status}");
    assert!(!status.contains("Task Lost"), "{status}");
    assert_eq!(agent.ok(&["alloc", "logs", &id]), "finishing\n");
    // Nothing ran it again.
    assert_eq!(task_pids(&data).len(), 1);
}

#[test]
fn a_task_whose_pid_another_process_took_while_the_agent_was_down_is_lost_and_never_signalled() {
    let dir = TestDir::new();
    let data = dir.path.join("data");
    let mut agent = Agent::start(&data, &["-dev"]);
    agent.wait_node_ready();
    let job = once_job(
        &dir.path,
        "reused",
        "service",
        r#"command = "/bin/sleep"
        args    = ["3600"]"#,
    );
    agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    let id = agent.wait_running("reused", 1).remove(0);
    let task = wait_task_pids(&data, 1)[0];
    let executor = parent_of(task).unwrap();

    // The agent, the executor and the task die (as in a reboot), and the kernel gives the
    // task's PID to another process, a group leader of its own: played here by writing the
    // other process's PID where the task's was.
    agent.kill9();
    for pid in [executor, task] {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    wait_gone(&[executor, task]);
    let other = Bystander::start();
    let pid_file = std::fs::read_dir(data.join("client").join("allocs").join(&id))
        .unwrap()
        .flatten()
        .map(|t| t.path().join("executor").join("pid"))
        .find(|p| p.exists())
        .unwrap();
    std::fs::write(&pid_file, other.pid().to_string()).unwrap();

    let agent = Agent::start(&data, &["-dev"]);
    let status = wait_for("the task to be seen lost", || {
        let out = agent.yurt(&["alloc", "status", &id]);
        let text = stdout(&out);
        if text.contains("Client Status       = failed") {
            Ok(text)
        } else {
            Err(format!("{text}{}", stderr(&out)))
        }
    });
    assert!(status.contains("Task Lost"), "{status}");
    agent.ok(&["job", "stop", "-purge", "reused"]);
    wait_for("the job to be gone", || {
        let out = agent.yurt(&["job", "status", "reused"]);
        if out.status.success() {
            Err(stdout(&out))
        } else {
            Ok(())
        }
    });
    assert!(
        alive(other.pid()),
        "the process that took the task's PID was signalled"
    );
}

/// A process of its own group that no agent started, killed when dropped.
struct Bystander(std::process::Child);

impl Bystander {
    fn start() -> Bystander {
        use std::os::unix::process::CommandExt;
        Bystander(
            std::process::Command::new("/bin/sleep")
                .arg("600")
                .process_group(0)
                .spawn()
                .unwrap(),
        )
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
