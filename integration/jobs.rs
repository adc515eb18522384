//! The job lifecycle as a user drives it from the CLI.

use crate::harness::*;

#[test]
fn jobs_run_plan_history_logs_and_stop_on_a_dev_agent() {
    let dir = TestDir::new();
    let agent = Agent::start(&dir.path.join("data"), &["-dev"]);

    // The dev node registers and is ready.
    wait_for("the dev node to be ready", || {
        let out = stdout(&agent.yurt(&["node", "status"]));
        if out.contains("ready") {
            Ok(())
        } else {
            Err(out)
        }
    });

    // Run the example job: the evaluation and two placements are shown.
    let v0 = web_job(&dir.path, "hello");
    let run = agent.ok(&["job", "run", v0.to_str().unwrap()]);
    assert!(run.contains("Evaluation triggered by job \"web\""), "{run}");
    assert_eq!(run.matches("created: node").count(), 2, "{run}");
    assert!(run.contains("finished with status \"complete\""), "{run}");
    let allocs = agent.wait_running("web", 2);

    // The tasks are real processes.
    let pids = wait_task_pids(&agent.data_dir, 2);
    for pid in &pids {
        assert!(alive(*pid));
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(cmdline.starts_with("/bin/sh"), "{cmdline}");
    }
    let status = agent.ok(&["job", "status", "web"]);
    assert!(status.contains("Status        = running"), "{status}");

    // Logs: the task's stdout, through the server.
    let logs = wait_for("the task's output", || {
        let out = stdout(&agent.yurt(&["alloc", "logs", &allocs[0]]));
        if out.contains("hello from") {
            Ok(out)
        } else {
            Err(out)
        }
    });
    assert!(
        logs.contains(&allocs[0]),
        "the task sees its alloc ID: {logs}"
    );
    let alloc = agent.ok(&["alloc", "status", &allocs[0][..8]]);
    assert!(alloc.contains("Client Status       = running"), "{alloc}");
    assert!(alloc.contains("Task \"server\" is \"running\""), "{alloc}");

    // Plan of the unchanged file: nothing to do, exit 0.
    let same = agent.yurt(&["job", "plan", v0.to_str().unwrap()]);
    assert_eq!(same.status.code(), Some(0), "{}", stdout(&same));
    assert!(
        stdout(&same).contains("Task Group: \"app\" (2 ignore)"),
        "{}",
        stdout(&same)
    );

    // Plan of an edit: the diff, the dry run and the index; exit 1.
    let v1 = web_job(&dir.path, "hi");
    let plan = agent.yurt(&["job", "plan", v1.to_str().unwrap()]);
    let text = stdout(&plan);
    assert_eq!(plan.status.code(), Some(1), "{text}");
    assert!(text.contains("+/- Job: \"web\""), "{text}");
    assert!(
        // A rolling update (the example's max_parallel is 1): one now, one later.
        text.contains("+/- Task Group: \"app\" (1 create/destroy update, 1 ignore)"),
        "{text}"
    );
    assert!(
        text.contains("+/- Task: \"server\" (forces create/destroy update)"),
        "{text}"
    );
    assert!(
        text.contains("+/- Env[GREETING]: \"hello\" => \"hi\""),
        "{text}"
    );
    assert!(
        text.contains("- All tasks successfully allocated."),
        "{text}"
    );
    let index: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Job Modify Index: "))
        .expect("Job Modify Index line")
        .parse()
        .unwrap();
    assert!(index > 0);

    // A stale -check-index is refused and changes nothing.
    let stale = agent.yurt(&[
        "job",
        "run",
        "-check-index",
        &(index - 1).to_string(),
        v1.to_str().unwrap(),
    ]);
    assert_eq!(stale.status.code(), Some(1));
    assert_eq!(
        stderr(&stale).trim(),
        format!("Error submitting job: Enforcing job modify index {}: job exists with conflicting job modify index: {index}", index - 1)
    );
    assert!(agent
        .ok(&["job", "history", "web"])
        .contains("Version     = 0"));
    assert!(!agent
        .ok(&["job", "history", "web"])
        .contains("Version     = 1"));

    // The right index registers version 1; the old allocations are replaced.
    agent.ok(&[
        "job",
        "run",
        "-check-index",
        &index.to_string(),
        v1.to_str().unwrap(),
    ]);
    let new_allocs = agent.wait_running("web", 2);
    assert!(new_allocs.iter().all(|a| !allocs.contains(a)));
    wait_for("the old tasks to exit", || {
        let live: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if live.is_empty() {
            Ok(())
        } else {
            Err(format!("{live:?}"))
        }
    });
    let logs = wait_for("the new task's output", || {
        let out = stdout(&agent.yurt(&["alloc", "logs", &new_allocs[0]]));
        if out.contains("hi from") {
            Ok(out)
        } else {
            Err(out)
        }
    });
    assert!(logs.starts_with("hi from"), "{logs}");

    // History shows both versions, newest first, with the diff between them.
    let history = agent.ok(&["job", "history", "-p", "web"]);
    let v1_at = history.find("Version     = 1").expect("version 1");
    let v0_at = history.find("Version     = 0").expect("version 0");
    assert!(v1_at < v0_at, "{history}");
    assert!(
        history[v1_at..v0_at].contains("+/- Env[GREETING]: \"hello\" => \"hi\""),
        "{history}"
    );

    // Stop: the processes end and the job is dead.
    let stop = agent.ok(&["job", "stop", "web"]);
    assert!(stop.contains("finished with status \"complete\""), "{stop}");
    wait_for("every task to exit", || {
        let live: Vec<i32> = task_pids(&agent.data_dir)
            .into_iter()
            .filter(|p| alive(*p))
            .collect();
        if live.is_empty() {
            Ok(())
        } else {
            Err(format!("{live:?}"))
        }
    });
    wait_for("the job to be dead", || {
        let out = stdout(&agent.yurt(&["job", "status", "web"]));
        if out.contains("Status        = dead") {
            Ok(())
        } else {
            Err(out)
        }
    });
    let list = agent.ok(&["job", "status"]);
    assert!(list.contains("web") && list.contains("dead"), "{list}");

    // The HTTP API answers with the same objects, in Nomad's JSON shape.
    let http = agent.http.as_deref().expect("a dev agent serves HTTP");
    let (status, body) = http_get(http, "/v1/job/web");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let job: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            job["ID"].as_str(),
            job["Status"].as_str(),
            job["Version"].as_u64()
        ),
        (Some("web"), Some("dead"), Some(2))
    );
    let (status, body) = http_get(http, "/v1/job/nope");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert_eq!(
        body.trim(),
        "job \"nope\" not found in namespace \"default\""
    );
}

