//! The web UI in a real headless Chromium against real agents (`browser`): pages follow the
//! cluster without a reload, the Run page plans before it runs, and a token's lack of rights
//! is shown. Each test saves screenshots (`target/tmp/ui/`) and fails on any error the page
//! met.

use crate::browser::Browser;
use crate::harness::*;

fn url(agent: &Agent, path: &str) -> String {
    format!("http://{}{path}", agent.http.as_ref().unwrap())
}

/// Marks the page so that a reload (which would lose the mark) is seen.
fn mark(b: &Browser) {
    b.script("window.yurtMark = 'no reload'; return null");
}

fn not_reloaded(b: &Browser) {
    assert_eq!(b.script("return window.yurtMark || null"), "no reload");
}

/// Opens `path` at a phone's width (390 px), waits for `css` to say `want`, and checks that
/// the page needs no sideways scrolling (wide tables scroll within their own box) and met no
/// error; saves a screenshot `NAME-phone`.
fn fits_a_phone(agent: &Agent, path: &str, css: &str, want: &str, name: &str) {
    let phone = Browser::start(390, 844);
    phone.goto(&url(agent, path));
    phone.wait_text(css, want);
    let overflow = phone.script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
    );
    assert!(
        overflow.as_i64().is_some_and(|px| px <= 0),
        "{path} is wider than a phone by {overflow} px"
    );
    phone.screenshot(&format!("{name}-phone"));
    no_errors(&phone);
}

fn no_errors(b: &Browser) {
    no_errors_but(b, &[]);
}

/// No error but those that contain one of `expected`.
fn no_errors_but(b: &Browser, expected: &[&str]) {
    let errors: Vec<String> = b
        .errors()
        .into_iter()
        .filter(|e| !expected.iter().any(|x| e.contains(x)))
        .collect();
    assert_eq!(errors, Vec::<String>::new(), "the page met errors");
}

#[test]
fn a_job_run_from_the_cli_appears_on_the_jobs_page_and_its_page_follows_it() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let b = Browser::start(1280, 900);
    // The agent's root leads to the UI.
    b.goto(&url(&agent, "/"));
    b.wait_text("#page", "No jobs yet");
    mark(&b);

    agent.ok(&[
        "job",
        "run",
        "-detach",
        web_job(&dir.path, "ui").to_str().unwrap(),
    ]);
    b.wait_text("#jobs", "web");
    b.wait_text("#jobs tr[data-job=web]", "2 running");
    not_reloaded(&b);
    b.screenshot("jobs");

    // By keyboard: Tab to the job's link, Enter opens its page (overview, groups, the
    // allocations, the first version).
    b.script("document.body.focus(); return null");
    for _ in 0..30 {
        if b.focused() == "web" {
            break;
        }
        b.press("\u{E004}");
    }
    assert_eq!(b.focused(), "web", "Tab reaches the job's link");
    b.press("\u{E007}");
    b.wait_text("h1", "web");
    b.wait_text("#allocations", "running");
    b.wait_text("#versions", "Version 0");
    mark(&b);
    // A new version from the CLI shows up with its diff, and the page was not reloaded.
    agent.ok(&[
        "job",
        "run",
        "-detach",
        web_job(&dir.path, "again").to_str().unwrap(),
    ]);
    b.wait_text("#versions", "Version 1");
    b.wait_text("#versions", "\"ui\" => \"again\"");
    not_reloaded(&b);
    b.screenshot("job");
    no_errors(&b);

    // At a phone's width the page still reads (the wide columns are left out).
    fits_a_phone(&agent, "/ui/jobs", "#jobs", "web", "jobs");
    fits_a_phone(&agent, "/ui/jobs/web", "#versions", "Version 1", "job");
}

