//! Namespaces in the state machine (pure): creating, describing and deleting them. The
//! `default` namespace always exists. A namespace that still has jobs or variables is not
//! deleted. A job's ID is unique in its namespace: the state keys jobs, and indexes their
//! allocations, evaluations and deployments, by namespace and ID.

use yurt_proto::internal::NamespaceUpdate;
use yurt_proto::v1::Namespace;
use yurt_types::acl::DEFAULT_NAMESPACE;

use crate::state::{ApplyError, State};

/// The name an empty namespace field stands for (objects written before namespaces existed).
pub use yurt_types::acl::namespace_or_default as or_default;

/// Nomad's rule for namespace names: 1 to 128 letters, digits, `-` or `_`.
pub fn check_name(name: &str) -> Result<(), String> {
    yurt_types::limits::check_simple_name("namespace name", name)
}

impl State {
    /// A namespace by name; `default` exists even before anyone describes it.
    pub fn namespace(&self, name: &str) -> Option<Namespace> {
        let name = or_default(name);
        self.namespaces.get(name).cloned().or_else(|| {
            (name == DEFAULT_NAMESPACE).then(|| Namespace {
                name: DEFAULT_NAMESPACE.into(),
                description: "Default shared namespace".into(),
                ..Namespace::default()
            })
        })
    }

    /// Every namespace, `default` included, by name.
    pub fn all_namespaces(&self) -> Vec<Namespace> {
        let mut all: Vec<Namespace> = self.namespaces.values().cloned().collect();
        if !self.namespaces.contains_key(DEFAULT_NAMESPACE) {
            all.extend(self.namespace(DEFAULT_NAMESPACE));
            all.sort_by(|a, b| a.name.cmp(&b.name));
        }
        all
    }

    /// Applies a namespace change; a refused deletion changes nothing at all.
    pub fn apply_namespace_update(
        &mut self,
        index: u64,
        u: &NamespaceUpdate,
    ) -> Result<(), ApplyError> {
        for name in &u.delete {
            let name = or_default(name);
            if name == DEFAULT_NAMESPACE {
                return Err(ApplyError::Refused(
                    "the default namespace cannot be deleted".into(),
                ));
            }
            if self.namespace(name).is_none() {
                return Err(ApplyError::Refused(format!(
                    "namespace {name:?} does not exist"
                )));
            }
            let jobs = self.jobs.keys().filter(|(ns, _)| ns == name).count();
            if jobs > 0 {
                return Err(ApplyError::Refused(format!(
                    "namespace {name:?} has {jobs} jobs: stop and purge them before deleting it"
                )));
            }
            let vars = self.variables.keys().filter(|(ns, _)| ns == name).count();
            if vars > 0 {
                return Err(ApplyError::Refused(format!(
                    "namespace {name:?} has {vars} variables: purge them before deleting it"
                )));
            }
        }
        for ns in &u.upsert {
            check_name(&ns.name).map_err(ApplyError::Refused)?;
        }
        for name in &u.delete {
            self.namespaces.remove(name.as_str());
        }
        for ns in &u.upsert {
            let mut ns = ns.clone();
            ns.create_index = self
                .namespaces
                .get(&ns.name)
                .map_or(index, |old| old.create_index);
            ns.modify_index = index;
            self.namespaces.insert(ns.name.clone(), ns);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::internal::{command, Command, JobRegister};
    use crate::v1::Job;

    fn update(upsert: &[&str], delete: &[&str]) -> NamespaceUpdate {
        NamespaceUpdate {
            upsert: upsert
                .iter()
                .map(|n| Namespace {
                    name: n.to_string(),
                    ..Namespace::default()
                })
                .collect(),
            delete: delete.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn register(s: &mut State, index: u64, id: &str, ns: &str) -> Result<(), ApplyError> {
        let cmd = Command {
            now_unix_ms: 1,
            ignore_if_unknown: false,
            kind: Some(command::Kind::JobRegister(JobRegister {
                job: Some(Job {
                    id: id.into(),
                    namespace: ns.into(),
                    r#type: "service".into(),
                    ..Job::default()
                }),
                ..JobRegister::default()
            })),
        };
        s.apply(index, &cmd).map(|_| ())
    }

    #[test]
    fn default_always_exists_and_cannot_go() {
        let mut s = State::default();
        assert_eq!(s.all_namespaces().len(), 1);
        assert!(s.namespace("").is_some());
        let err = s
            .apply_namespace_update(1, &update(&[], &["default"]))
            .unwrap_err();
        assert_eq!(err.to_string(), "the default namespace cannot be deleted");
        assert!(s
            .apply_namespace_update(1, &update(&["bad name"], &[]))
            .is_err());
        assert!(s.namespaces.is_empty());
    }

    #[test]
    fn jobs_need_their_namespace_which_then_cannot_be_deleted() {
        let mut s = State::default();
        let err = register(&mut s, 1, "web", "prod").unwrap_err().to_string();
        assert!(err.contains("namespace \"prod\" does not exist"), "{err}");
        s.apply_namespace_update(2, &update(&["prod"], &[]))
            .unwrap();
        register(&mut s, 3, "web", "prod").unwrap();
        assert!(s.job("prod", "web").is_some() && s.job("", "web").is_none());
        // The same ID in another namespace is another job.
        register(&mut s, 4, "web", "default").unwrap();
        assert_eq!(s.job("prod", "web").unwrap().create_index, 3);
        assert_eq!(s.job("default", "web").unwrap().create_index, 4);
        let err = s
            .apply_namespace_update(5, &update(&["other"], &["prod"]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "namespace \"prod\" has 1 jobs: stop and purge them before deleting it"
        );
        // Nothing of the refused update happened.
        assert!(s.namespace("other").is_none());
        let ns = s.namespace("prod").unwrap();
        assert_eq!((ns.create_index, ns.modify_index), (2, 2));
    }
}
