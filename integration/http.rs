//! The HTTP/JSON API in Nomad's shape, over real HTTP against a dev agent: register, plan,
//! versions and deployments, blocking queries, purge, and bad input answered with a 4xx and
//! one sentence.

use serde_json::{json, Value};

use crate::harness::*;

fn index(headers: &[(String, String)]) -> u64 {
    headers
        .iter()
        .find(|(k, _)| k == "x-nomad-index")
        .and_then(|(_, v)| v.parse().ok())
        .expect("X-Nomad-Index")
}

/// A job as a Nomad API client writes it.
fn nomad_job(greeting: &str) -> Value {
    json!({
        "Job": {
            "ID": "web",
            "Name": "web",
            "Type": "service",
            "Datacenters": ["dc1"],
            "Namespace": null,
            "Update": {"MaxParallel": 1, "MinHealthyTime": 200_000_000i64, "HealthyDeadline": 30_000_000_000i64, "ProgressDeadline": 60_000_000_000i64, "HealthCheck": "task_states"},
            "TaskGroups": [{
                "Name": "app",
                "Count": 2,
                "Tasks": [{
                    "Name": "server",
                    "Driver": "raw_exec",
                    "Config": {"command": "/bin/sh", "args": ["-c", "while true; do sleep 1; done"]},
                    "Env": {"GREETING": greeting},
                    "Resources": {"CPU": 20, "MemoryMB": 32}
                }]
            }]
        }
    })
}

