//! The mapping of Nomad's job JSON: every field Yurt implements lands where it belongs, what
//! it does not implement is kept and warned about, `null` is the default, and a job read back
//! converts to the same job.

use super::*;
use serde_json::json;

/// A job as `nomad job run -output` writes it (`fixtures/nomad-jobs/redis.json`).
fn nomad_job() -> Value {
    let text = include_str!("../../../../fixtures/nomad-jobs/redis.json");
    serde_json::from_str::<Value>(text).unwrap()["Job"].take()
}

#[test]
fn nomad_s_job_json_lands_where_each_field_belongs() {
    let (job, warnings) = from_nomad(&nomad_job()).unwrap();
    assert_eq!(job.id, "example");
    assert_eq!(job.constraints[0].attribute, "${attr.kernel.name}");
    assert_eq!(job.constraints[0].operator, "=");
    assert_eq!(job.update.as_ref().unwrap().min_healthy_time_ms, 10_000);
    assert_eq!(job.meta["team"], "geo");
    let g = &job.task_groups[0];
    assert_eq!(g.restart.as_ref().unwrap().delay_ms, 15_000);
    assert!(g.reschedule.as_ref().unwrap().unlimited);
    assert_eq!(g.networks[0].dynamic_ports[0].to, 6379);
    // The job-level migrate block is the group's, as in Nomad.
    assert_eq!(g.migrate.as_ref().unwrap().max_parallel, 2);
    let t = &g.tasks[0];
    assert_eq!(t.kill_timeout_ms, 5_000);
    assert_eq!(t.logs.unwrap().max_files, 10);
    assert_eq!(t.services[0].port, "db");
    assert_eq!(t.services[0].checks[0].port, "db");
    assert_eq!(t.services[0].checks[0].interval_ms, 10_000);
    assert_eq!(t.resources.unwrap().memory_mb, 256);
    assert_eq!(t.env["A"], "1");
    assert!(t.config.contains_key("image"));
    // What Yurt does not implement is kept, and said.
    assert!(job.unimplemented.contains_key("Ui"));
    assert!(g.unimplemented.contains_key("EphemeralDisk"));
    assert!(g
        .unimplemented
        .contains_key("Networks[0].DynamicPorts[0].HostNetwork"));
    assert!(t.unimplemented.contains_key("Identity"));
    assert_eq!(
        warnings,
        [
            "yurt does not implement TaskGroups[0].EphemeralDisk yet: ignored",
            "yurt does not implement TaskGroups[0].Networks[0].DynamicPorts[0].HostNetwork yet: ignored",
            "yurt does not implement TaskGroups[0].Tasks[0].Identity yet: ignored",
            "yurt does not implement Ui yet: ignored",
        ]
    );
    let mut said = super::warnings(&job);
    said.sort();
    let mut want = warnings.clone();
    want.sort();
    assert_eq!(said, want, "the servers say the same from the job alone");
}

#[test]
fn a_job_read_back_converts_to_the_same_job() {
    let (job, _) = from_nomad(&nomad_job()).unwrap();
    let shown = to_nomad(&job);
    assert_eq!(
        shown["TaskGroups"][0]["RestartPolicy"]["Delay"],
        json!(15_000_000_000u64)
    );
    assert_eq!(
        shown["TaskGroups"][0]["Tasks"][0]["LogConfig"]["MaxFiles"],
        10
    );
    assert_eq!(
        shown["TaskGroups"][0]["Tasks"][0]["Services"][0]["PortLabel"],
        "db"
    );
    assert_eq!(shown["TaskGroups"][0]["EphemeralDisk"]["SizeMB"], 300);
    assert_eq!(
        shown["TaskGroups"][0]["Tasks"][0]["Identity"]["Name"],
        "default"
    );
    assert_eq!(
        shown["TaskGroups"][0]["Networks"][0]["DynamicPorts"][0]["HostNetwork"],
        "default"
    );
    assert_eq!(shown["Ui"]["Links"][0]["Label"], "docs");
    assert_eq!(shown["Constraints"][0]["LTarget"], "${attr.kernel.name}");
    let (again, _) = from_nomad(&shown).unwrap();
    assert_eq!(again, job);
    // A job as Yurt stores it (canonical, with every default) round-trips as well.
    let mut canonical = job.clone();
    crate::jobspec::canonicalize(&mut canonical);
    let (back, _) = from_nomad(&to_nomad(&canonical)).unwrap();
    assert_eq!(back, canonical);
}

