//! Bad input: one clear sentence, a non-zero exit, no panic, no change of state.

use crate::harness::*;

#[test]
fn bad_input_is_refused_with_one_sentence() {
    let dir = TestDir::new();
    let agent = Agent::start(&dir.path.join("data"), &["-dev"]);

    let bad = dir.path.join("bad.hcl");
    std::fs::write(
        &bad,
        "job \"web\" {\n  group \"app\" {\n    update {\n      min_healthy_time = \"10m\"\n    }\n    task \"t\" {\n      driver = \"raw_exec\"\n      config { command = \"/bin/true\" }\n    }\n  }\n}\n",
    )
    .unwrap();
    let name = bad.to_str().unwrap();
    let run = agent.yurt(&["job", "run", name]);
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(
        stderr(&run).trim(),
        format!("Error: {name}:4: update.min_healthy_time (10m0s) must be less than healthy_deadline (5m0s)")
    );
    let plan = agent.yurt(&["job", "plan", name]);
    assert_eq!(plan.status.code(), Some(255), "plan errors exit 255");
    assert!(
        stderr(&plan).contains(":4: update.min_healthy_time"),
        "{}",
        stderr(&plan)
    );
    assert_eq!(agent.ok(&["job", "status"]).trim(), "No running jobs");

    let missing = agent.yurt(&["job", "run", "/no/such/file.hcl"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).starts_with("Error: cannot read job file /no/such/file.hcl"),
        "{}",
        stderr(&missing)
    );

    let unknown = agent.yurt(&["job", "status", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        stderr(&unknown).trim(),
        "Error querying job: job \"nope\" not found"
    );
    let stop = agent.yurt(&["job", "stop", "nope"]);
    assert_eq!(
        stderr(&stop).trim(),
        "Error deregistering job: job \"nope\" not found"
    );
    let alloc = agent.yurt(&["alloc", "status", "0000"]);
    assert_eq!(
        stderr(&alloc).trim(),
        "Error querying allocation: allocation \"0000\" not found"
    );

    // A new job with -check-index other than 0 is refused and not created.
    let good = web_job(&dir.path, "hello");
    let cas = agent.yurt(&["job", "run", "-check-index", "7", good.to_str().unwrap()]);
    assert_eq!(
        stderr(&cas).trim(),
        "Error submitting job: Enforcing job modify index 7: job does not exist"
    );
    assert_eq!(agent.ok(&["job", "status"]).trim(), "No running jobs");

    // No agent at the address: a clear sentence, exit 1.
    let out = std::process::Command::new(YURT)
        .args(["node", "status", "-address", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(
        msg.starts_with("Error: cannot reach a Yurt agent at http://127.0.0.1:1:"),
        "{msg}"
    );
    assert!(!msg.contains("panicked"), "{msg}");

    let version = agent.ok(&["version"]);
    assert!(version.starts_with("Yurt v"), "{version}");
}

#[test]
fn agent_refuses_a_missing_data_dir_and_bad_roles() {
    let out = std::process::Command::new(YURT)
        .args(["agent", "-server"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "Error: -data-dir is required (or use -dev for a throwaway one)"
    );
    let out = std::process::Command::new(YURT)
        .args(["agent"])
        .output()
        .unwrap();
    assert_eq!(
        stderr(&out).trim(),
        "Error: agent needs -dev, -server or -client"
    );
}
