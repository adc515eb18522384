//! Hostile and careless input against a real agent: each reproducer is refused with one
//! sentence naming the field and the limit, the agent keeps answering while the bad request
//! runs, and nothing is registered.

use serde_json::{json, Value};

use crate::harness::*;

/// A job with one group whose body is `group_body` (and one task).
fn job_with(dir: &std::path::Path, name: &str, group_body: &str) -> String {
    let path = dir.join(format!("{name}.hcl"));
    std::fs::write(
        &path,
        format!("job \"{name}\" {{\n  group \"g\" {{\n{group_body}\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/sleep\"\n        args    = [\"1000\"]\n      }}\n    }}\n  }}\n}}\n"),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

fn no_jobs(agent: &Agent) {
    assert_eq!(agent.ok(&["job", "status"]).trim(), "No running jobs");
}

fn post(agent: &Agent, path: &str, body: &Value) -> (String, String) {
    let (status, _, body) = http_request(
        agent.http.as_ref().unwrap(),
        "POST",
        path,
        &body.to_string(),
    );
    (status, body)
}

#[test]
fn a_huge_count_is_refused_at_once_by_the_cli_and_the_api() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let file = job_with(&dir.path, "huge", "    count = 2147483648");
    for cmd in ["plan", "run"] {
        let out = agent.yurt(&["job", cmd, &file]);
        assert_ne!(out.status.code(), Some(0));
        assert_eq!(
            stderr(&out).trim(),
            format!("Error: {file}:3: count (2147483648) must be at most 10000")
        );
    }
    // Sent as JSON, past the CLI: the API refuses it the same way.
    let job = json!({"Job": {"ID": "huge", "TaskGroups": [{"Name": "g", "Count": 2147483647u32,
        "Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/true"}}]}]}});
    for path in ["/v1/job/huge/plan", "/v1/jobs"] {
        let (status, body) = post(&agent, path, &job);
        assert!(status.contains("400"), "{path}: {status} {body}");
        assert!(
            body.contains("group[g].count: count (2147483647) must be at most 10000"),
            "{path}: {body}"
        );
    }
    no_jobs(&agent);
}

#[test]
fn parsing_large_job_files_leaves_the_agent_responsive_and_its_allocations_alone() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let keep = job_with(&dir.path, "keep", "    count = 1");
    agent.ok(&["job", "run", "-detach", &keep]);
    let running = agent.wait_running("keep", 1);
    // Nine hundred groups (within the limit): about 110 KB of HCL, parsed four at a time.
    let mut hcl = String::from("job \"big\" {\n");
    for i in 0..900 {
        hcl.push_str(&format!("  group \"g{i}\" {{\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n    }}\n  }}\n"));
    }
    hcl.push_str("}\n");
    let body = json!({ "JobHCL": hcl });
    let http = agent.http.clone().unwrap();
    let parses: Vec<_> = (0..4)
        .map(|_| {
            let (http, body) = (http.clone(), body.to_string());
            std::thread::spawn(move || http_request(&http, "POST", "/v1/jobs/parse", &body))
        })
        .collect();
    // The agent answers while they run (parsing is off its async workers, one at a time).
    agent.ok(&["node", "status"]);
    for p in parses {
        let (status, _, body) = p.join().unwrap();
        assert!(
            status.contains("200"),
            "{status} {}",
            &body[..200.min(body.len())]
        );
        let job: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(job["TaskGroups"].as_array().unwrap().len(), 900);
    }
    // Over the limit: refused with the limit named.
    let mut over = String::from("job \"over\" {\n");
    for i in 0..1001 {
        over.push_str(&format!("  group \"g{i}\" {{\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n    }}\n  }}\n"));
    }
    over.push_str("}\n");
    let (status, body) = post(&agent, "/v1/jobs/parse", &json!({ "JobHCL": over }));
    assert!(status.contains("400"), "{status}");
    assert!(
        body.contains("the job has 1001 groups, more than the limit of 1000"),
        "{body}"
    );
    // The running allocation was never lost nor replaced.
    assert_eq!(agent.wait_running("keep", 1), running);
}

