//! A headless Chromium for the UI tests (`integration/browser.rs`) and the UI benchmark
//! (`yurt-bench ui`): [`Chromium::start`] runs its own `chromedriver` on a free port with a
//! browser profile in a temp dir and opens a WebDriver session (`fantoccini`); both stop when
//! it is dropped. [`console_errors`] reads what the browser's console said at level SEVERE,
//! which WebDriver has no command for (ChromeDriver's log endpoint). Needs Debian's `chromium`
//! and `chromium-driver`; without them it panics with one sentence naming the packages.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const DRIVER: &str = "/usr/bin/chromedriver";

/// A browser session and the driver behind it.
pub struct Chromium {
    pub client: Client,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

/// The `chromedriver` process, stopped when dropped (also when starting a session failed).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Chromium {
    /// A session in a window of `width` x `height` pixels (below 500 px wide, a phone's screen
    /// emulated); `within` bounds the driver's start.
    pub async fn start(width: u32, height: u32, within: Duration) -> Chromium {
        for (path, package) in [(CHROMIUM, "chromium"), (DRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "the UI tests need Debian's chromium and chromium-driver (apt-get install chromium \
                 chromium-driver, as root): {path} of package {package} is missing"
            );
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = serde_json::json!({
            // Test agents' HTTPS certificates are made by `yurt tls` for the test.
            "acceptInsecureCerts": true,
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        // Headless windows are at least 500 px wide: a phone's width is emulated instead.
        let mut caps = caps;
        if width < 500 {
            caps["goog:chromeOptions"]["mobileEmulation"] = serde_json::json!({
                "deviceMetrics": { "width": width, "height": height, "pixelRatio": 2 },
            });
        }
        let caps: serde_json::Map<String, serde_json::Value> = caps.as_object().unwrap().clone();
        // A driver that dies before it says its port, or a session that cannot start, is
        // tried again (twice at most) after saying why. Seen once in CI, most likely this:
        // chromedriver listens on 127.0.0.1 and ::1 with one port number, and with `--port=0`
        // it takes a free IPv4 port and then ends ("IPv6 port not available. Exiting...") if
        // that number is taken on ::1 (tried by hand; SeleniumHQ/selenium#10974 is the same);
        // a new try draws another port.
        let mut failures = Vec::new();
        for _ in 0..3 {
            match session(&caps, within).await {
                Ok((client, driver)) => {
                    return Chromium {
                        client,
                        _driver: driver,
                        _profile: profile,
                    };
                }
                Err(e) => {
                    eprintln!("yurt-chromium: {e}; trying again");
                    failures.push(e);
                }
            }
        }
        panic!(
            "no Chromium session after three tries: {}",
            failures.join("; ")
        );
    }

    /// Ends the session (within 5 s); the driver stops as this is dropped (without `close`,
    /// the driver goes, and the browser with it).
    pub async fn close(self) {
        let client = self.client.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
    }
}

/// Starts a `chromedriver` on a free port and opens a session on it, or says what went wrong
/// with what the driver printed.
async fn session(
    caps: &serde_json::Map<String, serde_json::Value>,
    within: Duration,
) -> Result<(Client, Driver), String> {
    let mut driver = Driver(
        Command::new(DRIVER)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{DRIVER} does not start: {e}"))?,
    );
    // Both of its outputs, line by line, into one channel.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out: Box<dyn std::io::Read + Send> = Box::new(driver.0.stdout.take().unwrap());
    let err: Box<dyn std::io::Read + Send> = Box::new(driver.0.stderr.take().unwrap());
    for pipe in [out, err] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let port = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => match line.split("started successfully on port ").nth(1) {
                    Some(port) => return Ok(port.trim_end_matches('.').to_string()),
                    None => seen.push(line),
                },
                Err(e) => {
                    let why = match e {
                        std::sync::mpsc::RecvTimeoutError::Timeout => {
                            "did not say its port in time"
                        }
                        std::sync::mpsc::RecvTimeoutError::Disconnected => {
                            "ended before saying its port"
                        }
                    };
                    return Err(format!("chromedriver {why} (it printed: {:?})", seen));
                }
            }
        }
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| match driver.0.try_wait() {
        Ok(Some(status)) => format!("{e}, {status}"),
        _ => e,
    })?;
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = tokio::time::timeout(
        within,
        ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}")),
    )
    .await
    .map_err(|_| format!("no Chromium session from chromedriver within {within:?}"))?
    .map_err(|e| format!("no Chromium session from chromedriver: {e}"))?;
    Ok((client, driver))
}

/// What the browser's console said at level SEVERE since the last read.
pub async fn console_errors(client: &Client) -> Result<Vec<String>, String> {
    let log = client
        .issue_cmd(ConsoleLog)
        .await
        .map_err(|e| format!("the browser's console log: {e}"))?;
    Ok(log
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect())
}

/// ChromeDriver's read of the browser's console (what `goog:loggingPrefs` keeps).
#[derive(Debug)]
struct ConsoleLog;

impl fantoccini::wd::WebDriverCompatibleCommand for ConsoleLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}
