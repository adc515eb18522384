//! ACL policies (Nomad's rule language) and what a token may do (pure).
//!
//! ```hcl
//! namespace "default" {
//!   policy       = "read"              # deny | read | write
//!   capabilities = ["submit-job"]      # added to the policy's
//! }
//! namespace "prod-*" { policy = "deny" }
//! namespace "apps" {
//!   variables {                        # Nomad Variables in the namespace, by path glob
//!     path "db/*" { capabilities = ["read", "list"] }   # read | write | list | destroy | deny
//!   }
//! }
//! node     { policy = "read" }         # deny | read | write
//! agent    { policy = "read" }
//! operator { policy = "write" }
//! ```
//!
//! A token of type `management` may do everything; a `client` token what the union of its
//! policies grants, where a `deny` anywhere wins. A namespace rule applies to the namespace it
//! names exactly, else to the longest glob (`prod-*`, `*`) that matches; a variable's path the
//! same way among that namespace's `path` rules. A namespace `policy` of `read` lets its holder
//! read and list every variable of the namespace, `write` also write and destroy them.

use std::collections::{BTreeMap, BTreeSet};

use crate::hcl::{Lines, Reader, Scope};
use crate::jobspec::SpecError;

/// Yurt's one namespace: every job is in it, and namespace rules that match it apply.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The namespace an empty namespace field stands for (objects from before namespaces).
pub fn namespace_or_default(ns: &str) -> &str {
    if ns.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        ns
    }
}

/// The token types.
pub const MANAGEMENT: &str = "management";
pub const CLIENT: &str = "client";

/// Read or write on a coarse resource (`node`, `agent`, `operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Deny,
    Read,
    Write,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s {
            "deny" => Some(Level::Deny),
            "read" => Some(Level::Read),
            "write" => Some(Level::Write),
            _ => None,
        }
    }
}

/// The gRPC metadata (and HTTP header, `X-Nomad-Token`) that carries a caller's ACL token.
pub const TOKEN_KEY: &str = "x-nomad-token";

/// The namespace capabilities Yurt checks (Nomad's names).
pub const LIST_JOBS: &str = "list-jobs";
pub const READ_JOB: &str = "read-job";
pub const SUBMIT_JOB: &str = "submit-job";
pub const PARSE_JOB: &str = "parse-job";
pub const READ_LOGS: &str = "read-logs";
pub const READ_FS: &str = "read-fs";
pub const ALLOC_LIFECYCLE: &str = "alloc-lifecycle";
pub const ALLOC_EXEC: &str = "alloc-exec";
pub const SCALE_JOB: &str = "scale-job";
pub const READ_JOB_SCALING: &str = "read-job-scaling";
pub const LIST_SCALING_POLICIES: &str = "list-scaling-policies";
pub const READ_SCALING_POLICY: &str = "read-scaling-policy";
pub const DENY: &str = "deny";

const KNOWN_CAPABILITIES: &[&str] = &[
    LIST_JOBS,
    READ_JOB,
    SUBMIT_JOB,
    PARSE_JOB,
    READ_LOGS,
    ALLOC_LIFECYCLE,
    "dispatch-job",
    READ_FS,
    ALLOC_EXEC,
    "alloc-node-exec",
    SCALE_JOB,
    READ_JOB_SCALING,
    LIST_SCALING_POLICIES,
    READ_SCALING_POLICY,
    DENY,
];

/// The capabilities of a `variables` path rule (Nomad's names).
pub const VAR_READ: &str = "read";
pub const VAR_WRITE: &str = "write";
pub const VAR_LIST: &str = "list";
pub const VAR_DESTROY: &str = "destroy";

const VARIABLE_CAPABILITIES: &[&str] = &[VAR_READ, VAR_WRITE, VAR_LIST, VAR_DESTROY, DENY];

/// The variables capabilities (on every path, `*`) a namespace `policy` stands for.
fn expand_variables(level: Level) -> &'static [&'static str] {
    match level {
        Level::Deny => &[DENY],
        Level::Read => &[VAR_READ, VAR_LIST],
        Level::Write => &[VAR_READ, VAR_LIST, VAR_WRITE, VAR_DESTROY],
    }
}

