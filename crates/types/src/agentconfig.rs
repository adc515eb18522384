//! Agent configuration files (`yurt agent -config FILE`), in Nomad's HCL layout:
//!
//! ```hcl
//! data_dir  = "/var/lib/yurt"
//! bind_addr = "127.0.0.2"
//! name      = "server-2"
//! leave_on_terminate = true
//! ports { http = 4646  rpc = 4647 }
//! server {
//!   enabled          = true
//!   bootstrap_expect = 3
//!   server_join { retry_join = ["127.0.0.1:4647"] }
//! }
//! client { enabled = true  servers = ["127.0.0.1:4647"] }
//! autopilot { server_stabilization_time = "10s"  dead_server_threshold = "1m" }
//! acl { enabled = true }
//! plugin "raw_exec" { config { enabled = true } }
//! plugin "exec" { config { default_pid_mode = "private"  pids_limit = 4096 } }
//! plugin "docker" { config { endpoint = "unix:///var/run/docker.sock"  gc { image_delay = "3m" } } }
//! tls {
//!   http = true  rpc = true
//!   ca_file = "yurt-agent-ca.pem"  cert_file = "global-server-yurt.pem"
//!   key_file = "global-server-yurt-key.pem"  verify_server_hostname = true
//! }
//! ```
//!
//! Every field is optional; several files merge in order (later ones win), and the agent's
//! flags win over all files. Errors name the file, line and field.

use crate::hcl::{Blk, Lines, Reader, Scope};
use crate::jobspec::SpecError;

/// A server address as Nomad users write it: `host:port`, or a bare host or IP (v4, or v6 with
/// or without brackets) that means the default RPC `port`.
pub fn with_default_port(addr: &str, port: u16) -> String {
    let addr = addr.trim();
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return addr.to_string();
    }
    if let Ok(v6) = addr.trim_matches(['[', ']']).parse::<std::net::Ipv6Addr>() {
        return format!("[{v6}]:{port}");
    }
    match addr.rsplit_once(':') {
        Some((host, p)) if !host.is_empty() && p.parse::<u16>().is_ok() => addr.to_string(),
        _ => format!("{addr}:{port}"),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentConfig {
    pub data_dir: Option<String>,
    pub bind_addr: Option<String>,
    pub name: Option<String>,
    pub datacenter: Option<String>,
    pub region: Option<String>,
    pub leave_on_terminate: Option<bool>,
    pub leave_on_interrupt: Option<bool>,
    pub http_port: Option<u16>,
    pub rpc_port: Option<u16>,
    pub server_enabled: Option<bool>,
    pub bootstrap_expect: Option<u32>,
    pub retry_join: Vec<String>,
    pub raft_snapshot_threshold: Option<u64>,
    pub raft_trailing_logs: Option<u64>,
    pub raft_multiplier: Option<u32>,
    pub heartbeat_grace_ms: Option<u64>,
    /// `server { eval_gc_threshold, job_gc_threshold, node_gc_threshold, job_gc_interval }`.
    pub eval_gc_threshold_ms: Option<u64>,
    pub job_gc_threshold_ms: Option<u64>,
    pub node_gc_threshold_ms: Option<u64>,
    pub job_gc_interval_ms: Option<u64>,
    pub min_heartbeat_ttl_ms: Option<u64>,
    pub max_heartbeats_per_second: Option<u64>,
    pub failover_heartbeat_ttl_ms: Option<u64>,
    pub client_enabled: Option<bool>,
    pub servers: Vec<String>,
    pub node_class: Option<String>,
    /// `client { gc_max_allocs, gc_interval }`.
    pub client_gc_max_allocs: Option<u64>,
    pub client_gc_interval_ms: Option<u64>,
    /// `client { meta { ... } }`: the node's labels.
    pub meta: std::collections::BTreeMap<String, String>,
    pub server_stabilization_time_ms: Option<u64>,
    pub dead_server_threshold_ms: Option<u64>,
    /// The `tls` block; a later file's block replaces an earlier one's.
    pub tls: Option<crate::tls::TlsConfig>,
    /// `acl { enabled = true }`.
    pub acl_enabled: Option<bool>,
    /// The task drivers' settings: `plugin "raw_exec"`, `plugin "exec"`, `client { chroot_env,
    /// options }`.
    pub drivers: DriverConfig,
}

/// What the client's task drivers may do, from the agent configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverConfig {
    /// `plugin "raw_exec" { config { enabled = true } }` (a `-dev` agent enables it too).
    pub raw_exec_enabled: Option<bool>,
    /// `plugin "exec" { config { default_pid_mode, default_ipc_mode } }`: `private` or `host`.
    pub default_pid_mode: Option<String>,
    pub default_ipc_mode: Option<String>,
    /// `plugin "exec" { config { pids_limit } }`: most processes one task may have.
    pub pids_limit: Option<u32>,
    /// `client { chroot_env = { "/host/path" = "/path/in/task" } }`: what an exec task's root
    /// holds (read-only); Nomad's list when absent.
    pub chroot_env: Option<std::collections::BTreeMap<String, String>>,
    /// `client { options = { "user.denylist" = "root,..." } }`: users no checked driver runs
    /// a task as.
    pub user_denylist: Option<Vec<String>>,
    /// `client { options = { "user.checked_drivers" = "exec" } }`.
    pub user_checked_drivers: Option<Vec<String>>,
    /// `plugin "docker" { config { endpoint = "unix:///var/run/docker.sock" } }`.
    pub docker_endpoint: Option<String>,
    /// `plugin "docker" { config { gc { image = true  image_delay = "3m" } } }`.
    pub docker_image_gc: Option<bool>,
    pub docker_image_delay_ms: Option<u64>,
}

