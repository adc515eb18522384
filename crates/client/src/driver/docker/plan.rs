//! What a docker task's container is, from the task (pure): its image and how to get it, the
//! command, environment, labels, mounts (the allocation's directories as Nomad mounts them,
//! and `volumes` inside the allocation directory), ports, network mode and resource limits.
//! [`Plan`] is written to the task's handle dir when the task is readied, and
//! [`Plan::create_body`] is what the Engine API is asked to create.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, PortBinding};
use serde::{Deserialize, Serialize};
use yurt_proto::v1::{value, Task, Value};
use yurt_types::jobspec::string_list;

use crate::driver::{dir_env, interpolate, TaskStart};
use crate::logfiles::Rotation;

/// Where the allocation's directories are inside a container, as in Nomad.
pub const ALLOC_MOUNT: &str = "/alloc";
pub const LOCAL_MOUNT: &str = "/local";
pub const SECRETS_MOUNT: &str = "/secrets";

/// The labels that name a container's allocation, job, group, task and node (Nomad's names, so
/// that tools written for Nomad's containers find Yurt's).
pub const LABEL_ALLOC: &str = "com.hashicorp.nomad.alloc_id";
pub const LABEL_JOB: &str = "com.hashicorp.nomad.job_name";
pub const LABEL_GROUP: &str = "com.hashicorp.nomad.task_group_name";
pub const LABEL_TASK: &str = "com.hashicorp.nomad.task_name";
pub const LABEL_NODE: &str = "com.hashicorp.nomad.node_id";

/// How long an image pull may take unless the task says (`image_pull_timeout`).
pub const DEFAULT_PULL_TIMEOUT_MS: u64 = 5 * 60 * 1000;

/// A host port mapped to a container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMap {
    pub label: String,
    pub host_ip: String,
    pub host: u32,
    pub container: u32,
}

/// One container, as the task asks for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub image: String,
    pub force_pull: bool,
    pub pull_timeout_ms: u64,
    pub auth_soft_fail: bool,
    /// `<task>-<alloc id>`, as Nomad names them.
    pub name: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub work_dir: Option<String>,
    pub hostname: Option<String>,
    pub network_mode: String,
    pub ports: Vec<PortMap>,
    /// `host:container[:ro]`.
    pub binds: Vec<String>,
    pub memory_bytes: i64,
    /// The soft limit (`memory`) when `memory_max` is the hard one.
    pub memory_reservation_bytes: Option<i64>,
    pub cpu_shares: i64,
    pub stop_signal: String,
    pub stdout: Rotation,
    pub stderr: Rotation,
}

