//! The `docker` driver: a task is a container, made and watched through the Docker Engine API
//! on its Unix socket (`plugin "docker" { config { endpoint } }`, else `DOCKER_HOST`, else
//! `/var/run/docker.sock`). What the container is comes from [`plan`] (pure); how it is
//! watched, its output copied to the allocation's logs and its end recorded, from [`watch`].
//!
//! A task's handle dir holds its plan (`docker.json`), its container's ID (`container`), and
//! once it ended its exit (`exit.json`, as the executor writes it) or `lost`: finding out what
//! became of a task is a file read, as for the executor's drivers, also after a client restart.
//! The daemon's health is asked every [`FINGERPRINT_PERIOD`]; while it does not answer no
//! task starts here, and running containers are left alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::errors::Error as ApiError;
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, KillContainerOptions, ListContainersOptions,
    RemoveContainerOptions, StatsOptions,
};
use futures_util::StreamExt;
use nix::sys::signal::Signal;
use yurt_proto::v1::DriverInfo;
use yurt_types::agentconfig::DriverConfig;

use super::{info, Driver, ExecOutput, Handle, Pending, Seen, Started, TaskStart, Waiting};
use crate::cgroup::Usage;
use crate::executor::{self, ExitStatus};

pub mod plan;
mod watch;

pub const NAME: &str = "docker";
/// How often the daemon's health is asked.
pub const FINGERPRINT_PERIOD: Duration = Duration::from_secs(2);
/// The longest a quick call to the daemon (a kill, an inspect) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest the daemon may take to say its version before it counts as unavailable.
const FINGERPRINT_TIMEOUT: Duration = Duration::from_secs(2);
/// Docker's own timeout for a request's answer to begin (a streamed answer may last longer).
const API_TIMEOUT_SECS: u64 = 120;
/// Nomad's default `gc { image_delay }`.
pub const DEFAULT_IMAGE_DELAY: Duration = Duration::from_secs(3 * 60);

const PLAN_FILE: &str = "docker.json";
const CONTAINER_FILE: &str = "container";
const LOST_FILE: &str = "lost";
const ERROR_FILE: &str = "error";

/// The `docker` driver.
pub struct Docker {
    inner: Arc<Inner>,
}

/// What the driver's futures share.
pub(crate) struct Inner {
    /// The daemon's socket path.
    socket: String,
    node_id: String,
    /// A connection whose API version was agreed with the daemon; dropped when a call fails
    /// for want of the daemon.
    client: tokio::sync::Mutex<Option<bollard::Docker>>,
    last: Mutex<DriverInfo>,
    /// `gc { image = false }` turns image removal off.
    image_gc: Option<Duration>,
}

/// The daemon's socket from the config, else `DOCKER_HOST`, else Docker's default.
fn socket_of(config: &DriverConfig) -> Result<String, String> {
    let endpoint = config
        .docker_endpoint
        .clone()
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
    match endpoint.strip_prefix("unix://") {
        Some(path) => Ok(path.to_string()),
        None => Err(format!(
            "endpoint {endpoint:?} is not a unix:// socket, the only kind the docker driver uses"
        )),
    }
}

/// Docker's reason for a failed call, as one sentence.
pub(crate) fn reason(e: &ApiError) -> String {
    match e {
        ApiError::DockerResponseServerError { message, .. } => message.trim().to_string(),
        other => other.to_string(),
    }
}

