//! Test harness: a real `yurt agent` process per test, found through the addresses it writes
//! to `<data_dir>/agent-addrs.json`, stopped (SIGTERM, then SIGKILL) and cleaned up on drop,
//! including the task processes its client started. The data dir is kept when a test fails,
//! or when `YURT_KEEP_TEST_DIRS=1`. A client of this build started without `-config` has
//! raw_exec enabled ([`RAW_EXEC_ON`]), as the tests' jobs use it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

pub const YURT: &str = env!("CARGO_BIN_EXE_yurt");

/// Every wait in the tests is bounded by this, scaled by `YURT_TEST_TIMEOUT_SCALE`.
pub fn timeout() -> Duration {
    let scale: u64 = std::env::var("YURT_TEST_TIMEOUT_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    Duration::from_secs(30 * scale)
}

/// Polls `check` until it returns `Ok`, or panics with `what` and the last thing seen.
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout();
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!(
                    "timed out after {:?} waiting for {what}; last seen:\n{last}",
                    timeout()
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A directory removed at the end of the test unless the test failed.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new() -> TestDir {
        let path = tempfile::Builder::new()
            .prefix("yurt-test-")
            .tempdir()
            .expect("temp dir")
            .keep();
        TestDir { path }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        kill_tasks(&self.path);
        if std::thread::panicking() || std::env::var("YURT_KEEP_TEST_DIRS").is_ok_and(|v| v == "1")
        {
            eprintln!("keeping test dir {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// PIDs of the tasks a client started under `data_dir` (each is its own process group).
pub fn task_pids(data_dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(allocs) = std::fs::read_dir(data_dir.join("client").join("allocs")) else {
        return out;
    };
    for alloc in allocs.flatten() {
        let Ok(tasks) = std::fs::read_dir(alloc.path()) else {
            continue;
        };
        for task in tasks.flatten() {
            let pid_file = task.path().join("executor").join("pid");
            if let Some(pid) = std::fs::read_to_string(pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                out.push(pid);
            }
        }
    }
    out
}

/// Waits until `n` tasks started under `data_dir` have recorded their PIDs: a task counts as
/// running once its executor is started, a moment before the executor writes the task's PID.
pub fn wait_task_pids(data_dir: &Path, n: usize) -> Vec<i32> {
    wait_for(
        &format!("{n} task PIDs under {}", data_dir.display()),
        || {
            let pids = task_pids(data_dir);
            if pids.len() == n {
                Ok(pids)
            } else {
                Err(format!("{pids:?}"))
            }
        },
    )
}

pub use yurt_client::executor::parent_of;
pub use yurt_nemesis::http::try_http;

/// A process's command line, arguments separated by spaces.
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Waits until none of `pids` runs.
pub fn wait_gone(pids: &[i32]) {
    wait_for("the processes to be gone", || {
        let live: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if live.is_empty() {
            Ok(())
        } else {
            Err(format!("{live:?}"))
        }
    });
}

/// Node `name`'s status in the output of `node status`.
pub fn status_in<'a>(table: &'a str, name: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.contains(&format!("  {name}  ")))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or("")
}

/// Node `name`'s status as `node status` on `server` shows it.
pub fn node_status(server: &Agent, name: &str) -> String {
    status_in(&server.ok(&["node", "status"]), name).to_string()
}

/// Waits until `node status` on `server` shows node `name` as `want`.
pub fn wait_node_status(server: &Agent, name: &str, want: &str) {
    wait_for(&format!("node {name} to be {want}"), || {
        let table = server.ok(&["node", "status"]);
        if status_in(&table, name) == want {
            Ok(())
        } else {
            Err(table)
        }
    });
}

/// Whether a process runs (a zombie does not count).
pub fn alive(pid: i32) -> bool {
    yurt_client::executor::alive(pid)
}

/// Kills every task process group started by any agent whose data dir is under `root`: each
/// task's PID is in an `executor/pid` file somewhere below it, its identity beside it.
pub fn kill_tasks(root: &Path) {
    fn walk(dir: &Path, depth: u32) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() && depth < 10 {
                walk(&path, depth + 1);
            } else if path.file_name().is_some_and(|n| n == "pid")
                && path
                    .parent()
                    .and_then(|p| p.file_name())
                    .is_some_and(|n| n == "executor")
            {
                // Only while the PID is still the task's: a task that ended long ago may have
                // left its PID to another test's process.
                if let Some(pid) = path.parent().and_then(yurt_client::executor::task_pid) {
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
    }
    walk(root, 0);
}

/// A running `yurt agent`.
pub struct Agent {
    child: Option<Child>,
    /// The `yurt` binary it runs (this build, or a previous release's).
    pub bin: PathBuf,
    pub data_dir: PathBuf,
    pub grpc: String,
    pub http: Option<String>,
    /// Environment for the CLI run against this agent (`YURT_CACERT`, ...).
    pub cli_env: Vec<(String, String)>,
    log: PathBuf,
}

/// The client configuration that enables raw_exec.
pub const RAW_EXEC_ON: &str = "plugin \"raw_exec\" {\n  config {\n    enabled = true\n  }\n}\n";

#[derive(serde::Deserialize)]
struct Addrs {
    grpc: String,
    http: Option<String>,
    pid: u32,
}

impl Agent {
    /// Starts `yurt agent ARGS -data-dir DIR -grpc-port 0 -http-port 0` and waits until it has
    /// written its addresses.
    pub fn start(data_dir: &Path, args: &[&str]) -> Agent {
        Agent::start_on(data_dir, args, 0, 0)
    }

    /// Starts another build's binary (an upgrade test's previous release).
    pub fn start_bin(bin: &Path, data_dir: &Path, args: &[&str]) -> Agent {
        Agent::spawn_bin(bin, data_dir, args, Some((0, 0)))
    }

    /// Stops the agent and starts `bin` on the same data dir and ports (an in-place upgrade).
    pub fn restart_bin(&mut self, bin: &Path, args: &[&str]) {
        self.stop();
        let grpc = Agent::port_of(&self.grpc);
        let http = self.http.as_deref().map_or(0, Agent::port_of);
        *self = Agent::spawn_bin(bin, &self.data_dir.clone(), args, Some((grpc, http)));
    }

    pub fn port_of(addr: &str) -> u16 {
        addr.rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(0)
    }

    /// Starts the agent again on the same data dir and the same ports (a killed server must
    /// come back at the address its peers know).
    pub fn restart(&mut self, args: &[&str]) {
        let bin = self.bin.clone();
        self.restart_bin(&bin, args);
    }

    /// Starts `yurt agent -config FILE -data-dir DIR`: ports and everything else from the file.
    pub fn start_with_config(data_dir: &Path, config: &str) -> Agent {
        Agent::spawn(data_dir, &["-config", config], None)
    }

    /// Starts an agent on the given ports (0: any free port).
    pub fn start_on(data_dir: &Path, args: &[&str], grpc_port: u16, http_port: u16) -> Agent {
        Agent::spawn(data_dir, args, Some((grpc_port, http_port)))
    }

    fn spawn(data_dir: &Path, args: &[&str], ports: Option<(u16, u16)>) -> Agent {
        Agent::spawn_bin(Path::new(YURT), data_dir, args, ports)
    }

    fn spawn_bin(bin: &Path, data_dir: &Path, args: &[&str], ports: Option<(u16, u16)>) -> Agent {
        std::fs::create_dir_all(data_dir).unwrap();
        let addrs = data_dir.join("agent-addrs.json");
        let _ = std::fs::remove_file(&addrs);
        // Logs live beside the data dir: the agent wants its data dir to itself.
        let log = (0..)
            .map(|n| PathBuf::from(format!("{}.agent-{n}.log", data_dir.display())))
            .find(|p| !p.exists())
            .unwrap();
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("agent");
        if bin == Path::new(YURT) && args.contains(&"-client") && !args.contains(&"-config") {
            // The tests' jobs run raw_exec, which a client runs only when its configuration
            // enables it; a test that gives its own -config says for itself.
            let config = PathBuf::from(format!("{}.raw_exec.hcl", data_dir.display()));
            std::fs::write(&config, RAW_EXEC_ON).unwrap();
            cmd.args(["-config", config.to_str().unwrap()]);
        }
        cmd.args(args)
            .args(["-data-dir", data_dir.to_str().unwrap()]);
        // Every test's agents share two cores with the others': Raft timing that tolerates
        // stalls of half a second, not the default's fast failover.
        cmd.args(["-raft-multiplier", "4"]);
        if let Some((grpc_port, http_port)) = ports {
            cmd.args([
                "-grpc-port",
                &grpc_port.to_string(),
                "-http-port",
                &http_port.to_string(),
            ]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start yurt agent");
        let pid = child.id();
        let mut agent = Agent {
            child: Some(child),
            bin: bin.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            grpc: String::new(),
            http: None,
            cli_env: Vec::new(),
            log,
        };
        let a: Addrs = wait_for("the agent to write agent-addrs.json", || {
            if let Some(status) = agent
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("agent exited early with {status}:\n{}", agent.log_text());
            }
            let text = std::fs::read_to_string(&addrs).map_err(|e| e.to_string())?;
            serde_json::from_str(&text).map_err(|e| e.to_string())
        });
        assert_eq!(a.pid, pid);
        agent.grpc = a.grpc;
        agent.http = a.http;
        agent
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs the CLI against this agent.
    pub fn yurt(&self, args: &[&str]) -> Output {
        Command::new(YURT)
            .args(args)
            .env("YURT_ADDR", &self.grpc)
            .envs(self.cli_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .expect("run yurt")
    }

    /// Runs the CLI and expects exit code 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.yurt(args);
        assert!(
            out.status.success(),
            "yurt {args:?} failed with {}:\nstdout:\n{}\nstderr:\n{}\nagent log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until at least one client node is `ready` (a dev agent's own client registers
    /// a moment after the agent starts).
    pub fn wait_node_ready(&self) {
        wait_for("a ready node", || {
            let out = stdout(&self.yurt(&["node", "status"]));
            if out.lines().skip(1).any(|l| l.trim_end().ends_with("ready")) {
                Ok(())
            } else {
                Err(out)
            }
        });
    }

    /// Waits until `job status JOB` shows `n` allocations desired `run` and `running`.
    pub fn wait_running(&self, job: &str, n: usize) -> Vec<String> {
        wait_for(&format!("{n} running allocations of {job}"), || {
            let out = self.yurt(&["job", "status", "-json", job]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("{e} ({}): {text}{}", out.status, stderr(&out)))?;
            let ids: Vec<String> = v["allocations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["desired_status"] == "run" && a["client_status"] == "running")
                .map(|a| a["id"].as_str().unwrap_or_default().to_string())
                .collect();
            if ids.len() == n {
                Ok(ids)
            } else {
                Err(text)
            }
        })
    }

    /// The agent's PID, while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Kills the agent with SIGKILL (its tasks keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL after a bounded wait.
    pub fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            stop_child(c);
        }
    }
}

/// Stops a process: SIGTERM, five seconds to end, then SIGKILL.
pub fn stop_child(mut c: std::process::Child) {
    let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// A `-dev` agent (server and client in one) on `DIR/data`, its node ready.
pub fn dev_agent(dir: &TestDir) -> Agent {
    let agent = Agent::start(&dir.path.join("data"), &["-dev"]);
    agent.wait_node_ready();
    agent
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- agent log {} ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
        self.stop();
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `DIR/NAME.hcl`: a batch job NAME of `count` allocations, each running `/bin/sh -c
/// SCRIPT` (the script is quoted for HCL here).
pub fn sh_batch_job(dir: &Path, name: &str, count: u32, script: &str) -> PathBuf {
    let path = dir.join(format!("{name}.hcl"));
    let src = format!(
        "job {name:?} {{\n  type = \"batch\"\n  group \"g\" {{\n    count = {count}\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/sh\"\n        args    = [\"-c\", {script:?}]\n      }}\n    }}\n  }}\n}}\n"
    );
    std::fs::write(&path, src).unwrap();
    path
}

/// A job of `kind` with one raw_exec task of `config`, neither restarted nor rescheduled.
pub fn once_job(dir: &Path, name: &str, kind: &str, config: &str) -> PathBuf {
    let job = dir.join(format!("{name}.hcl"));
    std::fs::write(
        &job,
        format!(
            r#"job "{name}" {{
  type = "{kind}"
  group "g" {{
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    reschedule {{
      attempts  = 0
      unlimited = false
    }}
    task "t" {{
      driver = "raw_exec"
      config {{
        {config}
      }}
    }}
  }}
}}
"#
        ),
    )
    .unwrap();
    job
}

/// The example job of the README, with its task's env changed to `greeting`.
pub fn web_job(dir: &Path, greeting: &str) -> PathBuf {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/web.hcl"
    ))
    .unwrap();
    let path = dir.join(format!("web-{greeting}.hcl"));
    std::fs::write(&path, src.replace("\"hello\"", &format!("{greeting:?}"))).unwrap();
    path
}

/// A plain HTTP/1.1 GET against `addr`; returns the status line and the body.
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    let (status, _, body) = http_request(addr, "GET", path, "");
    (status, body)
}

/// A plain HTTP/1.1 request against `addr`; returns the status line, the headers (lower-case
/// names) and the body.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (String, Vec<(String, String)>, String) {
    http_exchange(addr, method, path, body, "")
}

/// A plain HTTP/1.1 request with an ACL token (`X-Nomad-Token`, none when empty); returns the
/// status line and the body.
pub fn http_request_with(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    token: &str,
) -> (String, String) {
    let (status, _, body) = http_exchange(addr, method, path, body, token);
    (status, body)
}

/// A plain HTTP/1.1 request; returns the status code and the body as JSON (a plain body, an
/// error's sentence, as a JSON string).
pub fn http_json(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    http_json_with(addr, method, path, body, "")
}

/// [`http_json`] with an ACL token (none when empty).
pub fn http_json_with(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    token: &str,
) -> (u16, serde_json::Value) {
    let (status, _, body) = http_exchange(addr, method, path, body, token);
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let v = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    (code, v)
}

/// The `Secret ID` line of `acl bootstrap` / `acl token create` output.
pub fn secret_of(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Secret ID"))
        .map(|rest| rest.trim_start_matches([' ', '=']).trim().to_string())
        .unwrap_or_else(|| panic!("no Secret ID in:\n{out}"))
}

/// A plain HTTP/1.1 request with an ACL token (none when empty); returns the status line,
/// the headers (lower-case names) and the body.
pub fn http_request_full(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    token: &str,
) -> (String, Vec<(String, String)>, String) {
    http_exchange(addr, method, path, body, token)
}

fn http_exchange(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    token: &str,
) -> (String, Vec<(String, String)>, String) {
    try_http(addr, method, path, body, token, timeout()).unwrap_or_else(|e| panic!("{e}"))
}

/// The release before this build (the last line of `RELEASES` older than this version): its
/// version and its `yurt` binary, built once from its commit (`git archive` into
/// `target/releases/<version>`, its own target dir there). Panics with the reason when it
/// cannot be built: the upgrade tests need it.
pub fn previous_release() -> (String, PathBuf) {
    static BUILT: std::sync::OnceLock<(String, PathBuf)> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let releases = std::fs::read_to_string(root.join("RELEASES")).expect("RELEASES");
            let ours = semver::Version::parse(env!("CARGO_PKG_VERSION")).unwrap();
            let (version, commit) = releases
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    Some((w.next()?.to_string(), w.next()?.to_string()))
                })
                .rfind(|(v, _)| semver::Version::parse(v).is_ok_and(|v| v < ours))
                .expect("RELEASES names a release before this version");
            let dir = root.join("target/releases").join(&version);
            let bin = dir.join("target/debug/yurt");
            if bin.exists() {
                return (version, bin);
            }
            let src = dir.join("src");
            let _ = std::fs::remove_dir_all(&src);
            std::fs::create_dir_all(&src).unwrap();
            let archive = Command::new("git")
                .args(["archive", "--format=tar", &commit])
                .current_dir(&root)
                .output()
                .expect("run git archive");
            assert!(
                archive.status.success(),
                "cannot read release {version} ({commit}) from git: {} (the upgrade tests need the repository's history)",
                String::from_utf8_lossy(&archive.stderr)
            );
            let mut tar = Command::new("tar")
                .args(["-x", "-C"])
                .arg(&src)
                .stdin(Stdio::piped())
                .spawn()
                .expect("run tar");
            use std::io::Write;
            tar.stdin.take().unwrap().write_all(&archive.stdout).unwrap();
            assert!(tar.wait().unwrap().success(), "cannot unpack release {version}");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let build = Command::new(cargo)
                .args(["build", "--locked", "--bin", "yurt"])
                .current_dir(&src)
                .env("CARGO_TARGET_DIR", dir.join("target"))
                .env_remove("RUSTFLAGS")
                .output()
                .expect("run cargo build");
            assert!(
                build.status.success(),
                "cannot build release {version}: {}",
                String::from_utf8_lossy(&build.stderr)
            );
            (version, bin)
        })
        .clone()
}

