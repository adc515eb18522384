//! TLS for the agents' connections: the one place a connection to an agent is dialled
//! (plaintext, or mutual TLS over rustls), the servers' TLS settings, and the check of a
//! certificate's role. The `tls` block and the role names are `yurt_types::tls`'s.
//!
//! As in Nomad, every agent certificate names its role in its region: `server.global.yurt`,
//! `client.global.yurt`, `cli.global.yurt`. With `verify_server_hostname`, an agent dialling a
//! server accepts only a certificate naming `server.<region>.yurt` (and a server dialling a
//! client only `client.<region>.yurt`), and an agent answering checks its caller's role for the
//! calls only agents make ([`roles_for`]): a CLI certificate cannot speak Raft. The PEM files
//! are read through the caller's [`ReadFile`], so this module does no I/O itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use yurt_types::tls::{roles_for, Role, TlsConfig};

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// Why TLS could not be set up. Each names the file or setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls: {field} is required when {why}")]
    Missing {
        field: &'static str,
        why: &'static str,
    },
    #[error("tls: cannot read {field} {path}: {message}")]
    Read {
        field: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("tls: {0}")]
    Setup(String),
}

/// The PEM files of one identity, read and checked once.
#[derive(Clone)]
struct Pem {
    ca: Vec<u8>,
    /// Certificate and key.
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// A rustls setup failure as this crate's error.
fn setup(e: impl std::fmt::Display) -> TlsError {
    TlsError::Setup(e.to_string())
}

/// How the PEM files are read: the caller's I/O (`std::fs::read`), so this module stays pure.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<Vec<u8>>;

fn read(read_file: ReadFile<'_>, field: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let bytes = read_file(path).map_err(|e| TlsError::Read {
        field,
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let bad = |what: &str| TlsError::Read {
        field,
        path: path.to_path_buf(),
        message: format!("it holds no PEM {what}"),
    };
    match field {
        "key_file" => {
            PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| bad("private key"))?;
        }
        _ => {
            CertificateDer::pem_slice_iter(&bytes)
                .next()
                .and_then(Result::ok)
                .ok_or_else(|| bad("certificate"))?;
        }
    }
    Ok(bytes)
}

impl Pem {
    fn load(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
        why: &'static str,
        identity_required: bool,
        read_file: ReadFile<'_>,
    ) -> Result<Pem, TlsError> {
        let missing = |field| TlsError::Missing { field, why };
        let ca = ca.ok_or(missing("ca_file"))?;
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) if !identity_required => None,
            (None, _) => return Err(missing("cert_file")),
            (_, None) => return Err(missing("key_file")),
        };
        let ca = read(read_file, "ca_file", ca)?;
        let identity = match identity {
            Some((c, k)) => Some((
                read(read_file, "cert_file", c)?,
                read(read_file, "key_file", k)?,
            )),
            None => None,
        };
        Ok(Pem { ca, identity })
    }

    /// The CA's certificates, as rustls's roots.
    fn roots(&self) -> Result<rustls::RootCertStore, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&self.ca) {
            roots.add(c.map_err(setup)?).map_err(setup)?;
        }
        Ok(roots)
    }

    /// The certificate chain and key, as rustls takes them (an agent's: `of_agent` requires it).
    fn chain_and_key(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let (cert, key) = self.identity.as_ref().expect("required by of_agent");
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(setup)?;
        Ok((chain, PrivateKeyDer::from_pem_slice(key).map_err(setup)?))
    }

    fn of_agent(
        cfg: &TlsConfig,
        why: &'static str,
        read_file: ReadFile<'_>,
    ) -> Result<Pem, TlsError> {
        Pem::load(
            cfg.ca_file.as_deref(),
            cfg.cert_file.as_deref(),
            cfg.key_file.as_deref(),
            why,
            true,
            read_file,
        )
    }
}

/// Which peer a connection is for: decides the name its certificate must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Server,
    Client,
    /// Whatever agent answers at the address (the CLI's case).
    Any,
}

/// How names are checked on dialled certificates.
#[derive(Clone)]
enum Names {
    /// `server.<region>.yurt` / `client.<region>.yurt` by peer (`verify_server_hostname`).
    Roles(String),
    /// The host of the address dialled, as any TLS client would.
    Address,
    /// One name for every peer (the CLI's `-tls-server-name`).
    Fixed(String),
}

#[derive(Clone)]
struct ClientSide {
    pem: Pem,
    names: Names,
}

/// How this process dials agents: plaintext, or mutual TLS with its certificate.
#[derive(Clone, Default)]
pub struct Dialer {
    tls: Option<Arc<ClientSide>>,
    /// The address outgoing connections start from (the agent's bind address, when it names
    /// one): a host's agents on their own addresses reach each other from them, so that a
    /// firewall rule (or a test's partition) can tell them apart.
    source: Option<std::net::IpAddr>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.tls.is_some() {
            "Dialer(tls)"
        } else {
            "Dialer(plain)"
        })
    }
}

