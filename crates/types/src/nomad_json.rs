//! Nomad's JSON shape for the HTTP API (pure): the same `yurt.v1` messages, with Nomad's field
//! names (`ID`, `JobID`, `TaskGroups`, `MemoryMB`) and units (times and durations in
//! nanoseconds), so that scripts and API clients written for Nomad read and write them. Jobs
//! themselves go through [`crate::nomad_job`], whose names differ more.
//!
//! Field `submit_time_unix_ms` becomes `SubmitTime` (ns since the epoch), `min_healthy_time_ms`
//! becomes `MinHealthyTime` (ns); the set of such fields is read from the proto files, so the
//! two shapes cannot drift apart. Maps keyed by user data (a task's `config` and `env`, `meta`,
//! node attributes) keep their keys; maps of messages (`TaskStates`) convert their values.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::{Map, Value};

const PROTO: &[&str] = &[
    include_str!("../../../proto/yurt/v1/types.proto"),
    include_str!("../../../proto/yurt/v1/api.proto"),
];

/// Words written in capitals by Nomad.
const ACRONYMS: &[&str] = &[
    "id", "cpu", "mb", "ttl", "tg", "dc", "rpc", "http", "ip", "url", "rss",
];

/// Fields whose map keys and values are the user's, left as they are.
const RAW: &[&str] = &[
    "env",
    "meta",
    "attributes",
    "details",
    "queued_allocations",
    "constraint_filtered",
    "dimension_exhausted",
    "updates",
    "items",
];

/// Fields that are maps of messages: keys kept, values converted.
const MESSAGE_MAPS: &[&str] = &[
    "task_states",
    "failed_tg_allocs",
    "desired_tg_updates",
    "drivers",
];

/// Fields of the proto files that end in `_unix_ms` (times) and `_ms` (durations), without it.
fn timed() -> &'static (BTreeSet<String>, BTreeSet<String>) {
    static FIELDS: OnceLock<(BTreeSet<String>, BTreeSet<String>)> = OnceLock::new();
    FIELDS.get_or_init(|| {
        let mut times = BTreeSet::new();
        let mut durations = BTreeSet::new();
        for line in PROTO.iter().flat_map(|p| p.lines()) {
            let Some(name) = line
                .split_whitespace()
                .nth(1)
                .filter(|_| line.contains(" = "))
            else {
                continue;
            };
            if let Some(base) = name.strip_suffix("_unix_ms") {
                times.insert(base.to_string());
            } else if let Some(base) = name.strip_suffix("_ms") {
                durations.insert(base.to_string());
            }
        }
        (times, durations)
    })
}

/// Names Nomad spells against its own acronym rule (`CPU` in `Resources`, `Cpu` here).
const SPELLED: &[(&str, &str)] = &[("cpu_stats", "CpuStats")];

/// `job_id` → `JobID`.
pub fn pascal(snake: &str) -> String {
    if let Some((_, name)) = SPELLED.iter().find(|(s, _)| *s == snake) {
        return name.to_string();
    }
    snake
        .split('_')
        .map(|w| {
            if ACRONYMS.contains(&w) {
                w.to_uppercase()
            } else {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default()
            }
        })
        .collect()
}

