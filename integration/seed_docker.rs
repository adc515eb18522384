//! Seed 004 ("Rolling Upgrades"), literally, with real images in a private Docker daemon:
//! `geo-api-server:0.1` and `:0.2` built here (each serves its version over HTTP on its
//! container's address), the seed's job with count 6 and its `update` stanza (durations
//! shortened; `progress_deadline = "0"`, the seed's behaviour from before progress deadlines:
//! an unhealthy allocation fails the deployment), `job plan`'s diff and
//! dry run, a rolling update that keeps at least 4 containers answering, then `:0.33` (an
//! image that does not exist) with `auto_revert`, failing and reverting as the seed shows in
//! `job deployments` and `job history -p`.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::docker::docker_agent;
use crate::dockerd::Dockerd;
use crate::harness::*;

const JOB: &str = "geo-api-server";

/// The seed's job file: `image` and whether the update stanza has `auto_revert`.
fn geo_job(image: &str, auto_revert: bool) -> String {
    let revert = if auto_revert {
        "\n      # Enable automatically reverting to the last stable job on a failed\n      # deployment.\n      auto_revert = true"
    } else {
        ""
    };
    format!(
        r#"job "geo-api-server" {{
  group "api-server" {{
    count = 6

    # Add an update stanza to enable rolling updates of the service
    update {{
      max_parallel     = 2
      min_healthy_time = "1s"
      healthy_deadline = "30s"
      # The seed predates progress deadlines: an unhealthy allocation fails the deployment.
      progress_deadline = "0"{revert}
    }}

    task "server" {{
      driver = "docker"

      config {{
        image = "{image}"
      }}

      resources {{
        cpu    = 50
        memory = 32
      }}
    }}
  }}
}}
"#
    )
}

/// How many of the job's live allocations answer on port 8080 of their container's address
/// (the seed's job maps no port), and with which versions.
fn answering(agent: &Agent, docker: &Dockerd) -> (usize, Vec<String>) {
    let mut bodies = Vec::new();
    for a in job_allocations(agent, JOB) {
        if a["desired_status"] != "run" || a["client_status"] != "running" {
            continue;
        }
        let name = format!("server-{}", a["id"].as_str().unwrap());
        let Ok(i) = docker.call(|c| async move { c.inspect_container(&name, None).await }) else {
            continue;
        };
        let ip = i
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|n| n.get("bridge").and_then(|b| b.ip_address.clone()))
            .unwrap_or_default();
        if ip.is_empty() {
            continue;
        }
        // A container stopped in the middle of an answer never finishes it: that one does not
        // answer, it does not stop the watch.
        let got = try_http(
            &format!("{ip}:8080"),
            "GET",
            "/",
            "",
            "",
            std::time::Duration::from_secs(3),
        );
        if let Ok((status, _, body)) = got {
            if status.contains("200") {
                bodies.push(body.trim().to_string());
            }
        }
    }
    (bodies.len(), bodies)
}

/// Waits until all six allocations answer, each with `version`.
fn wait_six_answering(agent: &Agent, docker: &Dockerd, version: &str) {
    let want = format!("geo-api-server {version}");
    wait_for(&format!("six containers answering {version}"), || {
        let (n, bodies) = answering(agent, docker);
        if n == 6 && bodies.iter().all(|b| *b == want) {
            Ok(())
        } else {
            Err(format!("{bodies:?}"))
        }
    });
}

fn deployment_rows(agent: &Agent) -> Vec<Vec<String>> {
    let out = agent.ok(&["job", "deployments", JOB]);
    out.lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let mut row: Vec<String> = cols.iter().take(4).map(|c| c.to_string()).collect();
            row.push(cols.iter().skip(4).copied().collect::<Vec<_>>().join(" "));
            row
        })
        .collect()
}

