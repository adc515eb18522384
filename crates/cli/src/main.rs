//! `yurt`: the agent and the command-line interface, in Nomad's style (single-dash long flags,
//! `-json` on read commands, `-address` / `YURT_ADDR` to find the cluster).

mod agent;
mod cmd;
mod datadir;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "yurt",
    about = "Yurt: a small cluster orchestrator in the spirit of Nomad",
    disable_version_flag = true
)]
struct Cli {
    /// Address of a Yurt agent's gRPC API.
    #[arg(
        long,
        global = true,
        env = "YURT_ADDR",
        default_value = "http://127.0.0.1:4647"
    )]
    address: String,
    /// Let any server answer reads from its own copy, without asking the leader.
    #[arg(long, global = true)]
    stale: bool,
    /// The CA certificate (PEM) that signed the agents' certificates: connect over TLS.
    #[arg(long = "ca-cert", global = true, env = "YURT_CACERT")]
    ca_cert: Option<PathBuf>,
    /// This CLI's certificate (PEM), for agents that require one (mutual TLS).
    #[arg(long = "client-cert", global = true, env = "YURT_CLIENT_CERT")]
    client_cert: Option<PathBuf>,
    /// The key of -client-cert (PEM).
    #[arg(long = "client-key", global = true, env = "YURT_CLIENT_KEY")]
    client_key: Option<PathBuf>,
    /// The ACL token's secret ID, for clusters with ACLs enabled.
    #[arg(long, global = true, env = "YURT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The namespace of jobs, allocations and variables (`*`: all, for reads) [default:
    /// NOMAD_NAMESPACE, else default].
    #[arg(long, global = true, env = "YURT_NAMESPACE")]
    namespace: Option<String>,
    /// The name the agent's certificate must carry [default: the address's host].
    #[arg(long = "tls-server-name", global = true, env = "YURT_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a Yurt agent (server, client, or both with -dev).
    Agent(Box<agent::AgentArgs>),
    /// Register, plan, inspect and stop jobs.
    Job {
        #[command(subcommand)]
        cmd: cmd::job::JobCmd,
    },
    /// Inspect and drive deployments: rolling updates, canaries, promotion.
    Deployment {
        #[command(subcommand)]
        cmd: cmd::deployment::DeploymentCmd,
    },
    /// Inspect client nodes.
    Node {
        #[command(subcommand)]
        cmd: cmd::node::NodeCmd,
    },
    /// Inspect allocations and read their logs.
    Alloc {
        #[command(subcommand)]
        cmd: cmd::alloc::AllocCmd,
    },
    /// Inspect evaluations: the scheduler's units of work.
    Eval {
        #[command(subcommand)]
        cmd: cmd::eval::EvalCmd,
    },
    /// Follow the cluster's events (jobs, allocations, deployments, evaluations, nodes).
    Event {
        #[command(subcommand)]
        cmd: cmd::event::EventCmd,
    },
    /// Inspect and manage the server agents.
    Server {
        #[command(subcommand)]
        cmd: cmd::server::ServerCmd,
    },
    /// Operate the cluster's Raft configuration.
    Operator {
        #[command(subcommand)]
        cmd: cmd::server::OperatorCmd,
    },
    /// Namespaces: jobs and variables belong to one.
    Namespace {
        #[command(subcommand)]
        cmd: cmd::namespace::NamespaceCmd,
    },
    /// Nomad Variables: secrets and settings at paths, sealed by the servers.
    Var {
        #[command(subcommand)]
        cmd: cmd::var::VarCmd,
    },
    /// Bootstrap ACLs; manage ACL policies and tokens.
    Acl {
        #[command(subcommand)]
        cmd: cmd::acl::AclCmd,
    },
    /// Create a CA and certificates for a TLS cluster.
    Tls {
        #[command(subcommand)]
        cmd: cmd::tls::TlsCmd,
    },
    /// Cluster-wide maintenance.
    System {
        #[command(subcommand)]
        cmd: cmd::server::SystemCmd,
    },
    /// Show the agent's internal state (Raft indexes, leadership, client heartbeat).
    AgentInfo {
        #[arg(long)]
        json: bool,
    },
    /// List jobs (as `job status`).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print the version.
    Version,
    /// Run one task to completion (started by the client agent, not by hand).
    #[command(hide = true)]
    Executor { dir: PathBuf },
}

/// Nomad writes long flags with one dash (`-address`, `-check-index`): accept both forms.
fn normalize_args(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest_literal = false;
    // `alloc exec [flags] ALLOC COMMAND...`: the command's own arguments are never ours.
    let mut exec_value_next = false;
    for a in args {
        if rest_literal || a == "--" {
            rest_literal = true;
            out.push(a);
            continue;
        }
        let in_exec = out.len() >= 3 && out[1] == "alloc" && out[2] == "exec";
        if in_exec && !a.starts_with('-') && !exec_value_next {
            // The allocation: what follows is the command, taken as written.
            out.push(a);
            out.push("--".into());
            rest_literal = true;
            continue;
        }
        exec_value_next =
            in_exec && matches!(a.trim_start_matches('-'), "task" | "timeout" | "address");
        let single_dash_long = a.starts_with('-')
            && !a.starts_with("--")
            && a.len() > 2
            && a.as_bytes()[1].is_ascii_alphabetic()
            && (a.as_bytes()[2].is_ascii_alphabetic() || a.as_bytes()[2] == b'-');
        out.push(if single_dash_long { format!("-{a}") } else { a });
    }
    out
}

