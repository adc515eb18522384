//! The documentation's examples work: every `hcl` code block of `README.md` and `docs/*.md`
//! parses as what it shows (a job, an ACL policy, an agent configuration), and every whole
//! job is planned by a dev agent, so the docs cannot drift from the parser.

use std::path::{Path, PathBuf};

use crate::harness::*;

/// Each `hcl` block of a Markdown file: (first line of its body, its text).
fn hcl_blocks(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        match (&mut open, line.trim_start()) {
            (None, l) if l.starts_with("```hcl") => open = Some((n + 2, String::new())),
            (Some(_), l) if l.starts_with("```") => out.extend(open.take()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(open.is_none(), "an unclosed hcl block");
    out
}

fn markdown_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

#[test]
fn every_hcl_example_in_the_docs_parses_and_every_job_plans() {
    let dir = TestDir::new();
    let mut agent: Option<Agent> = None;
    let (mut jobs, mut others) = (0, 0);
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, src) in hcl_blocks(&text) {
            let name = format!("{}:{line}", file.display());
            let first = src.trim_start();
            let job_file = ["job ", "variable ", "locals "]
                .iter()
                .any(|k| first.starts_with(k));
            if job_file {
                jobs += 1;
                if let Err(e) = yurt_types::jobspec::parse_hcl(&name, &src) {
                    panic!("{name}: {e}");
                }
                let agent = agent.get_or_insert_with(|| {
                    let a = Agent::start(&dir.path.join("data"), &["-dev"]);
                    a.wait_node_ready();
                    a
                });
                let path = dir.path.join(format!("example-{jobs}.hcl"));
                std::fs::write(&path, &src).unwrap();
                let plan = agent.yurt(&["job", "plan", path.to_str().unwrap()]);
                assert!(
                    matches!(plan.status.code(), Some(0 | 1)) && stderr(&plan).is_empty(),
                    "{name}: job plan failed:\n{}{}",
                    stdout(&plan),
                    stderr(&plan)
                );
                assert!(stdout(&plan).contains("Job: "), "{name}: {}", stdout(&plan));
            } else {
                others += 1;
                let policy = yurt_types::acl::parse_policy(&name, &src);
                let config = yurt_types::agentconfig::parse(&name, &src);
                // A policy names namespaces or node/agent/operator rules; an agent config has
                // none of those blocks: whichever it is must parse.
                let is_policy = ["namespace ", "node ", "agent ", "operator "]
                    .iter()
                    .any(|k| first.starts_with(k));
                if is_policy {
                    if let Err(e) = policy {
                        panic!("{name}: {e}");
                    }
                } else if let Err(e) = config {
                    panic!("{name}: {e}");
                }
            }
        }
    }
    assert!(jobs >= 1 && others >= 2, "{jobs} jobs, {others} others");
}

#[test]
fn hcl_blocks_are_found_with_their_line() {
    let md = "text\n```hcl\njob \"a\" {}\n```\nmore\n```sh\nls\n```\n  ```hcl\ntls {}\n  ```\n";
    assert_eq!(
        hcl_blocks(md),
        vec![
            (3, "job \"a\" {}\n".to_string()),
            (10, "tls {}\n".to_string())
        ]
    );
}
