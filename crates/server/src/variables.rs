//! The `Variables` and `Keyring` gRPC services (`yurt var ...`, `/v1/vars`, `/v1/var/:path`,
//! `yurt operator root keyring ...`): variables are checked ([`yurt_types::variables`]), sealed
//! by the server that takes the request ([`crate::keyring`]) and written through Raft, where
//! the state machine decides a compare-and-set; reads open them after a consistent read.
//! Every call is checked against the token's `variables` rules; writes need every server at a
//! version that has variables.

use tonic::{Request, Response, Status};
use yurt_core::internal::{command, KeyringUpdate, VariableWrite};
use yurt_core::variables::{CAS_CONFLICT, OP_DELETE, OP_SET};
use yurt_proto::v1::keyring_server::Keyring as KeyringApi;
use yurt_proto::v1::variables_server::Variables;
use yurt_proto::v1::*;
use yurt_types::acl::{self, Need};

use crate::keyring::Keyring;
use crate::read::{stale, Reads};
use crate::write::{now_unix_ms, WriteError, Writer};

type Reply<T> = Result<Response<T>, Status>;

#[derive(Clone)]
pub struct VariablesService {
    pub reads: Reads,
    pub writer: Writer,
    pub cluster: crate::cluster::Cluster,
    pub keyring: Keyring,
}

impl VariablesService {
    /// The namespace a call is about: the message's, else the call's (`-namespace`,
    /// `?namespace=`); it must exist; `*` only where `wildcard`.
    fn namespace<T>(
        &self,
        req: &Request<T>,
        named: &str,
        wildcard: bool,
    ) -> Result<String, Status> {
        let ns = if named.is_empty() {
            crate::scope::namespace(req)
        } else {
            yurt_core::namespaces::or_default(named).to_string()
        };
        if ns == crate::scope::ALL {
            return if wildcard {
                Ok(ns)
            } else {
                Err(Status::invalid_argument(
                    "a variable is in one namespace, not \"*\"",
                ))
            };
        }
        if self.reads.state.read(|s| s.namespace(&ns).is_none()) {
            return Err(Status::not_found(format!(
                "namespace {} not found",
                yurt_types::limits::shown(&ns)
            )));
        }
        Ok(ns)
    }

    fn check_writable(&self) -> Result<(), Status> {
        yurt_core::features::check(
            &yurt_core::features::VARIABLES,
            &self.cluster.gate_servers(),
        )
        .map_err(Status::failed_precondition)
    }

    /// The keyring's active key; the first is made here, by the first write that needs one.
    async fn active_key(&self) -> Result<String, Status> {
        if let Some(k) = self.reads.state.read(|s| s.active_root_key().cloned()) {
            return Ok(k.key_id);
        }
        let key = self.keyring.generate(now_unix_ms())?;
        self.commit(command::Kind::KeyringUpdate(KeyringUpdate {
            key: Some(key.clone()),
        }))
        .await?;
        Ok(key.key_id)
    }

    /// Commits a command and waits until this server has applied it; a compare-and-set
    /// refusal is `ABORTED`.
    async fn commit(&self, kind: command::Kind) -> Result<u64, Status> {
        let index = match self.writer.apply(kind).await {
            Ok(r) => r.index,
            Err(WriteError::Refused(m)) if m.starts_with(CAS_CONFLICT) => {
                return Err(Status::aborted(m))
            }
            Err(e) => return Err(e.into()),
        };
        self.reads
            .state
            .wait_past(index.saturating_sub(1), std::time::Duration::from_secs(5))
            .await;
        Ok(index)
    }

    /// The stored metadata of a variable (no items).
    fn stored(&self, ns: &str, path: &str) -> Option<Variable> {
        self.reads
            .state
            .read(|s| s.variable(ns, path).and_then(|v| v.meta.clone()))
    }
}

