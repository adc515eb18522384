//! Search (pure), as Nomad's `/v1/search` and `/v1/search/fuzzy`: IDs that start with a prefix
//! per context (jobs, evaluations, allocations, nodes, deployments, namespaces, variables), and
//! names that contain a text (jobs, groups, tasks, nodes) with the scope each lives in. At most
//! [`MAX_MATCHES`] per context, with whether more were left out. What the caller may see is the
//! caller's [`Visible`] to say.

use std::collections::BTreeMap;

use crate::state::State;
use crate::table::{Row, Table};

/// The most matches returned per context (Nomad's limit).
pub const MAX_MATCHES: usize = 20;

/// The contexts of a prefix search.
pub const PREFIX_CONTEXTS: &[&str] = &[
    "jobs",
    "evals",
    "allocs",
    "nodes",
    "deployment",
    "namespaces",
    "vars",
];

/// The contexts of a fuzzy search.
pub const FUZZY_CONTEXTS: &[&str] = &["jobs", "groups", "tasks", "nodes", "namespaces"];

/// What the caller may see: objects of a namespace (`None`: not namespaced, a node), and a
/// variable's path.
pub trait Visible {
    fn object(&self, namespace: Option<&str>) -> bool;
    fn variable(&self, namespace: &str, path: &str) -> bool;
    fn namespace(&self, name: &str) -> bool;
}

/// Per context, the matches and whether more were left out.
#[derive(Debug, PartialEq)]
pub struct Found<T> {
    pub matches: BTreeMap<String, Vec<T>>,
    pub truncated: BTreeMap<String, bool>,
}

impl<T> Default for Found<T> {
    fn default() -> Self {
        Found {
            matches: BTreeMap::new(),
            truncated: BTreeMap::new(),
        }
    }
}

impl<T> Found<T> {
    fn put(&mut self, context: &str, mut all: Vec<T>) {
        let more = all.len() > MAX_MATCHES;
        all.truncate(MAX_MATCHES);
        self.matches.insert(context.to_string(), all);
        self.truncated.insert(context.to_string(), more);
    }
}

/// The contexts a request names: one of `known`, or all of them for `all` (or none given).
fn contexts<'a>(context: &str, known: &'a [&'a str]) -> Result<Vec<&'a str>, String> {
    match context {
        "" | "all" => Ok(known.to_vec()),
        c => known
            .iter()
            .find(|k| **k == c)
            .map(|k| vec![*k])
            .ok_or_else(|| {
                format!(
                    "context {} is not one of all, {}",
                    yurt_types::limits::shown(c),
                    known.join(", ")
                )
            }),
    }
}

/// The IDs of a table's rows that start with `prefix` (read from the table's order, not by a
/// scan of every row) and that the caller may see.
fn table_ids<T: Row + Clone>(t: &Table<T>, prefix: &str, can: &dyn Visible) -> Vec<String> {
    t.iter_from(prefix)
        .take_while(|(id, _)| id.starts_with(prefix))
        .filter(|(_, row)| can.object(Some(row.namespace())))
        .map(|(id, _)| id.clone())
        .collect()
}

/// IDs starting with `prefix`, per context, in order.
pub fn prefix(
    state: &State,
    prefix: &str,
    context: &str,
    can: &dyn Visible,
) -> Result<Found<String>, String> {
    let mut found = Found::default();
    for c in contexts(context, PREFIX_CONTEXTS)? {
        let mut ids: Vec<String> = match c {
            "jobs" => state
                .jobs
                .values()
                .filter(|j| j.id.starts_with(prefix) && can.object(Some(&j.namespace)))
                .map(|j| j.id.clone())
                .collect(),
            "evals" => table_ids(&state.evals, prefix, can),
            "allocs" => table_ids(&state.allocs, prefix, can),
            "nodes" => state
                .nodes
                .values()
                .filter(|n| n.id.starts_with(prefix) && can.object(None))
                .map(|n| n.id.clone())
                .collect(),
            "deployment" => table_ids(&state.deployments, prefix, can),
            "namespaces" => state
                .all_namespaces()
                .into_iter()
                .filter(|n| n.name.starts_with(prefix) && can.namespace(&n.name))
                .map(|n| n.name)
                .collect(),
            _ => state
                .variables
                .keys()
                .filter(|(ns, path)| path.starts_with(prefix) && can.variable(ns, path))
                .map(|(_, path)| path.clone())
                .collect(),
        };
        ids.sort();
        found.put(c, ids);
    }
    Ok(found)
}

/// A fuzzy match: the name found and where it lives (namespace, job, group...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fuzzy {
    pub id: String,
    pub scope: Vec<String>,
}

