//! The docker driver with real agents and a private Docker daemon ([`crate::dockerd`]): ports
//! mapped and reachable, the task's environment and directories, `alloc logs -f` of a
//! container, a memory limit's OOM kill, a client restart that re-attaches to the same
//! container, a daemon that goes away (driver unhealthy, nothing placed, running containers
//! kept) and comes back, a missing image failing with Docker's reason, a drain moving
//! containers, leftover containers of a crashed client removed, unused images removed after
//! `gc { image_delay }`, the README's docker example, a container removed behind the client's
//! back (its task ended and restarted). Seed 004 with real images: `seed_docker`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::dockerd::Dockerd;
use crate::drivers::{alloc_id, alloc_of, wait_alloc_status};
use crate::harness::*;

/// The test image: busybox, a page, `httpd` serving it on 8080.
pub(crate) const APP: &str = "yurt-test-app:1";

pub(crate) fn app_image(docker: &Dockerd) {
    docker.image(
        APP,
        &[("www/index.html", "hello from a container\n")],
        &["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
    );
}

/// A `-dev` agent on `DIR/data` whose client uses `docker` (`extra` lines in its docker
/// plugin's `config`), its node ready and the docker driver healthy.
pub(crate) fn docker_agent(dir: &TestDir, docker: &Dockerd, extra: &str) -> (Agent, PathBuf) {
    let config = dir.path.join("docker-client.hcl");
    std::fs::write(&config, docker.client_config(extra)).unwrap();
    let agent = Agent::start(
        &dir.path.join("data"),
        &["-dev", "-config", config.to_str().unwrap()],
    );
    agent.wait_node_ready();
    wait_docker_health(&agent, true);
    (agent, config)
}

/// The one node's docker driver, as `node status -verbose` shows it.
pub(crate) fn docker_row(agent: &Agent) -> String {
    let id = node_id(agent);
    let text = agent.ok(&["node", "status", "-verbose", &id]);
    text.lines()
        .find(|l| l.starts_with("docker "))
        .unwrap_or_default()
        .to_string()
}

fn node_id(agent: &Agent) -> String {
    let list = agent.ok(&["node", "status"]);
    list.lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string()
}

pub(crate) fn wait_docker_health(agent: &Agent, healthy: bool) -> String {
    let want = if healthy { "true" } else { "false" };
    wait_for(&format!("the docker driver's health to be {want}"), || {
        let row = docker_row(agent);
        let cols: Vec<&str> = row.split_whitespace().collect();
        if cols.get(2) == Some(&want) {
            Ok(row)
        } else {
            Err(row)
        }
    })
}

/// Writes `DIR/NAME.hcl`: a service job of `count` docker tasks `t` with `config` lines and
/// `extra` lines in the group (a `network` block with port `http` to 8080 is always there).
pub(crate) fn docker_job(dir: &Path, name: &str, count: u32, config: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.hcl"));
    let src = format!(
        "job {name:?} {{\n  group \"g\" {{\n    count = {count}\n    network {{\n      port \"http\" {{\n        to = 8080\n      }}\n    }}\n{extra}\n    task \"t\" {{\n      driver = \"docker\"\n      config {{\n{config}\n      }}\n      resources {{\n        cpu    = 50\n        memory = 32\n      }}\n    }}\n  }}\n}}\n"
    );
    std::fs::write(&path, src).unwrap();
    path
}

/// The container of an allocation's task `t`: its ID and state.
pub(crate) fn container_of(docker: &Dockerd, alloc: &str) -> Option<(String, String)> {
    docker
        .containers()
        .into_iter()
        .find(|(_, name, ..)| name == &format!("t-{alloc}"))
        .map(|(id, _, state, _)| (id, state))
}

/// Waits until the allocation's container is gone (removed once its task ended).
pub(crate) fn wait_no_container(docker: &Dockerd, alloc: &str) {
    wait_for(
        &format!("no container left for {alloc}"),
        || match container_of(docker, alloc) {
            None => Ok(()),
            Some(c) => Err(format!("{c:?}")),
        },
    );
}

/// `State.StartedAt` and `State.Pid` of a container.
fn started_at(docker: &Dockerd, id: &str) -> (String, i64) {
    let id = id.to_string();
    let i = docker
        .call(|c| async move { c.inspect_container(&id, None).await })
        .unwrap();
    let s = i.state.unwrap();
    (s.started_at.unwrap_or_default(), s.pid.unwrap_or(0))
}

/// The host port of an allocation's `http` port.
pub(crate) fn host_port(alloc: &Value) -> u64 {
    alloc["ports"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["label"] == "http"))
        .and_then(|p| p["value"].as_u64())
        .unwrap()
}