/// `JobID` → `job_id`, `MemoryMB` → `memory_mb`, `FailedTGAllocs` → `failed_tg_allocs`.
pub fn snake(pascal: &str) -> String {
    let chars: Vec<char> = pascal.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let upper = c.is_uppercase();
        let prev_lower = i > 0 && chars[i - 1].is_lowercase();
        let prev_upper = i > 0 && chars[i - 1].is_uppercase();
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
        if upper && i > 0 && (prev_lower || (prev_upper && next_lower)) {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// A task's `config` values (`yurt.v1.Value`, `{"kind": ...}`) as plain JSON.
pub(crate) fn plain(v: &Value) -> Value {
    let kind = v.get("kind").unwrap_or(v);
    if let Some(values) = kind.get("values").and_then(Value::as_array) {
        return Value::Array(values.iter().map(plain).collect());
    }
    if let Some(fields) = kind.get("fields").and_then(Value::as_object) {
        return Value::Object(fields.iter().map(|(k, v)| (k.clone(), plain(v))).collect());
    }
    kind.clone()
}

/// Plain JSON as `yurt.v1.Value`.
pub(crate) fn wrapped(v: &Value) -> Value {
    let kind = match v {
        Value::Array(a) => {
            serde_json::json!({ "values": a.iter().map(wrapped).collect::<Vec<_>>() })
        }
        Value::Object(m) => serde_json::json!({
            "fields": m.iter().map(|(k, v)| (k.clone(), wrapped(v))).collect::<Map<_, _>>()
        }),
        other => other.clone(),
    };
    serde_json::json!({ "kind": kind })
}

const NS_PER_MS: i64 = 1_000_000;

/// Milliseconds (ours) to nanoseconds (Nomad's); anything but an integer is left alone.
fn to_ns(v: &Value) -> Value {
    v.as_i64()
        .map_or_else(|| v.clone(), |ms| Value::from(ms.saturating_mul(NS_PER_MS)))
}

/// Nanoseconds to milliseconds.
fn to_ms(v: &Value) -> Value {
    v.as_i64()
        .map_or_else(|| v.clone(), |ns| Value::from(ns_to_ms(ns)))
}

/// Nanoseconds (Nomad's unit) as the milliseconds Yurt keeps, rounded away from zero: a
/// duration below a millisecond stays one (0 means "none" in many fields), and a negative one
/// stays negative (a drain's `Deadline` of -1 ns, what `-force` sends, is force).
pub fn ns_to_ms(ns: i64) -> i64 {
    let ms = ns / NS_PER_MS;
    match ns % NS_PER_MS {
        0 => ms,
        _ if ns > 0 => ms + 1,
        _ => ms - 1,
    }
}

/// Whether a value says anything (`null`, `false`, `0`, `""`, and lists and objects of such
/// do not: Nomad's clients send every field).
pub(crate) fn says_something(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(says_something),
        Value::Object(o) => o.values().any(says_something),
    }
}

/// The fields of `given` (a job as JSON) that the message it decoded into has no place for,
/// and that carry a value (`null`, `[]`, `{}`, `""`, `false` and `0` say nothing): what a decode
/// would silently drop. `decoded` is that message serialized again; paths use the names `name`
/// gives each key.
pub fn dropped_fields_named(
    given: &Value,
    decoded: &Value,
    name: fn(&str) -> String,
) -> Vec<String> {
    fn walk(
        given: &Value,
        decoded: &Value,
        path: &str,
        name: fn(&str) -> String,
        out: &mut Vec<String>,
    ) {
        match (given, decoded) {
            (Value::Object(g), Value::Object(d)) => {
                for (k, v) in g {
                    let p = if path.is_empty() {
                        name(k)
                    } else {
                        format!("{path}.{}", name(k))
                    };
                    match d.get(k) {
                        Some(dv) => walk(v, dv, &p, name, out),
                        None if says_something(v) => out.push(p),
                        None => {}
                    }
                }
            }
            (Value::Array(g), Value::Array(d)) => {
                for (i, (gv, dv)) in g.iter().zip(d).enumerate() {
                    walk(gv, dv, &format!("{path}[{i}]"), name, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(given, decoded, "", name, &mut out);
    out
}

/// Our JSON (serde of the `yurt.v1` messages) in Nomad's shape.
pub fn to_nomad(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let (_, durations) = timed();
            let mut out = Map::new();
            for (k, v) in m {
                let (key, value) = if let Some(base) = k.strip_suffix("_unix_ms") {
                    (pascal(base), to_ns(v))
                } else if let Some(base) = k.strip_suffix("_ms").filter(|b| durations.contains(*b))
                {
                    (pascal(base), to_ns(v))
                } else if k == "config" {
                    let config = v.as_object().map(|c| {
                        c.iter()
                            .map(|(ck, cv)| (ck.clone(), plain(cv)))
                            .collect::<Map<_, _>>()
                    });
                    (pascal(k), config.map_or(Value::Null, Value::Object))
                } else if RAW.contains(&k.as_str()) {
                    (pascal(k), v.clone())
                } else if MESSAGE_MAPS.contains(&k.as_str())
                    || (matches!(k.as_str(), "task_groups" | "tasks") && v.is_object())
                {
                    let inner = match v {
                        Value::Object(inner) => Value::Object(
                            inner
                                .iter()
                                .map(|(ik, iv)| (ik.clone(), to_nomad(iv)))
                                .collect(),
                        ),
                        other => other.clone(),
                    };
                    (pascal(k), inner)
                } else {
                    (pascal(k), to_nomad(v))
                };
                out.insert(key, value);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(to_nomad).collect()),
        other => other.clone(),
    }
}

/// Nomad's shape back to ours (what the `yurt.v1` messages deserialize from).
pub fn from_nomad(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let (times, durations) = timed();
            let mut out = Map::new();
            for (k, v) in m {
                let base = snake(k);
                let (key, value) = if times.contains(&base) {
                    (format!("{base}_unix_ms"), to_ms(v))
                } else if durations.contains(&base) {
                    (format!("{base}_ms"), to_ms(v))
                } else if base == "config" {
                    let config = v.as_object().map(|c| {
                        c.iter()
                            .map(|(ck, cv)| (ck.clone(), wrapped(cv)))
                            .collect::<Map<_, _>>()
                    });
                    (base, config.map_or(Value::Null, Value::Object))
                } else if RAW.contains(&base.as_str()) {
                    (base, v.clone())
                } else if MESSAGE_MAPS.contains(&base.as_str())
                    || (matches!(base.as_str(), "task_groups" | "tasks") && v.is_object())
                {
                    let inner = match v {
                        Value::Object(inner) => Value::Object(
                            inner
                                .iter()
                                .map(|(ik, iv)| (ik.clone(), from_nomad(iv)))
                                .collect(),
                        ),
                        other => other.clone(),
                    };
                    (base, inner)
                } else {
                    let converted = from_nomad(v);
                    (base, converted)
                };
                // Nomad clients send explicit nulls for what they leave out.
                if !value.is_null() {
                    out.insert(key, value);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(from_nomad).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nanoseconds_round_away_from_zero_so_force_and_sub_millisecond_durations_survive() {
        use super::ns_to_ms;
        // A drain's -1 ns is force, never "no deadline" (0).
        assert_eq!(ns_to_ms(-1), -1);
        assert_eq!(ns_to_ms(-5_000_000_000), -5_000);
        assert_eq!(ns_to_ms(0), 0);
        assert_eq!(ns_to_ms(1), 1);
        assert_eq!(ns_to_ms(1_500_000), 2);
        assert_eq!(ns_to_ms(3_600_000_000_000), 3_600_000);
        assert_eq!(ns_to_ms(i64::MIN), i64::MIN / 1_000_000 - 1);
        // Through the conversion of a whole object too.
        let v = super::from_nomad(&serde_json::json!({"MinHealthyTime": 1}));
        assert_eq!(v["min_healthy_time_ms"], 1, "{v}");
    }

    #[test]
    fn names_follow_nomad() {
        for (ours, theirs) in [
            ("id", "ID"),
            ("job_id", "JobID"),
            ("memory_mb", "MemoryMB"),
            ("failed_tg_allocs", "FailedTGAllocs"),
            ("task_groups", "TaskGroups"),
            ("datacenters", "Datacenters"),
            ("node_id", "NodeID"),
            ("rpc_addr", "RPCAddr"),
            ("cpu", "CPU"),
            ("cpu_stats", "CpuStats"),
        ] {
            assert_eq!(pascal(ours), theirs);
            assert_eq!(snake(theirs), ours);
        }
    }

    #[test]
    fn a_job_round_trips_with_nanoseconds_and_user_keys_kept() {
        let job = crate::jobspec::parse_hcl(
            "t.hcl",
            "job \"web\" {\n  group \"app\" {\n    count = 2\n    task \"t\" {\n      driver = \"exec\"\n      config {\n        command = \"/bin/sh\"\n        pid_mode = \"host\"\n      }\n      env {\n        MY_VAR = \"x\"\n      }\n    }\n  }\n}\n",
        )
        .unwrap();
        let ours = serde_json::to_value(&job).unwrap();
        let theirs = to_nomad(&ours);
        assert_eq!(theirs["ID"], "web");
        let g = &theirs["TaskGroups"][0];
        assert_eq!(g["Count"], 2);
        assert_eq!(g["Update"]["MinHealthyTime"], json!(10_000_000_000i64));
        let t = &g["Tasks"][0];
        assert_eq!(
            t["Config"]["pid_mode"], "host",
            "config keys are the driver's"
        );
        assert_eq!(t["Env"]["MY_VAR"], "x");
        assert_eq!(t["Resources"]["MemoryMB"], 300);
        let back = from_nomad(&theirs);
        let again: crate::v1::Job = serde_json::from_value(back).unwrap();
        assert_eq!(again, job);
    }

    #[test]
    fn message_maps_convert_their_values_and_nulls_are_dropped() {
        let theirs = json!({
            "ID": "a1",
            "TaskStates": {"web": {"State": "running", "StartedAt": 2_000_000}},
            "NextAllocation": null
        });
        let ours = from_nomad(&theirs);
        assert_eq!(
            ours,
            json!({"id": "a1", "task_states": {"web": {"state": "running", "started_at_unix_ms": 2}}})
        );
        assert_eq!(
            to_nomad(&ours),
            json!({"ID": "a1", "TaskStates": {"web": {"State": "running", "StartedAt": 2_000_000}}})
        );
    }
}