#[test]
fn nulls_are_defaults_and_bad_fields_are_refused_with_their_path() {
    let minimal = json!({"ID": "j", "TaskGroups": [{"Name": "g", "Count": null, "Update": null,
        "Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/true"}}]}]});
    let (job, warnings) = from_nomad(&minimal).unwrap();
    assert_eq!(job.task_groups[0].count, 1);
    assert!(job.task_groups[0].update.is_none());
    assert!(warnings.is_empty());
    let cases = [
        (
            json!({"ID": "j", "TaskGroups": [{"Name": "g", "Count": "three"}]}),
            "TaskGroups[0].Count: expected a number",
        ),
        (
            json!({"ID": "j", "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Confg": {}}]}]}),
            "TaskGroups[0].Tasks[0].Confg: unknown field",
        ),
        (
            json!({"ID": "j", "Update": {"MinHealthyTime": "10s"}}),
            "Update.MinHealthyTime: expected a number (nanoseconds)",
        ),
        (
            json!({"ID": "j", "TaskGroups": {"Name": "g"}}),
            "TaskGroups: expected a list",
        ),
        (
            json!({"ID": "j", "Datacenters": "dc1"}),
            "Datacenters: expected a list",
        ),
        (json!(["not", "a", "job"]), "Job: expected an object"),
    ];
    for (given, want) in cases {
        let got = from_nomad(&given).unwrap_err().to_string();
        assert_eq!(got, want, "{given}");
    }
}

#[test]
fn partly_given_blocks_take_nomad_s_defaults() {
    let given = json!({"ID": "j",
    "Update": {"MaxParallel": 3, "HealthCheck": null},
    "TaskGroups": [
        {"Name": "a", "Update": {"Canary": 1},
         "RestartPolicy": {"Attempts": 5},
         "Migrate": {"MaxParallel": 2},
         "Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/true"}}]},
        {"Name": "b",
         "Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/true"}}]}
    ]});
    let (mut job, _) = from_nomad(&given).unwrap();
    crate::jobspec::canonicalize(&mut job);
    crate::jobspec::validate(&job).unwrap();
    let ju = job.update.as_ref().unwrap();
    assert_eq!((ju.max_parallel, ju.health_check.as_str()), (3, "checks"));
    let a = &job.task_groups[0];
    let au = a.update.as_ref().unwrap();
    assert_eq!(
        (au.max_parallel, au.canary, au.min_healthy_time_ms),
        (3, 1, 10_000)
    );
    let r = a.restart.as_ref().unwrap();
    assert_eq!(
        (r.attempts, r.delay_ms, r.mode.as_str()),
        (5, 15_000, "fail")
    );
    assert_eq!(a.migrate.as_ref().unwrap().healthy_deadline_ms, 300_000);
    assert_eq!(job.task_groups[1].update.as_ref().unwrap().max_parallel, 3);
}

#[test]
fn a_job_file_and_its_nomad_json_are_the_same_job() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/nomad-jobs");
    let hcl = std::fs::read_to_string(format!("{dir}/web.nomad.hcl")).unwrap();
    let from_file = crate::jobspec::parse_file("web.nomad.hcl", &hcl).unwrap();
    let text = std::fs::read_to_string(format!("{dir}/web.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let (mut from_json, warnings) = from_nomad(&v["Job"]).unwrap();
    crate::jobspec::canonicalize(&mut from_json);
    crate::jobspec::validate(&from_json).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        serde_json::to_value(&from_json).unwrap(),
        serde_json::to_value(&from_file).unwrap()
    );
}
