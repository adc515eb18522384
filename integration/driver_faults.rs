//! Task drivers under faults, with real agents: an exec task outlives a client killed and
//! restarted (same PID, same cgroup); a task lost with its client and executor leaves no
//! cgroup; tasks of both drivers killed at random moments (the task, its executor, a process
//! inside, the client agent) leave no task, child or cgroup once stopped.

use std::path::{Path, PathBuf};

use crate::drivers::{cgroup_dir, run_service, sh_job, RESTART_ONCE};
use crate::harness::*;

#[test]
fn an_exec_task_outlives_a_client_restart_in_the_same_cgroup() {
    let dir = TestDir::new();
    let data = dir.path.join("data");
    let mut agent = Agent::start(&data, &["-dev"]);
    agent.wait_node_ready();
    let id = run_service(&agent, &dir.path, "keep", "exec", "exec sleep 3600", "");
    let pid = wait_task_pids(&data, 1)[0];
    let group = cgroup_dir(&id, "t");
    assert!(group.exists());
    agent.kill9();
    agent.restart(&["-dev"]);
    agent.wait_node_ready();
    agent.wait_running("keep", 1);
    assert!(alive(pid));
    assert_eq!(task_pids(&data), vec![pid], "the same task, not a new one");
    let procs = std::fs::read_to_string(group.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l.trim() == pid.to_string()),
        "{pid} not in {procs}"
    );
    let status = agent.ok(&["alloc", "status", &id]);
    assert_eq!(status.matches("Started").count(), 1, "{status}");
}

#[test]
fn a_lost_exec_task_leaves_no_cgroup_after_a_client_kill_and_restart() {
    let dir = TestDir::new();
    let data = dir.path.join("data");
    let mut agent = Agent::start(&data, &["-dev"]);
    agent.wait_node_ready();
    let id = run_service(
        &agent,
        &dir.path,
        "gone",
        "exec",
        "exec sleep 3600",
        RESTART_ONCE,
    );
    let pid = wait_task_pids(&data, 1)[0];
    let executor = parent_of(pid).unwrap();
    // The client, the task's executor and the task all die at once: nobody recorded its end.
    agent.kill9();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(executor),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(
        cgroup_dir(&id, "t").exists(),
        "left behind by the dead executor"
    );
    agent.restart(&["-dev"]);
    agent.wait_node_ready();
    wait_for("the lost task's cgroup to be removed", || {
        let d = cgroup_dir(&id, "t");
        if d.exists() {
            Err(format!("{} remains", d.display()))
        } else {
            Ok(())
        }
    });
    let status = agent.ok(&["alloc", "status", &id]);
    assert!(status.contains("Task Lost"), "{status}");
}

/// A small random number generator (xorshift), seeded by `YURT_CHAOS_SEED` or the clock; the
/// seed is printed so that a failure can be replayed.
struct Chaos(u64);

impl Chaos {
    fn new() -> Chaos {
        let seed = std::env::var("YURT_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
            | 1;
        eprintln!("chaos seed {seed} (YURT_CHAOS_SEED={seed} replays it)");
        Chaos(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The task cgroup directories of `alloc` left in any hierarchy.
fn cgroups_left(alloc: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for root in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/cpu",
        "/sys/fs/cgroup/cpuacct",
        "/sys/fs/cgroup/freezer",
    ] {
        let parent = Path::new(root).join("yurt");
        for e in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{alloc}."))
            {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn tasks_killed_at_random_moments_leave_no_cgroup_or_process_behind() {
    let mut chaos = Chaos::new();
    let dir = TestDir::new();
    let data = dir.path.join("data");
    let mut agent = Agent::start(&data, &["-dev"]);
    agent.wait_node_ready();
    // Each task leaves a child behind it: exec in its PID namespace, raw_exec out of its
    // process group.
    let restart = "    restart {\n      attempts = 3\n      delay    = \"200ms\"\n      mode     = \"delay\"\n    }\n";
    for (name, driver, script) in [
        ("iso", "exec", "sleep 3600 & exec sleep 3600"),
        ("raw", "raw_exec", "setsid sleep 3600 & exec sleep 3600"),
    ] {
        let job = sh_job(
            &dir.path,
            name,
            "service",
            driver,
            script,
            (50, 16),
            restart,
        );
        let src = std::fs::read_to_string(&job)
            .unwrap()
            .replace("count = 1", "count = 3");
        std::fs::write(
            &job,
            src.replace("group \"g\" {\n", "group \"g\" {\n    count = 3\n"),
        )
        .unwrap();
        agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    }
    agent.wait_running("iso", 3);
    agent.wait_running("raw", 3);
    wait_task_pids(&data, 6);
    let signal = |pid: i32| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    };
    for round in 0..8 {
        let pids: Vec<i32> = task_pids(&data).into_iter().filter(|p| alive(*p)).collect();
        let pick = pids.get(chaos.below(pids.len() as u64) as usize).copied();
        match (chaos.below(4), pick) {
            (0, Some(task)) => signal(task),
            (1, Some(task)) => {
                if let Some(executor) = parent_of(task) {
                    signal(executor)
                }
            }
            (2, Some(task)) => {
                // A process inside the task: a child of its first process.
                let children =
                    std::fs::read_to_string(format!("/proc/{task}/task/{task}/children"))
                        .unwrap_or_default();
                if let Some(child) = children.split_whitespace().next() {
                    signal(child.parse().unwrap_or(0))
                }
            }
            _ => {
                agent.kill9();
                std::thread::sleep(std::time::Duration::from_millis(chaos.below(300)));
                agent.restart(&["-dev"]);
            }
        }
        eprintln!("chaos round {round} done");
        std::thread::sleep(std::time::Duration::from_millis(chaos.below(400)));
    }
    agent.wait_node_ready();
    let allocs: Vec<String> = ["iso", "raw"]
        .iter()
        .flat_map(|j| job_allocations(&agent, j))
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    agent.ok(&["job", "stop", "iso"]);
    agent.ok(&["job", "stop", "raw"]);
    wait_for("every task, its children and its cgroup to be gone", || {
        let live: Vec<i32> = task_pids(&data).into_iter().filter(|p| alive(*p)).collect();
        let left: Vec<PathBuf> = allocs.iter().flat_map(|a| cgroups_left(a)).collect();
        if live.is_empty() && left.is_empty() {
            Ok(())
        } else {
            Err(format!("live tasks {live:?}, cgroups {left:?}"))
        }
    });
}
