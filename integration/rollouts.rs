//! Rollouts that go wrong, against a dev agent: a failing version never takes more than
//! `max_parallel` old allocations down, a failed allocation waiting for its reschedule holds
//! the rollout, and the version known to work stays reachable after a streak of bad ones.

use serde_json::Value;

use crate::deployments::{deployment_of, job_file, latest, status, wait_deployment, FOREVER};
use crate::harness::*;

/// Every allocation of the job as (job version, desired status, client status, health).
fn allocs(v: &Value) -> Vec<(u64, String, String, Option<bool>)> {
    v["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["job"]["version"].as_u64().unwrap_or(0),
                a["desired_status"].as_str().unwrap_or_default().to_string(),
                a["client_status"].as_str().unwrap_or_default().to_string(),
                a["deployment_status"]["healthy"].as_bool(),
            )
        })
        .collect()
}

/// Old allocations still meant to run, and new ones running and healthy.
fn serving(v: &Value) -> usize {
    allocs(v)
        .iter()
        .filter(|(ver, desired, client, health)| {
            desired == "run"
                && matches!(client.as_str(), "pending" | "running")
                && (*ver == 0 || *health == Some(true))
        })
        .count()
}

#[test]
fn a_version_that_fails_at_once_stops_one_old_allocation_and_fails_the_deployment() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let update = r#"max_parallel = 1
    min_healthy_time = "200ms"
    healthy_deadline = "10s"
    progress_deadline = "0""#;
    let v0 = job_file(&dir.path, 3, "v0", FOREVER, update);
    agent.ok(&["job", "run", v0.to_str().unwrap()]);
    let v1 = job_file(&dir.path, 3, "v1", "exit 1", update);
    agent.yurt(&["job", "run", "-detach", v1.to_str().unwrap()]);
    wait_for("the deployment of version 1 to fail", || {
        let v = status(&agent);
        assert!(serving(&v) >= 2, "an outage: {:?}", allocs(&v));
        match latest(&v) {
            (1, st, _) if st == "failed" => Ok(()),
            other => Err(format!("{other:?} {:?}", allocs(&v))),
        }
    });
    // Once the evaluations the failures started have run, nothing more was replaced.
    wait_for("the job's evaluations to finish", || {
        let out = agent.ok(&["eval", "list", "-job", "web"]);
        if out.contains("pending") {
            Err(out)
        } else {
            Ok(())
        }
    });
    let v = status(&agent);
    let all = allocs(&v);
    let v1_placed = all.iter().filter(|a| a.0 == 1).count();
    let v0_running = all
        .iter()
        .filter(|a| a.0 == 0 && a.1 == "run" && a.2 == "running")
        .count();
    assert_eq!((v1_placed, v0_running), (1, 2), "{all:?}");
}

