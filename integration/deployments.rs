//! Deployments as seeds 003 and 004 describe them, from the CLI against a dev agent: rolling
//! updates bounded by max_parallel, stable versions, deadlines, auto-revert, canaries and
//! promotion, blue/green, pause/resume, fail, cancellation by a newer version, `job revert`.
//! Durations are short (task_states health, min_healthy_time well under a second).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::*;

/// A service job `web` (group `app`) whose task prints `greeting` and then runs `body`.
/// Failures are final: no restarts on the node, no rescheduling elsewhere.
pub(crate) fn job_file(
    dir: &Path,
    count: u32,
    greeting: &str,
    body: &str,
    update: &str,
) -> PathBuf {
    let src = format!(
        r#"job "web" {{
  datacenters = ["dc1"]
  update {{
    health_check = "task_states"
    {update}
  }}
  group "app" {{
    count = {count}
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    reschedule {{
      attempts  = 0
      unlimited = false
    }}
    task "server" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "echo $GREETING; {body}"]
      }}
      env {{
        GREETING = "{greeting}"
      }}
      resources {{
        cpu    = 10
        memory = 16
      }}
    }}
  }}
}}
"#
    );
    let path = dir.join(format!("web-{greeting}.hcl"));
    std::fs::write(&path, src).unwrap();
    path
}

pub(crate) const FOREVER: &str = "while true; do sleep 1; done";

/// `job status -json web`.
pub(crate) fn status(agent: &Agent) -> Value {
    let out = agent.ok(&["job", "status", "-json", "web"]);
    serde_json::from_str(&out).unwrap()
}