#[test]
fn the_run_page_shows_the_plan_s_diff_before_running_and_runs_with_its_check_index() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let b = Browser::start(1280, 1000);
    b.goto(&url(&agent, "/ui/run"));
    let job = |count: u32| {
        format!(
            "job \"uirun\" {{\n  group \"g\" {{\n    count = {count}\n    task \"t\" {{\n      \
             driver = \"raw_exec\"\n      config {{\n        command = \"/bin/sleep\"\n        \
             args    = [\"3600\"]\n      }}\n    }}\n  }}\n}}\n"
        )
    };
    b.fill("#jobspec", &job(1));
    assert!(!b.enabled("#run"), "Run waits for a plan");
    b.click("#plan");
    let plan = b.wait_text("#plan-result", "+ Job: \"uirun\"");
    assert!(
        !plan.contains("Unimplemented"),
        "no empty internal object: {plan}"
    );
    b.wait_text("#annotations", "1 place");
    assert!(b.enabled("#run"));
    b.screenshot("run-plan");
    b.click("#run");
    // It runs, and the page moves to the job's.
    b.wait_text("h1", "uirun");
    agent.wait_running("uirun", 1);
    no_errors(&b);

    // A change is planned as a diff of the running job...
    b.goto(&url(&agent, "/ui/run"));
    b.fill("#jobspec", &job(2));
    b.click("#plan");
    b.wait_text("#plan-result", "Count: \"1\" => \"2\"");
    // ...and if the job changes meanwhile, the run is refused, not overwritten.
    let other = dir.path.join("uirun.hcl");
    std::fs::write(&other, job(3)).unwrap();
    agent.ok(&["job", "run", "-detach", other.to_str().unwrap()]);
    b.click("#run");
    let said = b.wait_text("#error", "Run failed");
    assert!(said.contains("modify index"), "{said}");
    let status = agent.ok(&["job", "inspect", "uirun"]);
    assert!(status.contains("\"Count\": 3"), "{status}");
    b.screenshot("run-refused");
}

#[test]
fn a_read_only_token_sees_the_jobs_but_cannot_run_one_and_is_told_why() {
    let dir = TestDir::new();
    let mut agent = Agent::start(&dir.path.join("dev"), &["-dev", "-acl-enabled"]);
    let root = secret_of(&agent.ok(&["acl", "bootstrap"]));
    agent.cli_env = vec![("YURT_TOKEN".into(), root.clone())];
    agent.wait_node_ready();
    let ro = dir.path.join("ro.hcl");
    std::fs::write(
        &ro,
        "namespace \"default\" {\n  policy = \"read\"\n}\nnode {\n  policy = \"read\"\n}\n",
    )
    .unwrap();
    agent.ok(&["acl", "policy", "apply", "readonly", ro.to_str().unwrap()]);
    let token = secret_of(&agent.ok(&[
        "acl", "token", "create", "-name", "viewer", "-policy", "readonly",
    ]));
    agent.ok(&[
        "job",
        "run",
        "-detach",
        web_job(&dir.path, "acl").to_str().unwrap(),
    ]);

    let b = Browser::start(1280, 900);
    // Without a token the Jobs page says why it shows none.
    b.goto(&url(&agent, "/ui/jobs"));
    b.wait_text("#no-jobs", "No jobs that anonymous access may see");

    b.goto(&url(&agent, "/ui/settings/tokens"));
    b.fill("#secret", &token);
    b.click("#sign-in");
    b.wait_text("#token-state", "viewer");
    b.wait_text("#token-state", "readonly");
    b.goto(&url(&agent, "/ui/jobs"));
    b.wait_text("#jobs", "web");

    // What it may not do is shown disabled, with the reason, before it tries.
    b.goto(&url(&agent, "/ui/run"));
    b.wait_text(
        "#why",
        "You may not plan or run jobs: your ACL token (viewer) lacks submit-job on namespace \"default\"",
    );
    assert!(!b.enabled("#plan") && !b.enabled("#run"));
    b.screenshot("run-denied");
    b.goto(&url(&agent, "/ui/jobs/web"));
    b.wait_text("#job-why", "lacks submit-job");
    assert!(!b.enabled("#job-stop"));
    b.goto(&url(&agent, "/ui/clients"));
    b.click("#clients a");
    b.wait_text("#node-why", "lacks node write");
    assert!(!b.enabled("#drain-open") && !b.enabled("#eligibility"));
    // What the page could not know beforehand, the refusal says: the Servers page needs
    // agent and operator read.
    b.goto(&url(&agent, "/ui/servers"));
    let why = b.wait_text(
        "#error",
        "Permission denied: your ACL token may not do this",
    );
    assert!(
        why.contains("/v1/") && why.contains("this needs"),
        "it names the call and the right: {why}"
    );
    // And the API refuses what the page did not offer.
    let (status, _) = http_json_with(
        agent.http.as_ref().unwrap(),
        "POST",
        "/v1/job/web/plan",
        r#"{"Job": {"ID": "web", "Datacenters": ["dc1"], "TaskGroups": [{"Name": "app",
            "Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/true"}}]}]}}"#,
        &token,
    );
    assert_eq!(status, 403);
    // A token reads the policies it carries, parsed, and no other.
    agent.ok(&["acl", "policy", "apply", "other", ro.to_str().unwrap()]);
    let http = agent.http.clone().unwrap();
    let (status, p) = http_json_with(&http, "GET", "/v1/acl/policy/readonly", "", &token);
    assert_eq!(status, 200, "{p}");
    let caps = p["RulesJSON"]["Namespaces"][0]["Capabilities"].to_string();
    assert!(
        caps.contains("read-job") && !caps.contains("submit-job"),
        "{p}"
    );
    assert_eq!(p["RulesJSON"]["Node"]["Policy"], "read", "{p}");
    let (status, _) = http_json_with(&http, "GET", "/v1/acl/policy/other", "", &token);
    assert_eq!(status, 403);
    let jobs = agent.ok(&["job", "status"]);
    assert!(!jobs.contains("example"), "nothing ran: {jobs}");
    // The refusals the page showed are the only errors on its console.
    no_errors_but(&b, &["status of 403"]);
}

