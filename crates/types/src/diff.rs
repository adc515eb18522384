//! Differences between two versions of a job, in the shape of Nomad's job diff: the job's own
//! fields, then task groups and tasks matched by name, each field as `old => new`.
//!
//! The diff walks the JSON form of the proto messages, so a field added to `proto/` is diffed
//! without touching this file. Fields and objects are named as Nomad's diff names them
//! (`Count`, `Env[KEY]`, `Constraint { LTarget ... }`, `RestartPolicy`); the keys of a driver's
//! `config` stay the user's. Durations (`*_ms`) are shown as `10s`, driver config values as
//! plain values.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json};

use crate::v1::{value, FieldDiff, Job, JobDiff, ObjectDiff, Task, TaskDiff, TaskGroupDiff, Value};

pub const NONE: &str = "None";
pub const ADDED: &str = "Added";
pub const DELETED: &str = "Deleted";
pub const EDITED: &str = "Edited";

/// Job fields that are bookkeeping, not spec: never diffed (as in Nomad).
const JOB_SKIP: &[&str] = &[
    "id",
    "status",
    "version",
    "stable",
    "create_index",
    "modify_index",
    "job_modify_index",
    "submit_time",
    "update",
    "task_groups",
];
/// Fields holding string maps, flattened as `Env[KEY]`.
const STRING_MAPS: &[&str] = &["env", "meta"];

/// Whose names a map's keys are: the proto's (shown as Nomad names them, `parent` being the
/// field that holds the map) or the user's (a driver's `config`), shown as they are.
#[derive(Clone, Copy)]
enum Keys<'p> {
    Ours { parent: &'p str },
    User,
}

/// The name Nomad's diff gives one of our fields (after `_ms` was dropped), inside `parent`.
fn nomad_name(key: &str, parent: &str) -> String {
    let renamed = match (parent, key) {
        ("constraints", "attribute") => "LTarget",
        ("constraints", "value") => "RTarget",
        ("constraints", "operator") => "Operand",
        // Lists of objects: each element is one object of the singular name.
        (_, "constraints") => "Constraint",
        (_, "services") => "Service",
        (_, "checks") => "Check",
        (_, "networks") => "Network",
        (_, "reserved_ports") => "Static Port",
        (_, "dynamic_ports") => "Dynamic Port",
        (_, "restart") => "RestartPolicy",
        (_, "reschedule") => "ReschedulePolicy",
        (_, "logs") => "LogConfig",
        (_, "max_file_size_mb") => "MaxFileSizeMB",
        _ => return crate::nomad_json::pascal(key),
    };
    renamed.to_string()
}