#[tonic::async_trait]
impl Variables for VariablesService {
    async fn list(&self, req: Request<ListVariablesRequest>) -> Reply<ListVariablesResponse> {
        self.reads.barrier(stale(&req)).await?;
        let acl = self.reads.acl_of(&req)?;
        let r = req.get_ref();
        let ns = self.namespace(&req, &r.namespace, true)?;
        let after = match (ns.as_str(), r.next_token.as_str()) {
            (_, "") => None,
            ("*", t) => t
                .split_once('/')
                .map(|(n, p)| (n.to_string(), p.to_string())),
            (n, t) => Some((n.to_string(), t.to_string())),
        };
        let per_page = match r.per_page {
            0 => usize::MAX,
            n => n as usize,
        };
        let (mut variables, index) = self.reads.state.read(|s| {
            let seen: Vec<Variable> = s
                .variables_from(&ns, &r.prefix, after)
                .filter_map(|v| v.meta.clone())
                .filter(|m| {
                    acl.as_ref().is_none_or(|a| {
                        a.allows(Need::Variable(&m.namespace, &m.path, acl::VAR_LIST))
                    })
                })
                .take(per_page.saturating_add(1))
                .collect();
            (seen, s.index)
        });
        let next_token = if variables.len() > per_page {
            let next = variables.split_off(per_page).remove(0);
            if ns == "*" {
                format!("{}/{}", next.namespace, next.path)
            } else {
                next.path
            }
        } else {
            String::new()
        };
        Ok(Response::new(ListVariablesResponse {
            variables,
            next_token,
            index,
        }))
    }

    async fn get(&self, req: Request<GetVariableRequest>) -> Reply<Variable> {
        let ns = self.namespace(&req, &req.get_ref().namespace, false)?;
        let path = req.get_ref().path.clone();
        self.reads
            .authorize(&req, Need::Variable(&ns, &path, acl::VAR_READ))?;
        self.reads.barrier(stale(&req)).await?;
        let sealed = self
            .reads
            .state
            .read(|s| s.variable(&ns, &path).cloned())
            .ok_or_else(|| {
                Status::not_found(format!("variable {path:?} not found in namespace {ns:?}"))
            })?;
        Ok(Response::new(self.keyring.open_sealed(&sealed).await?))
    }

    async fn put(&self, req: Request<PutVariableRequest>) -> Reply<Variable> {
        let r = req.get_ref();
        let mut v = r.variable.clone().unwrap_or_default();
        v.namespace = self.namespace(&req, &v.namespace, false)?;
        self.reads
            .authorize(&req, Need::Variable(&v.namespace, &v.path, acl::VAR_WRITE))?;
        self.check_writable()?;
        yurt_types::variables::check(&v).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let key = self.active_key().await?;
        let sealed = self.keyring.seal(&key, &v).await?;
        self.commit(command::Kind::VariableWrite(VariableWrite {
            op: OP_SET.into(),
            variable: Some(sealed),
            cas: r.cas,
            check_index: r.check_index,
        }))
        .await?;
        let stored = self.stored(&v.namespace, &v.path).unwrap_or_default();
        Ok(Response::new(Variable {
            items: v.items,
            ..stored
        }))
    }

    async fn delete(&self, req: Request<DeleteVariableRequest>) -> Reply<DeleteVariableResponse> {
        let r = req.get_ref();
        let ns = self.namespace(&req, &r.namespace, false)?;
        self.reads
            .authorize(&req, Need::Variable(&ns, &r.path, acl::VAR_DESTROY))?;
        self.check_writable()?;
        yurt_types::variables::check_path(&r.path)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let index = self
            .commit(command::Kind::VariableWrite(VariableWrite {
                op: OP_DELETE.into(),
                variable: Some(yurt_proto::internal::EncryptedVariable {
                    meta: Some(Variable {
                        namespace: ns,
                        path: r.path.clone(),
                        ..Variable::default()
                    }),
                    ..Default::default()
                }),
                cas: r.cas,
                check_index: r.check_index,
            }))
            .await?;
        Ok(Response::new(DeleteVariableResponse { index }))
    }
}

#[tonic::async_trait]
impl KeyringApi for VariablesService {
    async fn list(&self, req: Request<KeyringListRequest>) -> Reply<KeyringListResponse> {
        self.reads.authorize(&req, Need::Management)?;
        self.reads.barrier(stale(&req)).await?;
        let mut keys: Vec<RootKeyMeta> = self
            .reads
            .state
            .read(|s| s.root_keys.values().cloned().collect());
        keys.sort_by_key(|k| k.create_index);
        Ok(Response::new(KeyringListResponse { keys }))
    }

    async fn rotate(&self, req: Request<KeyringRotateRequest>) -> Reply<KeyringRotateResponse> {
        self.reads.authorize(&req, Need::Management)?;
        self.check_writable()?;
        let key = self.keyring.generate(now_unix_ms())?;
        let index = self
            .commit(command::Kind::KeyringUpdate(KeyringUpdate {
                key: Some(key.clone()),
            }))
            .await?;
        let key = self
            .reads
            .state
            .read(|s| s.root_keys.get(&key.key_id).cloned())
            .unwrap_or(key);
        tracing::info!(key = %key.key_id, "rotated the keyring");
        Ok(Response::new(KeyringRotateResponse {
            key: Some(key),
            index,
        }))
    }
}
