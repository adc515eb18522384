//! An allocation's files over plain HTTP: `/v1/client/fs/{ls,stat,cat,readat}` show what the
//! task wrote, `stream` and `logs` follow a file and the task's output as they grow; a path
//! out of the allocation directory is a 400 and a task's secrets a 403.

use base64::Engine;
use serde_json::{json, Value};

use crate::event_stream::Stream;
use crate::harness::*;

fn get(http: &str, path: &str) -> (u16, String) {
    let (status, body) = http_get(http, path);
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body)
}

/// Reads frames until their data, decoded and joined, contains `want`.
fn until_data(stream: &mut Stream, want: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(want) {
        let frame = stream.next_line();
        if let Some(d) = frame["Data"].as_str() {
            let bytes = base64::engine::general_purpose::STANDARD.decode(d).unwrap();
            seen.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    seen
}

#[test]
fn an_allocation_s_files_and_output_are_read_and_followed_over_http() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().unwrap();
    let script = "echo 0123456789 > local/data; echo hush > secrets/token; \
                  i=0; while true; do i=$((i+1)); echo line-$i; echo more-$i >> local/data; sleep 0.2; done";
    let job = json!({"Job": {"ID": "files", "Type": "service",
        "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{"Name": "t",
            "Driver": "raw_exec",
            "Config": {"command": "/bin/sh", "args": ["-c", script]},
            "Resources": {"CPU": 10, "MemoryMB": 16}}]}]}});
    let (status, _, body) = http_request(&http, "POST", "/v1/jobs", &job.to_string());
    assert!(status.contains("200"), "{body}");
    let id = agent.wait_running("files", 1)[0].clone();
    let base = "/v1/client/fs";

    // ls and stat.
    let listing = wait_for("the task's directory", || {
        let (code, body) = get(&http, &format!("{base}/ls/{id}?path=/t"));
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let names: Vec<String> = v
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| f["Name"].as_str().unwrap_or_default().to_string())
            .collect();
        if code == 200 && names.contains(&"local".to_string()) {
            Ok(v)
        } else {
            Err(format!("{code} {body}"))
        }
    });
    let names: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["Name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"secrets"),
        "secrets are not listed: {listing}"
    );
    let local = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["Name"] == "local")
        .unwrap();
    assert_eq!(local["IsDir"], true);
    assert!(
        local["FileMode"].as_str().unwrap().starts_with('d'),
        "{local}"
    );
    assert!(
        local["ModTime"].as_str().unwrap().ends_with('Z'),
        "RFC 3339: {local}"
    );
    let (code, body) = get(&http, &format!("{base}/stat/{id}?path=/t/local/data"));
    assert_eq!(code, 200, "{body}");
    let stat: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (stat["Name"].as_str(), stat["IsDir"].as_bool()),
        (Some("data"), Some(false))
    );
    assert!(stat["Size"].as_i64().unwrap() >= 11, "{stat}");

    // cat and readat give the bytes as they are.
    let (code, body) = get(&http, &format!("{base}/cat/{id}?path=t/local/data"));
    assert_eq!(code, 200);
    assert!(body.starts_with("0123456789\n"), "{body:?}");
    let (_, body) = get(
        &http,
        &format!("{base}/readat/{id}?path=t/local/data&offset=3&limit=4"),
    );
    assert_eq!(body, "3456");

    // Out of the directory: refused, one sentence; a task's secrets: forbidden.
    for bad in ["../../../etc/passwd", "t/../../x"] {
        let (code, body) = get(&http, &format!("{base}/cat/{id}?path={bad}"));
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(
            body.contains("is outside the allocation directory"),
            "{body}"
        );
    }
    let (code, body) = get(&http, &format!("{base}/cat/{id}?path=t/secrets/token"));
    assert_eq!(code, 403, "{body}");
    let (code, _) = get(&http, &format!("{base}/cat/{id}?path=t/local/nope"));
    assert_eq!(code, 404);
    let (code, body) = get(&http, &format!("{base}/logs/{id}?type=both"));
    assert_eq!(code, 400, "{body}");

    // The same from the CLI: a directory's entries, a file, a path's stat.
    let listing = agent.ok(&["alloc", "fs", &id, "t"]);
    assert!(
        listing.contains("local/") && !listing.contains("secrets"),
        "{listing}"
    );
    let data = agent.ok(&["alloc", "fs", &id, "t/local/data"]);
    assert!(data.starts_with("0123456789\n"), "{data}");
    let stat = agent.ok(&["alloc", "fs", "-stat", &id, "t/local/data"]);
    assert!(stat.contains("-rw") && stat.contains(" data"), "{stat}");
    let out = agent.yurt(&["alloc", "fs", &id, "../x"]);
    assert!(
        stderr(&out).contains("is outside the allocation directory"),
        "{}",
        stderr(&out)
    );

    // Logs, plain, to the end; then followed as frames while the task writes more.
    let (code, body) = get(
        &http,
        &format!("{base}/logs/{id}?task=t&type=stdout&plain=true"),
    );
    assert_eq!(code, 200);
    assert!(body.starts_with("line-1\n"), "{body:?}");
    let mut logs = Stream::get(
        &http,
        &format!("{base}/logs/{id}?task=t&follow=true&origin=end&offset=0"),
        "",
    );
    let seen = until_data(&mut logs, "\n");
    let n: u64 = seen
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("line-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    until_data(&mut logs, &format!("line-{}", n + 2));
    // A file followed from its start sees lines appended later.
    let mut file = Stream::get(
        &http,
        &format!("{base}/stream/{id}?path=t/local/data&follow=true"),
        "",
    );
    let start = until_data(&mut file, "0123456789");
    let last: u64 = start
        .lines()
        .filter_map(|l| l.strip_prefix("more-"))
        .filter_map(|n| n.parse().ok())
        .max()
        .unwrap_or(0);
    until_data(&mut file, &format!("more-{}", last + 2));
}