impl Dialer {
    /// Plaintext connections.
    pub fn plain() -> Dialer {
        Dialer::default()
    }

    /// An agent's dialer: mutual TLS with the agent's certificate when `tls.rpc` is set.
    pub fn agent(
        cfg: &TlsConfig,
        region: &str,
        read_file: ReadFile<'_>,
    ) -> Result<Dialer, TlsError> {
        if !cfg.rpc {
            return Ok(Dialer::plain());
        }
        let pem = Pem::of_agent(cfg, "tls.rpc is set", read_file)?;
        let names = if cfg.verify_server_hostname {
            Names::Roles(region.to_string())
        } else {
            Names::Address
        };
        Ok(Dialer {
            tls: Some(Arc::new(ClientSide { pem, names })),
            source: None,
        })
    }

    /// This dialer, connecting from `bind` when it is one address (not `0.0.0.0` or `::`).
    pub fn from_address(self, bind: &str) -> Dialer {
        let source = bind
            .parse::<std::net::IpAddr>()
            .ok()
            .filter(|ip| !ip.is_unspecified());
        Dialer { source, ..self }
    }

    /// The CLI's dialer: TLS when a CA certificate is given (`-ca-cert`/`YURT_CACERT`), with a
    /// client certificate when given; the agent's certificate must name the address's host, or
    /// `server_name` when set.
    pub fn cli(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
        server_name: Option<&str>,
        read_file: ReadFile<'_>,
    ) -> Result<Dialer, TlsError> {
        if ca.is_none() {
            if cert.is_some() || key.is_some() {
                return Err(TlsError::Missing {
                    field: "-ca-cert",
                    why: "a client certificate is given",
                });
            }
            return Ok(Dialer::plain());
        }
        let pem = Pem::load(
            ca,
            cert,
            key,
            "a client certificate is given",
            false,
            read_file,
        )?;
        let names = match server_name {
            Some(n) => Names::Fixed(n.to_string()),
            None => Names::Address,
        };
        Ok(Dialer {
            tls: Some(Arc::new(ClientSide { pem, names })),
            source: None,
        })
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The endpoint for an agent at `addr` (`host:port`, or a URL whose scheme is replaced).
    pub fn endpoint(&self, addr: &str, peer: Peer) -> Result<Endpoint, tonic::transport::Error> {
        let hostport = addr.split_once("://").map_or(addr, |(_, rest)| rest);
        let hostport = hostport.trim_end_matches('/');
        let Some(tls) = &self.tls else {
            return Ok(Endpoint::from_shared(format!("http://{hostport}"))?
                .local_address(self.source_for(hostport)));
        };
        let domain = match (&tls.names, peer) {
            (Names::Roles(region), Peer::Server) => Role::Server.name(region),
            (Names::Roles(region), Peer::Client) => Role::Client.name(region),
            (Names::Fixed(name), _) => name.clone(),
            _ => host_of(hostport).to_string(),
        };
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&tls.pem.ca))
            .domain_name(domain);
        if let Some((cert, key)) = &tls.pem.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        Ok(Endpoint::from_shared(format!("https://{hostport}"))?
            .tls_config(config)?
            .local_address(self.source_for(hostport)))
    }

    /// The source address of a connection to `hostport`: the bind address, but a loopback
    /// one only towards a loopback address (it could reach nothing else), and never towards an
    /// address of the other family; otherwise the system chooses.
    fn source_for(&self, hostport: &str) -> Option<std::net::IpAddr> {
        let source = self.source?;
        let host = host_of(hostport)
            .trim_start_matches('[')
            .trim_end_matches(']');
        match host.parse::<std::net::IpAddr>().ok() {
            Some(dest) if dest.is_ipv4() != source.is_ipv4() => None,
            Some(dest) if source.is_loopback() && !dest.is_loopback() => None,
            None if source.is_loopback() => None,
            _ => Some(source),
        }
    }
}

/// `host` of `host:port` (`[::1]:4647` → `::1`).
fn host_of(hostport: &str) -> &str {
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            hostport
        }
    });
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The gRPC port's TLS: the agent's certificate, and a certificate from the CA required of
/// every caller.
pub fn grpc_server(
    cfg: &TlsConfig,
    read_file: ReadFile<'_>,
) -> Result<Option<ServerTlsConfig>, TlsError> {
    if !cfg.rpc {
        return Ok(None);
    }
    let pem = Pem::of_agent(cfg, "tls.rpc is set", read_file)?;
    let (cert, key) = pem.identity.expect("required by of_agent");
    Ok(Some(
        ServerTlsConfig::new()
            .identity(Identity::from_pem(cert, key))
            .client_ca_root(Certificate::from_pem(pem.ca)),
    ))
}

