//! Damaged data dirs: every file of a stopped agent's data dir is deleted, truncated and
//! garbled in turn (on a copy), and an agent started on it must either refuse with one
//! sentence or start with the cluster's state: never panic, never start empty, never flood.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            // Task working dirs are the tasks', not the agent's.
            if p.file_name().is_some_and(|n| n != "allocs") {
                files(&p, out);
            }
        } else if p.file_name().is_some_and(|n| n != "agent-addrs.json") {
            out.push(p);
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Delete,
    Truncate,
    Garble,
}

fn damage(file: &Path, how: Damage) {
    match how {
        Damage::Delete => std::fs::remove_file(file).unwrap(),
        Damage::Truncate => {
            let len = std::fs::metadata(file).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
            f.set_len(len / 2).unwrap();
        }
        Damage::Garble => {
            let mut bytes = std::fs::read(file).unwrap();
            let n = bytes.len();
            for (i, b) in bytes.iter_mut().enumerate().skip(n / 3).take(64.max(n / 3)) {
                *b ^= 0x5a ^ (i as u8);
            }
            if n == 0 {
                bytes = b"garbage".to_vec();
            }
            std::fs::write(file, bytes).unwrap();
        }
    }
}

/// What an agent started on `data` did: refused (its output) or started and answered with
/// the job list (the list).
enum Outcome {
    Refused(String),
    Started(String),
}

/// Starts a server on `data` on the given ports (those it was using: its Raft membership names
/// its address).
fn start_on(data: &Path, grpc_port: u16) -> Outcome {
    let log = data.with_extension("log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(YURT)
        .args(["agent", "-server", "-data-dir", data.to_str().unwrap()])
        .args(["-grpc-port", &grpc_port.to_string(), "-http-port", "0"])
        .args(["-raft-multiplier", "4"])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let addrs = data.join("agent-addrs.json");
    let deadline = Instant::now() + timeout();
    let outcome = loop {
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(!status.success(), "exited 0:\n{text}");
            break Outcome::Refused(text);
        }
        let grpc = std::fs::read_to_string(&addrs)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["grpc"].as_str().map(String::from));
        if let Some(grpc) = grpc {
            let list = Command::new(YURT)
                .args(["-address", &grpc, "job", "status"])
                .output()
                .unwrap();
            if list.status.success() {
                break Outcome::Started(stdout(&list));
            }
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "neither refused nor answering:\n{}",
            &text[text.len().saturating_sub(3000)..]
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    stop_child(child);
    outcome
}

#[test]
fn every_damaged_file_of_a_server_data_dir_is_refused_or_survived_never_panicked_or_emptied() {
    let dir = TestDir::new();
    let original = dir.path.join("original");
    let grpc_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    {
        let mut agent = Agent::start_on(&original, &["-server"], grpc_port, 0);
        // A job no node can run (no tasks to clean up), large enough (360 KB) for the log to
        // keep it in a blob file, then a snapshot: the log, its blobs and a snapshot are there.
        let job = dir.path.join("kept.hcl");
        std::fs::write(
            &job,
            format!(
                "job \"kept\" {{\n  meta {{\n{}  }}\n  constraint {{\n    attribute = \"${{attr.kernel.name}}\"\n    value     = \"plan9\"\n  }}\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n    }}\n  }}\n}}\n",
                (0..6)
                    .map(|i| format!("    big{i} = \"{}\"\n", "x".repeat(60_000)))
                    .collect::<String>()
            ),
        )
        .unwrap();
        agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
        agent.ok(&["operator", "raft", "snapshot"]);
        agent.ok(&[
            "job",
            "run",
            "-detach",
            &sh_batch_job(&dir.path, "later", 1, "true").to_string_lossy(),
        ]);
        agent.stop();
    }
    let mut all = Vec::new();
    files(&original, &mut all);
    assert!(all.len() >= 6, "{all:?}");
    let before: Vec<Vec<u8>> = all.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let mut seen = Vec::new();
    for (n, file) in all.iter().enumerate() {
        let rel = file.strip_prefix(&original).unwrap();
        for how in [Damage::Delete, Damage::Truncate, Damage::Garble] {
            let copy = dir.path.join(format!("case-{n}-{how:?}"));
            copy_dir(&original, &copy);
            damage(&copy.join(rel), how);
            match start_on(&copy, grpc_port) {
                Outcome::Refused(text) => {
                    assert!(
                        !text.contains("panicked") && text.len() < 20_000,
                        "{rel:?} {how:?}: a panic or a flood ({} bytes):\n{}",
                        text.len(),
                        &text[..text.len().min(2000)]
                    );
                    let last = text
                        .lines()
                        .rev()
                        .find(|l| l.starts_with("Error"))
                        .unwrap_or("");
                    assert!(
                        !last.is_empty(),
                        "{rel:?} {how:?}: no error sentence:\n{text}"
                    );
                    // It names what to look at: the file, or a folder of at least two levels
                    // that holds it (`server/raft`, not just `server`).
                    let file = rel.file_name().and_then(|f| f.to_str()).unwrap_or("?");
                    let named = last.contains(file)
                        || rel
                            .ancestors()
                            .filter(|a| a.components().count() >= 2)
                            .any(|a| last.contains(a.to_str().unwrap_or("?")));
                    assert!(
                        named,
                        "{rel:?} {how:?}: names neither file nor folder: {last}"
                    );
                    seen.push(format!("{} {how:?}: refused: {last}", rel.display()));
                }
                Outcome::Started(list) => {
                    assert!(
                        list.contains("kept"),
                        "{rel:?} {how:?}: started without the cluster's state:\n{list}"
                    );
                    seen.push(format!("{} {how:?}: started with its state", rel.display()));
                }
            }
            let _ = std::fs::remove_dir_all(&copy);
        }
    }
    eprintln!("{}", seen.join("\n"));
    // The original was never touched.
    for (f, bytes) in all.iter().zip(before) {
        assert_eq!(std::fs::read(f).unwrap(), bytes, "{f:?} changed");
    }
}
