//! ACLs: bootstrap once, policies and tokens, read-only and write tokens through the CLI and
//! the HTTP API, the anonymous policy, and ACL state surviving a restart.

use crate::harness::*;

const READ_ONLY: &str =
    "namespace \"default\" {\n  policy = \"read\"\n}\nnode {\n  policy = \"read\"\n}\n";
const WRITER: &str = "namespace \"default\" {\n  policy = \"write\"\n}\n";

/// The agent's CLI environment with `token`.
fn with_token(agent: &mut Agent, token: &str) {
    agent.cli_env = vec![("YURT_TOKEN".into(), token.into())];
}

#[test]
fn tokens_allow_what_their_policies_grant_and_nothing_else() {
    let dir = TestDir::new();
    let data = dir.path.join("dev");
    let mut agent = Agent::start(&data, &["-dev", "-acl-enabled"]);

    // No token: nothing but the bootstrap.
    let out = agent.yurt(&["job", "status"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Permission denied: this needs list-jobs on namespace \"default\""),
        "{}",
        stderr(&out)
    );
    let boot = agent.ok(&["acl", "bootstrap"]);
    assert!(boot.contains("Type         = management"), "{boot}");
    let root = secret_of(&boot);
    let again = agent.yurt(&["acl", "bootstrap"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("ACL bootstrap already done (reset index: "),
        "{}",
        stderr(&again)
    );

    // Policies and tokens, made with the management token.
    with_token(&mut agent, &root);
    agent.wait_node_ready();
    std::fs::write(dir.path.join("ro.hcl"), READ_ONLY).unwrap();
    std::fs::write(dir.path.join("rw.hcl"), WRITER).unwrap();
    std::fs::write(
        dir.path.join("bad.hcl"),
        "namespace \"default\" {\n  policy = \"admin\"\n}\n",
    )
    .unwrap();
    let p = |f: &str| dir.path.join(f).display().to_string();
    let out = agent.ok(&["acl", "policy", "apply", "readonly", &p("ro.hcl")]);
    assert_eq!(out.trim(), "Successfully wrote \"readonly\" ACL policy!");
    agent.ok(&["acl", "policy", "apply", "writer", &p("rw.hcl")]);
    let bad = agent.yurt(&["acl", "policy", "apply", "bad", &p("bad.hcl")]);
    assert!(
        stderr(&bad).contains("bad.hcl:2: namespace \"default\": policy must be"),
        "{}",
        stderr(&bad)
    );
    // A token may name a policy that does not exist yet (as in Nomad): it grants nothing
    // until the policy is written.
    let early = agent.ok(&["acl", "token", "create", "-policy", "later", "-json"]);
    let early: serde_json::Value = serde_json::from_str(&early).unwrap();
    let early_secret = early["secret_id"].as_str().unwrap().to_string();
    let early_accessor = early["accessor_id"].as_str().unwrap().to_string();
    let as_early = |args: &[&str]| {
        std::process::Command::new(YURT)
            .args(args)
            .env("YURT_ADDR", &agent.grpc)
            .env("YURT_TOKEN", &early_secret)
            .output()
            .unwrap()
    };
    assert!(
        !as_early(&["job", "status"]).status.success(),
        "no policy yet: nothing allowed"
    );
    agent.ok(&["acl", "policy", "apply", "later", &p("ro.hcl")]);
    assert!(
        as_early(&["job", "status"]).status.success(),
        "the policy now grants read"
    );
    // Updating a token keeps its secret and changes what it may do.
    let updated = agent.ok(&[
        "acl",
        "token",
        "update",
        "-name",
        "renamed",
        "-policy",
        "writer",
        &early_accessor,
        "-json",
    ]);
    let updated: serde_json::Value = serde_json::from_str(&updated).unwrap();
    assert_eq!(updated["secret_id"], early_secret.as_str());
    assert_eq!(updated["name"], "renamed");
    assert_eq!(updated["policies"], serde_json::json!(["writer"]));
    // Names: a policy's by Nomad's rule, a token's a description without control characters.
    let spaced = agent.yurt(&["acl", "policy", "apply", "read only", &p("ro.hcl")]);
    assert!(
        stderr(&spaced).contains("invalid ACL policy name \"read only\""),
        "{}",
        stderr(&spaced)
    );
    let bad_name = agent.yurt(&[
        "acl",
        "token",
        "create",
        "-name",
        "ci\ntoken",
        "-policy",
        "readonly",
    ]);
    assert!(
        stderr(&bad_name)
            .contains("token name \"ci\\ntoken\" must not contain '\\n' (no control characters)"),
        "{}",
        stderr(&bad_name)
    );
    let ro = secret_of(&agent.ok(&[
        "acl", "token", "create", "-name", "ro", "-policy", "readonly",
    ]));
    let rw = secret_of(&agent.ok(&["acl", "token", "create", "-name", "rw", "-policy", "writer"]));
    let list = agent.ok(&["acl", "token", "list"]);
    assert!(
        list.contains("Bootstrap Token") && list.contains("ro") && !list.contains(&ro),
        "{list}"
    );

    // Read-only: reads work, a registration is refused and writes nothing.
    let job = web_job(&dir.path, "acl");
    let job = job.to_str().unwrap();
    with_token(&mut agent, &ro);
    agent.ok(&["node", "status"]);
    let refused = agent.yurt(&["job", "run", "-detach", job]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused)
            .contains("Permission denied: this needs submit-job on namespace \"default\""),
        "{}",
        stderr(&refused)
    );
    assert!(agent.ok(&["job", "status"]).contains("No running jobs"));
    let me = agent.ok(&["acl", "token", "self"]);
    assert!(me.contains("Name         = ro"), "{me}");
    let denied = agent.yurt(&["acl", "token", "list"]);
    assert!(
        stderr(&denied).contains("needs a management token"),
        "{}",
        stderr(&denied)
    );

    // Write: the job runs; the read-only token now sees it.
    with_token(&mut agent, &rw);
    agent.ok(&["job", "run", "-detach", job]);
    agent.wait_running("web", 2);
    let nodes = agent.yurt(&["node", "status"]);
    assert!(
        stderr(&nodes).contains("this needs node read"),
        "{}",
        stderr(&nodes)
    );

    // HTTP: X-Nomad-Token decides, 403 otherwise.
    let http = agent.http.clone().unwrap();
    let get = |path: &str, token: &str| http_request_with(&http, "GET", path, "", token);
    assert!(get("/v1/jobs", &ro).0.contains("200"));
    let (status, body) = get("/v1/jobs", "");
    assert!(status.contains("403"), "{status}: {body}");
    let (status, body) = get("/v1/jobs", "not-a-token");
    assert!(
        status.contains("403") && body.contains("ACL token not found"),
        "{status}: {body}"
    );
    let stop = |token: &str| http_request_with(&http, "DELETE", "/v1/job/web", "", token);
    assert!(stop(&ro).0.contains("403"));
    let (status, body) = get("/v1/acl/token/self", &rw);
    assert!(
        status.contains("200") && body.contains("\"Name\": \"rw\""),
        "{status}: {body}"
    );

    // The anonymous policy, when there is one, is what requests without a token may do.
    with_token(&mut agent, &root);
    agent.ok(&["acl", "policy", "apply", "anonymous", &p("ro.hcl")]);
    agent.cli_env.clear();
    assert!(agent.ok(&["job", "status"]).contains("web"));

    // ACL state is in Raft: it survives a restart.
    agent.restart(&["-dev", "-acl-enabled"]);
    with_token(&mut agent, &ro);
    wait_for("the read-only token to work after the restart", || {
        let out = agent.yurt(&["job", "status", "web"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(stderr(&out))
        }
    });
    let refused = agent.yurt(&["job", "stop", "web"]);
    assert!(
        stderr(&refused).contains("Permission denied"),
        "{}",
        stderr(&refused)
    );
}

/// Calls the agent's `ClientFs` service directly, as anyone who reaches its port could.
fn client_fs_exec(
    agent: &Agent,
    alloc: &str,
    token: Option<&str>,
) -> Result<Vec<u8>, tonic::Status> {
    use yurt_proto::v1::client_fs_client::ClientFsClient;
    use yurt_proto::v1::AllocExecRequest;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", agent.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut req = tonic::Request::new(AllocExecRequest {
            alloc_id: alloc.to_string(),
            command: vec!["id".into(), "-u".into()],
            ..Default::default()
        });
        if let Some(t) = token {
            req.metadata_mut()
                .insert("x-nomad-token", t.parse().unwrap());
        }
        ClientFsClient::new(channel)
            .exec(req)
            .await
            .map(|r| r.into_inner().stdout)
    })
}