#[test]
fn separate_server_and_client_agents_run_a_job() {
    let dir = TestDir::new();
    let server = Agent::start(
        &dir.path.join("server"),
        &["-server", "-bootstrap-expect", "1"],
    );

    // Before any client joins, nothing can be placed: the evaluation waits for capacity.
    let job = web_job(&dir.path, "hello");
    let run = server.yurt(&["job", "run", job.to_str().unwrap()]);
    let text = stdout(&run);
    assert_eq!(run.status.code(), Some(2), "{text}");
    assert!(
        text.contains("but failed to place all allocations:"),
        "{text}"
    );
    assert!(
        text.contains("Task Group \"app\" (failed to place 2 allocations):"),
        "{text}"
    );
    assert!(
        text.contains("* No nodes were eligible for evaluation"),
        "{text}"
    );
    assert!(
        text.contains("waiting for additional capacity to place remainder"),
        "{text}"
    );
    assert!(server
        .ok(&["job", "status", "web"])
        .contains("Status        = pending"));

    let client = Agent::start(
        &dir.path.join("client"),
        &["-client", "-servers", &server.grpc, "-node", "worker-1"],
    );
    wait_for("the client node to register", || {
        let out = stdout(&server.yurt(&["node", "status"]));
        if out.contains("worker-1") && out.contains("ready") {
            Ok(())
        } else {
            Err(out)
        }
    });
    // The node's arrival unblocks the evaluation: the allocations are placed and run.
    let allocs = server.wait_running("web", 2);
    wait_task_pids(&client.data_dir, 2);
    assert!(
        task_pids(&server.data_dir).is_empty(),
        "a server-only agent runs no tasks"
    );
    // Logs are read from the client through the server.
    wait_for("logs through the server", || {
        let out = stdout(&server.yurt(&["alloc", "logs", &allocs[1]]));
        if out.contains("hello from") {
            Ok(())
        } else {
            Err(out)
        }
    });
    let info = client.ok(&["agent-info"]);
    assert!(info.contains("server = false"), "{info}");
    // Nomad's default: 10s plus up to as much again of jitter.
    let ttl = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("heartbeat_ttl = "))
        .and_then(|v| yurt_types::duration::parse(v).ok())
        .unwrap_or_else(|| panic!("no heartbeat_ttl in:\n{info}"));
    assert!(
        ttl >= std::time::Duration::from_secs(10) && ttl < std::time::Duration::from_secs(20),
        "{info}"
    );
}

