//! Scheduling with real agents: constraints over node meta keep allocations off nodes that do
//! not match and explain why; a blocked evaluation is placed when a matching node joins; system
//! jobs follow the nodes (placed on nodes that join, stopped on nodes that stop matching);
//! `operator scheduler set-config` switches bin packing to spread.

use crate::harness::*;

const RACKED: &str = r#"job "racked" {
  datacenters = ["dc1"]
  group "app" {
    constraint {
      attribute = "${meta.rack}"
      value     = "r2"
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 1; done"]
      }
      resources {
        memory = 32
      }
    }
  }
}
"#;

#[test]
fn constraints_on_node_meta_wait_for_a_matching_node() {
    let dir = TestDir::new();
    let server = Agent::start(
        &dir.path.join("server"),
        &["-server", "-bootstrap-expect", "1"],
    );
    let _r1 = Agent::start(
        &dir.path.join("r1"),
        &[
            "-client",
            "-servers",
            &server.grpc,
            "-node",
            "in-r1",
            "-meta",
            "rack=r1",
        ],
    );
    server.wait_node_ready();

    let file = dir.path.join("racked.hcl");
    std::fs::write(&file, RACKED).unwrap();
    let run = server.yurt(&["job", "run", file.to_str().unwrap()]);
    let text = stdout(&run);
    assert_eq!(run.status.code(), Some(2), "{text}{}", stderr(&run));
    assert!(
        text.contains("Task Group \"app\" (failed to place 1 allocation):")
            && text.contains("* Constraint \"${meta.rack} = r2\": 1 nodes excluded by filter"),
        "{text}"
    );

    // The evaluation that could not place is complete with failures; a blocked one waits.
    let list = server.ok(&["eval", "list", "-job", "racked"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(
        lines[0].starts_with("ID ") && lines[0].contains("Placement Failures"),
        "{list}"
    );
    assert!(
        lines[1].contains("queued-allocs") && lines[1].contains("blocked"),
        "{list}"
    );
    assert!(
        lines[2].contains("job-register")
            && lines[2].contains("complete")
            && lines[2].ends_with("true"),
        "{list}"
    );
    let evals: serde_json::Value =
        serde_json::from_str(&server.ok(&["eval", "list", "-job", "racked", "-json"])).unwrap();
    let first = evals[1]["id"].as_str().unwrap().to_string();
    let blocked = evals[0]["id"].as_str().unwrap().to_string();
    let status = server.ok(&["eval", "status", &first[..8]]);
    assert!(
        status.contains("TriggeredBy        = job-register")
            && status.contains(&format!("Blocked Eval       = {blocked}"))
            && status.contains("==> Failed Placements")
            && status.contains("* Constraint \"${meta.rack} = r2\": 1 nodes excluded by filter"),
        "{status}"
    );

    // `job status` says what waits and why.
    let status = server.ok(&["job", "status", "racked"]);
    assert!(
        status.contains("Task Group  Queued  Starting  Running")
            && status.contains("\napp         1       0         0 ")
            && status.contains(
                "\nPlacement Failure\nTask Group \"app\" (failed to place 1 allocation):\n  * Constraint \"${meta.rack} = r2\": 1 nodes excluded by filter\n"
            ),
        "{status}"
    );

    let _r2 = Agent::start(
        &dir.path.join("r2"),
        &[
            "-client",
            "-servers",
            &server.grpc,
            "-node",
            "in-r2",
            "-meta",
            "rack=r2",
        ],
    );
    let ids = server.wait_running("racked", 1);
    let status = server.ok(&["eval", "status", &blocked]);
    assert!(status.contains("Status             = complete"), "{status}");
    let alloc = server.ok(&["alloc", "status", &ids[0]]);
    assert!(alloc.contains("Node Name           = in-r2"), "{alloc}");
    let status = server.ok(&["job", "status", "racked"]);
    assert!(
        !status.contains("Placement Failure")
            && status.contains("\napp         0       0         1 "),
        "{status}"
    );
    let node = server.ok(&["node", "status", "-verbose", "in-r2"]);
    assert!(node.contains("\nMeta\nrack = r2\n"), "{node}");

    // A constraint that cannot work is refused before anything is stored.
    let bad = dir.path.join("bad.hcl");
    std::fs::write(
        &bad,
        RACKED.replace(
            "value     = \"r2\"",
            "operator  = \"regexp\"\n      value     = \"r(2\"",
        ),
    )
    .unwrap();
    let out = server.yurt(&["job", "run", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "Error: {}:7: regexp \"r(2\" does not compile: unclosed group",
            bad.display()
        )
    );
}

#[test]
fn system_gc_removes_finished_jobs_and_keeps_running_ones() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let batch = dir.path.join("once.hcl");
    std::fs::write(
        &batch,
        r#"job "once" {
  type = "batch"
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
    }
  }
}
"#,
    )
    .unwrap();
    agent.ok(&["job", "run", batch.to_str().unwrap()]);
    agent.ok(&[
        "job",
        "run",
        "-detach",
        web_job(&dir.path, "kept").to_str().unwrap(),
    ]);
    agent.wait_running("web", 2);
    wait_for("the batch job to be dead", || {
        let s = agent.ok(&["job", "status", "once"]);
        if s.contains("Status        = dead") {
            Ok(())
        } else {
            Err(s)
        }
    });
    // A job that is stopped goes too, once its tasks have ended.
    let other = dir.path.join("other.hcl");
    std::fs::write(
        &other,
        std::fs::read_to_string(web_job(&dir.path, "x"))
            .unwrap()
            .replace("job \"web\"", "job \"other\""),
    )
    .unwrap();
    agent.ok(&["job", "run", "-detach", other.to_str().unwrap()]);
    agent.wait_running("other", 2);
    agent.ok(&["job", "stop", "other"]);
    wait_for("the stopped job's allocations to finish", || {
        let out = agent.ok(&["job", "status", "-json", "other"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let done = v["allocations"]
            .as_array()
            .is_some_and(|a| a.iter().all(|a| a["client_status"] == "complete"));
        if done {
            Ok(())
        } else {
            Err(out)
        }
    });

    let out = agent.ok(&["system", "gc"]);
    assert!(out.starts_with("Collected 2 jobs, 3 allocations,"), "{out}");
    for gone in ["once", "other"] {
        let s = agent.yurt(&["job", "status", gone]);
        assert_eq!(s.status.code(), Some(1), "{gone} is gone");
        assert!(stderr(&s).contains("not found"), "{}", stderr(&s));
    }
    assert!(agent
        .ok(&["eval", "list", "-job", "once"])
        .contains("No evaluations found"));
    // The running job is untouched, and a second pass finds nothing of it to collect.
    assert_eq!(agent.wait_running("web", 2).len(), 2);
    let again = agent.ok(&["system", "gc"]);
    assert!(
        again.starts_with("Collected 0 jobs, 0 allocations,"),
        "{again}"
    );
}

fn sleeper_job(id: &str, kind: &str, count: u32) -> String {
    let count = if kind == "system" {
        String::new()
    } else {
        format!("    count = {count}\n")
    };
    format!(
        r#"job "{id}" {{
  datacenters = ["dc1"]
  type        = "{kind}"
  group "app" {{
{count}    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 1; done"]
      }}
      resources {{
        cpu    = 20
        memory = 16
      }}
    }}
  }}
}}
"#
    )
}

