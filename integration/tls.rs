//! TLS everywhere: certificates made by `yurt tls`, three servers speaking Raft over mutual
//! TLS, a client agent, the CLI and HTTPS; peers without the right certificate are refused.
//! ACLs are on too, as in production: a token made on one server works on the others.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::harness::*;

/// Runs `yurt ARGS` in `dir` (where `yurt tls` writes its files) and expects success.
fn yurt_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(YURT)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "yurt {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// An agent config with a `tls` block using the certificates `yurt tls` made in `dir`.
fn tls_config(dir: &Path, role: &str, extra: &str) -> String {
    let path = dir.join(format!("{role}.hcl"));
    let d = dir.display();
    std::fs::write(
        &path,
        format!(
            "tls {{\n  http = true\n  rpc = true\n  ca_file = \"{d}/yurt-agent-ca.pem\"\n  cert_file = \"{d}/global-{role}-yurt.pem\"\n  key_file = \"{d}/global-{role}-yurt-key.pem\"\n  verify_server_hostname = true\n  verify_https_client = true\n}}\n{extra}"
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// The CLI's environment for certificates in `dir`, with or without its own certificate.
fn cli_env(dir: &Path, with_cert: bool) -> Vec<(String, String)> {
    let file = |f: &str| dir.join(f).display().to_string();
    let mut env = vec![("YURT_CACERT".into(), file("yurt-agent-ca.pem"))];
    if with_cert {
        env.push(("YURT_CLIENT_CERT".into(), file("global-cli-yurt.pem")));
        env.push(("YURT_CLIENT_KEY".into(), file("global-cli-yurt-key.pem")));
    }
    env
}

/// GET over HTTPS with rustls, trusting `ca` and presenting `identity` (cert, key) if given.
/// Returns the status line and body, or the error that ended the exchange.
fn https_get(
    addr: &str,
    path: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    token: &str,
) -> Result<(String, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(timeout())).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nX-Nomad-Token: {token}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    tls.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    ))
}

