//! Tests of the job-spec reader: good files with Nomad's defaults, and malformed files with the
//! exact sentence each must produce.

use super::*;

const GOOD: &str = r#"
job "web" {
  datacenters = ["dc1"]
  group "app" {
    count = 3
    task "server" {
      driver = "raw_exec"
      config {
        command = "/bin/sleep"
        args    = ["1000"]
      }
      env {
        PORT = "8080"
        LIMIT = 5
      }
    }
  }
}
"#;

#[test]
fn good_file_gets_nomad_defaults() {
    let job = parse_hcl("web.hcl", GOOD).unwrap();
    assert_eq!(job.id, "web");
    assert_eq!(job.name, "web");
    assert_eq!(job.r#type, "service");
    assert_eq!(job.priority, 50);
    assert_eq!(job.datacenters, vec!["dc1"]);
    let g = &job.task_groups[0];
    assert_eq!(g.count, 3);
    assert_eq!(g.update.as_ref().unwrap(), &default_update());
    assert_eq!(g.migrate.as_ref().unwrap(), &default_migrate());
    assert_eq!(g.restart.as_ref().unwrap(), &default_restart("service"));
    assert!(g.reschedule.as_ref().unwrap().unlimited);
    let t = &g.tasks[0];
    assert_eq!(t.env["PORT"], "8080");
    assert_eq!(t.env["LIMIT"], "5");
    assert_eq!(t.resources.as_ref().unwrap().cpu, 100);
    assert_eq!(t.resources.as_ref().unwrap().memory_mb, 300);
    assert_eq!(t.kill_timeout_ms, 5000);
    assert_eq!(t.kill_signal, "SIGTERM");
    assert_eq!(
        t.logs,
        Some(LogConfig {
            max_files: 10,
            max_file_size_mb: 10
        })
    );
}

#[test]
fn logs_block_is_read_and_checked() {
    let src = GOOD.replace(
        "driver = \"raw_exec\"",
        "driver = \"raw_exec\"\n      logs {\n        max_files = 3\n      }",
    );
    let job = parse_hcl("web.hcl", &src).unwrap();
    assert_eq!(
        job.task_groups[0].tasks[0].logs,
        Some(LogConfig {
            max_files: 3,
            max_file_size_mb: 10
        })
    );
    let zero = GOOD.replace(
        "driver = \"raw_exec\"",
        "driver = \"raw_exec\"\n      logs {\n        max_file_size = 0\n      }",
    );
    assert_eq!(
        bad(&zero),
        "bad.hcl:8: logs: max_files (10) and max_file_size (0) must be at least 1"
    );
}

#[test]
fn example_job_parses() {
    let src = include_str!("../../../../examples/web.hcl");
    let job = parse_hcl("web.hcl", src).unwrap();
    assert_eq!(job.task_groups[0].count, 2);
    assert_eq!(job.task_groups[0].tasks[0].env["GREETING"], "hello");
}

#[test]
fn group_update_overrides_job_update_field_by_field() {
    let src = r#"
job "j" {
  update {
    max_parallel = 3
    min_healthy_time = "5s"
  }
  group "a" {
    update {
      canary = 1
    }
    task "t" {
      driver = "raw_exec"
      config { command = "/bin/true" }
    }
  }
  group "b" {
    task "t" {
      driver = "raw_exec"
      config { command = "/bin/true" }
    }
  }
}"#;
    let job = parse_hcl("j.hcl", src).unwrap();
    let a = job.task_groups[0].update.as_ref().unwrap();
    assert_eq!(
        (a.max_parallel, a.min_healthy_time_ms, a.canary),
        (3, 5000, 1)
    );
    let b = job.task_groups[1].update.as_ref().unwrap();
    assert_eq!(
        (b.max_parallel, b.min_healthy_time_ms, b.canary),
        (3, 5000, 0)
    );
}

#[test]
fn batch_job_defaults_and_partial_restart() {
    let src = r#"
job "b" {
  type = "batch"
  group "g" {
    restart {
      attempts = 1
    }
    task "t" {
      driver = "raw_exec"
      config { command = "/bin/true" }
    }
  }
}"#;
    let job = parse_hcl("b.hcl", src).unwrap();
    let g = &job.task_groups[0];
    assert!(g.update.is_none());
    assert!(g.migrate.is_none());
    let r = g.restart.as_ref().unwrap();
    assert_eq!(
        (r.attempts, r.delay_ms, r.mode.as_str()),
        (1, 15_000, "fail")
    );
    assert_eq!(g.reschedule.as_ref().unwrap().attempts, 1);
}

#[test]
fn interpolation_is_kept_for_the_client() {
    let src = r#"
job "j" {
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/echo"
        args = ["${YURT_ALLOC_ID}"]
      }
    }
  }
}"#;
    let job = parse_hcl("j.hcl", src).unwrap();
    let args = crate::diff::value_to_json(&job.task_groups[0].tasks[0].config["args"]);
    assert_eq!(args, serde_json::json!(["${YURT_ALLOC_ID}"]));
}