/// The drivers a `plugin` block may configure.
pub const PLUGINS: [&str; 3] = ["raw_exec", "exec", "docker"];

fn mode(s: &mut Scope<'_>, key: &'static str, l: &mut Lines) -> Result<Option<String>, SpecError> {
    match s.string(key, l)? {
        Some(m) if m != "private" && m != "host" => {
            let line = l.find(&format!("{}.{key}", s.path));
            Err(s.r.err(
                line,
                format!(
                    "{}: {key} must be \"private\" or \"host\", found {m:?}",
                    s.what
                ),
            ))
        }
        m => Ok(m),
    }
}

/// `plugin "NAME" { config { ... } }`.
fn plugin(r: &Reader<'_>, b: &Blk, c: &mut DriverConfig, l: &mut Lines) -> Result<(), SpecError> {
    let mut outer = Scope::new(r, &b.body, "plugin".into(), "plugin".into());
    let name = outer.label(b, "plugin")?;
    if !PLUGINS.contains(&name.as_str()) {
        return Err(r.err(
            b.line,
            format!(
                "plugin {name:?} is not a driver yurt has (it has {})",
                PLUGINS.join(", ")
            ),
        ));
    }
    if let Some(cb) = outer.block("config")? {
        let what = format!("plugin \"{name}\" config");
        let mut s = Scope::new(r, &cb.body, what, format!("plugin[{name}].config"));
        if name == "raw_exec" {
            c.raw_exec_enabled = s.boolean("enabled", l)?;
        } else if name == "docker" {
            c.docker_endpoint = s.string("endpoint", l)?;
            if let Some(gb) = s.block("gc")? {
                let path = format!("plugin[{name}].config.gc");
                let mut g = Scope::new(r, &gb.body, format!("plugin \"{name}\" config gc"), path);
                c.docker_image_gc = g.boolean("image", l)?;
                c.docker_image_delay_ms = g.duration_ms("image_delay", l)?;
                g.finish()?;
            }
        } else {
            c.default_pid_mode = mode(&mut s, "default_pid_mode", l)?;
            c.default_ipc_mode = mode(&mut s, "default_ipc_mode", l)?;
            c.pids_limit = s.uint("pids_limit", l)?;
        }
        s.finish()?;
    }
    outer.finish()
}

