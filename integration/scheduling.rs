//! Scheduling with real agents: constraints over node meta keep allocations off nodes that do
//! not match and explain why; a blocked evaluation is placed when a matching node joins.

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
    let alloc = server.ok(&["alloc", "status", &ids[0]]);
    assert!(alloc.contains("Node Name           = in-r2"), "{alloc}");
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