/// A service job of two whose updates place one canary, promoted by hand.
fn canary_job(dir: &std::path::Path, greeting: &str) -> std::path::PathBuf {
    let path = dir.join(format!("canary-{greeting}.hcl"));
    let src = format!(
        "job \"web\" {{\n  update {{\n    max_parallel     = 1\n    canary           = 1\n    \
         min_healthy_time = \"1s\"\n    healthy_deadline = \"1m\"\n  }}\n  group \"app\" {{\n    \
         count = 2\n    task \"server\" {{\n      driver = \"raw_exec\"\n      config {{\n        \
         command = \"/bin/sleep\"\n        args    = [\"3600\"]\n      }}\n      env {{\n        \
         GREETING = {greeting:?}\n      }}\n    }}\n  }}\n}}\n"
    );
    std::fs::write(&path, src).unwrap();
    path
}

#[test]
fn a_canary_deployment_is_drawn_as_it_progresses_and_promoted_from_the_ui() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().unwrap();
    agent.ok(&[
        "job",
        "run",
        "-detach",
        canary_job(&dir.path, "one").to_str().unwrap(),
    ]);
    agent.wait_running("web", 2);
    agent.ok(&[
        "job",
        "run",
        "-detach",
        canary_job(&dir.path, "two").to_str().unwrap(),
    ]);
    let id = wait_for("the new version's deployment", || {
        let (_, d) = http_json(&http, "GET", "/v1/job/web/deployment", "");
        match d["JobVersion"].as_u64() {
            Some(1) => Ok(d["ID"].as_str().unwrap().to_string()),
            _ => Err(d.to_string()),
        }
    });

    let b = Browser::start(1280, 900);
    b.goto(&url(&agent, &format!("/ui/deployments/{id}")));
    b.wait_text("#groups [data-group=app] .canaries", "1 of 1");
    mark(&b);
    // The canary turns healthy: the count changes on the page, and Promote is offered.
    b.wait_text("#groups [data-group=app] .healthy", "1");
    b.wait_css("#promote:not([disabled])");
    assert_eq!(b.text("#groups [data-group=app] .desired"), "2");
    b.screenshot("deployment-canary");
    b.click("#promote");
    b.wait_text("#groups [data-group=app] .canaries", "promoted");
    // The rest rolls: healthy goes on to 2 and the deployment succeeds, all without a reload.
    b.wait_text("#groups [data-group=app] .healthy", "2");
    b.wait_text("h1", "successful");
    not_reloaded(&b);
    assert!(!b.enabled("#promote"), "nothing left to promote");
    b.screenshot("deployment-successful");
    let status = agent.ok(&["deployment", "status", &id]);
    assert!(status.contains("successful"), "{status}");
    assert!(
        status.contains("true"),
        "the CLI sees it promoted: {status}"
    );
    no_errors(&b);
    let path = format!("/ui/deployments/{id}");
    fits_a_phone(&agent, &path, "h1", "successful", "deployment");
}

