//! Highly available servers: several real server processes on loopback.

use crate::harness::*;

/// A small job with its own ID, written to a file.
fn job_file(dir: &std::path::Path, id: &str) -> String {
    let path = dir.join(format!("{id}.hcl"));
    std::fs::write(
        &path,
        format!(
            "job \"{id}\" {{\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n    }}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

struct Cluster {
    servers: Vec<Agent>,
    args: Vec<Vec<String>>,
}

impl Cluster {
    /// Starts `n` servers expecting `n`; all but the first join the first.
    fn start(dir: &TestDir, n: usize, extra: &[&str]) -> Cluster {
        let mut c = Cluster {
            servers: vec![],
            args: vec![],
        };
        for i in 0..n {
            let mut args: Vec<String> = [
                "-server",
                "-node",
                &format!("s{}", i + 1),
                "-bootstrap-expect",
                &n.to_string(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if let Some(first) = c.servers.first() {
                args.extend(["-join".to_string(), first.grpc.clone()]);
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            c.add(dir, &format!("s{}", i + 1), args);
        }
        c
    }

    fn add(&mut self, dir: &TestDir, name: &str, args: Vec<String>) {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.servers.push(Agent::start(&dir.path.join(name), &refs));
        self.args.push(args);
    }

    fn restart(&mut self, i: usize) {
        let refs: Vec<String> = self.args[i].clone();
        let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
        self.servers[i].restart(&refs);
    }

    /// Waits for a leader that the given servers agree on, with `voters` voters; returns the
    /// leader's index in `servers` ([`crate::harness::leader`]).
    fn leader(&self, alive: &[usize], voters: usize) -> usize {
        leader(&self.servers, alive, voters)
    }

    /// The job IDs a server returns on a consistent read.
    fn jobs(&self, i: usize) -> Vec<String> {
        let out = self.servers[i].ok(&["job", "status", "-json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut ids: Vec<String> = v["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|j| j["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    }

    /// The seed guide's check: `last_log_index` is the same on every given server.
    fn wait_converged(&self, alive: &[usize]) -> u64 {
        converged(&self.servers, alive)
    }
}

#[test]
fn cluster_of_three_and_of_five_bootstrap_once() {
    for n in [3usize, 5] {
        let dir = TestDir::new();
        let c = Cluster::start(&dir, n, &[]);
        let all: Vec<usize> = (0..n).collect();
        let leader = c.leader(&all, n);
        let members = wait_for(&format!("{n} servers alive"), || {
            let out = c.servers[(leader + 1) % n].ok(&["server", "members"]);
            if out.matches(" alive ").count() == n {
                Ok(out)
            } else {
                Err(out)
            }
        });
        assert_eq!(
            members.matches(" true ").count(),
            1,
            "one leader:\n{members}"
        );
        // Any server takes writes (forwarded to the leader) and answers consistent reads.
        for i in 0..n {
            c.servers[i].ok(&[
                "job",
                "run",
                "-detach",
                &job_file(&dir.path, &format!("j{i}")),
            ]);
        }
        let want: Vec<String> = (0..n).map(|i| format!("j{i}")).collect();
        for i in 0..n {
            assert_eq!(c.jobs(i), want, "server {i}");
        }
        c.wait_converged(&all);
        let info = c.servers[(leader + 1) % n].ok(&["agent-info"]);
        assert!(info.contains(&format!("num_peers = {}", n - 1)), "{info}");
        assert!(info.contains("leader = false"), "{info}");
    }
}

#[test]
fn a_server_that_stops_answering_is_logged_once_and_its_return_once() {
    let dir = TestDir::new();
    let mut c = Cluster::start(&dir, 3, &[]);
    let l = c.leader(&[0, 1, 2], 3);
    let f = (l + 1) % 3;
    let gone = format!("at {} does not answer Raft calls", c.servers[f].grpc);
    let back = format!("at {} answers Raft calls again", c.servers[f].grpc);
    let before = c.servers[l].log_text().len();
    c.servers[f].kill9();
    wait_for("the leader to say the server does not answer", || {
        let log = c.servers[l].log_text();
        log.contains(&gone).then_some(()).ok_or(log)
    });
    // Writes go on with the other follower, and replication to the dead one retries meanwhile.
    for i in 0..3 {
        c.servers[l].ok(&[
            "job",
            "run",
            "-detach",
            &job_file(&dir.path, &format!("q{i}")),
        ]);
    }
    c.restart(f);
    wait_for("the leader to say the server answers again", || {
        let log = c.servers[l].log_text();
        log.contains(&back).then_some(()).ok_or(log)
    });
    let log = c.servers[l].log_text().split_off(before);
    assert_eq!(log.matches(&gone).count(), 1, "{log}");
    assert_eq!(log.matches(&back).count(), 1, "{log}");
    // openraft's own line for every failed retry stays out of the default log.
    assert!(!log.contains("RPCError"), "{log}");
    c.wait_converged(&[0, 1, 2]);
}

#[test]
fn killing_the_leader_under_writes_loses_no_acknowledged_write() {
    let dir = TestDir::new();
    let mut c = Cluster::start(&dir, 3, &[]);
    let leader = c.leader(&[0, 1, 2], 3);
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let mut acked = Vec::new();
    let mut killed = false;
    let mut i = 0;
    // Writes through a follower; the leader dies after the 10th.
    while acked.len() < 25 {
        let id = format!("w{i:03}");
        i += 1;
        let target = &c.servers[others[i % 2]];
        if target
            .yurt(&["job", "run", "-detach", &job_file(&dir.path, &id)])
            .status
            .success()
        {
            acked.push(id);
        }
        if acked.len() == 10 && !killed {
            c.servers[leader].kill9();
            killed = true;
        }
        assert!(i < 2000, "writes did not resume after the leader died");
    }
    let new_leader = c.leader(&others, 3);
    assert_ne!(new_leader, leader);
    for &s in &others {
        let jobs = c.jobs(s);
        for id in &acked {
            assert!(
                jobs.contains(id),
                "acknowledged write {id} lost on server {s}"
            );
        }
    }
    // The old leader comes back, catches up, and all agree (seed guide step 2).
    c.restart(leader);
    c.leader(&[0, 1, 2], 3);
    c.wait_converged(&[0, 1, 2]);
    assert_eq!(c.jobs(leader).len(), acked.len());
}

#[test]
fn all_servers_killed_at_once_come_back_with_every_write() {
    let dir = TestDir::new();
    let mut c = Cluster::start(&dir, 3, &["-raft-snapshot-threshold", "5"]);
    c.leader(&[0, 1, 2], 3);
    for i in 0..12 {
        c.servers[i % 3].ok(&[
            "job",
            "run",
            "-detach",
            &job_file(&dir.path, &format!("k{i:02}")),
        ]);
    }
    let before = c.jobs(0);
    assert_eq!(before.len(), 12);
    for s in &mut c.servers {
        s.kill9();
    }
    for i in 0..3 {
        c.restart(i);
    }
    c.leader(&[0, 1, 2], 3);
    for i in 0..3 {
        assert_eq!(c.jobs(i), before, "server {i}");
    }
    c.wait_converged(&[0, 1, 2]);
}

#[test]
fn new_server_joins_as_non_voter_installs_a_snapshot_then_votes_and_dead_servers_leave() {
    let dir = TestDir::new();
    let extra = [
        "-raft-snapshot-threshold",
        "8",
        "-raft-trailing-logs",
        "0",
        "-server-stabilization-time",
        "3s",
    ];
    let mut c = Cluster::start(&dir, 3, &extra);
    c.leader(&[0, 1, 2], 3);
    for i in 0..20 {
        c.servers[i % 3].ok(&[
            "job",
            "run",
            "-detach",
            &job_file(&dir.path, &format!("n{i:02}")),
        ]);
    }
    // The log was compacted behind a snapshot, so the newcomer must install it.
    let mut args: Vec<String> = ["-server", "-node", "s4", "-bootstrap-expect", "3", "-join"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(c.servers[1].grpc.clone());
    args.extend(extra.iter().map(|s| s.to_string()));
    c.add(&dir, "s4", args);
    wait_for("s4 to join as a non-voter", || {
        let out = c.servers[0].ok(&["operator", "raft", "list-peers"]);
        let line = out.lines().find(|l| l.starts_with("s4 ")).map(String::from);
        match line {
            Some(l) if l.contains(" false ") => Ok(()),
            _ => Err(out),
        }
    });
    c.leader(&[0, 1, 2, 3], 4);
    let info = c.servers[3].ok(&["agent-info"]);
    let snap: u64 = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("last_snapshot_index = "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(snap > 0, "s4 has a snapshot:\n{info}");
    assert!(
        c.servers[3]
            .log_text()
            .contains("installed a snapshot from the leader"),
        "s4 caught up by installing the leader's snapshot:\n{}",
        c.servers[3].log_text()
    );
    assert_eq!(
        c.servers[3]
            .ok(&["job", "status", "-stale"])
            .matches("pending")
            .count(),
        20
    );
    c.wait_converged(&[0, 1, 2, 3]);

    // A server dies: it shows as failed, force-leave removes it from Raft and marks it left.
    let victim = (c.leader(&[0, 1, 2, 3], 4) + 1) % 4;
    let name = format!("s{}", victim + 1);
    c.servers[victim].kill9();
    let alive: Vec<usize> = (0..4).filter(|i| *i != victim).collect();
    let asker = &c.servers[alive[0]];
    wait_for(&format!("{name} to be failed"), || {
        let out = asker.ok(&["server", "members"]);
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or("")
            .to_string();
        if line.contains(" failed ") {
            Ok(())
        } else {
            Err(out)
        }
    });
    asker.ok(&["server", "force-leave", &name]);
    let members = asker.ok(&["server", "members"]);
    assert!(
        members
            .lines()
            .any(|l| l.starts_with(&format!("{name} ")) && l.contains(" left ")),
        "{members}"
    );
    // Every other server learns it too.
    for &i in &alive {
        wait_left(&c.servers[i], &name);
    }
    c.leader(&alive, 3);
    let peers = asker.ok(&["operator", "raft", "list-peers"]);
    assert!(
        !peers.lines().any(|l| l.starts_with(&format!("{name} "))),
        "{peers}"
    );

    // remove-peer by address takes out another (dead) one; writes still work with 2 of 2.
    let second = alive[2];
    let addr = c.servers[second].grpc.clone();
    c.servers[second].kill9();
    let remaining: Vec<usize> = alive.iter().copied().filter(|i| *i != second).collect();
    let asker = &c.servers[remaining[0]];
    wait_for("remove-peer to succeed", || {
        let out = asker.yurt(&["operator", "raft", "remove-peer", "-peer-address", &addr]);
        if out.status.success() {
            Ok(())
        } else {
            Err(stderr(&out))
        }
    });
    c.leader(&remaining, 2);
    asker.ok(&["job", "run", "-detach", &job_file(&dir.path, "after")]);
    assert!(c.jobs(remaining[1]).contains(&"after".to_string()));
}

#[test]
fn snapshot_save_change_restore_reaches_every_server_and_damage_is_refused() {
    let dir = TestDir::new();
    let c = Cluster::start(&dir, 3, &[]);
    c.leader(&[0, 1, 2], 3);
    c.servers[0].ok(&["job", "run", "-detach", &job_file(&dir.path, "kept")]);
    // The registration's evaluation, and the blocked one the scheduler leaves (no clients).
    wait_for("the scheduler to run", || {
        let out = c.servers[1].ok(&["eval", "list", "-job", "kept", "-json"]);
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        match v.as_array().map_or(0, |a| a.len()) {
            2 => Ok(()),
            _ => Err(out),
        }
    });
    let file = dir.path.join("backup.snap");
    let file = file.to_str().unwrap();
    let out = c.servers[1].ok(&["operator", "snapshot", "save", file]);
    assert_eq!(out.trim(), format!("State file written to {file}"));
    let again = c.servers[1].yurt(&["operator", "snapshot", "save", file]);
    assert_eq!(
        stderr(&again).trim(),
        format!("Error: {file} already exists: choose a new file name")
    );
    let inspect = c.servers[1].ok(&["operator", "snapshot", "inspect", file]);
    assert!(
        inspect.contains("Contents = 1 jobs, 0 nodes, 0 allocations, 2 evaluations"),
        "{inspect}"
    );

    c.servers[2].ok(&["job", "run", "-detach", &job_file(&dir.path, "gone")]);
    for i in 0..3 {
        assert_eq!(c.jobs(i), vec!["gone", "kept"]);
    }

    // Damaged copies are refused and change nothing.
    let good = std::fs::read(file).unwrap();
    let mut flipped = good.clone();
    let at = good.len() - 40;
    flipped[at] ^= 0x01;
    let bad = dir.path.join("flipped.snap");
    std::fs::write(&bad, &flipped).unwrap();
    let out = c.servers[0].yurt(&["operator", "snapshot", "restore", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "Error: {}: snapshot file is corrupt: its checksum does not match its contents",
            bad.display()
        )
    );
    let short = dir.path.join("short.snap");
    std::fs::write(&short, &good[..good.len() / 2]).unwrap();
    let out = c.servers[0].yurt(&["operator", "snapshot", "restore", short.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("snapshot file is truncated or damaged"),
        "{}",
        stderr(&out)
    );
    let out = c.servers[0].yurt(&["operator", "snapshot", "restore", "/etc/hostname"]);
    assert!(
        stderr(&out).contains("not a Yurt snapshot file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(c.jobs(0), vec!["gone", "kept"]);

    // The good one replaces the state on every server.
    let out = c.servers[2].ok(&["operator", "snapshot", "restore", file]);
    assert_eq!(out.trim(), "Snapshot Restored");
    for i in 0..3 {
        assert_eq!(c.jobs(i), vec!["kept"], "server {i}");
    }
    c.wait_converged(&[0, 1, 2]);
}

#[test]
fn servers_stopped_with_leave_on_terminate_leave_the_cluster() {
    let dir = TestDir::new();
    let mut c = Cluster::start(&dir, 3, &["-leave-on-terminate"]);
    let leader = c.leader(&[0, 1, 2], 3);
    let follower = (leader + 1) % 3;
    let last = (leader + 2) % 3;
    c.servers[follower].stop();
    let name = format!("s{}", follower + 1);
    wait_for(&format!("{name} to be left"), || {
        let out = c.servers[last].ok(&["server", "members"]);
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or("")
            .to_string();
        if line.contains(" left ") {
            Ok(())
        } else {
            Err(out)
        }
    });
    c.leader(&[leader, last], 2);
    // The leader leaves too: the last server carries on alone.
    c.servers[leader].stop();
    assert_eq!(c.leader(&[last], 1), last);
    c.servers[last].ok(&["job", "run", "-detach", &job_file(&dir.path, "alone")]);
    assert_eq!(c.jobs(last), vec!["alone"]);
}

#[test]
fn servers_configured_by_file_share_a_port_on_different_loopback_addresses() {
    let dir = TestDir::new();
    // One port number for all three, as with Nomad's default ports on 127.0.0.x, and
    // `retry_join` without a port: the `ports.rpc`.
    let port = 20000 + (std::process::id() % 20000) as u16;
    let addr = |i: u32| format!("127.0.0.{}:{port}", 20 + i);
    let mut servers = Vec::new();
    for i in 1..=3u32 {
        let cfg = dir.path.join(format!("s{i}.hcl"));
        std::fs::write(
            &cfg,
            format!(
                "name = \"s{i}\"\nbind_addr = \"127.0.0.{}\"\nleave_on_terminate = true\nports {{\n  rpc  = {port}\n  http = 0\n}}\nserver {{\n  enabled          = true\n  bootstrap_expect = 3\n  server_join {{\n    retry_join = [\"127.0.0.21\"]\n  }}\n}}\n",
                20 + i,
            ),
        )
        .unwrap();
        servers.push(Agent::start_with_config(
            &dir.path.join(format!("s{i}")),
            cfg.to_str().unwrap(),
        ));
    }
    for (i, s) in servers.iter().enumerate() {
        assert_eq!(s.grpc, addr(i as u32 + 1));
    }
    let members = wait_for("three alive servers", || {
        let out = servers[2].ok(&["server", "members"]);
        if out.matches(" alive ").count() == 3 && out.matches(" true ").count() == 1 {
            Ok(out)
        } else {
            Err(out)
        }
    });
    for i in 1..=3 {
        assert!(
            members.contains(&format!("127.0.0.{}  {port}", 20 + i)),
            "{members}"
        );
    }
    servers[0].ok(&["job", "run", "-detach", &job_file(&dir.path, "by-config")]);
    let out = servers[1].ok(&["job", "status"]);
    assert!(out.contains("by-config"), "{out}");
}

/// Waits until `server members` on `asker` shows the server `name` as `left`.
fn wait_left(asker: &Agent, name: &str) {
    wait_for(&format!("{name} to be left on {}", asker.grpc), || {
        let out = asker.ok(&["server", "members"]);
        let left = out
            .lines()
            .any(|l| l.starts_with(&format!("{name} ")) && l.contains(" left "));
        if left {
            Ok(())
        } else {
            Err(out)
        }
    });
}

#[test]
fn autopilot_removes_a_dead_server_after_the_threshold_while_quorum_holds() {
    let dir = TestDir::new();
    let mut c = Cluster::start(&dir, 3, &["-dead-server-threshold", "2s"]);
    let leader = c.leader(&[0, 1, 2], 3);
    let victim = (leader + 1) % 3;
    let rest: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    c.servers[victim].kill9();
    // Without any operator action the dead server leaves the Raft configuration, and every
    // server shows it `left`, as Nomad does.
    c.leader(&rest, 2);
    for &i in &rest {
        wait_left(&c.servers[i], &format!("s{}", victim + 1));
    }
    let peers = c.servers[rest[0]].ok(&["operator", "raft", "list-peers"]);
    assert!(
        !peers
            .lines()
            .any(|l| l.starts_with(&format!("s{} ", victim + 1))),
        "{peers}"
    );
    // With two voters, losing one more would lose quorum: the survivor keeps both.
    let second = rest
        .iter()
        .copied()
        .find(|i| *i != c.leader(&rest, 2))
        .unwrap();
    c.servers[second].kill9();
    std::thread::sleep(std::time::Duration::from_secs(4));
    let last = rest.iter().copied().find(|i| *i != second).unwrap();
    let out = c.servers[last].ok(&["operator", "raft", "list-peers", "-stale"]);
    assert_eq!(
        out.lines().filter(|l| l.contains(" true ")).count(),
        2,
        "{out}"
    );
    // Without a quorum, the HTTP API still answers reads that allow a stale copy.
    let http = c.servers[last].http.clone().unwrap();
    let (status, _, body) = http_request(&http, "GET", "/v1/jobs?stale", "");
    assert!(status.contains("200"), "{status}: {body}");
    let (status, _, body) = http_request(&http, "GET", "/v1/jobs", "");
    assert!(
        status.contains("503") && body.contains("no cluster leader"),
        "{status}: {body}"
    );
}

#[test]
fn a_server_whose_data_dir_belongs_to_another_cluster_stops_when_told_to_join() {
    let dir = TestDir::new();
    let a_dir = dir.path.join("a");
    let mut a = Agent::start(&a_dir, &["-server", "-node", "old"]);
    wait_for("cluster A to be named", || {
        let info = a.ok(&["agent-info"]);
        let id = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("cluster_id = "))
            .unwrap_or("");
        if id.len() == 36 {
            Ok(())
        } else {
            Err(info)
        }
    });
    a.stop();
    let b = Agent::start(&dir.path.join("b"), &["-server", "-node", "new"]);
    b.ok(&["job", "run", "-detach", &job_file(&dir.path, "in-b")]);

    let mut child = std::process::Command::new(YURT)
        .args([
            "agent",
            "-server",
            "-node",
            "old",
            "-grpc-port",
            "0",
            "-http-port",
            "0",
            "-join",
            &b.grpc,
            "-data-dir",
        ])
        .arg(&a_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for("the stray server to stop by itself", || {
        child
            .try_wait()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "still running".to_string())
    });
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("Error: server "), "{err}");
    assert!(
        last.contains("this server's data dir belongs to another cluster than the one -join"),
        "{err}"
    );
    let members = b.ok(&["server", "members"]);
    assert!(
        !members.contains("old"),
        "cluster B never took it in:\n{members}"
    );
    assert_eq!(b.ok(&["operator", "raft", "list-peers"]).lines().count(), 2);
}

#[test]
fn a_dead_members_address_taken_by_another_clusters_server_is_left_alone() {
    let dir = TestDir::new();
    // Autopilot off: on a busy machine its removal of the dead member (a minute after it died)
    // could stop the replication whose refusals this test counts.
    let mut a = Cluster::start(&dir, 3, &["-dead-server-threshold", "0s"]);
    let first = a.leader(&[0, 1, 2], 3);
    // One election more, so that cluster A's term is above a new cluster's.
    a.servers[first].kill9();
    let others: Vec<usize> = (0..3).filter(|&i| i != first).collect();
    // Only a live server counts as leader, not the dead one the others may still name.
    let l = a.leader(&others, 3);
    a.restart(first);
    a.wait_converged(&[0, 1, 2]);
    assert!(info_field(&a.servers[l], "term").parse::<u64>().unwrap() >= 2);
    // Every server of A knows its cluster's name (a server that knows none takes a
    // foreign server at its -join address for its own cluster and stops).
    wait_for("every server of A to know the cluster's name", || {
        let ids: Vec<String> = (0..3)
            .map(|i| info_field(&a.servers[i], "cluster_id"))
            .collect();
        if ids[0].len() == 36 && ids.iter().all(|x| *x == ids[0]) {
            Ok(())
        } else {
            Err(format!("{ids:?}"))
        }
    });

    // A follower of A dies; a new single-server cluster B starts on its address.
    let victim = (0..3).find(|&i| i != l).unwrap();
    let port = Agent::port_of(&a.servers[victim].grpc);
    a.servers[victim].kill9();
    let b = Agent::start_on(
        &dir.path.join("b"),
        &["-server", "-node", "b1", "-bootstrap-expect", "1"],
        port,
        0,
    );
    wait_for("cluster B to be named", || {
        let id = info_field(&b, "cluster_id");
        if id.len() == 36 {
            Ok(())
        } else {
            Err(b.ok(&["agent-info"]))
        }
    });
    b.ok(&["job", "run", "-detach", &job_file(&dir.path, "in-b")]);
    let term = info_field(&b, "term");

    // A's leader keeps replicating to that address. B refuses it (the call is for another
    // Raft ID), keeps its leader and term, and its state; A's leader carries on.
    // Counted over every live server of A: on a busy machine A may elect another leader
    // meanwhile, and whichever leads replicates to the dead member's address. A busy machine
    // may also hold off openraft's retries for a while after a refusal: one refusal, then two
    // seconds for B to be disturbed by whatever else comes.
    let alive: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    wait_for("A's leader to be refused by B", || {
        let refusals: usize = alive
            .iter()
            .map(|&i| {
                a.servers[i]
                    .log_text()
                    .matches("this address now belongs to Raft server")
                    .count()
            })
            .sum();
        if refusals >= 1 {
            Ok(())
        } else {
            let log = a.servers[l].log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            Err(format!(
                "{refusals} refusals; the end of {l}'s log:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ))
        }
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(info_field(&b, "term"), term);
    assert_eq!(info_field(&b, "state"), "Leader");
    let status = b.ok(&["job", "status"]);
    assert!(status.contains("in-b"), "{status}");
    // A still has a leader and a quorum, and never took B's server in.
    let l = a.leader(&alive, 3);
    for &i in &alive {
        let log = a.servers[i].log_text();
        assert!(!log.contains("panicked"), "{log}");
        assert!(!log.contains("AddLearner"), "{log}");
    }
    a.servers[l].ok(&["job", "run", "-detach", &job_file(&dir.path, "in-a")]);
}

#[test]
fn a_raft_snapshot_on_demand_compacts_the_log_and_a_restart_recovers_from_it() {
    let dir = TestDir::new();
    let data = dir.path.join("s1");
    let mut server = Agent::start(&data, &["-server", "-bootstrap-expect", "1"]);
    for id in ["one", "two"] {
        server.ok(&["job", "run", "-detach", &job_file(&dir.path, id)]);
    }
    assert_eq!(info_field(&server, "last_snapshot_index"), "0");
    let applied: u64 = info_field(&server, "applied_index").parse().unwrap();

    let out = server.ok(&["operator", "raft", "snapshot"]);
    let index: u64 = out
        .trim()
        .strip_prefix("Raft snapshot taken at index ")
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(index >= applied, "{index} < {applied}");
    assert_eq!(
        info_field(&server, "last_snapshot_index"),
        index.to_string()
    );
    assert!(data.join("server/raft/snapshots/current.snap").exists());

    server.kill9();
    server.restart(&["-server", "-bootstrap-expect", "1"]);
    wait_for("both jobs after the restart", || {
        let out = server.ok(&["job", "status"]);
        if out.contains("one") && out.contains("two") {
            Ok(())
        } else {
            Err(out)
        }
    });
    assert_eq!(
        info_field(&server, "last_snapshot_index"),
        index.to_string()
    );
}

#[test]
fn servers_joined_by_bare_addresses_retry_until_one_is_there_and_form_one_cluster() {
    let dir = TestDir::new();
    // As Nomad users write them: addresses without a port mean the RPC port, one port number
    // for all three on 127.0.0.3x. The first joins an address nobody listens on, for now.
    let port = std::net::TcpListener::bind("127.0.0.31:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = |i: u32, join: &str| {
        let ip = format!("127.0.0.{}", 30 + i);
        Agent::start_on(
            &dir.path.join(format!("s{i}")),
            &[
                "-server",
                "-node",
                &format!("s{i}"),
                "-bind",
                &ip,
                "-bootstrap-expect",
                "3",
                "-join",
                join,
            ],
            port,
            0,
        )
    };
    let first = start(1, "127.0.0.32");
    let tried = format!("127.0.0.32:{port}");
    wait_for("the failed joins to be logged with the port", || {
        let log = first.log_text();
        let said = log.lines().any(|l| {
            l.contains("cannot reach server; retrying with backoff") && l.contains(&tried)
        });
        if said {
            Ok(())
        } else {
            Err(log)
        }
    });
    // The others arrive, the second at that address: one cluster.
    let servers = [first, start(2, "127.0.0.31"), start(3, "127.0.0.31")];
    for (i, s) in servers.iter().enumerate() {
        assert_eq!(s.grpc, format!("127.0.0.{}:{port}", 31 + i));
    }
    leader(&servers, &[0, 1, 2], 3);
    converged(&servers, &[0, 1, 2]);
}
