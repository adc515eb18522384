//! Native service checks (`service { check { type = "http" | "tcp" | "script" } }`): one loop per
//! check, every `interval`, each attempt bounded by `timeout`. The results feed allocation
//! health (`crate::health`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use yurt_proto::v1::{Allocation, Check, Service};

use crate::executor::{self, ExecSpec};

/// What one check probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// GET `path` on `addr`; any 2xx passes.
    Http { addr: String, path: String },
    /// A TCP connection to `addr` passes.
    Tcp { addr: String },
    /// The command exits 0, run in the task's directory and environment (from its spec file).
    Script {
        command: String,
        args: Vec<String>,
        task_spec: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
}

/// The latest result of one check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Since when (Unix ms) the check has passed without a failure in between.
    pub passing_since: Option<i64>,
    pub output: String,
}

/// The results of one allocation's checks, by check name.
pub type Results = Arc<Mutex<BTreeMap<String, Outcome>>>;

/// The checks of an allocation, with the addresses they probe. `host` is the address tasks'
/// ports are reached at; `exec_dir` gives a task's executor directory (for script checks).
pub fn targets(
    alloc: &Allocation,
    host: &str,
    exec_dir: impl Fn(&str) -> PathBuf,
) -> Result<Vec<Target>, String> {
    let Some(group) = alloc
        .job
        .as_ref()
        .and_then(|j| j.task_groups.iter().find(|g| g.name == alloc.task_group))
    else {
        return Ok(Vec::new());
    };
    let first_task = group
        .tasks
        .first()
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let mut services: Vec<(&Service, String)> = group
        .services
        .iter()
        .map(|s| (s, first_task.clone()))
        .collect();
    for t in &group.tasks {
        services.extend(t.services.iter().map(|s| (s, t.name.clone())));
    }
    let port = |label: &str| -> Result<String, String> {
        if let Ok(n) = label.parse::<u16>() {
            return Ok(format!("{host}:{n}"));
        }
        alloc
            .ports
            .iter()
            .find(|p| p.label == label)
            .map(|p| format!("{host}:{}", p.value))
            .ok_or_else(|| format!("port {label:?} is not allocated"))
    };
    let mut out = Vec::new();
    for (service, task) in services {
        for c in &service.checks {
            let label = if c.port.is_empty() {
                &service.port
            } else {
                &c.port
            };
            out.push(Target {
                name: check_name(service, c),
                probe: match c.r#type.as_str() {
                    "http" => Probe::Http {
                        addr: port(label)?,
                        path: c.path.clone(),
                    },
                    "tcp" => Probe::Tcp { addr: port(label)? },
                    _ => Probe::Script {
                        command: c.command.clone(),
                        args: c.args.clone(),
                        task_spec: executor::spec_path(&exec_dir(&task)),
                    },
                },
                interval: Duration::from_millis(c.interval_ms.max(100)),
                timeout: Duration::from_millis(c.timeout_ms.max(100)),
            });
        }
    }
    Ok(out)
}

/// A check's name: as written, or Nomad's default `service: "<name>" check`.
fn check_name(service: &Service, c: &Check) -> String {
    if c.name.is_empty() {
        format!("service: {:?} check", service.name)
    } else {
        c.name.clone()
    }
}

/// Runs one check every interval until aborted, recording each outcome in `results`.
pub async fn run(target: Target, results: Results, now_ms: fn() -> i64) {
    loop {
        let outcome = match tokio::time::timeout(target.timeout, probe(&target.probe)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", target.timeout)),
        };
        {
            let mut all = results.lock().unwrap_or_else(|e| e.into_inner());
            let entry = all.entry(target.name.clone()).or_default();
            match outcome {
                Ok(out) => {
                    entry.passing_since.get_or_insert_with(now_ms);
                    entry.output = out;
                }
                Err(e) => {
                    entry.passing_since = None;
                    entry.output = e;
                }
            }
        }
        tokio::time::sleep(target.interval).await;
    }
}

async fn probe(p: &Probe) -> Result<String, String> {
    match p {
        Probe::Tcp { addr } => tokio::net::TcpStream::connect(addr)
            .await
            .map(|_| format!("TCP connect {addr}: Success"))
            .map_err(|e| format!("TCP connect {addr}: {e}")),
        Probe::Http { addr, path } => {
            let status = http_get(addr, path).await?;
            let line = format!("HTTP GET http://{addr}{path}: {status}");
            if (200..300).contains(&status) {
                Ok(line)
            } else {
                Err(line)
            }
        }
        Probe::Script {
            command,
            args,
            task_spec,
        } => {
            let spec: ExecSpec = std::fs::read(task_spec)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| "the task has not started".to_string())?;
            let out = tokio::process::Command::new(command)
                .args(args)
                .current_dir(&spec.dir)
                .env_clear()
                .envs(&spec.env)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|e| format!("cannot run {command}: {e}"))?;
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() {
                Ok(text)
            } else {
                Err(format!("{command} exited with {}: {text}", out.status))
            }
        }
    }
}

