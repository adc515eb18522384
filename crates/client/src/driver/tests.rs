//! Driver selection: only a healthy driver starts a task; a started task is always watched.

use super::*;

/// A driver that only fingerprints; one whose health `changes` (a daemon that comes and
/// goes) says so when asked again.
struct Fake {
    name: &'static str,
    healthy: std::sync::atomic::AtomicBool,
    changes: bool,
}

fn fake(name: &'static str, healthy: bool) -> Arc<Fake> {
    Arc::new(Fake {
        name,
        healthy: healthy.into(),
        changes: false,
    })
}

impl Fake {
    fn now(&self) -> DriverInfo {
        let healthy = self.healthy.load(std::sync::atomic::Ordering::Relaxed);
        let why = match (healthy, self.changes) {
            (true, _) => "Healthy",
            (false, true) => "daemon gone",
            (false, false) => "broken",
        };
        // The time differs at every answer: only what it says counts as a change.
        let at = i64::from(std::process::id()) + i64::from(healthy);
        info(healthy || !self.changes, healthy, why, at)
    }
}

impl Driver for Fake {
    fn name(&self) -> &'static str {
        self.name
    }
    fn fingerprint(&self) -> DriverInfo {
        if self.changes {
            return info(false, false, "not fingerprinted yet", 0);
        }
        self.now()
    }
    fn refingerprint(&self) -> Option<Pending<DriverInfo>> {
        self.changes
            .then(|| Box::pin(std::future::ready(self.now())) as Pending<DriverInfo>)
    }
    fn prepare(&self, _: TaskStart<'_>) -> Result<(), String> {
        Ok(())
    }
    fn start(&self, dirs: &[PathBuf]) -> Vec<Result<Started, String>> {
        dirs.iter()
            .map(|_| {
                Ok(Started {
                    pid: 1,
                    events: vec![],
                })
            })
            .collect()
    }
    fn recover(&self, _: Handle<'_>) -> Seen {
        Seen::Nothing
    }
    fn signal(&self, _: Handle<'_>, _: Signal) -> std::io::Result<()> {
        Ok(())
    }
    fn stop(&self, _: Handle<'_>, _: Signal) {}
    fn wait(&self, _: Handle<'_>) -> Waiting {
        Box::pin(async {})
    }
    fn stats(&self, _: Handle<'_>) -> Option<Usage> {
        None
    }
    fn exec(
        &self,
        _: Handle<'_>,
        _: &[String],
        _: std::time::Duration,
    ) -> std::io::Result<ExecOutput> {
        Err(std::io::Error::other("no"))
    }
}

fn drivers() -> Drivers {
    Drivers::of(vec![fake(raw_exec::NAME, false), fake(exec::NAME, true)])
}

#[test]
fn only_a_healthy_driver_starts_tasks() {
    let d = drivers();
    assert_eq!(d.to_start("exec").unwrap().name(), "exec");
    assert_eq!(
        d.to_start("raw_exec").err().unwrap(),
        "driver \"raw_exec\" is not usable on this node: broken"
    );
    assert_eq!(
        d.to_start("docker").err().unwrap(),
        "driver \"docker\" is not a driver this node has (it has exec, raw_exec)"
    );
    // A task already started is watched whatever its driver's health.
    assert_eq!(d.of_task("raw_exec").name(), "raw_exec");
    assert_eq!(d.of_task("qemu").name(), "raw_exec");
    assert_eq!(d.unusable(), vec!["raw_exec: broken".to_string()]);
}

#[test]
fn only_healthy_drivers_become_attributes() {
    let attrs = drivers().attributes();
    assert_eq!(attrs.get("driver.exec").map(String::as_str), Some("1"));
    assert!(!attrs.contains_key("driver.raw_exec"));
}

#[test]
fn raw_exec_is_off_unless_enabled() {
    use executors::Flavour;
    let off = raw_exec::RawExec::new(&DriverConfig::default());
    let i = off.fingerprint();
    assert!(!i.detected && !i.healthy);
    assert!(
        i.health_description.contains("plugin \"raw_exec\""),
        "{i:?}"
    );
    let on = raw_exec::RawExec::new(&DriverConfig {
        raw_exec_enabled: Some(true),
        ..DriverConfig::default()
    });
    assert!(on.fingerprint().healthy);
}

#[test]
fn the_directories_as_the_task_sees_them() {
    let mut env = BTreeMap::new();
    dir_env(
        &mut env,
        Path::new("/alloc"),
        Path::new("/local"),
        Path::new("/secrets"),
    );
    assert_eq!(env["NOMAD_TASK_DIR"], "/local");
    assert_eq!(env["YURT_SECRETS_DIR"], "/secrets");
    assert_eq!(
        interpolate("${NOMAD_TASK_DIR}/x ${NOPE}", &env),
        "/local/x ${NOPE}"
    );
}

#[test]
fn memory_max_is_the_limit_only_with_oversubscription() {
    let r = yurt_proto::v1::Resources {
        cpu: 100,
        memory_mb: 64,
        memory_max_mb: 256,
    };
    assert_eq!(exec::memory_limits(&r, false), (64 << 20, 0));
    assert_eq!(exec::memory_limits(&r, true), (256 << 20, 64 << 20));
    let plain = yurt_proto::v1::Resources {
        memory_max_mb: 0,
        ..r
    };
    assert_eq!(exec::memory_limits(&plain, true), (64 << 20, 0));
}

#[test]
fn exec_is_unhealthy_without_root_or_cgroups_and_says_why() {
    let v2 = || Ok(crate::cgroup::Layout::V2("/sys/fs/cgroup".into()));
    let ok = exec::health(true, true, true, v2(), 5);
    assert!(ok.detected && ok.healthy, "{ok:?}");
    assert_eq!(ok.attributes["driver.exec.cgroup"], "v2");
    let why = |i: DriverInfo| (i.detected, i.healthy, i.health_description);
    assert_eq!(
        why(exec::health(true, false, true, v2(), 5)),
        (
            true,
            false,
            "the exec driver needs the client to run as root".into()
        )
    );
    assert_eq!(
        why(exec::health(
            true,
            true,
            true,
            Err("no cgroup hierarchy is mounted".into()),
            5
        )),
        (
            true,
            false,
            "no usable cgroups: no cgroup hierarchy is mounted".into()
        )
    );
    assert!(!exec::health(false, true, true, v2(), 5).detected);
    // An unhealthy exec runs nothing and adds no attribute.
    let d = Drivers::of(vec![fake(exec::NAME, false)]);
    assert!(d.to_start("exec").is_err());
    assert!(d.attributes().is_empty());
}

#[tokio::test]
async fn a_driver_whose_daemon_comes_and_goes_is_usable_only_while_it_answers() {
    let daemon = Arc::new(Fake {
        name: "docker",
        healthy: true.into(),
        changes: true,
    });
    let d = Drivers::of(vec![daemon.clone(), fake(raw_exec::NAME, true)]);
    assert!(
        d.to_start("docker").is_err(),
        "not usable before it was asked"
    );
    assert!(d.refresh().await, "first answer is a change");
    assert!(d.to_start("docker").is_ok());
    assert_eq!(
        d.attributes().get("driver.docker").map(String::as_str),
        Some("1")
    );
    assert!(!d.refresh().await, "the same answer is no change");
    daemon
        .healthy
        .store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(d.refresh().await);
    let e = d.to_start("docker").err().unwrap();
    assert!(e.contains("daemon gone"), "{e}");
    assert!(!d.attributes().contains_key("driver.docker"));
    assert_eq!(
        d.of_task("docker").name(),
        "docker",
        "a running task stays watched"
    );
}