#[test]
fn json_job_round_trips() {
    let job = parse_hcl("web.hcl", GOOD).unwrap();
    let text = serde_json::to_string(&job).unwrap();
    let back = parse_json("web.json", &text).unwrap();
    assert_eq!(back, job);
    let wrapped = format!("{{\"job\": {text}}}");
    assert_eq!(parse_file("web.json", &wrapped).unwrap(), job);
}

/// A task body that is valid, to embed in malformed files.
const TASK: &str = r#"task "t" {
      driver = "raw_exec"
      config { command = "/bin/true" }
    }"#;

fn bad(src: &str) -> String {
    parse_file("bad.hcl", src)
        .expect_err("this file must be refused")
        .to_string()
}

fn in_group(group_body: &str) -> String {
    format!("job \"j\" {{\n  group \"g\" {{\n{group_body}\n    {TASK}\n  }}\n}}\n")
}

#[test]
fn malformed_files_name_file_line_and_field() {
    let cases: Vec<(String, &str)> = vec![
        ("job \"j\" {\n  group \"g\" {\n".into(), "bad.hcl:2: syntax error"),
        ("".into(), "bad.hcl: no job block found: write `job \"<id>\" { ... }`"),
        (
            format!("job \"a\" {{\n group \"g\" {{\n    {TASK}\n  }}\n}}\njob \"b\" {{}}\n"),
            "bad.hcl:9: only one job block is allowed per file",
        ),
        ("job {\n}\n".into(), "bad.hcl:1: job block needs exactly one name"),
        ("job \"j\" {\n}\n".into(), "bad.hcl:1: job has no group: add at least one `group` block"),
        (
            "job \"j\" {\n  type = \"cron\"\n  group \"g\" {}\n}\n".into(),
            "bad.hcl:2: type \"cron\" is not one of service, batch, system",
        ),
        (
            format!("job \"j\" {{\n  priority = 500\n  group \"g\" {{\n    {TASK}\n  }}\n}}\n"),
            "bad.hcl:2: priority (500) must be between 1 and 100",
        ),
        (
            format!("job \"j\" {{\n  datacenters = \"dc1\"\n  group \"g\" {{\n    {TASK}\n  }}\n}}\n"),
            "bad.hcl:2: job \"j\": datacenters must be a list of strings, found a string",
        ),
        (
            format!("job \"j\" {{\n  colour = \"red\"\n  group \"g\" {{\n    {TASK}\n  }}\n}}\n"),
            "bad.hcl:2: job \"j\": unknown field \"colour\"",
        ),
        (in_group("    count = \"two\""), "bad.hcl:3: group \"g\": count must be a whole number, found a string"),
        (in_group("    count = -1"), "bad.hcl:3: group \"g\": count (-1) must not be negative"),
        (
            "job \"j\" {\n  group \"g\" {\n  }\n}\n".into(),
            "bad.hcl:2: group \"g\" has no task: add a `task` block",
        ),
        (
            in_group("    update {\n      min_healthy_time = \"10m\"\n    }"),
            "bad.hcl:4: update.min_healthy_time (10m0s) must be less than healthy_deadline (5m0s)",
        ),
        (
            in_group("    update {\n      healthy_deadline = \"20m\"\n    }"),
            "bad.hcl:4: update.healthy_deadline (20m0s) must be less than progress_deadline (10m0s)",
        ),
        (
            in_group("    update {\n      auto_promote = true\n    }"),
            "bad.hcl:4: update.auto_promote requires a canary count greater than zero",
        ),
        (
            in_group("    update {\n      health_check = \"vibes\"\n    }"),
            "bad.hcl:4: health_check \"vibes\" is not one of checks, task_states, manual",
        ),
        (
            in_group("    update {\n      min_healthy_time = \"soon\"\n    }"),
            "bad.hcl:4: update: min_healthy_time: \"soon\" is not a duration",
        ),
        (
            in_group("    update {\n      stagger = \"30\"\n    }"),
            "bad.hcl:4: update: stagger: \"30\" has no unit (use e.g. \"30s\")",
        ),
        (
            format!("job \"j\" {{\n  type = \"batch\"\n  group \"g\" {{\n    update {{\n      max_parallel = 2\n    }}\n    {TASK}\n  }}\n}}\n"),
            "bad.hcl:4: job type \"batch\" does not allow an update block",
        ),
        (
            in_group("    restart {\n      mode = \"panic\"\n    }"),
            "bad.hcl:4: restart.mode \"panic\" is not one of fail, delay",
        ),
        (
            in_group("    restart {\n      attempts = 10\n      delay = \"1m\"\n      interval = \"5m\"\n    }"),
            "bad.hcl:3: restart: 10 attempts with a delay of 1m0s do not fit in the interval of 5m0s",
        ),
        (
            in_group("    reschedule {\n      delay_function = \"random\"\n    }"),
            "bad.hcl:4: reschedule.delay_function \"random\" is not one of constant, exponential, fibonacci",
        ),
        (
            "job \"j\" {\n  group \"g\" {\n    task \"t\" {\n      config { command = \"/bin/true\" }\n    }\n  }\n}\n".into(),
            "bad.hcl:3: task \"t\" has no driver",
        ),
        (
            "job \"j\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n      config {\n        command = \"x\"\n        image = \"y\"\n      }\n    }\n  }\n}\n".into(),
            "bad.hcl:7: config: unknown field \"image\" for the exec driver (it takes command, args, pid_mode, ipc_mode)",
        ),
        (
            "job \"j\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n      config {\n        command = \"x\"\n        pid_mode = \"shared\"\n      }\n    }\n  }\n}\n".into(),
            "bad.hcl:7: config.pid_mode must be \"private\" or \"host\"",
        ),
        (
            "job \"j\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"no such driver\"\n      config { command = \"x\" }\n    }\n  }\n}\n".into(),
            "bad.hcl:4: driver",
        ),
        (
            "job \"j\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n      config { command = \"x\" }\n      resources {\n        memory     = 256\n        memory_max = 128\n      }\n    }\n  }\n}\n".into(),
            "bad.hcl:8: resources.memory_max (128 MB) must be at least memory (256 MB)",
        ),
        (
            "job \"j\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        comand = \"x\"\n      }\n    }\n  }\n}\n".into(),
            "bad.hcl:6: config: unknown field \"comand\" for the raw_exec driver (it takes command, args)",
        ),
        (
            "job \"j\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n      }\n    }\n  }\n}\n".into(),
            "bad.hcl:5: task \"t\": config.command is required by the raw_exec driver",
        ),
        (
            "job \"j\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"x\"\n        args = \"-v\"\n      }\n    }\n  }\n}\n".into(),
            "bad.hcl:7: config.args must be a list of strings",
        ),
        (
            "job \"j\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      config { command = \"x\" }\n      resources {\n        memory = 4\n      }\n    }\n  }\n}\n".into(),
            "bad.hcl:7: resources.memory (4 MB) must be at least 10 MB",
        ),
        (
            "job \"j\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      config { command = \"x\" }\n      resources {\n        disk = 4\n      }\n    }\n  }\n}\n".into(),
            "bad.hcl:7: resources: unknown field \"disk\"",
        ),
        (
            format!("job \"j\" {{\n  group \"g\" {{\n    {TASK}\n  }}\n  group \"g\" {{\n    {TASK}\n  }}\n}}\n"),
            "bad.hcl:8: group \"g\" is defined twice",
        ),
        (
            format!("job \"j\" {{\n  group \"g\" {{\n    {TASK}\n    {TASK}\n  }}\n}}\n"),
            "bad.hcl:7: task \"t\" is defined twice in group \"g\"",
        ),
        (
            in_group("    constraint {\n      attribute = \"${attr.kernel.name}\"\n      operator = \"~\"\n      value = \"linux\"\n    }"),
            "bad.hcl:5: constraint operator \"~\" is not known",
        ),
        (
            in_group("    service {\n      name = \"web\"\n      port = \"http\"\n    }"),
            "bad.hcl:3: service \"web\" uses port \"http\", which no network block defines",
        ),
        (
            in_group("    network {\n      port \"http\" {}\n    }\n    service {\n      name = \"web\"\n      port = \"http\"\n      check {\n        type = \"http\"\n        interval = \"10s\"\n        timeout = \"2s\"\n      }\n    }"),
            "bad.hcl:6: http check \"\" needs a path",
        ),
        (
            format!("job \"j\" {{\n  type = \"system\"\n  group \"g\" {{\n    count = 3\n    {TASK}\n  }}\n}}\n"),
            "bad.hcl:4: count (3) must be 0 or 1 in a system job: it runs once on every node",
        ),
        (
            format!("job \"j\" {{\n  name = var.name\n  group \"g\" {{\n    {TASK}\n  }}\n}}\n"),
            "bad.hcl:2:10: variable \"name\" is not declared: add a `variable \"name\" { ... }` block",
        ),
        (
            format!("job \"j\" {{\n  group \"g\" {{\n    {TASK}\n    wibble {{}}\n  }}\n}}\n"),
            "bad.hcl:7: group \"g\": unknown block \"wibble\"",
        ),
        ("{ \"id\": 3 }".into(), "bad.hcl:1: syntax error"),
        (
            "job \"j\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      kill_signal = \"SIGSTOP\"\n      config { command = \"x\" }\n    }\n  }\n}\n".into(),
            "bad.hcl:5: kill_signal \"SIGSTOP\" is not one of SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGKILL",
        ),
    ];
    assert!(cases.len() >= 20);
    let mut wrong = Vec::new();
    for (src, want) in cases {
        let got = bad(&src);
        if !got.starts_with(want) {
            wrong.push(format!("for file:\n{src}\nwant: {want}\n got: {got}\n"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn malformed_json_is_refused() {
    let err = parse_file("job.json", "{\"id\": \"x\",")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("job.json:1: invalid JSON"), "{err}");
    let err = parse_file("job.json", "{\"id\": \"x\"}")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "job.json: job: job has no group: add at least one `group` block"
    );
    let err = parse_file("job.json", "{\"id\": 7}")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("job.json: id: invalid type: integer `7`, expected a string"),
        "{err}"
    );
    let err = parse_file("job.json", "[1]").unwrap_err().to_string();
    assert!(err.starts_with("job.json: not a job object"), "{err}");
}

/// Hostile and careless input: each refused at parse time with a sentence naming the field.
#[test]
fn out_of_bounds_values_are_refused_with_the_field_and_the_limit() {
    let task_with = |extra: &str| {
        format!("job \"j\" {{\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n{extra}\n    }}\n  }}\n}}\n")
    };
    let long_id = "x".repeat(70_000);
    let cases: Vec<(String, &str)> = vec![
        (
            in_group("    count = 2147483648"),
            "bad.hcl:3: count (2147483648) must be at most 10000",
        ),
        (
            in_group("    count = 9223372036854775807"),
            "bad.hcl:3: group \"g\": count (9223372036854775807) is too large",
        ),
        (
            in_group("    count = -1"),
            "bad.hcl:3: group \"g\": count (-1) must not be negative",
        ),
        (
            in_group("    count = 18446744073709551616"),
            "bad.hcl:3: syntax error: the number 18446744073709551616 is too large",
        ),

        (
            in_group("    network {\n      port \"http\" {\n        static = 70000\n      }\n    }"),
            "bad.hcl:5: port \"http\": static (70000) must be between 1 and 65535",
        ),
        (
            task_with("      kill_timeout = \"9223372036854775807s\""),
            "bad.hcl:8: task \"t\": kill_timeout: \"9223372036854775807s\" is longer than the longest duration",
        ),
        (
            task_with("      resources = 5"),
            "bad.hcl:8: task \"t\": resources must be a block (write `resources { ... }`), found a number",
        ),
        (
            format!("job \"{long_id}\" {{\n  group \"g\" {{\n    {TASK}\n  }}\n}}\n"),
            "bad.hcl:1: job ID \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"... is 70000 characters long, more than the limit of 128",
        ),
        (
            task_with("      env {\n        K = \"a\\u0000b\"\n      }"),
            "bad.hcl:1: job.task_groups[0].tasks[0].env.K contains a NUL byte",
        ),
    ];
    let mut wrong = Vec::new();
    for (src, want) in cases {
        let got = parse_file("bad.hcl", &src).map_or_else(|e| e.to_string(), |_| "accepted".into());
        if !got.starts_with(want) {
            wrong.push(format!("want: {want}\n got: {got}\n"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn json_errors_name_the_field_and_unknown_fields_are_refused() {
    let json = |body: &str| {
        parse_file("job.json", body)
            .expect_err("refused")
            .to_string()
    };
    let task = |config: &str| {
        format!(
            r#"{{"id": "j", "task_groups": [{{"name": "g", "tasks": [{{"name": "t", "driver": "raw_exec", "config": {config}}}]}}]}}"#
        )
    };
    let e = json(&task(r#""/bin/true""#));
    assert!(
        e.starts_with("job.json: task_groups[0].tasks[0].config: invalid type: string"),
        "{e}"
    );
    let e = json(&task(r#"{"command": {"kind": "/bin/true"}}, "wibble": 1"#));
    assert_eq!(e, "job.json: task_groups[0].tasks[0].wibble: unknown field");
}

#[test]
fn a_job_takes_the_cluster_s_region_or_is_refused_for_another() {
    let mut job = Job {
        region: "global".into(),
        ..Job::default()
    };
    place_in_region(&mut job, "eu").unwrap();
    assert_eq!(job.region, "eu", "the default region is this cluster's");
    place_in_region(&mut job, "eu").unwrap();
    job.region = "mars".into();
    let p = place_in_region(&mut job, "eu").unwrap_err();
    assert_eq!(
        p.to_string(),
        "job.region: \"mars\" is not this cluster's region \"eu\" (Yurt has one region)"
    );
}

fn docker_job(config: &str) -> String {
    format!(
        "job \"geo\" {{\n  group \"api\" {{\n    network {{\n      port \"http\" {{ to = 8080 }}\n    }}\n    task \"server\" {{\n      driver = \"docker\"\n      config {{\n{config}\n      }}\n    }}\n  }}\n}}\n"
    )
}

#[test]
fn docker_config_takes_nomad_s_keys_and_labels_as_a_block() {
    let src = docker_job(
        "        image = \"geo-api-server:0.1\"\n        ports = [\"http\"]\n        volumes = [\"local/data:/data:ro\"]\n        labels {\n          team = \"geo\"\n        }",
    );
    let job = parse_file("geo.hcl", &src).unwrap();
    let t = &job.task_groups[0].tasks[0];
    match t.config["labels"].kind.as_ref() {
        Some(value::Kind::MapValue(m)) => assert!(m.fields.contains_key("team")),
        other => panic!("labels: {other:?}"),
    }
}

#[test]
fn docker_config_errors_name_the_line_and_the_key() {
    let cases = [
        (
            "        image = \"x\"\n        imgae = \"y\"",
            "geo.hcl:10: config: unknown field \"imgae\" for the docker driver",
        ),
        (
            "        command = \"x\"",
            "geo.hcl:8: task \"server\": config.image is required by the docker driver",
        ),
        (
            "        image = \"x\"\n        ports = [\"db\"]",
            "geo.hcl:10: config.ports: \"db\" is not a port of the group's network block",
        ),
        (
            "        image = \"x\"\n        network_mode = \"overlay\"",
            "geo.hcl:10: config.network_mode \"overlay\" is not one of bridge, host, none",
        ),
        (
            "        image = \"x\"\n        volumes = [\"/etc:/etc\"]",
            "geo.hcl:10: config.volumes: \"/etc:/etc\": only paths inside the allocation directory",
        ),
        (
            "        image = \"x\"\n        force_pull = \"yes\"",
            "geo.hcl:10: config.force_pull must be true or false",
        ),
        (
            "        image = \"x\"\n        image_pull_timeout = \"soon\"",
            "geo.hcl:10: config.image_pull_timeout",
        ),
    ];
    for (config, want) in cases {
        let got = parse_file("geo.hcl", &docker_job(config))
            .expect_err(config)
            .to_string();
        assert!(got.starts_with(want), "{config}\n got: {got}\nwant: {want}");
    }
}

/// The job files of `fixtures/nomad-jobs/`, as Nomad users write them.
fn nomad_files() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/nomad-jobs");
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "hcl"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(out.len() >= 2, "{out:?}");
    out
}

#[test]
fn nomad_job_files_parse_and_keep_what_yurt_does_not_implement() {
    for (name, src) in nomad_files() {
        let job = parse_file(&name, &src).unwrap_or_else(|e| panic!("{e}"));
        let warnings = crate::nomad_job::warnings(&job);
        // web.nomad.hcl uses only what Yurt implements; the others, blocks it does not.
        assert_eq!(
            warnings.is_empty(),
            name.ends_with("web.nomad.hcl"),
            "{name}"
        );
        // The same job through Nomad's JSON.
        let (back, _) = crate::nomad_job::from_nomad(&crate::nomad_job::to_nomad(&job)).unwrap();
        assert_eq!(back, job, "{name}");
    }
    let cache = parse_file("cache.nomad.hcl", &nomad_files()[0].1).unwrap();
    let g = &cache.task_groups[0];
    assert_eq!(
        g.migrate.as_ref().unwrap().max_parallel,
        1,
        "the job's migrate block"
    );
    assert!(cache.unimplemented.contains_key("Ui"));
    assert!(g.unimplemented.contains_key("EphemeralDisk"));
    assert!(g.tasks[0].unimplemented.contains_key("Identity"));
    let shown = crate::nomad_job::to_nomad(&cache);
    assert_eq!(shown["Ui"]["Link"]["Label"], "Runbook");
    assert_eq!(shown["TaskGroups"][0]["EphemeralDisk"]["Size"], 300);
    let greeter = parse_file("vars.nomad.hcl", &nomad_files()[2].1).unwrap();
    let g = &greeter.task_groups[0];
    assert_eq!((g.count, greeter.meta["tier"].as_str()), (2, "web"));
    assert_eq!(g.tasks[0].env["GREETER_INSTANCES"], "2");
    let shown = crate::nomad_job::to_nomad(&greeter);
    assert_eq!(shown["TaskGroups"][0]["EphemeralDisk"]["Size"], 300);
    assert_eq!(
        shown["TaskGroups"][0]["Tasks"][0]["Config"]["args"][1],
        "echo GREETER from ${NOMAD_ALLOC_ID} on ${attr.kernel.name}; sleep 3600"
    );
    let report = parse_file("report.nomad.hcl", &nomad_files()[1].1).unwrap();
    let r = report.task_groups[0].reschedule.as_ref().unwrap();
    assert_eq!(
        (r.attempts, r.unlimited),
        (1, false),
        "the job's reschedule block"
    );
    assert_eq!(
        crate::nomad_job::warnings(&report),
        [
            "yurt does not implement Periodic yet: ignored",
            "yurt does not implement TaskGroups[0].Tasks[0].Templates yet: ignored",
        ]
    );
}

#[test]
fn the_disconnect_block_is_read_checked_and_round_trips_through_nomad_json() {
    let src = in_group(
        "    disconnect {\n      lost_after = \"1h\"\n      replace = false\n      reconcile = \"keep_original\"\n    }",
    );
    let job = parse_hcl("d.hcl", &src).unwrap();
    let d = job.task_groups[0].disconnect.clone().unwrap();
    assert_eq!(d.lost_after_ms, 3_600_000);
    assert_eq!(d.replace, Some(false));
    assert_eq!(d.reconcile, "keep_original");
    let json = crate::nomad_job::to_nomad(&job);
    assert_eq!(
        json["TaskGroups"][0]["Disconnect"]["LostAfter"],
        3_600_000_000_000u64
    );
    assert_eq!(json["TaskGroups"][0]["Disconnect"]["Replace"], false);
    let (back, warnings) = crate::nomad_job::from_nomad(&json).unwrap();
    assert_eq!(back.task_groups[0].disconnect, Some(d));
    assert!(
        warnings.iter().all(|w| !w.contains("Disconnect")),
        "{warnings:?}"
    );
    // Nomad's defaults: replaced, best_score.
    let d = parse_hcl(
        "d.hcl",
        &in_group("    disconnect {\n      lost_after = \"5m\"\n    }"),
    )
    .unwrap()
    .task_groups[0]
        .disconnect
        .clone()
        .unwrap();
    assert_eq!(
        (d.replace, d.reconcile.as_str()),
        (Some(true), "best_score")
    );
    assert_eq!(
        bad(&in_group("    disconnect {\n      lost_after = \"5m\"\n      stop_on_client_after = \"1m\"\n    }")),
        "bad.hcl:3: disconnect: lost_after and stop_on_client_after cannot both be set"
    );
    assert_eq!(
        bad(&in_group("    disconnect {\n      reconcile = \"newest\"\n    }")),
        "bad.hcl:4: disconnect.reconcile \"newest\" is not one of best_score, keep_original, keep_replacement, longest_running"
    );
    assert_eq!(
        bad(&in_group("    disconnect {\n      lost_after = 5\n    }")),
        "bad.hcl:4: disconnect: lost_after must be a duration string such as \"30s\", found a number"
    );
}
