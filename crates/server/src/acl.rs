//! The `Acl` gRPC service: bootstrap, policies and tokens (`yurt acl ...`, `/v1/acl/...`).
//! Everything but the bootstrap, a token reading itself and the policies it carries needs a
//! management token.

use tonic::{Request, Response, Status};
use yurt_core::internal::{command, AclUpdate};
use yurt_proto::v1::acl_server::Acl;
use yurt_proto::v1::*;
use yurt_types::acl::{self, Need};

use crate::read::{token, Reads};
use crate::write::{now_unix_ms, Writer};

type Reply<T> = Result<Response<T>, Status>;

#[derive(Clone)]
pub struct AclService {
    pub reads: Reads,
    pub writer: Writer,
    pub cluster: crate::cluster::Cluster,
}

/// A token's type and its policies agree: a client token has policies (they may be written
/// later, granting nothing until then, as in Nomad), a management token none.
fn check_kind(kind: &str, policies: &[String]) -> Result<(), Status> {
    match kind {
        acl::CLIENT if policies.is_empty() => Err(Status::invalid_argument(
            "a client token needs at least one policy (-policy NAME)",
        )),
        acl::MANAGEMENT if !policies.is_empty() => Err(Status::invalid_argument(
            "a management token cannot have policies: it may do everything",
        )),
        acl::CLIENT | acl::MANAGEMENT => Ok(()),
        other => Err(Status::invalid_argument(format!(
            "token type must be \"client\" or \"management\", not {other:?}"
        ))),
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Nomad's rule for policy names.
fn check_policy_name(name: &str) -> Result<(), Status> {
    yurt_types::limits::check_simple_name("ACL policy name", name).map_err(Status::invalid_argument)
}

impl AclService {
    /// ACL writes need every server at a version that knows them, and ACLs on.
    fn check_writable(&self) -> Result<(), Status> {
        yurt_core::features::check(&yurt_core::features::ACL, &self.cluster.gate_servers())
            .map_err(Status::failed_precondition)?;
        self.check_enabled()
    }

    /// Every ACL call but the bootstrap's gate needs ACLs on, as in Nomad: without them there
    /// is no token or policy to read.
    fn check_enabled(&self) -> Result<(), Status> {
        if !self.reads.acl_enabled {
            return Err(Status::failed_precondition(
                "ACL support disabled: set acl { enabled = true } on the servers",
            ));
        }
        Ok(())
    }

    /// Commits the change and waits until this server has applied it, so that the answer
    /// (read from this server's copy) shows it.
    async fn update(&self, u: AclUpdate) -> Result<u64, Status> {
        let index = self.writer.apply(command::Kind::AclUpdate(u)).await?.index;
        self.reads
            .state
            .wait_past(index.saturating_sub(1), std::time::Duration::from_secs(5))
            .await;
        Ok(index)
    }

    fn stored_token(&self, secret: &str) -> Result<AclToken, Status> {
        self.reads
            .state
            .read(|s| s.acl_tokens.get(secret).cloned())
            .ok_or_else(|| Status::not_found("ACL token not found"))
    }
}

#[tonic::async_trait]
impl Acl for AclService {
    async fn bootstrap(&self, _req: Request<AclBootstrapRequest>) -> Reply<AclToken> {
        self.check_writable()?;
        let done = self.reads.state.read(|s| s.acl_bootstrap_index);
        if done != 0 {
            return Err(Status::failed_precondition(format!(
                "ACL bootstrap already done (reset index: {done})"
            )));
        }
        let token = AclToken {
            accessor_id: new_id(),
            secret_id: new_id(),
            name: "Bootstrap Token".into(),
            r#type: acl::MANAGEMENT.into(),
            global: true,
            create_time_unix_ms: now_unix_ms(),
            ..AclToken::default()
        };
        self.update(AclUpdate {
            bootstrap: true,
            upsert_tokens: vec![token.clone()],
            ..AclUpdate::default()
        })
        .await?;
        Ok(Response::new(self.stored_token(&token.secret_id)?))
    }

    async fn upsert_policy(&self, req: Request<AclPolicy>) -> Reply<AclWriteResponse> {
        self.reads.authorize(&req, Need::Management)?;
        self.check_writable()?;
        let policy = req.into_inner();
        check_policy_name(&policy.name)?;
        acl::parse_policy(&policy.name, &policy.rules)
            .map_err(|e| Status::invalid_argument(format!("ACL policy rules: {e}")))?;
        let index = self
            .update(AclUpdate {
                upsert_policies: vec![policy],
                ..AclUpdate::default()
            })
            .await?;
        Ok(Response::new(AclWriteResponse { index }))
    }

    async fn delete_policy(&self, req: Request<AclPolicyRequest>) -> Reply<AclWriteResponse> {
        self.reads.authorize(&req, Need::Management)?;
        self.check_writable()?;
        let name = req.into_inner().name;
        if !self
            .reads
            .state
            .read(|s| s.acl_policies.contains_key(&name))
        {
            return Err(Status::not_found(format!("ACL policy {name:?} not found")));
        }
        let index = self
            .update(AclUpdate {
                delete_policies: vec![name],
                ..AclUpdate::default()
            })
            .await?;
        Ok(Response::new(AclWriteResponse { index }))
    }

    async fn get_policy(&self, req: Request<AclPolicyRequest>) -> Reply<AclPolicy> {
        self.check_enabled()?;
        let name = &req.get_ref().name;
        // As in Nomad, a token reads the policies it carries (the UI shows what it may do).
        let carried = token(&req)
            .and_then(|secret| self.stored_token(secret).ok())
            .is_some_and(|t| t.policies.contains(name));
        if !carried {
            self.reads.authorize(&req, Need::Management)?;
        }
        self.reads.barrier(crate::read::stale(&req)).await?;
        self.reads
            .state
            .read(|s| s.acl_policies.get(name).cloned())
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("ACL policy {name:?} not found")))
    }

    async fn list_policies(
        &self,
        req: Request<ListAclPoliciesRequest>,
    ) -> Reply<ListAclPoliciesResponse> {
        self.check_enabled()?;
        self.reads.authorize(&req, Need::Management)?;
        self.reads.barrier(crate::read::stale(&req)).await?;
        let policies = self
            .reads
            .state
            .read(|s| s.acl_policies.values().cloned().collect());
        Ok(Response::new(ListAclPoliciesResponse { policies }))
    }

    async fn create_token(&self, req: Request<AclToken>) -> Reply<AclToken> {
        self.reads.authorize(&req, Need::Management)?;
        self.check_writable()?;
        let asked = req.into_inner();
        yurt_types::limits::check_token_name(&asked.name).map_err(Status::invalid_argument)?;
        let kind = if asked.r#type.is_empty() {
            acl::CLIENT.to_string()
        } else {
            asked.r#type.clone()
        };
        check_kind(&kind, &asked.policies)?;
        let token = AclToken {
            accessor_id: new_id(),
            secret_id: new_id(),
            name: asked.name,
            r#type: kind,
            policies: asked.policies,
            global: asked.global,
            create_time_unix_ms: now_unix_ms(),
            ..AclToken::default()
        };
        self.update(AclUpdate {
            upsert_tokens: vec![token.clone()],
            ..AclUpdate::default()
        })
        .await?;
        Ok(Response::new(self.stored_token(&token.secret_id)?))
    }

    async fn update_token(&self, req: Request<AclToken>) -> Reply<AclToken> {
        self.reads.authorize(&req, Need::Management)?;
        self.check_writable()?;
        let asked = req.into_inner();
        yurt_types::limits::check_token_name(&asked.name).map_err(Status::invalid_argument)?;
        let mut token = self
            .reads
            .state
            .read(|s| s.acl_token_by_accessor(&asked.accessor_id).cloned())
            .ok_or_else(|| {
                Status::not_found(format!("ACL token {:?} not found", asked.accessor_id))
            })?;
        if !asked.name.is_empty() {
            token.name = asked.name;
        }
        if !asked.r#type.is_empty() {
            token.r#type = asked.r#type;
        }
        token.policies = asked.policies;
        token.global = asked.global;
        check_kind(&token.r#type, &token.policies)?;
        self.update(AclUpdate {
            upsert_tokens: vec![token.clone()],
            ..AclUpdate::default()
        })
        .await?;
        Ok(Response::new(self.stored_token(&token.secret_id)?))
    }

    async fn delete_token(&self, req: Request<AclTokenRequest>) -> Reply<AclWriteResponse> {
        self.reads.authorize(&req, Need::Management)?;
        self.check_writable()?;
        let accessor = req.into_inner().accessor_id;
        if self
            .reads
            .state
            .read(|s| s.acl_token_by_accessor(&accessor).is_none())
        {
            return Err(Status::not_found(format!(
                "ACL token {accessor:?} not found"
            )));
        }
        let index = self
            .update(AclUpdate {
                delete_tokens: vec![accessor],
                ..AclUpdate::default()
            })
            .await?;
        Ok(Response::new(AclWriteResponse { index }))
    }

    async fn get_token(&self, req: Request<AclTokenRequest>) -> Reply<AclToken> {
        self.check_enabled()?;
        let accessor = req.get_ref().accessor_id.clone();
        if accessor.is_empty() {
            // `acl token self`: any valid token reads itself.
            let secret = token(&req).ok_or_else(|| {
                Status::permission_denied("no ACL token given (-token or YURT_TOKEN)")
            })?;
            return self
                .stored_token(secret)
                .map(Response::new)
                .map_err(|_| Status::permission_denied("ACL token not found"));
        }
        self.reads.authorize(&req, Need::Management)?;
        self.reads
            .state
            .read(|s| s.acl_token_by_accessor(&accessor).cloned())
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("ACL token {accessor:?} not found")))
    }

    async fn list_tokens(
        &self,
        req: Request<ListAclTokensRequest>,
    ) -> Reply<ListAclTokensResponse> {
        self.check_enabled()?;
        self.reads.authorize(&req, Need::Management)?;
        self.reads.barrier(crate::read::stale(&req)).await?;
        let tokens = self.reads.state.scan(|s| {
            s.acl_tokens
                .values()
                .map(|t| AclToken {
                    secret_id: String::new(),
                    ..t.clone()
                })
                .collect()
        });
        Ok(Response::new(ListAclTokensResponse { tokens }))
    }
}