#[test]
fn tasks_get_their_own_dynamic_ports_and_alloc_index() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let job = dir.path.join("ports.hcl");
    std::fs::write(
        &job,
        r#"job "ports" {
  group "g" {
    count = 2
    network {
      port "http" {}
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo port=$YURT_PORT_http nomad=$NOMAD_PORT_http index=$YURT_ALLOC_INDEX addr=$YURT_ADDR_http; sleep 1000"]
      }
      resources {
        memory = 32
      }
    }
  }
}
"#,
    )
    .unwrap();
    agent.ok(&["job", "run", job.to_str().unwrap()]);
    let allocs = agent.wait_running("ports", 2);
    let mut lines: Vec<String> = allocs
        .iter()
        .map(|a| {
            wait_for("the task's output", || {
                let out = stdout(&agent.yurt(&["alloc", "logs", a]));
                if out.contains("port=") {
                    Ok(out.trim().to_string())
                } else {
                    Err(out)
                }
            })
        })
        .collect();
    lines.sort();
    let ports: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_ne!(
        ports[0], ports[1],
        "two allocations on one node, two ports: {lines:?}"
    );
    for l in &lines {
        let port = l
            .split_whitespace()
            .next()
            .unwrap()
            .trim_start_matches("port=");
        assert!(
            port.parse::<u32>()
                .is_ok_and(|p| (20_000..32_000).contains(&p)),
            "{l}"
        );
        assert!(l.contains(&format!("nomad={port}")), "{l}");
        assert!(l.contains(&format!("addr=127.0.0.1:{port}")), "{l}");
    }
    // `alloc status` shows where each port is reached, as Nomad's does.
    let status = agent.ok(&["alloc", "status", &allocs[0]]);
    let shown = status
        .split("Allocation Addresses:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no addresses in:\n{status}"));
    let row = shown.lines().nth(1).unwrap_or_default();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[..2], ["http", "yes"], "{status}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("addr={}", cols[2]))),
        "{row} is one of the tasks' addresses: {lines:?}"
    );
    let indexes: Vec<bool> = ["index=0", "index=1"]
        .iter()
        .map(|i| lines.iter().any(|l| l.contains(i)))
        .collect();
    assert_eq!(indexes, vec![true, true], "{lines:?}");
}