/// Whether a call failed because the container (or image) is not there.
pub(crate) fn not_found(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

/// The container of a task, once it was created.
pub(crate) fn container_id(dir: &Path) -> Option<String> {
    let id = std::fs::read_to_string(dir.join(CONTAINER_FILE)).ok()?;
    Some(id.trim().to_string()).filter(|s| !s.is_empty())
}

pub(crate) fn read_plan(dir: &Path) -> Result<plan::Plan, String> {
    let bytes = std::fs::read(dir.join(PLAN_FILE))
        .map_err(|e| format!("cannot read the task's container plan: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("the task's container plan: {e}"))
}

impl Inner {
    /// A connection to the daemon (made, and its API version agreed, when there is none).
    pub(crate) async fn client(&self) -> Result<bollard::Docker, String> {
        let mut cached = self.client.lock().await;
        if let Some(c) = cached.as_ref() {
            return Ok(c.clone());
        }
        let c = bollard::Docker::connect_with_unix(
            &self.socket,
            API_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| e.to_string())?;
        let c = tokio::time::timeout(CALL_TIMEOUT, c.negotiate_version())
            .await
            .map_err(|_| "the Docker daemon did not answer within 10s".to_string())?
            .map_err(|e| e.to_string())?;
        *cached = Some(c.clone());
        Ok(c)
    }

    /// Forgets the connection (the daemon went away; the next one may be another version).
    pub(crate) async fn forget(&self) {
        *self.client.lock().await = None;
    }

    async fn fingerprint(&self) -> DriverInfo {
        let now = crate::runner::now_ms();
        let asked = async {
            let c = self.client().await?;
            c.version().await.map_err(|e| e.to_string())
        };
        let answer = match tokio::time::timeout(FINGERPRINT_TIMEOUT, asked).await {
            Ok(a) => a,
            Err(_) => Err(format!(
                "it did not answer within {}",
                yurt_types::duration::format(FINGERPRINT_TIMEOUT)
            )),
        };
        let found = match answer {
            Ok(v) => {
                let mut i = info(true, true, "Healthy", now);
                let version = v.version.unwrap_or_default();
                i.attributes
                    .insert("driver.docker.version".into(), version.clone());
                i.attributes.insert(
                    "driver.docker.api_version".into(),
                    v.api_version.unwrap_or_default(),
                );
                i
            }
            Err(e) => {
                self.forget().await;
                info(
                    Path::new(&self.socket).exists(),
                    false,
                    format!(
                        "Docker daemon is not available at unix://{}: {e}",
                        self.socket
                    ),
                    now,
                )
            }
        };
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = found.clone();
        found
    }

    /// Makes sure the image is here (pulling it when absent, or always with `force_pull`); the
    /// task event that says what happened.
    async fn image(&self, c: &bollard::Docker, p: &plan::Plan) -> Result<(String, String), String> {
        let here = c.inspect_image(&p.image).await.is_ok();
        if here && !p.force_pull {
            return Ok((
                "Downloading Image".into(),
                format!("Image {} found locally", p.image),
            ));
        }
        let (repo, tag) = split_image(&p.image);
        let options = CreateImageOptions {
            from_image: Some(repo.to_string()),
            tag: Some(tag.to_string()),
            ..CreateImageOptions::default()
        };
        let pull = async {
            let mut progress = c.create_image(Some(options), None, None);
            while let Some(step) = progress.next().await {
                step.map_err(|e| reason(&e))?;
            }
            Ok::<(), String>(())
        };
        let timeout = Duration::from_millis(p.pull_timeout_ms);
        let pulled = match tokio::time::timeout(timeout, pull).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the pull did not finish within image_pull_timeout ({})",
                yurt_types::duration::format(timeout)
            )),
        };
        match pulled {
            Ok(()) => Ok((
                "Downloading Image".into(),
                format!("Pulled image {}", p.image),
            )),
            Err(why) if here && p.auth_soft_fail => Ok((
                "Downloading Image".into(),
                format!("Pull of {} failed ({why}); using the local image", p.image),
            )),
            Err(why) => Err(format!("Failed to pull `{}`: {why}", p.image)),
        }
    }

    /// Starts one readied task: its image, a new container (replacing one of the same name,
    /// left by an earlier run), started.
    async fn start_one(&self, dir: &Path) -> Result<Started, String> {
        let p = read_plan(dir)?;
        let c = self.client().await?;
        let event = self.image(&c, &p).await?;
        match c
            .remove_container(
                &p.name,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => {
                return Err(format!(
                    "cannot remove the earlier container {}: {}",
                    p.name,
                    reason(&e)
                ))
            }
        }
        let created = c
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(p.name.clone()),
                    ..Default::default()
                }),
                p.create_body(),
            )
            .await
            .map_err(|e| format!("Failed to create container: {}", reason(&e)))?;
        write_atomic(&dir.join(CONTAINER_FILE), created.id.as_bytes())
            .map_err(|e| format!("cannot record the container's ID: {e}"))?;
        if let Err(e) = c.start_container(&created.id, None).await {
            let _ = self.remove(&created.id).await;
            return Err(format!("Failed to start container: {}", reason(&e)));
        }
        let pid = c
            .inspect_container(&created.id, None)
            .await
            .ok()
            .and_then(|i| i.state?.pid)
            .unwrap_or(0) as i32;
        Ok(Started {
            pid,
            events: vec![event],
        })
    }

    /// Removes a container (and its anonymous volumes); gone already is fine.
    pub(crate) async fn remove(&self, id: &str) -> Result<(), String> {
        let c = self.client().await?;
        match c
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(reason(&e)),
        }
    }

    /// Sends a signal to a container.
    async fn kill(&self, id: &str, sig: Signal) -> Result<(), String> {
        let c = self.client().await?;
        let options = KillContainerOptions {
            signal: sig.as_str().to_string(),
        };
        match tokio::time::timeout(CALL_TIMEOUT, c.kill_container(id, Some(options))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(reason(&e)),
            Err(_) => Err("the Docker daemon did not answer within 10s".into()),
        }
    }

    /// Once `image` has been unused for the `gc { image_delay }`, removes it (a container
    /// started from it meanwhile keeps it).
    pub(crate) fn image_unused(self: &Arc<Self>, image: String) {
        let Some(delay) = self.image_gc else {
            return;
        };
        let inner = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let Ok(c) = inner.client().await else {
                return;
            };
            let filters = [("ancestor".to_string(), vec![image.clone()])].into();
            let users = c
                .list_containers(Some(ListContainersOptions {
                    all: true,
                    filters: Some(filters),
                    ..Default::default()
                }))
                .await;
            if users.is_ok_and(|u| u.is_empty()) {
                match c
                    .remove_image(
                        &image,
                        None::<bollard::query_parameters::RemoveImageOptions>,
                        None,
                    )
                    .await
                {
                    Ok(_) => tracing::info!(%image, "removed the unused image"),
                    Err(e) => tracing::debug!(%image, error = %reason(&e), "image not removed"),
                }
            }
        });
    }

    /// Removes the containers of this node that no task claims (left by a client that
    /// crashed between making a container and recording it, or whose allocation is gone).
    async fn remove_unclaimed(&self, claimed: BTreeSet<String>) {
        let Ok(c) = self.client().await else {
            return;
        };
        let filters = [(
            "label".to_string(),
            vec![format!("{}={}", plan::LABEL_NODE, self.node_id)],
        )]
        .into();
        let Ok(found) = c
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
        else {
            return;
        };
        for ct in found {
            let Some(id) = ct.id else { continue };
            if claimed.contains(&id) {
                continue;
            }
            match self.remove(&id).await {
                Ok(()) => {
                    tracing::info!(container = %id, names = ?ct.names, "removed a container no allocation claims")
                }
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "cannot remove a container no allocation claims")
                }
            }
        }
    }
}