/// The leader's index among `agents`, as the servers in `alive` agree on it, with `voters`;
/// it is one of `alive` (a killed leader that the others still name does not count).
pub fn leader(agents: &[Agent], alive: &[usize], voters: usize) -> usize {
    wait_for(&format!("a leader with {voters} voters"), || {
        let mut seen = Vec::new();
        for &i in alive {
            let out = agents[i].yurt(&["operator", "raft", "list-peers", "-json"]);
            let v: serde_json::Value =
                serde_json::from_str(&stdout(&out)).map_err(|e| e.to_string())?;
            let peers = v["peers"].as_array().cloned().unwrap_or_default();
            if peers.iter().filter(|p| p["voter"] == true).count() != voters {
                return Err(stdout(&out));
            }
            let addr = peers
                .iter()
                .find(|p| p["state"] == "leader")
                .and_then(|p| p["address"].as_str())
                .ok_or_else(|| stdout(&out))?
                .to_string();
            seen.push(addr);
        }
        seen.dedup();
        match seen.as_slice() {
            [one] => agents
                .iter()
                .position(|a| a.grpc == *one)
                .filter(|i| alive.contains(i))
                .ok_or_else(|| format!("{one} is not one of the live servers")),
            _ => Err(format!("servers disagree: {seen:?}")),
        }
    })
}

