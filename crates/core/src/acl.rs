//! ACL state in the FSM (pure): policies, tokens, the bootstrap, and resolving a token's secret
//! to what it may do.

use yurt_proto::internal::AclUpdate;
use yurt_proto::v1::AclToken;
use yurt_types::acl::{self, Acl};

use crate::state::{ApplyError, State};

/// Why a request's token gives it nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("ACL token not found")]
    NotFound,
    #[error("ACL policy {name:?} of the token cannot be read: {message}")]
    BadPolicy { name: String, message: String },
}

impl State {
    /// Applies an ACL change; a second bootstrap is refused and changes nothing.
    pub fn apply_acl_update(&mut self, index: u64, u: &AclUpdate) -> Result<(), ApplyError> {
        if u.bootstrap && self.acl_bootstrap_index != 0 {
            return Err(ApplyError::Refused(format!(
                "ACL bootstrap already done (reset index: {})",
                self.acl_bootstrap_index
            )));
        }
        if u.bootstrap {
            self.acl_bootstrap_index = index;
        }
        for p in &u.upsert_policies {
            let mut p = p.clone();
            p.create_index = self
                .acl_policies
                .get(&p.name)
                .map_or(index, |old| old.create_index);
            p.modify_index = index;
            self.acl_policies.insert(p.name.clone(), p);
        }
        for name in &u.delete_policies {
            self.acl_policies.remove(name);
        }
        for t in &u.upsert_tokens {
            let mut t = t.clone();
            t.create_index = self
                .acl_tokens
                .get(&t.secret_id)
                .map_or(index, |old| old.create_index);
            t.modify_index = index;
            self.acl_tokens.insert(t.secret_id.clone(), t);
        }
        let deleted: Vec<String> = self
            .acl_tokens
            .iter()
            .filter(|(_, t)| u.delete_tokens.contains(&t.accessor_id))
            .map(|(secret, _)| secret.clone())
            .collect();
        for secret in deleted {
            self.acl_tokens.remove(&secret);
        }
        Ok(())
    }

    /// The token with this accessor ID.
    pub fn acl_token_by_accessor(&self, accessor: &str) -> Option<&AclToken> {
        self.acl_tokens.values().find(|t| t.accessor_id == accessor)
    }

    /// What the holder of `secret` may do. No secret is the anonymous token: the policy named
    /// `anonymous`, if there is one, else nothing. Policies a token names that no longer exist
    /// grant nothing.
    pub fn acl_for(&self, secret: Option<&str>) -> Result<Acl, TokenError> {
        let names: Vec<String> = match secret {
            None | Some("") => vec!["anonymous".to_string()],
            Some(s) => {
                let token = self.acl_tokens.get(s).ok_or(TokenError::NotFound)?;
                if token.r#type == acl::MANAGEMENT {
                    return Ok(Acl::Management);
                }
                token.policies.clone()
            }
        };
        let mut policies = Vec::new();
        for name in names {
            if let Some(p) = self.acl_policies.get(&name) {
                policies.push(acl::parse_policy(&name, &p.rules).map_err(|e| {
                    TokenError::BadPolicy {
                        name: name.clone(),
                        message: e.to_string(),
                    }
                })?);
            }
        }
        Ok(Acl::of_policies(&policies))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yurt_proto::v1::AclPolicy;
    use yurt_types::acl::{Need, READ_JOB, SUBMIT_JOB};

    fn token(secret: &str, kind: &str, policies: &[&str]) -> AclToken {
        AclToken {
            accessor_id: format!("acc-{secret}"),
            secret_id: secret.into(),
            r#type: kind.into(),
            policies: policies.iter().map(|p| p.to_string()).collect(),
            ..AclToken::default()
        }
    }

    #[test]
    fn bootstrap_once_then_tokens_resolve_to_their_policies() {
        let mut s = State::default();
        let boot = AclUpdate {
            bootstrap: true,
            upsert_tokens: vec![token("root", acl::MANAGEMENT, &[])],
            ..AclUpdate::default()
        };
        s.apply_acl_update(5, &boot).unwrap();
        let again = s.apply_acl_update(6, &boot).unwrap_err();
        assert_eq!(
            again.to_string(),
            "ACL bootstrap already done (reset index: 5)"
        );
        s.apply_acl_update(
            7,
            &AclUpdate {
                upsert_policies: vec![AclPolicy {
                    name: "readonly".into(),
                    rules: "namespace \"default\" {\n  policy = \"read\"\n}\n".into(),
                    ..AclPolicy::default()
                }],
                upsert_tokens: vec![token("ro", acl::CLIENT, &["readonly", "gone"])],
                ..AclUpdate::default()
            },
        )
        .unwrap();
        assert_eq!(s.acl_for(Some("root")).unwrap(), Acl::Management);
        let ro = s.acl_for(Some("ro")).unwrap();
        assert!(ro.allows(Need::Namespace("default", READ_JOB)));
        assert!(!ro.allows(Need::Namespace("default", SUBMIT_JOB)));
        assert_eq!(s.acl_for(Some("nope")), Err(TokenError::NotFound));
        // Anonymous: nothing until a policy named "anonymous" exists.
        assert!(!s
            .acl_for(None)
            .unwrap()
            .allows(Need::Namespace("default", READ_JOB)));
        s.apply_acl_update(
            8,
            &AclUpdate {
                delete_tokens: vec!["acc-ro".into()],
                ..AclUpdate::default()
            },
        )
        .unwrap();
        assert_eq!(s.acl_for(Some("ro")), Err(TokenError::NotFound));
        assert_eq!(s.acl_policies["readonly"].create_index, 7);
    }
}