#[test]
fn a_client_s_host_usage_and_its_garbage_collection_over_http() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().unwrap();
    // Twice: the second reading's CPU shares are since the first.
    for _ in 0..2 {
        let (code, body) = get(&http, "/v1/client/stats");
        assert_eq!(code, 200, "{body}");
        let s: Value = serde_json::from_str(&body).unwrap();
        assert!(s["Memory"]["Total"].as_u64().unwrap() > 0, "{s}");
        assert!(s["Memory"]["Used"].as_u64().unwrap() <= s["Memory"]["Total"].as_u64().unwrap());
        assert!(!s["CPU"].as_array().unwrap().is_empty(), "{s}");
        let idle = s["CPU"][0]["Idle"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&idle), "{s}");
        assert!(s["DiskStats"][0]["Size"].as_u64().unwrap() > 0, "{s}");
        assert!(s["Uptime"].as_u64().unwrap() > 0, "{s}");
    }
    let (code, _) = get(&http, "/v1/client/stats?node_id=nope");
    assert_eq!(code, 404);

    // A finished allocation is forgotten on request; a running one is not.
    let batch = json!({"Job": {"ID": "once", "Type": "batch",
        "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{"Name": "t",
            "Driver": "raw_exec", "Config": {"command": "/bin/true"},
            "Resources": {"CPU": 10, "MemoryMB": 16}}]}]}});
    let service = json!({"Job": {"ID": "keeps", "Type": "service",
        "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{"Name": "t",
            "Driver": "raw_exec",
            "Config": {"command": "/bin/sh", "args": ["-c", "while true; do sleep 1; done"]},
            "Resources": {"CPU": 10, "MemoryMB": 16}}]}]}});
    for j in [&batch, &service] {
        let (status, _, body) = http_request(&http, "POST", "/v1/jobs", &j.to_string());
        assert!(status.contains("200"), "{body}");
    }
    let running = agent.wait_running("keeps", 1)[0].clone();
    let done = wait_for("the batch allocation to complete and be reported", || {
        let (_, body) = get(&http, "/v1/job/once/allocations");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        match v.as_array().and_then(|a| a.first()) {
            Some(a) if a["ClientStatus"] == "complete" => Ok(a["ID"].as_str().unwrap().to_string()),
            _ => Err(body),
        }
    });
    let (code, body) = get(&http, &format!("/v1/client/allocation/{running}/gc"));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("is not terminal: stop it first"), "{body}");
    wait_for("the finished allocation to be collected", || {
        let (code, body) = get(&http, &format!("/v1/client/allocation/{done}/gc"));
        if code == 200 {
            Ok(())
        } else {
            Err(format!("{code} {body}"))
        }
    });
    let (code, body) = get(&http, &format!("/v1/client/fs/ls/{done}?path=/"));
    assert_eq!(code, 404, "its files are gone: {body}");
    assert!(body.contains("is not on this client"), "{body}");
    let (code, _) = get(&http, "/v1/client/gc");
    assert_eq!(code, 200);
    let (code, _) = get(&http, &format!("/v1/client/fs/ls/{running}?path=/"));
    assert_eq!(code, 200, "a running allocation stays");
}