/// The flags of server `s{i}` of a cluster of `n` that bootstraps once `n` know each other,
/// joining `first` (the first server itself joins nobody), with `extra` flags.
pub fn server_args(i: usize, n: usize, first: Option<&Agent>, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["-server", "-node", &format!("s{i}"), "-bootstrap-expect"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(n.to_string());
    if let Some(first) = first {
        args.extend(["-join".to_string(), first.grpc.clone()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Starts `n` servers named `s0`, `s1`, ... under `dir` that bootstrap one cluster (each after
/// the first joins the first), with `extra` flags for all of them.
pub fn start_servers(dir: &Path, n: usize, extra: &[&str]) -> Vec<Agent> {
    let mut servers: Vec<Agent> = Vec::new();
    for i in 0..n {
        let args = server_args(i, n, servers.first(), extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        servers.push(Agent::start(&dir.join(format!("s{i}")), &args));
    }
    servers
}

/// One field of an agent's `agent-info` (empty when it has none).
pub fn info_field(agent: &Agent, field: &str) -> String {
    let info = agent.ok(&["agent-info"]);
    info.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field} = ")))
        .unwrap_or_default()
        .to_string()
}

/// The seed guides' check after each restart: `last_log_index` (from `agent-info`) is the same
/// on every server in `alive`, once it settles; that index.
pub fn converged(agents: &[Agent], alive: &[usize]) -> u64 {
    wait_for("last_log_index to converge", || {
        let mut seen = Vec::new();
        for &i in alive {
            let idx = info_field(&agents[i], "last_log_index");
            seen.push(
                idx.parse::<u64>()
                    .map_err(|_| format!("last_log_index {idx:?}"))?,
            );
        }
        if seen.iter().all(|x| *x == seen[0]) && seen[0] > 0 {
            Ok(seen[0])
        } else {
            Err(format!("{seen:?}"))
        }
    })
}

/// The servers' gRPC addresses as a client's `-servers` takes them (comma-separated).
pub fn grpc_list(servers: &[Agent]) -> String {
    servers
        .iter()
        .map(|s| s.grpc.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The allocations of `job`, from `job status -json`.
pub fn job_allocations(agent: &Agent, job: &str) -> Vec<serde_json::Value> {
    let out = agent.ok(&["job", "status", "-json", job]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["allocations"].as_array().cloned().unwrap_or_default()
}
