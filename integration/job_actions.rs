//! Job and node actions over plain HTTP and the CLI: `/v1/job/:id/evaluate`, `/stable`,
//! `/scale` (GET and POST; `yurt job scale`, `yurt job eval`), `/v1/node/:id/evaluate`, the
//! node changes' `EvalIDs`/`NodeModifyIndex` answers, and nodes as Nomad's stubs show them
//! (`Address`, `NodePool`, `?resources=true`, `?os=true`).

use serde_json::{json, Value};

use crate::harness::*;

fn job() -> String {
    json!({"Job": {"ID": "web", "Type": "service",
        "TaskGroups": [{"Name": "app", "Count": 1, "Tasks": [{"Name": "server",
            "Driver": "raw_exec",
            "Config": {"command": "/bin/sh", "args": ["-c", "while true; do sleep 1; done"]},
            "Resources": {"CPU": 10, "MemoryMB": 16}}]}]}})
    .to_string()
}

#[test]
fn jobs_are_evaluated_scaled_and_marked_stable_and_nodes_evaluated_over_http_and_the_cli() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().unwrap();
    assert_eq!(http_json(&http, "POST", "/v1/jobs", &job()).0, 200);
    agent.wait_running("web", 1);

    // Scale over HTTP: a new version with the group's new count, and its status.
    let (code, r) = http_json(
        &http,
        "POST",
        "/v1/job/web/scale",
        &json!({"Count": 3, "Target": {"Group": "app"}, "Message": "more"}).to_string(),
    );
    assert_eq!(code, 200, "{r}");
    assert!(r["EvalID"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
    agent.wait_running("web", 3);
    let (_, status) = http_json(&http, "GET", "/v1/job/web/scale", "");
    assert_eq!(status["JobID"], "web", "{status}");
    assert_eq!(status["TaskGroups"]["app"]["Desired"], 3, "{status}");
    assert_eq!(status["TaskGroups"]["app"]["Running"], 3, "{status}");
    // The scale's event, recorded with it: the counts, the message, its evaluation.
    let event = &status["TaskGroups"]["app"]["Events"][0];
    assert_eq!(
        (&event["Count"], &event["PreviousCount"], &event["Message"]),
        (&json!(3), &json!(1), &json!("more")),
        "{status}"
    );
    assert_eq!(
        (&event["EvalID"], &event["Error"]),
        (&r["EvalID"], &json!(false))
    );
    assert!(
        event["Time"].as_i64().unwrap() > 1_000_000_000_000_000_000,
        "{event}"
    );
    // An event without a count (the autoscaler reporting): recorded, the job unchanged.
    let (code, r) = http_json(
        &http,
        "POST",
        "/v1/job/web/scale",
        &json!({"Target": {"Group": "app"}, "Error": true, "Message": "metrics unavailable",
            "Meta": {"source": "test", "tries": 2}})
        .to_string(),
    );
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["EvalID"], Value::Null, "{r}");
    let (_, status) = http_json(&http, "GET", "/v1/job/web/scale", "");
    let events = status["TaskGroups"]["app"]["Events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{status}");
    assert_eq!(events[0]["Message"], "metrics unavailable");
    assert_eq!(
        (&events[0]["Error"], &events[0]["Count"]),
        (&json!(true), &Value::Null)
    );
    assert_eq!(events[0]["Meta"], json!({"source": "test", "tries": 2}));
    assert_eq!(events[1]["Message"], "more", "newest first");
    assert_eq!(status["TaskGroups"]["app"]["Desired"], 3, "unchanged");
    let (_, versions) = http_json(&http, "GET", "/v1/job/web/versions", "");
    assert_eq!(
        versions["Versions"].as_array().unwrap().len(),
        2,
        "{versions}"
    );
    for (body, want) in [
        (
            json!({"Count": 2, "Target": {"Group": "nope"}}),
            "job \"web\" has no group \"nope\" (it has app)",
        ),
        (
            json!({"Count": -1, "Target": {"Group": "app"}}),
            "count must not be negative, not -1",
        ),
        (
            json!({"Count": "2", "Target": {"Group": "app"}}),
            "Count: expected a number, found \"2\"",
        ),
        (
            json!({"Target": {"Group": "app"}}),
            "a scaling request needs a Count, or a Message or Error to record",
        ),
        (
            json!({"Count": 2, "Error": true, "Target": {"Group": "app"}}),
            "a scaling request that reports an error cannot set Count",
        ),
        (
            json!({"Message": "m", "Target": {"Group": "nope"}}),
            "job \"web\" has no group \"nope\"",
        ),
        (
            json!({"Message": "m", "Meta": [1], "Target": {"Group": "app"}}),
            "Meta: expected an object, found [1]",
        ),
    ] {
        let (code, v) = http_json(&http, "POST", "/v1/job/web/scale", &body.to_string());
        assert_eq!(code, 400, "{body}: {v}");
        assert!(
            v.as_str().is_some_and(|m| m.starts_with(want)),
            "{body}: {v}"
        );
    }
    // With -check-index semantics: a stale modify index changes nothing.
    let (code, v) = http_json(
        &http,
        "POST",
        "/v1/job/web/scale",
        &json!({"Count": 1, "Target": {"Group": "app"}, "EnforceIndex": true, "JobModifyIndex": 1})
            .to_string(),
    );
    assert_eq!(code, 400, "{v}");
    assert!(
        v.as_str().unwrap().contains("conflicting job modify index"),
        "{v}"
    );

    // Stable: version 0 marked, then unmarked.
    let (code, r) = http_json(
        &http,
        "POST",
        "/v1/job/web/stable",
        &json!({"JobVersion": 0, "Stable": true}).to_string(),
    );
    assert_eq!(code, 200, "{r}");
    assert!(r["Index"].as_u64().unwrap() > 0);
    let (_, versions) = http_json(&http, "GET", "/v1/job/web/versions", "");
    let v0 = versions["Versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["Version"] == 0)
        .cloned()
        .unwrap();
    assert_eq!(v0["Stable"], true, "{v0}");
    let (code, v) = http_json(
        &http,
        "POST",
        "/v1/job/web/stable",
        &json!({"JobVersion": 9, "Stable": true}).to_string(),
    );
    assert_eq!(code, 400, "{v}");
    assert_eq!(v, json!("job \"web\" has no kept version 9"));

    // Evaluate: a new evaluation that changes nothing that runs.
    let (code, r) = http_json(&http, "POST", "/v1/job/web/evaluate", "{}");
    assert_eq!(code, 200, "{r}");
    let eval = r["EvalID"].as_str().unwrap().to_string();
    let (_, e) = http_json(&http, "GET", &format!("/v1/evaluation/{eval}"), "");
    assert_eq!(e["JobID"], "web", "{e}");
    assert_eq!(e["TriggeredBy"], "job-register", "{e}");
    let (code, v) = http_json(
        &http,
        "POST",
        "/v1/job/web/evaluate",
        &json!({"EvalOptions": {"ForceReschedule": true}}).to_string(),
    );
    assert_eq!(code, 400, "{v}");
    assert!(
        v.as_str()
            .unwrap()
            .contains("ForceReschedule is not implemented"),
        "{v}"
    );

    // Nodes as Nomad's stubs, and their evaluation.
    let (_, nodes) = http_json(&http, "GET", "/v1/nodes?resources=true&os=true", "");
    let n = &nodes[0];
    assert_eq!(n["Address"], "127.0.0.1", "{n}");
    assert_eq!(n["NodePool"], "default", "{n}");
    assert!(
        n["NodeResources"]["Memory"]["MemoryMB"].as_u64().unwrap() > 0,
        "{n}"
    );
    assert!(n["Attributes"]["os.name"].as_str().is_some(), "{n}");
    assert!(n["Drivers"]["raw_exec"]["Detected"] == true, "{n}");
    let (_, plain) = http_json(&http, "GET", "/v1/nodes", "");
    assert!(plain[0].get("NodeResources").is_none(), "{plain}");
    let node = n["ID"].as_str().unwrap().to_string();
    let (_, whole) = http_json(&http, "GET", &format!("/v1/node/{node}"), "");
    assert_eq!(whole["Address"], "127.0.0.1", "{whole}");
    let (code, r) = http_json(&http, "POST", &format!("/v1/node/{node}/evaluate"), "");
    assert_eq!(code, 200, "{r}");
    assert_eq!(
        r["EvalIDs"].as_array().unwrap().len(),
        1,
        "one job on it: {r}"
    );
    assert!(r["NodeModifyIndex"].as_u64().unwrap() > 0, "{r}");
    let (_, r) = http_json(
        &http,
        "POST",
        &format!("/v1/node/{node}/eligibility"),
        &json!({"Eligibility": "ineligible"}).to_string(),
    );
    assert!(
        r["EvalIDs"].is_array() && r["EvalCreateIndex"].as_u64().unwrap() > 0,
        "{r}"
    );
    http_json(
        &http,
        "POST",
        &format!("/v1/node/{node}/eligibility"),
        &json!({"Eligibility": "eligible"}).to_string(),
    );

    // The CLI: `job scale` with and without the group, `job eval`.
    let out = agent.ok(&["job", "scale", "web", "app", "2"]);
    assert!(out.contains("Evaluation"), "{out}");
    agent.wait_running("web", 2);
    agent.ok(&["job", "scale", "-detach", "web", "1"]);
    wait_for("one allocation after scaling in", || {
        let (_, s) = http_json(&http, "GET", "/v1/job/web/scale", "");
        if s["TaskGroups"]["app"]["Desired"] == 1 && s["TaskGroups"]["app"]["Placed"] == 1 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    // Followed to its end: done, or superseded by an evaluation the scale-in's deployment made.
    let out = agent.ok(&["job", "eval", "web"]);
    assert!(
        out.contains("finished with status \"complete\"")
            || out.contains("finished with status \"canceled\""),
        "{out}"
    );
    // `job scaling-events`: newest first; -verbose adds the message and evaluation.
    let events = agent.ok(&["job", "scaling-events", "web"]);
    let lines: Vec<&str> = events.lines().collect();
    assert_eq!(lines.len(), 5, "{events}");
    assert!(
        lines[0].starts_with("Task Group") && lines[0].contains("PrevCount"),
        "{events}"
    );
    let cells = |l: &str| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    assert_eq!(cells(lines[1]), "app 1 2", "{events}");
    assert_eq!(cells(lines[2]), "app 2 3", "{events}");
    let verbose = agent.ok(&["job", "scaling-events", "-verbose", "web"]);
    assert!(
        verbose.contains("submitted using the Yurt CLI") && verbose.contains("metrics unavailable"),
        "{verbose}"
    );
    let bad = agent.yurt(&["job", "scale", "web", "app", "many"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("count \"many\" is not a whole number"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn an_allocation_s_tasks_are_signalled_and_restarted_in_place() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().unwrap();
    let script = "trap 'echo got-hup' HUP; echo started; while true; do sleep 0.1; done";
    let body = json!({"Job": {"ID": "sig", "Type": "service",
        "TaskGroups": [{"Name": "g", "Count": 1,
            "RestartPolicy": {"Attempts": 0, "Mode": "fail"},
            "Tasks": [{"Name": "t", "Driver": "raw_exec", "KillTimeout": 1_000_000_000i64,
                "Config": {"command": "/bin/sh", "args": ["-c", script]},
                "Resources": {"CPU": 10, "MemoryMB": 16}}]}]}});
    assert_eq!(
        http_json(&http, "POST", "/v1/jobs", &body.to_string()).0,
        200
    );
    let ids = agent.wait_running("sig", 1);
    let id = ids[0].clone();
    let logs_with = |what: &str, n: usize| {
        wait_for(&format!("{n} {what:?} in the task's output"), || {
            let logs = agent.ok(&["alloc", "logs", &id]);
            if logs.matches(what).count() >= n {
                Ok(())
            } else {
                Err(logs)
            }
        })
    };
    logs_with("started", 1);

    // Its resource usage over HTTP, in Nomad's shape, the allocation's and its task's; an
    // allocation that does not exist is a 404.
    let stats = wait_for("the allocation's stats", || {
        let (code, v) = http_json(
            &http,
            "GET",
            &format!("/v1/client/allocation/{id}/stats"),
            "",
        );
        let rss = &v["ResourceUsage"]["MemoryStats"]["RSS"];
        if code == 200 && rss.as_u64().is_some_and(|b| b > 0) {
            Ok(v)
        } else {
            Err(format!("{code} {v}"))
        }
    });
    let task = &stats["Tasks"]["t"]["ResourceUsage"];
    assert!(
        task["MemoryStats"]["RSS"].as_u64().is_some_and(|b| b > 0),
        "{stats}"
    );
    assert!(task["CpuStats"]["Percent"].is_number(), "{stats}");
    assert!(
        stats["Timestamp"].as_i64().is_some_and(|t| t > 0),
        "{stats}"
    );
    let (code, v) = http_json(&http, "GET", "/v1/client/allocation/nope/stats", "");
    assert_eq!(code, 404, "{v}");

    // A signal over HTTP reaches the task; a bad one is refused in one sentence.
    let path = format!("/v1/client/allocation/{id}/signal");
    let (code, r) = http_json(
        &http,
        "POST",
        &path,
        &json!({"Signal": "SIGHUP"}).to_string(),
    );
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["Tasks"], json!(["t"]));
    logs_with("got-hup", 1);
    let (code, v) = http_json(
        &http,
        "POST",
        &path,
        &json!({"Signal": "SIGFOO"}).to_string(),
    );
    assert_eq!(code, 400, "{v}");
    assert_eq!(v, json!("invalid signal: \"SIGFOO\""));
    let (code, v) = http_json(&http, "POST", &path, &json!({"Task": "nope"}).to_string());
    assert_eq!(code, 404, "{v}");
    // From the CLI, by a prefix of its ID too.
    agent.ok(&["alloc", "signal", "-s", "HUP", &id[..8], "t"]);
    logs_with("got-hup", 2);

    // Restart in place: the same allocation, started again, although its policy allows no
    // restart at all.
    agent.ok(&["alloc", "restart", &id]);
    let status = wait_for("the task started again", || {
        let s = agent.ok(&["alloc", "status", &id]);
        if s.matches("Started").count() >= 2 && s.contains("Restart Signaled") {
            Ok(s)
        } else {
            Err(s)
        }
    });
    assert!(status.contains("User requested restart"), "{status}");
    logs_with("started", 2);
    assert_eq!(agent.wait_running("sig", 1), ids, "the same allocation");
    let (code, r) = http_json(
        &http,
        "POST",
        &format!("/v1/client/allocation/{id}/restart"),
        &json!({"TaskName": "t"}).to_string(),
    );
    assert_eq!(code, 200, "{r}");
    logs_with("started", 3);
    // The servers hear of it with the client's next report.
    wait_for("two restarts reported, the allocation running", || {
        let (_, alloc) = http_json(&http, "GET", &format!("/v1/allocation/{id}"), "");
        if alloc["ClientStatus"] == "running" && alloc["TaskStates"]["t"]["Restarts"] == 2 {
            Ok(())
        } else {
            Err(alloc.to_string())
        }
    });
}

#[test]
fn groups_scaling_blocks_are_served_as_nomad_scaling_policies() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().unwrap();
    let file = dir.path.join("auto.hcl");
    std::fs::write(
        &file,
        r#"job "auto" {
  datacenters = ["dc1"]
  group "app" {
    count = 2
    scaling {
      min     = 1
      max     = 5
      enabled = true
      policy {
        cooldown = "1m"
      }
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 1; done"]
      }
      resources {
        cpu    = 10
        memory = 16
      }
    }
  }
}
"#,
    )
    .unwrap();
    agent.ok(&["job", "run", "-detach", file.to_str().unwrap()]);
    let (code, list) = http_json(&http, "GET", "/v1/scaling/policies", "");
    assert_eq!(code, 200, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let p = &list[0];
    assert_eq!(
        p["Target"],
        json!({"Namespace": "default", "Job": "auto", "Group": "app"})
    );
    assert_eq!(
        (&p["Type"], &p["Enabled"]),
        (&json!("horizontal"), &json!(true)),
        "{p}"
    );
    let id = p["ID"].as_str().unwrap().to_string();
    let (_, whole) = http_json(&http, "GET", &format!("/v1/scaling/policy/{id}"), "");
    assert_eq!(
        (&whole["Min"], &whole["Max"]),
        (&json!(1), &json!(5)),
        "{whole}"
    );
    assert_eq!(whole["Policy"]["cooldown"], "1m", "{whole}");
    let (_, none) = http_json(&http, "GET", "/v1/scaling/policies?job=other", "");
    assert_eq!(none, json!([]));
    let (code, _) = http_json(&http, "GET", "/v1/scaling/policy/nope", "");
    assert_eq!(code, 404);
    // The autoscaler's way: read the policy, then scale the job it names.
    let (code, r) = http_json(
        &http,
        "POST",
        "/v1/job/auto/scale",
        &json!({"Count": 3, "Target": {"Group": "app"}}).to_string(),
    );
    assert_eq!(code, 200, "{r}");
    agent.wait_running("auto", 3);
}
