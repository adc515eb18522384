//! Node drain as seed 003 and the upgrade guides use it, with a server and real client agents:
//! migrations metered by the `migrate` block (also across two nodes drained together), the
//! deadline, `-force`, batch and system allocations, eligibility rules, an empty node.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::*;

struct Cluster {
    server: Agent,
    clients: Vec<Agent>,
}

impl Cluster {
    fn start(dir: &TestDir, clients: usize) -> Cluster {
        let server = Agent::start(
            &dir.path.join("server"),
            &["-server", "-bootstrap-expect", "1"],
        );
        let mut c = Cluster {
            server,
            clients: Vec::new(),
        };
        for i in 0..clients {
            c.add_client(dir, i);
        }
        c
    }

    fn add_client(&mut self, dir: &TestDir, i: usize) {
        let name = format!("c{i}");
        self.clients.push(Agent::start(
            &dir.path.join(&name),
            &["-client", "-servers", &self.server.grpc, "-node", &name],
        ));
        wait_for(&format!("{name} to be ready"), || {
            let out = stdout(&self.server.yurt(&["node", "status"]));
            if out
                .lines()
                .any(|l| l.contains(&name) && l.ends_with("ready"))
            {
                Ok(())
            } else {
                Err(out)
            }
        });
    }

    /// Live (desired run, not finished) allocations of a job per node name, and how many of
    /// them are healthy, from `job status -json`.
    fn allocs(&self, job: &str) -> Vec<Value> {
        let out = self.server.ok(&["job", "status", "-json", job]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["allocations"].as_array().unwrap().clone()
    }
}

fn live(allocs: &[Value]) -> Vec<&Value> {
    allocs
        .iter()
        .filter(|a| {
            a["desired_status"] == "run"
                && matches!(a["client_status"].as_str(), Some("pending" | "running"))
        })
        .collect()
}

fn on(allocs: &[&Value], node: &str) -> usize {
    allocs.iter().filter(|a| a["node_name"] == node).count()
}

fn healthy(a: &Value) -> bool {
    a["deployment_status"]["healthy"].as_bool() == Some(true)
}

fn service_job(dir: &Path, name: &str, count: u32) -> String {
    let path = dir.join(format!("{name}.hcl"));
    std::fs::write(
        &path,
        format!(
            r#"job "{name}" {{
  datacenters = ["dc1"]
  update {{
    max_parallel = 0
  }}
  group "app" {{
    count = {count}
    migrate {{
      max_parallel     = 1
      health_check     = "task_states"
      min_healthy_time = "500ms"
      healthy_deadline = "30s"
    }}
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 1; done"]
      }}
      resources {{
        cpu    = 10
        memory = 16
      }}
    }}
  }}
}}
"#
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// The node holding the most allocations of `job`.
fn busiest(c: &Cluster, job: &str) -> String {
    let allocs = c.allocs(job);
    let live = live(&allocs);
    (0..c.clients.len())
        .map(|i| format!("c{i}"))
        .max_by_key(|n| on(&live, n))
        .unwrap()
}