#[test]
fn oversized_values_nul_bytes_bad_ports_and_ids_are_refused_with_the_field() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let task = json!({"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/true"}});
    let job = |meta: Value, id: &str, network: Value| {
        json!({"Job": {"ID": id, "Meta": meta, "TaskGroups": [{"Name": "g", "Count": 1,
            "Networks": network, "Tasks": [task.clone()]}]}})
    };
    let cases = [
        (
            job(json!({"big": "x".repeat(100_000)}), "m", json!([])),
            "job.meta.big is 98 KiB, more than the limit of 64 KiB for one value",
        ),
        (
            job(
                (0..30)
                    .map(|i| (format!("k{i}"), Value::from("x".repeat(60_000))))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
                "m",
                json!([]),
            ),
            "the job is 1759 KiB, more than the limit of 1024 KiB",
        ),
        (
            job(json!({"k": "a\u{0}b"}), "m", json!([])),
            "job.meta.k contains a NUL byte",
        ),
        (
            job(json!({}), &"x".repeat(70_000), json!([])),
            "is 70000 characters long, more than the limit of 128",
        ),
        (
            job(json!({}), "a\u{0}b", json!([])),
            "must not contain '\\0'",
        ),
        (
            job(
                json!({}),
                "p",
                json!([{"ReservedPorts": [{"Label": "http", "Value": 70000}]}]),
            ),
            "port \"http\": static (70000) must be between 1 and 65535",
        ),
        (
            json!({"Job": {"ID": "r", "Region": "mars", "TaskGroups": [{"Name": "g",
                "Tasks": [task.clone()]}]}}),
            "job.region: \"mars\" is not this cluster's region \"global\"",
        ),
    ];
    for (body, want) in cases {
        let (status, answer) = post(&agent, "/v1/jobs", &body);
        assert!(status.contains("400"), "{want}: {status} {answer}");
        assert!(answer.contains(want), "want {want}\n got {answer}");
        assert!(answer.len() < 500, "one sentence: {} bytes", answer.len());
    }
    no_jobs(&agent);
    // A 100 KB job ID on the command line is refused by the server, not by HTTP/2 framing.
    let long = "x".repeat(100_000);
    let out = agent.yurt(&["job", "status", &long]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !stderr(&out).contains("h2 protocol error"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn blocking_query_parameters_and_non_ascii_ids_over_http() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().unwrap();
    for q in ["wait=abc", "wait=-5s"] {
        let started = std::time::Instant::now();
        let (status, body) = http_get(&http, &format!("/v1/jobs?index=1&{q}"));
        assert!(status.contains("400"), "{q}: {status} {body}");
        assert!(body.starts_with("wait: "), "{q}: {body}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
    let file = job_with(&dir.path, "café", "    count = 1");
    agent.ok(&["job", "run", "-detach", &file]);
    let (status, body) = http_get(&http, "/v1/job/caf%C3%A9");
    assert!(status.contains("200"), "{status} {body}");
    let job: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(job["ID"], "café");
    let out = agent.ok(&["job", "status"]);
    assert!(out.contains("café"), "{out}");
}

#[test]
fn allocations_of_a_job_near_the_size_limit_all_run_and_the_node_takes_more() {
    let dir = TestDir::new();
    let mut agent = dev_agent(&dir);
    // A job of about 900 KB with six allocations, placed by one plan: 5.4 MB of allocations
    // with their job in one answer, more than one gRPC message (a client used to wedge on it:
    // `decoded message length too large`). The client fetches them a page at a time.
    let meta: String = (0..15)
        .map(|i| format!("    k{i} = \"{}\"\n", "m".repeat(60_000)))
        .collect();
    let file = job_with(
        &dir.path,
        "big",
        &format!("    count = 6\n    meta {{\n{meta}    }}"),
    );
    agent.ok(&["job", "run", "-detach", &file]);
    agent.wait_running("big", 6);
    // The node is not wedged: a new job's allocation runs too.
    let small = job_with(&dir.path, "small", "    count = 1");
    agent.ok(&["job", "run", "-detach", &small]);
    agent.wait_running("small", 1);
    // A restarted agent fetches everything again, in pages, and keeps its tasks.
    agent.restart(&["-dev"]);
    agent.wait_node_ready();
    agent.ok(&[
        "job",
        "run",
        "-detach",
        &job_with(&dir.path, "after", "    count = 1"),
    ]);
    agent.wait_running("after", 1);
    assert_eq!(agent.wait_running("big", 6).len(), 6);
    assert!(
        !agent.log_text().contains("message length too large"),
        "the client could not read an answer"
    );
}

#[test]
fn an_agent_whose_node_name_breaks_the_rule_stops_with_the_sentence() {
    let dir = TestDir::new();
    for (flag, value, why) in [
        (
            "-node",
            "my laptop",
            "node name \"my laptop\" must not contain ' '",
        ),
        (
            "-dc",
            "eu/west",
            "datacenter \"eu/west\" must not contain '/'",
        ),
    ] {
        let data = dir.path.join(flag.trim_start_matches('-'));
        let out = std::process::Command::new(YURT)
            .args(["agent", "-dev", flag, value, "-data-dir"])
            .arg(&data)
            .args(["-grpc-port", "0", "-http-port", "0"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value:?} was accepted");
        let err = stderr(&out);
        assert!(err.contains(why), "{flag}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    }
}