#[test]
fn a_tls_cluster_works_end_to_end_and_peers_without_the_right_certificate_are_refused() {
    let dir = TestDir::new();
    let certs = dir.path.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let made = yurt_in(&certs, &["tls", "ca", "create"]);
    assert!(made.contains("yurt-agent-ca.pem"), "{made}");
    for role in ["-server", "-client", "-cli"] {
        yurt_in(&certs, &["tls", "cert", "create", role]);
    }
    // Making the same certificate again never overwrites it.
    let again = Command::new(YURT)
        .args(["tls", "cert", "create", "-server"])
        .current_dir(&certs)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    // Another CA, as an attacker or a misconfigured peer would have.
    let other = dir.path.join("other");
    std::fs::create_dir_all(&other).unwrap();
    yurt_in(&other, &["tls", "ca", "create"]);
    yurt_in(&other, &["tls", "cert", "create", "-cli"]);
    yurt_in(&other, &["tls", "cert", "create", "-server"]);

    // Three servers: Raft, gossip and forwarding all over mutual TLS.
    let server_cfg = tls_config(&certs, "server", "acl {\n  enabled = true\n}\n");
    let mut servers: Vec<Agent> = Vec::new();
    for i in 1..=3 {
        let name = format!("s{i}");
        let mut args = vec![
            "-server",
            "-node",
            &name,
            "-bootstrap-expect",
            "3",
            "-config",
            &server_cfg,
        ];
        let join = servers.first().map(|s| s.grpc.clone());
        if let Some(j) = &join {
            args.extend(["-join", j]);
        }
        let mut s = Agent::start(&dir.path.join(&name), &args);
        s.cli_env = cli_env(&certs, true);
        servers.push(s);
    }
    // Bootstrap ACLs as soon as there is a leader; the management token then goes with every
    // command, and a token created through one server works through the others.
    let root = wait_for("the ACL bootstrap", || {
        let out = servers[0].yurt(&["acl", "bootstrap"]);
        let text = stdout(&out);
        text.lines()
            .find_map(|l| l.strip_prefix("Secret ID    = "))
            .map(str::to_string)
            .ok_or_else(|| stderr(&out))
    });
    for s in &mut servers {
        s.cli_env.push(("YURT_TOKEN".into(), root.clone()));
    }
    std::fs::write(dir.path.join("ro.hcl"), "node {\n  policy = \"read\"\n}\n").unwrap();
    servers[0].ok(&[
        "acl",
        "policy",
        "apply",
        "nodes",
        dir.path.join("ro.hcl").to_str().unwrap(),
    ]);
    let made = servers[0].ok(&["acl", "token", "create", "-policy", "nodes"]);
    let reader = made
        .lines()
        .find_map(|l| l.strip_prefix("Secret ID    = "))
        .unwrap()
        .to_string();
    wait_for("three alive servers and a leader", || {
        let out = stdout(&servers[2].yurt(&["server", "members"]));
        let alive = out.lines().filter(|l| l.contains(" alive ")).count();
        let leader = out.lines().any(|l| l.contains("true"));
        if alive == 3 && leader {
            Ok(())
        } else {
            Err(out)
        }
    });

    // A client agent with its client certificate registers and runs a job.
    let client_cfg = tls_config(&certs, "client", RAW_EXEC_ON);
    let servers_list = grpc_list(&servers);
    let client = Agent::start(
        &dir.path.join("c1"),
        &["-client", "-config", &client_cfg, "-servers", &servers_list],
    );
    let s = &servers[1];
    wait_for("the client's node ready", || {
        let out = stdout(&s.yurt(&["node", "status"]));
        if out
            .lines()
            .filter(|l| l.trim_end().ends_with("ready"))
            .count()
            == 1
        {
            Ok(())
        } else {
            Err(out)
        }
    });
    let job = web_job(&dir.path, "over-tls");
    s.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    let allocs = s.wait_running("web", 2);
    // Logs: the CLI asks a server, which reads them from the client agent over mutual TLS.
    wait_for("the task's output through alloc logs", || {
        let out = s.yurt(&["alloc", "logs", &allocs[0]]);
        let text = stdout(&out);
        if text.contains("over-tls") {
            Ok(())
        } else {
            Err(format!("{text}{}", stderr(&out)))
        }
    });

    // The CLI without TLS, with another CA, or without its certificate is refused.
    let refused = |env: Vec<(String, String)>, want: &str| {
        let out = Command::new(YURT)
            .args(["node", "status"])
            .env("YURT_ADDR", &s.grpc)
            .envs(env)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains(want), "want {want:?} in: {err}");
    };
    refused(vec![], "the agent may require TLS");
    refused(
        vec![
            (
                "YURT_CACERT".into(),
                other.join("yurt-agent-ca.pem").display().to_string(),
            ),
            (
                "YURT_CLIENT_CERT".into(),
                certs.join("global-cli-yurt.pem").display().to_string(),
            ),
            (
                "YURT_CLIENT_KEY".into(),
                certs.join("global-cli-yurt-key.pem").display().to_string(),
            ),
        ],
        "invalid peer certificate",
    );
    refused(cli_env(&certs, false), "client certificate");
    refused(
        vec![
            (
                "YURT_CACERT".into(),
                certs.join("yurt-agent-ca.pem").display().to_string(),
            ),
            (
                "YURT_CLIENT_CERT".into(),
                other.join("global-cli-yurt.pem").display().to_string(),
            ),
            (
                "YURT_CLIENT_KEY".into(),
                other.join("global-cli-yurt-key.pem").display().to_string(),
            ),
        ],
        "client certificate",
    );

    // A client agent holding a CLI certificate (right CA, wrong role) cannot register.
    let wrong_role = dir.path.join("wrong-role.hcl");
    std::fs::write(
        &wrong_role,
        std::fs::read_to_string(&client_cfg)
            .unwrap()
            .replace("global-client-yurt", "global-cli-yurt"),
    )
    .unwrap();
    let impostor = Agent::start(
        &dir.path.join("c2"),
        &[
            "-client",
            "-config",
            wrong_role.to_str().unwrap(),
            "-servers",
            &servers[0].grpc,
        ],
    );
    wait_for("the impostor's registration refused", || {
        let log = impostor.log_text();
        if log.contains("refused /yurt.v1.Nodes/Register") && log.contains("client.global.yurt") {
            Ok(())
        } else {
            Err(log)
        }
    });
    // A server from another CA cannot join.
    let stranger_cfg = dir.path.join("stranger.hcl");
    let o = other.display();
    std::fs::write(
        &stranger_cfg,
        format!("tls {{\n  rpc = true\n  ca_file = \"{o}/yurt-agent-ca.pem\"\n  cert_file = \"{o}/global-server-yurt.pem\"\n  key_file = \"{o}/global-server-yurt-key.pem\"\n  verify_server_hostname = true\n}}\n"),
    )
    .unwrap();
    let stranger = Agent::start(
        &dir.path.join("s4"),
        &[
            "-server",
            "-node",
            "s4",
            "-bootstrap-expect",
            "0",
            "-join",
            &servers[0].grpc,
            "-config",
            stranger_cfg.to_str().unwrap(),
        ],
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = s.ok(&["server", "members"]);
    assert!(!out.contains("s4"), "a server of another CA joined:\n{out}");
    let nodes = s.ok(&["node", "status"]);
    assert_eq!(nodes.lines().count(), 2, "only the real client:\n{nodes}");
    drop(stranger);
    drop(impostor);

    // HTTPS: with the CLI's certificate the API answers; without one, or in plaintext, not.
    let http = s.http.clone().unwrap();
    let ca = certs.join("yurt-agent-ca.pem");
    let (cert, key) = (
        certs.join("global-cli-yurt.pem"),
        certs.join("global-cli-yurt-key.pem"),
    );
    let (status, body) = https_get(&http, "/v1/nodes", &ca, Some((&cert, &key)), &reader).unwrap();
    assert!(status.contains("200"), "{status}: {body}");
    assert!(
        body.contains("\"Status\":\"ready\"") || body.contains("\"Status\": \"ready\""),
        "{body}"
    );
    let (status, _) = https_get(&http, "/v1/jobs", &ca, Some((&cert, &key)), &reader).unwrap();
    assert!(
        status.contains("403"),
        "a node-only token read jobs: {status}"
    );
    let anonymous = https_get(&http, "/v1/nodes", &ca, None, &reader);
    assert!(
        anonymous
            .as_ref()
            .map_or(true, |(st, _)| !st.contains("200")),
        "HTTPS without a client certificate answered: {anonymous:?}"
    );
    let wrong_ca = https_get(
        &http,
        "/v1/nodes",
        &other.join("yurt-agent-ca.pem"),
        Some((&cert, &key)),
        &reader,
    );
    assert!(wrong_ca.is_err(), "{wrong_ca:?}");
    let mut plain = std::net::TcpStream::connect(&http).unwrap();
    plain.set_read_timeout(Some(timeout())).unwrap();
    let _ = write!(plain, "GET /v1/nodes HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "plaintext HTTP answered"
    );
    drop(client);
}
