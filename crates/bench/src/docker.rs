//! `yurt-bench docker [ENDPOINT]`: 20 containers started through Yurt (one server and one
//! client agent on loopback, a count=20 docker job) beside the same 20 containers created and
//! started directly through the Engine API, in the same run against the same daemon
//! (`ENDPOINT`, else `DOCKER_HOST`, else `/var/run/docker.sock`). Prints the time until all
//! 20 run for each path and their ratio (the goal: Yurt within 1.2x of the direct path). The
//! image is imported from the host's static busybox; the containers sleep, with no network.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, RemoveContainerOptions,
};
use futures_util::StreamExt;
use yurt_proto::v1::jobs_client::JobsClient;
use yurt_proto::v1::{DeregisterJobRequest, RegisterJobRequest};

use crate::{channel, Server};

const COUNT: usize = 20;
const IMAGE: &str = "yurt-bench-sleeper:1";
const LABEL: &str = "yurt-bench";

async fn connect(socket: &str) -> bollard::Docker {
    bollard::Docker::connect_with_unix(socket, 120, bollard::API_DEFAULT_VERSION)
        .expect("connect to the Docker daemon")
        .negotiate_version()
        .await
        .expect("the Docker daemon's API version")
}

/// Imports an image holding the host's static busybox.
async fn import_image(c: &bollard::Docker) {
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("a static /bin/busybox");
    std::os::unix::fs::symlink("busybox", bin.join("sleep")).unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .args(["-cf", "-", "."])
        .output()
        .expect("tar");
    let (repo, tag) = IMAGE.split_once(':').unwrap();
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repo.into()),
        tag: Some(tag.into()),
        ..Default::default()
    };
    let body = bollard::body_full(tar.stdout.into());
    let mut s = c.create_image(Some(options), Some(body), None);
    while let Some(step) = s.next().await {
        step.expect("import the image");
    }
}

/// What Yurt asks the daemon for a task of the bench's job, less its mounts and env.
fn body(n: usize) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(IMAGE.into()),
        cmd: Some(vec!["/bin/sleep".into(), "3600".into()]),
        labels: Some(HashMap::from([(LABEL.to_string(), n.to_string())])),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            memory: Some(32 << 20),
            memory_swap: Some(32 << 20),
            cpu_shares: Some(50),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn running(c: &bollard::Docker, label: &str) -> Vec<String> {
    let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
    c.list_containers(Some(ListContainersOptions {
        filters: Some(filters),
        ..Default::default()
    }))
    .await
    .unwrap_or_default()
    .into_iter()
    .filter_map(|c| c.id)
    .collect()
}

async fn remove_all(c: &bollard::Docker, label: &str) {
    let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
    let all = c
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap_or_default();
    for ct in all.into_iter().filter_map(|c| c.id) {
        let _ = c
            .remove_container(
                &ct,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
    }
}

/// The 20 containers created and started directly, all at once.
async fn direct(c: &bollard::Docker) -> Duration {
    let start = Instant::now();
    let starts = (0..COUNT).map(|n| async move {
        let made = c
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(format!("yurt-bench-direct-{n}")),
                    ..Default::default()
                }),
                body(n),
            )
            .await
            .expect("create");
        c.start_container(&made.id, None).await.expect("start");
    });
    futures_util::future::join_all(starts).await;
    let took = start.elapsed();
    assert_eq!(running(c, LABEL).await.len(), COUNT);
    took
}

/// The 20 containers as a count=20 job through Yurt: from `job run` until the daemon runs
/// all of them.
async fn through_yurt(c: &bollard::Docker, server: &Server) -> Duration {
    let src = format!(
        "job \"bench-docker\" {{\n  group \"g\" {{\n    count = {COUNT}\n    task \"t\" {{\n      driver = \"docker\"\n      config {{\n        image = \"{IMAGE}\"\n        command = \"/bin/sleep\"\n        args = [\"3600\"]\n        network_mode = \"none\"\n      }}\n      resources {{\n        cpu = 50\n        memory = 32\n      }}\n    }}\n  }}\n}}\n"
    );
    let job = yurt_types::jobspec::parse_hcl("bench.hcl", &src).unwrap();
    let mut jobs = JobsClient::new(channel(&server.addr).await);
    let label = "com.hashicorp.nomad.job_name=bench-docker";
    let start = Instant::now();
    jobs.register(RegisterJobRequest {
        job: Some(job),
        ..Default::default()
    })
    .await
    .expect("register");
    while running(c, label).await.len() < COUNT {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not all running"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = start.elapsed();
    let _ = jobs
        .deregister(DeregisterJobRequest {
            job_id: "bench-docker".into(),
            purge: true,
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !running(c, label).await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    took
}

pub async fn docker(yurt: PathBuf, endpoint: Option<String>) {
    let endpoint = endpoint
        .or_else(|| std::env::var("DOCKER_HOST").ok())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
    let socket = endpoint.trim_start_matches("unix://").to_string();
    let c = connect(&socket).await;
    import_image(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::single(&yurt, dir.path()).await;
    let config = format!(
        "plugin \"docker\" {{\n  config {{\n    endpoint = \"unix://{socket}\"\n  }}\n}}\n"
    );
    let client = Server::client(&yurt, &dir.path().join("client"), &server.addr, &config);
    // Past registration and the first fingerprint of the daemon.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for round in 1..=3 {
        remove_all(&c, LABEL).await;
        let yurt_took = through_yurt(&c, &server).await;
        let direct_took = direct(&c).await;
        remove_all(&c, LABEL).await;
        println!(
            "round {round}: {COUNT} containers to running: through Yurt (job run → all running in the daemon) {:.0} ms, directly through the Engine API (create + start, all at once) {:.0} ms: {:.2}x",
            yurt_took.as_secs_f64() * 1000.0,
            direct_took.as_secs_f64() * 1000.0,
            yurt_took.as_secs_f64() / direct_took.as_secs_f64()
        );
    }
    drop(client);
    let _ = c
        .remove_image(
            IMAGE,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
}
