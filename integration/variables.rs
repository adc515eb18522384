//! Nomad Variables with real agents: the HTTP API as Nomad's clients call it (compare-and-set
//! with 409 and the current variable, pagination, bad input, `variables` ACL rules, the
//! keyring's rotation), and the CLI against three servers (a variable written on one server
//! is read on another, which fetches the key it lacks; keys and variables survive restarts;
//! neither the Raft data nor a snapshot file holds an item's value in the clear).

use std::path::Path;

use serde_json::{json, Value};

use crate::harness::*;

#[test]
fn variables_over_http_compare_and_set_pages_acls_and_rotation() {
    let dir = TestDir::new();
    let agent = Agent::start(&dir.path.join("dev"), &["-dev", "-acl-enabled"]);
    let http = agent.http.clone().unwrap();
    let root = secret_of(&agent.ok(&["acl", "bootstrap"]));
    let put = |path: &str, items: Value, token: &str| {
        http_json_with(
            &http,
            "PUT",
            path,
            &json!({ "Items": items }).to_string(),
            token,
        )
    };

    // Create with cas=0; a second create with cas=0 is a conflict that shows the variable.
    let (code, v) = put(
        "/v1/var/app/db?cas=0",
        json!({"user": "me", "Pass": "s3cret"}),
        &root,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["Path"], "app/db");
    assert_eq!(v["Namespace"], "default");
    assert_eq!(
        v["Items"]["Pass"], "s3cret",
        "item keys are the user's: {v}"
    );
    let first = v["ModifyIndex"].as_u64().unwrap();
    assert_eq!(v["CreateIndex"].as_u64(), Some(first));
    assert!(
        v["CreateTime"].as_i64().unwrap() > 1_000_000_000_000_000_000,
        "ns: {v}"
    );
    let (code, v) = put("/v1/var/app/db?cas=0", json!({"user": "other"}), &root);
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["ModifyIndex"].as_u64(), Some(first), "{v}");
    assert_eq!(v["Items"]["user"], "me", "{v}");
    // An update with the current index wins; with the old one it loses and changes nothing.
    let (code, v) = put(
        &format!("/v1/var/app/db?cas={first}"),
        json!({"user": "you"}),
        &root,
    );
    assert_eq!(code, 200, "{v}");
    let second = v["ModifyIndex"].as_u64().unwrap();
    assert!(second > first);
    let (code, _) = put(
        &format!("/v1/var/app/db?cas={first}"),
        json!({"user": "late"}),
        &root,
    );
    assert_eq!(code, 409);
    let (code, v) = http_json_with(&http, "GET", "/v1/var/app/db", "", &root);
    assert_eq!((code, &v["Items"]), (200, &json!({"user": "you"})), "{v}");

    // Bad input: one sentence naming what is wrong, nothing written.
    for (path, body, want) in [
        (
            "/v1/var/a%20b",
            json!({"Items": {"k": "v"}}),
            "invalid variable path",
        ),
        ("/v1/var/nomad/x", json!({"Items": {"k": "v"}}), "reserved"),
        ("/v1/var/empty", json!({"Items": {}}), "has no items"),
        (
            "/v1/var/typed",
            json!({"Items": {"n": 1}}),
            "Items.n: expected a string",
        ),
        (
            "/v1/var/ns?namespace=prod",
            json!({"Items": {"k": "v"}}),
            "namespace \"prod\" not found",
        ),
    ] {
        let (code, v) = http_json_with(&http, "PUT", path, &body.to_string(), &root);
        assert!(code == 400 || code == 404, "{path}: {code} {v}");
        assert!(v.as_str().is_some_and(|m| m.contains(want)), "{path}: {v}");
    }
    let (code, _) = http_json_with(&http, "PUT", "/v1/var/app/x?cas=abc", "{}", &root);
    assert_eq!(code, 400);

    // Pages: metadata only, the next page's token in X-Nomad-NextToken.
    for p in ["app/a", "app/b", "other/c"] {
        assert_eq!(put(&format!("/v1/var/{p}"), json!({"k": p}), &root).0, 200);
    }
    let (status, headers, body) =
        http_request_full(&http, "GET", "/v1/vars?prefix=app/&per_page=2", "", &root);
    assert!(status.contains("200"), "{status} {body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    let paths: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["app/a", "app/b"], "{page}");
    assert!(page[0].get("Items").is_none(), "{page}");
    let next = headers
        .iter()
        .find(|(k, _)| k == "x-nomad-nexttoken")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no next token: {headers:?}"));
    assert_eq!(next, "app/db");
    let (_, rest) = http_json_with(
        &http,
        "GET",
        &format!("/v1/vars?prefix=app/&next_token={next}"),
        "",
        &root,
    );
    assert_eq!(rest.as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest[0]["Path"], "app/db");

    // ACL: a token that may read and list app/* and nothing else.
    let policy = dir.path.join("vars.hcl");
    std::fs::write(
        &policy,
        "namespace \"default\" {\n  variables {\n    path \"app/*\" {\n      capabilities = [\"read\", \"list\"]\n    }\n  }\n}\n",
    )
    .unwrap();
    let mut admin = agent;
    admin.cli_env = vec![("YURT_TOKEN".into(), root.clone())];
    admin.ok(&[
        "acl",
        "policy",
        "apply",
        "app-read",
        policy.to_str().unwrap(),
    ]);
    let reader = secret_of(&admin.ok(&["acl", "token", "create", "-policy", "app-read"]));
    let (code, v) = http_json_with(&http, "GET", "/v1/var/app/db", "", &reader);
    assert_eq!((code, &v["Items"]["user"]), (200, &json!("you")), "{v}");
    let (code, v) = http_json_with(&http, "GET", "/v1/var/other/c", "", &reader);
    assert_eq!(code, 403, "{v}");
    assert!(
        v.as_str()
            .unwrap()
            .contains("variables read on \"other/c\""),
        "{v}"
    );
    let (code, _) = put("/v1/var/app/db", json!({"user": "mallory"}), &reader);
    assert_eq!(code, 403);
    let (_, listed) = http_json_with(&http, "GET", "/v1/vars", "", &reader);
    let seen: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Path"].as_str().unwrap())
        .collect();
    assert_eq!(seen, ["app/a", "app/b", "app/db"], "{listed}");
    let (code, _) = http_json_with(&http, "DELETE", "/v1/var/app/a", "", &reader);
    assert_eq!(code, 403);
    let (code, _) = http_json_with(&http, "GET", "/v1/operator/keyring/keys", "", &reader);
    assert_eq!(code, 403);

    // Rotation: a new active key; what the old one sealed still opens.
    let (_, keys) = http_json_with(&http, "GET", "/v1/operator/keyring/keys", "", &root);
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    let old = keys[0]["KeyID"].as_str().unwrap().to_string();
    assert_eq!(keys[0]["State"], "active");
    assert_eq!(keys[0]["Algorithm"], "aes256-gcm");
    let (code, rotated) = http_json_with(&http, "PUT", "/v1/operator/keyring/rotate", "", &root);
    assert_eq!(code, 200, "{rotated}");
    let new = rotated["Key"]["KeyID"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    let (_, keys) = http_json_with(&http, "GET", "/v1/operator/keyring/keys", "", &root);
    let state = |id: &str| {
        keys.as_array()
            .unwrap()
            .iter()
            .find(|k| k["KeyID"] == id)
            .map(|k| k["State"].clone())
    };
    assert_eq!(state(&old), Some(json!("inactive")), "{keys}");
    assert_eq!(state(&new), Some(json!("active")), "{keys}");
    assert_eq!(
        put("/v1/var/after/rotation", json!({"k": "v"}), &root).0,
        200
    );
    for p in ["app/db", "after/rotation"] {
        let (code, v) = http_json_with(&http, "GET", &format!("/v1/var/{p}"), "", &root);
        assert_eq!(code, 200, "{p}: {v}");
    }

    // Delete: a stale cas is a conflict; then it goes; reading it is a 404.
    let (code, _) = http_json_with(
        &http,
        "DELETE",
        &format!("/v1/var/app/db?cas={first}"),
        "",
        &root,
    );
    assert_eq!(code, 409);
    let (code, _) = http_json_with(
        &http,
        "DELETE",
        &format!("/v1/var/app/db?cas={second}"),
        "",
        &root,
    );
    assert_eq!(code, 200);
    let (code, v) = http_json_with(&http, "GET", "/v1/var/app/db", "", &root);
    assert_eq!(code, 404, "{v}");
}

/// Every file under `dir` (not the keystores) searched for `needle`.
fn found_in(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with("keystore") {
                    stack.push(p);
                }
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

/// `team/db`'s password as a server answers it (once that server can open it).
fn password_on(server: &Agent) -> String {
    wait_for(&format!("the variable on {}", server.grpc), || {
        let out = server.yurt(&["var", "get", "-item", "password", "team/db"]);
        if out.status.success() {
            Ok(stdout(&out))
        } else {
            Err(stderr(&out))
        }
    })
}

#[test]
fn variables_reach_every_server_survive_restarts_and_are_sealed_at_rest() {
    let dir = TestDir::new();
    let extra = ["-raft-snapshot-threshold", "5"];
    let mut s = start_servers(&dir.path, 3, &extra);
    leader(&s, &[0, 1, 2], 3);
    let secret = "pa55-word-only-in-items";
    let out = s[1].ok(&[
        "var",
        "put",
        "team/db",
        &format!("password={secret}"),
        "user=app",
    ]);
    assert!(
        out.starts_with("Created variable \"team/db\" with modify index "),
        "{out}"
    );
    // Every server opens it: those that did not make the key fetch it.
    for a in &s {
        assert_eq!(password_on(a), secret);
    }
    // A rotation on another server; a write sealed with the new key opens everywhere.
    s[2].ok(&["operator", "root", "keyring", "rotate"]);
    s[0].ok(&["var", "put", "team/after", "k=v2"]);
    let table = s[1].ok(&["var", "get", "team/after"]);
    assert!(table.contains("Path        = team/after"), "{table}");
    assert!(table.contains("k = v2"), "{table}");
    let keys = s[0].ok(&["operator", "root", "keyring", "list"]);
    let states: Vec<&str> = keys
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(states, ["inactive", "active"], "{keys}");
    // A compare-and-set from the CLI: a stale index is refused and changes nothing.
    let stale = s[0].yurt(&["var", "put", "-check-index", "1", "team/db", "password=x"]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(
        stderr(&stale).contains("check-and-set conflict"),
        "{}",
        stderr(&stale)
    );
    // More writes, so snapshots are taken and the log compacted.
    for i in 0..8 {
        s[i % 3].ok(&["var", "put", &format!("fill/{i}"), "k=v"]);
    }
    let list = s[2].ok(&["var", "list", "team/"]);
    assert!(
        list.contains("team/after") && list.contains("team/db"),
        "{list}"
    );
    // Restarted, each server still opens them (its keys are in its keystore).
    for i in 0..3 {
        let args = server_args(i, 3, if i == 0 { None } else { Some(&s[0]) }, &extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        s[i].restart(&args);
    }
    leader(&s, &[0, 1, 2], 3);
    for a in &s {
        assert_eq!(password_on(a), secret);
    }
    // Sealed at rest: neither the Raft data nor a saved snapshot has the value.
    let snap = dir.path.join("state.snap");
    s[0].ok(&["operator", "snapshot", "save", snap.to_str().unwrap()]);
    assert!(
        found_in(&dir.path, secret.as_bytes()).is_empty(),
        "{:?}",
        found_in(&dir.path, secret.as_bytes())
    );
    // (the needle itself is proven findable: the keystore search skips only keystores)
    std::fs::write(dir.path.join("probe"), secret).unwrap();
    assert_eq!(found_in(&dir.path, secret.as_bytes()).len(), 1);
    // Purge.
    s[0].ok(&["var", "purge", "team/db"]);
    let gone = s[1].yurt(&["var", "get", "team/db"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        stderr(&gone).contains("variable \"team/db\" not found"),
        "{}",
        stderr(&gone)
    );
}

#[test]
fn a_server_that_lost_its_keys_refuses_in_one_sentence_and_changes_nothing() {
    let dir = TestDir::new();
    let data = dir.path.join("s0");
    let args = ["-server", "-bootstrap-expect", "1"];
    let mut server = Agent::start(&data, &args);
    server.ok(&["var", "put", "app/db", "user=me"]);
    // The keystore is lost (a disk replaced, a data dir restored without it), and no other
    // server has the key.
    server.kill9();
    let keystore = data.join("server/keystore");
    for f in std::fs::read_dir(&keystore).unwrap().flatten() {
        std::fs::remove_file(f.path()).unwrap();
    }
    server.restart(&args);
    let out = server.yurt(&["var", "get", "app/db"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("does not have key") && err.contains("no other server gave it"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // The sealed variable is kept as it was: listing still shows it, and nothing was written.
    let list = server.ok(&["var", "list"]);
    assert!(list.contains("app/db"), "{list}");
    // A rotation makes a new key; new variables are sealed with it and open.
    server.ok(&["operator", "root", "keyring", "rotate"]);
    server.ok(&["var", "put", "app/new", "k=v"]);
    assert_eq!(server.ok(&["var", "get", "-item", "k", "app/new"]), "v");
}