/// The capabilities a namespace `policy` stands for.
fn expand(level: Level) -> &'static [&'static str] {
    match level {
        Level::Deny => &[DENY],
        Level::Read => &[
            LIST_JOBS,
            READ_JOB,
            PARSE_JOB,
            READ_JOB_SCALING,
            LIST_SCALING_POLICIES,
            READ_SCALING_POLICY,
        ],
        Level::Write => &[
            LIST_JOBS,
            READ_JOB,
            PARSE_JOB,
            SUBMIT_JOB,
            "dispatch-job",
            READ_LOGS,
            READ_FS,
            ALLOC_LIFECYCLE,
            ALLOC_EXEC,
            SCALE_JOB,
            READ_JOB_SCALING,
            LIST_SCALING_POLICIES,
            READ_SCALING_POLICY,
        ],
    }
}

/// One parsed policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Namespace name or glob → capabilities.
    pub namespaces: BTreeMap<String, BTreeSet<String>>,
    /// Namespace name or glob → variable path or glob → capabilities.
    pub variables: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    pub node: Option<Level>,
    pub agent: Option<Level>,
    pub operator: Option<Level>,
}

impl Policy {
    /// The rules as Nomad's API shows them parsed (`RulesJSON` of `GET /v1/acl/policy/:name`):
    /// each namespace rule's capabilities (a `policy` expanded) and variables paths, and the
    /// `node`, `agent` and `operator` levels.
    pub fn rules_json(&self) -> serde_json::Value {
        let level = |l: &Option<Level>| {
            l.map(|l| {
                let name = match l {
                    Level::Deny => "deny",
                    Level::Read => "read",
                    Level::Write => "write",
                };
                serde_json::json!({ "Policy": name })
            })
        };
        let namespaces: Vec<serde_json::Value> = self
            .namespaces
            .iter()
            .map(|(name, caps)| {
                let paths: Vec<serde_json::Value> = self
                    .variables
                    .get(name)
                    .into_iter()
                    .flatten()
                    .map(|(path, caps)| serde_json::json!({ "PathSpec": path, "Capabilities": caps }))
                    .collect();
                serde_json::json!({
                    "Name": name,
                    "Capabilities": caps,
                    "Variables": { "Paths": paths },
                })
            })
            .collect();
        serde_json::json!({
            "Namespaces": namespaces,
            "Node": level(&self.node),
            "Agent": level(&self.agent),
            "Operator": level(&self.operator),
        })
    }
}