#[test]
fn alloc_exec_needs_alloc_exec_also_when_the_client_is_called_directly() {
    let dir = TestDir::new();
    let mut agent = Agent::start(&dir.path.join("dev"), &["-dev", "-acl-enabled"]);
    let root = secret_of(&agent.ok(&["acl", "bootstrap"]));
    with_token(&mut agent, &root);
    agent.wait_node_ready();
    std::fs::write(dir.path.join("ro.hcl"), READ_ONLY).unwrap();
    let ro_file = dir.path.join("ro.hcl").display().to_string();
    agent.ok(&["acl", "policy", "apply", "readonly", &ro_file]);
    let ro = secret_of(&agent.ok(&["acl", "token", "create", "-policy", "readonly"]));
    let job = dir.path.join("svc.hcl");
    std::fs::write(
        &job,
        "job \"svc\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n      config {\n        command = \"/bin/sleep\"\n        args    = [\"3600\"]\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    agent.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    let alloc = agent.wait_running("svc", 1).remove(0);
    wait_task_pids(&dir.path.join("dev"), 1);
    let full = job_allocations(&agent, "svc")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        agent.ok(&["alloc", "exec", &alloc, "id", "-u"]).trim(),
        "65534"
    );
    with_token(&mut agent, &ro);
    let out = agent.yurt(&["alloc", "exec", &alloc, "id", "-u"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("this needs alloc-exec on namespace \"default\""),
        "{}",
        stderr(&out)
    );
    // Past the servers, straight to the client's port: the client asks the servers too.
    for token in [None, Some(ro.as_str())] {
        let refused = client_fs_exec(&agent, &full, token).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    }
    let out = client_fs_exec(&agent, &full, Some(&root)).unwrap();
    assert_eq!(String::from_utf8_lossy(&out).trim(), "65534");
}
