//! Nomad's job JSON (the shape of Nomad's `api.Job`, as `nomad job run -output`, `nomad job
//! inspect`, the Terraform provider and API clients write it) to Yurt's [`Job`] and back
//! (pure). The HTTP API takes and gives jobs only through here; the gRPC API and the CLI's
//! `-json` keep the proto's names.
//!
//! One table per level of the job ([`Level`]) names each of Nomad's fields: where it goes in
//! the `Job` message and how (durations are nanoseconds in Nomad's JSON, milliseconds here),
//! the fields Yurt does not implement yet (accepted when they carry a value, kept as given in
//! the `unimplemented` map of the job, group or task they belong to, shown again when the job
//! is read, and named in a warning), and those Nomad's clients send that mean nothing to a
//! job Yurt runs (server-set fields, ignored). `null` means the default, as in Nomad. Any other
//! field is refused with its path (`TaskGroups[0].Tasks[0].Confg: unknown field`), and a value
//! of the wrong type too (`TaskGroups[0].Count: expected a number`).

use serde_json::{Map, Value};

use crate::nomad_json::{plain, says_something, wrapped};
use crate::v1::Job;

/// How a field converts.
#[derive(Clone, Copy)]
enum K {
    /// The same value under another name.
    Plain,
    /// Nanoseconds in Nomad's JSON, milliseconds in ours (a duration or a time).
    Nanos,
    Obj(&'static Level),
    List(&'static Level),
    /// A task's driver config: plain JSON in Nomad's shape, `yurt.v1.Value`s in ours.
    Config,
}

/// A field: its name in Nomad's JSON, in ours, and how it converts.
struct F(&'static str, &'static str, K);

/// One level of the job.
struct Level {
    fields: &'static [F],
    /// Nomad's fields that Yurt does not implement yet.
    unimplemented: &'static [&'static str],
    /// Fields Nomad's clients send that mean nothing to the job Yurt runs.
    ignored: &'static [&'static str],
    /// This level keeps the unimplemented fields of itself and the levels inside it (job,
    /// group, task).
    records: bool,
}

use K::*;

const CONSTRAINT: Level = Level {
    fields: &[
        F("LTarget", "attribute", Plain),
        F("RTarget", "value", Plain),
        F("Operand", "operator", Plain),
    ],
    unimplemented: &[],
    ignored: &[],
    records: false,
};

const UPDATE: Level = Level {
    fields: &[
        F("Stagger", "stagger_ms", Nanos),
        F("MaxParallel", "max_parallel", Plain),
        F("HealthCheck", "health_check", Plain),
        F("MinHealthyTime", "min_healthy_time_ms", Nanos),
        F("HealthyDeadline", "healthy_deadline_ms", Nanos),
        F("ProgressDeadline", "progress_deadline_ms", Nanos),
        F("Canary", "canary", Plain),
        F("AutoRevert", "auto_revert", Plain),
        F("AutoPromote", "auto_promote", Plain),
    ],
    unimplemented: &[],
    ignored: &[],
    records: false,
};

const MIGRATE: Level = Level {
    fields: &[
        F("MaxParallel", "max_parallel", Plain),
        F("HealthCheck", "health_check", Plain),
        F("MinHealthyTime", "min_healthy_time_ms", Nanos),
        F("HealthyDeadline", "healthy_deadline_ms", Nanos),
    ],
    unimplemented: &[],
    ignored: &[],
    records: false,
};

const RESTART: Level = Level {
    fields: &[
        F("Attempts", "attempts", Plain),
        F("Interval", "interval_ms", Nanos),
        F("Delay", "delay_ms", Nanos),
        F("Mode", "mode", Plain),
    ],
    unimplemented: &["RenderTemplates"],
    ignored: &[],
    records: false,
};

