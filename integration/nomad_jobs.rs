//! Nomad's job files and job JSON, over plain HTTP as Nomad's tools send them (no CLI): every
//! job of `fixtures/nomad-jobs/` registers (HCL through `/v1/jobs/parse`, JSON as it is), with
//! warnings naming what Yurt does not implement; a job read back registers again unchanged
//! (its plan says no change, no new version); a job file and its Nomad JSON are the same job;
//! `job inspect` prints what the API takes back; `/v1/validate/job` answers in Nomad's shape.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::harness::*;

fn corpus() -> Vec<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/nomad-jobs"
    ));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

fn call(http: &str, method: &str, path: &str, body: &Value) -> Value {
    let (status, _, text) = http_request(http, method, path, &body.to_string());
    assert!(status.contains("200"), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

/// The job of a corpus file in Nomad's JSON: a JSON file as it is, a job file as
/// `/v1/jobs/parse` gives it.
fn nomad_json(http: &str, file: &PathBuf) -> Value {
    let text = std::fs::read_to_string(file).unwrap();
    if file.extension().is_some_and(|x| x == "json") {
        let v: Value = serde_json::from_str(&text).unwrap();
        return v["Job"].clone();
    }
    call(http, "POST", "/v1/jobs/parse", &json!({ "JobHCL": text }))
}

#[test]
fn nomad_jobs_register_over_http_and_read_back_unchanged() {
    let dir = TestDir::new();
    let agent = Agent::start(
        &dir.path.join("data"),
        &["-server", "-bootstrap-expect", "1"],
    );
    let http = agent.http.clone().unwrap();
    agent.ok(&["operator", "raft", "list-peers"]);
    let mut registered = Vec::new();
    for file in corpus() {
        let job = nomad_json(&http, &file);
        let id = job["ID"].as_str().unwrap().to_string();
        let answer = call(&http, "POST", "/v1/jobs", &json!({ "Job": job }));
        let warnings = answer["Warnings"].as_str().unwrap_or_default();
        let plain = id == "web";
        assert_eq!(warnings.is_empty(), plain, "{}: {answer}", file.display());
        if !plain {
            assert!(
                warnings.contains("yurt does not implement ") && warnings.contains(" yet: ignored"),
                "{warnings}"
            );
        }
        registered.push((file, id));
    }
    // `web` came twice (its job file and its JSON): the same job, so one version.
    let web = call(&http, "GET", "/v1/job/web", &Value::Null);
    assert_eq!(web["Version"], 0, "{web}");
    for (file, id) in &registered {
        let read = call(&http, "GET", &format!("/v1/job/{id}"), &Value::Null);
        let version = read["Version"].clone();
        let index = read["JobModifyIndex"].clone();
        let plan = call(
            &http,
            "POST",
            &format!("/v1/job/{id}/plan"),
            &json!({ "Job": read.clone(), "Diff": true }),
        );
        assert_eq!(plan["Diff"]["Type"], "None", "{}: {plan}", file.display());
        let again = call(&http, "POST", "/v1/jobs", &json!({ "Job": read }));
        assert_eq!(again["JobModifyIndex"], index, "{}", file.display());
        let after = call(&http, "GET", &format!("/v1/job/{id}"), &Value::Null);
        assert_eq!(after["Version"], version, "{}", file.display());
    }
    // What unimplemented blocks say is kept and shown.
    let cache = call(&http, "GET", "/v1/job/cache", &Value::Null);
    assert_eq!(cache["Ui"]["Link"]["Label"], "Runbook", "{cache}");
    assert_eq!(cache["TaskGroups"][0]["Tasks"][0]["Identity"]["Env"], true);
    // `job inspect` prints what the API takes back.
    let inspected: Value = serde_json::from_str(&agent.ok(&["job", "inspect", "cache"])).unwrap();
    let again = call(&http, "POST", "/v1/jobs", &inspected);
    assert_eq!(again["JobModifyIndex"], cache["JobModifyIndex"]);
    let versions = call(&http, "GET", "/v1/job/cache/versions", &Value::Null);
    assert_eq!(versions["Versions"][0]["ID"], "cache", "{versions}");
    // Validation without registering, in Nomad's shape.
    let bad = json!({"Job": {"ID": "x", "TaskGroups": [{"Name": "g", "Count": "three"}]}});
    let v = call(&http, "POST", "/v1/validate/job", &bad);
    assert_eq!(
        v["ValidationErrors"][0],
        "invalid Job: TaskGroups[0].Count: expected a number"
    );
    let cache_json = nomad_json(&http, &corpus()[0]);
    let v = call(
        &http,
        "POST",
        "/v1/validate/job",
        &json!({ "Job": cache_json }),
    );
    assert_eq!(v["ValidationErrors"], json!([]), "{v}");
    assert!(
        v["Warnings"].as_str().unwrap().contains("EphemeralDisk"),
        "{v}"
    );
    let (_, _, list) = http_request(&http, "GET", "/v1/jobs", "");
    assert!(
        !list.contains("\"x\""),
        "validation registered nothing: {list}"
    );
}

#[test]
fn job_validate_and_run_print_the_warnings_on_the_cli() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let report = corpus()
        .into_iter()
        .find(|f| f.ends_with("report.nomad.hcl"))
        .unwrap();
    let path = report.to_str().unwrap();
    let valid = agent.ok(&["job", "validate", path]);
    assert!(valid.contains("Job validation successful"), "{valid}");
    assert!(
        valid.contains("* yurt does not implement Periodic yet: ignored"),
        "{valid}"
    );
    let plan = stdout(&agent.yurt(&["job", "plan", path]));
    assert!(
        plan.contains("Job Warnings:\n* yurt does not implement Periodic"),
        "{plan}"
    );
    let run = agent.ok(&["job", "run", "-detach", path]);
    assert!(
        run.contains("* yurt does not implement TaskGroups[0].Tasks[0].Templates yet: ignored"),
        "{run}"
    );
    let bad = dir.path.join("bad.nomad.hcl");
    std::fs::write(
        &bad,
        "job \"b\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      idnetity {}\n    }\n  }\n}\n",
    )
    .unwrap();
    let out = agent.yurt(&["job", "validate", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("bad.nomad.hcl:5: task \"t\": unknown block \"idnetity\""),
        "{err}"
    );
}

#[test]
fn job_files_take_variables_from_var_files_the_environment_and_var() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let file = corpus()
        .into_iter()
        .find(|f| f.ends_with("vars.nomad.hcl"))
        .unwrap();
    let path = file.to_str().unwrap();
    let var_file = dir.path.join("prod.hcl");
    std::fs::write(
        &var_file,
        "instances = 3\ndatacenters = [\"dc1\", \"dc2\"]\n",
    )
    .unwrap();
    let yurt = |args: &[&str], env: &[(&str, &str)]| {
        std::process::Command::new(YURT)
            .args(args)
            .env("YURT_ADDR", &agent.grpc)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let vf = var_file.to_str().unwrap();
    let out = yurt(
        &[
            "job",
            "run",
            "-detach",
            "-var-file",
            vf,
            "-var",
            "instances=4",
            path,
        ],
        &[("NOMAD_VAR_instances", "5")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let job: Value = serde_json::from_str(&agent.ok(&["job", "inspect", "greeter"])).unwrap();
    assert_eq!(job["Job"]["TaskGroups"][0]["Count"], 4, "-var wins");
    assert_eq!(
        job["Job"]["Datacenters"],
        json!(["dc1", "dc2"]),
        "from the var file"
    );
    let plan = yurt(
        &["job", "plan", "-var-file", vf, path],
        &[("NOMAD_VAR_instances", "5")],
    );
    let text = stdout(&plan);
    assert!(
        text.contains("+/- Count: \"4\" => \"5\""),
        "the environment over the file:\n{text}"
    );
    let args = job["Job"]["TaskGroups"][0]["Tasks"][0]["Config"]["args"][1].clone();
    assert_eq!(
        args,
        "echo GREETER from ${NOMAD_ALLOC_ID} on ${attr.kernel.name}; sleep 3600"
    );
    // Mistakes: one sentence with file:line:column, nothing registered.
    for (args, want) in [
        (
            vec!["job", "validate", "-var", "instances=11", path],
            ":14:21: variable \"instances\": instances must be between 1 and 10",
        ),
        (
            vec!["job", "validate", "-var", "instance=2", path],
            "-var instance: variable \"instance\" is not declared in the job file",
        ),
        (
            vec!["job", "run", "-var", "instances=many", path],
            "variable \"instances\" from -var: ",
        ),
    ] {
        let out = yurt(&args, &[]);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let job: Value = serde_json::from_str(&agent.ok(&["job", "inspect", "greeter"])).unwrap();
    assert_eq!(job["Job"]["Version"], 0, "nothing else was registered");
}

#[test]
fn job_init_writes_an_example_that_runs_on_a_dev_agent() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let run_in_dir = |args: &[&str]| {
        std::process::Command::new(YURT)
            .args(args)
            .current_dir(&dir.path)
            .env("YURT_ADDR", &agent.grpc)
            .output()
            .unwrap()
    };
    let out = run_in_dir(&["job", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path.join("example.nomad.hcl").exists());
    let again = run_in_dir(&["job", "init"]);
    assert!(!again.status.success(), "an existing file is kept");
    assert!(stderr(&again).contains("example.nomad.hcl already exists"));
    for variant in [&["-short", "short.hcl"][..], &["-docker", "docker.hcl"][..]] {
        let mut args = vec!["job", "init"];
        args.extend_from_slice(variant);
        assert!(run_in_dir(&args).status.success());
        let file = variant[1];
        let valid = run_in_dir(&["job", "validate", file]);
        assert!(valid.status.success(), "{file}: {}", stderr(&valid));
    }
    let short = std::fs::read_to_string(dir.path.join("short.hcl")).unwrap();
    assert!(!short.contains('#'), "{short}");
    let run = run_in_dir(&[
        "job",
        "run",
        "-detach",
        "-var",
        "greeting=hi",
        "example.nomad.hcl",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let ids = agent.wait_running("example", 2);
    let logs = wait_for("the example's greeting", || {
        let text = agent.ok(&["alloc", "logs", &ids[0]]);
        if text.contains("hi from ") {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert!(logs.starts_with(&format!("hi from {}", ids[0])), "{logs}");
}
