//! `yurt tls ca create` and `yurt tls cert create -server|-client|-cli`: a private CA and the
//! agents' certificates for a test cluster, named as the agents expect (`server.global.yurt`).
//! Files are written to the current directory and never overwritten.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use yurt_tls::Role;

use super::{CliError, CmdResult};

#[derive(Subcommand, Debug)]
pub enum TlsCmd {
    /// Certificate authorities.
    Ca {
        #[command(subcommand)]
        cmd: CaCmd,
    },
    /// Agent and CLI certificates, signed by the CA.
    Cert {
        #[command(subcommand)]
        cmd: CertCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum CaCmd {
    /// Create a CA: `yurt-agent-ca.pem` and its key `yurt-agent-ca-key.pem`.
    Create {
        /// Days the CA is valid.
        #[arg(long, default_value_t = 1825)]
        days: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum CertCmd {
    /// Create a certificate and key: `<region>-<role>-yurt.pem` and `...-key.pem`.
    Create(CertArgs),
}

#[derive(Args, Debug)]
pub struct CertArgs {
    /// A certificate for a server agent (`server.<region>.yurt`).
    #[arg(long, group = "role")]
    server: bool,
    /// A certificate for a client agent (`client.<region>.yurt`).
    #[arg(long, group = "role")]
    client: bool,
    /// A certificate for the CLI (`cli.<region>.yurt`).
    #[arg(long, group = "role")]
    cli: bool,
    /// The region the agent serves.
    #[arg(long, default_value = "global")]
    region: String,
    /// The CA certificate.
    #[arg(long, default_value = CA_FILE)]
    ca: PathBuf,
    /// The CA's key.
    #[arg(long, default_value = CA_KEY_FILE)]
    key: PathBuf,
    /// Days the certificate is valid.
    #[arg(long, default_value_t = 365)]
    days: i64,
    /// Another DNS name the certificate names (repeatable).
    #[arg(long = "additional-dnsname")]
    additional_dnsname: Vec<String>,
    /// Another IP address the certificate names (repeatable).
    #[arg(long = "additional-ipaddress")]
    additional_ipaddress: Vec<String>,
}

const CA_FILE: &str = "yurt-agent-ca.pem";
const CA_KEY_FILE: &str = "yurt-agent-ca-key.pem";

fn fail(what: impl std::fmt::Display) -> CliError {
    CliError::Other(what.to_string())
}

/// Writes `contents` to a new file; an existing file is an error, never overwritten.
fn write_new(path: &Path, contents: &str, private: bool) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => fail(format!(
                "{} already exists; not overwriting it",
                path.display()
            )),
            _ => fail(format!("cannot write {}: {e}", path.display())),
        })?;
    f.write_all(contents.as_bytes())
        .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))
}

fn validity(params: &mut CertificateParams, days: i64) -> Result<(), CliError> {
    if days < 1 {
        return Err(fail(format!("-days must be at least 1, not {days}")));
    }
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + time::Duration::days(days);
    Ok(())
}

pub fn run(cmd: TlsCmd) -> CmdResult {
    match cmd {
        TlsCmd::Ca {
            cmd: CaCmd::Create { days },
        } => create_ca(days),
        TlsCmd::Cert {
            cmd: CertCmd::Create(args),
        } => create_cert(&args),
    }
}

fn create_ca(days: i64) -> CmdResult {
    let cert_path = PathBuf::from(CA_FILE);
    let key_path = PathBuf::from(CA_KEY_FILE);
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(fail(format!(
                "{} already exists; not overwriting it",
                p.display()
            )));
        }
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "Yurt Agent CA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Yurt");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, days)?;
    let key = KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    write_new(&key_path, &key.serialize_pem(), true)?;
    write_new(&cert_path, &cert.pem(), false)?;
    println!("==> CA certificate saved to {}", cert_path.display());
    println!("==> CA certificate key saved to {}", key_path.display());
    Ok(0)
}

fn create_cert(args: &CertArgs) -> CmdResult {
    let role = match (args.server, args.client, args.cli) {
        (true, _, _) => Role::Server,
        (_, true, _) => Role::Client,
        (_, _, true) => Role::Cli,
        _ => return Err(fail("say which certificate: -server, -client or -cli")),
    };
    let (ca_path, ca_key_path) = (&args.ca, &args.key);
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| {
            fail(format!(
                "cannot read {}: {e} (create a CA with `yurt tls ca create`, or give -ca and -key)",
                p.display()
            ))
        })
    };
    let ca_key = KeyPair::from_pem(&read(ca_key_path)?).map_err(|e| {
        fail(format!(
            "{} is not a private key: {e}",
            ca_key_path.display()
        ))
    })?;
    let issuer = Issuer::from_ca_cert_pem(&read(ca_path)?, ca_key).map_err(|e| {
        fail(format!(
            "{} is not a CA certificate: {e}",
            ca_path.display()
        ))
    })?;

    let name = role.name(&args.region);
    let mut names = vec![name.clone(), "localhost".to_string()];
    if role != Role::Cli {
        names.push("127.0.0.1".into());
    }
    names.extend(args.additional_dnsname.iter().cloned());
    for ip in &args.additional_ipaddress {
        ip.parse::<std::net::IpAddr>()
            .map_err(|_| fail(format!("-additional-ipaddress {ip:?} is not an IP address")))?;
        names.push(ip.clone());
    }
    let mut params = CertificateParams::new(names).map_err(fail)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, &name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, args.days)?;
    let key = KeyPair::generate().map_err(fail)?;
    let cert = params.signed_by(&key, &issuer).map_err(fail)?;

    let base = format!("{}-{}-yurt", args.region, role.as_str());
    let cert_path = PathBuf::from(format!("{base}.pem"));
    let key_path = PathBuf::from(format!("{base}-key.pem"));
    if cert_path.exists() {
        return Err(fail(format!(
            "{} already exists; not overwriting it",
            cert_path.display()
        )));
    }
    write_new(&key_path, &key.serialize_pem(), true)?;
    write_new(&cert_path, &cert.pem(), false)?;
    let what = match role {
        Role::Server => "Server",
        Role::Client => "Client",
        Role::Cli => "Cli",
    };
    println!(
        "==> Using CA file {} and CA key {}",
        ca_path.display(),
        ca_key_path.display()
    );
    println!("==> {what} Certificate saved to {}", cert_path.display());
    println!("==> {what} Certificate key saved to {}", key_path.display());
    Ok(0)
}