#[test]
fn jobs_register_plan_and_read_through_the_nomad_shaped_http_api() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().expect("a dev agent serves HTTP");

    let (status, _, body) = http_request(&http, "PUT", "/v1/jobs", &nomad_job("hello").to_string());
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert!(
        reply["EvalID"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    let first_index = reply["JobModifyIndex"].as_u64().unwrap();
    agent.wait_running("web", 2);

    let (status, headers, body) = http_request(&http, "GET", "/v1/job/web", "");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(index(&headers) >= first_index);
    let job: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        job["TaskGroups"][0]["Tasks"][0]["Resources"]["MemoryMB"],
        32
    );
    assert_eq!(
        job["TaskGroups"][0]["Tasks"][0]["Config"]["command"],
        "/bin/sh"
    );
    assert_eq!(
        job["TaskGroups"][0]["Update"]["MinHealthyTime"],
        200_000_000i64
    );
    assert!(
        job["SubmitTime"].as_i64().unwrap() > 1_000_000_000_000_000_000,
        "nanoseconds"
    );

    // Plan an edit: the diff and the scheduler's counts, nothing changed.
    let (status, _, body) = http_request(
        &http,
        "POST",
        "/v1/job/web/plan",
        &nomad_job("hi").to_string(),
    );
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let plan: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(plan["JobModifyIndex"].as_u64(), Some(first_index));
    assert_eq!(
        plan["Annotations"]["DesiredTGUpdates"]["app"]["DestructiveUpdate"], 1,
        "{body}"
    );
    assert!(
        plan["Index"].as_u64().is_some_and(|i| i >= first_index),
        "{body}"
    );

    // Versions and the deployment of version 0.
    let (_, _, body) = http_request(&http, "GET", "/v1/job/web/versions", "");
    let versions: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(versions["Versions"][0]["Version"], 0, "{body}");
    let deployment = wait_for("version 0's deployment to succeed", || {
        let (_, _, body) = http_request(&http, "GET", "/v1/job/web/deployment", "");
        let d: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        if d["Status"] == "successful" {
            Ok(d)
        } else {
            Err(body)
        }
    });
    assert_eq!(deployment["JobVersion"], 0);
    let (_, _, body) = http_request(&http, "GET", "/v1/deployments", "");
    assert!(body.contains("Deployment completed successfully"), "{body}");

    // A blocking query: it waits for a change, and returns at the end of `wait` without one.
    let (_, headers, _) = http_request(&http, "GET", "/v1/jobs", "");
    let now = index(&headers);
    let started = std::time::Instant::now();
    let (status, headers, _) =
        http_request(&http, "GET", &format!("/v1/jobs?index={now}&wait=1s"), "");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    assert_eq!(index(&headers), now, "nothing changed");
    let waiter = {
        let http = http.clone();
        std::thread::spawn(move || {
            http_request(&http, "GET", &format!("/v1/jobs?index={now}&wait=60s"), "")
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (status, _, body) =
        http_request(&http, "POST", "/v1/job/web", &nomad_job("hi").to_string());
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let (_, headers, body) = waiter.join().unwrap();
    assert!(index(&headers) > now, "woken by the change");
    assert!(body.contains("\"web\""), "{body}");

    // Purge: gone.
    let (status, _, _) = http_request(&http, "DELETE", "/v1/job/web?purge=true", "");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let (status, _, body) = http_request(&http, "GET", "/v1/job/web", "");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert_eq!(
        body.trim(),
        "job \"web\" not found in namespace \"default\""
    );
}

#[test]
fn bad_http_input_gets_a_4xx_and_one_sentence() {
    let dir = TestDir::new();
    let agent = Agent::start(
        &dir.path.join("data"),
        &["-server", "-bootstrap-expect", "1"],
    );
    let http = agent.http.clone().expect("a server serves HTTP");
    let cases = [
        (
            "PUT",
            "/v1/jobs",
            "{not json".to_string(),
            "400",
            "request body is not valid JSON",
        ),
        (
            "PUT",
            "/v1/jobs",
            json!({"Job": {"ID": "x", "TaskGroups": "many"}}).to_string(),
            "400",
            "invalid Job: ",
        ),
        (
            "PUT",
            "/v1/jobs",
            json!({"Job": {"ID": "x", "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": []}]}})
                .to_string(),
            "400",
            "group \"g\" has no task",
        ),
        (
            "PUT",
            "/v1/jobs",
            json!({"Job": {"ID": "x", "Vaullt": {"Policies": ["db"]}, "Spreads": null}})
                .to_string(),
            "400",
            "invalid Job: Vaullt: unknown field",
        ),
        (
            "PUT",
            "/v1/jobs",
            json!({"Job": {"ID": "x", "TaskGroups": [{"Name": "g", "Count": "three"}]}})
                .to_string(),
            "400",
            "invalid Job: TaskGroups[0].Count: expected a number",
        ),
        (
            "GET",
            "/v1/nothing",
            String::new(),
            "404",
            "no such endpoint",
        ),
        (
            "POST",
            "/v1/job/x/revert",
            json!({"JobVersion": "one"}).to_string(),
            "400",
            "request body must have \"JobVersion\" (a number)",
        ),
        (
            "PUT",
            "/v1/jobs",
            format!("{{\"Job\": \"{}\"}}", "x".repeat((4 << 20) + 1000)),
            "413",
            "at most 4 MiB",
        ),
    ];
    for (method, path, body, code, message) in cases {
        let (status, _, text) = http_request(&http, method, path, &body);
        assert!(status.contains(code), "{method} {path}: {status} {text}");
        assert!(text.contains(message), "{method} {path}: {text}");
        assert!(!text.trim().contains('\n'), "one sentence: {text}");
    }
    let (_, _, jobs) = http_request(&http, "GET", "/v1/jobs", "");
    assert_eq!(jobs.trim(), "[]", "nothing was written");
}

#[test]
fn metrics_in_json_and_prometheus_text() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().expect("a dev agent serves HTTP");
    let (status, _, body) = http_request(&http, "PUT", "/v1/jobs", &nomad_job("hello").to_string());
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    agent.wait_running("web", 2);

    let (status, _, body) = http_request(&http, "GET", "/v1/metrics", "");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let m: Value = serde_json::from_str(&body).unwrap();
    let gauge = |name: &str, label: &str| -> f64 {
        m["Gauges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["Name"] == name)
            .find(|g| {
                g["Labels"]
                    .as_object()
                    .unwrap()
                    .values()
                    .any(|v| v == label)
            })
            .and_then(|g| g["Value"].as_f64())
            .unwrap_or(0.0)
    };
    assert_eq!(gauge("yurt.nodes", "ready"), 1.0, "{body}");
    assert_eq!(gauge("yurt.allocations", "running"), 2.0, "{body}");
    let sample = |name: &str| {
        m["Samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Name"] == name)
            .and_then(|s| s["Count"].as_u64())
            .unwrap_or(0)
    };
    assert!(sample("yurt.raft.apply") > 0, "{body}");
    assert!(sample("yurt.plan.apply") > 0, "{body}");
    // The gRPC calls `wait_running` made through the CLI.
    assert!(sample("yurt.rpc.Jobs.Get") > 0, "{body}");

    // Prometheus text: every line a comment or `name{labels} value`.
    let (status, headers, text) = http_request(&http, "GET", "/v1/metrics?format=prometheus", "");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("text/plain")));
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(value.parse::<f64>().is_ok(), "{line}");
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
    }
    assert!(
        text.contains("yurt_allocations{client_status=\"running\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("yurt_raft_leader_changes_total"), "{text}");

    // Status, agent and operator endpoints.
    let get = |path: &str| -> Value {
        let (status, _, body) = http_request(&http, "GET", path, "");
        assert_eq!(status, "HTTP/1.1 200 OK", "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    assert_eq!(get("/v1/status/leader"), Value::String(agent.grpc.clone()));
    assert_eq!(get("/v1/status/peers"), json!([agent.grpc.clone()]));
    assert_eq!(get("/v1/regions"), json!(["global"]));
    let members = get("/v1/agent/members");
    assert_eq!(members["Members"][0]["Status"], "alive", "{members}");
    assert_eq!(members["ServerRegion"], "global", "{members}");
    assert_eq!(members["Members"][0]["Tags"]["role"], "nomad", "{members}");
    let port = Agent::port_of(&agent.grpc);
    assert_eq!(members["Members"][0]["Port"], port, "{members}");
    let me = get("/v1/agent/self");
    assert!(
        me["member"]["Tags"]["build"]
            .as_str()
            .is_some_and(|b| b.starts_with(env!("CARGO_PKG_VERSION"))),
        "{me}"
    );
    assert_eq!(me["config"]["Region"], "global", "{me}");
    assert!(me["stats"]["raft"]["term"].is_string(), "{me}");
    let raft = get("/v1/operator/raft/configuration");
    assert_eq!(raft["Servers"][0]["Leader"], true, "{raft}");
    assert_eq!(raft["Servers"][0]["Voter"], true, "{raft}");
}

#[test]
fn grpc_reflection_lists_the_api() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let dir = TestDir::new();
    let agent = Agent::start(
        &dir.path.join("data"),
        &["-server", "-bootstrap-expect", "1"],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (services, file) = rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", agent.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = ServerReflectionClient::new(channel);
        let ask = |m: MessageRequest| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        };
        let requests = tokio_stream_of(vec![
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol("yurt.v1.Jobs".into())),
        ]);
        let mut answers = client
            .server_reflection_info(requests)
            .await
            .unwrap()
            .into_inner();
        let mut services = Vec::new();
        let mut file = 0;
        while let Some(r) = answers.message().await.unwrap() {
            match r.message_response {
                Some(MessageResponse::ListServicesResponse(l)) => {
                    services = l.service.into_iter().map(|s| s.name).collect()
                }
                Some(MessageResponse::FileDescriptorResponse(f)) => {
                    file = f.file_descriptor_proto.iter().map(Vec::len).sum()
                }
                other => panic!("{other:?}"),
            }
        }
        (services, file)
    });
    for s in [
        "yurt.v1.Jobs",
        "yurt.v1.Deployments",
        "yurt.v1.Nodes",
        "yurt.v1.Operator",
    ] {
        assert!(services.iter().any(|n| n == s), "{services:?}");
    }
    assert!(file > 0, "the descriptor of yurt.v1.Jobs");
}

/// A finite request stream for a client-streaming or bidirectional call.
fn tokio_stream_of<T: Send + 'static>(
    items: Vec<T>,
) -> impl tonic::codegen::tokio_stream::Stream<Item = T> {
    tonic::codegen::tokio_stream::iter(items)
}
