//! Nomad Variables and the keyring's metadata in the state machine (pure): sealed variables by
//! namespace and path with compare-and-set, the keys that sealed them, and listing by prefix.
//! Sealing and opening happen on the servers (`yurt_server::keyring`); the state machine never
//! sees an item's value.

use yurt_proto::internal::{EncryptedVariable, KeyringUpdate, VariableWrite};
use yurt_proto::v1::{RootKeyMeta, Variable};

use crate::state::{ApplyError, State, VarKey};

/// How a compare-and-set refusal starts: the servers answer it with the current variable (409
/// on the HTTP API) rather than as any other refusal.
pub const CAS_CONFLICT: &str = "check-and-set conflict";

/// A key's states.
pub const KEY_ACTIVE: &str = "active";
pub const KEY_INACTIVE: &str = "inactive";

/// The operations of a [`VariableWrite`].
pub const OP_SET: &str = "set";
pub const OP_DELETE: &str = "delete";

impl State {
    /// Sets or deletes a variable; with `cas`, only if its modify index is the check index (0:
    /// it must not exist). A refusal changes nothing.
    pub fn apply_variable_write(
        &mut self,
        index: u64,
        now: i64,
        w: VariableWrite,
    ) -> Result<(), ApplyError> {
        let Some(mut sealed) = w.variable else {
            return Err(ApplyError::Refused(
                "variable write without a variable".into(),
            ));
        };
        let meta = sealed.meta.get_or_insert_with(Variable::default);
        meta.items.clear();
        let key: VarKey = (meta.namespace.clone(), meta.path.clone());
        let old = self.variables.get(&key).and_then(|v| v.meta.as_ref());
        if w.cas {
            let current = old.map_or(0, |m| m.modify_index);
            if current != w.check_index {
                return Err(ApplyError::Refused(format!(
                    "{CAS_CONFLICT}: variable {:?} in namespace {:?} is at modify index {current}, not {}",
                    key.1, key.0, w.check_index
                )));
            }
        }
        match w.op.as_str() {
            OP_SET => {
                // Decided here, not on a server's possibly older copy: the namespace may have
                // gone since the request was checked.
                if self.namespace(&key.0).is_none() {
                    return Err(ApplyError::Refused(format!(
                        "namespace {:?} does not exist",
                        key.0
                    )));
                }
                if !sealed.key_id.is_empty() && !self.root_keys.contains_key(&sealed.key_id) {
                    return Err(ApplyError::Refused(format!(
                        "variable sealed with key {:?}, which the keyring does not have",
                        sealed.key_id
                    )));
                }
                meta.create_index = old.map_or(index, |m| m.create_index);
                meta.create_time_unix_ms = old.map_or(now, |m| m.create_time_unix_ms);
                meta.modify_index = index;
                meta.modify_time_unix_ms = now;
                self.variables.insert(key, sealed);
            }
            OP_DELETE => {
                self.variables.remove(&key);
            }
            other => {
                return Err(ApplyError::Refused(format!(
                    "unknown variable operation {other:?}"
                )))
            }
        }
        Ok(())
    }

    /// Makes a key the keyring's active one; the others become inactive.
    pub fn apply_keyring_update(&mut self, index: u64, now: i64, u: KeyringUpdate) {
        let Some(mut key) = u.key else { return };
        let active: Vec<String> = self
            .root_keys
            .values()
            .filter(|k| k.state == KEY_ACTIVE)
            .map(|k| k.key_id.clone())
            .collect();
        for id in active {
            if let Some(k) = self.root_keys.get_mut(&id) {
                k.state = KEY_INACTIVE.into();
                k.modify_index = index;
            }
        }
        key.state = KEY_ACTIVE.into();
        key.create_index = index;
        key.modify_index = index;
        if key.create_time_unix_ms == 0 {
            key.create_time_unix_ms = now;
        }
        self.root_keys.insert(key.key_id.clone(), key);
    }

    /// The key new variables are sealed with.
    pub fn active_root_key(&self) -> Option<&RootKeyMeta> {
        self.root_keys.values().find(|k| k.state == KEY_ACTIVE)
    }

    /// One sealed variable.
    pub fn variable(&self, namespace: &str, path: &str) -> Option<&EncryptedVariable> {
        self.variables
            .get(&(namespace.to_string(), path.to_string()))
    }