/// The HTTP API's TLS (rustls directly, for hyper): the agent's certificate, and with
/// `verify_https_client` a certificate from the CA required of every caller.
pub fn https_server(
    cfg: &TlsConfig,
    read_file: ReadFile<'_>,
) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    if !cfg.http {
        return Ok(None);
    }
    let pem = Pem::of_agent(cfg, "tls.http is set", read_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(setup)?;
    let builder = if cfg.verify_https_client {
        let roots = Arc::new(pem.roots()?);
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(setup)?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let (chain, key) = pem.chain_and_key()?;
    let mut config = builder.with_single_cert(chain, key).map_err(setup)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// How a client agent calls a server's HTTP API over TLS: see [`https_client`].
#[derive(Clone, Debug)]
pub struct HttpsClient {
    pub config: Arc<rustls::ClientConfig>,
    /// The name the server's certificate must carry (`None`: the address's host).
    name: Option<String>,
}

impl HttpsClient {
    /// The name to check the certificate of the server at `host` against.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        let name = self.name.clone().unwrap_or_else(|| host.to_string());
        ServerName::try_from(name.clone()).map_err(|e| format!("{name}: {e}"))
    }
}

/// A client agent's TLS towards a server's HTTP API (`tls.http`): the CA's roots, the agent's
/// certificate as its identity (a server may require one: `verify_https_client`), and the name
/// the server's certificate must carry: its role's (`server.REGION.yurt`) with
/// `verify_server_hostname`, else the address's host.
pub fn https_client(
    cfg: &TlsConfig,
    region: &str,
    read_file: ReadFile<'_>,
) -> Result<Option<HttpsClient>, TlsError> {
    if !cfg.http {
        return Ok(None);
    }
    let pem = Pem::of_agent(cfg, "tls.http is set", read_file)?;
    let (chain, key) = pem.chain_and_key()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(setup)?
        .with_root_certificates(pem.roots()?)
        .with_client_auth_cert(chain, key)
        .map_err(setup)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(HttpsClient {
        config: Arc::new(config),
        name: cfg
            .verify_server_hostname
            .then(|| Role::Server.name(region)),
    }))
}

/// Whether a certificate (DER) names `role` in `region`.
pub fn has_role(cert: &[u8], role: Role, region: &str) -> bool {
    let der = CertificateDer::from(cert);
    let Ok(cert) = webpki::EndEntityCert::try_from(&der) else {
        return false;
    };
    let name = role.name(region);
    match ServerName::try_from(name.as_str()) {
        Ok(n) => cert.verify_is_valid_for_subject_name(&n).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_start_from_the_bind_address_where_it_can_reach() {
        let d = Dialer::plain().from_address("127.9.9.2");
        let ip = |s: &str| s.parse::<std::net::IpAddr>().ok();
        assert_eq!(d.source_for("127.9.9.3:4647"), ip("127.9.9.2"));
        assert_eq!(d.source_for("[::1]:4647"), None, "another family");
        // A loopback source could reach nothing else: the system chooses.
        assert_eq!(d.source_for("10.0.0.5:4647"), None);
        assert_eq!(d.source_for("server.example:4647"), None);
        let d = Dialer::plain().from_address("10.0.0.4");
        assert_eq!(d.source_for("10.0.0.5:4647"), ip("10.0.0.4"));
        assert_eq!(
            Dialer::plain()
                .from_address("0.0.0.0")
                .source_for("10.0.0.5:1"),
            None
        );
    }

    #[test]
    fn certificates_name_their_role_and_region() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["server.global.yurt".into(), "localhost".into()])
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().as_ref();
        assert!(has_role(der, Role::Server, "global"));
        assert!(!has_role(der, Role::Client, "global"));
        assert!(!has_role(der, Role::Server, "eu"));
        assert!(!has_role(b"not a certificate", Role::Server, "global"));
    }

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("127.0.0.1:4647"), "127.0.0.1");
        assert_eq!(host_of("[::1]:4647"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }

    #[test]
    fn missing_files_are_named() {
        let cfg = TlsConfig {
            rpc: true,
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        };
        let no_files = |p: &Path| -> std::io::Result<Vec<u8>> {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} not found", p.display()),
            ))
        };
        let e = Dialer::agent(&cfg, "global", &no_files)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "tls: cert_file is required when tls.rpc is set");
        let cfg = TlsConfig {
            cert_file: Some("/nonexistent/c.pem".into()),
            key_file: Some("/nonexistent/k.pem".into()),
            ..cfg
        };
        let e = Dialer::agent(&cfg, "global", &no_files)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("tls: cannot read ca_file /nonexistent/ca.pem: "),
            "{e}"
        );
        let e = Dialer::cli(None, Some(Path::new("c.pem")), None, None, &no_files)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "tls: -ca-cert is required when a client certificate is given"
        );
    }
}
