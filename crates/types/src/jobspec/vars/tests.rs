//! Variables, locals and functions in job files: values and their precedence, runtime
//! interpolation kept, and each mistake refused with file:line:column.

use super::*;
use crate::jobspec::parse_hcl_with;
use crate::v1::value;

const CACHE: &str = r#"variable "image" {
  type    = string
  default = "redis:7"
}

variable "instances" {
  type        = number
  default     = 2
  description = "how many"
  validation {
    condition     = var.instances > 0
    error_message = "instances must be positive"
  }
}

variable "dcs" {
  type    = list(string)
  default = ["dc1"]
}

locals {
  full = upper(local.name)
  name = "cache-${var.image}"
  where = ["${var.image}@${node.unique.name}", "${meta.rack}"]
}

job "cache" {
  datacenters = var.dcs
  group "g" {
    count = var.instances
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/echo"
        args    = ["${local.full}", "${NOMAD_ALLOC_ID}", "${attr.kernel.name}", format("%s-%d", "x", var.instances)]
      }
      meta {
        image = var.image
        where = join(",", local.where)
      }
    }
  }
}
"#;

fn args(job: &crate::v1::Job) -> Vec<String> {
    match job.task_groups[0].tasks[0].config["args"].kind.as_ref() {
        Some(value::Kind::ListValue(l)) => l
            .values
            .iter()
            .map(|v| match &v.kind {
                Some(value::Kind::StringValue(s)) => s.clone(),
                other => format!("{other:?}"),
            })
            .collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn variables_locals_and_functions_give_the_job_its_values() {
    let job = parse_hcl_with("cache.hcl", CACHE, &Inputs::default()).unwrap();
    assert_eq!(job.datacenters, ["dc1"]);
    assert_eq!(job.task_groups[0].count, 2);
    assert_eq!(
        args(&job),
        [
            "CACHE-REDIS:7",
            "${NOMAD_ALLOC_ID}",
            "${attr.kernel.name}",
            "x-2"
        ],
        "runtime interpolation is kept for the client and the scheduler"
    );
    assert_eq!(job.task_groups[0].tasks[0].meta["image"], "redis:7");
    assert_eq!(
        job.task_groups[0].tasks[0].meta["where"], "redis:7@${node.unique.name},${meta.rack}",
        "runtime references inside locals and function calls are kept too"
    );
}

#[test]
fn values_come_from_defaults_then_var_files_then_the_environment_then_var() {
    let file = (
        "vars.hcl".to_string(),
        "image = \"from-file\"\ninstances = 3\n".to_string(),
    );
    let mut inputs = Inputs {
        var_files: vec![file],
        ..Inputs::default()
    };
    let job = parse_hcl_with("cache.hcl", CACHE, &inputs).unwrap();
    assert_eq!(job.task_groups[0].count, 3);
    assert_eq!(job.task_groups[0].tasks[0].meta["image"], "from-file");
    inputs.env = vec![
        ("image".into(), "from-env".into()),
        ("unrelated".into(), "x".into()),
    ];
    let job = parse_hcl_with("cache.hcl", CACHE, &inputs).unwrap();
    assert_eq!(job.task_groups[0].tasks[0].meta["image"], "from-env");
    inputs.vars = vec![
        ("image".into(), "from-var".into()),
        ("instances".into(), "5".into()),
        ("dcs".into(), "[\"eu-1\", \"eu-2\"]".into()),
    ];
    let job = parse_hcl_with("cache.hcl", CACHE, &inputs).unwrap();
    assert_eq!(job.task_groups[0].tasks[0].meta["image"], "from-var");
    assert_eq!(job.task_groups[0].count, 5);
    assert_eq!(job.datacenters, ["eu-1", "eu-2"]);
}

#[test]
fn mistakes_are_refused_with_file_line_and_column() {
    let with = |vars: &[(&str, &str)]| Inputs {
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Inputs::default()
    };
    let cases: Vec<(String, Inputs, &str)> = vec![
        (
            CACHE.into(),
            with(&[("instances", "many")]),
            "cache.hcl:6: variable \"instances\" from -var: ",
        ),
        (
            CACHE.into(),
            with(&[("instances", "0")]),
            "cache.hcl:11:21: variable \"instances\": instances must be positive",
        ),
        (
            CACHE.into(),
            with(&[("imgae", "x")]),
            "cache.hcl: -var imgae: variable \"imgae\" is not declared in the job file",
        ),
        (
            CACHE.replace("default = \"redis:7\"", ""),
            Inputs::default(),
            "cache.hcl:1:1: variable \"image\" has no value: give it a default, -var image=...",
        ),
        (
            format!("{CACHE}\nvariable \"dcs\" {{}}\n"),
            Inputs::default(),
            "cache.hcl:45:1: variable \"dcs\" is declared twice",
        ),
        (
            CACHE.replace("upper(local.name)", "uppercase(local.name)"),
            Inputs::default(),
            "cache.hcl:22:10: local \"full\": undefined function `uppercase`",
        ),
        (
            CACHE.replace("\"cache-${var.image}\"", "local.full"),
            Inputs::default(),
            "cache.hcl:22:10: locals refer to each other in a cycle (full, name)",
        ),
        (
            CACHE.replace("format(\"%s-%d\", \"x\", var.instances)", "nosuch(1)"),
            Inputs::default(),
            "cache.hcl:35:81: undefined function `nosuch`",
        ),
    ];
    for (src, inputs, want) in cases {
        let got = parse_hcl_with("cache.hcl", &src, &inputs)
            .expect_err(want)
            .to_string();
        assert!(got.starts_with(want), "\n got: {got}\nwant: {want}");
    }
}

#[test]
fn a_job_file_cannot_make_the_server_build_without_bound() {
    let doubling: String = (0..40)
        .map(|i| format!("  l{} = concat(local.l{i}, local.l{i})\n", i + 1))
        .collect();
    let job = CACHE.split("job \"cache\"").nth(1).unwrap();
    let src = format!("locals {{\n  l0 = [\"aaaaaaaaaaaaaaaa\"]\n{doubling}}}\njob \"cache\"{job}");
    let err = parse_hcl_with("big.hcl", &src, &Inputs::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("concat: the result is larger than 256 KiB"),
        "{err}"
    );
    let for_expr = CACHE.replace("upper(local.name)", "[for x in [1, 2]: x]");
    let err = parse_hcl_with("for.hcl", &for_expr, &Inputs::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "for.hcl: for expressions are not supported in job files yet"
    );
    let many = format!("{CACHE}\n# {}\n", "var.x ".repeat(1001));
    let err = parse_hcl_with("many.hcl", &many, &Inputs::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than the 1000 allowed"), "{err}");
}
