//! The CLI's commands, one module per noun (`job`, `node`, `alloc`), Nomad's names and flags.

pub mod acl;
pub mod alloc;
pub mod alloc_fs;
pub mod deployment;
pub mod eval;
pub mod event;
pub mod job;
pub mod job_scale;
pub mod job_spec;
pub mod namespace;
pub mod node;
pub mod server;
pub mod tls;
pub mod var;

use std::time::Duration;

use std::sync::OnceLock;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use yurt_proto::v1::agent_client::AgentClient;
use yurt_proto::v1::AgentInfoRequest;

use crate::output;

/// A command that failed; printed as one sentence.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("Error: cannot reach a Yurt agent at {addr}: {reason}. Is an agent running there? (set -address or YURT_ADDR)")]
    Connect { addr: String, reason: String },
    #[error("Error {action}: {message}")]
    Api {
        action: &'static str,
        message: String,
    },
    #[error("Error: {0}")]
    Spec(#[from] yurt_types::jobspec::SpecError),
    #[error("Error: {0}")]
    Other(String),
    /// `job plan` reports errors with exit code 255.
    #[error("{0}")]
    Plan(Box<CliError>),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Plan(_) => 255,
            _ => 1,
        }
    }

    pub fn api(action: &'static str) -> impl Fn(tonic::Status) -> CliError {
        move |s| {
            let transport = matches!(
                s.code(),
                tonic::Code::Unknown
                    | tonic::Code::Unavailable
                    | tonic::Code::Cancelled
                    | tonic::Code::Internal
            );
            let mut message = s.message().to_string();
            if transport {
                // A transport failure's cause is at the end of its sources.
                let mut src = std::error::Error::source(&s);
                let mut cause = None;
                while let Some(e) = src {
                    cause = Some(e.to_string());
                    src = e.source();
                }
                if let Some(c) = cause.filter(|c| !message.contains(c.as_str())) {
                    message = format!("{message}: {c}");
                }
                message.push_str(tls_hint(&message));
            }
            CliError::Api { action, message }
        }
    }
}

pub type CmdResult = Result<u8, CliError>;

/// What to try when a connection failed the way a TLS mismatch fails, or "".
fn tls_hint(message: &str) -> &'static str {
    let tls = DIALER.get().is_some_and(|d| d.is_tls());
    let message = message.to_lowercase();
    // How a TLS agent's refusal shows on the wire: the handshake fails, or the agent drops a
    // connection that did not speak TLS, or (TLS 1.3) one without an acceptable certificate.
    let dropped = [
        "h2 protocol error",
        "connection reset",
        "operation was canceled",
        "broken pipe",
    ]
    .iter()
    .any(|m| message.contains(m));
    let bad_certificate = message.contains("certificate") || message.contains("fatal alert");
    if message.contains("invalid peer certificate") {
        " (the agent's certificate is not signed by the CA given with -ca-cert, or does not name the address; see -tls-server-name)"
    } else if !tls && dropped {
        " (the agent may require TLS: give -ca-cert or set YURT_CACERT)"
    } else if tls && (dropped || bad_certificate) {
        " (the agent may require a client certificate signed by its CA: give -client-cert and -client-key)"
    } else {
        ""
    }
}

static STALE: OnceLock<bool> = OnceLock::new();
static DIALER: OnceLock<yurt_tls::Dialer> = OnceLock::new();

/// Set once from the global TLS flags: how every command dials the agent.
pub fn set_dialer(dialer: yurt_tls::Dialer) {
    let _ = DIALER.set(dialer);
}

/// Set once from the global `-stale` flag: reads may be answered from any server's copy.
pub fn set_stale(stale: bool) {
    let _ = STALE.set(stale);
}

type Token = tonic::metadata::MetadataValue<tonic::metadata::Ascii>;
static TOKEN: OnceLock<Option<Token>> = OnceLock::new();