fn wait_deployment(agent: &Agent, version: u64, status: &str) {
    wait_for(
        &format!("the deployment of version {version} to be {status}"),
        || {
            let out = agent.ok(&["job", "deployments", "-json", JOB]);
            let v: Value = serde_json::from_str(&out).unwrap();
            let found = v.as_array().unwrap().iter().any(|d| {
                d["job_version"].as_u64().unwrap_or(0) == version && d["status"] == status
            });
            if found {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
}

#[test]
fn seed_004_rolling_upgrade_and_auto_revert_with_real_images() {
    let dir = TestDir::new();
    let docker = Dockerd::start(&dir.path);
    for v in ["0.1", "0.2"] {
        docker.image(
            &format!("geo-api-server:{v}"),
            &[("www/index.html", &format!("geo-api-server {v}\n"))],
            &["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
        );
    }
    let (agent, _) = docker_agent(&dir, &docker, "");
    let file = dir.path.join("geo-api-server.nomad");
    std::fs::write(&file, geo_job("geo-api-server:0.1", false)).unwrap();
    let path = file.to_str().unwrap();
    let run = agent.ok(&["job", "run", path]);
    assert!(run.contains("Deployment completed successfully"), "{run}");
    wait_six_answering(&agent, &docker, "0.1");

    // Planning changes.
    std::fs::write(&file, geo_job("geo-api-server:0.2", false)).unwrap();
    let plan = agent.yurt(&["job", "plan", path]);
    let text = stdout(&plan);
    assert_eq!(plan.status.code(), Some(1), "changes: exit code 1\n{text}");
    for want in [
        "+/- Job: \"geo-api-server\"",
        "+/- Task Group: \"api-server\" (2 create/destroy update, 4 ignore)",
        "+/- Task: \"server\" (forces create/destroy update)",
        "+/- Config {",
        "+/- image: \"geo-api-server:0.1\" => \"geo-api-server:0.2\"",
        "Scheduler dry-run:",
        "- All tasks successfully allocated.",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let index = text
        .lines()
        .find_map(|l| l.strip_prefix("Job Modify Index: "))
        .unwrap()
        .trim()
        .to_string();

    // The rolling update, watched: never fewer than 4 containers answering.
    let done = AtomicBool::new(false);
    let (run, (fewest, samples)) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut fewest = usize::MAX;
            let mut samples = 0;
            while !done.load(Ordering::Relaxed) {
                fewest = fewest.min(answering(&agent, &docker).0);
                samples += 1;
            }
            (fewest, samples)
        });
        let run = agent.ok(&["job", "run", "-check-index", &index, path]);
        done.store(true, Ordering::Relaxed);
        (run, watcher.join().unwrap())
    });
    assert!(run.contains("Deployment completed successfully"), "{run}");
    assert!(samples > 3, "{samples} samples");
    assert!(
        fewest >= 4,
        "only {fewest} containers answered at one point"
    );
    wait_six_answering(&agent, &docker, "0.2");

    // Auto-reverting on a failed deployment: 0.33 does not exist.
    std::fs::write(&file, geo_job("geo-api-server:0.33", true)).unwrap();
    agent.yurt(&["job", "run", "-detach", path]);
    wait_deployment(&agent, 3, "successful");
    let rows = deployment_rows(&agent);
    let expect = [
        ("3", "successful", "Deployment completed successfully"),
        (
            "2",
            "failed",
            "Failed due to unhealthy allocations - rolling back to job version 1",
        ),
        ("1", "successful", "Deployment completed successfully"),
        ("0", "successful", "Deployment completed successfully"),
    ];
    assert_eq!(rows.len(), 4, "{rows:?}");
    for (row, (version, status, description)) in rows.iter().zip(expect) {
        assert_eq!(row[1], JOB, "{rows:?}");
        assert_eq!(
            (row[2].as_str(), row[3].as_str(), row[4].as_str()),
            (version, status, description),
            "{rows:?}"
        );
    }
    let history = agent.ok(&["job", "history", "-p", JOB]);
    let versions: Vec<&str> = history.split("Version     = ").skip(1).collect();
    assert_eq!(versions.len(), 4, "{history}");
    let expect = [
        ("3", "true", Some(("0.33", "0.2"))),
        ("2", "false", Some(("0.2", "0.33"))),
        ("1", "true", Some(("0.1", "0.2"))),
        ("0", "true", None),
    ];
    for (text, (version, stable, diff)) in versions.iter().zip(expect) {
        assert!(text.starts_with(&format!("{version}\n")), "{text}");
        assert!(text.contains(&format!("Stable      = {stable}")), "{text}");
        match diff {
            Some((from, to)) => {
                let line =
                    format!("+/- image: \"geo-api-server:{from}\" => \"geo-api-server:{to}\"");
                assert!(text.contains(&line), "missing {line:?} in:\n{text}");
            }
            None => assert!(!text.contains("Diff"), "{text}"),
        }
    }
    wait_six_answering(&agent, &docker, "0.2");
}