/// The latest deployment's (job version, status, description).
pub(crate) fn latest(v: &Value) -> (u64, String, String) {
    let d = &v["latest_deployment"];
    (
        d["job_version"].as_u64().unwrap_or(0),
        d["status"].as_str().unwrap_or_default().to_string(),
        d["status_description"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Live allocations as (job version, health: Some(true|false) or None while undecided).
pub(crate) fn live(v: &Value) -> Vec<(u64, Option<bool>)> {
    v["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a["desired_status"] == "run"
                && matches!(a["client_status"].as_str(), Some("pending" | "running"))
        })
        .map(|a| {
            (
                a["job"]["version"].as_u64().unwrap_or(0),
                a["deployment_status"]["healthy"].as_bool(),
            )
        })
        .collect()
}

/// Waits until the latest deployment of `version` has `status`; returns its description.
pub(crate) fn wait_deployment(agent: &Agent, version: u64, status_wanted: &str) -> String {
    wait_for(
        &format!("the deployment of version {version} to be {status_wanted}"),
        || {
            let v = status(agent);
            let (ver, st, desc) = latest(&v);
            if ver == version && st == status_wanted {
                Ok(desc)
            } else {
                Err(format!("{ver} {st} {desc}"))
            }
        },
    )
}

/// The ID of the deployment of `version`, from `job deployments -json`.
pub(crate) fn deployment_of(agent: &Agent, version: u64) -> String {
    let out = agent.ok(&["job", "deployments", "-json", "web"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|d| d["job_version"].as_u64().unwrap_or(0) == version)
        .and_then(|d| d["id"].as_str())
        .unwrap_or_else(|| panic!("no deployment of version {version}: {out}"))
        .to_string()
}

#[test]
fn a_rolling_update_marks_versions_stable_and_never_has_more_than_max_parallel_unproven() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let update = r#"max_parallel = 2
    min_healthy_time = "300ms"
    healthy_deadline = "30s"
    progress_deadline = "60s""#;

    // The first run is a deployment too; `job run` follows it to the end.
    let v0 = job_file(&dir.path, 6, "v0", FOREVER, update);
    let run = agent.ok(&["job", "run", v0.to_str().unwrap()]);
    assert!(run.contains("Monitoring deployment"), "{run}");
    assert!(run.contains("Deployment completed successfully"), "{run}");
    let history = agent.ok(&["job", "history", "web"]);
    assert!(history.contains("Stable      = true"), "{history}");

    // Version 1 rolls two at a time: never more than two new allocations not yet healthy,
    // never fewer than four healthy ones in all.
    let v1 = job_file(&dir.path, 6, "v1", FOREVER, update);
    agent.ok(&["job", "run", "-detach", v1.to_str().unwrap()]);
    let mut seen_rolling = false;
    wait_for("the rolling update to finish", || {
        let v = status(&agent);
        let allocs = live(&v);
        let unproven = allocs
            .iter()
            .filter(|(ver, h)| *ver == 1 && h.is_none())
            .count();
        assert!(unproven <= 2, "more than max_parallel unproven: {allocs:?}");
        let healthy = allocs.iter().filter(|(_, h)| *h == Some(true)).count();
        assert!(
            healthy >= 4,
            "fewer than count - max_parallel healthy: {allocs:?}"
        );
        let (ver, st, _) = latest(&v);
        seen_rolling |= ver == 1 && allocs.iter().any(|(ver, _)| *ver == 0);
        if ver == 1 && st == "successful" {
            Ok(())
        } else {
            Err(format!("{allocs:?} {st}"))
        }
    });
    assert!(seen_rolling, "old and new allocations ran side by side");
    let text = agent.ok(&["job", "status", "web"]);
    assert!(text.contains("Latest Deployment\nID          = "), "{text}");
    assert!(
        text.contains("Status      = successful\nDescription = Deployment completed successfully"),
        "{text}"
    );
    assert!(
        text.contains("Deployed\nTask Group  Desired  Placed  Healthy  Unhealthy\napp         6        6       6        0"),
        "{text}"
    );
    assert!(text.contains("Version"), "{text}");
    let history = agent.ok(&["job", "history", "-p", "web"]);
    let v1_at = history.find("Version     = 1").unwrap();
    assert!(
        history[v1_at..].starts_with("Version     = 1\nStable      = true"),
        "{history}"
    );

    // An in-place change keeps the allocations (same IDs) and is a deployment of its own.
    let ids = |v: &Value| {
        let mut ids: Vec<String> = v["allocations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["desired_status"] == "run")
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let before = ids(&status(&agent));
    let src = std::fs::read_to_string(&v1).unwrap();
    let v2 = dir.path.join("web-v2.hcl");
    std::fs::write(
        &v2,
        src.replace("job \"web\" {", "job \"web\" {\n  priority = 70"),
    )
    .unwrap();
    let plan = agent.yurt(&["job", "plan", v2.to_str().unwrap()]);
    assert!(
        stdout(&plan).contains("(6 in-place update)"),
        "{}",
        stdout(&plan)
    );
    agent.ok(&["job", "run", v2.to_str().unwrap()]);
    wait_deployment(&agent, 2, "successful");
    assert_eq!(ids(&status(&agent)), before);
    let deployments = agent.ok(&["job", "deployments", "web"]);
    assert!(
        deployments.starts_with("ID        Job ID  Job Version  Status      Description\n"),
        "{deployments}"
    );
    assert_eq!(
        deployments
            .lines()
            .filter(|l| l.contains(" successful "))
            .count(),
        3,
        "{deployments}"
    );
}

#[test]
fn a_failing_version_fails_by_progress_deadline_and_leaves_the_old_allocations_running() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    // Health by checks that never pass: unhealthy at the healthy deadline, not failed.
    let update = r#"max_parallel = 1
    min_healthy_time = "200ms"
    healthy_deadline = "1s"
    progress_deadline = "2s""#;
    let v0 = job_file(&dir.path, 3, "v0", FOREVER, update);
    agent.ok(&["job", "run", v0.to_str().unwrap()]);
    let src = job_file(&dir.path, 3, "v1", FOREVER, update);
    let checked = std::fs::read_to_string(&src).unwrap().replace(
        "health_check = \"task_states\"",
        "health_check = \"checks\"",
    );
    let checked = checked.replace(
        "    task \"server\" {",
        "    network {\n      port \"http\" {}\n    }\n    service {\n      name = \"web\"\n      port = \"http\"\n      check {\n        type     = \"tcp\"\n        interval = \"100ms\"\n        timeout  = \"1s\"\n      }\n    }\n    task \"server\" {",
    );
    std::fs::write(&src, checked).unwrap();
    let run = agent.yurt(&["job", "run", src.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1), "{}", stdout(&run));
    assert!(
        stdout(&run).contains("Failed due to progress deadline"),
        "{}",
        stdout(&run)
    );
    let v = status(&agent);
    assert_eq!(
        latest(&v),
        (1, "failed".into(), "Failed due to progress deadline".into())
    );
    // Only one old allocation was replaced; the other two keep running, and stay so.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let allocs = live(&status(&agent));
    assert_eq!(
        allocs.iter().filter(|(ver, _)| *ver == 0).count(),
        2,
        "{allocs:?}"
    );
    let history = agent.ok(&["job", "history", "web"]);
    assert!(
        history.starts_with("Version     = 1\nStable      = false"),
        "{history}"
    );
}

#[test]
fn auto_revert_rolls_back_to_the_last_stable_version_as_a_new_version() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let update = r#"max_parallel = 1
    min_healthy_time = "200ms"
    healthy_deadline = "10s"
    progress_deadline = "20s"
    auto_revert = true"#;
    let v0 = job_file(&dir.path, 2, "v0", FOREVER, update);
    agent.ok(&["job", "run", v0.to_str().unwrap()]);
    // Version 1's task exits at once: unhealthy, and no reschedule attempts are left.
    let v1 = job_file(&dir.path, 2, "v1", "exit 3", update);
    agent.yurt(&["job", "run", "-detach", v1.to_str().unwrap()]);
    wait_deployment(&agent, 2, "successful");
    let deployments = agent.ok(&["job", "deployments", "web"]);
    let lines: Vec<&str> = deployments.lines().collect();
    assert!(
        lines[1].contains("web     2            successful  Deployment completed successfully"),
        "{deployments}"
    );
    assert!(lines[2].contains("web     1            failed      Failed due to unhealthy allocations - rolling back to job version 0"), "{deployments}");
    assert!(
        lines[3].contains("web     0            successful"),
        "{deployments}"
    );
    let history = agent.ok(&["job", "history", "-p", "web"]);
    assert!(
        history.contains("+/- Env[GREETING]: \"v1\" => \"v0\""),
        "version 2 is version 0's spec: {history}"
    );
    let allocs = live(&status(&agent));
    assert_eq!(allocs, vec![(2, Some(true)), (2, Some(true))]);
}

#[test]
fn a_canary_waits_for_promotion_refused_while_unhealthy_then_the_rest_rolls() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let update = r#"max_parallel = 1
    canary = 1
    min_healthy_time = "2s"
    healthy_deadline = "20s"
    progress_deadline = "30s""#;
    let v0 = job_file(&dir.path, 3, "v0", FOREVER, update);
    agent.ok(&["job", "run", v0.to_str().unwrap()]);
    let v1 = job_file(&dir.path, 3, "v1", FOREVER, update);
    agent.ok(&["job", "run", "-detach", v1.to_str().unwrap()]);
    let id = wait_for("the canary deployment", || {
        let v = status(&agent);
        match latest(&v) {
            (1, s, d) if s == "running" => Ok(d),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(id, "Deployment is running but requires manual promotion");
    let d = deployment_of(&agent, 1);
    // The canary runs beside the three old allocations; it is not healthy yet (2s).
    let refused = agent.yurt(&["deployment", "promote", &d[..8]]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        stderr(&refused).trim(),
        "Error promoting deployment: Task group \"app\" has 0/1 healthy allocations"
    );
    let allocs = live(&status(&agent));
    assert_eq!(
        allocs.iter().filter(|(v, _)| *v == 0).count(),
        3,
        "{allocs:?}"
    );
    assert_eq!(
        allocs.iter().filter(|(v, _)| *v == 1).count(),
        1,
        "{allocs:?}"
    );
    let shown = agent.ok(&["deployment", "status", &d]);
    assert!(
        shown.contains("Task Group  Promoted  Desired  Canaries  Placed  Healthy  Unhealthy  Progress Deadline"),
        "{shown}"
    );
    wait_for("the canary to be healthy", || {
        let allocs = live(&status(&agent));
        if allocs.contains(&(1, Some(true))) {
            Ok(())
        } else {
            Err(format!("{allocs:?}"))
        }
    });
    // Promoted: the rest rolls, one at a time, and `deployment promote` follows it.
    let promoted = agent.ok(&["deployment", "promote", &d]);
    assert!(
        promoted.contains("Deployment completed successfully"),
        "{promoted}"
    );
    let allocs = live(&status(&agent));
    assert_eq!(allocs.len(), 3, "{allocs:?}");
    assert!(allocs.iter().all(|(v, _)| *v == 1), "{allocs:?}");
    let again = agent.yurt(&["deployment", "promote", &d]);
    assert_eq!(
        stderr(&again).trim(),
        "Error promoting deployment: can't promote terminal deployment"
    );
}

#[test]
fn blue_green_with_auto_promote_never_drops_below_count_healthy() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let update = r#"max_parallel = 2
    canary = 2
    auto_promote = true
    min_healthy_time = "500ms"
    healthy_deadline = "20s"
    progress_deadline = "30s""#;
    let blue = job_file(&dir.path, 2, "blue", FOREVER, update);
    agent.ok(&["job", "run", blue.to_str().unwrap()]);
    let green = job_file(&dir.path, 2, "green", FOREVER, update);
    agent.ok(&["job", "run", "-detach", green.to_str().unwrap()]);
    let mut both = false;
    wait_for("green to replace blue", || {
        let v = status(&agent);
        let allocs = live(&v);
        let healthy = allocs.iter().filter(|(_, h)| *h == Some(true)).count();
        assert!(healthy >= 2, "below count healthy: {allocs:?}");
        both |= allocs.iter().filter(|(v, _)| *v == 0).count() == 2
            && allocs.iter().filter(|(v, _)| *v == 1).count() == 2;
        let (ver, st, _) = latest(&v);
        if ver == 1 && st == "successful" {
            Ok(())
        } else {
            Err(format!("{allocs:?} {st}"))
        }
    });
    assert!(both, "blue and green ran side by side");
    let allocs = live(&status(&agent));
    assert_eq!(allocs, vec![(1, Some(true)), (1, Some(true))]);
}

#[test]
fn pause_resume_fail_and_a_newer_version_cancelling_the_running_deployment() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let update = r#"max_parallel = 1
    min_healthy_time = "300ms"
    healthy_deadline = "1s"
    progress_deadline = "2s""#;
    let v0 = job_file(&dir.path, 3, "v0", FOREVER, update);
    agent.ok(&["job", "run", v0.to_str().unwrap()]);
    let v1 = job_file(&dir.path, 3, "v1", FOREVER, update);
    agent.ok(&["job", "run", "-detach", v1.to_str().unwrap()]);
    let d = wait_for("the deployment of version 1", || {
        let v = status(&agent);
        match latest(&v) {
            (1, _, _) => Ok(deployment_of(&agent, 1)),
            other => Err(format!("{other:?}")),
        }
    });
    let paused = agent.ok(&["deployment", "pause", &d]);
    assert_eq!(paused.trim(), format!("Deployment {:?} paused", &d[..8]));
    // Paused past its progress deadline: not failed, and nothing more is replaced.
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let v = status(&agent);
    assert_eq!(latest(&v).1, "paused");
    let new = live(&v).iter().filter(|(ver, _)| *ver == 1).count();
    assert_eq!(new, 1, "{:?}", live(&v));
    let resumed = agent.ok(&["deployment", "resume", &d]);
    assert!(
        resumed.starts_with(&format!("Deployment {:?} resumed\n", &d[..8])),
        "{resumed}"
    );
    assert!(
        resumed.contains("Deployment completed successfully"),
        "{resumed}"
    );

    // A newer version cancels the running deployment of the one before.
    let v2 = job_file(&dir.path, 3, "v2", FOREVER, update);
    agent.ok(&["job", "run", "-detach", v2.to_str().unwrap()]);
    let v3 = job_file(&dir.path, 3, "v3", FOREVER, update);
    agent.ok(&["job", "run", "-detach", v3.to_str().unwrap()]);
    let d2 = deployment_of(&agent, 2);
    wait_for("version 2's deployment to be cancelled", || {
        let shown = agent.ok(&["deployment", "status", &d2]);
        if shown.contains("Description = Cancelled due to newer version of job") {
            Ok(())
        } else {
            Err(shown)
        }
    });
    let d3 = deployment_of(&agent, 3);
    let failed = agent.ok(&["deployment", "fail", &d3]);
    assert!(
        failed.contains("failed: Deployment marked as failed"),
        "{failed}"
    );
    let refused = agent.yurt(&["deployment", "pause", &d3]);
    assert_eq!(
        stderr(&refused).trim(),
        "Error pausing deployment: can't pause terminal deployment"
    );
    let unknown = agent.yurt(&["deployment", "fail", "ffffffff"]);
    assert_eq!(
        stderr(&unknown).trim(),
        "Error failing deployment: deployment \"ffffffff\" not found"
    );
    let list = agent.ok(&["deployment", "list"]);
    assert!(
        list.contains("cancelled") && list.contains("failed"),
        "{list}"
    );
}

#[test]
fn job_revert_registers_an_earlier_version_again() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let update = r#"max_parallel = 2
    min_healthy_time = "200ms"
    healthy_deadline = "10s"
    progress_deadline = "20s""#;
    let v0 = job_file(&dir.path, 2, "v0", FOREVER, update);
    agent.ok(&["job", "run", v0.to_str().unwrap()]);
    let v1 = job_file(&dir.path, 2, "v1", FOREVER, update);
    agent.ok(&["job", "run", v1.to_str().unwrap()]);
    let reverted = agent.ok(&["job", "revert", "web", "0"]);
    assert!(
        reverted.contains("Deployment completed successfully"),
        "{reverted}"
    );
    let v = status(&agent);
    assert_eq!(v["job"]["version"].as_u64(), Some(2));
    assert_eq!(live(&v), vec![(2, Some(true)), (2, Some(true))]);
    let history = agent.ok(&["job", "history", "-p", "web"]);
    assert!(
        history.contains("+/- Env[GREETING]: \"v1\" => \"v0\""),
        "{history}"
    );
    for (args, message) in [
        (
            vec!["job", "revert", "web", "2"],
            "Error reverting job: job \"web\" is already at version 2",
        ),
        (
            vec!["job", "revert", "web", "9"],
            "Error reverting job: job \"web\" has no version 9 (kept versions: 0, 1, 2)",
        ),
        (
            vec!["job", "revert", "web", "0"],
            "Error reverting job: job \"web\" version 0 has the same specification as the current version 2: nothing to revert",
        ),
    ] {
        let out = agent.yurt(&args);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(stderr(&out).trim(), message);
    }
}

#[test]
fn manual_health_is_set_with_deployment_allocation_health() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let update = r#"max_parallel = 1
    min_healthy_time = "200ms"
    healthy_deadline = "30s"
    progress_deadline = "60s""#;
    let file = job_file(&dir.path, 1, "v0", FOREVER, update);
    let manual = std::fs::read_to_string(&file).unwrap().replace(
        "health_check = \"task_states\"",
        "health_check = \"manual\"",
    );
    std::fs::write(&file, manual).unwrap();
    agent.ok(&["job", "run", "-detach", file.to_str().unwrap()]);
    let alloc = agent.wait_running("web", 1).remove(0);
    let d = deployment_of(&agent, 0);
    // Nobody judges it but the operator: the deployment waits.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(latest(&status(&agent)).1, "running");
    let unknown = agent.yurt(&[
        "deployment",
        "allocation-health",
        "-healthy",
        "ffffffff",
        &d,
    ]);
    assert_eq!(
        stderr(&unknown).trim(),
        "Error setting allocation health: allocation \"ffffffff\" not found"
    );
    agent.ok(&[
        "deployment",
        "allocation-health",
        "-healthy",
        &alloc[..8],
        &d,
    ]);
    assert_eq!(
        wait_deployment(&agent, 0, "successful"),
        "Deployment completed successfully"
    );
}