/// Reads a policy's rules; errors name the file (the policy), line and field.
pub fn parse_policy(file: &str, src: &str) -> Result<Policy, SpecError> {
    let r = Reader::new(file, src);
    let body = r.parse()?;
    let mut lines = Lines::default();
    let l = &mut lines;
    let mut top = Scope::new(&r, &body, "policy".into(), "policy".into());
    let mut p = Policy::default();
    let level = |s: &mut Scope<'_>,
                 what: &str,
                 l: &mut Lines|
     -> Result<Option<Level>, SpecError> {
        match s.string("policy", l)? {
            None => Ok(None),
            Some(v) => Level::parse(&v).map(Some).ok_or_else(|| {
                let line = l.find(&format!("{}.policy", s.path));
                s.r.err(
                    line,
                    format!("{what}: policy must be \"deny\", \"read\" or \"write\", not {v:?}"),
                )
            }),
        }
    };
    for b in top.blocks("namespace") {
        let name = top.label(b, "namespace")?;
        let what = format!("namespace {name:?}");
        let mut s = Scope::new(&r, &b.body, what.clone(), format!("namespace[{name}]"));
        let mut caps: BTreeSet<String> = BTreeSet::new();
        let mut paths: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        if let Some(level) = level(&mut s, &what, l)? {
            caps.extend(expand(level).iter().map(|c| c.to_string()));
            paths
                .entry("*".into())
                .or_default()
                .extend(expand_variables(level).iter().map(|c| c.to_string()));
        }
        if let Some(vb) = s.block("variables")? {
            let vwhat = format!("{what} variables");
            let vpath = format!("{}.variables", s.path);
            let mut vs = Scope::new(&r, &vb.body, vwhat.clone(), vpath.clone());
            for pb in vs.blocks("path") {
                let glob = vs.label(pb, "path")?;
                let pwhat = format!("{vwhat} path {glob:?}");
                let mut ps = Scope::new(&r, &pb.body, pwhat.clone(), format!("{vpath}[{glob}]"));
                let found = ps.strings("capabilities", l)?.unwrap_or_default();
                for c in &found {
                    if !VARIABLE_CAPABILITIES.contains(&c.as_str()) {
                        let line = l.find(&format!("{}.capabilities", ps.path));
                        return Err(r.err(
                            line,
                            format!("{pwhat}: unknown capability {c:?} (read, write, list, destroy or deny)"),
                        ));
                    }
                }
                ps.finish()?;
                paths.entry(glob).or_default().extend(found);
            }
            vs.finish()?;
        }
        for c in s.strings("capabilities", l)?.unwrap_or_default() {
            if !KNOWN_CAPABILITIES.contains(&c.as_str()) {
                let line = l.find(&format!("{}.capabilities", s.path));
                return Err(r.err(line, format!("{what}: unknown capability {c:?}")));
            }
            caps.insert(c);
        }
        s.finish()?;
        if !paths.is_empty() {
            let mine = p.variables.entry(name.clone()).or_default();
            for (glob, caps) in paths {
                mine.entry(glob).or_default().extend(caps);
            }
        }
        p.namespaces.entry(name).or_default().extend(caps);
    }
    for (key, slot) in [
        ("node", &mut p.node),
        ("agent", &mut p.agent),
        ("operator", &mut p.operator),
    ] {
        if let Some(b) = top.block(key)? {
            let mut s = Scope::new(&r, &b.body, key.into(), key.into());
            *slot = level(&mut s, key, l)?;
            s.finish()?;
        }
    }
    top.finish()?;
    Ok(p)
}

/// What a call needs of the caller's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// A namespace capability.
    Namespace(&'a str, &'static str),
    /// A variables capability on a path of a namespace (`list` is checked per variable listed).
    Variable(&'a str, &'a str, &'static str),
    Node(Level),
    Agent(Level),
    Operator(Level),
    /// A management token.
    Management,
    /// Any valid token (or none, when anonymous access is what is asked).
    Nothing,
}

impl Need<'static> {
    /// A capability on jobs (in Yurt's one namespace).
    pub const fn job(capability: &'static str) -> Need<'static> {
        Need::Namespace(DEFAULT_NAMESPACE, capability)
    }
}

/// One of the capabilities Yurt knows, by its name (a `CheckToken` request's).
pub fn capability(name: &str) -> Option<&'static str> {
    KNOWN_CAPABILITIES.iter().copied().find(|c| *c == name)
}

impl std::fmt::Display for Need<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = |l: &Level| if *l == Level::Write { "write" } else { "read" };
        match self {
            Need::Namespace(ns, cap) => write!(f, "{cap} on namespace {ns:?}"),
            Need::Variable(ns, path, cap) => {
                write!(f, "variables {cap} on {path:?} in namespace {ns:?}")
            }
            Need::Node(l) => write!(f, "node {}", level(l)),
            Need::Agent(l) => write!(f, "agent {}", level(l)),
            Need::Operator(l) => write!(f, "operator {}", level(l)),
            Need::Management => f.write_str("a management token"),
            Need::Nothing => f.write_str("nothing"),
        }
    }
}

/// What one token may do: its policies merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acl {
    Management,
    Client(Policy),
}