/// Set once from the global `-token` flag (`YURT_TOKEN`): the ACL token every call carries.
pub fn set_token(secret: Option<&str>) -> Result<(), CliError> {
    let token = match secret.filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(s.parse().map_err(|_| {
            CliError::Other("-token must be printable ASCII (an ACL token's secret ID)".into())
        })?),
    };
    let _ = TOKEN.set(token);
    Ok(())
}

static NAMESPACE: OnceLock<Option<Token>> = OnceLock::new();

/// Set once from the global `-namespace` flag (`YURT_NAMESPACE`, `NOMAD_NAMESPACE`).
pub fn set_namespace(ns: Option<&str>) -> Result<(), CliError> {
    let ns =
        match ns.filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(s.parse().map_err(|_| {
                CliError::Other(format!("-namespace {s:?} is not a namespace name"))
            })?),
        };
    let _ = NAMESPACE.set(ns);
    Ok(())
}

/// Whether the command reads every namespace (`-namespace '*'`).
pub fn all_namespaces() -> bool {
    NAMESPACE
        .get()
        .and_then(Option::as_ref)
        .is_some_and(|ns| ns.as_bytes() == b"*")
}

/// Adds the request metadata every call carries: `yurt-stale` when `-stale` was given, the ACL
/// token (`x-nomad-token`) and the namespace (`yurt-namespace`) when they were.
#[derive(Clone)]
pub struct Meta {
    stale: bool,
    token: Option<Token>,
    namespace: Option<Token>,
}

impl tonic::service::Interceptor for Meta {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if self.stale {
            req.metadata_mut().insert(
                "yurt-stale",
                tonic::metadata::MetadataValue::from_static("true"),
            );
        }
        if let Some(t) = &self.token {
            req.metadata_mut()
                .insert(yurt_types::acl::TOKEN_KEY, t.clone());
        }
        if let Some(ns) = &self.namespace {
            req.metadata_mut().insert("yurt-namespace", ns.clone());
        }
        Ok(req)
    }
}

/// A connection to an agent, with the CLI's request metadata.
pub type Conn = InterceptedService<Channel, Meta>;

/// Connects to the agent at `addr` (`http://host:port` or `host:port`).
pub async fn connect(addr: &str) -> Result<Conn, CliError> {
    let channel = connect_channel(addr).await?;
    Ok(InterceptedService::new(
        channel,
        Meta {
            stale: STALE.get().copied().unwrap_or(false),
            token: TOKEN.get().cloned().flatten(),
            namespace: NAMESPACE.get().cloned().flatten(),
        },
    ))
}

async fn connect_channel(addr: &str) -> Result<Channel, CliError> {
    let fail = |reason: String| CliError::Connect {
        addr: addr.to_string(),
        reason,
    };
    DIALER
        .get_or_init(yurt_tls::Dialer::plain)
        .endpoint(addr, yurt_tls::Peer::Any)
        .map_err(|e| fail(e.to_string()))?
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .map_err(|e| {
            let mut reason = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                reason = s.to_string();
                src = s.source();
            }
            let hint = tls_hint(&reason);
            fail(format!("{reason}{hint}"))
        })
}

pub async fn agent_info(addr: &str, json: bool) -> CmdResult {
    let mut client = AgentClient::new(connect(addr).await?);
    let mut info = client
        .info(AgentInfoRequest {})
        .await
        .map_err(CliError::api("querying agent info"))?
        .into_inner();
    if json {
        print!("{}", output::json(&info));
        return Ok(0);
    }
    // The agent's own section first (`server`, `leader`, `bootstrap`, `known_regions`, as the
    // seed guides show Nomad's), then the others by name.
    info.sections
        .sort_by(|a, b| (a.name != "yurt", &a.name).cmp(&(b.name != "yurt", &b.name)));
    let mut out = String::new();
    for s in info.sections {
        out.push_str(&s.name);
        out.push('\n');
        let mut keys: Vec<_> = s.values.into_iter().collect();
        keys.sort();
        for (k, v) in keys {
            out.push_str(&format!("  {k} = {v}\n"));
        }
    }
    print!("{out}");
    Ok(0)
}