#[test]
fn a_client_drained_from_the_ui_drains() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    agent.ok(&[
        "job",
        "run",
        "-detach",
        web_job(&dir.path, "drain").to_str().unwrap(),
    ]);
    agent.wait_running("web", 2);
    let b = Browser::start(1280, 900);
    b.goto(&url(&agent, "/ui/clients"));
    b.wait_text("#clients", "ready");
    b.click("#clients a");
    b.wait_text("#allocations", "running");
    mark(&b);
    b.click("#drain-open");
    b.fill("#drain-deadline", "ten minutes");
    b.click("#drain-submit");
    b.wait_text("#drain-why", "is not a duration");
    b.click("#drain-force");
    b.screenshot("client-drain-dialog");
    b.click("#drain-submit");
    // Forced: its allocations stop at once (a single node: nowhere to go), and the drain ends
    // at once, leaving the node ineligible.
    b.wait_text("#eligibility-state", "ineligible");
    b.wait_text_gone("#allocations", "running");
    b.wait_text("#events", "drain");
    not_reloaded(&b);
    b.screenshot("client-drained");
    let nodes = agent.ok(&["node", "status", "-json"]);
    let nodes: serde_json::Value = serde_json::from_str(&nodes).unwrap();
    let node = &nodes["nodes"][0];
    assert_eq!(node["scheduling_eligibility"], "ineligible", "{nodes}");
    // Forced, as the dialog said (a drain's `Deadline` of -1 ns over HTTP).
    assert!(
        node["events"]
            .to_string()
            .contains("\"deadline\":\"force\""),
        "{nodes}"
    );
    assert!(agent.wait_running("web", 0).is_empty());
    no_errors(&b);
    fits_a_phone(&agent, "/ui/clients", "#clients", "ineligible", "clients");
    fits_a_phone(&agent, "/ui/run", "#why", "Plan first", "run");
}

#[test]
fn a_task_s_logs_stream_into_the_allocation_page() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let job = sh_batch_job(
        &dir.path,
        "ticker",
        1,
        "i=0; while true; do i=$((i+1)); echo tick $i; echo oops $i >&2; sleep 0.3; done",
    );
    agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    agent.wait_running("ticker", 1);
    let alloc = job_allocations(&agent, "ticker")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = Browser::start(1280, 900);
    b.goto(&url(&agent, &format!("/ui/allocations/{alloc}")));
    b.wait_text("#live", "running");
    b.wait_text("#logs", "tick 1\n");
    mark(&b);
    // Lines written after the page opened keep arriving.
    let seen = b.text("#logs").lines().count();
    b.wait_text("#logs", &format!("tick {}\n", seen + 5));
    // Both charts draw readings of the task (a chart of zeros once hid a misnamed field).
    wait_for("the memory and CPU charts to show the task's usage", || {
        let stats = b.text("#stats");
        let reading = |label: &str, unit: &str| -> f64 {
            stats
                .split(&format!("{label}: "))
                .nth(1)
                .and_then(|rest| rest.split(unit).next())
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0.0)
        };
        if reading("Memory (RSS)", "MiB") > 0.0 && reading("CPU", "%") > 0.0 {
            Ok(())
        } else {
            Err(stats)
        }
    });
    b.wait_text("#live", "Started");
    b.screenshot("allocation");
    // The other stream.
    b.script("const s = document.getElementById('log-type'); s.value = 'stderr'; s.dispatchEvent(new Event('change')); return null");
    b.wait_text("#logs", "oops 1\n");
    assert!(!b.text("#logs").contains("tick"));
    not_reloaded(&b);
    no_errors(&b);
    let path = format!("/ui/allocations/{alloc}");
    fits_a_phone(&agent, &path, "#logs", "tick 1\n", "allocation");
}

