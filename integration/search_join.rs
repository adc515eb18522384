//! Search over plain HTTP (`/v1/search` by prefix, `/v1/search/fuzzy` by name, bad contexts
//! refused), `/v1/system/reconcile/summaries`, and servers brought together after they
//! started (`yurt server join`, `/v1/agent/join`) and one forced out (`/v1/agent/force-leave`).

use serde_json::json;

use crate::harness::*;

#[test]
fn search_by_prefix_and_by_name_and_reconcile_over_http() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().unwrap();
    let job = json!({"Job": {"ID": "webshop", "Type": "service",
        "TaskGroups": [{"Name": "frontend", "Count": 1, "Tasks": [{"Name": "nginx",
            "Driver": "raw_exec",
            "Config": {"command": "/bin/sh", "args": ["-c", "while true; do sleep 1; done"]},
            "Resources": {"CPU": 10, "MemoryMB": 16}}]}]}});
    assert_eq!(
        http_json(&http, "POST", "/v1/jobs", &job.to_string()).0,
        200
    );
    let alloc = agent.wait_running("webshop", 1)[0].clone();

    let (code, r) = http_json(
        &http,
        "POST",
        "/v1/search",
        &json!({"Prefix": "web", "Context": "jobs"}).to_string(),
    );
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["Matches"]["jobs"], json!(["webshop"]), "{r}");
    assert_eq!(r["Truncations"]["jobs"], false);
    let (_, r) = http_json(
        &http,
        "POST",
        "/v1/search",
        &json!({"Prefix": &alloc[..6], "Context": "all"}).to_string(),
    );
    assert_eq!(r["Matches"]["allocs"], json!([alloc]), "{r}");
    assert!(
        r["Matches"]["nodes"].is_array() && r["Matches"]["evals"].is_array(),
        "{r}"
    );
    let (_, r) = http_json(
        &http,
        "POST",
        "/v1/search/fuzzy",
        &json!({"Text": "ngin", "Context": "all"}).to_string(),
    );
    assert_eq!(
        r["Matches"]["tasks"],
        json!([{"ID": "nginx", "Scope": ["default", "webshop", "frontend"]}]),
        "{r}"
    );
    assert_eq!(r["Matches"]["groups"], json!([]), "{r}");
    let (_, r) = http_json(
        &http,
        "POST",
        "/v1/search/fuzzy",
        &json!({"Text": "FRONT"}).to_string(),
    );
    assert_eq!(
        r["Matches"]["groups"][0]["ID"], "frontend",
        "case does not matter: {r}"
    );
    let (code, v) = http_json(
        &http,
        "POST",
        "/v1/search",
        &json!({"Prefix": "w", "Context": "job"}).to_string(),
    );
    assert_eq!(code, 400, "{v}");
    assert!(
        v.as_str()
            .unwrap()
            .starts_with("context \"job\" is not one of all, jobs"),
        "{v}"
    );
    let (code, v) = http_json(
        &http,
        "POST",
        "/v1/search/fuzzy",
        &json!({"Text": "w"}).to_string(),
    );
    assert_eq!(
        (code, v),
        (400, json!("fuzzy search needs at least 2 characters"))
    );

    let (code, _) = http_json(&http, "PUT", "/v1/system/reconcile/summaries", "");
    assert_eq!(code, 200);
    let (_, summary) = http_json(&http, "GET", "/v1/job/webshop/summary", "");
    assert_eq!(summary["Summary"]["frontend"]["Running"], 1, "{summary}");
}

#[test]
fn a_server_started_alone_joins_the_others_later_and_a_dead_one_is_forced_out_over_http() {
    let dir = TestDir::new();
    // s0 and s1 expect three; s2 expects three too but was told of nobody.
    let mut s = vec![Agent::start(
        &dir.path.join("s0"),
        &["-server", "-node", "s0", "-bootstrap-expect", "3"],
    )];
    let first = s[0].grpc.clone();
    s.push(Agent::start(
        &dir.path.join("s1"),
        &[
            "-server",
            "-node",
            "s1",
            "-bootstrap-expect",
            "3",
            "-join",
            &first,
        ],
    ));
    s.push(Agent::start(
        &dir.path.join("s2"),
        &["-server", "-node", "s2", "-bootstrap-expect", "3"],
    ));
    let out = s[2].ok(&["server", "join", &first]);
    assert!(out.contains("Joined 1 servers successfully"), "{out}");
    // The three bootstrap one cluster.
    leader(&s, &[0, 1, 2], 3);
    // Over HTTP too; an address nobody answers at is said.
    let http = s[0].http.clone().unwrap();
    let (code, r) = http_json(
        &http,
        "PUT",
        &format!("/v1/agent/join?address={}", s[1].grpc),
        "",
    );
    assert_eq!((code, &r["num_joined"]), (200, &json!(1)), "{r}");
    let (code, r) = http_json(&http, "PUT", "/v1/agent/join?address=127.0.0.1:1", "");
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["num_joined"], 0, "{r}");
    assert!(r["error"].as_str().unwrap().contains("127.0.0.1:1"), "{r}");
    // A dead server forced out over HTTP: it leaves the members and the Raft configuration.
    s[2].kill9();
    wait_for("s2 to be seen failed", || {
        let out = s[0].ok(&["server", "members"]);
        if out
            .lines()
            .any(|l| l.starts_with("s2 ") && l.contains(" failed "))
        {
            Ok(())
        } else {
            Err(out)
        }
    });
    let (code, r) = http_json(&http, "PUT", "/v1/agent/force-leave?node=s2", "");
    assert_eq!(code, 200, "{r}");
    wait_for("s2 to be left", || {
        let out = s[0].ok(&["server", "members"]);
        if out
            .lines()
            .any(|l| l.starts_with("s2 ") && l.contains(" left "))
        {
            Ok(())
        } else {
            Err(out)
        }
    });
    let (code, r) = http_json(&http, "PUT", "/v1/agent/force-leave", "");
    assert_eq!(
        (code, r),
        (400, json!("node: the server to force out is required"))
    );
}