impl Acl {
    /// The union of `policies`, where a deny wins.
    pub fn of_policies<'p>(policies: impl IntoIterator<Item = &'p Policy>) -> Acl {
        let mut merged = Policy::default();
        for p in policies {
            for (ns, caps) in &p.namespaces {
                merged
                    .namespaces
                    .entry(ns.clone())
                    .or_default()
                    .extend(caps.iter().cloned());
            }
            for (ns, paths) in &p.variables {
                let mine = merged.variables.entry(ns.clone()).or_default();
                for (glob, caps) in paths {
                    mine.entry(glob.clone())
                        .or_default()
                        .extend(caps.iter().cloned());
                }
            }
            for (mine, theirs) in [
                (&mut merged.node, p.node),
                (&mut merged.agent, p.agent),
                (&mut merged.operator, p.operator),
            ] {
                *mine = match (*mine, theirs) {
                    (Some(Level::Deny), _) | (_, Some(Level::Deny)) => Some(Level::Deny),
                    (a, b) => a.max(b),
                };
            }
        }
        Acl::Client(merged)
    }

    /// The capabilities that apply to `ns`: its exact rule, else the longest matching glob.
    fn namespace_caps<'s>(policy: &'s Policy, ns: &str) -> Option<&'s BTreeSet<String>> {
        most_specific(&policy.namespaces, ns)
    }

    /// Whether a variables capability applies: the namespace's rule (as for jobs) must not deny,
    /// and the most specific path rule of that namespace's `variables` must grant it.
    fn variable_allowed(policy: &Policy, ns: &str, path: &str, cap: &str) -> bool {
        if Acl::namespace_caps(policy, ns).is_some_and(|caps| caps.contains(DENY)) {
            return false;
        }
        most_specific(&policy.variables, ns)
            .and_then(|paths| most_specific(paths, path))
            .is_some_and(|caps| !caps.contains(DENY) && caps.contains(cap))
    }

    /// Whether the token may do anything at all in namespace `ns` (a job capability or a
    /// variables rule that is not a deny): what makes a namespace visible to it.
    pub fn sees_namespace(&self, ns: &str) -> bool {
        let policy = match self {
            Acl::Management => return true,
            Acl::Client(p) => p,
        };
        let jobs = Acl::namespace_caps(policy, ns);
        if jobs.is_some_and(|caps| caps.contains(DENY)) {
            return false;
        }
        jobs.is_some_and(|caps| !caps.is_empty())
            || most_specific(&policy.variables, ns)
                .is_some_and(|paths| paths.values().any(|c| !c.contains(DENY) && !c.is_empty()))
    }

    pub fn allows(&self, need: Need<'_>) -> bool {
        let policy = match self {
            Acl::Management => return true,
            Acl::Client(p) => p,
        };
        let at_least = |have: Option<Level>, want: Level| have.is_some_and(|h| h >= want);
        match need {
            Need::Nothing => true,
            Need::Management => false,
            Need::Namespace(ns, cap) => Acl::namespace_caps(policy, ns)
                .is_some_and(|caps| !caps.contains(DENY) && caps.contains(cap)),
            Need::Variable(ns, path, cap) => Acl::variable_allowed(policy, ns, path, cap),
            Need::Node(l) => at_least(policy.node, l),
            Need::Agent(l) => at_least(policy.agent, l),
            Need::Operator(l) => at_least(policy.operator, l),
        }
    }
}

/// The value of `map`'s exact key `name`, else of the longest glob matching it.
fn most_specific<'m, V>(map: &'m BTreeMap<String, V>, name: &str) -> Option<&'m V> {
    if let Some(v) = map.get(name) {
        return Some(v);
    }
    map.iter()
        .filter(|(pattern, _)| glob_match(pattern, name))
        .max_by_key(|(pattern, _)| pattern.len())
        .map(|(_, v)| v)
}