const RESCHEDULE: Level = Level {
    fields: &[
        F("Attempts", "attempts", Plain),
        F("Interval", "interval_ms", Nanos),
        F("Delay", "delay_ms", Nanos),
        F("DelayFunction", "delay_function", Plain),
        F("MaxDelay", "max_delay_ms", Nanos),
        F("Unlimited", "unlimited", Plain),
    ],
    unimplemented: &[],
    ignored: &[],
    records: false,
};

const PORT: Level = Level {
    fields: &[
        F("Label", "label", Plain),
        F("Value", "value", Plain),
        F("To", "to", Plain),
    ],
    unimplemented: &["HostNetwork", "IgnoreCollision"],
    ignored: &[],
    records: false,
};

const NETWORK: Level = Level {
    fields: &[
        F("Mode", "mode", Plain),
        F("ReservedPorts", "reserved_ports", List(&PORT)),
        F("DynamicPorts", "dynamic_ports", List(&PORT)),
    ],
    unimplemented: &["Device", "CIDR", "IP", "DNS", "Hostname", "MBits", "CNI"],
    ignored: &[],
    records: false,
};

const CHECK: Level = Level {
    fields: &[
        F("Name", "name", Plain),
        F("Type", "type", Plain),
        F("Path", "path", Plain),
        F("PortLabel", "port", Plain),
        F("Interval", "interval_ms", Nanos),
        F("Timeout", "timeout_ms", Nanos),
        F("Command", "command", Plain),
        F("Args", "args", Plain),
    ],
    unimplemented: &[
        "Protocol",
        "Expose",
        "AddressMode",
        "InitialStatus",
        "TLSServerName",
        "TLSSkipVerify",
        "Header",
        "Method",
        "CheckRestart",
        "GRPCService",
        "GRPCUseTLS",
        "TaskName",
        "SuccessBeforePassing",
        "FailuresBeforeCritical",
        "FailuresBeforeWarning",
        "Body",
        "OnUpdate",
        "Notes",
    ],
    ignored: &["Id"],
    records: false,
};

const SERVICE: Level = Level {
    fields: &[
        F("Name", "name", Plain),
        F("PortLabel", "port", Plain),
        F("Tags", "tags", Plain),
        F("Checks", "checks", List(&CHECK)),
        F("Provider", "provider", Plain),
    ],
    unimplemented: &[
        "CanaryTags",
        "EnableTagOverride",
        "AddressMode",
        "Address",
        "CheckRestart",
        "Connect",
        "Meta",
        "CanaryMeta",
        "TaggedAddresses",
        "TaskName",
        "OnUpdate",
        "Identity",
        "Cluster",
        "Weights",
        "Kind",
    ],
    ignored: &["Id"],
    records: false,
};

const RESOURCES: Level = Level {
    fields: &[
        F("CPU", "cpu", Plain),
        F("MemoryMB", "memory_mb", Plain),
        F("MemoryMaxMB", "memory_max_mb", Plain),
    ],
    unimplemented: &[
        "Cores",
        "DiskMB",
        "Networks",
        "Devices",
        "IOPS",
        "NUMA",
        "SecretsMB",
    ],
    ignored: &[],
    records: false,
};

const LOGS: Level = Level {
    fields: &[
        F("MaxFiles", "max_files", Plain),
        F("MaxFileSizeMB", "max_file_size_mb", Plain),
    ],
    unimplemented: &["Disabled", "Enabled"],
    ignored: &[],
    records: false,
};

const TASK: Level = Level {
    fields: &[
        F("Name", "name", Plain),
        F("Driver", "driver", Plain),
        F("User", "user", Plain),
        F("Config", "config", Config),
        F("Env", "env", Plain),
        F("Services", "services", List(&SERVICE)),
        F("Resources", "resources", Obj(&RESOURCES)),
        F("Meta", "meta", Plain),
        F("KillTimeout", "kill_timeout_ms", Nanos),
        F("KillSignal", "kill_signal", Plain),
        F("LogConfig", "logs", Obj(&LOGS)),
    ],
    unimplemented: &[
        "Lifecycle",
        "Constraints",
        "Affinities",
        "RestartPolicy",
        "Artifacts",
        "Vault",
        "Consul",
        "Templates",
        "DispatchPayload",
        "VolumeMounts",
        "CSIPluginConfig",
        "Leader",
        "ShutdownDelay",
        "Kind",
        "ScalingPolicies",
        "Identity",
        "Identities",
        "Actions",
        "Schedule",
    ],
    ignored: &[],
    records: true,
};