fn main() -> ExitCode {
    // `yurt executor DIR` lives as long as its task, one per task: it starts before anything
    // else (no argument parser, no async runtime) to stay small.
    // So does `yurt executor-launcher`, which forks executors for the client agent.
    let mut args = std::env::args_os().skip(1);
    match (args.next(), args.next(), args.next()) {
        (Some(cmd), Some(dir), None) if cmd == "executor" => {
            return ExitCode::from(yurt_client::executor::run(&PathBuf::from(dir)) as u8);
        }
        (Some(cmd), None, None) if cmd == "executor-launcher" => {
            return ExitCode::from(yurt_client::launcher::run() as u8);
        }
        _ => {}
    }
    let cli = Cli::parse_from(normalize_args(std::env::args()));
    short_panic_messages();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run(cli));
    ExitCode::from(code)
}

/// Prints a panic's message cut short, with where it happened: a library's panic (sled's on a
/// damaged file) can carry megabytes of text, and the places that catch one report it in a
/// sentence of their own.
fn short_panic_messages() {
    std::panic::set_hook(Box::new(|info| {
        let text = yurt_types::limits::panic_text(info.payload());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("panic{at}: {text}");
    }));
}

async fn run(cli: Cli) -> u8 {
    let addr = cli.address;
    cmd::set_stale(cli.stale);
    if let Err(e) = cmd::set_token(cli.token.as_deref()) {
        eprintln!("{e}");
        return 1;
    }
    let namespace = cli
        .namespace
        .clone()
        .or_else(|| std::env::var("NOMAD_NAMESPACE").ok());
    if let Err(e) = cmd::set_namespace(namespace.as_deref()) {
        eprintln!("{e}");
        return 1;
    }
    let dialer = yurt_tls::Dialer::cli(
        cli.ca_cert.as_deref(),
        cli.client_cert.as_deref(),
        cli.client_key.as_deref(),
        cli.tls_server_name.as_deref(),
        &|p| std::fs::read(p),
    );
    match dialer {
        Ok(d) => cmd::set_dialer(d),
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    }
    let result = match cli.cmd {
        Command::Agent(args) => agent::run(*args).await,
        Command::Job { cmd } => cmd::job::run(&addr, cmd).await,
        Command::Deployment { cmd } => cmd::deployment::run(&addr, cmd).await,
        Command::Node { cmd } => cmd::node::run(&addr, cmd).await,
        Command::Alloc { cmd } => cmd::alloc::run(&addr, cmd).await,
        Command::Eval { cmd } => cmd::eval::run(&addr, cmd).await,
        Command::Event { cmd } => cmd::event::run(&addr, cmd).await,
        Command::Server { cmd } => cmd::server::run_server(&addr, cmd).await,
        Command::Operator { cmd } => cmd::server::run_operator(&addr, cmd).await,
        Command::System { cmd } => cmd::server::run_system(&addr, cmd).await,
        Command::Tls { cmd } => cmd::tls::run(cmd),
        Command::Acl { cmd } => cmd::acl::run(&addr, cmd).await,
        Command::Var { cmd } => cmd::var::run(&addr, cmd).await,
        Command::Namespace { cmd } => cmd::namespace::run(&addr, cmd).await,
        Command::AgentInfo { json } => cmd::agent_info(&addr, json).await,
        Command::Status { json } => {
            cmd::job::run(&addr, cmd::job::JobCmd::Status { job: None, json }).await
        }
        Command::Version => {
            println!("Yurt v{}", yurt_types::version::build());
            Ok(0)
        }
        // `executor DIR` is its only valid form, and `main` takes that before parsing.
        Command::Executor { .. } => unreachable!("handled before the argument parser"),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_exec_takes_the_command_as_written() {
        let args = [
            "yurt",
            "alloc",
            "exec",
            "-task",
            "web",
            "-timeout=5s",
            "abc123",
            "ps",
            "-ef",
        ];
        let got = normalize_args(args.iter().map(|s| s.to_string()));
        assert_eq!(
            got,
            vec![
                "yurt",
                "alloc",
                "exec",
                "--task",
                "web",
                "--timeout=5s",
                "abc123",
                "--",
                "ps",
                "-ef"
            ]
        );
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        let args = [
            "yurt",
            "job",
            "run",
            "-check-index",
            "5",
            "-detach",
            "-p",
            "-address=http://x",
            "--",
            "-not",
        ];
        let got = normalize_args(args.iter().map(|s| s.to_string()));
        assert_eq!(
            got,
            vec![
                "yurt",
                "job",
                "run",
                "--check-index",
                "5",
                "--detach",
                "-p",
                "--address=http://x",
                "--",
                "-not"
            ]
        );
    }
}
