//! The seed upgrade guides as tests, from the previous release (`RELEASES`, built from its
//! commit) to this build, with real processes: servers upgraded in place one at a time (leader
//! last) and replaced by new ones; clients upgraded in place within heartbeat_grace and by
//! drain; a feature refused while an old server remains; a downgrade refused untouched.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::*;

/// Servers `s0..s{n-1}` of binary `bin` expecting `n`, all joining the first.
fn servers(bin: &Path, dir: &TestDir, n: usize, extra: &[&str]) -> (Vec<Agent>, Vec<Vec<String>>) {
    let mut agents: Vec<Agent> = Vec::new();
    let mut all_args = Vec::new();
    for i in 0..n {
        let args = server_args(i, n, agents.first(), extra);
        agents.push(Agent::start_bin(
            bin,
            &dir.path.join(format!("s{i}")),
            &refs(&args),
        ));
        all_args.push(args);
    }
    (agents, all_args)
}

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A job that waits for a datacenter nobody has: registering it is a write, nothing more.
fn write_job(dir: &Path, id: &str) -> String {
    let path = dir.join(format!("{id}.hcl"));
    std::fs::write(
        &path,
        format!(
            "job \"{id}\" {{\n  datacenters = [\"nowhere\"]\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n    }}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// Writes succeed through `agent` (after at most a moment).
fn write_through(agent: &Agent, dir: &Path, id: &str) {
    let file = write_job(dir, id);
    wait_for(&format!("the write {id}"), || {
        let out = agent.yurt(&["job", "run", "-detach", &file]);
        if out.status.success() {
            Ok(())
        } else {
            Err(stderr(&out))
        }
    });
}

/// A service job of two allocations that migrate quickly (for the client drain).
fn service_job(dir: &Path) -> String {
    let path = dir.join("web.hcl");
    std::fs::write(
        &path,
        r#"job "web" {
  datacenters = ["dc1"]
  group "app" {
    count = 2
    migrate {
      max_parallel     = 1
      health_check     = "task_states"
      min_healthy_time = "500ms"
      healthy_deadline = "30s"
    }
    task "server" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 1; done"]
      }
      resources {
        cpu    = 10
        memory = 16
      }
    }
  }
}
"#,
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// The `server members` line of server `name`.
fn member_line(agent: &Agent, name: &str) -> String {
    agent
        .ok(&["server", "members"])
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_default()
        .to_string()
}

/// IDs of the job's running allocations, sorted.
fn running(agent: &Agent, job: &str) -> Vec<String> {
    let mut ids = agent.wait_running(job, 2);
    ids.sort();
    ids
}

#[test]
fn servers_then_clients_upgraded_in_place_and_by_drain_as_the_seed_guides_do() {
    let (old_version, old) = previous_release();
    let new = PathBuf::from(YURT);
    let dir = TestDir::new();
    let (mut s, args) = servers(&old, &dir, 3, &[]);
    leader(&s, &[0, 1, 2], 3);
    let list = grpc_list(&s);
    let client_args = |name: &str| -> Vec<String> {
        ["-client", "-servers", &list, "-node", name]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let mut clients: Vec<Agent> = (0..2)
        .map(|i| {
            let name = format!("c{i}");
            Agent::start_bin(&old, &dir.path.join(&name), &refs(&client_args(&name)))
        })
        .collect();
    wait_for("both clients ready", || {
        let out = s[0].ok(&["node", "status"]);
        if out.lines().filter(|l| l.ends_with("ready")).count() == 2 {
            Ok(())
        } else {
            Err(out)
        }
    });
    // One allocation on each client.
    s[0].ok(&[
        "operator",
        "scheduler",
        "set-config",
        "-scheduler-algorithm",
        "spread",
    ]);
    s[0].ok(&["job", "run", "-detach", &service_job(&dir.path)]);
    let allocs = running(&s[0], "web");
    let pids: Vec<Vec<i32>> = clients
        .iter()
        .map(|c| wait_task_pids(&c.data_dir, 1))
        .collect();

    // Servers: followers first, the leader last; after each, its new Build is shown, the logs
    // converge and writes go through.
    let first_leader = leader(&s, &[0, 1, 2], 3);
    let mut order: Vec<usize> = (0..3).filter(|i| *i != first_leader).collect();
    order.push(first_leader);
    for (step, &i) in order.iter().enumerate() {
        s[i].restart_bin(&new, &refs(&args[i]));
        let name = format!("s{i}");
        wait_for(&format!("{name} to be back with the new build"), || {
            let line = member_line(&s[i], &name);
            if line.contains(" alive ") && line.contains(env!("CARGO_PKG_VERSION")) {
                Ok(())
            } else {
                Err(s[i].ok(&["server", "members"]))
            }
        });
        leader(&s, &[0, 1, 2], 3);
        converged(&s, &[0, 1, 2]);
        write_through(&s[i], &dir.path, &format!("write-{step}"));
        if step == 0 {
            // A half-finished upgrade: the upgraded server crashes. The others keep serving,
            // nothing acknowledged is lost, and it comes back on its data dir.
            s[i].kill9();
            let other = order[1];
            write_through(&s[other], &dir.path, "while-one-is-down");
            s[i].restart_bin(&new, &refs(&args[i]));
            leader(&s, &[0, 1, 2], 3);
            converged(&s, &[0, 1, 2]);
            let jobs = s[i].ok(&["job", "status"]);
            assert!(jobs.contains("while-one-is-down"), "{jobs}");
            // A feature of the new version waits for every server.
            let out = s[i].yurt(&["node", "drain", "-enable", "-yes", "-force", "c0"]);
            assert_eq!(out.status.code(), Some(1));
            let err = stderr(&out);
            assert!(
                err.contains("node drain requires all servers at version 0.2.0; these are older: ")
                    && err.contains(&format!("({old_version})")),
                "{err}"
            );
            let out = s[i].yurt(&[
                "operator",
                "scheduler",
                "set-config",
                "-memory-oversubscription",
                "true",
            ]);
            let err = stderr(&out);
            assert!(
                err.contains(
                    "memory oversubscription requires all servers at version 0.2.0; these are older: "
                ) && err.contains(&format!("({old_version})")),
                "{err}"
            );
            let out = s[i].yurt(&["acl", "bootstrap"]);
            let err = stderr(&out);
            assert!(
                err.contains(
                    "ACL support requires all servers at version 0.2.0; these are older: "
                ) && err.contains(&format!("({old_version})")),
                "{err}"
            );
            // Variables (and the keyring's first key) wait too: nothing is written.
            let out = s[i].yurt(&["var", "put", "app/db", "user=me"]);
            let err = stderr(&out);
            assert!(
                err.contains("variables requires all servers at version 0.2.0; these are older: ")
                    && err.contains(&format!("({old_version})")),
                "{err}"
            );
            let keys = s[i].ok(&["operator", "root", "keyring", "list"]);
            assert!(keys.contains("No keys yet"), "{keys}");
            let out = s[i].yurt(&["namespace", "apply", "prod"]);
            let err = stderr(&out);
            assert!(
                err.contains("namespaces requires all servers at version 0.2.0; these are older: "),
                "{err}"
            );
            // A count still changes, but its scaling event waits (an older server would not
            // record it); an event alone is refused.
            s[i].ok(&["job", "scale", "-detach", "write-0", "2"]);
            let events = s[i].ok(&["job", "scaling-events", "write-0"]);
            assert_eq!(events.trim(), "No events found");
            let job = s[i].ok(&["job", "inspect", "write-0"]);
            assert!(job.contains("\"Count\": 2"), "{job}");
            // `alloc stop` uses the drainer's command: it waits for the same servers.
            let out = s[i].yurt(&["alloc", "stop", "-detach", &allocs[0]]);
            let err = stderr(&out);
            assert!(
                err.contains("alloc stop requires all servers at version 0.2.0; these are older: "),
                "{err}"
            );
        }
    }
    // Each server learns the others' builds from its periodic look at them.
    wait_for("server members to show three servers of this build", || {
        let members = s[0].ok(&["server", "members"]);
        if members.matches(env!("CARGO_PKG_VERSION")).count() == 3 {
            Ok(())
        } else {
            Err(members)
        }
    });
    // No allocation restarted.
    assert_eq!(running(&s[0], "web"), allocs);
    for (c, before) in clients.iter().zip(&pids) {
        assert_eq!(&task_pids(&c.data_dir), before);
    }

    // Client c0 in place, within heartbeat_grace: same tasks, never down. Its configuration
    // has no plugin block, so this build has raw_exec off: the raw_exec task it runs is
    // re-attached, never killed, and the node says why no new one comes.
    let plain = dir.path.join("c0-client.hcl");
    std::fs::write(&plain, "client {\n  enabled = true\n}\n").unwrap();
    let mut c0_plain = client_args("c0");
    c0_plain.extend(["-config".to_string(), plain.display().to_string()]);
    clients[0].restart_bin(&new, &refs(&c0_plain));
    wait_for("c0 to be back with the new build", || {
        let out = s[0].ok(&["node", "status", "-json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        let node = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "c0")
            .cloned()
            .unwrap_or_default();
        assert_ne!(node["status"], "down", "c0 went down: {out}");
        if node["version"].as_str() == Some(env!("CARGO_PKG_VERSION")) {
            Ok(())
        } else {
            Err(out)
        }
    });
    assert_eq!(task_pids(&clients[0].data_dir), pids[0]);
    assert!(pids[0].iter().all(|p| alive(*p)), "c0's task was killed");
    assert_eq!(running(&s[0], "web"), allocs);
    let c0 = s[0].ok(&["node", "status", "-verbose", "c0"]);
    let raw = c0
        .lines()
        .find(|l| l.starts_with("raw_exec "))
        .unwrap_or_default();
    assert!(
        raw.contains("false") && raw.contains("plugin \"raw_exec\""),
        "the node says why raw_exec tasks do not come: {c0}"
    );
    let log = clients[0].log_text();
    assert!(log.contains("task driver raw_exec: disabled"), "{log}");
    // Enabled in its configuration (the harness's default for a client), c0 takes raw_exec
    // work again, its task still the same.
    clients[0].restart_bin(&new, &refs(&client_args("c0")));
    wait_for("c0 to offer raw_exec", || {
        let c0 = s[0].ok(&["node", "status", "-verbose", "c0"]);
        if c0
            .lines()
            .any(|l| l.starts_with("Drivers ") && l.contains("raw_exec"))
        {
            Ok(())
        } else {
            Err(c0)
        }
    });
    assert_eq!(task_pids(&clients[0].data_dir), pids[0]);
    assert!(pids[0].iter().all(|p| alive(*p)), "c0's task was killed");

    // Client c1 by drain (now that every server has node drain): its allocation moves to c0,
    // then c1 comes back with the new build and takes work again.
    let out = s[1].ok(&["node", "drain", "-enable", "-yes", "c1"]);
    assert!(out.contains("Drain complete for node"), "{out}");
    // The drain is complete once the servers have stopped the allocation; the client then
    // stops its task.
    wait_for("c1's old task to stop", || {
        let left: Vec<&i32> = pids[1].iter().filter(|p| alive(**p)).collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?} still alive"))
        }
    });
    clients[1].restart_bin(&new, &refs(&client_args("c1")));
    s[1].ok(&["node", "eligibility", "-enable", "c1"]);
    let nodes = s[1].ok(&["node", "status"]);
    assert_eq!(
        nodes.matches("eligible").count() - nodes.matches("ineligible").count(),
        2,
        "{nodes}"
    );
    let now = running(&s[2], "web");
    assert_eq!(now.len(), 2);
    let list = s[2].ok(&["job", "status"]);
    for step in 0..3 {
        assert!(list.contains(&format!("write-{step}")), "{list}");
    }
}

#[test]
fn old_servers_replaced_by_new_ones_keep_quorum_and_force_leave_removes_them() {
    let (_, old) = previous_release();
    let new = PathBuf::from(YURT);
    let dir = TestDir::new();
    let quick = ["-server-stabilization-time", "1s"];
    let (mut all, _) = servers(&old, &dir, 3, &quick);
    leader(&all, &[0, 1, 2], 3);
    write_through(&all[0], &dir.path, "before");
    // Three new servers join the old cluster.
    for i in 3..6 {
        let name = format!("s{i}");
        let join = all[0].grpc.clone();
        let args = [
            "-server",
            "-node",
            &name,
            "-bootstrap-expect",
            "3",
            "-join",
            &join,
            "-server-stabilization-time",
            "1s",
        ];
        all.push(Agent::start_bin(&new, &dir.path.join(&name), &args));
    }
    leader(&all, &[0, 1, 2, 3, 4, 5], 6);
    converged(&all, &[0, 1, 2, 3, 4, 5]);
    // The old ones go, one at a time; those not `left` are removed with force-leave.
    let mut alive: Vec<usize> = (0..6).collect();
    for i in 0..3 {
        all[i].stop();
        alive.retain(|a| *a != i);
        let asker = alive[alive.len() - 1];
        let name = format!("s{i}");
        wait_for(&format!("{name} to be failed or left"), || {
            let line = member_line(&all[asker], &name);
            if line.contains(" failed ") || line.contains(" left ") {
                Ok(())
            } else {
                Err(all[asker].ok(&["server", "members"]))
            }
        });
        if member_line(&all[asker], &name).contains(" failed ") {
            all[asker].ok(&["server", "force-leave", &name]);
        }
        leader(&all, &alive, 5 - i);
        write_through(&all[asker], &dir.path, &format!("after-{i}"));
    }
    let peers = all[3].ok(&["operator", "raft", "list-peers"]);
    for i in 3..6 {
        assert!(peers.contains(&format!("s{i} ")), "{peers}");
    }
    let jobs = all[5].ok(&["job", "status"]);
    for id in ["before", "after-0", "after-1", "after-2"] {
        assert!(jobs.contains(id), "{jobs}");
    }
}

#[test]
fn the_previous_release_refuses_a_data_dir_this_build_wrote_and_changes_nothing() {
    let (old_version, old) = previous_release();
    let dir = TestDir::new();
    let data = dir.path.join("server");
    let mut server = Agent::start(&data, &["-server", "-bootstrap-expect", "1"]);
    write_through(&server, &dir.path, "kept");
    server.stop();
    let listing = |d: &Path| -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![d.to_path_buf()];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).unwrap().flatten() {
                let path = e.path();
                if path.is_dir() {
                    stack.push(path);
                } else if !path.ends_with("agent-addrs.json") {
                    out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
                }
            }
        }
        out.sort();
        out
    };
    let before = listing(&data);
    let out = std::process::Command::new(&old)
        .args(["agent", "-server", "-bootstrap-expect", "1", "-data-dir"])
        .arg(&data)
        .args(["-grpc-port", "0", "-http-port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("downgrades are not supported"), "{text}");
    assert!(
        text.contains(&format!("this is Yurt {old_version}")),
        "{text}"
    );
    assert_eq!(listing(&data), before, "the data dir is untouched");
    // This build still reads it.
    let again = Agent::start(&data, &["-server", "-bootstrap-expect", "1"]);
    wait_for("the kept job", || {
        let jobs = stdout(&again.yurt(&["job", "status"]));
        if jobs.contains("kept") {
            Ok(())
        } else {
            Err(jobs)
        }
    });
}

#[test]
fn every_released_versions_data_dir_and_snapshot_load_in_this_build() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let releases = std::fs::read_to_string(root.join("RELEASES")).unwrap();
    let versions: Vec<&str> = releases
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(!versions.is_empty());
    for version in versions {
        let fixtures = root.join("fixtures").join(version);
        let dir = TestDir::new();
        // The data dir, as that version left it: this build starts on it and has its job.
        let data = dir.path.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let tar = std::process::Command::new("tar")
            .arg("-xzf")
            .arg(fixtures.join("server-data-dir.tar.gz"))
            .arg("-C")
            .arg(&data)
            .status()
            .unwrap();
        assert!(tar.success(), "{version}: cannot unpack its data dir");
        let server = Agent::start(&data, &["-server", "-bootstrap-expect", "1"]);
        let history = wait_for(&format!("{version}'s job in its data dir"), || {
            let out = server.yurt(&["job", "history", "kept"]);
            if out.status.success() {
                Ok(stdout(&out))
            } else {
                Err(stderr(&out))
            }
        });
        assert!(
            history.contains("Version     = 1") && history.contains("Version     = 0"),
            "{version}: {history}"
        );
        write_through(&server, &dir.path, "after-upgrade");
        let marker = std::fs::read_to_string(data.join("yurt-data-dir.json")).unwrap();
        assert!(marker.contains(env!("CARGO_PKG_VERSION")), "{marker}");

        // Its snapshot restores into a new cluster of this build.
        let fresh = Agent::start(
            &dir.path.join("fresh"),
            &["-server", "-bootstrap-expect", "1"],
        );
        write_through(&fresh, &dir.path, "replaced-by-restore");
        let snap = fixtures.join("state.snap");
        fresh.ok(&["operator", "snapshot", "restore", snap.to_str().unwrap()]);
        let jobs = fresh.ok(&["job", "status"]);
        assert!(jobs.contains("kept"), "{version}: {jobs}");
        assert!(!jobs.contains("replaced-by-restore"), "{version}: {jobs}");
    }
}

#[test]
fn upgrade_check_says_when_a_server_may_go_and_which() {
    let dir = TestDir::new();
    let (mut s, _) = servers(Path::new(YURT), &dir, 3, &[]);
    let leader_at = leader(&s, &[0, 1, 2], 3);
    write_through(&s[0], &dir.path, "w");
    // No Raft snapshot yet: not safe, and it says what to do.
    let out = s[1].yurt(&["operator", "upgrade-check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("no Raft snapshot yet"),
        "{}",
        stdout(&out)
    );
    s[leader_at].ok(&["operator", "raft", "snapshot"]);
    let ok = s[1].ok(&["operator", "upgrade-check"]);
    let follower = (0..3).find(|i| *i != leader_at).unwrap();
    assert!(
        ok.contains(&format!(
            "Safe to upgrade one server now: s{follower} (a follower; the leader goes last)"
        )),
        "{ok}"
    );
    // A server down: not safe, named.
    let victim = (leader_at + 1) % 3;
    s[victim].kill9();
    let asker = (0..3).find(|i| *i != victim).unwrap();
    let out = wait_for("upgrade-check to notice the dead server", || {
        let out = s[asker].yurt(&["operator", "upgrade-check"]);
        let text = stdout(&out);
        if out.status.code() == Some(1) && text.contains(&format!("s{victim} is failed")) {
            Ok(text)
        } else {
            Err(format!("{text}{}", stderr(&out)))
        }
    });
    assert!(out.contains("Not safe to take a server down now"), "{out}");
}

#[test]
fn a_client_newer_than_its_server_is_refused_and_says_so() {
    let (old_version, old) = previous_release();
    let dir = TestDir::new();
    let server = Agent::start_bin(
        &old,
        &dir.path.join("server"),
        &["-server", "-bootstrap-expect", "1"],
    );
    // This build's client against the previous release's server.
    let client = Agent::start(
        &dir.path.join("client"),
        &["-client", "-servers", &server.grpc, "-node", "too-new"],
    );
    let log = wait_for("the client to refuse the older server", || {
        let log = client.log_text();
        if log.contains("newer than server") {
            Ok(log)
        } else {
            Err(log)
        }
    });
    assert!(
        log.contains(&format!(
            "client runs Yurt {}, newer than server Yurt {old_version}: upgrade the servers before the clients",
            env!("CARGO_PKG_VERSION")
        )),
        "{log}"
    );
    // It runs nothing there and tells its agent-info it is not registered.
    let info = client.ok(&["agent-info"]);
    assert!(info.contains("last_heartbeat = never"), "{info}");
}

#[test]
fn a_new_leader_catches_up_a_server_of_the_previous_release_in_json_by_snapshot_and_log() {
    let (_, old) = previous_release();
    let new = PathBuf::from(YURT);
    let dir = TestDir::new();
    // s0 and s1 run this build and compact their log behind a snapshot every 8 entries; s2
    // runs the previous release.
    let compact = ["-raft-snapshot-threshold", "8", "-raft-trailing-logs", "0"];
    let mut s: Vec<Agent> = Vec::new();
    let mut args: Vec<Vec<String>> = Vec::new();
    let versions: [(&PathBuf, &[&str]); 3] = [(&new, &compact), (&new, &compact), (&old, &[])];
    for (i, (bin, extra)) in versions.into_iter().enumerate() {
        let a = server_args(i, 3, s.first(), extra);
        s.push(Agent::start_bin(
            bin,
            &dir.path.join(format!("s{i}")),
            &refs(&a),
        ));
        args.push(a);
    }
    leader(&s, &[0, 1, 2], 3);
    // With s2 away, one of the new servers leads, and s2 misses writes the leader's log no
    // longer holds: back, it cannot win an election, and catches up from the new leader with
    // its snapshot, then its log.
    s[2].stop();
    let l = leader(&s, &[0, 1], 3);
    for i in 0..12 {
        write_through(&s[l], &dir.path, &format!("away-{i:02}"));
    }
    s[2].restart_bin(&old, &refs(&args[2]));
    write_through(&s[l], &dir.path, "after-s2-back");
    converged(&s, &[0, 1, 2]);
    let jobs = s[2].ok(&["job", "status", "-stale"]);
    for id in ["away-00", "away-11", "after-s2-back"] {
        assert!(jobs.contains(id), "{jobs}");
    }
    assert!(
        s[2].log_text()
            .contains("installed a snapshot from the leader"),
        "{}",
        s[2].log_text()
    );
    let said = |i: usize| {
        s[i].log_text()
            .contains("predates binary replication (Yurt 0.1): sending it JSON")
    };
    assert!(said(0) || said(1), "{}", s[l].log_text());
    // Between the new servers replication is binary: only s2 was ever sent JSON.
    let s2 = format!(" at {} predates", s[2].grpc);
    for i in [0, 1] {
        for line in s[i].log_text().lines() {
            if line.contains("predates binary replication") {
                assert!(line.contains(&s2), "{line}");
            }
        }
    }
}