const DISCONNECT: Level = Level {
    fields: &[
        F("LostAfter", "lost_after_ms", Nanos),
        F("StopOnClientAfter", "stop_on_client_after_ms", Nanos),
        F("Replace", "replace", Plain),
        F("Reconcile", "reconcile", Plain),
    ],
    unimplemented: &[],
    ignored: &[],
    records: false,
};

const GROUP: Level = Level {
    fields: &[
        F("Name", "name", Plain),
        F("Count", "count", Plain),
        F("Constraints", "constraints", List(&CONSTRAINT)),
        F("Tasks", "tasks", List(&TASK)),
        F("RestartPolicy", "restart", Obj(&RESTART)),
        F("ReschedulePolicy", "reschedule", Obj(&RESCHEDULE)),
        F("Update", "update", Obj(&UPDATE)),
        F("Migrate", "migrate", Obj(&MIGRATE)),
        F("Disconnect", "disconnect", Obj(&DISCONNECT)),
        F("Networks", "networks", List(&NETWORK)),
        F("Services", "services", List(&SERVICE)),
        F("Meta", "meta", Plain),
    ],
    unimplemented: &[
        "Affinities",
        "Spreads",
        "Volumes",
        "EphemeralDisk",
        "ShutdownDelay",
        "StopAfterClientDisconnect",
        "MaxClientDisconnect",
        "Scaling",
        "Consul",
        "PreventRescheduleOnLost",
    ],
    ignored: &[],
    records: true,
};

const JOB: Level = Level {
    fields: &[
        F("ID", "id", Plain),
        F("Name", "name", Plain),
        F("Type", "type", Plain),
        F("Datacenters", "datacenters", Plain),
        F("Priority", "priority", Plain),
        F("Constraints", "constraints", List(&CONSTRAINT)),
        F("TaskGroups", "task_groups", List(&GROUP)),
        F("Update", "update", Obj(&UPDATE)),
        F("Meta", "meta", Plain),
        F("Namespace", "namespace", Plain),
        F("Region", "region", Plain),
        F("Status", "status", Plain),
        F("Version", "version", Plain),
        F("Stable", "stable", Plain),
        F("Stop", "stop", Plain),
        F("CreateIndex", "create_index", Plain),
        F("ModifyIndex", "modify_index", Plain),
        F("JobModifyIndex", "job_modify_index", Plain),
        F("SubmitTime", "submit_time_unix_ms", Nanos),
    ],
    unimplemented: &[
        "AllAtOnce",
        "NodePool",
        "Affinities",
        "Spreads",
        "Multiregion",
        "Periodic",
        "ParameterizedJob",
        "Payload",
        "ConsulToken",
        "ConsulNamespace",
        "VaultToken",
        "VaultNamespace",
        "UI",
        "Ui",
        "VersionTag",
        // Job files may give these to the whole job.
        "Vault",
        "Consul",
    ],
    ignored: &[
        // Applied to the groups (`JOB_DEFAULTS`).
        "Migrate",
        "Reschedule",
        "StatusDescription",
        "Dispatched",
        "DispatchIdempotencyToken",
        "ParentID",
        "NomadTokenID",
        "CreateTime",
        "ModifyTime",
    ],
    records: true,
};

/// Job-level blocks Nomad applies to each group that has none of its own.
const JOB_DEFAULTS: &[(&str, &str, &Level)] = &[
    ("Migrate", "migrate", &MIGRATE),
    ("Reschedule", "reschedule", &RESCHEDULE),
];