/// Runs `yurt node drain ...` in the background (it follows the drain until it completes).
fn drain_in_background(c: &Cluster, args: &[&str]) -> std::process::Child {
    Command::new(YURT)
        .args(["node", "drain"])
        .args(args)
        .env("YURT_ADDR", &c.server.grpc)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Polls a job while `child` runs: at most one allocation of it moving at a time (not yet
/// healthy), never fewer than count - 1 healthy. Returns the child's output.
fn watch_metered(c: &Cluster, job: &str, count: usize, child: std::process::Child) -> String {
    let mut child = child;
    let mut moved = false;
    let deadline = std::time::Instant::now() + timeout() * 2;
    loop {
        let allocs = c.allocs(job);
        let live = live(&allocs);
        let unproven = live.iter().filter(|a| !healthy(a)).count();
        let ok = live.iter().filter(|a| healthy(a)).count();
        assert!(unproven <= 1, "two allocations moving at once: {allocs:?}");
        assert!(ok + 1 >= count, "fewer than count - 1 healthy: {allocs:?}");
        moved |= unproven == 1;
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                status.success(),
                "{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(moved, "something moved");
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the drain did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_metered_drain_moves_one_allocation_at_a_time_and_leaves_the_node_ineligible() {
    let dir = TestDir::new();
    let c = Cluster::start(&dir, 2);
    let job = service_job(&dir.path, "web", 3);
    c.server.ok(&["job", "run", &job]);
    wait_for("three healthy allocations", || {
        let allocs = c.allocs("web");
        let n = live(&allocs).iter().filter(|a| healthy(a)).count();
        if n == 3 {
            Ok(())
        } else {
            Err(format!("{allocs:?}"))
        }
    });
    let node = busiest(&c, "web");
    let child = drain_in_background(&c, &["-enable", "-yes", "-deadline", "1m", &node]);
    let out = watch_metered(&c, "web", 3, child);
    assert!(out.contains("drain strategy set"), "{out}");
    assert!(out.contains("marked for migration"), "{out}");
    assert!(out.contains("Drain complete for node"), "{out}");
    let allocs = c.allocs("web");
    assert_eq!(on(&live(&allocs), &node), 0, "{allocs:?}");
    assert_eq!(live(&allocs).len(), 3);
    // Every task on the drained node has really stopped.
    let i: usize = node[1..].parse().unwrap();
    assert!(task_pids(&c.clients[i].data_dir)
        .into_iter()
        .all(|p| !alive(p)));

    let status = c.server.ok(&["node", "status", &node]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Eligibility ") && l.ends_with("= ineligible")),
        "{status}"
    );
    assert!(status.contains("Node drain strategy set"), "{status}");
    assert!(status.contains("Node drain complete"), "{status}");
    let list = c.server.ok(&["node", "status"]);
    let row = row_of(&list, &node);
    assert!(row.contains("false  ineligible"), "{list}");
    c.server.ok(&["node", "eligibility", "-enable", &node]);
    let list = c.server.ok(&["node", "status"]);
    let row = row_of(&list, &node);
    assert!(row.contains("false  eligible"), "{list}");
}

#[test]
fn two_nodes_drained_together_still_move_one_allocation_at_a_time() {
    let dir = TestDir::new();
    let mut c = Cluster::start(&dir, 2);
    c.server.ok(&[
        "operator",
        "scheduler",
        "set-config",
        "-scheduler-algorithm",
        "spread",
    ]);
    let job = service_job(&dir.path, "web", 4);
    c.server.ok(&["job", "run", &job]);
    wait_for("two healthy allocations on each node", || {
        let allocs = c.allocs("web");
        let l = live(&allocs);
        if l.iter().filter(|a| healthy(a)).count() == 4 && on(&l, "c0") == 2 {
            Ok(())
        } else {
            Err(format!("{allocs:?}"))
        }
    });
    c.add_client(&dir, 2);
    c.add_client(&dir, 3);
    let first = drain_in_background(&c, &["-enable", "-yes", "-detach", "c0"]);
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success());
    let second = drain_in_background(&c, &["-enable", "-yes", "c1"]);
    watch_metered(&c, "web", 4, second);
    wait_for("both drains to complete", || {
        let allocs = c.allocs("web");
        let l = live(&allocs);
        if on(&l, "c0") + on(&l, "c1") == 0 && l.iter().filter(|a| healthy(a)).count() == 4 {
            Ok(())
        } else {
            Err(format!("{allocs:?}"))
        }
    });
    let status = c.server.ok(&["node", "status", "c0"]);
    assert!(status.contains("Node drain complete"), "{status}");
}

/// A batch job `report` whose one task runs for `seconds`, written to a file.
fn batch_job(dir: &std::path::Path, seconds: u32) -> std::path::PathBuf {
    let path = dir.join("report.hcl");
    std::fs::write(
        &path,
        format!(
            "job \"report\" {{\n  type = \"batch\"\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/sh\"\n        args    = [\"-c\", \"sleep {seconds}\"]\n      }}\n      resources {{\n        memory = 16\n      }}\n    }}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_deadline_stops_batch_and_system_allocations_and_force_drains_at_once() {
    let dir = TestDir::new();
    let c = Cluster::start(&dir, 2);
    let batch = batch_job(&dir.path, 300);
    let system = dir.path.join("agent.hcl");
    std::fs::write(
        &system,
        r#"job "agent" {
  type = "system"
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 1; done"]
      }
      resources {
        memory = 16
      }
    }
  }
}
"#,
    )
    .unwrap();
    c.server
        .ok(&["job", "run", "-detach", batch.to_str().unwrap()]);
    c.server
        .ok(&["job", "run", "-detach", system.to_str().unwrap()]);
    wait_for("the batch and system allocations to run", || {
        let b = c.allocs("report");
        let s = c.allocs("agent");
        if live(&b).iter().any(|a| a["client_status"] == "running")
            && live(&s)
                .iter()
                .filter(|a| a["client_status"] == "running")
                .count()
                == 2
        {
            Ok(())
        } else {
            Err(format!("{b:?} {s:?}"))
        }
    });
    let node = live(&c.allocs("report"))[0]["node_name"]
        .as_str()
        .unwrap()
        .to_string();
    // The batch task would run 300s: the 3s deadline stops it, then the system allocation.
    let child = drain_in_background(&c, &["-enable", "-yes", "-deadline", "3s", &node]);
    let out = child.wait_with_output().unwrap();
    let text = stdout_of(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Drain complete for node"), "{text}");
    let b = c.allocs("report");
    assert_eq!(b.len(), 1, "the batch allocation is not replaced: {b:?}");
    assert_eq!(b[0]["desired_status"], "stop");
    let s = c.allocs("agent");
    assert_eq!(on(&live(&s), &node), 0, "{s:?}");
    assert_eq!(live(&s).len(), 1, "still on the other node: {s:?}");
    let status = c.server.ok(&["node", "status", &node]);
    assert!(status.contains("Node drain deadline reached"), "{status}");
    assert!(status.contains("deadline_reached: true"), "{status}");

    // -force: everything on the other node stops at once (the system job too).
    c.server.ok(&["node", "eligibility", "-enable", &node]);
    let other = if node == "c0" { "c1" } else { "c0" };
    let out = c
        .server
        .ok(&["node", "drain", "-enable", "-yes", "-force", other]);
    assert!(out.contains("Drain complete for node"), "{out}");
    assert_eq!(on(&live(&c.allocs("agent")), other), 0);
    // The drained node stays ineligible until `node drain -disable` (or eligibility -enable).
    let list = c.server.ok(&["node", "status"]);
    assert!(row_of(&list, other).contains("false  ineligible"), "{list}");
    c.server.ok(&["node", "drain", "-disable", other]);
    let list = c.server.ok(&["node", "status"]);
    assert!(row_of(&list, other).contains("false  eligible"), "{list}");
}

#[test]
fn ignore_system_an_empty_node_eligibility_rules_and_bad_input() {
    let dir = TestDir::new();
    let c = Cluster::start(&dir, 2);
    let system = dir.path.join("agent.hcl");
    std::fs::write(
        &system,
        r#"job "agent" {
  type = "system"
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 1; done"]
      }
      resources {
        memory = 16
      }
    }
  }
}
"#,
    )
    .unwrap();
    c.server
        .ok(&["job", "run", "-detach", system.to_str().unwrap()]);
    wait_for("a system allocation on each node", || {
        let s = c.allocs("agent");
        if live(&s)
            .iter()
            .filter(|a| a["client_status"] == "running")
            .count()
            == 2
        {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    });
    // -ignore-system: only system allocations on the node, which stay; the drain completes.
    // Asked of c0's own (client-only) agent with -self.
    let out = c.clients[0].ok(&[
        "node",
        "drain",
        "-enable",
        "-yes",
        "-ignore-system",
        "-self",
    ]);
    assert!(out.contains("Drain complete for node"), "{out}");
    assert_eq!(on(&live(&c.allocs("agent")), "c0"), 1);

    // Enabling eligibility while a drain runs is refused (a drain without deadline on c1 waits
    // for nothing: it is empty apart from the system allocation, which it stops last).
    c.server.ok(&["node", "eligibility", "-enable", "c0"]);
    let sleeper = service_job(&dir.path, "web", 1);
    c.server.ok(&["job", "run", &sleeper]);
    let holder = busiest(&c, "web");
    wait_for("the allocation to be healthy", || {
        let allocs = c.allocs("web");
        if live(&allocs).iter().any(|a| healthy(a)) {
            Ok(())
        } else {
            Err(format!("{allocs:?}"))
        }
    });
    // Nowhere to go: the other node is made ineligible, so the drain waits.
    let other = if holder == "c0" { "c1" } else { "c0" };
    c.server.ok(&["node", "eligibility", "-disable", other]);
    let detached = c.server.ok(&[
        "node",
        "drain",
        "-enable",
        "-yes",
        "-detach",
        "-no-deadline",
        &holder,
    ]);
    // Detached, it does not monitor: no word of Ctrl-C.
    assert!(
        !detached.contains("Ctrl-C") && detached.contains("drain strategy set"),
        "{detached}"
    );
    let refused = c.server.yurt(&["node", "eligibility", "-enable", &holder]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        stderr(&refused).trim(),
        "Error updating node eligibility: can not set node's scheduling eligibility to eligible while it is draining"
    );
    c.server.ok(&["node", "drain", "-disable", &holder]);
    let list = c.server.ok(&["node", "status"]);
    let row = row_of(&list, &holder);
    assert!(row.contains("false  eligible"), "{list}");

    // Bad input: one sentence, non-zero exit, nothing changed.
    for (args, message) in [
        (
            vec!["node", "drain", "-enable", "-yes", "nope"],
            "Error querying node: node \"nope\" not found",
        ),
        (
            vec![
                "node",
                "drain",
                "-enable",
                "-yes",
                "-deadline",
                "-5s",
                &holder,
            ],
            "Error: -deadline: ",
        ),
        (
            vec![
                "node",
                "drain",
                "-enable",
                "-yes",
                "-deadline",
                "soon",
                &holder,
            ],
            "Error: -deadline: ",
        ),
        (
            vec!["node", "drain", "-enable", "-disable", &holder],
            "cannot be used with",
        ),
        (
            vec![
                "node",
                "drain",
                "-enable",
                "-deadline",
                "1m",
                "-no-deadline",
                &holder,
            ],
            "cannot be used with",
        ),
        (
            vec!["node", "drain", "-enable", &holder],
            "Error: not draining without confirmation: pass -yes",
        ),
    ] {
        let out = c.server.yurt(&args);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    let list = c.server.ok(&["node", "status"]);
    let row = row_of(&list, &holder);
    assert!(row.contains("false  eligible"), "nothing changed: {list}");
}

/// The `node status` row of the node named `name`.
fn row_of<'a>(list: &'a str, name: &str) -> &'a str {
    list.lines()
        .find(|l| l.split_whitespace().nth(2) == Some(name))
        .unwrap_or_else(|| panic!("no node {name} in:\n{list}"))
}

