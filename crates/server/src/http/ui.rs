//! The web UI's files, built into the binary (`crates/server/ui/`): `/` redirects to `/ui/`;
//! `/ui/` and every page under it (`/ui/jobs/web`, ...) answer the page shell, whose script
//! draws the page the address names from the `/v1` API; `/ui/style.css` and `/ui/js/*.js` are
//! the style and the scripts (plain JavaScript modules, no build step). Every answer forbids
//! scripts and styles from anywhere but this agent (`Content-Security-Policy`), so data shown
//! in a page can never run as code there.

use hyper::body::Bytes;
use hyper::{Response, StatusCode};

use super::request::{full, HttpResponse};

const SHELL: &str = include_str!("../../ui/index.html");

/// The assets by path under `/ui/`, with their content type.
const ASSETS: &[(&str, &str, &str)] = &[
    ("style.css", "text/css", include_str!("../../ui/style.css")),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../ui/favicon.svg"),
    ),
    ("js/app.js", JS, include_str!("../../ui/js/app.js")),
    ("js/api.js", JS, include_str!("../../ui/js/api.js")),
    ("js/html.js", JS, include_str!("../../ui/js/html.js")),
    ("js/frame.js", JS, include_str!("../../ui/js/frame.js")),
    ("js/rights.js", JS, include_str!("../../ui/js/rights.js")),
    ("js/diff.js", JS, include_str!("../../ui/js/diff.js")),
    ("js/jobs.js", JS, include_str!("../../ui/js/jobs.js")),
    ("js/job.js", JS, include_str!("../../ui/js/job.js")),
    ("js/run.js", JS, include_str!("../../ui/js/run.js")),
    ("js/token.js", JS, include_str!("../../ui/js/token.js")),
    (
        "js/deployment.js",
        JS,
        include_str!("../../ui/js/deployment.js"),
    ),
    (
        "js/allocation.js",
        JS,
        include_str!("../../ui/js/allocation.js"),
    ),
    ("js/clients.js", JS, include_str!("../../ui/js/clients.js")),
    ("js/client.js", JS, include_str!("../../ui/js/client.js")),
    ("js/servers.js", JS, include_str!("../../ui/js/servers.js")),
];

const JS: &str = "text/javascript";

const POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                      object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The UI's answer to a GET of `path`, if the path is the UI's.
pub(super) fn serve(path: &str) -> Option<HttpResponse> {
    if path == "/" || path == "/ui" {
        let mut r = Response::new(full(""));
        *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        r.headers_mut()
            .insert("location", hyper::header::HeaderValue::from_static("/ui/"));
        return Some(r);
    }
    let rest = path.strip_prefix("/ui/")?;
    Some(match ASSETS.iter().find(|(p, _, _)| *p == rest) {
        Some((_, kind, body)) => answer(StatusCode::OK, kind, Bytes::from_static(body.as_bytes())),
        None if rest.starts_with("js/") || rest.ends_with(".css") => answer(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            format!("the UI has no file {}", yurt_types::limits::shown(rest)).into(),
        ),
        None => answer(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(SHELL.as_bytes()),
        ),
    })
}

/// An answer of the UI, with its content type, no caching, and the content policy.
fn answer(status: StatusCode, kind: &'static str, body: Bytes) -> HttpResponse {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let headers = [
        ("content-type", kind),
        ("cache-control", "no-cache"),
        ("content-security-policy", POLICY),
        ("x-content-type-options", "nosniff"),
    ];
    for (name, value) in headers {
        r.headers_mut()
            .insert(name, hyper::header::HeaderValue::from_static(value));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::serve;

    #[test]
    fn the_root_redirects_pages_get_the_shell_and_assets_their_type() {
        let r = serve("/").unwrap();
        assert_eq!(r.status(), 307);
        assert_eq!(r.headers()["location"], "/ui/");
        for page in ["/ui/", "/ui/jobs", "/ui/jobs/web%20app", "/ui/run"] {
            let r = serve(page).unwrap();
            assert_eq!(r.status(), 200, "{page}");
            assert!(r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"));
        }
        assert_eq!(
            serve("/ui/js/app.js").unwrap().headers()["content-type"],
            "text/javascript"
        );
        assert_eq!(serve("/ui/js/nothing.js").unwrap().status(), 404);
        // Hostile paths get the shell or a 404, never a file from elsewhere, always with the
        // content policy.
        let long = format!("/ui/{}", "a/".repeat(10_000));
        for path in [
            "/ui/js/../../etc/passwd",
            "/ui/%2e%2e/%2e%2e/etc/passwd",
            "/ui/..",
            &long,
        ] {
            let r = serve(path).unwrap();
            let kind = r.headers()["content-type"].to_str().unwrap();
            assert!(
                r.status() == 404 || kind.starts_with("text/html"),
                "{path}: {} {kind}",
                r.status()
            );
            if r.status() == 200 {
                assert!(r.headers()["content-security-policy"]
                    .to_str()
                    .unwrap()
                    .contains("default-src 'self'"));
            }
        }
        assert!(serve("/v1/jobs").is_none());
        // Every module an asset imports is served.
        for (_, _, body) in super::ASSETS {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let name = line
                    .rsplit_once("'./")
                    .map(|(_, n)| n.trim_end_matches("';"));
                let name = name.unwrap_or_else(|| panic!("an import from ./: {line}"));
                let r = serve(&format!("/ui/js/{name}")).unwrap();
                assert_eq!(r.status(), 200, "{line}");
            }
        }
    }
}