    /// The variables of `namespace` (`*`: all) whose path starts with `prefix`, from the key
    /// `after` on (inclusive), in order; `keep` says which the caller may see.
    pub fn variables_from<'s>(
        &'s self,
        namespace: &'s str,
        prefix: &'s str,
        after: Option<VarKey>,
    ) -> impl Iterator<Item = &'s EncryptedVariable> + 's {
        let start = after.unwrap_or_else(|| match namespace {
            "*" => (String::new(), String::new()),
            ns => (ns.to_string(), prefix.to_string()),
        });
        // Within one namespace the paths with the prefix are contiguous; across all, not.
        self.variables
            .range(start..)
            .take_while(move |((ns, path), _)| {
                namespace == "*" || (ns == namespace && path.starts_with(prefix))
            })
            .filter(move |((_, path), _)| path.starts_with(prefix))
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(ns: &str, path: &str, op: &str, cas: Option<u64>) -> VariableWrite {
        VariableWrite {
            op: op.into(),
            variable: Some(EncryptedVariable {
                meta: Some(Variable {
                    namespace: ns.into(),
                    path: path.into(),
                    ..Variable::default()
                }),
                key_id: "k1".into(),
                nonce: vec![1; 12],
                ciphertext: vec![2; 20],
            }),
            cas: cas.is_some(),
            check_index: cas.unwrap_or(0),
        }
    }

    fn keyed() -> State {
        let mut s = State::default();
        s.apply_namespace_update(
            1,
            &yurt_proto::internal::NamespaceUpdate {
                upsert: vec![yurt_proto::v1::Namespace {
                    name: "prod".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .unwrap();
        s.apply_keyring_update(
            1,
            5,
            KeyringUpdate {
                key: Some(RootKeyMeta {
                    key_id: "k1".into(),
                    ..RootKeyMeta::default()
                }),
            },
        );
        s
    }

    #[test]
    fn compare_and_set_creates_updates_and_refuses_stale_indexes() {
        let mut s = keyed();
        s.apply_variable_write(10, 100, write("default", "a", OP_SET, Some(0)))
            .unwrap();
        let m = s.variable("default", "a").unwrap().meta.clone().unwrap();
        assert_eq!((m.create_index, m.modify_index), (10, 10));
        // Creating again with 0, or updating with a stale index, is a conflict.
        for stale in [0, 9] {
            let err = s
                .apply_variable_write(11, 110, write("default", "a", OP_SET, Some(stale)))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(CAS_CONFLICT), "{err}");
            assert!(err.contains("at modify index 10"), "{err}");
        }
        s.apply_variable_write(12, 120, write("default", "a", OP_SET, Some(10)))
            .unwrap();
        let m = s.variable("default", "a").unwrap().meta.clone().unwrap();
        assert_eq!((m.create_index, m.modify_index), (10, 12));
        assert_eq!((m.create_time_unix_ms, m.modify_time_unix_ms), (100, 120));
        // Deleting with a stale index changes nothing; with the current one it deletes.
        assert!(s
            .apply_variable_write(13, 130, write("default", "a", OP_DELETE, Some(10)))
            .is_err());
        assert!(s.variable("default", "a").is_some());
        s.apply_variable_write(14, 140, write("default", "a", OP_DELETE, Some(12)))
            .unwrap();
        assert!(s.variable("default", "a").is_none());
    }

    #[test]
    fn a_variable_in_a_namespace_that_is_gone_is_refused() {
        let mut s = keyed();
        let err = s
            .apply_variable_write(2, 2, write("gone", "a", OP_SET, None))
            .unwrap_err();
        assert_eq!(err.to_string(), "namespace \"gone\" does not exist");
        assert!(s.variables.is_empty());
    }

    #[test]
    fn a_variable_sealed_with_an_unknown_key_is_refused() {
        let mut s = State::default();
        assert!(s
            .apply_variable_write(2, 2, write("default", "a", OP_SET, None))
            .is_err());
        assert!(s.variables.is_empty());
    }

    #[test]
    fn snapshots_keep_variables_and_keys() {
        let mut s = keyed();
        assert_eq!(s.snapshot_format(), 2);
        s.apply_variable_write(4, 9, write("prod", "db", OP_SET, None))
            .unwrap();
        let back = State::from_snapshot(&s.to_snapshot("test")).unwrap();
        assert_eq!(back.variables, s.variables);
        assert_eq!(back.root_keys, s.root_keys);
        assert_eq!(back.variable("prod", "db").unwrap().key_id, "k1");
    }

    #[test]
    fn rotation_leaves_one_active_key() {
        let mut s = keyed();
        s.apply_keyring_update(
            3,
            7,
            KeyringUpdate {
                key: Some(RootKeyMeta {
                    key_id: "k2".into(),
                    ..RootKeyMeta::default()
                }),
            },
        );
        assert_eq!(s.active_root_key().unwrap().key_id, "k2");
        assert_eq!(s.root_keys["k1"].state, KEY_INACTIVE);
        assert_eq!(s.root_keys["k2"].create_time_unix_ms, 7);
    }

    #[test]
    fn listing_by_namespace_prefix_and_page_start() {
        let mut s = keyed();
        for (i, (ns, path)) in [
            ("default", "app/a"),
            ("default", "app/b"),
            ("default", "db/c"),
            ("prod", "app/a"),
        ]
        .into_iter()
        .enumerate()
        {
            s.apply_variable_write(10 + i as u64, 1, write(ns, path, OP_SET, None))
                .unwrap();
        }
        let paths = |ns: &str, prefix: &str, after: Option<VarKey>| -> Vec<String> {
            s.variables_from(ns, prefix, after)
                .map(|v| {
                    let m = v.meta.as_ref().unwrap();
                    format!("{}/{}", m.namespace, m.path)
                })
                .collect()
        };
        assert_eq!(
            paths("default", "app/", None),
            ["default/app/a", "default/app/b"]
        );
        assert_eq!(paths("*", "app/", None).len(), 3);
        assert_eq!(
            paths("default", "", Some(("default".into(), "app/b".into()))),
            ["default/app/b", "default/db/c"]
        );
        assert!(paths("other", "", None).is_empty());
    }
}
