//! Tests of the HTTP plumbing: slow bodies, blocking query parameters, query strings and
//! message bodies.

use super::*;

/// A body that never arrives.
struct Stalled;

impl hyper::body::Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Pending
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_slower_than_the_limit_gets_408() {
    let Err(Failure(code, msg, _)) = read_body(Stalled).await else {
        panic!("a stalled body was read")
    };
    assert_eq!(code, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(msg, "the request body did not arrive within 30s");
}

#[test]
fn blocking_queries_refuse_what_they_cannot_read() {
    assert_eq!(
        blocking("index=5&wait=1s").unwrap(),
        Some((5, Duration::from_secs(1)))
    );
    assert_eq!(
        blocking("index=5").unwrap(),
        Some((5, Duration::from_secs(300)))
    );
    assert_eq!(blocking("stale").unwrap(), None);
    for (q, want) in [
        ("index=5&wait=abc", "wait: \"abc\" is not a duration"),
        ("index=5&wait=-5s", "wait: \"-5s\" is not a duration"),
        ("index=x", "index \"x\" is not a whole number"),
    ] {
        let Err(Failure(code, m, _)) = blocking(q) else {
            panic!("{q} accepted")
        };
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(m.starts_with(want), "{q}: {m}");
    }
    assert_eq!(decoded("caf%C3%A9").unwrap(), "café");
    assert!(decoded("%FF").is_err());
}

#[test]
fn query_parameters_and_bodies() {
    assert_eq!(query("index=5&wait=1s", "wait"), Some("1s"));
    assert_eq!(query("purge=true", "purge"), Some("true"));
    assert_eq!(query("", "index"), None);
    let body =
        serde_json::json!({"Job": {"ID": "web", "TaskGroups": [{"Name": "app", "Count": 2}]}});
    let (job, _) = nomad_job(&body).unwrap();
    assert_eq!((job.id.as_str(), job.task_groups[0].count), ("web", 2));
    let Err(Failure(code, msg, _)) = nomad_job(&serde_json::json!([1])) else {
        panic!("an array is no job")
    };
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(msg, "request body must be a JSON object with \"Job\"");
    let Err(Failure(_, msg, _)) = nomad_job(&serde_json::json!({"Job": {"TaskGroups": "x"}}))
    else {
        panic!("wrong types are refused")
    };
    assert_eq!(msg, "invalid Job: TaskGroups: expected a list");
    // Fields Yurt does not implement are kept and said; unknown ones refused.
    let (job, warnings) = nomad_job(&serde_json::json!({"Job": {"ID": "web",
        "Vault": {"Policies": ["x"]}, "Spreads": null,
        "TaskGroups": [{"Name": "app", "Scaling": {"Max": 3}, "Affinities": []}]}}))
    .unwrap();
    assert!(job.unimplemented.contains_key("Vault"));
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    let Err(Failure(_, msg, _)) =
        nomad_job(&serde_json::json!({"Job": {"ID": "web", "Vaullt": 1}}))
    else {
        panic!("unknown fields are refused")
    };
    assert_eq!(msg, "invalid Job: Vaullt: unknown field");
}