fn stdout_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_drain_survives_the_loss_of_the_leader() {
    let dir = TestDir::new();
    let mut servers = start_servers(&dir.path, 3, &[]);
    leader(&servers, &[0, 1, 2], 3);
    let list = grpc_list(&servers);
    let mut clients = Vec::new();
    for i in 0..2 {
        let name = format!("c{i}");
        clients.push(Agent::start(
            &dir.path.join(&name),
            &["-client", "-servers", &list, "-node", &name],
        ));
    }
    let c = Cluster {
        server: servers.remove(0),
        clients,
    };
    // Servers 1 and 2 stay in `servers`; server 0 is `c.server` (asked first).
    wait_for("both clients ready", || {
        let out = stdout(&c.server.yurt(&["node", "status"]));
        if out.lines().filter(|l| l.ends_with("ready")).count() == 2 {
            Ok(())
        } else {
            Err(out)
        }
    });
    let job = service_job(&dir.path, "web", 3);
    c.server.ok(&["job", "run", &job]);
    wait_for("three healthy allocations", || {
        let allocs = c.allocs("web");
        if live(&allocs).iter().filter(|a| healthy(a)).count() == 3 {
            Ok(())
        } else {
            Err(format!("{allocs:?}"))
        }
    });
    let node = busiest(&c, "web");
    c.server
        .ok(&["node", "drain", "-enable", "-yes", "-detach", &node]);
    wait_for("the first migration", || {
        let allocs = c.allocs("web");
        if allocs
            .iter()
            .any(|a| a["desired_description"] == "alloc is being migrated")
        {
            Ok(())
        } else {
            Err(format!("{allocs:?}"))
        }
    });
    // Kill the leader (whichever it is) mid-drain; the new one carries on.
    let mut everyone: Vec<Agent> = vec![c.server];
    everyone.extend(servers);
    let old_leader = leader(&everyone, &[0, 1, 2], 3);
    everyone[old_leader].kill9();
    let alive: Vec<usize> = (0..3).filter(|i| *i != old_leader).collect();
    let new_leader = leader(&everyone, &alive, 3);
    assert_ne!(new_leader, old_leader);
    let ask = &everyone[alive[0]];
    wait_for("the drain to complete under the new leader", || {
        let status = stdout(&ask.yurt(&["node", "status", &node]));
        let out = ask.ok(&["job", "status", "-json", "web"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        let allocs = v["allocations"].as_array().unwrap().clone();
        let l = live(&allocs);
        if status.contains("Node drain complete")
            && on(&l, &node) == 0
            && l.iter().filter(|a| healthy(a)).count() == 3
        {
            Ok(())
        } else {
            Err(format!("{status}\n{allocs:?}"))
        }
    });
    drop(c.clients);
}

#[test]
fn a_batch_allocation_finishes_during_a_drain_and_is_not_replaced() {
    let dir = TestDir::new();
    let c = Cluster::start(&dir, 2);
    let batch = batch_job(&dir.path, 2);
    c.server
        .ok(&["job", "run", "-detach", batch.to_str().unwrap()]);
    let node = wait_for("the batch allocation to run", || {
        let b = c.allocs("report");
        live(&b)
            .iter()
            .find(|a| a["client_status"] == "running")
            .and_then(|a| a["node_name"].as_str().map(String::from))
            .ok_or(format!("{b:?}"))
    });
    // The drain waits for it to finish by itself (no deadline reached), then completes.
    let out = c
        .server
        .ok(&["node", "drain", "-enable", "-yes", "-deadline", "1m", &node]);
    assert!(out.contains("Drain complete for node"), "{out}");
    let b = c.allocs("report");
    assert_eq!(b.len(), 1, "not replaced: {b:?}");
    assert_eq!(b[0]["client_status"], "complete", "{b:?}");
    assert_eq!(b[0]["desired_status"], "run", "it was not stopped: {b:?}");
    let status = c.server.ok(&["node", "status", &node]);
    assert!(status.contains("deadline_reached: false"), "{status}");
}