/// `repo:tag` (`latest` when there is none; a registry's port is not a tag).
pub fn split_image(image: &str) -> (&str, &str) {
    let image = image.split('@').next().unwrap_or(image);
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (image, "latest"),
    }
}

impl Docker {
    pub fn new(config: &DriverConfig, node_id: &str) -> Docker {
        let (socket, last) = match socket_of(config) {
            Ok(s) => (s, info(false, false, "not fingerprinted yet", 0)),
            Err(why) => (String::new(), info(false, false, why, 0)),
        };
        let image_gc = match config.docker_image_gc {
            Some(false) => None,
            _ => Some(
                config
                    .docker_image_delay_ms
                    .map_or(DEFAULT_IMAGE_DELAY, Duration::from_millis),
            ),
        };
        Docker {
            inner: Arc::new(Inner {
                socket,
                node_id: node_id.to_string(),
                client: tokio::sync::Mutex::new(None),
                last: Mutex::new(last),
                image_gc,
            }),
        }
    }

    /// Runs `f` with the runtime from a blocking thread (the runner calls the driver's
    /// blocking methods on one).
    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Handle::current().block_on(f)
    }

    /// Sends `sig` to the task's container, without waiting for the answer (the runner calls
    /// this with its allocations locked).
    fn send(&self, h: Handle<'_>, sig: Signal) -> std::io::Result<()> {
        let id = container_id(h.dir).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "the task has no container")
        })?;
        let inner = self.inner.clone();
        tokio::runtime::Handle::current().spawn(async move {
            if let Err(e) = inner.kill(&id, sig).await {
                tracing::debug!(container = %id, signal = %sig, error = %e, "cannot signal the container");
            }
        });
        Ok(())
    }
}

impl Driver for Docker {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fingerprint(&self) -> DriverInfo {
        self.inner
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn refingerprint(&self) -> Option<Pending<DriverInfo>> {
        if self.inner.socket.is_empty() {
            return None;
        }
        let inner = self.inner.clone();
        Some(Box::pin(async move { inner.fingerprint().await }))
    }

    fn adopt(&self, handle_dirs: Vec<PathBuf>) -> Option<Pending<()>> {
        if self.inner.socket.is_empty() {
            return None;
        }
        let claimed = handle_dirs.iter().filter_map(|d| container_id(d)).collect();
        let inner = self.inner.clone();
        Some(Box::pin(
            async move { inner.remove_unclaimed(claimed).await },
        ))
    }

    fn destroy(&self, h: Handle<'_>) -> Option<Pending<()>> {
        let id = container_id(h.dir)?;
        let inner = self.inner.clone();
        Some(Box::pin(async move {
            let _ = tokio::time::timeout(CALL_TIMEOUT, inner.remove(&id)).await;
        }))
    }