#[test]
fn the_servers_page_shows_peers_versions_gates_and_the_upgrade_check_live() {
    let dir = TestDir::new();
    let mut s = start_servers(&dir.path, 3, &[]);
    let l = leader(&s, &[0, 1, 2], 3);
    converged(&s, &[0, 1, 2]);
    let b = Browser::start(1280, 1000);
    b.goto(&url(&s[l], "/ui/servers"));
    let table = b.wait_text("#servers", "leader");
    assert_eq!(table.matches("voter").count(), 3, "{table}");
    // Not before a snapshot is taken, as the seeds' procedure says.
    b.wait_text("#upgrade-next", "Not safe");
    b.wait_text("#upgrade-checks", "no Raft snapshot yet");
    mark(&b);
    s[l].ok(&["operator", "raft", "snapshot"]);
    b.wait_text("#upgrade-next", "Safe to take one server down now");
    let gates = b.wait_text("#gates", "deployments");
    assert!(!gates.contains("closed"), "every gate is open: {gates}");
    // Every server's last log index is known to the leader, and they agree.
    let indexes: Vec<String> = (0..3)
        .map(|i| b.text(&format!("#servers tbody tr:nth-child({}) .index", i + 1)))
        .collect();
    assert!(
        indexes.iter().all(|i| i.parse::<u64>().is_ok()),
        "{indexes:?}"
    );
    b.screenshot("servers");

    // A follower stops: the page says so, and that no other may go down now.
    let f = (l + 1) % 3;
    s[f].kill9();
    b.wait_text("#upgrade-next", "Not safe");
    b.wait_text("#upgrade-checks", "servers alive");
    b.wait_text(&format!("#servers tr[data-server=s{f}]"), "failed");
    not_reloaded(&b);
    b.screenshot("servers-one-down");
    no_errors(&b);
    fits_a_phone(&s[l], "/ui/servers", "#servers", "failed", "servers");
}