/// A job in Nomad's JSON that cannot be read: where (Nomad's names) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct JsonError {
    pub path: String,
    pub message: String,
}

fn err(path: &str, message: impl Into<String>) -> JsonError {
    JsonError {
        // A key is the caller's text: shown cut, on one line.
        path: if path.is_empty() {
            "Job".into()
        } else {
            crate::limits::tidy(path)
        },
        message: message.into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// What converting from Nomad's shape collects besides the job.
struct Sink {
    warnings: Vec<String>,
}

/// One level from Nomad's shape to ours. `path` is the level's path in Nomad's names (for
/// errors and warnings); `rec` the recording level's map of unimplemented fields and `rel`
/// this level's path below it.
fn from_level(
    v: &Value,
    level: &Level,
    path: &str,
    rec: &mut Map<String, Value>,
    rel: &str,
    sink: &mut Sink,
) -> Result<Value, JsonError> {
    let Some(obj) = v.as_object() else {
        return Err(err(path, "expected an object"));
    };
    let mut own = Map::new();
    let (rec, rel): (&mut Map<String, Value>, String) = if level.records {
        (&mut own, String::new())
    } else {
        (rec, rel.to_string())
    };
    let mut out = Map::new();
    for (k, val) in obj {
        if val.is_null() {
            continue;
        }
        let here = join(path, k);
        if let Some(F(_, ours, kind)) = level.fields.iter().find(|f| f.0 == k) {
            let converted = match kind {
                Plain => val.clone(),
                Nanos => match val.as_i64() {
                    Some(ns) => Value::from(ns / 1_000_000),
                    None => return Err(err(&here, "expected a number (nanoseconds)")),
                },
                Obj(inner) => from_level(val, inner, &here, rec, &join(&rel, k), sink)?,
                List(inner) => {
                    let Some(items) = val.as_array() else {
                        return Err(err(&here, "expected a list"));
                    };
                    let mut list = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        let at = format!("{here}[{i}]");
                        let rel_at = format!("{}[{i}]", join(&rel, k));
                        list.push(from_level(item, inner, &at, rec, &rel_at, sink)?);
                    }
                    Value::Array(list)
                }
                Config => match val.as_object() {
                    Some(c) => Value::Object(
                        c.iter()
                            .filter(|(_, v)| !v.is_null())
                            .map(|(ck, cv)| (ck.clone(), wrapped(cv)))
                            .collect(),
                    ),
                    None => return Err(err(&here, "expected an object")),
                },
            };
            out.insert(ours.to_string(), converted);
        } else if level.unimplemented.contains(&k.as_str()) {
            if says_something(val) {
                rec.insert(join(&rel, k), wrapped(val));
                sink.warnings
                    .push(format!("yurt does not implement {here} yet: ignored"));
            }
        } else if !level.ignored.contains(&k.as_str()) {
            return Err(err(&here, "unknown field"));
        }
    }
    if level.records && !own.is_empty() {
        out.insert("unimplemented".into(), Value::Object(own));
    }
    Ok(Value::Object(out))
}

/// What serde says of a wrong value, as a user reads it.
fn expected(why: &str) -> String {
    let want = why.rsplit("expected ").next().unwrap_or(why);
    let plain_want = if want.starts_with('u') || want.starts_with('i') || want.starts_with('f') {
        "a number".to_string()
    } else if want == "a boolean" {
        "true or false".to_string()
    } else if want.starts_with("a sequence") {
        "a list".to_string()
    } else {
        want.to_string()
    };
    format!("expected {plain_want}")
}

/// A path in our names (`task_groups[0].count`) in Nomad's (`TaskGroups[0].Count`).
fn nomad_path(ours: &str) -> String {
    let mut level = Some(&JOB);
    let mut out = Vec::new();
    for seg in ours.split('.').filter(|s| !s.is_empty()) {
        let (name, index) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        let field = level.and_then(|l| l.fields.iter().find(|f| f.1 == name));
        out.push(format!(
            "{}{index}",
            field.map_or_else(|| crate::nomad_json::pascal(name), |f| f.0.to_string())
        ));
        level = match field.map(|f| f.2) {
            Some(Obj(l)) | Some(List(l)) => Some(l),
            _ => None,
        };
    }
    out.join(".")
}

/// A job in Nomad's JSON as Yurt's job, and the warnings for what Yurt does not implement.
/// Not yet canonicalized or validated (the servers do both when it is registered).
pub fn from_nomad(v: &Value) -> Result<(Job, Vec<String>), JsonError> {
    let mut sink = Sink {
        warnings: Vec::new(),
    };
    let mut top = Map::new();
    let mut ours = from_level(v, &JOB, "", &mut top, "", &mut sink)?;
    // Job-level `Migrate` and `Reschedule` are each group's unless it has its own.
    let obj = v.as_object().expect("checked by from_level");
    for (nomad, field, level) in JOB_DEFAULTS {
        let Some(given) = obj.get(*nomad).filter(|g| !g.is_null()) else {
            continue;
        };
        let converted = from_level(given, level, nomad, &mut top, nomad, &mut sink)?;
        if let Some(groups) = ours.get_mut("task_groups").and_then(Value::as_array_mut) {
            for g in groups.iter_mut().filter_map(Value::as_object_mut) {
                g.entry(field.to_string())
                    .or_insert_with(|| converted.clone());
            }
        }
    }
    fill_defaults(&mut ours);
    let job: Job = serde_path_to_error::deserialize(&ours).map_err(|e| {
        let at = nomad_path(&e.path().to_string());
        err(&at, expected(&e.into_inner().to_string()))
    })?;
    Ok((job, sink.warnings))
}

/// Fields a block leaves out (or sends as `null` or `""`) take Nomad's defaults, as a job
/// file's partly written block does: `update` (a group's on top of the job's), `migrate`; the
/// `restart` and `reschedule` defaults depend on the job's type, so what is left out is marked
/// for [`crate::jobspec::canonicalize`]. A group without a count has one allocation.
fn fill_defaults(ours: &mut Value) {
    fn as_json<T: serde::Serialize>(v: &T) -> Map<String, Value> {
        match serde_json::to_value(v) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
    fn unset(v: Option<&Value>) -> bool {
        matches!(v, None | Some(Value::Null)) || v.and_then(Value::as_str) == Some("")
    }
    /// `given` on top of `base`.
    fn over(base: &Map<String, Value>, given: &Map<String, Value>) -> Value {
        let mut out = base.clone();
        for (k, v) in given {
            if !unset(Some(v)) {
                out.insert(k.clone(), v.clone());
            }
        }
        Value::Object(out)
    }
    let update_default = as_json(&crate::jobspec::default_update());
    let migrate_default = as_json(&crate::jobspec::default_migrate());
    let Some(job) = ours.as_object_mut() else {
        return;
    };
    let job_update = job
        .get("update")
        .and_then(Value::as_object)
        .map(|u| over(&update_default, u));
    if let Some(u) = &job_update {
        job.insert("update".into(), u.clone());
    }
    let Some(groups) = job.get_mut("task_groups").and_then(Value::as_array_mut) else {
        return;
    };
    for g in groups.iter_mut().filter_map(Value::as_object_mut) {
        g.entry("count").or_insert(Value::from(1));
        let base = job_update
            .as_ref()
            .and_then(Value::as_object)
            .unwrap_or(&update_default);
        match g.get("update").and_then(Value::as_object) {
            Some(u) => {
                let merged = over(base, u);
                g.insert("update".into(), merged);
            }
            None if job_update.is_some() => {
                g.insert("update".into(), Value::Object(base.clone()));
            }
            None => {}
        }
        if let Some(m) = g.get("migrate").and_then(Value::as_object) {
            let filled = over(&migrate_default, m);
            g.insert("migrate".into(), filled);
        }
        for (block, marked) in [
            ("restart", &["attempts", "interval_ms", "delay_ms"][..]),
            (
                "reschedule",
                &["attempts", "interval_ms", "delay_ms", "max_delay_ms"][..],
            ),
        ] {
            if let Some(b) = g.get_mut(block).and_then(Value::as_object_mut) {
                for key in marked {
                    if unset(b.get(*key)) {
                        let max = if *key == "attempts" {
                            Value::from(u32::MAX)
                        } else {
                            Value::from(u64::MAX)
                        };
                        b.insert(key.to_string(), max);
                    }
                }
            }
        }
    }
}

/// Sets `value` at `rel` (`Services[0].CanaryTags`) inside `obj`, making what is missing.
fn set_at(obj: &mut Map<String, Value>, rel: &str, value: Value) {
    let mut segs = rel.splitn(2, '.');
    let first = segs.next().unwrap_or_default();
    let rest = segs.next();
    let (name, index) = match first.find('[') {
        Some(i) => (
            &first[..i],
            first[i + 1..].trim_end_matches(']').parse::<usize>().ok(),
        ),
        None => (first, None),
    };
    let Some(rest) = rest else {
        obj.insert(name.to_string(), value);
        return;
    };
    let slot = obj.entry(name.to_string()).or_insert(Value::Null);
    let target = match index {
        Some(i) => slot.as_array_mut().and_then(|a| a.get_mut(i)),
        None => Some(slot),
    };
    if let Some(t) = target {
        if !t.is_object() {
            *t = Value::Object(Map::new());
        }
        if let Some(o) = t.as_object_mut() {
            set_at(o, rest, value);
        }
    }
}

/// One level from ours to Nomad's shape.
fn to_level(v: &Value, level: &Level) -> Value {
    let Some(obj) = v.as_object() else {
        return Value::Null;
    };
    let mut out = Map::new();
    for F(nomad, ours, kind) in level.fields {
        let Some(val) = obj.get(*ours) else {
            continue;
        };
        let converted = match kind {
            Plain => val.clone(),
            Nanos => val
                .as_i64()
                .map_or(Value::Null, |ms| Value::from(ms.saturating_mul(1_000_000))),
            Obj(inner) => to_level(val, inner),
            List(inner) => Value::Array(
                val.as_array()
                    .map(|a| a.iter().map(|i| to_level(i, inner)).collect())
                    .unwrap_or_default(),
            ),
            Config => Value::Object(
                val.as_object()
                    .map(|c| c.iter().map(|(k, v)| (k.clone(), plain(v))).collect())
                    .unwrap_or_default(),
            ),
        };
        out.insert(nomad.to_string(), converted);
    }
    if level.records {
        if let Some(kept) = obj.get("unimplemented").and_then(Value::as_object) {
            for (rel, val) in kept {
                set_at(&mut out, rel, plain(val));
            }
        }
    }
    Value::Object(out)
}

/// Yurt's job in Nomad's JSON: what [`from_nomad`] reads back as the same job.
pub fn to_nomad(job: &Job) -> Value {
    to_level(&serde_json::to_value(job).unwrap_or_default(), &JOB)
}

/// The warnings for what a job asks of Nomad's spec that Yurt does not implement (the fields
/// kept in its `unimplemented` maps), by their paths in Nomad's JSON.
pub fn warnings(job: &Job) -> Vec<String> {
    let mut out = Vec::new();
    let mut say = |path: String| out.push(format!("yurt does not implement {path} yet: ignored"));
    for k in job.unimplemented.keys() {
        say(k.clone());
    }
    for (gi, g) in job.task_groups.iter().enumerate() {
        for k in g.unimplemented.keys() {
            say(format!("TaskGroups[{gi}].{k}"));
        }
        for (ti, t) in g.tasks.iter().enumerate() {
            for k in t.unimplemented.keys() {
                say(format!("TaskGroups[{gi}].Tasks[{ti}].{k}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