/// The node names a job's running allocations are on, sorted.
fn nodes_of(server: &Agent, job: &str) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&server.ok(&["job", "status", "-json", job])).unwrap();
    let mut nodes: Vec<String> = v["allocations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["desired_status"] == "run")
        .map(|a| a["node_name"].as_str().unwrap_or_default().to_string())
        .collect();
    nodes.sort();
    nodes
}

fn client_args<'a>(server: &'a Agent, name: &'a str, rack: &'a str) -> Vec<&'a str> {
    vec![
        "-client",
        "-servers",
        &server.grpc,
        "-node",
        name,
        "-meta",
        rack,
    ]
}

fn client(dir: &TestDir, server: &Agent, name: &str, rack: &str) -> Agent {
    Agent::start(&dir.path.join(name), &client_args(server, name, rack))
}

#[test]
fn system_jobs_follow_the_nodes_and_spread_ranking_uses_every_node() {
    let dir = TestDir::new();
    let server = Agent::start(
        &dir.path.join("server"),
        &["-server", "-bootstrap-expect", "1"],
    );
    let _a = client(&dir, &server, "node-a", "rack=r1");
    let mut b = client(&dir, &server, "node-b", "rack=r1");
    wait_for("two ready nodes", || {
        let out = server.ok(&["node", "status"]);
        match out
            .lines()
            .filter(|l| l.trim_end().ends_with("ready"))
            .count()
        {
            2 => Ok(()),
            _ => Err(out),
        }
    });

    // A system job: one allocation on each node, and one more when a node joins.
    let file = dir.path.join("sys.hcl");
    std::fs::write(&file, sleeper_job("sys", "system", 0)).unwrap();
    server.ok(&["job", "run", file.to_str().unwrap()]);
    server.wait_running("sys", 2);
    assert_eq!(nodes_of(&server, "sys"), ["node-a", "node-b"]);
    let _c = client(&dir, &server, "node-c", "rack=r2");
    server.wait_running("sys", 3);
    assert_eq!(nodes_of(&server, "sys"), ["node-a", "node-b", "node-c"]);
    let names: Vec<String> = {
        let v: serde_json::Value =
            serde_json::from_str(&server.ok(&["job", "status", "-json", "sys"])).unwrap();
        let mut n: Vec<String> = v["allocations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a["name"].as_str().unwrap_or_default().to_string())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names, ["sys.app[0]", "sys.app[0]", "sys.app[0]"]);

    // A system job for rack r1 leaves node-b when node-b comes back in rack r2.
    let file = dir.path.join("rack1.hcl");
    let rack1 = sleeper_job("rack1", "system", 0).replace(
        "  group \"app\" {\n",
        "  group \"app\" {\n    constraint {\n      attribute = \"${meta.rack}\"\n      value     = \"r1\"\n    }\n",
    );
    std::fs::write(&file, rack1).unwrap();
    server.ok(&["job", "run", file.to_str().unwrap()]);
    server.wait_running("rack1", 2);
    assert_eq!(nodes_of(&server, "rack1"), ["node-a", "node-b"]);
    b.restart(&client_args(&server, "node-b", "rack=r2"));
    server.wait_running("rack1", 1);
    assert_eq!(nodes_of(&server, "rack1"), ["node-a"]);
    server.wait_running("sys", 3);
    // Every node runs just `sys` again, for the ranking below.
    server.ok(&["job", "stop", "rack1"]);

    // Bin packing (the default) stacks a small service job on one node.
    let get = server.ok(&["operator", "scheduler", "get-config"]);
    assert!(
        get.lines()
            .any(|l| l.starts_with("Scheduler Algorithm ") && l.ends_with("= binpack")),
        "{get}"
    );
    let file = dir.path.join("packed.hcl");
    std::fs::write(&file, sleeper_job("packed", "service", 3)).unwrap();
    server.ok(&["job", "run", file.to_str().unwrap()]);
    server.wait_running("packed", 3);
    let packed = nodes_of(&server, "packed");
    assert!(packed.iter().all(|n| n == &packed[0]), "{packed:?}");

    // Spread: with the nodes equally loaded again, the same job lands on three nodes.
    server.ok(&["job", "stop", "packed"]);
    let set = server.ok(&[
        "operator",
        "scheduler",
        "set-config",
        "-scheduler-algorithm",
        "spread",
    ]);
    assert!(set.starts_with("Scheduler configuration updated!"), "{set}");
    let get = server.ok(&["operator", "scheduler", "get-config", "-json"]);
    let v: serde_json::Value = serde_json::from_str(&get).unwrap();
    assert_eq!(v["scheduler_algorithm"], "spread", "{get}");
    let file = dir.path.join("spread.hcl");
    std::fs::write(&file, sleeper_job("spread", "service", 3)).unwrap();
    server.ok(&["job", "run", file.to_str().unwrap()]);
    server.wait_running("spread", 3);
    assert_eq!(nodes_of(&server, "spread"), ["node-a", "node-b", "node-c"]);

    // An algorithm we do not have is refused with the choices, and nothing changes.
    let bad = server.yurt(&[
        "operator",
        "scheduler",
        "set-config",
        "-scheduler-algorithm",
        "random",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad)
            .contains(r#"scheduler algorithm "random" is not one of "binpack" or "spread""#),
        "{}",
        stderr(&bad)
    );
    let get = server.ok(&["operator", "scheduler", "get-config"]);
    assert!(
        get.lines()
            .any(|l| l.starts_with("Scheduler Algorithm ") && l.ends_with("= spread")),
        "{get}"
    );
}

#[test]
fn a_blocked_evaluation_is_placed_when_an_allocation_stops() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let nodes: serde_json::Value =
        serde_json::from_str(&agent.ok(&["node", "status", "-json"])).unwrap();
    let memory = nodes["nodes"][0]["resources"]["memory_mb"]
        .as_u64()
        .unwrap();
    // Each job takes 60% of the node's memory: one fits, two do not.
    let big = |id: &str| {
        let path = dir.path.join(format!("{id}.hcl"));
        let src = sleeper_job(id, "service", 1).replace(
            "        memory = 16",
            &format!("        memory = {}", memory * 6 / 10),
        );
        std::fs::write(&path, src).unwrap();
        path
    };
    let first = big("first");
    agent.ok(&["job", "run", first.to_str().unwrap()]);
    agent.wait_running("first", 1);
    let second = big("second");
    let run = agent.yurt(&["job", "run", second.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2), "{}", stdout(&run));
    assert!(
        stdout(&run).contains("Dimension \"memory\" exhausted on 1 nodes"),
        "{}",
        stdout(&run)
    );

    // Stopping the first frees the room; the waiting evaluation places the second.
    agent.ok(&["job", "stop", "first"]);
    agent.wait_running("second", 1);
    let status = agent.ok(&["job", "status", "second"]);
    assert!(!status.contains("Placement Failure"), "{status}");
}

#[test]
fn an_ineligible_node_keeps_its_allocations_and_takes_new_ones_once_eligible_again() {
    let dir = TestDir::new();
    let agent = Agent::start(&dir.path.join("data"), &["-dev", "-node", "solo"]);
    agent.wait_node_ready();
    let file = |id: &str| {
        let path = dir.path.join(format!("{id}.hcl"));
        std::fs::write(&path, sleeper_job(id, "service", 1)).unwrap();
        path
    };
    let before = file("before");
    agent.ok(&["job", "run", before.to_str().unwrap()]);
    let kept = agent.wait_running("before", 1);

    let out = agent.ok(&["node", "eligibility", "-disable", "solo"]);
    assert_eq!(
        out.trim(),
        "Node \"solo\" scheduling eligibility set: ineligible for scheduling"
    );
    let nodes: serde_json::Value =
        serde_json::from_str(&agent.ok(&["node", "status", "-json"])).unwrap();
    assert_eq!(nodes["nodes"][0]["scheduling_eligibility"], "ineligible");
    // New work waits; what runs stays.
    let after = file("after");
    let run = agent.yurt(&["job", "run", after.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2), "{}", stdout(&run));
    assert_eq!(agent.wait_running("before", 1), kept);

    // Eligible again: the waiting evaluation places the job.
    agent.ok(&["node", "eligibility", "-enable", "solo"]);
    agent.wait_running("after", 1);

    let neither = agent.yurt(&["node", "eligibility", "solo"]);
    assert_ne!(neither.status.code(), Some(0));
}