#[test]
fn the_ui_is_served_over_https_through_a_client_agent_from_a_server_that_wants_certificates() {
    let dir = TestDir::new();
    let certs = dir.path.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let made: [&[&str]; 3] = [
        &["tls", "ca", "create"],
        &["tls", "cert", "create", "-server"],
        &["tls", "cert", "create", "-client"],
    ];
    for args in made {
        let out = std::process::Command::new(YURT)
            .args(args)
            .current_dir(&certs)
            .output()
            .unwrap();
        assert!(out.status.success(), "yurt {args:?}: {}", stderr(&out));
    }
    // The server wants a certificate from the CA of every HTTPS caller: a browser has none,
    // the client agent has its own.
    let config = |role: &str, extra: &str| {
        let d = certs.display();
        let path = dir.path.join(format!("{role}-tls.hcl"));
        std::fs::write(
            &path,
            format!(
                "tls {{\n  http = true\n  verify_https_client = {}\n  \
                 ca_file = \"{d}/yurt-agent-ca.pem\"\n  \
                 cert_file = \"{d}/global-{role}-yurt.pem\"\n  \
                 key_file = \"{d}/global-{role}-yurt-key.pem\"\n}}\n{extra}",
                role == "server"
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let server = Agent::start(
        &dir.path.join("s0"),
        &[
            "-server",
            "-bootstrap-expect",
            "1",
            "-config",
            &config("server", ""),
        ],
    );
    let client = Agent::start(
        &dir.path.join("c0"),
        &[
            "-client",
            "-servers",
            &server.grpc,
            "-node",
            "c0",
            "-config",
            &config("client", RAW_EXEC_ON),
        ],
    );
    wait_node_status(&server, "c0", "ready");
    server.ok(&[
        "job",
        "run",
        "-detach",
        web_job(&dir.path, "tls").to_str().unwrap(),
    ]);
    // The browser has no certificate, so it reaches the UI through the client agent, which
    // passes its calls on to the server over HTTPS with its own.
    let http = client.http.clone().unwrap();
    let b = Browser::start(1280, 900);
    b.goto(&format!("https://{http}/"));
    b.wait_text("#jobs tr[data-job=web]", "2 running");
    assert_eq!(
        b.script("return location.href"),
        format!("https://{http}/ui/")
    );
    b.click("#jobs a");
    b.wait_text("#allocations", "running");
    no_errors(&b);
}

#[test]
fn a_client_agent_serves_the_api_and_the_ui_by_passing_calls_on_to_a_server() {
    let dir = TestDir::new();
    let servers = start_servers(&dir.path, 1, &[]);
    let client = Agent::start(
        &dir.path.join("c0"),
        &["-client", "-servers", &servers[0].grpc, "-node", "c0"],
    );
    wait_node_status(&servers[0], "c0", "ready");
    let http = client.http.clone().expect("a client agent serves HTTP");
    // The API through the client: reads, a write, and a blocking query that waits.
    let (status, nodes) = http_json(&http, "GET", "/v1/nodes", "");
    assert_eq!(status, 200, "{nodes}");
    assert_eq!(nodes[0]["Name"], "c0", "{nodes}");
    servers[0].ok(&[
        "job",
        "run",
        "-detach",
        web_job(&dir.path, "via-client").to_str().unwrap(),
    ]);
    servers[0].wait_running("web", 2);
    let (status, job) = http_json(&http, "GET", "/v1/job/web", "");
    assert_eq!((status, job["ID"].as_str()), (200, Some("web")), "{job}");
    // Errors come back as the server said them.
    let (status, missing) = http_json(&http, "GET", "/v1/job/nothing", "");
    assert_eq!(status, 404, "{missing}");
    // And the UI, live.
    let b = Browser::start(1280, 900);
    b.goto(&format!("http://{http}/"));
    b.wait_text("#jobs tr[data-job=web]", "2 running");
    mark(&b);
    servers[0].ok(&["job", "stop", "-detach", "web"]);
    b.wait_text("#jobs tr[data-job=web]", "dead");
    not_reloaded(&b);
    no_errors(&b);
}

#[test]
fn a_job_is_reverted_stopped_and_started_and_an_allocation_restarted_and_stopped_from_the_ui() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().unwrap();
    for greeting in ["one", "two"] {
        let job = web_job(&dir.path, greeting);
        agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    }
    agent.wait_running("web", 2);
    let b = Browser::start(1280, 1000);
    b.goto(&url(&agent, "/ui/jobs/web"));
    b.wait_text("#versions", "Version 1");
    // Revert to version 0: version 2, with version 0's spec.
    b.click("#revert-0");
    b.wait_text("#versions", "Version 2");
    let (_, job) = http_json(&http, "GET", "/v1/job/web", "");
    assert_eq!(
        job["TaskGroups"][0]["Tasks"][0]["Env"]["GREETING"], "one",
        "{job}"
    );
    // Stop asks twice; then the job is dead, and Start brings it back.
    b.click("#job-stop");
    b.click("#job-stop-confirm");
    b.wait_text("h1", "dead");
    let (_, job) = http_json(&http, "GET", "/v1/job/web", "");
    assert_eq!(job["Stop"], true, "{job}");
    b.screenshot("job-stopped");
    b.click("#job-start");
    b.wait_text("h1", "running");
    agent.wait_running("web", 2);
    let (_, job) = http_json(&http, "GET", "/v1/job/web", "");
    assert_eq!(job["Stop"], false, "{job}");

    // An allocation's tasks restarted, then the allocation stopped.
    let alloc = job_allocations(&agent, "web")
        .into_iter()
        .find(|a| a["desired_status"] == "run" && a["client_status"] == "running")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    b.goto(&url(&agent, &format!("/ui/allocations/{alloc}")));
    b.wait_text("h1", "running");
    b.click("#alloc-restart");
    b.wait_text("#live", "Restart Signaled");
    b.click("#alloc-stop");
    b.click("#alloc-stop-confirm");
    b.wait_text("#alloc-why", "The allocation is not running");
    let stopped = job_allocations(&agent, "web")
        .into_iter()
        .find(|a| a["id"] == alloc.as_str())
        .unwrap();
    assert_eq!(stopped["desired_status"], "stop", "{stopped}");
    no_errors(&b);
}

#[test]
fn a_client_agent_s_api_moves_on_when_the_server_it_passed_calls_to_dies() {
    let dir = TestDir::new();
    let mut s = start_servers(&dir.path, 3, &[]);
    let l = leader(&s, &[0, 1, 2], 3);
    let client = Agent::start(
        &dir.path.join("c0"),
        &["-client", "-servers", &grpc_list(&s), "-node", "c0"],
    );
    wait_node_status(&s[l], "c0", "ready");
    let http = client.http.clone().unwrap();
    let answers = || http_json(&http, "GET", "/v1/nodes", "");
    assert_eq!(answers().0, 200);
    // Heartbeats are answered by the leader: its HTTP API is where the calls go. Killed, the
    // calls fail in one sentence naming it, until a heartbeat answered by the next leader.
    let dead = s[l].http.clone().unwrap();
    s[l].kill9();
    wait_for("a call to fail naming the dead server", || {
        match answers() {
            (502, v) if v.to_string().contains(&dead) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let others: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    leader(&s, &others, 3);
    wait_for("the client agent's API to answer again", || {
        match answers() {
            (200, v) if v[0]["Name"] == "c0" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}
