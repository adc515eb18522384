//! Allocation health as the client judges it: an http check gates health until the task
//! answers and then for min_healthy_time; a check that never passes makes the allocation
//! unhealthy at healthy_deadline, with an "Alloc Unhealthy" task event.

use crate::harness::*;

const JOB: &str = r#"
job "checked" {
  datacenters = ["dc1"]

  group "app" {
    network {
      port "http" {}
    }
    update {
      min_healthy_time  = "1s"
      healthy_deadline  = "60s"
      progress_deadline = "120s"
    }
    service {
      name = "web"
      port = "http"
      check {
        type     = "http"
        path     = "/"
        interval = "200ms"
        timeout  = "1s"
      }
    }
    task "server" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "sleep 2; exec python3 -m http.server $YURT_PORT_http"]
      }
    }
  }

  group "broken" {
    network {
      port "http" {}
    }
    update {
      min_healthy_time  = "1s"
      healthy_deadline  = "3s"
      progress_deadline = "120s"
    }
    service {
      name = "nothing"
      port = "http"
      check {
        type     = "tcp"
        interval = "200ms"
        timeout  = "1s"
      }
    }
    task "idle" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 1; done"]
      }
    }
  }
}
"#;

#[test]
fn checks_gate_allocation_health_until_the_healthy_deadline() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let file = dir.path.join("checked.hcl");
    std::fs::write(&file, JOB).unwrap();
    agent.ok(&["job", "run", "-detach", file.to_str().unwrap()]);
    let ids = agent.wait_running("checked", 2);

    let alloc = |id: &str| -> serde_json::Value {
        serde_json::from_str(&agent.ok(&["alloc", "status", "-json", id])).unwrap()
    };
    let health = |a: &serde_json::Value| a["deployment_status"]["healthy"].as_bool();
    let decided = |group: &str| {
        wait_for(&format!("the health of {group}"), || {
            let a = ids
                .iter()
                .map(|id| alloc(id))
                .find(|a| a["task_group"] == group)
                .ok_or("no allocation")?;
            match health(&a) {
                Some(_) => Ok(a),
                None => Err(a.to_string()),
            }
        })
    };

    let app = decided("app");
    assert_eq!(health(&app), Some(true), "{app}");
    // Healthy only after the server answered (2s in) and then for min_healthy_time (1s).
    let started = app["task_states"]["server"]["started_at_unix_ms"]
        .as_i64()
        .unwrap();
    let at = app["deployment_status"]["timestamp_unix_ms"]
        .as_i64()
        .unwrap();
    assert!(
        at - started >= 3_000,
        "healthy {}ms after start",
        at - started
    );
    let shown = agent.ok(&["alloc", "status", app["id"].as_str().unwrap()]);
    assert!(shown.contains("Deployment Health   = healthy"), "{shown}");

    let broken = decided("broken");
    assert_eq!(health(&broken), Some(false), "{broken}");
    let shown = agent.ok(&["alloc", "status", broken["id"].as_str().unwrap()]);
    assert!(shown.contains("Deployment Health   = unhealthy"), "{shown}");
    assert!(
        shown.contains("Alloc Unhealthy")
            && shown.contains("checks not passing for min_healthy_time of 1s"),
        "{shown}"
    );
    // The task itself keeps running: health is a verdict for deployments, not a kill.
    assert_eq!(broken["client_status"], "running");
}
