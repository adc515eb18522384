//! `yurt-bench deploy`: a rolling update of count = 50, max_parallel = 5, min_healthy_time 0,
//! health by task states, on one dev agent (real tasks): the time from `job run` to the
//! deployment's `successful`, for the first version and for an update of every allocation.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use yurt_proto::v1::jobs_client::JobsClient;
use yurt_proto::v1::{GetJobRequest, Job, RegisterJobRequest};

use crate::{channel, Server};

fn job(greeting: &str) -> Job {
    let src = format!(
        r#"job "roll" {{
  update {{
    max_parallel      = 5
    health_check      = "task_states"
    min_healthy_time  = "0s"
    healthy_deadline  = "1m"
    progress_deadline = "2m"
  }}
  group "g" {{
    count = 50
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 1; done"]
      }}
      env {{
        GREETING = "{greeting}"
      }}
      resources {{
        cpu    = 1
        memory = 10
      }}
    }}
  }}
}}
"#
    );
    yurt_types::jobspec::parse_hcl("roll.hcl", &src).unwrap()
}

/// Registers `job` and waits for its version's deployment to succeed.
async fn roll(jobs: &mut JobsClient<tonic::transport::Channel>, job: Job) -> Duration {
    let start = Instant::now();
    let reply = jobs
        .register(RegisterJobRequest {
            job: Some(job),
            ..Default::default()
        })
        .await
        .expect("register")
        .into_inner();
    loop {
        let deployments = jobs
            .deployments(GetJobRequest {
                job_id: "roll".into(),
            })
            .await
            .expect("deployments")
            .into_inner()
            .deployments;
        if let Some(d) = deployments
            .first()
            .filter(|d| d.create_index >= reply.index)
        {
            match d.status.as_str() {
                "successful" => return start.elapsed(),
                "running" => {}
                other => panic!("the deployment ended {other}: {}", d.status_description),
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no successful deployment after 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub async fn deploy(yurt: PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let agent = Server::spawn(&yurt, &dir.path().join("dev"), &["-dev".into()], 0);
    let mut jobs = JobsClient::new(channel(&agent.addr).await);
    // The dev node registers a moment after the server starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nodes = yurt_proto::v1::nodes_client::NodesClient::new(channel(&agent.addr).await)
            .list(yurt_proto::v1::ListNodesRequest::default())
            .await
            .map(|r| r.into_inner().nodes)
            .unwrap_or_default();
        if nodes.iter().any(|n| n.status == "ready") {
            break;
        }
        assert!(Instant::now() < deadline, "the dev node did not register");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = roll(&mut jobs, job("v0")).await;
    let update = roll(&mut jobs, job("v1")).await;
    println!(
        "deployment of count 50, max_parallel 5, min_healthy_time 0 (task states, one dev agent): first version successful after {:.0} ms, rolling update of all 50 after {:.0} ms",
        first.as_secs_f64() * 1000.0,
        update.as_secs_f64() * 1000.0
    );
    let mut jobs = JobsClient::new(channel(&agent.addr).await);
    let _ = jobs
        .deregister(yurt_proto::v1::DeregisterJobRequest {
            job_id: "roll".into(),
            purge: false,
        })
        .await;
    // Give the client a moment to stop the tasks before the agent is killed.
    tokio::time::sleep(Duration::from_secs(2)).await;
}