    fn prepare(&self, t: TaskStart<'_>) -> Result<(), String> {
        let p = plan::plan(&t)?;
        for bind in &p.binds {
            let host = bind.split(':').next().unwrap_or_default();
            std::fs::create_dir_all(host).map_err(|e| format!("cannot create {host}: {e}"))?;
        }
        std::fs::create_dir_all(t.handle_dir)
            .map_err(|e| format!("cannot create {}: {e}", t.handle_dir.display()))?;
        for f in [CONTAINER_FILE, LOST_FILE, ERROR_FILE] {
            let _ = std::fs::remove_file(t.handle_dir.join(f));
        }
        let _ = std::fs::remove_file(executor::exit_path(t.handle_dir));
        let bytes = serde_json::to_vec(&p).map_err(|e| e.to_string())?;
        write_atomic(&t.handle_dir.join(PLAN_FILE), &bytes)
            .map_err(|e| format!("cannot write the task's container plan: {e}"))
    }

    fn start(&self, handle_dirs: &[PathBuf]) -> Vec<Result<Started, String>> {
        let inner = &self.inner;
        Self::block_on(futures_util::future::join_all(
            handle_dirs.iter().map(|d| inner.start_one(d)),
        ))
    }

    fn recover(&self, h: Handle<'_>) -> Seen {
        if let Some(status) = executor::read_exit(h.dir) {
            return Seen::Exited {
                status,
                driver_error: std::fs::read_to_string(h.dir.join(ERROR_FILE)).ok(),
            };
        }
        if h.dir.join(LOST_FILE).exists() {
            return Seen::Lost;
        }
        Seen::Nothing
    }

    fn signal(&self, h: Handle<'_>, sig: Signal) -> std::io::Result<()> {
        self.send(h, sig)
    }

    fn stop(&self, h: Handle<'_>, sig: Signal) {
        let _ = self.send(h, sig);
    }

    fn wait(&self, h: Handle<'_>) -> Waiting {
        Box::pin(watch::watch(self.inner.clone(), h.dir.to_path_buf()))
    }

    fn stats(&self, h: Handle<'_>) -> Option<Usage> {
        if executor::read_exit(h.dir).is_some() {
            return None;
        }
        let id = container_id(h.dir)?;
        Self::block_on(async {
            let c = self.inner.client().await.ok()?;
            let mut s = c.stats(
                &id,
                Some(StatsOptions {
                    stream: false,
                    one_shot: true,
                }),
            );
            let s = tokio::time::timeout(CALL_TIMEOUT, s.next())
                .await
                .ok()??
                .ok()?;
            let mem = s.memory_stats.unwrap_or_default();
            let stat = mem.stats.unwrap_or_default();
            let cpu = s.cpu_stats.unwrap_or_default();
            let throttled = cpu.throttling_data.unwrap_or_default();
            // cgroup v1 says rss/cache, v2 anon/file.
            let key = |a: &str, b: &str| stat.get(a).or(stat.get(b)).copied().unwrap_or(0);
            Some(Usage {
                rss_bytes: key("rss", "anon"),
                cache_bytes: key("cache", "file"),
                max_usage_bytes: mem.max_usage.or(mem.usage).unwrap_or(0),
                cpu_total_ns: cpu.cpu_usage.and_then(|u| u.total_usage).unwrap_or(0),
                throttled_periods: throttled.throttled_periods.unwrap_or(0),
                throttled_ns: throttled.throttled_time.unwrap_or(0),
            })
        })
    }

    fn exec(
        &self,
        h: Handle<'_>,
        command: &[String],
        timeout: Duration,
    ) -> std::io::Result<ExecOutput> {
        let id = container_id(h.dir).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "the task has no container")
        })?;
        Self::block_on(watch::exec(&self.inner, &id, command, timeout))
            .map_err(std::io::Error::other)
    }
}

/// Records how a task ended (the exit, as the executor writes it).
pub(crate) fn record_exit(dir: &Path, status: &ExitStatus) {
    if let Ok(bytes) = serde_json::to_vec(status) {
        let _ = write_atomic(&executor::exit_path(dir), &bytes);
    }
}

/// Records that a task's container is gone and nobody saw how it ended.
pub(crate) fn record_lost(dir: &Path) {
    let _ = write_atomic(&dir.join(LOST_FILE), b"");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_into_repo_and_tag() {
        assert_eq!(split_image("geo-api-server:0.1"), ("geo-api-server", "0.1"));
        assert_eq!(split_image("busybox"), ("busybox", "latest"));
        assert_eq!(
            split_image("registry:5000/team/app"),
            ("registry:5000/team/app", "latest")
        );
        assert_eq!(
            split_image("registry:5000/team/app:2"),
            ("registry:5000/team/app", "2")
        );
    }

    #[test]
    fn the_endpoint_is_a_unix_socket() {
        let mut c = DriverConfig {
            docker_endpoint: Some("unix:///tmp/d.sock".into()),
            ..DriverConfig::default()
        };
        assert_eq!(socket_of(&c).unwrap(), "/tmp/d.sock");
        c.docker_endpoint = Some("tcp://127.0.0.1:2375".into());
        assert!(socket_of(&c).unwrap_err().contains("not a unix:// socket"));
    }
}
