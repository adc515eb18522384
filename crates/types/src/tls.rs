//! The agent's `tls` block and the roles agent certificates carry (pure; the dialling and the
//! certificates' checks are `yurt-tls`'s).
//!
//! As in Nomad, every agent certificate names its role in its region: `server.global.yurt`,
//! `client.global.yurt`, `cli.global.yurt`; [`roles_for`] says which roles may make the calls
//! only agents make.

use std::path::PathBuf;

/// The agent's `tls` block (Nomad's names and meaning).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// TLS on the HTTP API.
    pub http: bool,
    /// Mutual TLS on the gRPC port: Raft, clients, and the CLI.
    pub rpc: bool,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Check that a dialled server's certificate names `server.<region>.yurt` (and a dialled
    /// client's `client.<region>.yurt`), and that callers of agent-only calls carry one.
    pub verify_server_hostname: bool,
    /// Require a certificate from the CA of HTTPS callers.
    pub verify_https_client: bool,
}

/// Who a certificate was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
    Cli,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
            Role::Cli => "cli",
        }
    }

    /// The DNS name a certificate for this role carries: `server.global.yurt`.
    pub fn name(self, region: &str) -> String {
        format!("{}.{region}.yurt", self.as_str())
    }
}

/// The roles that may make a gRPC call (by its path, `/package.Service/Method`); `None`: any
/// certificate from the CA (the CLI's). Raft and gossip are for servers; registration,
/// heartbeats and allocation updates for clients (and servers, which forward them); a client
/// agent's file API for the servers that proxy `alloc logs`.
pub fn roles_for(path: &str) -> Option<&'static [Role]> {
    let (service, method) = path.trim_start_matches('/').rsplit_once('/')?;
    match (service, method) {
        ("yurt.internal.v1.RaftTransport", _) | ("yurt.v1.ClientFs", _) => Some(&[Role::Server]),
        (
            "yurt.v1.Nodes",
            "Register" | "Heartbeat" | "ClientAllocs" | "UpdateAllocs" | "CheckToken",
        ) => Some(&[Role::Client, Role::Server]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_only_calls_name_their_roles() {
        assert_eq!(
            roles_for("/yurt.internal.v1.RaftTransport/AppendEntries"),
            Some(&[Role::Server][..])
        );
        assert_eq!(
            roles_for("/yurt.v1.Nodes/Heartbeat"),
            Some(&[Role::Client, Role::Server][..])
        );
        assert_eq!(roles_for("/yurt.v1.Nodes/List"), None);
        assert_eq!(roles_for("/yurt.v1.Jobs/Register"), None);
        assert_eq!(
            roles_for("/yurt.v1.Nodes/CheckToken"),
            Some(&[Role::Client, Role::Server][..])
        );
        assert_eq!(
            roles_for("/yurt.v1.ClientFs/Logs"),
            Some(&[Role::Server][..])
        );
    }
}