/// Names containing `text` (case aside), per context: those that start with it first.
pub fn fuzzy(
    state: &State,
    text: &str,
    context: &str,
    can: &dyn Visible,
) -> Result<Found<Fuzzy>, String> {
    if text.chars().count() < 2 {
        return Err("fuzzy search needs at least 2 characters".into());
    }
    let needle = text.to_lowercase();
    let hit = |name: &str| name.to_lowercase().contains(&needle);
    let mut found = Found::default();
    for c in contexts(context, FUZZY_CONTEXTS)? {
        let mut matches: Vec<Fuzzy> = Vec::new();
        let jobs = state
            .jobs
            .values()
            .filter(|j| can.object(Some(&j.namespace)));
        match c {
            "jobs" => {
                for j in jobs.filter(|j| hit(&j.id)) {
                    matches.push(Fuzzy {
                        id: j.id.clone(),
                        scope: vec![j.namespace.clone(), j.id.clone()],
                    });
                }
            }
            "groups" => {
                for j in jobs {
                    for g in j.task_groups.iter().filter(|g| hit(&g.name)) {
                        matches.push(Fuzzy {
                            id: g.name.clone(),
                            scope: vec![j.namespace.clone(), j.id.clone()],
                        });
                    }
                }
            }
            "tasks" => {
                for j in jobs {
                    for g in &j.task_groups {
                        for t in g.tasks.iter().filter(|t| hit(&t.name)) {
                            matches.push(Fuzzy {
                                id: t.name.clone(),
                                scope: vec![j.namespace.clone(), j.id.clone(), g.name.clone()],
                            });
                        }
                    }
                }
            }
            "nodes" => {
                for n in state
                    .nodes
                    .values()
                    .filter(|n| can.object(None) && hit(&n.name))
                {
                    matches.push(Fuzzy {
                        id: n.name.clone(),
                        scope: vec![n.id.clone()],
                    });
                }
            }
            _ => {
                for n in state.all_namespaces() {
                    if hit(&n.name) && can.namespace(&n.name) {
                        matches.push(Fuzzy {
                            id: n.name.clone(),
                            scope: vec![],
                        });
                    }
                }
            }
        }
        let later = |m: &Fuzzy| !m.id.to_lowercase().starts_with(&needle);
        matches.sort_by(|a, b| (later(a), &a.id).cmp(&(later(b), &b.id)));
        found.put(c, matches);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Job, Node, Task, TaskGroup};
    use std::sync::Arc;

    struct OnlyProd;

    impl Visible for OnlyProd {
        fn object(&self, namespace: Option<&str>) -> bool {
            namespace.is_none_or(|ns| ns == "prod")
        }
        fn variable(&self, namespace: &str, _: &str) -> bool {
            namespace == "prod"
        }
        fn namespace(&self, name: &str) -> bool {
            name == "prod"
        }
    }

    fn job(id: &str, ns: &str) -> Arc<Job> {
        Arc::new(Job {
            id: id.into(),
            namespace: ns.into(),
            task_groups: vec![TaskGroup {
                name: "web-group".into(),
                tasks: vec![Task {
                    name: "server".into(),
                    ..Task::default()
                }],
                ..TaskGroup::default()
            }],
            ..Job::default()
        })
    }

    #[test]
    fn prefixes_per_context_only_what_the_caller_may_see_and_at_most_twenty() {
        let mut s = State::default();
        for (id, ns) in [("web", "prod"), ("webhook", "prod"), ("web-dev", "dev")] {
            s.jobs.insert(crate::state::job_key(ns, id), job(id, ns));
        }
        for i in 0..25 {
            let id = format!("w{i:02}");
            s.jobs
                .insert(crate::state::job_key("prod", &id), job(&id, "prod"));
        }
        s.nodes.insert(
            "n1".into(),
            Node {
                id: "n1".into(),
                name: "worker-1".into(),
                ..Node::default()
            },
        );
        let found = prefix(&s, "web", "jobs", &OnlyProd).unwrap();
        assert_eq!(found.matches["jobs"], ["web", "webhook"]);
        assert!(!found.truncated["jobs"]);
        let all = prefix(&s, "w", "all", &OnlyProd).unwrap();
        assert_eq!(all.matches["jobs"].len(), MAX_MATCHES);
        assert!(all.truncated["jobs"]);
        assert_eq!(all.matches.len(), PREFIX_CONTEXTS.len());
        assert!(prefix(&s, "w", "jobz", &OnlyProd)
            .unwrap_err()
            .starts_with("context \"jobz\" is not one of all, jobs"));
        let f = fuzzy(&s, "ERV", "all", &OnlyProd).unwrap();
        assert!(f.matches["tasks"].iter().all(|m| m.scope[0] == "prod"));
        assert_eq!(f.matches["tasks"][0].id, "server");
        assert_eq!(f.matches["tasks"][0].scope.len(), 3);
        let f = fuzzy(&s, "ker", "nodes", &OnlyProd).unwrap();
        assert_eq!(f.matches["nodes"][0].scope, ["n1"]);
        let f = fuzzy(&s, "web", "jobs", &OnlyProd).unwrap();
        assert_eq!(f.matches["jobs"][0].id, "web", "prefix matches first");
        assert!(fuzzy(&s, "w", "all", &OnlyProd).is_err());
    }
}