fn string(task: &Task, key: &str) -> Option<String> {
    match task.config.get(key).and_then(|v| v.kind.as_ref()) {
        Some(value::Kind::StringValue(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn boolean(task: &Task, key: &str) -> bool {
    matches!(
        task.config.get(key).and_then(|v| v.kind.as_ref()),
        Some(value::Kind::BoolValue(true))
    )
}

/// A `labels` map: `labels = { k = "v" }`, a `labels { k = "v" }` block, or a list of such
/// blocks.
fn label_map(v: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match &v.kind {
        Some(value::Kind::MapValue(m)) => {
            for (k, v) in &m.fields {
                if let Some(value::Kind::StringValue(s)) = &v.kind {
                    out.insert(k.clone(), s.clone());
                }
            }
        }
        Some(value::Kind::ListValue(l)) => {
            for v in &l.values {
                out.extend(label_map(v));
            }
        }
        _ => {}
    }
    out
}

/// `src` of a volume, under the task's dir, refused when it leaves the allocation's dir.
fn volume_source(task_dir: &Path, alloc_dir: &Path, src: &str) -> Result<PathBuf, String> {
    if Path::new(src).is_absolute() {
        return Err(format!(
            "volume {src:?}: only paths inside the allocation directory can be mounted \
             (relative to the task's directory)"
        ));
    }
    let mut out = task_dir.to_path_buf();
    for c in Path::new(src).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    if !out.starts_with(alloc_dir) {
        return Err(format!(
            "volume {src:?} leaves the allocation directory {}",
            alloc_dir.display()
        ));
    }
    Ok(out)
}

/// The container a task asks for. `env` gains the directories' variables as the container
/// sees them; the host's `PATH` is left to the image.
pub fn plan(t: &TaskStart<'_>) -> Result<Plan, String> {
    let task = t.task;
    let image = string(task, "image").ok_or("task has no config.image")?;
    let mut env = t.env.clone();
    env.remove("PATH");
    dir_env(
        &mut env,
        Path::new(ALLOC_MOUNT),
        Path::new(LOCAL_MOUNT),
        Path::new(SECRETS_MOUNT),
    );
    let list = |key: &str| {
        task.config
            .get(key)
            .and_then(string_list)
            .map(|l| l.iter().map(|s| interpolate(s, &env)).collect::<Vec<_>>())
    };
    let mut cmd = string(task, "command").map(|c| vec![interpolate(&c, &env)]);
    if let Some(args) = list("args") {
        cmd.get_or_insert_with(Vec::new).extend(args);
    }
    let mut labels = task.config.get("labels").map(label_map).unwrap_or_default();
    labels.insert(LABEL_ALLOC.into(), t.alloc_id.into());
    labels.insert(LABEL_JOB.into(), t.job.into());
    labels.insert(LABEL_GROUP.into(), t.group.into());
    labels.insert(LABEL_TASK.into(), task.name.clone());
    labels.insert(LABEL_NODE.into(), t.node_id.into());
    let network_mode = string(task, "network_mode").unwrap_or_else(|| "bridge".into());
    let mut ports = Vec::new();
    for label in list("ports").unwrap_or_default() {
        let p = t
            .ports
            .iter()
            .find(|p| p.label == label)
            .ok_or_else(|| format!("config.ports: the group has no network port {label:?}"))?;
        ports.push(PortMap {
            label,
            host_ip: t.host_ip.to_string(),
            host: p.value,
            container: if p.to > 0 { p.to } else { p.value },
        });
    }
    let local = t.task_dir.join("local");
    let secrets = t.task_dir.join("secrets");
    let mut binds = vec![
        format!("{}:{ALLOC_MOUNT}", t.alloc_dir.join("alloc").display()),
        format!("{}:{LOCAL_MOUNT}", local.display()),
        format!("{}:{SECRETS_MOUNT}", secrets.display()),
    ];
    for v in list("volumes").unwrap_or_default() {
        let mut parts = v.splitn(3, ':');
        let (Some(src), Some(dst)) = (parts.next(), parts.next()) else {
            return Err(format!("volume {v:?} is not \"source:destination[:ro]\""));
        };
        let src = volume_source(t.task_dir, t.alloc_dir, src)?;
        binds.push(match parts.next() {
            Some(mode) => format!("{}:{dst}:{mode}", src.display()),
            None => format!("{}:{dst}", src.display()),
        });
    }
    let r = task.resources.unwrap_or_default();
    let mb = |m: u32| i64::from(m) * 1024 * 1024;
    let (memory_bytes, memory_reservation_bytes) =
        if t.memory_oversubscription && r.memory_max_mb > r.memory_mb {
            (mb(r.memory_max_mb), Some(mb(r.memory_mb)))
        } else {
            (mb(r.memory_mb), None)
        };
    let pull_timeout_ms = match string(task, "image_pull_timeout") {
        Some(d) => yurt_types::duration::parse(&d)
            .map_err(|e| format!("config.image_pull_timeout: {e}"))?
            .as_millis() as u64,
        None => DEFAULT_PULL_TIMEOUT_MS,
    };
    Ok(Plan {
        image,
        force_pull: boolean(task, "force_pull"),
        pull_timeout_ms,
        auth_soft_fail: boolean(task, "auth_soft_fail"),
        name: format!("{}-{}", task.name, t.alloc_id),
        entrypoint: list("entrypoint"),
        cmd,
        env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        labels,
        work_dir: string(task, "work_dir"),
        hostname: string(task, "hostname"),
        network_mode,
        ports,
        binds,
        memory_bytes,
        memory_reservation_bytes,
        cpu_shares: (r.cpu as i64).max(2),
        stop_signal: task.kill_signal.clone(),
        stdout: t.stdout.clone(),
        stderr: t.stderr.clone(),
    })
}

impl Plan {
    /// What the Engine API is asked to create. Docker keeps a little of the output itself
    /// (two files of 2 MB), from which the client copies it into the allocation's logs.
    pub fn create_body(&self) -> ContainerCreateBody {
        let port_key = |p: &PortMap| format!("{}/tcp", p.container);
        let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = self
            .ports
            .iter()
            .map(|p| {
                (
                    port_key(p),
                    Some(vec![PortBinding {
                        host_ip: Some(p.host_ip.clone()),
                        host_port: Some(p.host.to_string()),
                    }]),
                )
            })
            .collect();
        let mapped = self.network_mode == "bridge" && !self.ports.is_empty();
        ContainerCreateBody {
            image: Some(self.image.clone()),
            entrypoint: self.entrypoint.clone(),
            cmd: self.cmd.clone(),
            env: Some(self.env.clone()),
            labels: Some(self.labels.clone().into_iter().collect()),
            working_dir: self.work_dir.clone(),
            hostname: self.hostname.clone(),
            exposed_ports: mapped.then(|| self.ports.iter().map(port_key).collect()),
            stop_signal: (!self.stop_signal.is_empty()).then(|| self.stop_signal.clone()),
            host_config: Some(HostConfig {
                binds: Some(self.binds.clone()),
                network_mode: Some(self.network_mode.clone()),
                port_bindings: mapped.then_some(port_bindings),
                memory: Some(self.memory_bytes),
                memory_reservation: self.memory_reservation_bytes,
                // No swap beyond the limit: going over it is an OOM kill, as with exec.
                memory_swap: Some(self.memory_bytes),
                cpu_shares: Some(self.cpu_shares),
                log_config: Some(HostConfigLogConfig {
                    typ: Some("json-file".into()),
                    config: Some(HashMap::from([
                        ("max-size".to_string(), "2m".to_string()),
                        ("max-file".to_string(), "2".to_string()),
                    ])),
                }),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yurt_proto::v1::{Resources, ValueList, ValueMap};

    fn s(v: &str) -> Value {
        Value {
            kind: Some(value::Kind::StringValue(v.into())),
        }
    }

    fn l(v: &[&str]) -> Value {
        Value {
            kind: Some(value::Kind::ListValue(ValueList {
                values: v.iter().map(|x| s(x)).collect(),
            })),
        }
    }

    fn task(config: &[(&str, Value)]) -> Task {
        Task {
            name: "server".into(),
            driver: "docker".into(),
            kill_signal: "SIGINT".into(),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            resources: Some(Resources {
                cpu: 500,
                memory_mb: 64,
                memory_max_mb: 128,
            }),
            ..Task::default()
        }
    }

    fn planned(task: &Task, oversubscription: bool) -> Result<Plan, String> {
        let rotation = Rotation {
            base: "/a/alloc/logs/server.stdout".into(),
            max_files: 2,
            max_file_bytes: 1,
        };
        let ports = [yurt_proto::v1::Port {
            label: "http".into(),
            value: 23456,
            to: 8080,
        }];
        plan(&TaskStart {
            alloc_id: "a1",
            job: "geo",
            group: "api",
            node_id: "n1",
            ports: &ports,
            host_ip: "127.0.0.1",
            memory_oversubscription: oversubscription,
            task,
            alloc_dir: Path::new("/a"),
            task_dir: Path::new("/a/server"),
            handle_dir: Path::new("/a/server/.handle"),
            env: BTreeMap::from([
                ("PATH".to_string(), "/usr/bin".to_string()),
                ("NOMAD_ALLOC_ID".to_string(), "a1".to_string()),
            ]),
            stdout: rotation.clone(),
            stderr: rotation,
        })
    }

    #[test]
    fn a_task_becomes_a_container_as_nomad_makes_it() {
        let labels = Value {
            kind: Some(value::Kind::MapValue(ValueMap {
                fields: [("team".to_string(), s("geo"))].into(),
            })),
        };
        let t = task(&[
            ("image", s("geo-api-server:0.1")),
            ("command", s("/bin/httpd")),
            ("args", l(&["-p", "${NOMAD_ALLOC_ID}"])),
            ("ports", l(&["http"])),
            ("labels", labels),
        ]);
        let p = planned(&t, false).unwrap();
        assert_eq!(p.name, "server-a1");
        assert_eq!(
            p.cmd.as_deref(),
            Some(&["/bin/httpd".to_string(), "-p".into(), "a1".into()][..])
        );
        assert!(!p.env.iter().any(|e| e.starts_with("PATH=")), "{:?}", p.env);
        assert!(p.env.contains(&"NOMAD_ALLOC_DIR=/alloc".to_string()));
        assert!(p.env.contains(&"NOMAD_TASK_DIR=/local".to_string()));
        assert_eq!(p.labels["team"], "geo");
        assert_eq!(p.labels[LABEL_ALLOC], "a1");
        assert_eq!(p.labels[LABEL_GROUP], "api");
        assert_eq!(p.ports[0].host, 23456);
        assert_eq!(p.ports[0].container, 8080);
        assert_eq!(p.binds[0], "/a/alloc:/alloc");
        assert_eq!(p.memory_bytes, 64 << 20);
        assert_eq!(p.memory_reservation_bytes, None);
        let body = p.create_body();
        assert_eq!(body.exposed_ports, Some(vec!["8080/tcp".to_string()]));
        let hc = body.host_config.unwrap();
        assert_eq!(hc.cpu_shares, Some(500));
        assert_eq!(hc.network_mode.as_deref(), Some("bridge"));
        let binding = &hc.port_bindings.unwrap()["8080/tcp"];
        assert_eq!(
            binding.as_ref().unwrap()[0].host_port.as_deref(),
            Some("23456")
        );
        assert_eq!(body.stop_signal.as_deref(), Some("SIGINT"));
    }

    #[test]
    fn memory_max_is_the_limit_only_with_oversubscription() {
        let t = task(&[("image", s("x"))]);
        let p = planned(&t, true).unwrap();
        assert_eq!(p.memory_bytes, 128 << 20);
        assert_eq!(p.memory_reservation_bytes, Some(64 << 20));
    }

    #[test]
    fn volumes_stay_inside_the_allocation_directory_and_ports_name_the_groups() {
        for (v, ok) in [
            ("/etc:/etc", false),
            ("../../etc:/x", false),
            ("../other-task/data:/x:ro", true),
        ] {
            let t = task(&[("image", s("x")), ("volumes", l(&[v]))]);
            let r = planned(&t, false);
            assert_eq!(r.is_ok(), ok, "{v}: {r:?}");
        }
        let t = task(&[("image", s("x")), ("ports", l(&["db"]))]);
        let e = planned(&t, false).unwrap_err();
        assert!(e.contains("no network port \"db\""), "{e}");
    }
}
