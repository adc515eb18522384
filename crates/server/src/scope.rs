//! Which namespace a call is about, and what of it the caller may see: the request names its
//! namespace in the `yurt-namespace` metadata (HTTP `?namespace=`; none is `default`, `*` is
//! every namespace, for reads), and a [`Scope`] admits the objects of that namespace which the
//! caller's token allows the call's capability on. An object of another namespace is "not
//! found", as in Nomad, not forbidden.

use tonic::Status;
use yurt_core::namespaces::or_default;
use yurt_types::acl::{Acl, Need};

use crate::read::Reads;

/// The metadata key naming a call's namespace.
pub const NAMESPACE_KEY: &str = "yurt-namespace";

/// Every namespace (reads only).
pub const ALL: &str = "*";

/// The namespace a request names (`default` when none).
pub fn namespace<T>(req: &tonic::Request<T>) -> String {
    or_default(&named(req).unwrap_or_default()).to_string()
}

/// The namespace a request names, if it names one.
pub fn named<T>(req: &tonic::Request<T>) -> Option<String> {
    req.metadata()
        .get(NAMESPACE_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(String::from)
}

/// What one call may see: the namespace it names and the caller's token.
pub struct Scope {
    pub namespace: String,
    acl: Option<Acl>,
    capability: &'static str,
}

fn denied(ns: &str, capability: &'static str) -> Status {
    Status::permission_denied(format!(
        "Permission denied: this needs {}",
        Need::Namespace(ns, capability)
    ))
}

impl Scope {
    /// Whether an object of namespace `ns` is in scope and the token allows the capability
    /// on it.
    pub fn admits(&self, ns: &str) -> bool {
        let ns = or_default(ns);
        (self.namespace == ALL || ns == self.namespace)
            && self
                .acl
                .as_ref()
                .is_none_or(|a| a.allows(Need::Namespace(ns, self.capability)))
    }

    /// For one object found by ID: not found when it is in another namespace than the call
    /// names, forbidden when the token does not allow the capability on its namespace.
    pub fn check(&self, ns: &str, what: &str, id: &str) -> Result<(), Status> {
        let ns = or_default(ns);
        if self.namespace != ALL && ns != self.namespace {
            return Err(Status::not_found(format!(
                "{what} {id:?} not found in namespace {:?}",
                self.namespace
            )));
        }
        if self.admits(ns) {
            Ok(())
        } else {
            Err(denied(ns, self.capability))
        }
    }
}

impl Reads {
    /// The scope of a call that needs `capability`: with one namespace named, a token that
    /// does not allow it there is refused at once; with `*`, each object is judged.
    pub fn scope<T>(
        &self,
        req: &tonic::Request<T>,
        capability: &'static str,
    ) -> Result<Scope, Status> {
        self.scope_in(req, namespace(req), capability)
    }

    /// [`Reads::scope`] for namespace `ns` rather than the one the request names.
    pub fn scope_in<T>(
        &self,
        req: &tonic::Request<T>,
        ns: String,
        capability: &'static str,
    ) -> Result<Scope, Status> {
        let scope = Scope {
            namespace: ns,
            acl: self.acl_of(req)?,
            capability,
        };
        if scope.namespace != ALL && !scope.admits(&scope.namespace.clone()) {
            return Err(denied(&scope.namespace, capability));
        }
        Ok(scope)
    }

    /// The scope of a call about one object's namespace `ns` (a job being registered, a
    /// scaling policy's target), which must be one namespace.
    pub fn scope_at<T>(
        &self,
        req: &tonic::Request<T>,
        ns: &str,
        capability: &'static str,
    ) -> Result<Scope, Status> {
        let ns = or_default(ns);
        if ns == ALL {
            return Err(Status::invalid_argument(
                "a write names one namespace, not \"*\"",
            ));
        }
        let scope = Scope {
            namespace: ns.to_string(),
            acl: self.acl_of(req)?,
            capability,
        };
        if !scope.admits(ns) {
            return Err(denied(ns, capability));
        }
        Ok(scope)
    }
}
