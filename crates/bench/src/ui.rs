//! `yurt-bench ui [JOBS]`: the web UI in headless Chromium (`yurt_chromium`) against one
//! server agent holding JOBS jobs (1,000 by default; in a datacenter no node has, so nothing
//! is placed). Prints, over several rounds: the time from navigation start to the first
//! complete render of the Jobs page (every job's row in the table, read in the page with
//! `performance.now()`); and the time from a registration's answer (its Raft entry applied) to
//! the new job's row in the DOM of an open Jobs page (seen by a `MutationObserver`, timed with
//! the machine's clock on both sides), with the time from sending it. Figures are printed,
//! never asserted.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use yurt_chromium::Chromium;
use yurt_nemesis::http::try_http;

use crate::Server;

const ROUNDS: usize = 5;
const CHANGES: usize = 10;

fn job(id: &str) -> String {
    serde_json::json!({ "Job": {
        "ID": id, "Type": "batch", "Datacenters": ["nowhere"],
        "TaskGroups": [{ "Name": "g", "Count": 1, "Tasks": [{
            "Name": "t", "Driver": "raw_exec", "Config": { "command": "/bin/true" },
        }]}],
    }})
    .to_string()
}

fn register(http: &str, id: &str) {
    let r = try_http(
        http,
        "POST",
        "/v1/jobs",
        &job(id),
        "",
        Duration::from_secs(10),
    );
    assert!(
        r.as_ref().is_ok_and(|(s, _, _)| s.contains(" 200")),
        "register {id}: {r:?}"
    );
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    format!(
        "p50 {:.0} ms, min {:.0} ms, max {:.0} ms ({} rounds)",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1],
        v.len()
    )
}

pub async fn ui(yurt: &Path, jobs: usize) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::single(yurt, dir.path()).await;
    let http = server.http.clone();
    let h = http.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..jobs {
            register(&h, &format!("bench-{i:05}"));
        }
    })
    .await
    .unwrap();
    println!("ui: {jobs} jobs registered on one server; Chromium headless, 1280 x 900");
    let browser = Chromium::start(1280, 900, Duration::from_secs(30)).await;
    let c = &browser.client;

    // First complete render: navigation start to every row in the table.
    let mut renders = Vec::new();
    for _ in 0..ROUNDS {
        c.goto(&format!("http://{http}/ui/jobs")).await.unwrap();
        let ms = c
            .execute_async(
                "const [n, done] = arguments;
                 const check = () => document.querySelectorAll('#jobs tbody tr').length >= n
                   ? done(performance.now()) : requestAnimationFrame(check);
                 check();",
                vec![serde_json::json!(jobs)],
            )
            .await
            .unwrap();
        renders.push(ms.as_f64().unwrap());
    }
    println!(
        "  Jobs page, first complete render of {jobs} jobs: {}",
        summary(renders)
    );

    // A registration's answer to its row in the open page.
    let (mut from_answer, mut from_send) = (Vec::new(), Vec::new());
    for i in 0..CHANGES {
        let id = format!("new-{i:03}");
        let watch = c.execute_async(
            "const [id, done] = arguments;
             const seen = () => document.querySelector(`#jobs tr[data-job=\"${id}\"]`);
             if (seen()) return done(Date.now());
             new MutationObserver((_, o) => { if (seen()) { o.disconnect(); done(Date.now()); } })
               .observe(document.getElementById('page'), { subtree: true, childList: true });",
            vec![serde_json::json!(id)],
        );
        let h = http.clone();
        let send = async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            tokio::task::spawn_blocking(move || {
                let sent = now_ms();
                register(&h, &id);
                (sent, now_ms())
            })
            .await
            .unwrap()
        };
        let (shown, (sent, answered)) = tokio::join!(watch, send);
        let shown = shown.unwrap().as_f64().unwrap();
        from_answer.push(shown - answered);
        from_send.push(shown - sent);
    }
    println!(
        "  a registration applied (its answer) to its row on the open Jobs page: {}",
        summary(from_answer)
    );
    println!(
        "  the same from sending it (the commit included): {}",
        summary(from_send)
    );
    browser.close().await;
    drop(server);
}
