//! A private Docker daemon per test, as the harness starts its own agents: its data, exec root
//! and socket under the test's dir, `vfs` storage, its own bridge (`ybrN`, 10.213.N.1/24) with
//! no iptables rules, `--live-restore` so that containers outlive a daemon restart. Dropped,
//! it removes its containers, stops, unmounts what it mounted and deletes its bridge.
//! Images are built here from a static busybox and imported through the Engine API (no
//! registry is reachable). A machine without Docker fails these tests with one sentence
//! naming the packages the README's test command installs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bollard::query_parameters::{
    CreateImageOptions, ListContainersOptions, RemoveContainerOptions,
};
use futures_util::StreamExt;

use crate::harness::wait_for;

static BRIDGES: AtomicU32 = AtomicU32::new(0);

/// Held by a test whose containers publish host ports, for its whole run: every agent gives a
/// task the lowest free dynamic port first (20000), and one test's container published there
/// by Docker's proxy on this host would take it from another test's.
pub fn host_ports() -> std::sync::MutexGuard<'static, ()> {
    static PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the static busybox is (Debian's busybox-static): one with no dynamic loader named
/// in its program headers.
pub fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        let Ok(bytes) = std::fs::read(p) else {
            continue;
        };
        let head = &bytes[..bytes.len().min(4096)];
        if !head.windows(8).any(|w| w == b"ld-linux") {
            return PathBuf::from(p);
        }
    }
    panic!("no static busybox: install Debian's busybox-static (the README's test command does)");
}

fn require(binary: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(binary).exists()))
        .unwrap_or(false);
    assert!(
        found,
        "{binary} is not installed: install Debian's {package} (the README's test command does)"
    );
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// One private Docker daemon.
pub struct Dockerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    bridge: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Dockerd {
    /// Starts a daemon under `dir/docker` and waits until it answers.
    pub fn start(dir: &Path) -> Dockerd {
        require("dockerd", "docker.io");
        require("containerd", "containerd");
        require("ip", "iproute2");
        let n = (std::process::id() + BRIDGES.fetch_add(1, Ordering::Relaxed)) % 200 + 20;
        let bridge = format!("ybr{n}");
        let _ = run(Command::new("ip").args(["link", "del", &bridge]));
        run(Command::new("ip").args(["link", "add", &bridge, "type", "bridge"]))
            .unwrap_or_else(|e| panic!("cannot make the bridge {bridge}: {e}"));
        run(Command::new("ip").args(["addr", "add", &format!("10.213.{n}.1/24"), "dev", &bridge]))
            .unwrap();
        run(Command::new("ip").args(["link", "set", &bridge, "up"])).unwrap();
        // Short paths: a Unix socket's path has at most 107 bytes.
        let root = dir.join("docker");
        std::fs::create_dir_all(&root).unwrap();
        let mut d = Dockerd {
            socket: root.join("d.sock"),
            dir: root,
            bridge,
            child: None,
            log: dir.join("dockerd.log"),
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let d = &self.dir;
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("x"))
            .arg("--pidfile")
            .arg(d.join("pid"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args([
                "--bridge",
                &self.bridge,
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--storage-driver=vfs",
                "--live-restore",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        self.child = Some(child);
        wait_for("the private dockerd to answer", || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "dockerd exited with {status}:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            self.call(|c| async move { c.ping().await.map(|_| ()) })
        });
    }

    /// `unix://...`: the endpoint a client's `plugin "docker"` block names.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The client configuration that uses this daemon (and raw_exec, as the tests' jobs do).
    pub fn client_config(&self, extra: &str) -> String {
        format!(
            "{}plugin \"docker\" {{\n  config {{\n    endpoint = \"{}\"\n{extra}  }}\n}}\n",
            crate::harness::RAW_EXEC_ON,
            self.endpoint()
        )
    }

    /// Runs one Engine API call against this daemon.
    pub fn call<T, F>(&self, f: impl FnOnce(bollard::Docker) -> F) -> Result<T, String>
    where
        F: std::future::Future<Output = Result<T, bollard::errors::Error>>,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let c = bollard::Docker::connect_with_unix(
                self.socket.to_str().unwrap(),
                30,
                bollard::API_DEFAULT_VERSION,
            )
            .map_err(|e| e.to_string())?
            .negotiate_version()
            .await
            .map_err(|e| e.to_string())?;
            tokio::time::timeout(Duration::from_secs(60), f(c))
                .await
                .map_err(|_| "the daemon did not answer within 60s".to_string())?
                .map_err(|e| e.to_string())
        })
    }

    /// Imports an image `tag` whose root holds a static busybox (as `/bin/sh`, `/bin/httpd`,
    /// ...) and `files` (path → contents), running `cmd`.
    pub fn image(&self, tag: &str, files: &[(&str, &str)], cmd: &[&str]) {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(busybox(), bin.join("busybox")).unwrap();
        for tool in [
            "sh", "httpd", "sleep", "cat", "echo", "ls", "dd", "head", "tail", "kill", "env", "yes",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(tool)).unwrap();
        }
        for dir in ["tmp", "proc", "sys", "dev", "etc"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        for (path, text) in files {
            let p = root.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let tar = Command::new("tar")
            .arg("-C")
            .arg(root.path())
            .args(["-cf", "-", "."])
            .output()
            .expect("run tar");
        assert!(
            tar.status.success(),
            "tar: {}",
            String::from_utf8_lossy(&tar.stderr)
        );
        let (repo, version) = tag.split_once(':').unwrap_or((tag, "latest"));
        let options = CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(repo.into()),
            tag: Some(version.into()),
            changes: vec![format!("CMD {}", serde_json::to_string(cmd).unwrap())],
            ..Default::default()
        };
        let body = bytes::Bytes::from(tar.stdout);
        self.call(|c| async move {
            let mut s = c.create_image(Some(options), Some(bollard::body_full(body)), None);
            while let Some(step) = s.next().await {
                step?;
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("cannot import the image {tag}: {e}"));
    }

    /// The containers this daemon has (running or not), as `(id, name, state, labels)`.
    pub fn containers(&self) -> Vec<(String, String, String, HashMap<String, String>)> {
        let list = self
            .call(|c| async move {
                c.list_containers(Some(ListContainersOptions {
                    all: true,
                    ..Default::default()
                }))
                .await
            })
            .unwrap();
        list.into_iter()
            .map(|c| {
                (
                    c.id.unwrap_or_default(),
                    c.names
                        .unwrap_or_default()
                        .first()
                        .cloned()
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string(),
                    c.state.map(|s| s.to_string()).unwrap_or_default(),
                    c.labels.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Stops the daemon (SIGTERM; its containers keep running: `--live-restore`).
    pub fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            crate::harness::stop_child(c);
        }
    }

    /// Starts the daemon again on the same dirs and socket.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.child.is_none() {
            self.spawn_quietly();
        }
        for (id, ..) in self.containers_quietly() {
            let _ = self.call(|c| async move {
                c.remove_container(
                    &id,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await
            });
        }
        self.stop();
        // dockerd mounts its data root (and network namespaces) under the dir.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(&self.dir))
            .collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = run(Command::new("ip").args(["link", "del", &self.bridge]));
        if std::thread::panicking() {
            eprintln!(
                "--- dockerd log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Dockerd {
    /// Starts the daemon again to clean up, if a test left it stopped.
    fn spawn_quietly(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.spawn()));
    }

    fn containers_quietly(&self) -> Vec<(String, String, String, HashMap<String, String>)> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.containers()))
            .unwrap_or_default()
    }
}