/// `*` matches any run of characters.
fn glob_match(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((prefix, rest)) => {
            let Some(tail) = s.strip_prefix(prefix) else {
                return false;
            };
            if rest.is_empty() {
                return true;
            }
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob_match(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ_ONLY: &str = r#"
namespace "default" {
  policy = "read"
}
node {
  policy = "read"
}
"#;

    #[test]
    fn read_policies_read_and_cannot_write() {
        let p = parse_policy("readonly", READ_ONLY).unwrap();
        let acl = Acl::of_policies([&p]);
        assert!(acl.allows(Need::Namespace("default", READ_JOB)));
        assert!(acl.allows(Need::Namespace("default", LIST_JOBS)));
        assert!(!acl.allows(Need::Namespace("default", SUBMIT_JOB)));
        assert!(!acl.allows(Need::Namespace("other", READ_JOB)));
        assert!(acl.allows(Need::Node(Level::Read)));
        assert!(!acl.allows(Need::Node(Level::Write)));
        assert!(!acl.allows(Need::Operator(Level::Read)));
        assert!(!acl.allows(Need::Management));
        assert!(Acl::Management.allows(Need::Management));
    }

    #[test]
    fn policies_merge_and_deny_wins() {
        let write = parse_policy(
            "w",
            "namespace \"*\" {\n  policy = \"write\"\n}\noperator {\n  policy = \"read\"\n}\n",
        )
        .unwrap();
        let deny = parse_policy(
            "d",
            "namespace \"prod-*\" {\n  policy = \"deny\"\n}\noperator {\n  policy = \"deny\"\n}\n",
        )
        .unwrap();
        let acl = Acl::of_policies([&write, &deny]);
        assert!(acl.allows(Need::Namespace("default", SUBMIT_JOB)));
        assert!(!acl.allows(Need::Namespace("prod-web", READ_JOB)));
        assert!(!acl.allows(Need::Operator(Level::Read)));
        let caps = parse_policy(
            "c",
            "namespace \"default\" {\n  capabilities = [\"read-logs\"]\n}\n",
        )
        .unwrap();
        let acl = Acl::of_policies([&caps]);
        assert!(acl.allows(Need::Namespace("default", READ_LOGS)));
        assert!(!acl.allows(Need::Namespace("default", READ_JOB)));
    }

    #[test]
    fn mistakes_name_the_line_and_field() {
        let cases = [
            (
                "namespace \"default\" {\n  policy = \"admin\"\n}\n",
                "p:2: namespace \"default\": policy must be \"deny\", \"read\" or \"write\", not \"admin\"",
            ),
            (
                "namespace \"default\" {\n  capabilities = [\"fly\"]\n}\n",
                "p:2: namespace \"default\": unknown capability \"fly\"",
            ),
            ("nodes {\n}\n", "p:1: policy: unknown block \"nodes\""),
        ];
        for (src, want) in cases {
            let got = parse_policy("p", src).unwrap_err().to_string();
            assert!(got.starts_with(want), "want {want}\n got {got}");
        }
    }

    #[test]
    fn variables_rules_by_namespace_and_most_specific_path() {
        let p = parse_policy(
            "v",
            r#"
namespace "default" {
  policy = "write"
  variables {
    path "system/*" {
      capabilities = ["list", "read"]
    }
    path "secret/*" {
      capabilities = ["deny"]
    }
  }
}
namespace "apps" {
  variables {
    path "db/*" {
      capabilities = ["read"]
    }
  }
}
namespace "ro" {
  policy = "read"
}
"#,
        )
        .unwrap();
        let acl = Acl::of_policies([&p]);
        let can = |ns, path, cap| acl.allows(Need::Variable(ns, path, cap));
        assert!(can("default", "app/config", VAR_WRITE));
        assert!(can("default", "app/config", VAR_DESTROY));
        assert!(can("default", "system/x", VAR_READ));
        assert!(!can("default", "system/x", VAR_WRITE));
        assert!(!can("default", "secret/x", VAR_READ));
        assert!(can("apps", "db/creds", VAR_READ));
        assert!(!can("apps", "db/creds", VAR_LIST));
        assert!(!can("apps", "web/creds", VAR_READ));
        assert!(!acl.allows(Need::Namespace("apps", READ_JOB)));
        assert!(can("ro", "any/thing", VAR_LIST));
        assert!(can("ro", "any/thing", VAR_READ));
        assert!(!can("ro", "any/thing", VAR_WRITE));
        assert!(!can("other", "a", VAR_READ));
        let err = parse_policy(
            "p",
            "namespace \"d\" {\n  variables {\n    path \"*\" {\n      capabilities = [\"fly\"]\n    }\n  }\n}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "p:4: namespace \"d\" variables path \"*\": unknown capability \"fly\""
            ),
            "{err}"
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("prod-*", "prod-web"));
        assert!(!glob_match("prod-*", "dev-web"));
        assert!(glob_match("a*c", "abbc"));
        assert!(!glob_match("a*c", "abcd"));
    }
}