#[test]
fn stopping_sends_kill_signal_then_sigkill_after_kill_timeout() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let job = dir.path.join("signals.hcl");
    std::fs::write(
        &job,
        r#"job "signals" {
  group "polite" {
    task "t" {
      driver      = "raw_exec"
      kill_signal = "SIGINT"
      config {
        command = "/bin/sh"
        args    = ["-c", "trap 'echo got INT; exit 0' INT; echo ready; while true; do sleep 0.1; done"]
      }
      resources {
        memory = 32
      }
    }
  }
  group "stubborn" {
    task "t" {
      driver       = "raw_exec"
      kill_timeout = "1s"
      config {
        command = "/bin/sh"
        args    = ["-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done"]
      }
      resources {
        memory = 32
      }
    }
  }
}
"#,
    )
    .unwrap();
    agent.ok(&["job", "run", job.to_str().unwrap()]);
    let allocs = agent.wait_running("signals", 2);
    for a in &allocs {
        wait_for("the task to be ready", || {
            let out = stdout(&agent.yurt(&["alloc", "logs", a]));
            if out.contains("ready") {
                Ok(())
            } else {
                Err(out)
            }
        });
    }
    let pids = task_pids(&agent.data_dir);
    agent.ok(&["job", "stop", "signals"]);
    wait_for("both tasks to end", || {
        let live: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if live.is_empty() {
            Ok(())
        } else {
            Err(format!("{live:?}"))
        }
    });
    let polite = allocs
        .iter()
        .find(|a| {
            agent
                .ok(&["alloc", "status", a])
                .contains("signals.polite[0]")
        })
        .unwrap();
    let stubborn = allocs.iter().find(|a| *a != polite).unwrap();
    let polite_status = agent.ok(&["alloc", "status", polite]);
    assert!(polite_status.contains("Sent SIGINT"), "{polite_status}");
    let polite_logs = stdout(&agent.yurt(&["alloc", "logs", polite]));
    assert!(
        polite_logs.contains("got INT"),
        "the task saw its kill_signal: {polite_logs}"
    );
    // The stubborn task ignored SIGTERM; SIGKILL ended it after kill_timeout.
    let stubborn_status = wait_for("the stubborn task to be terminated", || {
        let s = agent.ok(&["alloc", "status", stubborn]);
        if s.contains("Terminated") {
            Ok(s)
        } else {
            Err(s)
        }
    });
    assert!(
        stubborn_status.contains("Sent SIGTERM"),
        "{stubborn_status}"
    );
    assert!(
        stubborn_status.contains("Exit Code: 137, Signal: 9"),
        "{stubborn_status}"
    );
}

#[test]
fn a_crashing_task_is_restarted_then_its_allocation_rescheduled_until_attempts_run_out() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let job = dir.path.join("crash.hcl");
    std::fs::write(
        &job,
        r#"job "crash" {
  group "g" {
    restart {
      attempts = 1
      delay    = "1s"
      interval = "10s"
      mode     = "fail"
    }
    reschedule {
      attempts       = 1
      interval       = "1h"
      delay          = "1s"
      delay_function = "constant"
      unlimited      = false
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo boom; exit 3"]
      }
      resources {
        memory = 32
      }
    }
  }
}
"#,
    )
    .unwrap();
    agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    let allocs = wait_for(
        "two failed allocations, the second replacing the first",
        || {
            let out = agent.ok(&["job", "status", "-json", "crash"]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            let allocs = v["allocations"].as_array().cloned().unwrap_or_default();
            let failed = allocs
                .iter()
                .filter(|a| a["client_status"] == "failed")
                .count();
            if allocs.len() == 2 && failed == 2 {
                Ok(allocs)
            } else {
                Err(out)
            }
        },
    );
    let first = allocs
        .iter()
        .find(|a| a["previous_allocation"] == "")
        .unwrap();
    let second = allocs
        .iter()
        .find(|a| a["previous_allocation"] != "")
        .unwrap();
    assert_eq!(second["previous_allocation"], first["id"]);
    assert_eq!(first["next_allocation"], second["id"]);
    assert_eq!(
        first["desired_description"],
        "alloc was rescheduled because it failed"
    );
    let status = agent.ok(&["alloc", "status", first["id"].as_str().unwrap()]);
    assert!(
        status.contains("Restarting"),
        "restarted once on its node first:\n{status}"
    );
    assert!(status.contains("Exit Code: 3"), "{status}");
    assert!(status.contains("Not Restarting"), "{status}");
    // No third try: the one reschedule attempt is used.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let out = agent.ok(&["job", "status", "-json", "crash"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["allocations"].as_array().map(Vec::len), Some(2), "{out}");
}

