//! Namespaces with a real agent: created, listed, shown and deleted over HTTP and the CLI;
//! jobs (and their allocations, evaluations and events) and variables belong to one; reads
//! name it with `?namespace=` (`*`: all), `-namespace`, `YURT_NAMESPACE` or `NOMAD_NAMESPACE`;
//! a token's namespace rules now mean what they say; a namespace with jobs or variables is
//! not deleted; the same job ID in two namespaces is two jobs.

use serde_json::{json, Value};

use crate::event_stream::Stream;
use crate::harness::*;

fn job(id: &str, ns: Option<&str>) -> String {
    let mut j = json!({"Job": {"ID": id, "Type": "service",
        "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{"Name": "t",
            "Driver": "raw_exec",
            "Config": {"command": "/bin/sh", "args": ["-c", "while true; do sleep 1; done"]},
            "Resources": {"CPU": 10, "MemoryMB": 16}}]}]}});
    if let Some(ns) = ns {
        j["Job"]["Namespace"] = json!(ns);
    }
    j.to_string()
}

fn ids(v: &Value, field: &str) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x[field].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn namespaces_hold_jobs_and_variables_apart_for_reads_tokens_and_events() {
    let dir = TestDir::new();
    let mut agent = Agent::start(&dir.path.join("dev"), &["-dev", "-acl-enabled"]);
    let http = agent.http.clone().unwrap();
    let root = secret_of(&agent.ok(&["acl", "bootstrap"]));
    agent.cli_env = vec![("YURT_TOKEN".into(), root.clone())];

    // A job may not name a namespace that does not exist.
    let (code, v) = http_json_with(&http, "POST", "/v1/jobs", &job("api", Some("prod")), &root);
    assert_eq!(code, 400, "{v}");
    assert!(
        v.as_str()
            .unwrap()
            .contains("namespace \"prod\" does not exist"),
        "{v}"
    );
    let (code, v) = http_json_with(
        &http,
        "PUT",
        "/v1/namespace/prod",
        &json!({"Name": "prod", "Description": "production", "Meta": {"team": "ops"}}).to_string(),
        &root,
    );
    assert_eq!(code, 200, "{v}");
    let (_, all) = http_json_with(&http, "GET", "/v1/namespaces", "", &root);
    assert_eq!(ids(&all, "Name"), ["default", "prod"], "{all}");
    let (_, prod) = http_json_with(&http, "GET", "/v1/namespace/prod", "", &root);
    assert_eq!(prod["Meta"]["team"], "ops", "{prod}");
    assert_eq!(prod["Description"], "production");

    // One job in each; `?namespace=` chooses (the job's own field, or the query's).
    let (code, v) = http_json_with(&http, "POST", "/v1/jobs", &job("api", Some("prod")), &root);
    assert_eq!(code, 200, "{v}");
    let (code, v) = http_json_with(
        &http,
        "POST",
        "/v1/jobs?namespace=default",
        &job("web", None),
        &root,
    );
    assert_eq!(code, 200, "{v}");
    agent.wait_running("web", 1);
    let (_, listed) = http_json_with(&http, "GET", "/v1/jobs", "", &root);
    assert_eq!(ids(&listed, "ID"), ["web"], "{listed}");
    let (_, listed) = http_json_with(&http, "GET", "/v1/jobs?namespace=prod", "", &root);
    assert_eq!(ids(&listed, "ID"), ["api"], "{listed}");
    assert_eq!(listed[0]["Namespace"], "prod");
    let (_, listed) = http_json_with(&http, "GET", "/v1/jobs?namespace=*", "", &root);
    assert_eq!(ids(&listed, "ID"), ["api", "web"], "{listed}");
    let (code, v) = http_json_with(&http, "GET", "/v1/job/api", "", &root);
    assert_eq!(code, 404, "{v}");
    assert!(
        v.as_str()
            .unwrap()
            .contains("not found in namespace \"default\""),
        "{v}"
    );
    let (code, v) = http_json_with(&http, "GET", "/v1/job/api?namespace=prod", "", &root);
    assert_eq!((code, &v["Namespace"]), (200, &json!("prod")), "{v}");
    let allocs = wait_for("the prod job's allocation", || {
        let (_, a) = http_json_with(&http, "GET", "/v1/allocations?namespace=prod", "", &root);
        match a.as_array() {
            Some(list) if !list.is_empty() => Ok(a),
            _ => Err(a.to_string()),
        }
    });
    assert!(
        allocs
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["Namespace"] == "prod" && a["JobID"] == "api"),
        "{allocs}"
    );
    let (_, evals) = http_json_with(&http, "GET", "/v1/evaluations?namespace=prod", "", &root);
    assert!(
        evals
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["Namespace"] == "prod"),
        "{evals}"
    );
    assert!(!evals.as_array().unwrap().is_empty());
    let (_, evals) = http_json_with(&http, "GET", "/v1/evaluations", "", &root);
    assert!(
        evals
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["JobID"] == "web"),
        "{evals}"
    );
    // A node's allocations are of every namespace.
    let node = allocs[0]["NodeID"].as_str().unwrap().to_string();
    let (_, on_node) = http_json_with(
        &http,
        "GET",
        &format!("/v1/node/{node}/allocations"),
        "",
        &root,
    );
    assert_eq!(ids(&on_node, "JobID"), ["api", "web"], "{on_node}");

    // A token that may read prod only.
    let policy = dir.path.join("prod-read.hcl");
    std::fs::write(&policy, "namespace \"prod\" {\n  policy = \"read\"\n}\n").unwrap();
    agent.ok(&[
        "acl",
        "policy",
        "apply",
        "prod-read",
        policy.to_str().unwrap(),
    ]);
    let reader = secret_of(&agent.ok(&["acl", "token", "create", "-policy", "prod-read"]));
    let (code, _) = http_json_with(&http, "GET", "/v1/jobs", "", &reader);
    assert_eq!(code, 403, "the default namespace is not the token's");
    let (_, listed) = http_json_with(&http, "GET", "/v1/jobs?namespace=*", "", &reader);
    assert_eq!(ids(&listed, "ID"), ["api"], "{listed}");
    let (code, _) = http_json_with(&http, "GET", "/v1/job/api?namespace=prod", "", &reader);
    assert_eq!(code, 200);
    let (code, v) = http_json_with(
        &http,
        "POST",
        "/v1/jobs?namespace=prod",
        &job("api", Some("prod")),
        &reader,
    );
    assert_eq!(code, 403, "{v}");
    assert!(
        v.as_str()
            .unwrap()
            .contains("submit-job on namespace \"prod\""),
        "{v}"
    );
    let (_, visible) = http_json_with(&http, "GET", "/v1/namespaces", "", &reader);
    assert_eq!(ids(&visible, "Name"), ["prod"], "{visible}");
    let (code, _) = http_json_with(&http, "PUT", "/v1/namespace/dev", "{}", &reader);
    assert_eq!(code, 403, "namespaces are a management token's");
    // Its event stream over every namespace has only prod's events.
    let mut stream = Stream::open_with(
        &http,
        "namespace=*&index=0&topic=Job&topic=Allocation&topic=Evaluation",
        &reader,
    );
    let mut seen_api = false;
    while !seen_api {
        let line = stream.next_line();
        for e in line["Events"].as_array().into_iter().flatten() {
            assert_eq!(e["Namespace"], "prod", "{e}");
            seen_api |= e["Topic"] == "Job" && e["Key"] == "api";
        }
    }

    // Variables live in a namespace too; the reader may read prod's (policy read).
    agent.ok(&["-namespace", "prod", "var", "put", "db", "pass=p"]);
    let admin = std::mem::replace(
        &mut agent.cli_env,
        vec![("YURT_TOKEN".into(), reader.clone())],
    );
    let got = agent.ok(&["-namespace", "prod", "var", "get", "-item", "pass", "db"]);
    assert_eq!(got, "p");
    let denied = agent.yurt(&["var", "get", "db"]);
    assert_eq!(denied.status.code(), Some(1));
    agent
        .cli_env
        .push(("NOMAD_NAMESPACE".into(), "prod".into()));
    assert_eq!(agent.ok(&["var", "get", "-item", "pass", "db"]), "p");
    agent.cli_env = admin;

    // The CLI: list, status, the namespace by flag and by environment.
    let list = agent.ok(&["namespace", "list"]);
    assert!(list.contains("prod     production"), "{list}");
    let status = agent.ok(&["namespace", "status", "prod"]);
    assert!(
        status.contains("Description = production") && status.contains("team = ops"),
        "{status}"
    );
    let all = agent.ok(&["-namespace", "*", "job", "status"]);
    assert!(
        all.contains("Namespace") && all.contains("prod") && all.contains("web"),
        "{all}"
    );
    let jobs = agent.ok(&["-namespace", "prod", "job", "status"]);
    assert!(jobs.contains("api") && !jobs.contains("web"), "{jobs}");
    agent.cli_env.push(("YURT_NAMESPACE".into(), "prod".into()));
    let jobs = agent.ok(&["job", "status"]);
    assert!(jobs.contains("api") && !jobs.contains("web"), "{jobs}");
    agent.cli_env.pop();

    // Not deleted while it has jobs, then variables; `default` never.
    let refused = agent.yurt(&["namespace", "delete", "prod"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("namespace \"prod\" has 1 jobs"),
        "{}",
        stderr(&refused)
    );
    agent.ok(&["-namespace", "prod", "job", "stop", "-purge", "api"]);
    let refused = agent.yurt(&["namespace", "delete", "prod"]);
    assert!(
        stderr(&refused).contains("namespace \"prod\" has 1 variables"),
        "{}",
        stderr(&refused)
    );
    agent.ok(&["-namespace", "prod", "var", "purge", "db"]);
    let out = agent.ok(&["namespace", "delete", "prod"]);
    assert!(
        out.contains("Successfully deleted namespace \"prod\"!"),
        "{out}"
    );
    let (code, v) = http_json_with(&http, "DELETE", "/v1/namespace/default", "", &root);
    assert_eq!(code, 400, "{v}");
    assert_eq!(v, json!("the default namespace cannot be deleted"));
    let (_, all) = http_json_with(&http, "GET", "/v1/namespaces", "", &root);
    assert_eq!(ids(&all, "Name"), ["default"], "{all}");
}