async fn http_get(addr: &str, path: &str) -> Result<u16, String> {
    let fail = |e: &dyn std::fmt::Display| format!("HTTP GET http://{addr}{path}: {e}");
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| fail(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(&e))?;
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, addr)
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail(&e))?;
    let status = sender.send_request(req).await.map_err(|e| fail(&e));
    conn.abort();
    Ok(status?.status().as_u16())
}

/// Since when every check of an allocation has passed, or `None` while one is failing or has
/// not run yet. With no checks at all this is "always".
pub fn all_passing_since(names: &[String], results: &BTreeMap<String, Outcome>) -> Option<i64> {
    names
        .iter()
        .map(|n| results.get(n).and_then(|o| o.passing_since))
        .try_fold(i64::MIN, |acc, s| s.map(|s| acc.max(s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use yurt_proto::v1::{Job, Port, Task, TaskGroup};

    fn alloc() -> Allocation {
        let check = |kind: &str| Check {
            r#type: kind.into(),
            path: "/health".into(),
            command: "/bin/true".into(),
            interval_ms: 1_000,
            timeout_ms: 500,
            ..Check::default()
        };
        Allocation {
            task_group: "app".into(),
            ports: vec![Port {
                label: "http".into(),
                value: 23456,
                to: 0,
            }],
            job: Some(Job {
                task_groups: vec![TaskGroup {
                    name: "app".into(),
                    services: vec![Service {
                        name: "web".into(),
                        port: "http".into(),
                        checks: vec![check("http")],
                        ..Service::default()
                    }],
                    tasks: vec![Task {
                        name: "server".into(),
                        services: vec![Service {
                            name: "db".into(),
                            port: "5432".into(),
                            checks: vec![
                                Check {
                                    name: "alive".into(),
                                    ..check("tcp")
                                },
                                Check {
                                    name: "script".into(),
                                    ..check("script")
                                },
                            ],
                            ..Service::default()
                        }],
                        ..Task::default()
                    }],
                    ..TaskGroup::default()
                }],
                ..Job::default()
            }),
            ..Allocation::default()
        }
    }

    #[test]
    fn checks_resolve_their_ports_and_names() {
        let t = targets(&alloc(), "127.0.0.1", |task| PathBuf::from("/x").join(task)).unwrap();
        let probes: Vec<(&str, &Probe)> = t.iter().map(|t| (t.name.as_str(), &t.probe)).collect();
        assert_eq!(
            probes,
            vec![
                (
                    "service: \"web\" check",
                    &Probe::Http {
                        addr: "127.0.0.1:23456".into(),
                        path: "/health".into()
                    }
                ),
                (
                    "alive",
                    &Probe::Tcp {
                        addr: "127.0.0.1:5432".into()
                    }
                ),
                (
                    "script",
                    &Probe::Script {
                        command: "/bin/true".into(),
                        args: vec![],
                        task_spec: PathBuf::from("/x/server/spec.json")
                    }
                ),
            ]
        );
        let mut bad = alloc();
        bad.ports.clear();
        assert_eq!(
            targets(&bad, "h", |_| PathBuf::new()).unwrap_err(),
            "port \"http\" is not allocated"
        );
    }

    #[test]
    fn all_checks_must_pass_and_the_latest_start_counts() {
        let names = vec!["a".to_string(), "b".to_string()];
        let mut r = BTreeMap::new();
        assert_eq!(all_passing_since(&names, &r), None);
        r.insert(
            "a".to_string(),
            Outcome {
                passing_since: Some(5),
                output: String::new(),
            },
        );
        assert_eq!(all_passing_since(&names, &r), None);
        r.insert(
            "b".to_string(),
            Outcome {
                passing_since: Some(9),
                output: String::new(),
            },
        );
        assert_eq!(all_passing_since(&names, &r), Some(9));
        assert_eq!(all_passing_since(&[], &r), Some(i64::MIN));
    }

    #[tokio::test]
    async fn probes_pass_and_fail_against_real_sockets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // A tiny HTTP server: /ok answers 200, anything else 500.
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let code = if req.starts_with("GET /ok ") {
                    "200 OK"
                } else {
                    "500 Oops"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {code}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let http = |path: &str| Probe::Http {
            addr: addr.clone(),
            path: path.into(),
        };
        assert!(probe(&http("/ok")).await.is_ok());
        assert!(probe(&http("/bad")).await.unwrap_err().ends_with(": 500"));
        assert!(probe(&Probe::Tcp { addr: addr.clone() }).await.is_ok());
        assert!(probe(&Probe::Tcp {
            addr: "127.0.0.1:1".into()
        })
        .await
        .is_err());
    }
}
