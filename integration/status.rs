//! What the status commands and routes report, as Nomad's do: a job's status by Nomad's rules,
//! a job registered again after a purge with only its own allocations, and `agent-info`
//! opening with the agent's own section.

use serde_json::Value;

use crate::harness::*;

/// A service job of `count` whose task runs `script`, never restarted nor rescheduled.
fn service_job(dir: &std::path::Path, name: &str, count: u32, script: &str) -> String {
    let path = dir.join(format!("{name}.hcl"));
    let src = format!(
        "job {name:?} {{\n  group \"g\" {{\n    count = {count}\n    restart {{\n      attempts = 0\n      mode     = \"fail\"\n    }}\n    reschedule {{\n      attempts  = 0\n      unlimited = false\n    }}\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/sh\"\n        args    = [\"-c\", {script:?}]\n      }}\n      resources {{\n        cpu    = 10\n        memory = 16\n      }}\n    }}\n  }}\n}}\n"
    );
    std::fs::write(&path, src).unwrap();
    path.to_str().unwrap().to_string()
}

fn http_json(agent: &Agent, path: &str) -> Value {
    let (status, body) = http_get(agent.http.as_ref().unwrap(), path);
    assert!(status.contains("200"), "{path}: {status} {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn a_service_job_whose_allocations_all_failed_for_good_is_dead() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let job = service_job(&dir.path, "crash", 2, "exit 1");
    agent.yurt(&["job", "run", "-detach", &job]);
    wait_for("every allocation to fail", || {
        let allocs = job_allocations(&agent, "crash");
        let failed = allocs
            .iter()
            .filter(|a| a["client_status"] == "failed")
            .count();
        if failed == 2 {
            Ok(())
        } else {
            Err(format!("{allocs:?}"))
        }
    });
    let text = wait_for("the job to be dead", || {
        let text = agent.ok(&["job", "status", "crash"]);
        if text.contains("\nStatus        = dead\n") {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert!(!text.contains("pending"), "{text}");
    assert_eq!(http_json(&agent, "/v1/job/crash")["Status"], "dead");
    let list = http_json(&agent, "/v1/jobs");
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["ID"] == "crash")
        .unwrap();
    assert_eq!(row["Status"], "dead", "{row}");
}

#[test]
fn a_job_registered_again_after_a_purge_lists_only_its_own_allocations() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let job = service_job(&dir.path, "again", 3, "while true; do sleep 1; done");
    agent.ok(&["job", "run", "-detach", &job]);
    agent.wait_running("again", 3);
    agent.ok(&["job", "stop", "-purge", "again"]);
    // The purged job's allocations, as they are once stopped.
    let old: Vec<(String, u64)> = wait_for("the purged job's allocations to stop", || {
        let (_, body) = http_get(agent.http.as_ref().unwrap(), "/v1/allocations");
        let all: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let mine: Vec<&Value> = all
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["JobID"] == "again")
            .collect();
        let done = mine
            .iter()
            .all(|a| a["ClientStatus"] == "complete" && a["DesiredStatus"] == "stop");
        if mine.len() == 3 && done {
            Ok(mine
                .iter()
                .map(|a| {
                    (
                        a["ID"].as_str().unwrap().to_string(),
                        a["ModifyIndex"].as_u64().unwrap(),
                    )
                })
                .collect())
        } else {
            Err(body)
        }
    });
    agent.ok(&["job", "run", "-detach", &job]);
    let new = agent.wait_running("again", 3);
    assert!(new.iter().all(|id| !old.iter().any(|(o, _)| o == id)));
    let listed = http_json(&agent, "/v1/job/again/allocations");
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    assert_eq!(job_allocations(&agent, "again").len(), 3);
    let text = agent.ok(&["job", "status", "again"]);
    for (id, _) in &old {
        assert!(!text.contains(&id[..8]), "{text}");
    }
    for (id, modified) in &old {
        let a = http_json(&agent, &format!("/v1/allocation/{id}"));
        assert_eq!(a["ModifyIndex"].as_u64(), Some(*modified), "{a}");
    }
}

#[test]
fn agent_info_opens_with_the_agent_s_own_section_on_servers_and_clients() {
    let dir = TestDir::new();
    let server = Agent::start(&dir.path.join("s"), &["-server"]);
    let first = |agent: &Agent| -> Vec<String> {
        let info = agent.ok(&["agent-info"]);
        let mut lines = info.lines();
        assert_eq!(lines.next(), Some("yurt"), "{info}");
        lines
            .take_while(|l| l.starts_with("  "))
            .map(|l| l.trim().to_string())
            .collect()
    };
    let section = first(&server);
    for want in [
        "server = true",
        "bootstrap = true",
        "known_regions = 1",
        "leader = true",
    ] {
        assert!(section.iter().any(|l| l == want), "{want}: {section:?}");
    }
    let client = Agent::start(
        &dir.path.join("c"),
        &["-client", "-servers", &server.grpc, "-node", "c1"],
    );
    let section = first(&client);
    assert!(section.iter().any(|l| l == "server = false"), "{section:?}");
}