/// `client { chroot_env = { "/host/path" = "/path/in/task" } }`: absolute paths on both sides, none leaving the task's root.
fn chroot_env(
    s: &mut Scope<'_>,
    l: &mut Lines,
) -> Result<Option<std::collections::BTreeMap<String, String>>, SpecError> {
    let line = s
        .body
        .attrs
        .iter()
        .map(|a| (a.key.as_str(), a.line))
        .chain(s.body.blocks.iter().map(|b| (b.ident.as_str(), b.line)))
        .find(|(k, _)| *k == "chroot_env")
        .map(|(_, line)| line);
    let map = s.string_map("chroot_env", l)?;
    let Some(line) = line else {
        return Ok(None);
    };
    for (from, to) in &map {
        for p in [from, to] {
            if !p.starts_with('/') || p.split('/').any(|part| part == "..") {
                return Err(s.r.err(
                    line,
                    format!("client: chroot_env: {p:?} must be an absolute path without \"..\""),
                ));
            }
        }
    }
    Ok(Some(map))
}

fn port(s: &mut Scope<'_>, key: &'static str, lines: &mut Lines) -> Result<Option<u16>, SpecError> {
    match s.uint(key, lines)? {
        None => Ok(None),
        Some(p) => u16::try_from(p).map(Some).map_err(|_| {
            let line = lines.find(&format!("{}.{key}", s.path));
            s.r.err(line, format!("ports: {key} ({p}) is not a port number"))
        }),
    }
}

