//! More of Nomad's `/v1` routes over plain HTTP (no CLI): a job's summary, the allocations of
//! a node, an evaluation and a deployment, the agent's servers; and the API's manners: 405
//! for a wrong method, booleans read as Go's `ParseBool` reads them, a wrongly typed drain
//! deadline refused, error bodies one sentence without a newline; allocation health by hand.

use serde_json::{json, Value};

use crate::harness::*;

fn get(http: &str, path: &str) -> Value {
    let (status, _, body) = http_request(http, "GET", path, "");
    assert!(status.contains("200"), "GET {path}: {status} {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn job() -> Value {
    json!({"Job": {"ID": "web", "Type": "service",
        "Update": {"MaxParallel": 2, "MinHealthyTime": 100_000_000i64,
                   "HealthyDeadline": 30_000_000_000i64, "HealthCheck": "task_states"},
        "TaskGroups": [{"Name": "app", "Count": 2, "Tasks": [{"Name": "server",
            "Driver": "raw_exec",
            "Config": {"command": "/bin/sh", "args": ["-c", "while true; do sleep 1; done"]},
            "Resources": {"CPU": 20, "MemoryMB": 32}}]}]}})
}

#[test]
fn summaries_and_the_allocations_of_nodes_evaluations_and_deployments() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().unwrap();
    let (status, _, body) = http_request(&http, "POST", "/v1/jobs", &job().to_string());
    assert!(status.contains("200"), "{body}");
    let eval = serde_json::from_str::<Value>(&body).unwrap()["EvalID"]
        .as_str()
        .unwrap()
        .to_string();
    let ids = agent.wait_running("web", 2);
    let summary = get(&http, "/v1/job/web/summary");
    assert_eq!(summary["JobID"], "web", "{summary}");
    assert_eq!(summary["Summary"]["app"]["Running"], 2, "{summary}");
    assert_eq!(summary["Summary"]["app"]["Failed"], 0, "{summary}");
    let list = get(&http, "/v1/jobs");
    assert_eq!(
        list[0]["JobSummary"]["Summary"]["app"]["Running"], 2,
        "{list}"
    );
    let nodes = get(&http, "/v1/nodes");
    let node = nodes[0]["ID"].as_str().unwrap().to_string();
    let ids_of = |v: &Value| {
        let mut out: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["ID"].as_str().unwrap().to_string())
            .collect();
        out.sort();
        out
    };
    let mut want = ids.clone();
    want.sort();
    assert_eq!(
        ids_of(&get(&http, &format!("/v1/node/{node}/allocations"))),
        want
    );
    assert_eq!(
        ids_of(&get(&http, &format!("/v1/node/{}/allocations", &node[..8]))),
        want
    );
    assert_eq!(
        ids_of(&get(&http, &format!("/v1/evaluation/{eval}/allocations"))),
        want
    );
    let deployment = get(&http, "/v1/job/web/deployment")["ID"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        ids_of(&get(
            &http,
            &format!("/v1/deployment/allocations/{deployment}")
        )),
        want
    );
    let servers = get(&http, "/v1/agent/servers");
    assert_eq!(servers.as_array().map(Vec::len), Some(1), "{servers}");
    assert_eq!(servers[0], agent.grpc.as_str(), "{servers}");
    let (status, _, text) = http_request(&http, "GET", "/v1/node/nope/allocations", "");
    assert!(status.contains("404"), "{status} {text}");
}

#[test]
fn wrong_methods_booleans_and_typed_fields_are_answered_as_nomad_answers_them() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().unwrap();
    let (status, _, text) = http_request(&http, "DELETE", "/v1/jobs/parse", "");
    assert!(status.contains("405"), "{status} {text}");
    assert_eq!(text, "method DELETE is not allowed for /v1/jobs/parse");
    let (status, _, text) = http_request(&http, "GET", "/v1/nothing/here", "");
    assert!(status.contains("404"), "{status}");
    assert!(!text.ends_with('\n'), "one sentence, no newline: {text:?}");
    http_request(&http, "POST", "/v1/jobs", &job().to_string());
    agent.wait_running("web", 2);
    let (status, _, text) = http_request(&http, "DELETE", "/v1/job/web?purge=maybe", "");
    assert!(status.contains("400"), "{status}");
    assert_eq!(text, "purge: \"maybe\" is not true or false");
    let (status, _, _) = http_request(&http, "DELETE", "/v1/job/web?purge=True", "");
    assert!(status.contains("200"), "{status}");
    let (status, _, _) = http_request(&http, "GET", "/v1/job/web", "");
    assert!(status.contains("404"), "purged: {status}");
    let node = get(&http, "/v1/nodes")[0]["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let drain = json!({"DrainSpec": {"Deadline": "1h"}, "MarkEligible": false});
    let (status, _, text) = http_request(
        &http,
        "POST",
        &format!("/v1/node/{node}/drain"),
        &drain.to_string(),
    );
    assert!(status.contains("400"), "{status} {text}");
    assert_eq!(text, "DrainSpec.Deadline: expected a number, found \"1h\"");
    let node_now = get(&http, &format!("/v1/node/{node}"));
    assert_eq!(node_now["Drain"], false, "nothing changed: {node_now}");
}

