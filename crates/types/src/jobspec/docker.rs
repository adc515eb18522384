//! The `docker` driver's task `config`: which keys it takes, and what each must be.

use super::*;

/// The keys the docker driver takes (Nomad's, for the common cases).
pub(crate) const KEYS: &[&str] = &[
    "image",
    "command",
    "args",
    "entrypoint",
    "ports",
    "network_mode",
    "labels",
    "force_pull",
    "image_pull_timeout",
    "work_dir",
    "hostname",
    "volumes",
    "auth_soft_fail",
];

/// The network modes a docker task may ask for.
const NETWORK_MODES: &[&str] = &["bridge", "host", "none"];

fn is_string(v: &Value) -> bool {
    matches!(v.kind, Some(value::Kind::StringValue(_)))
}

/// A task `config` value that is a list of strings (`args`, `ports`, ...), as its strings.
pub fn string_list(v: &Value) -> Option<Vec<&str>> {
    match &v.kind {
        Some(value::Kind::ListValue(l)) => l
            .values
            .iter()
            .map(|v| match &v.kind {
                Some(value::Kind::StringValue(s)) => Some(s.as_str()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// A map of strings, as `labels = {...}` or a `labels {...}` block writes it.
fn is_string_map(v: &Value) -> bool {
    match &v.kind {
        Some(value::Kind::MapValue(m)) => m.fields.values().all(is_string),
        Some(value::Kind::ListValue(l)) => l.values.iter().all(is_string_map),
        _ => false,
    }
}

/// Checks a docker task's `config` (the keys are checked by the caller).
pub(crate) fn validate(t: &Task, tp: &str, ports: &HashMap<String, ()>) -> Result<(), Problem> {
    let fail = |key: &str, message: String| {
        Err(Problem {
            path: format!("{tp}.config.{key}"),
            message,
        })
    };
    match t.config.get("image") {
        Some(v) if matches!(&v.kind, Some(value::Kind::StringValue(s)) if !s.is_empty()) => {}
        Some(_) => return fail("image", "config.image must be a non-empty string".into()),
        None => {
            return Err(Problem {
                path: format!("{tp}.config"),
                message: format!(
                    "task {:?}: config.image is required by the docker driver",
                    t.name
                ),
            })
        }
    }
    for key in [
        "command",
        "network_mode",
        "work_dir",
        "hostname",
        "image_pull_timeout",
    ] {
        if t.config.get(key).is_some_and(|v| !is_string(v)) {
            return fail(key, format!("config.{key} must be a string"));
        }
    }
    for key in ["args", "entrypoint", "ports", "volumes"] {
        if t.config.get(key).is_some_and(|v| string_list(v).is_none()) {
            return fail(key, format!("config.{key} must be a list of strings"));
        }
    }
    for key in ["force_pull", "auth_soft_fail"] {
        if t.config
            .get(key)
            .is_some_and(|v| !matches!(v.kind, Some(value::Kind::BoolValue(_))))
        {
            return fail(key, format!("config.{key} must be true or false"));
        }
    }
    if t.config.get("labels").is_some_and(|v| !is_string_map(v)) {
        return fail("labels", "config.labels must be a map of strings".into());
    }
    if let Some(Some(value::Kind::StringValue(m))) = t.config.get("network_mode").map(|v| &v.kind) {
        if !NETWORK_MODES.contains(&m.as_str()) {
            return fail(
                "network_mode",
                format!(
                    "config.network_mode {m:?} is not one of {}",
                    NETWORK_MODES.join(", ")
                ),
            );
        }
    }
    if let Some(Some(value::Kind::StringValue(d))) =
        t.config.get("image_pull_timeout").map(|v| &v.kind)
    {
        if let Err(e) = duration::parse(d) {
            return fail(
                "image_pull_timeout",
                format!("config.image_pull_timeout: {e}"),
            );
        }
    }
    for label in t
        .config
        .get("ports")
        .and_then(string_list)
        .unwrap_or_default()
    {
        if !ports.contains_key(label) {
            return fail(
                "ports",
                format!("config.ports: {label:?} is not a port of the group's network block"),
            );
        }
    }
    for v in t
        .config
        .get("volumes")
        .and_then(string_list)
        .unwrap_or_default()
    {
        let parts: Vec<&str> = v.split(':').collect();
        let ok = matches!(parts.as_slice(), [s, d] | [s, d, "ro" | "rw"] if !s.is_empty() && d.starts_with('/'));
        if !ok {
            return fail(
                "volumes",
                format!("config.volumes: {v:?} is not \"source:/destination[:ro]\""),
            );
        }
        if parts[0].starts_with('/') {
            return fail(
                "volumes",
                format!(
                    "config.volumes: {v:?}: only paths inside the allocation directory can be \
                     mounted (relative to the task's directory)"
                ),
            );
        }
    }
    Ok(())
}