/// Reads one agent configuration file.
pub fn parse(file: &str, src: &str) -> Result<AgentConfig, SpecError> {
    let r = Reader::new(file, src);
    let body = r.parse()?;
    let mut lines = Lines::default();
    let l = &mut lines;
    let mut top = Scope::new(&r, &body, "agent config".into(), "config".into());
    let mut c = AgentConfig {
        data_dir: top.string("data_dir", l)?,
        bind_addr: top.string("bind_addr", l)?,
        name: top.string("name", l)?,
        datacenter: top.string("datacenter", l)?,
        region: top.string("region", l)?,
        leave_on_terminate: top.boolean("leave_on_terminate", l)?,
        leave_on_interrupt: top.boolean("leave_on_interrupt", l)?,
        ..AgentConfig::default()
    };
    if let Some(b) = top.block("ports")? {
        let mut s = Scope::new(&r, &b.body, "ports".into(), "ports".into());
        c.http_port = port(&mut s, "http", l)?;
        c.rpc_port = port(&mut s, "rpc", l)?;
        s.finish()?;
    }
    if let Some(b) = top.block("server")? {
        let mut s = Scope::new(&r, &b.body, "server".into(), "server".into());
        c.server_enabled = s.boolean("enabled", l)?;
        c.bootstrap_expect = s.uint("bootstrap_expect", l)?;
        c.raft_snapshot_threshold = s.uint("raft_snapshot_threshold", l)?.map(u64::from);
        c.raft_trailing_logs = s.uint("raft_trailing_logs", l)?.map(u64::from);
        c.raft_multiplier = s.uint("raft_multiplier", l)?;
        c.heartbeat_grace_ms = s.duration_ms("heartbeat_grace", l)?;
        c.eval_gc_threshold_ms = s.duration_ms("eval_gc_threshold", l)?;
        c.job_gc_threshold_ms = s.duration_ms("job_gc_threshold", l)?;
        c.node_gc_threshold_ms = s.duration_ms("node_gc_threshold", l)?;
        c.job_gc_interval_ms = s.duration_ms("job_gc_interval", l)?;
        c.min_heartbeat_ttl_ms = s.duration_ms("min_heartbeat_ttl", l)?;
        c.max_heartbeats_per_second = s.uint("max_heartbeats_per_second", l)?.map(u64::from);
        c.failover_heartbeat_ttl_ms = s.duration_ms("failover_heartbeat_ttl", l)?;
        c.retry_join = s.strings("retry_join", l)?.unwrap_or_default();
        if let Some(j) = s.block("server_join")? {
            let mut js = Scope::new(
                &r,
                &j.body,
                "server_join".into(),
                "server.server_join".into(),
            );
            c.retry_join
                .extend(js.strings("retry_join", l)?.unwrap_or_default());
            js.finish()?;
        }
        s.finish()?;
    }
    if let Some(b) = top.block("client")? {
        let mut s = Scope::new(&r, &b.body, "client".into(), "client".into());
        c.client_enabled = s.boolean("enabled", l)?;
        c.servers = s.strings("servers", l)?.unwrap_or_default();
        c.node_class = s.string("node_class", l)?;
        c.client_gc_max_allocs = s.uint("gc_max_allocs", l)?.map(u64::from);
        c.client_gc_interval_ms = s.duration_ms("gc_interval", l)?;
        c.meta = s.string_map("meta", l)?;
        c.drivers.chroot_env = chroot_env(&mut s, l)?;
        let options = s.string_map("options", l)?;
        let list = |v: &String| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        };
        for (k, v) in &options {
            match k.as_str() {
                "user.denylist" => c.drivers.user_denylist = Some(list(v)),
                "user.checked_drivers" => c.drivers.user_checked_drivers = Some(list(v)),
                other => {
                    let line = b
                        .body
                        .attrs
                        .iter()
                        .find(|x| x.key == "options")
                        .map_or(b.line, |x| x.line);
                    return Err(r.err(
                        line,
                        format!("client: options: {other:?} is not an option yurt knows (it knows user.denylist, user.checked_drivers)"),
                    ));
                }
            }
        }
        s.finish()?;
    }
    for b in top.blocks("plugin") {
        plugin(&r, b, &mut c.drivers, l)?;
    }
    if let Some(b) = top.block("autopilot")? {
        let mut s = Scope::new(&r, &b.body, "autopilot".into(), "autopilot".into());
        c.server_stabilization_time_ms = s.duration_ms("server_stabilization_time", l)?;
        c.dead_server_threshold_ms = s.duration_ms("dead_server_threshold", l)?;
        s.finish()?;
    }
    if let Some(b) = top.block("acl")? {
        let mut s = Scope::new(&r, &b.body, "acl".into(), "acl".into());
        c.acl_enabled = s.boolean("enabled", l)?;
        s.finish()?;
    }
    if let Some(b) = top.block("tls")? {
        let mut s = Scope::new(&r, &b.body, "tls".into(), "tls".into());
        let path = |p: Option<String>| p.map(std::path::PathBuf::from);
        c.tls = Some(crate::tls::TlsConfig {
            http: s.boolean("http", l)?.unwrap_or(false),
            rpc: s.boolean("rpc", l)?.unwrap_or(false),
            ca_file: path(s.string("ca_file", l)?),
            cert_file: path(s.string("cert_file", l)?),
            key_file: path(s.string("key_file", l)?),
            verify_server_hostname: s.boolean("verify_server_hostname", l)?.unwrap_or(false),
            verify_https_client: s.boolean("verify_https_client", l)?.unwrap_or(false),
        });
        s.finish()?;
    }
    top.finish()?;
    Ok(c)
}

