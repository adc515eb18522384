//! Tests of the runner: allocation status from task states, executors started through the
//! launcher or directly, interpolation.

use super::supervise::alloc_status;
use super::*;
use crate::driver::executors::Executors;
use crate::driver::interpolate;
use std::sync::Arc;

#[test]
fn allocation_status_follows_its_tasks() {
    let st = |state: &str, failed: bool| TaskState {
        state: state.into(),
        failed,
        ..TaskState::default()
    };
    let of = |v: Vec<TaskState>| alloc_status(v.iter()).0;
    assert_eq!(
        of(vec![st(TASK_PENDING, false), st(TASK_RUNNING, false)]),
        ALLOC_RUNNING
    );
    assert_eq!(of(vec![st(TASK_PENDING, false)]), ALLOC_PENDING);
    assert_eq!(
        of(vec![st(TASK_DEAD, false), st(TASK_DEAD, false)]),
        ALLOC_COMPLETE
    );
    assert_eq!(
        of(vec![st(TASK_DEAD, false), st(TASK_DEAD, true)]),
        ALLOC_FAILED
    );
    // A failed task among running ones does not fail the allocation yet.
    assert_eq!(
        of(vec![st(TASK_RUNNING, false), st(TASK_DEAD, true)]),
        ALLOC_RUNNING
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_launcher_executors_start_directly_and_failures_keep_their_place() {
    let dirs: Vec<PathBuf> = (0..12)
        .map(|i| PathBuf::from(format!("/tmp/{i}")))
        .collect();
    let d = dirs.clone();
    // `/bin/true executor-launcher` never says it is ready.
    let started =
        tokio::task::spawn_blocking(move || Executors::new(Path::new("/bin/true")).start(&d))
            .await
            .unwrap();
    assert_eq!(started.len(), 12);
    assert!(started.iter().all(|r| r.as_ref().is_ok_and(|pid| *pid > 0)));
    let missing = tokio::task::spawn_blocking(move || {
        Executors::new(Path::new("/nonexistent/yurt")).start(&dirs)
    })
    .await
    .unwrap();
    assert_eq!(missing.len(), 12);
    for r in missing {
        let e = r.unwrap_err();
        assert!(
            e.starts_with("cannot start the executor /nonexistent/yurt: "),
            "{e}"
        );
    }
}

/// A stand-in launcher (a shell script) that answers PIDs for two requests, an error for
/// the third, and ends after reading the fourth without answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launcher_that_ends_fails_the_start_it_owed_and_the_rest_start_directly() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("launcher");
    std::fs::write(
        &exe,
        format!(
            "#!/bin/sh\n[ \"$1\" = executor-launcher ] || exit 0\necho '{}'\n\
             read a; echo 101\nread b; echo 102\nread c; echo 'error no room'\nread d\n",
            crate::launcher::HELLO
        ),
    )
    .unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dirs: Vec<PathBuf> = (0..5).map(|i| tmp.path().join(i.to_string())).collect();
    let executors = Arc::new(Executors::new(&exe));
    let e = executors.clone();
    let started = tokio::task::spawn_blocking(move || e.start(&dirs))
        .await
        .unwrap();
    assert_eq!(started[0], Ok(101));
    assert_eq!(started[1], Ok(102));
    assert_eq!(
        started[2],
        Err("cannot start the executor: no room".to_string())
    );
    let owed = started[3].as_ref().unwrap_err();
    assert!(
        owed.starts_with("the executor launcher ended before it answered"),
        "{owed}"
    );
    // The script itself, run directly as `launcher executor DIR`, exits at once.
    assert!(started[4].as_ref().is_ok_and(|pid| *pid > 0));
    assert!(!executors.has_launcher());
}

#[test]
fn interpolation_replaces_known_names_only() {
    let env = BTreeMap::from([("YURT_ALLOC_ID".to_string(), "abc".to_string())]);
    assert_eq!(interpolate("id=${YURT_ALLOC_ID}!", &env), "id=abc!");
    assert_eq!(
        interpolate("${UNKNOWN} and ${YURT_ALLOC_ID}", &env),
        "${UNKNOWN} and abc"
    );
    assert_eq!(interpolate("open ${", &env), "open ${");
}

/// The client state of Yurt 0.2.0 (one allocation as it persisted it) loads in this build,
/// and the format marker is written for it, then checked.
#[test]
fn client_state_of_0_2_0_loads_and_a_newer_format_is_refused() {
    let golden = include_str!("../../../../fixtures/0.2.0/client-alloc.json");
    let a: LocalAlloc = serde_json::from_str(golden).unwrap();
    assert_eq!(a.alloc.id, "5d8b2c1e-0000-4000-8000-000000000001");
    assert_eq!(a.alloc.job.as_ref().unwrap().task_groups[0].name, "app");
    assert_eq!(a.client_status, ALLOC_RUNNING);
    assert!(a.tasks.contains_key("server"), "{:?}", a.tasks.keys());
    // Through the loader, as a client starting on 0.2.0's state does.
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let allocs = db.open_tree("allocs").unwrap();
    allocs
        .insert(a.alloc.id.as_bytes(), golden.as_bytes())
        .unwrap();
    let meta = db.open_tree("meta").unwrap();
    check_format(&meta).unwrap();
    assert_eq!(
        meta.get("format").unwrap().unwrap().as_ref(),
        CLIENT_STATE_FORMAT.to_string().as_bytes()
    );
    assert_eq!(load(&allocs).unwrap().len(), 1);
    meta.insert("format", "99").unwrap();
    let e = check_format(&meta).unwrap_err();
    assert!(
        e.contains("format 99") && e.contains("downgrades are not supported"),
        "{e}"
    );
}