#[test]
fn a_failed_allocation_waiting_for_its_reschedule_holds_the_rollout() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let update = r#"max_parallel = 1
    min_healthy_time = "200ms"
    healthy_deadline = "10s"
    progress_deadline = "60s""#;
    let v0 = job_file(&dir.path, 3, "v0", FOREVER, update);
    agent.ok(&["job", "run", v0.to_str().unwrap()]);
    // Each of version 1's allocations fails the first time it starts, then runs once rescheduled.
    let marks = dir.path.join("marks");
    std::fs::create_dir(&marks).unwrap();
    let body = format!(
        "if mkdir {}/$NOMAD_ALLOC_INDEX 2>/dev/null; then exit 1; fi; {FOREVER}",
        marks.display()
    );
    let v1 = job_file(&dir.path, 3, "v1", &body, update);
    let src = std::fs::read_to_string(&v1).unwrap().replace(
        "attempts  = 0\n      unlimited = false",
        "attempts  = 1\n      interval  = \"1h\"\n      delay     = \"2s\"\n      delay_function = \"constant\"\n      unlimited = false",
    );
    assert!(src.contains("delay     = \"2s\""));
    std::fs::write(&v1, src).unwrap();
    agent.yurt(&["job", "run", "-detach", v1.to_str().unwrap()]);
    let mut saw_waiting = false;
    wait_for("the deployment of version 1 to succeed", || {
        let v = status(&agent);
        let all = allocs(&v);
        assert!(serving(&v) >= 2, "below count - max_parallel: {all:?}");
        // While a failed allocation waits for its reschedule, no other old one is replaced.
        let failed_waiting = all
            .iter()
            .any(|a| a.0 == 1 && a.2 == "failed" && a.1 == "run");
        if failed_waiting {
            saw_waiting = true;
            let unproven = all
                .iter()
                .filter(|a| a.0 == 1 && a.1 == "run" && a.2 != "failed" && a.3 != Some(true))
                .count();
            assert_eq!(unproven, 0, "replaced more while one waits: {all:?}");
        }
        match latest(&v) {
            (1, st, _) if st == "successful" => Ok(()),
            other => Err(format!("{other:?} {all:?}")),
        }
    });
    assert!(
        saw_waiting,
        "a failed allocation was seen waiting for its reschedule"
    );
    // Each replaced failed allocation is told to stop and names its replacement.
    let v = status(&agent);
    let failed: Vec<&Value> = v["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["client_status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 3, "{v}");
    for a in failed {
        assert_eq!(a["desired_status"], "stop", "{a}");
        let id = a["id"].as_str().unwrap();
        let next = a["next_allocation"].as_str().unwrap();
        let text = agent.ok(&["alloc", "status", id]);
        assert!(
            text.contains(&format!("Replacement Alloc ID = {}", &next[..8])),
            "{text}"
        );
        assert!(
            text.contains("Desired Description  = alloc was rescheduled because it failed"),
            "{text}"
        );
    }
    wait_deployment(&agent, 1, "successful");
}

#[test]
fn after_eight_failed_versions_job_revert_still_reaches_the_stable_version_0() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let update = r#"max_parallel = 1
    min_healthy_time = "100ms"
    healthy_deadline = "10s"
    progress_deadline = "0""#;
    let v0 = job_file(&dir.path, 1, "v0", FOREVER, update);
    agent.ok(&["job", "run", v0.to_str().unwrap()]);
    for v in 1..=8u64 {
        let bad = job_file(&dir.path, 1, &format!("v{v}"), "exit 1", update);
        agent.yurt(&["job", "run", "-detach", bad.to_str().unwrap()]);
        wait_deployment(&agent, v, "failed");
    }
    let history = agent.ok(&["job", "history", "web"]);
    let versions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.strip_prefix("Version     = "))
        .collect();
    assert_eq!(versions, ["8", "7", "6", "5", "4", "0"], "{history}");
    let reverted = agent.ok(&["job", "revert", "web", "0"]);
    assert!(
        reverted.contains("Deployment completed successfully"),
        "{reverted}"
    );
    let v = status(&agent);
    assert_eq!(v["job"]["version"].as_u64(), Some(9));
    assert_eq!(serving(&v), 1, "{:?}", allocs(&v));
}

#[test]
fn job_run_of_a_version_that_auto_reverts_follows_its_own_deployment() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let update = r#"max_parallel = 1
    min_healthy_time = "100ms"
    healthy_deadline = "10s"
    progress_deadline = "0"
    auto_revert = true"#;
    let v0 = job_file(&dir.path, 1, "v0", FOREVER, update);
    agent.ok(&["job", "run", v0.to_str().unwrap()]);
    let v1 = job_file(&dir.path, 1, "v1", "exit 1", update);
    let run = agent.yurt(&["job", "run", v1.to_str().unwrap()]);
    let text = stdout(&run);
    assert_eq!(run.status.code(), Some(1), "{text}");
    wait_deployment(&agent, 2, "successful");
    let own = deployment_of(&agent, 1);
    assert!(
        text.contains(&format!("Monitoring deployment {:?}", &own[..8])),
        "{text}"
    );
    assert!(text.contains("rolling back to job version 0"), "{text}");
    let v = status(&agent);
    let created = v["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["job"]["version"] == 1)
        .and_then(|a| a["id"].as_str())
        .unwrap()
        .to_string();
    assert!(
        text.contains(&format!("Allocation {:?} created", &created[..8])),
        "{text}"
    );
}