impl AgentConfig {
    /// Layers `later` over `self`: every field `later` sets wins; lists are replaced.
    pub fn merge(&mut self, later: AgentConfig) {
        macro_rules! take {
            ($($f:ident),*) => { $( if later.$f.is_some() { self.$f = later.$f; } )* };
        }
        take!(
            data_dir,
            bind_addr,
            name,
            datacenter,
            region,
            leave_on_terminate,
            leave_on_interrupt,
            http_port,
            rpc_port,
            server_enabled,
            bootstrap_expect,
            raft_snapshot_threshold,
            raft_trailing_logs,
            raft_multiplier,
            heartbeat_grace_ms,
            eval_gc_threshold_ms,
            job_gc_threshold_ms,
            node_gc_threshold_ms,
            job_gc_interval_ms,
            min_heartbeat_ttl_ms,
            max_heartbeats_per_second,
            failover_heartbeat_ttl_ms,
            client_enabled,
            node_class,
            client_gc_max_allocs,
            client_gc_interval_ms,
            server_stabilization_time_ms,
            dead_server_threshold_ms,
            tls,
            acl_enabled
        );
        if !later.retry_join.is_empty() {
            self.retry_join = later.retry_join;
        }
        if !later.servers.is_empty() {
            self.servers = later.servers;
        }
        self.meta.extend(later.meta);
        let (d, l) = (&mut self.drivers, later.drivers);
        macro_rules! take_driver {
            ($($f:ident),*) => { $( if l.$f.is_some() { d.$f = l.$f; } )* };
        }
        take_driver!(
            raw_exec_enabled,
            default_pid_mode,
            default_ipc_mode,
            pids_limit,
            chroot_env,
            user_denylist,
            user_checked_drivers,
            docker_endpoint,
            docker_image_gc,
            docker_image_delay_ms
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
data_dir  = "/var/lib/yurt"
bind_addr = "127.0.0.2"
name      = "server-2"
leave_on_terminate = true
ports {
  http = 5646
  rpc  = 5647
}
server {
  enabled          = true
  bootstrap_expect = 3
  server_join {
    retry_join = ["127.0.0.1:4647", "127.0.0.3:4647"]
  }
}
client {
  enabled       = false
  gc_max_allocs = 20
  gc_interval   = "30s"
}
autopilot {
  server_stabilization_time = "5s"
}
acl {
  enabled = true
}
tls {
  rpc     = true
  ca_file = "ca.pem"
  verify_server_hostname = true
}
"#;

    #[test]
    fn reads_nomad_style_agent_config() {
        let c = parse("agent.hcl", FULL).unwrap();
        assert_eq!(c.data_dir.as_deref(), Some("/var/lib/yurt"));
        assert_eq!(c.bind_addr.as_deref(), Some("127.0.0.2"));
        assert_eq!((c.http_port, c.rpc_port), (Some(5646), Some(5647)));
        assert_eq!(
            (c.server_enabled, c.bootstrap_expect),
            (Some(true), Some(3))
        );
        assert_eq!(c.retry_join, vec!["127.0.0.1:4647", "127.0.0.3:4647"]);
        assert_eq!(c.client_enabled, Some(false));
        assert_eq!(
            (c.client_gc_max_allocs, c.client_gc_interval_ms),
            (Some(20), Some(30_000))
        );
        assert_eq!(c.leave_on_terminate, Some(true));
        assert_eq!(c.server_stabilization_time_ms, Some(5000));
        assert_eq!(c.acl_enabled, Some(true));
        let tls = c.tls.unwrap();
        assert!(tls.rpc && !tls.http && tls.verify_server_hostname);
        assert_eq!(tls.ca_file, Some("ca.pem".into()));
    }

    #[test]
    fn later_files_win_field_by_field() {
        let mut c = parse("a.hcl", FULL).unwrap();
        c.merge(parse("b.hcl", "name = \"other\"\nports {\n  rpc = 6647\n}\n").unwrap());
        assert_eq!(c.name.as_deref(), Some("other"));
        assert_eq!((c.http_port, c.rpc_port), (Some(5646), Some(6647)));
        assert_eq!(c.bootstrap_expect, Some(3));
    }

    #[test]
    fn mistakes_name_file_line_and_field() {
        let cases = [
            (
                "datadir = \"/x\"\n",
                "a.hcl:1: agent config: unknown field \"datadir\"",
            ),
            (
                "ports {\n  http = 70000\n}\n",
                "a.hcl:2: ports: http (70000) is not a port number",
            ),
            (
                "server {\n  bootstrap_expect = \"three\"\n}\n",
                "a.hcl:2: server: bootstrap_expect must be a whole number, found a string",
            ),
            (
                "server {\n  enabled = true\n}\nserver {\n}\n",
                "a.hcl:4: agent config: only one server block is allowed",
            ),
            (
                "autopilot {\n  server_stabilization_time = \"soon\"\n}\n",
                "a.hcl:2: autopilot: server_stabilization_time: \"soon\" is not a duration",
            ),
            (
                "client {\n  servers = \"a:1\"\n}\n",
                "a.hcl:2: client: servers must be a list of strings, found a string",
            ),
            (
                "plugin \"exec\" {\n  config {\n    default_pid_mode = \"shared\"\n  }\n}\n",
                "a.hcl:3: plugin \"exec\" config: default_pid_mode must be \"private\" or \"host\", found \"shared\"",
            ),
            (
                "plugin \"raw_exec\" {\n  config {\n    enable = true\n  }\n}\n",
                "a.hcl:3: plugin \"raw_exec\" config: unknown field \"enable\"",
            ),
            (
                "\nplugin \"qemu\" {\n}\n",
                "a.hcl:2: plugin \"qemu\" is not a driver yurt has (it has raw_exec, exec, docker)",
            ),
            (
                "client {\n  chroot_env = {\n    \"/bin\" = \"bin\"\n  }\n}\n",
                "a.hcl:2: client: chroot_env: \"bin\" must be an absolute path without \"..\"",
            ),
            (
                "client {\n  options = {\n    \"user.allowlist\" = \"x\"\n  }\n}\n",
                "a.hcl:2: client: options: \"user.allowlist\" is not an option yurt knows",
            ),
        ];
        for (src, want) in cases {
            let got = parse("a.hcl", src).unwrap_err().to_string();
            assert!(got.starts_with(want), "want {want}\n got {got}");
        }
    }

    #[test]
    fn driver_settings_and_their_merge() {
        let src = "plugin \"raw_exec\" {\n  config {\n    enabled = true\n  }\n}\nplugin \"exec\" {\n  config {\n    default_pid_mode = \"host\"\n    pids_limit = 64\n  }\n}\nclient {\n  chroot_env = {\n    \"/bin\" = \"/bin\"\n  }\n  options = {\n    \"user.denylist\" = \"root, admin\"\n  }\n}\n";
        let mut c = parse("a.hcl", src).unwrap();
        assert_eq!(c.drivers.raw_exec_enabled, Some(true));
        assert_eq!(c.drivers.default_pid_mode.as_deref(), Some("host"));
        assert_eq!(c.drivers.default_ipc_mode, None);
        assert_eq!(c.drivers.pids_limit, Some(64));
        assert_eq!(
            c.drivers.chroot_env,
            Some(std::collections::BTreeMap::from([(
                "/bin".to_string(),
                "/bin".to_string()
            )]))
        );
        assert_eq!(
            c.drivers.user_denylist,
            Some(vec!["root".to_string(), "admin".to_string()])
        );
        let later = parse(
            "b.hcl",
            "plugin \"raw_exec\" {\n  config {\n    enabled = false\n  }\n}\n",
        )
        .unwrap();
        c.merge(later);
        assert_eq!(c.drivers.raw_exec_enabled, Some(false));
        assert_eq!(c.drivers.pids_limit, Some(64));
        let docker = "plugin \"docker\" {\n  config {\n    endpoint = \"unix:///run/d.sock\"\n    gc {\n      image_delay = \"10s\"\n    }\n  }\n}\n";
        c.merge(parse("c.hcl", docker).unwrap());
        assert_eq!(
            c.drivers.docker_endpoint.as_deref(),
            Some("unix:///run/d.sock")
        );
        assert_eq!(c.drivers.docker_image_delay_ms, Some(10_000));
        assert_eq!(c.drivers.pids_limit, Some(64));
        let typo = "plugin \"docker\" {\n  config {\n    endpiont = \"x\"\n  }\n}\n";
        let e = parse("d.hcl", typo).unwrap_err().to_string();
        assert!(e.starts_with("d.hcl:3:"), "{e}");
    }

    #[test]
    fn a_server_address_without_a_port_means_the_rpc_port() {
        for (given, want) in [
            ("127.0.0.11", "127.0.0.11:4647"),
            ("127.0.0.11:5000", "127.0.0.11:5000"),
            ("server-1.example", "server-1.example:4647"),
            ("server-1.example:5000", "server-1.example:5000"),
            ("::1", "[::1]:4647"),
            ("[::1]", "[::1]:4647"),
            ("[::1]:5000", "[::1]:5000"),
        ] {
            assert_eq!(with_default_port(given, 4647), want, "{given}");
        }
    }
}
