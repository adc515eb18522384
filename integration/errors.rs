//! Bad input: one clear sentence, a non-zero exit, no panic, no change of state.

use crate::harness::*;

#[test]
fn bad_input_is_refused_with_one_sentence() {
    let dir = TestDir::new();
    let agent = Agent::start(&dir.path.join("data"), &["-dev"]);

    let bad = dir.path.join("bad.hcl");
    std::fs::write(
        &bad,
        "job \"web\" {\n  group \"app\" {\n    update {\n      min_healthy_time = \"10m\"\n    }\n    task \"t\" {\n      driver = \"raw_exec\"\n      config { command = \"/bin/true\" }\n    }\n  }\n}\n",
    )
    .unwrap();
    let name = bad.to_str().unwrap();
    let run = agent.yurt(&["job", "run", name]);
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(
        stderr(&run).trim(),
        format!("Error: {name}:4: update.min_healthy_time (10m0s) must be less than healthy_deadline (5m0s)")
    );
    let plan = agent.yurt(&["job", "plan", name]);
    assert_eq!(plan.status.code(), Some(255), "plan errors exit 255");
    assert!(
        stderr(&plan).contains(":4: update.min_healthy_time"),
        "{}",
        stderr(&plan)
    );
    assert_eq!(agent.ok(&["job", "status"]).trim(), "No running jobs");

    let missing = agent.yurt(&["job", "run", "/no/such/file.hcl"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).starts_with("Error: cannot read job file /no/such/file.hcl"),
        "{}",
        stderr(&missing)
    );

    let unknown = agent.yurt(&["job", "status", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        stderr(&unknown).trim(),
        "Error querying job: job \"nope\" not found in namespace \"default\""
    );
    let stop = agent.yurt(&["job", "stop", "nope"]);
    assert_eq!(
        stderr(&stop).trim(),
        "Error deregistering job: job \"nope\" not found in namespace \"default\""
    );
    let alloc = agent.yurt(&["alloc", "status", "0000"]);
    assert_eq!(
        stderr(&alloc).trim(),
        "Error querying allocation: allocation \"0000\" not found"
    );

    // A new job with -check-index other than 0 is refused and not created.
    let good = web_job(&dir.path, "hello");
    let cas = agent.yurt(&["job", "run", "-check-index", "7", good.to_str().unwrap()]);
    assert_eq!(
        stderr(&cas).trim(),
        "Error submitting job: Enforcing job modify index 7: job does not exist"
    );
    assert_eq!(agent.ok(&["job", "status"]).trim(), "No running jobs");

    // No agent at the address: a clear sentence, exit 1.
    let out = std::process::Command::new(YURT)
        .args(["node", "status", "-address", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(
        msg.starts_with("Error: cannot reach a Yurt agent at http://127.0.0.1:1:"),
        "{msg}"
    );
    assert!(!msg.contains("panicked"), "{msg}");

    let version = agent.ok(&["version"]);
    assert!(version.starts_with("Yurt v"), "{version}");
}

#[test]
fn agent_refuses_a_missing_data_dir_and_bad_roles() {
    let out = std::process::Command::new(YURT)
        .args(["agent", "-server"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "Error: -data-dir is required (or use -dev for a throwaway one)"
    );
    let out = std::process::Command::new(YURT)
        .args(["agent"])
        .output()
        .unwrap();
    assert_eq!(
        stderr(&out).trim(),
        "Error: agent needs -dev, -server or -client"
    );
    // Raft timing is scaled by 1 to 10, from a flag or a config file.
    let dir = TestDir::new();
    let config = dir.path.join("fast.hcl");
    std::fs::write(
        &config,
        "server {\n  enabled = true\n  raft_multiplier = 0\n}\n",
    )
    .unwrap();
    let out = std::process::Command::new(YURT)
        .args(["agent", "-config", config.to_str().unwrap()])
        .args(["-data-dir", dir.path.join("d").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "Error: raft_multiplier must be between 1 and 10, not 0"
    );
    let out = std::process::Command::new(YURT)
        .args(["agent", "-server", "-raft-multiplier", "11"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "Error: raft_multiplier must be between 1 and 10, not 11"
    );
    // A client's driver settings: one sentence with the file and line, nothing started.
    for (src, want) in [
        (
            "client {\n  enabled = true\n  chroot_env = {\n    \"/bin\" = \"../bin\"\n  }\n}\n",
            "drivers.hcl:3: client: chroot_env: \"../bin\" must be an absolute path without \"..\"",
        ),
        (
            "plugin \"exec\" {\n  config {\n    pids_limit = -1\n  }\n}\n",
            "drivers.hcl:3: plugin \"exec\" config: pids_limit (-1) must not be negative",
        ),
    ] {
        std::fs::write(dir.path.join("drivers.hcl"), src).unwrap();
        let out = std::process::Command::new(YURT)
            .current_dir(&dir.path)
            .args(["agent", "-client", "-servers", "127.0.0.1:1"])
            .args(["-config", "drivers.hcl"])
            .args(["-data-dir", dir.path.join("c").to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert_eq!(stderr(&out).trim(), format!("Error: {want}"));
        assert!(!dir.path.join("c").join("client").exists());
    }
}

#[test]
fn agent_refuses_data_dirs_that_are_not_its_own_and_touches_nothing() {
    let dir = TestDir::new();
    let run = |data: &std::path::Path| {
        std::process::Command::new(YURT)
            .args([
                "agent",
                "-server",
                "-grpc-port",
                "0",
                "-http-port",
                "0",
                "-data-dir",
            ])
            .arg(data)
            .output()
            .unwrap()
    };

    let foreign = dir.path.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let out = run(&foreign);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "Error: {} is not a Yurt data dir: it is not empty and has no yurt-data-dir.json; use an empty or new directory",
            foreign.display()
        )
    );
    assert_eq!(
        std::fs::read_dir(&foreign).unwrap().count(),
        1,
        "nothing written"
    );

    // A real data dir from a newer Yurt.
    let newer = dir.path.join("newer");
    let mut agent = Agent::start(&newer, &["-server"]);
    agent.stop();
    std::fs::write(
        newer.join("yurt-data-dir.json"),
        r#"{"format": 7, "written_by": "7.1.0"}"#,
    )
    .unwrap();
    let out = run(&newer);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(
        msg.contains("was written by Yurt 7.1.0 (data dir format 7)"),
        "{msg}"
    );
    assert!(
        msg.trim_end().ends_with("downgrades are not supported"),
        "{msg}"
    );

    // A damaged snapshot in an otherwise fine data dir.
    let damaged = dir.path.join("damaged");
    let mut agent = Agent::start(&damaged, &["-server", "-raft-snapshot-threshold", "2"]);
    agent.ok(&[
        "job",
        "run",
        "-detach",
        web_job(&dir.path, "x").to_str().unwrap(),
    ]);
    agent.ok(&[
        "job",
        "run",
        "-detach",
        web_job(&dir.path, "y").to_str().unwrap(),
    ]);
    agent.stop();
    let snap = damaged.join("server/raft/snapshots/current.snap");
    assert!(snap.exists(), "a snapshot was written");
    std::fs::write(&snap, b"garbage").unwrap();
    let out = run(&damaged);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "snapshot {} is not a Yurt snapshot (bad header)",
            snap.display()
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&snap).unwrap(), b"garbage", "left as found");

    // A damaged Raft log: sled drops what it cannot read, here the vote; the server must not
    // take the empty log for a new one and bootstrap a cluster of its own.
    let lost = dir.path.join("lost");
    let mut agent = Agent::start(&lost, &["-server"]);
    agent.ok(&[
        "job",
        "run",
        "-detach",
        web_job(&dir.path, "z").to_str().unwrap(),
    ]);
    agent.stop();
    let log_dir = lost.join("server/raft/log");
    let db = log_dir.join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in bytes.iter_mut().skip(64).step_by(7) {
        *b ^= 0xff;
    }
    std::fs::write(&db, &bytes).unwrap();
    let out = run(&lost);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let msg = stderr(&out);
    assert!(
        msg.contains(&format!(
            "Error: cannot open the Raft log in {}: ",
            log_dir.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains("it has lost its contents: this server voted in a Raft election before"),
        "{msg}"
    );
    assert!(!msg.contains("bootstrapped"), "{msg}");
}

/// Waits for one allocation of `job` to reach a terminal client status and returns its
/// `alloc status` text.
fn finished_alloc(agent: &Agent, job: &str) -> String {
    wait_for(&format!("the allocation of {job} to fail"), || {
        let out = agent.ok(&["job", "status", "-json", job]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        match v["allocations"].as_array().and_then(|a| a.first()) {
            Some(a) if a["client_status"] == "failed" => {
                Ok(agent.ok(&["alloc", "status", a["id"].as_str().unwrap()]))
            }
            _ => Err(out),
        }
    })
}

fn one_shot_job(dir: &std::path::Path, name: &str, command: &str) -> String {
    let config = format!(
        r#"command = "{command}"
        args    = ["-c", "while true; do sleep 1; done"]"#
    );
    let path = once_job(dir, name, "batch", &config);
    path.to_str().unwrap().to_string()
}

#[test]
fn task_faults_fail_the_allocation_not_the_client_and_damaged_client_state_stops_it() {
    let dir = TestDir::new();
    let data = dir.path.join("data");
    let mut agent = Agent::start(&data, &["-dev"]);
    agent.wait_node_ready();

    // A command that does not exist fails its task with a clear event.
    agent.ok(&[
        "job",
        "run",
        "-detach",
        &one_shot_job(&dir.path, "missing", "/no/such/binary"),
    ]);
    let status = finished_alloc(&agent, "missing");
    assert!(
        status.contains("Driver Failure") && status.contains("cannot start \"/no/such/binary\""),
        "{status}"
    );

    // An allocation directory that cannot be made fails that allocation, with the reason.
    let allocs = data.join("client").join("allocs");
    let kept: Vec<_> = std::fs::read_dir(&allocs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let aside = dir.path.join("allocs-aside");
    std::fs::rename(&allocs, &aside).unwrap();
    std::fs::write(&allocs, b"not a directory").unwrap();
    agent.ok(&[
        "job",
        "run",
        "-detach",
        &one_shot_job(&dir.path, "nodir", "/bin/sh"),
    ]);
    let status = finished_alloc(&agent, "nodir");
    assert!(
        status.contains("Driver Failure") && status.contains("cannot create"),
        "{status}"
    );
    // The client itself is fine: the node is ready and other work runs.
    std::fs::remove_file(&allocs).unwrap();
    std::fs::rename(&aside, &allocs).unwrap();
    assert_eq!(kept.len(), 1);
    agent.ok(&[
        "job",
        "run",
        "-detach",
        web_job(&dir.path, "still here").to_str().unwrap(),
    ]);
    agent.wait_running("web", 2);
    assert!(agent.ok(&["node", "status"]).contains("ready"));

    // Damaged client state: the agent refuses to start and leaves the running tasks alone.
    let pids = wait_for("two live tasks", || {
        let pids: Vec<i32> = task_pids(&data).into_iter().filter(|p| alive(*p)).collect();
        if pids.len() == 2 {
            Ok(pids)
        } else {
            Err(format!("{pids:?}"))
        }
    });
    agent.kill9();
    let db = data.join("client").join("state").join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    let len = bytes.len();
    for b in &mut bytes[64..len - 64] {
        *b = 0xde;
    }
    std::fs::write(&db, bytes).unwrap();
    let out = std::process::Command::new(YURT)
        .args([
            "agent",
            "-dev",
            "-grpc-port",
            "0",
            "-http-port",
            "0",
            "-data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let msg = stderr(&out);
    let state = data.join("client").join("state");
    assert!(
        msg.contains(&format!(
            "client state in {} is unreadable",
            state.display()
        )) || msg.contains(&format!("cannot open client state in {}", state.display())),
        "{msg}"
    );
    assert!(pids.iter().all(|p| alive(*p)), "tasks left running");
}