/// Diffs two versions of a job. `old` is `None` for a job that does not exist yet.
pub fn job_diff(old: Option<&Job>, new: &Job) -> JobDiff {
    let o = old.map(job_json);
    let n = job_json(new);
    let (fields, objects) = diff_map(o.as_ref(), Some(&n), JOB_SKIP, Keys::Ours { parent: "" });
    let mut task_groups = Vec::new();
    let names: BTreeSet<&str> = old
        .iter()
        .flat_map(|j| j.task_groups.iter())
        .chain(&new.task_groups)
        .map(|g| g.name.as_str())
        .collect();
    for name in names {
        let og = old.and_then(|j| j.task_groups.iter().find(|g| g.name == name));
        let ng = new.task_groups.iter().find(|g| g.name == name);
        task_groups.push(group_diff(name, og, ng));
    }
    let r#type = if old.is_none() {
        ADDED
    } else if fields.iter().any(|f| f.r#type != NONE)
        || objects.iter().any(|o| o.r#type != NONE)
        || task_groups.iter().any(|g| g.r#type != NONE)
    {
        EDITED
    } else {
        NONE
    };
    JobDiff {
        r#type: r#type.into(),
        id: new.id.clone(),
        fields,
        objects,
        task_groups,
    }
}

fn change_type(old: bool, new: bool, changed: bool) -> &'static str {
    match (old, new) {
        (false, true) => ADDED,
        (true, false) => DELETED,
        _ if changed => EDITED,
        _ => NONE,
    }
}

fn group_diff(
    name: &str,
    old: Option<&crate::v1::TaskGroup>,
    new: Option<&crate::v1::TaskGroup>,
) -> TaskGroupDiff {
    let o = old.map(to_json);
    let n = new.map(to_json);
    let ours = Keys::Ours { parent: "" };
    let (mut fields, objects) = diff_map(o.as_ref(), n.as_ref(), &["name", "tasks"], ours);
    for f in &mut fields {
        if f.name == "Count" && f.r#type == EDITED {
            let (a, b) = (f.old.parse::<u64>(), f.new.parse::<u64>());
            if let (Ok(a), Ok(b)) = (a, b) {
                f.annotations.push(
                    if b > a {
                        "forces create"
                    } else {
                        "forces destroy"
                    }
                    .into(),
                );
            }
        }
    }
    let names: BTreeSet<&str> = old
        .iter()
        .flat_map(|g| g.tasks.iter())
        .chain(new.iter().flat_map(|g| g.tasks.iter()))
        .map(|t| t.name.as_str())
        .collect();
    let group_state = change_type(old.is_some(), new.is_some(), false);
    let tasks: Vec<TaskDiff> = names
        .into_iter()
        .map(|t| {
            let ot = old.and_then(|g| g.tasks.iter().find(|x| x.name == t));
            let nt = new.and_then(|g| g.tasks.iter().find(|x| x.name == t));
            task_diff(t, ot, nt, group_state)
        })
        .collect();
    let changed = fields.iter().any(|f| f.r#type != NONE)
        || objects.iter().any(|o| o.r#type != NONE)
        || tasks.iter().any(|t| t.r#type != NONE);
    TaskGroupDiff {
        r#type: change_type(old.is_some(), new.is_some(), changed).into(),
        name: name.into(),
        fields,
        objects,
        tasks,
        updates: Default::default(),
    }
}

fn task_diff(name: &str, old: Option<&Task>, new: Option<&Task>, group_state: &str) -> TaskDiff {
    let o = old.map(task_json);
    let n = new.map(task_json);
    let (fields, objects) = diff_map(o.as_ref(), n.as_ref(), &["name"], Keys::Ours { parent: "" });
    let r#type = change_type(
        old.is_some(),
        new.is_some(),
        fields.iter().any(|f| f.r#type != NONE) || objects.iter().any(|o| o.r#type != NONE),
    );
    let annotation = match (group_state, r#type) {
        (ADDED, _) | (_, ADDED) => Some("forces create"),
        (DELETED, _) | (_, DELETED) => Some("forces destroy"),
        (_, EDITED) => {
            // As the scheduler decides (`tasks_updated`): how a task is stopped, its services
            // and its constraints change in place.
            let destructive = fields
                .iter()
                .any(|f| f.r#type != NONE && !["KillTimeout", "KillSignal"].contains(&&*f.name))
                || objects.iter().any(|o| {
                    o.r#type != NONE && !["Service", "Constraint"].contains(&o.name.as_str())
                });
            Some(if destructive {
                "forces create/destroy update"
            } else {
                "forces in-place update"
            })
        }
        _ => None,
    };
    TaskDiff {
        r#type: r#type.into(),
        name: name.into(),
        fields,
        objects,
        annotations: annotation.into_iter().map(String::from).collect(),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Map<String, Json> {
    match serde_json::to_value(v) {
        Ok(Json::Object(m)) => humanize(m),
        _ => Map::new(),
    }
}

fn job_json(job: &Job) -> Map<String, Json> {
    to_json(job)
}

fn task_json(task: &Task) -> Map<String, Json> {
    let mut m = to_json(task);
    let config: Map<String, Json> = task
        .config
        .iter()
        .map(|(k, v)| (k.clone(), value_to_json(v)))
        .collect();
    m.insert("config".into(), Json::Object(config));
    m
}

/// Shows `*_ms` fields as durations under their job-file names (`min_healthy_time: "10s"`),
/// and leaves out an empty `unimplemented` (it holds what the job file had that Yurt keeps
/// but does not run; nothing there is no change to show).
fn humanize(m: Map<String, Json>) -> Map<String, Json> {
    m.into_iter()
        .filter(|(k, v)| !(k == "unimplemented" && v.as_object().is_some_and(Map::is_empty)))
        .map(|(k, v)| {
            let v = match v {
                Json::Object(inner) => Json::Object(humanize(inner)),
                Json::Array(items) => Json::Array(
                    items
                        .into_iter()
                        .map(|i| match i {
                            Json::Object(o) => Json::Object(humanize(o)),
                            other => other,
                        })
                        .collect(),
                ),
                other => other,
            };
            match (k.strip_suffix("_unix_ms"), k.strip_suffix("_ms")) {
                (Some(base), _) => (base.to_string(), v),
                (None, Some(base)) => {
                    let shown = v
                        .as_u64()
                        .map(|ms| Json::String(crate::duration::format_ms(ms)))
                        .unwrap_or(v);
                    (base.to_string(), shown)
                }
                _ => (k, v),
            }
        })
        .collect()
}

/// A driver config value as plain JSON (`"/bin/sh"`, `["-c", "..."]`).
pub fn value_to_json(v: &Value) -> Json {
    match &v.kind {
        None => Json::Null,
        Some(value::Kind::StringValue(s)) => Json::String(s.clone()),
        Some(value::Kind::IntValue(i)) => Json::from(*i),
        Some(value::Kind::FloatValue(f)) => Json::from(*f),
        Some(value::Kind::BoolValue(b)) => Json::Bool(*b),
        Some(value::Kind::ListValue(l)) => {
            Json::Array(l.values.iter().map(value_to_json).collect())
        }
        Some(value::Kind::MapValue(m)) => Json::Object(
            m.fields
                .iter()
                .map(|(k, v)| (k.clone(), value_to_json(v)))
                .collect(),
        ),
    }
}

fn scalar(v: &Json) -> Option<String> {
    match v {
        Json::Null => Some(String::new()),
        Json::String(s) => Some(s.clone()),
        Json::Bool(b) => Some(b.to_string()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn is_empty(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.is_empty(),
        Json::Object(o) => o.is_empty(),
        Json::Bool(b) => !b,
        Json::Number(n) => n.as_f64() == Some(0.0),
    }
}

fn field(name: String, old: Option<String>, new: Option<String>) -> FieldDiff {
    let r#type = match (&old, &new) {
        (None, Some(_)) => ADDED,
        (Some(_), None) => DELETED,
        (Some(a), Some(b)) if a != b => EDITED,
        _ => NONE,
    };
    FieldDiff {
        r#type: r#type.into(),
        name,
        old: old.unwrap_or_default(),
        new: new.unwrap_or_default(),
        annotations: vec![],
    }
}

/// Flattens a value into `name`, `name[0]`, `name[key]`... fields (for scalars, lists of scalars
/// and string maps). Returns `None` for values that are objects.
fn flatten(name: &str, v: &Json, out: &mut BTreeMap<String, String>) -> bool {
    if let Some(s) = scalar(v) {
        if !is_empty(v) {
            out.insert(name.to_string(), s);
        }
        return true;
    }
    match v {
        Json::Array(items) if items.iter().all(|i| scalar(i).is_some()) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{name}[{i}]"), item, out);
            }
            true
        }
        _ => false,
    }
}

/// Diffs two objects' fields. Scalars, scalar lists and string maps become fields; nested
/// objects become [`ObjectDiff`]s; lists of objects are diffed as sets.
fn diff_map(
    old: Option<&Map<String, Json>>,
    new: Option<&Map<String, Json>>,
    skip: &[&str],
    keys_are: Keys,
) -> (Vec<FieldDiff>, Vec<ObjectDiff>) {
    let empty = Map::new();
    let (o, n) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    let (mut fo, mut fnew) = (BTreeMap::new(), BTreeMap::new());
    let mut objects = Vec::new();
    for key in keys {
        if skip.contains(&key.as_str()) {
            continue;
        }
        let (ov, nv) = (
            o.get(key).unwrap_or(&Json::Null),
            n.get(key).unwrap_or(&Json::Null),
        );
        let (name, inner) = match keys_are {
            Keys::User => (key.clone(), Keys::User),
            Keys::Ours { parent } => {
                let inner = if key == "config" {
                    Keys::User
                } else {
                    Keys::Ours { parent: key }
                };
                (nomad_name(key, parent), inner)
            }
        };
        if matches!(keys_are, Keys::Ours { .. }) && STRING_MAPS.contains(&key.as_str()) {
            for (side, out) in [(ov, &mut fo), (nv, &mut fnew)] {
                if let Json::Object(m) = side {
                    for (k, v) in m {
                        out.insert(format!("{name}[{k}]"), scalar(v).unwrap_or_default());
                    }
                }
            }
            continue;
        }
        let flat_o = flatten(&name, ov, &mut fo);
        let flat_n = flatten(&name, nv, &mut fnew);
        if flat_o && flat_n {
            continue;
        }
        match (ov, nv) {
            (Json::Array(a), Json::Array(b)) => objects.extend(set_diff(&name, a, b, inner)),
            (Json::Array(a), Json::Null) => objects.extend(set_diff(&name, a, &[], inner)),
            (Json::Null, Json::Array(b)) => objects.extend(set_diff(&name, &[], b, inner)),
            _ => {
                let (oo, no) = (ov.as_object(), nv.as_object());
                if oo.is_none() && no.is_none() {
                    continue;
                }
                objects.push(object_diff(&name, oo, no, inner));
            }
        }
    }
    let names: BTreeSet<&String> = fo.keys().chain(fnew.keys()).collect();
    let fields = names
        .into_iter()
        .map(|k| field(k.clone(), fo.get(k).cloned(), fnew.get(k).cloned()))
        .collect();
    (fields, objects)
}

fn object_diff(
    name: &str,
    old: Option<&Map<String, Json>>,
    new: Option<&Map<String, Json>>,
    keys_are: Keys,
) -> ObjectDiff {
    let (fields, objects) = diff_map(old, new, &[], keys_are);
    let changed =
        fields.iter().any(|f| f.r#type != NONE) || objects.iter().any(|o| o.r#type != NONE);
    ObjectDiff {
        r#type: change_type(old.is_some(), new.is_some(), changed).into(),
        name: name.into(),
        fields,
        objects,
    }
}

/// Lists of objects (constraints, services, networks) are sets: an element is unchanged,
/// added or deleted as a whole.
fn set_diff(name: &str, old: &[Json], new: &[Json], keys_are: Keys) -> Vec<ObjectDiff> {
    let mut out = Vec::new();
    for o in old {
        if !new.contains(o) {
            out.push(object_diff(name, o.as_object(), None, keys_are));
        }
    }
    for n in new {
        if !old.contains(n) {
            out.push(object_diff(name, None, n.as_object(), keys_are));
        }
    }
    out
}

/// Renders a diff as Nomad's `job plan` / `job history -p` do. `updates` annotate each group
/// with the scheduler's counts (`create`, `destroy`, `ignore`, ...).
pub fn render(diff: &JobDiff, verbose: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!("{}Job: {:?}\n", lead(&diff.r#type), diff.id));
    if diff.r#type == EDITED || verbose {
        render_fields(&mut out, "", &diff.fields, &diff.objects, verbose);
    }
    for g in &diff.task_groups {
        if g.r#type == NONE && !verbose && g.updates.is_empty() {
            continue;
        }
        // In name order, as Nomad prints them: `(2 create/destroy update, 4 ignore)`.
        let sorted: std::collections::BTreeMap<&String, &u64> = g.updates.iter().collect();
        let updates: Vec<String> = sorted
            .into_iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        let note = if updates.is_empty() {
            String::new()
        } else {
            format!(" ({})", updates.join(", "))
        };
        out.push_str(&format!(
            "{}Task Group: {:?}{note}\n",
            lead(&g.r#type),
            g.name
        ));
        if g.r#type == EDITED || verbose {
            render_fields(&mut out, "  ", &g.fields, &g.objects, verbose);
        }
        for t in &g.tasks {
            if t.r#type == NONE && !verbose {
                continue;
            }
            let note = if t.annotations.is_empty() {
                String::new()
            } else {
                format!(" ({})", t.annotations.join(", "))
            };
            out.push_str(&format!("  {}Task: {:?}{note}\n", lead(&t.r#type), t.name));
            if t.r#type == EDITED || verbose {
                render_fields(&mut out, "    ", &t.fields, &t.objects, verbose);
            }
        }
    }
    out
}

/// The marker and its space, or nothing for an unchanged item.
fn lead(t: &str) -> String {
    match marker(t) {
        "" => String::new(),
        m => format!("{m} "),
    }
}

fn marker(t: &str) -> &'static str {
    match t {
        ADDED => "+",
        DELETED => "-",
        EDITED => "+/-",
        _ => "",
    }
}

fn render_fields(
    out: &mut String,
    indent: &str,
    fields: &[FieldDiff],
    objects: &[ObjectDiff],
    all: bool,
) {
    let shown: Vec<&FieldDiff> = fields.iter().filter(|f| all || f.r#type != NONE).collect();
    let width = shown.iter().map(|f| f.name.len()).max().unwrap_or(0);
    for f in shown {
        let value = match f.r#type.as_str() {
            EDITED => format!("{:?} => {:?}", f.old, f.new),
            DELETED => format!("{:?}", f.old),
            _ => format!("{:?}", f.new),
        };
        let note = if f.annotations.is_empty() {
            String::new()
        } else {
            format!(" ({})", f.annotations.join(", "))
        };
        let m = marker(&f.r#type);
        let pad = if m.is_empty() { "   " } else { m };
        out.push_str(&format!(
            "{indent}{pad} {:<width$} {value}{note}\n",
            format!("{}:", f.name),
            width = width + 1
        ));
    }
    for o in objects.iter().filter(|o| all || o.r#type != NONE) {
        out.push_str(&format!("{indent}{}{} {{\n", lead(&o.r#type), o.name));
        // Inside a changed object every field is shown, for context.
        render_fields(out, &format!("{indent}  "), &o.fields, &o.objects, true);
        out.push_str(&format!("{indent}    }}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobspec::parse_hcl;

    fn job(env: &str, count: u32, memory: u32) -> Job {
        parse_hcl(
            "t.hcl",
            &format!(
                r#"job "web" {{
  group "app" {{
    count = {count}
    task "server" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sleep"
        args    = ["1000"]
      }}
      env {{
        GREETING = "{env}"
      }}
      resources {{
        memory = {memory}
      }}
    }}
  }}
}}"#
            ),
        )
        .unwrap()
    }

    #[test]
    fn identical_jobs_have_no_diff() {
        let a = job("hello", 2, 64);
        let d = job_diff(Some(&a), &a);
        assert_eq!(d.r#type, NONE);
        assert!(d.task_groups.iter().all(|g| g.r#type == NONE));
    }

    #[test]
    fn env_change_is_destructive_and_rendered() {
        let d = job_diff(Some(&job("hello", 2, 64)), &job("hi", 2, 64));
        assert_eq!(d.r#type, EDITED);
        let t = &d.task_groups[0].tasks[0];
        assert_eq!(t.annotations, vec!["forces create/destroy update"]);
        let f = t.fields.iter().find(|f| f.name == "Env[GREETING]").unwrap();
        assert_eq!(
            (f.old.as_str(), f.new.as_str(), f.r#type.as_str()),
            ("hello", "hi", EDITED)
        );
        let text = render(&d, false);
        assert!(text.contains("+/- Job: \"web\""), "{text}");
        assert!(text.contains("+/- Task Group: \"app\""), "{text}");
        assert!(
            text.contains("+/- Task: \"server\" (forces create/destroy update)"),
            "{text}"
        );
        assert!(
            text.contains("+/- Env[GREETING]: \"hello\" => \"hi\""),
            "{text}"
        );
    }

    #[test]
    fn count_change_is_annotated_and_tasks_untouched() {
        let d = job_diff(Some(&job("a", 2, 64)), &job("a", 5, 64));
        let g = &d.task_groups[0];
        let f = g.fields.iter().find(|f| f.name == "Count").unwrap();
        assert_eq!(f.annotations, vec!["forces create"]);
        assert!(g.tasks.iter().all(|t| t.r#type == NONE));
        let d = job_diff(Some(&job("a", 5, 64)), &job("a", 2, 64));
        let f = d.task_groups[0]
            .fields
            .iter()
            .find(|f| f.name == "Count")
            .unwrap();
        assert_eq!(f.annotations, vec!["forces destroy"]);
    }

    #[test]
    fn resources_change_shows_nested_object() {
        let d = job_diff(Some(&job("a", 1, 64)), &job("a", 1, 128));
        let t = &d.task_groups[0].tasks[0];
        let r = t.objects.iter().find(|o| o.name == "Resources").unwrap();
        assert_eq!(r.r#type, EDITED);
        let text = render(&d, false);
        assert!(text.contains("+/- MemoryMB: \"64\" => \"128\""), "{text}");
        assert!(
            text.contains("CPU:"),
            "context fields shown inside a changed object: {text}"
        );
    }

    #[test]
    fn new_job_is_added() {
        let d = job_diff(None, &job("a", 1, 64));
        assert_eq!(d.r#type, ADDED);
        assert_eq!(d.task_groups[0].r#type, ADDED);
        assert_eq!(d.task_groups[0].tasks[0].annotations, vec!["forces create"]);
    }

    #[test]
    fn config_args_are_flattened() {
        let a = job("a", 1, 64);
        let mut b = a.clone();
        b.task_groups[0].tasks[0].config.insert(
            "args".into(),
            Value {
                kind: Some(value::Kind::ListValue(crate::v1::ValueList {
                    values: vec![Value {
                        kind: Some(value::Kind::StringValue("2000".into())),
                    }],
                })),
            },
        );
        let d = job_diff(Some(&a), &b);
        let cfg = d.task_groups[0].tasks[0]
            .objects
            .iter()
            .find(|o| o.name == "Config")
            .unwrap();
        let f = cfg.fields.iter().find(|f| f.name == "args[0]").unwrap();
        assert_eq!((f.old.as_str(), f.new.as_str()), ("1000", "2000"));
    }

    #[test]
    fn constraints_and_policies_have_nomad_s_names() {
        let a = job("a", 1, 64);
        let mut b = a.clone();
        b.task_groups[0].constraints.push(crate::v1::Constraint {
            attribute: "${attr.kernel.name}".into(),
            operator: "=".into(),
            value: "linux".into(),
        });
        b.task_groups[0].restart.as_mut().unwrap().attempts += 1;
        let text = render(&job_diff(Some(&a), &b), false);
        for want in [
            "+ Constraint {",
            "+ LTarget: \"${attr.kernel.name}\"",
            "+ Operand: \"=\"",
            "+ RTarget: \"linux\"",
            "+/- RestartPolicy {",
            "+/- Attempts:",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
        assert!(!text.contains("constraints"), "{text}");
    }
}