#[test]
fn allocation_health_is_set_by_hand_over_http() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().unwrap();
    let mut manual = job();
    manual["Job"]["Update"]["HealthCheck"] = json!("manual");
    let (status, _, body) = http_request(&http, "POST", "/v1/jobs", &manual.to_string());
    assert!(status.contains("200"), "{body}");
    let ids = agent.wait_running("web", 2);
    let deployment = get(&http, "/v1/job/web/deployment")["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/deployment/allocation-health/{deployment}");
    let (status, _, text) = http_request(
        &http,
        "POST",
        &path,
        &json!({"HealthyAllocationIDs": "x"}).to_string(),
    );
    assert!(status.contains("400"), "{status} {text}");
    let healthy = json!({ "DeploymentID": deployment, "HealthyAllocationIDs": ids });
    let (status, _, text) = http_request(&http, "POST", &path, &healthy.to_string());
    assert!(status.contains("200"), "{status} {text}");
    wait_for("the deployment to succeed", || {
        let d = get(&http, &format!("/v1/deployment/{deployment}"));
        if d["Status"] == "successful" {
            Ok(())
        } else {
            Err(d.to_string())
        }
    });
}

#[test]
fn an_acl_token_is_updated_by_its_accessor_and_may_name_a_policy_written_later() {
    let dir = TestDir::new();
    let agent = Agent::start(&dir.path.join("data"), &["-dev", "-acl-enabled"]);
    let http = agent.http.clone().unwrap();
    let (status, body) = http_request_with(&http, "POST", "/v1/acl/bootstrap", "", "");
    assert!(status.contains("200"), "{body}");
    let root = serde_json::from_str::<Value>(&body).unwrap()["SecretID"]
        .as_str()
        .unwrap()
        .to_string();
    let asked = json!({"Name": "ci", "Type": "client", "Policies": ["not-yet"]});
    let (status, body) =
        http_request_with(&http, "POST", "/v1/acl/token", &asked.to_string(), &root);
    assert!(
        status.contains("200"),
        "a policy written later is fine: {body}"
    );
    let token: Value = serde_json::from_str(&body).unwrap();
    let accessor = token["AccessorID"].as_str().unwrap();
    let change = json!({"AccessorID": accessor, "Name": "ci-2", "Policies": ["other"]});
    let path = format!("/v1/acl/token/{accessor}");
    let (status, body) = http_request_with(&http, "POST", &path, &change.to_string(), &root);
    assert!(status.contains("200"), "{body}");
    let updated: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(updated["Name"], "ci-2");
    assert_eq!(updated["Policies"], json!(["other"]));
    assert_eq!(updated["SecretID"], token["SecretID"], "the secret stays");
    let secret = token["SecretID"].as_str().unwrap();
    let (status, _) = http_request_with(&http, "POST", &path, &change.to_string(), secret);
    assert!(
        status.contains("403"),
        "only a management token updates tokens: {status}"
    );
}

#[test]
fn an_allocation_stopped_from_the_cli_or_the_api_is_replaced() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().unwrap();
    http_request(&http, "POST", "/v1/jobs", &job().to_string());
    let ids = agent.wait_running("web", 2);
    let out = agent.ok(&["alloc", "stop", &ids[0][..8]]);
    assert!(out.contains("Evaluation ID: "), "{out}");
    assert!(
        out.contains(&format!("Allocation {:?} stopped", &ids[0][..8])),
        "{out}"
    );
    let replaced = wait_for("a replacement of the stopped allocation", || {
        let now = agent.wait_running("web", 2);
        if now.contains(&ids[0]) {
            Err(format!("{now:?}"))
        } else {
            Ok(now)
        }
    });
    assert!(
        replaced.contains(&ids[1]),
        "the other one stays: {replaced:?}"
    );
    let (status, _, body) = http_request(
        &http,
        "POST",
        &format!("/v1/allocation/{}/stop", ids[1]),
        "",
    );
    assert!(status.contains("200"), "{status} {body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert!(
        answer["EvalID"].as_str().is_some_and(|e| !e.is_empty()),
        "{answer}"
    );
    wait_for("the second one replaced too", || {
        let now = agent.wait_running("web", 2);
        if now.contains(&ids[1]) {
            Err(format!("{now:?}"))
        } else {
            Ok(())
        }
    });
    let again = agent.yurt(&["alloc", "stop", &ids[0]]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("has already stopped"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn the_scheduler_configuration_and_garbage_collection_over_http() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().unwrap();
    let config = get(&http, "/v1/operator/scheduler/configuration");
    assert_eq!(
        config["SchedulerConfig"]["SchedulerAlgorithm"], "binpack",
        "{config}"
    );
    let path = "/v1/operator/scheduler/configuration";
    let (status, _, body) = http_request(
        &http,
        "PUT",
        path,
        &json!({"SchedulerAlgorithm": "spread"}).to_string(),
    );
    assert!(status.contains("200"), "{status} {body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["Updated"],
        true
    );
    let config = get(&http, path);
    assert_eq!(
        config["SchedulerConfig"]["SchedulerAlgorithm"], "spread",
        "{config}"
    );
    assert_eq!(
        config["SchedulerConfig"]["MemoryOversubscriptionEnabled"], false,
        "left out, kept: {config}"
    );
    let (status, _, text) = http_request(
        &http,
        "PUT",
        path,
        &json!({"SchedulerAlgorithm": 3}).to_string(),
    );
    assert!(status.contains("400"), "{status}");
    assert_eq!(text, "SchedulerAlgorithm: expected a string, found 3");
    // A finished batch job is collected at once by a forced GC.
    let once = sh_batch_job(&dir.path, "once", 1, "true");
    agent.ok(&["job", "run", "-detach", once.to_str().unwrap()]);
    wait_for("the batch job to finish", || {
        let s = agent.ok(&["job", "status", "once"]);
        if s.contains("complete") && s.contains("dead") {
            Ok(())
        } else {
            Err(s)
        }
    });
    let (status, _, body) = http_request(&http, "PUT", "/v1/system/gc", "");
    assert!(status.contains("200"), "{status} {body}");
    let (status, _, _) = http_request(&http, "GET", "/v1/job/once", "");
    assert!(status.contains("404"), "collected: {status}");
}