#[test]
fn alloc_logs_tail_prints_the_last_lines_and_stderr_separately() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let job = dir.path.join("chatty.hcl");
    std::fs::write(
        &job,
        r#"job "chatty" {
  type = "batch"
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "i=1; while [ $i -le 50 ]; do echo line-$i; i=$((i+1)); done; echo oops >&2"]
      }
      resources {
        memory = 32
      }
    }
  }
}
"#,
    )
    .unwrap();
    agent.ok(&["job", "run", job.to_str().unwrap()]);
    let id = wait_for("the batch allocation to complete", || {
        let out = agent.ok(&["job", "status", "-json", "chatty"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        match v["allocations"].as_array().and_then(|a| a.first()) {
            Some(a) if a["client_status"] == "complete" => {
                Ok(a["id"].as_str().unwrap().to_string())
            }
            _ => Err(out),
        }
    });
    assert_eq!(
        agent.ok(&["alloc", "logs", "-tail", "-n", "3", &id]),
        "line-48\nline-49\nline-50\n"
    );
    assert_eq!(agent.ok(&["alloc", "logs", &id]).lines().count(), 50);
    assert_eq!(agent.ok(&["alloc", "logs", "-stderr", &id]), "oops\n");
    // A batch job whose allocations all completed is dead.
    let status = agent.ok(&["job", "status", "chatty"]);
    assert!(status.contains("Status        = dead"), "{status}");
}

#[test]
fn alloc_logs_follow_streams_lines_as_the_task_writes_them_and_ends_with_it() {
    use std::io::BufRead;
    let dir = TestDir::new();
    let data = dir.path.join("data");
    let agent = Agent::start(&data, &["-dev"]);
    agent.wait_node_ready();
    // The last line waits for a file that the test creates once it has seen the first.
    let job = sh_batch_job(
        &dir.path,
        "slow",
        1,
        "echo first; while [ ! -f \"$YURT_ALLOC_DIR/go\" ]; do sleep 0.05; done; echo last",
    );
    agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    let id = agent.wait_running("slow", 1).remove(0);
    let mut follow = std::process::Command::new(YURT)
        .args(["alloc", "logs", "-f", &id])
        .env("YURT_ADDR", &agent.grpc)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let first = rx
        .recv_timeout(timeout())
        .expect("the first line, while the task runs");
    assert_eq!(first, "first");
    let alloc_dir = data.join("client").join("allocs").join(&id).join("alloc");
    std::fs::write(alloc_dir.join("go"), "").unwrap();
    let last = rx.recv_timeout(timeout()).expect("the last line");
    assert_eq!(last, "last");
    // The task has ended: `-f` ends with it.
    let status = wait_for("alloc logs -f to end with the task", || {
        follow
            .try_wait()
            .unwrap()
            .ok_or_else(|| "still following".to_string())
    });
    assert!(status.success(), "{status:?}");
}

#[test]
fn terminal_allocations_beyond_gc_max_allocs_are_forgotten_and_never_run_again() {
    let dir = TestDir::new();
    let data = dir.path.join("data");
    let config = dir.path.join("client.hcl");
    std::fs::write(
        &config,
        "client {\n  gc_max_allocs = 2\n  gc_interval   = \"100ms\"\n}\n",
    )
    .unwrap();
    let args = ["-dev", "-config", config.to_str().unwrap()];
    let mut agent = Agent::start(&data, &args);
    agent.wait_node_ready();
    let job = sh_batch_job(&dir.path, "four", 4, "echo done");
    agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    let complete = |agent: &Agent| -> Result<usize, String> {
        let all = job_allocations(agent, "four");
        let done = all
            .iter()
            .filter(|a| a["client_status"] == "complete")
            .count();
        if all.len() == 4 && done == 4 {
            Ok(done)
        } else {
            Err(format!("{all:?}"))
        }
    };
    wait_for("four complete allocations", || complete(&agent));
    let alloc_dirs = || {
        std::fs::read_dir(data.join("client").join("allocs"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    wait_for(
        "the client to keep two allocation dirs",
        || match alloc_dirs() {
            2 => Ok(()),
            n => Err(format!("{n} alloc dirs")),
        },
    );
    let log = agent.log_text();
    assert_eq!(
        log.matches("garbage collected the allocation").count(),
        2,
        "{log}"
    );
    assert_eq!(log.matches("starting allocation").count(), 4, "{log}");
    // The logs of a forgotten allocation are gone, and `alloc logs` says so.
    let forgotten = job_allocations(&agent, "four")
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .find(|id| !data.join("client").join("allocs").join(id).exists())
        .unwrap();
    let logs = agent.yurt(&["alloc", "logs", &forgotten]);
    assert_eq!(logs.status.code(), Some(1), "{}", stdout(&logs));
    let err = stderr(&logs);
    assert!(err.contains("is not on this client"), "{err}");
    // The servers still have all four, complete; a restarted client runs none of them again.
    // The client's first look at its allocations after the restart names all four; a job run
    // after it reaches the client in a later answer, so once that job's allocation has
    // started, the four have been seen and passed over.
    agent.kill9();
    agent.restart(&args);
    agent.wait_node_ready();
    let after = sh_batch_job(&dir.path, "after", 1, "echo after");
    agent.ok(&["job", "run", after.to_str().unwrap()]);
    wait_for("the later job's allocation to start", || {
        let log = agent.log_text();
        match log.matches("starting allocation").count() {
            0 => Err(log),
            n => Ok(n),
        }
    });
    let log = agent.log_text();
    assert_eq!(log.matches("starting allocation").count(), 1, "{log}");
    assert_eq!(complete(&agent), Ok(4));
}

#[test]
fn logs_rotate_and_keep_at_most_max_files() {
    let dir = TestDir::new();
    let data = dir.path.join("data");
    let agent = Agent::start(&data, &["-dev"]);
    agent.wait_node_ready();
    let job = dir.path.join("loud.hcl");
    // 3.5 MiB of numbered lines into 1 MiB files, keeping two: the first lines are gone.
    std::fs::write(
        &job,
        r#"job "loud" {
  type = "batch"
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "seq 1 500000; echo done"]
      }
      logs {
        max_files     = 2
        max_file_size = 1
      }
    }
  }
}
"#,
    )
    .unwrap();
    agent.ok(&["job", "run", job.to_str().unwrap()]);
    let id = wait_for("the batch allocation to complete", || {
        let out = agent.ok(&["job", "status", "-json", "loud"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        match v["allocations"].as_array().and_then(|a| a.first()) {
            Some(a) if a["client_status"] == "complete" => {
                Ok(a["id"].as_str().unwrap().to_string())
            }
            _ => Err(out),
        }
    });
    let logs = data
        .join("client")
        .join("allocs")
        .join(&id)
        .join("alloc")
        .join("logs");
    let mut files: Vec<(String, u64)> = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .filter(|(n, _)| n.starts_with("t.stdout."))
        .collect();
    files.sort();
    // seq 1 500000 is 3,388,895 bytes, plus "done\n": files 0-3, of which 2 and 3 remain.
    assert_eq!(
        files,
        vec![
            ("t.stdout.2".to_string(), 1024 * 1024),
            ("t.stdout.3".to_string(), 3_388_900 - 3 * 1024 * 1024)
        ]
    );
    assert_eq!(
        agent.ok(&["alloc", "logs", "-tail", "-n", "2", &id]),
        "500000\ndone\n"
    );
    // The whole log is what the kept files hold: it starts inside file 2, mid-stream.
    let all = agent.ok(&["alloc", "logs", &id]);
    assert_eq!(all.len() as u64, 1024 * 1024 + 3_388_900 - 3 * 1024 * 1024);
    assert!(!all.contains("\n1\n2\n3\n"));
}