#[test]
fn the_same_job_id_in_two_namespaces_is_two_jobs() {
    let dir = TestDir::new();
    let agent = Agent::start(&dir.path.join("dev"), &["-dev"]);
    let http = agent.http.clone().unwrap();
    for ns in ["dev", "prod"] {
        agent.ok(&["namespace", "apply", ns]);
    }
    let mut stream = Stream::open_with(&http, "namespace=*&topic=Job", "");
    // `web` in dev from the CLI (the flag names the namespace), `web` in prod over HTTP.
    let spec = dir.path.join("web.nomad.hcl");
    std::fs::write(
        &spec,
        "job \"web\" {\n  group \"g\" {\n    count = 1\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"/bin/sh\"\n        args = [\"-c\", \"while true; do sleep 1; done\"]\n      }\n      resources {\n        cpu = 10\n        memory = 16\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    agent.ok(&[
        "job",
        "run",
        "-detach",
        "-namespace",
        "dev",
        spec.to_str().unwrap(),
    ]);
    let mut prod = serde_json::from_str::<Value>(&job("web", Some("prod"))).unwrap();
    prod["Job"]["TaskGroups"][0]["Count"] = json!(2);
    let (code, v) = http_json(&http, "POST", "/v1/jobs", &prod.to_string());
    assert_eq!(code, 200, "{v}");

    let running = |ns: &str, n: usize| {
        wait_for(&format!("{n} running allocations of web in {ns}"), || {
            let (_, a) = http_json(
                &http,
                "GET",
                &format!("/v1/job/web/allocations?namespace={ns}"),
                "",
            );
            let live: Vec<&Value> = a
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["ClientStatus"] == "running" && a["DesiredStatus"] == "run")
                .collect();
            let ours = live
                .iter()
                .all(|a| a["Namespace"] == ns && a["JobID"] == "web");
            if live.len() == n && ours {
                Ok(())
            } else {
                Err(a.to_string())
            }
        })
    };
    running("dev", 1);
    running("prod", 2);
    let (_, listed) = http_json(&http, "GET", "/v1/jobs?namespace=*", "");
    let mut both: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            format!(
                "{}/{}",
                j["Namespace"].as_str().unwrap(),
                j["ID"].as_str().unwrap()
            )
        })
        .collect();
    both.sort();
    assert_eq!(both, ["dev/web", "prod/web"], "{listed}");
    let (_, d) = http_json(&http, "GET", "/v1/job/web?namespace=dev", "");
    let (_, p) = http_json(&http, "GET", "/v1/job/web?namespace=prod", "");
    assert_eq!(
        (d["Namespace"].as_str(), p["Namespace"].as_str()),
        (Some("dev"), Some("prod"))
    );
    assert_eq!(p["TaskGroups"][0]["Count"], 2, "{p}");
    let (code, _) = http_json(&http, "GET", "/v1/job/web", "");
    assert_eq!(code, 404, "not in default");

    // With every namespace, one ID that names two jobs is a question back, in one sentence.
    let out = agent.yurt(&["-namespace", "*", "job", "status", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "job \"web\" exists in namespaces \"dev\", \"prod\": name one with -namespace"
        ),
        "{}",
        stderr(&out)
    );
    let status = agent.ok(&["-namespace", "prod", "job", "status", "web"]);
    assert!(status.contains("Namespace     = prod"), "{status}");

    // Purging dev's leaves prod's running; its events name its namespace.
    agent.ok(&["-namespace", "dev", "job", "stop", "-purge", "web"]);
    let (code, _) = http_json(&http, "GET", "/v1/job/web?namespace=dev", "");
    assert_eq!(code, 404);
    running("prod", 2);
    let gone = loop {
        let line = stream.next_line();
        let found = line["Events"].as_array().into_iter().flatten().find(|e| {
            e["Type"] == "JobDeregistered" && e["Key"] == "web" && e["Namespace"] == "dev"
        });
        if let Some(e) = found {
            break e.clone();
        }
    };
    assert_eq!(gone["Topic"], "Job", "{gone}");
    let out = agent.ok(&["-namespace", "prod", "job", "stop", "web"]);
    assert!(!out.is_empty());
    let (_, p) = http_json(&http, "GET", "/v1/job/web?namespace=prod", "");
    assert_eq!(p["Stop"], true, "{p}");
}