const RESTART_NEVER: &str = "    restart {\n      attempts = 0\n      mode     = \"fail\"\n    }\n";

#[test]
fn a_container_s_port_answers_and_its_output_reaches_alloc_logs_follow() {
    let _ports = crate::dockerd::host_ports();
    let dir = TestDir::new();
    let docker = Dockerd::start(&dir.path);
    app_image(&docker);
    let (agent, _) = docker_agent(&dir, &docker, "");
    let script = "echo started $NOMAD_ALLOC_ID in $NOMAD_TASK_DIR; echo to-stderr >&2; \
                  ls -d /alloc/logs /local /secrets; i=0; \
                  while true; do i=$((i+1)); echo tick $i; sleep 0.2; done & \
                  exec httpd -f -p 8080 -h /www";
    let job = docker_job(
        &dir.path,
        "web",
        1,
        &format!(
            "        image   = \"{APP}\"\n        command = \"/bin/sh\"\n        args    = [\"-c\", {script:?}]\n        ports   = [\"http\"]\n        labels {{\n          team = \"geo\"\n        }}"
        ),
        "",
    );
    agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    agent.wait_running("web", 1);
    let alloc = alloc_of(&agent, "web");
    let id = alloc["id"].as_str().unwrap().to_string();
    let port = host_port(&alloc);
    let (_, body) = wait_for("the container's port to answer", || {
        let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/");
        if status.contains("200") {
            Ok((status, body))
        } else {
            Err(status)
        }
    });
    assert_eq!(body, "hello from a container\n");
    let (cid, state) = container_of(&docker, &id).expect("the allocation's container");
    assert_eq!(state, "running");
    let labels = &docker
        .containers()
        .into_iter()
        .find(|c| c.0 == cid)
        .unwrap()
        .3;
    assert_eq!(labels["com.hashicorp.nomad.alloc_id"], id);
    assert_eq!(labels["com.hashicorp.nomad.job_name"], "web");
    assert_eq!(labels["com.hashicorp.nomad.task_group_name"], "g");
    assert_eq!(labels["com.hashicorp.nomad.task_name"], "t");
    assert_eq!(labels["team"], "geo");
    let logs = wait_for("the container's output in alloc logs", || {
        let text = agent.ok(&["alloc", "logs", &id]);
        if text.contains("tick 2") {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert!(
        logs.starts_with(&format!("started {id} in /local\n")),
        "{logs}"
    );
    assert!(logs.contains("/alloc/logs\n/local\n/secrets\n"), "{logs}");
    // Docker sends the two streams apart: stderr's line may come a moment after stdout's.
    let stderr_log = wait_for("the container's stderr in alloc logs", || {
        let text = agent.ok(&["alloc", "logs", "-stderr", &id]);
        if text.is_empty() {
            Err(text)
        } else {
            Ok(text)
        }
    });
    assert_eq!(stderr_log, "to-stderr\n");
    let status = agent.ok(&["alloc", "status", &id]);
    assert!(
        status.contains(&format!("Downloading Image  Image {APP} found locally")),
        "{status}"
    );
    // -f prints what comes after: ticks beyond those already written.
    let seen: u64 = logs
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .max()
        .unwrap();
    let mut follow = Command::new(YURT)
        .args(["alloc", "logs", "-f", &id])
        .env("YURT_ADDR", &agent.grpc)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let later = wait_for("alloc logs -f to print a later tick", || {
        let line = lines
            .next()
            .ok_or("no more output")?
            .map_err(|e| e.to_string())?;
        match line
            .strip_prefix("tick ")
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(n) if n > seen + 3 => Ok(n),
            _ => Err(line),
        }
    });
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(later > seen);
    let exec = agent.ok(&["alloc", "exec", &id, "/bin/cat", "/www/index.html"]);
    assert_eq!(exec, "hello from a container\n");
    let stats = agent.ok(&["alloc", "status", "-stats", &id]);
    assert!(stats.contains("Memory Stats"), "{stats}");
    agent.ok(&["job", "stop", "web"]);
    wait_no_container(&docker, &id);
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed_and_says_so() {
    let dir = TestDir::new();
    let docker = Dockerd::start(&dir.path);
    app_image(&docker);
    let (agent, _) = docker_agent(&dir, &docker, "");
    let script = "x=$(yes | head -c 200000000); sleep 1000";
    let job = docker_job(
        &dir.path,
        "hog",
        1,
        &format!("        image   = \"{APP}\"\n        command = \"/bin/sh\"\n        args    = [\"-c\", {script:?}]"),
        RESTART_NEVER,
    );
    agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    let (_, status) = wait_alloc_status(&agent, "hog", "failed");
    assert!(status.contains("OOM Killed, Exit Code: 137"), "{status}");
}

#[test]
fn a_client_restart_re_attaches_to_the_same_container() {
    let dir = TestDir::new();
    let docker = Dockerd::start(&dir.path);
    app_image(&docker);
    let (mut agent, config) = docker_agent(&dir, &docker, "");
    let job = docker_job(
        &dir.path,
        "keep",
        1,
        &format!("        image = \"{APP}\""),
        "",
    );
    agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    agent.wait_running("keep", 1);
    let id = alloc_id(&agent, "keep");
    let (cid, _) = container_of(&docker, &id).unwrap();
    let before = started_at(&docker, &cid);
    agent.kill9();
    agent.restart(&["-dev", "-config", config.to_str().unwrap()]);
    agent.wait_node_ready();
    agent.wait_running("keep", 1);
    assert_eq!(alloc_id(&agent, "keep"), id);
    let (again, state) = container_of(&docker, &id).unwrap();
    assert_eq!((again.as_str(), state.as_str()), (cid.as_str(), "running"));
    assert_eq!(started_at(&docker, &cid), before, "not restarted");
    assert!(alive(before.1 as i32));
    let status = agent.ok(&["alloc", "status", &id]);
    assert_eq!(status.matches("Started").count(), 1, "{status}");
    // Still watched: a stop reaches it.
    agent.ok(&["job", "stop", "keep"]);
    wait_no_container(&docker, &id);
}

#[test]
fn a_daemon_that_goes_away_makes_the_driver_unhealthy_and_leaves_running_containers_alone() {
    let dir = TestDir::new();
    let mut docker = Dockerd::start(&dir.path);
    app_image(&docker);
    let (agent, _) = docker_agent(&dir, &docker, "");
    let one = docker_job(
        &dir.path,
        "one",
        1,
        &format!("        image = \"{APP}\""),
        "",
    );
    agent.ok(&["job", "run", "-detach", one.to_str().unwrap()]);
    agent.wait_running("one", 1);
    let id = alloc_id(&agent, "one");
    let (cid, _) = container_of(&docker, &id).unwrap();
    let (_, pid) = started_at(&docker, &cid);
    docker.stop();
    let row = wait_docker_health(&agent, false);
    assert!(
        row.contains("Docker daemon is not available at unix://"),
        "{row}"
    );
    let two = docker_job(
        &dir.path,
        "two",
        1,
        &format!("        image = \"{APP}\""),
        "",
    );
    let run = agent.yurt(&["job", "run", "-detach", two.to_str().unwrap()]);
    assert!(run.status.success(), "{}", stderr(&run));
    let status = wait_for("two's placement failure", || {
        let text = agent.ok(&["job", "status", "two"]);
        if text.contains("missing drivers") {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert!(
        status.contains("Constraint \"missing drivers\": 1 nodes excluded by filter"),
        "{status}"
    );
    assert!(alive(pid as i32), "the running container was left alone");
    let v = alloc_of(&agent, "one");
    assert_eq!(v["client_status"], "running", "{v}");
    docker.restart();
    wait_docker_health(&agent, true);
    agent.wait_running("two", 1);
    let (again, state) = container_of(&docker, &id).unwrap();
    assert_eq!((again, state.as_str()), (cid, "running"));
    assert!(alive(pid as i32));
}

#[test]
fn a_missing_image_fails_the_task_with_docker_s_reason() {
    let dir = TestDir::new();
    let docker = Dockerd::start(&dir.path);
    let (agent, _) = docker_agent(&dir, &docker, "");
    let job = docker_job(
        &dir.path,
        "ghost",
        1,
        "        image = \"yurt-no-such-image:0.33\"\n        image_pull_timeout = \"20s\"",
        RESTART_NEVER,
    );
    agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    let (_, status) = wait_alloc_status(&agent, "ghost", "failed");
    let failure = status
        .lines()
        .find(|l| l.contains("Driver Failure"))
        .unwrap_or_else(|| panic!("no Driver Failure event:\n{status}"));
    assert!(
        failure.contains("Failed to pull `yurt-no-such-image:0.33`: "),
        "{status}"
    );
}

#[test]
fn a_crashed_client_s_leftover_containers_are_removed_and_unused_images_after_image_delay() {
    let dir = TestDir::new();
    let docker = Dockerd::start(&dir.path);
    app_image(&docker);
    docker.image("yurt-test-once:1", &[], &["/bin/echo", "done"]);
    let gc = "    gc {\n      image_delay = \"1s\"\n    }\n";
    let (mut agent, config) = docker_agent(&dir, &docker, gc);
    let keep = docker_job(
        &dir.path,
        "keep",
        1,
        &format!("        image = \"{APP}\""),
        "",
    );
    agent.ok(&["job", "run", "-detach", keep.to_str().unwrap()]);
    agent.wait_running("keep", 1);
    let id = alloc_id(&agent, "keep");
    let (cid, _) = container_of(&docker, &id).unwrap();
    // A container of this node that no allocation claims (made by a client that crashed
    // before recording it).
    let node = node_id(&agent);
    let node_full = agent.ok(&["node", "status", "-json", &node]);
    let node_full: Value = serde_json::from_str(&node_full).unwrap();
    let node_full = node_full["id"].as_str().unwrap().to_string();
    let stray = docker
        .call(|c| async move {
            let body = bollard::models::ContainerCreateBody {
                image: Some(APP.into()),
                labels: Some(
                    [
                        ("com.hashicorp.nomad.node_id".to_string(), node_full),
                        (
                            "com.hashicorp.nomad.alloc_id".to_string(),
                            "gone".to_string(),
                        ),
                    ]
                    .into(),
                ),
                host_config: Some(bollard::models::HostConfig {
                    network_mode: Some("none".into()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let made = c
                .create_container(
                    None::<bollard::query_parameters::CreateContainerOptions>,
                    body,
                )
                .await?;
            c.start_container(&made.id, None).await?;
            Ok(made.id)
        })
        .unwrap();
    agent.kill9();
    agent.restart(&["-dev", "-config", config.to_str().unwrap()]);
    agent.wait_node_ready();
    wait_for("the stray container to be removed", || {
        let ids: Vec<String> = docker.containers().into_iter().map(|c| c.0).collect();
        if ids.contains(&stray) {
            Err(format!("{ids:?}"))
        } else {
            Ok(())
        }
    });
    assert_eq!(
        container_of(&docker, &id).map(|c| c.0),
        Some(cid),
        "a claimed one stays"
    );
    // A batch job's image, unused once its container is gone, is removed after image_delay;
    // the image of a running container stays.
    let once = dir.path.join("once.hcl");
    std::fs::write(
        &once,
        "job \"once\" {\n  type = \"batch\"\n  group \"g\" {\n    task \"t\" {\n      driver = \"docker\"\n      config {\n        image = \"yurt-test-once:1\"\n        network_mode = \"none\"\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    agent.ok(&["job", "run", "-detach", once.to_str().unwrap()]);
    let (oid, _) = wait_alloc_status(&agent, "once", "complete");
    assert_eq!(agent.ok(&["alloc", "logs", &oid]), "done\n");
    wait_for("the unused image to be removed", || {
        match docker.call(|c| async move { c.inspect_image("yurt-test-once:1").await }) {
            Err(e) if e.contains("No such image") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert!(docker
        .call(|c| async move { c.inspect_image(APP).await })
        .is_ok());
}

#[test]
fn a_drain_moves_containers_to_another_node() {
    let dir = TestDir::new();
    let docker = Dockerd::start(&dir.path);
    app_image(&docker);
    let (agent, config) = docker_agent(&dir, &docker, "");
    let first = node_id(&agent);
    let _other = Agent::start(
        &dir.path.join("other"),
        &[
            "-client",
            "-servers",
            &agent.grpc,
            "-node",
            "other",
            "-config",
            config.to_str().unwrap(),
        ],
    );
    wait_for("two ready nodes", || {
        let list = agent.ok(&["node", "status"]);
        if list.matches(" ready").count() == 2 {
            Ok(())
        } else {
            Err(list)
        }
    });
    let job = docker_job(
        &dir.path,
        "moved",
        2,
        &format!("        image = \"{APP}\""),
        "",
    );
    agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    agent.wait_running("moved", 2);
    let before: Vec<String> = job_allocations(&agent, "moved")
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    agent.ok(&[
        "node",
        "drain",
        "-enable",
        "-yes",
        "-deadline",
        "30s",
        &first,
    ]);
    wait_for("both allocations to run on the other node", || {
        let all = job_allocations(&agent, "moved");
        let running: Vec<&Value> = all
            .iter()
            .filter(|a| a["desired_status"] == "run" && a["client_status"] == "running")
            .collect();
        let moved = running
            .iter()
            .all(|a| !a["node_id"].as_str().unwrap().starts_with(&first));
        if running.len() == 2 && moved {
            Ok(())
        } else {
            Err(format!("{all:?}"))
        }
    });
    for a in job_allocations(&agent, "moved") {
        let id = a["id"].as_str().unwrap();
        if a["node_id"].as_str().unwrap().starts_with(&first) {
            wait_no_container(&docker, id);
        } else if a["desired_status"] == "run" {
            let state = container_of(&docker, id).map(|c| c.1);
            assert_eq!(state.as_deref(), Some("running"), "{id}");
        }
    }
    assert!(!before.is_empty());
}

#[test]
fn the_readme_s_docker_example_runs_and_answers() {
    let _ports = crate::dockerd::host_ports();
    let dir = TestDir::new();
    let docker = Dockerd::start(&dir.path);
    // The example's image, built here (no registry): busybox, as the real one is.
    docker.image("busybox:1.36", &[], &["/bin/sh"]);
    let (agent, _) = docker_agent(&dir, &docker, "");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/docker.hcl");
    agent.ok(&["job", "run", "-detach", example]);
    agent.wait_running("hello-docker", 1);
    let alloc = alloc_of(&agent, "hello-docker");
    let id = alloc["id"].as_str().unwrap();
    let port = host_port(&alloc);
    let body = wait_for("the example to answer", || {
        let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/");
        if status.contains("200") {
            Ok(body)
        } else {
            Err(status)
        }
    });
    assert_eq!(body, format!("hello from {id}\n"));
}

#[test]
fn a_restart_makes_a_new_container_and_an_ended_one_is_removed() {
    let dir = TestDir::new();
    let docker = Dockerd::start(&dir.path);
    app_image(&docker);
    let (agent, _) = docker_agent(&dir, &docker, "");
    let script = "echo run $(hostname); sleep 1; exit 3";
    let job = docker_job(
        &dir.path,
        "twice",
        1,
        &format!("        image   = \"{APP}\"\n        command = \"/bin/sh\"\n        args    = [\"-c\", {script:?}]"),
        crate::drivers::RESTART_ONCE,
    );
    agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    let (id, status) = wait_alloc_status(&agent, "twice", "failed");
    assert_eq!(status.matches("Started").count(), 2, "{status}");
    assert!(status.contains("Exit Code: 3"), "{status}");
    // Each run was a container of its own (its hostname is its ID's first 12 characters).
    let logs = agent.ok(&["alloc", "logs", &id]);
    let hosts: Vec<&str> = logs
        .lines()
        .filter_map(|l| l.strip_prefix("run "))
        .collect();
    assert_eq!(hosts.len(), 2, "{logs}");
    assert_ne!(hosts[0], hosts[1], "{logs}");
    wait_no_container(&docker, &id);
}

#[test]
fn a_container_removed_behind_the_client_s_back_ends_its_task_which_is_restarted() {
    let dir = TestDir::new();
    let docker = Dockerd::start(&dir.path);
    app_image(&docker);
    let (agent, _) = docker_agent(&dir, &docker, "");
    let job = docker_job(
        &dir.path,
        "gone",
        1,
        &format!("        image = \"{APP}\""),
        crate::drivers::RESTART_ONCE,
    );
    agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    agent.wait_running("gone", 1);
    let id = alloc_id(&agent, "gone");
    let (cid, _) = container_of(&docker, &id).unwrap();
    let removed = cid.clone();
    docker
        .call(|c| async move {
            c.remove_container(
                &removed,
                Some(bollard::query_parameters::RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
        })
        .unwrap();
    // Docker answers the wait (killed: 137) before the container is gone, or the container is
    // gone first (`Task Lost`): either way the task ended, and its restart is a new container.
    let status = wait_for("the task to end and start again in a new container", || {
        let text = agent.ok(&["alloc", "status", &id]);
        let ended = text.contains("Exit Code: 137") || text.contains("Task Lost");
        let again = container_of(&docker, &id).filter(|(c, s)| *c != cid && s == "running");
        // Docker runs the new container a moment before the client records its `Started`.
        let restarted = text.matches("Started").count() >= 2;
        if ended && again.is_some() && restarted {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert_eq!(status.matches("Started").count(), 2, "{status}");
}
