//! Rules about the source tree that a compiler does not check.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every Rust file opens with a `//!` comment saying what it is for.
#[test]
fn tidy_every_module_says_what_it_is_for() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("integration"), &mut files);
    assert!(files.len() > 20, "found only {} files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! module comment:\n{}",
        missing.join("\n")
    );
}

/// The `crate::<module>` paths a file's code (not its comments, not its tests) names.
fn modules_named(text: &str) -> std::collections::BTreeSet<String> {
    let code = modules_named_code(text);
    let mut out = std::collections::BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let name: String = line[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

/// The code of a top-level module `src/m.rs` and of its submodules `src/m/*.rs`, but for the
/// ones only tests compile (declared after `#[cfg(test)]`).
fn module_text(file: &Path) -> String {
    let mut text = std::fs::read_to_string(file).unwrap();
    let test_only: Vec<String> = text
        .split("#[cfg(test)]")
        .skip(1)
        .filter_map(|after| {
            let decl = after.trim_start().strip_prefix("mod ")?;
            Some(decl.split(';').next()?.trim().to_string())
        })
        .collect();
    let dir = file.with_extension("");
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let p = e.path();
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        if p.extension().is_some_and(|x| x == "rs") && !test_only.contains(&stem) {
            // Each file's code up to its own tests.
            let sub = std::fs::read_to_string(&p).unwrap();
            text = format!(
                "{}\n{}",
                modules_named_code(&text),
                modules_named_code(&sub)
            );
        }
    }
    text
}

/// A file's code before its tests.
fn modules_named_code(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or_default()
}

/// The modules of `yurt-core` depend on each other in one direction: the state machine is
/// called into by the domain modules (deploy, drain, gc implement its parts), the evaluation
/// builders (`evals`) by everyone, and the scheduler on top. No cycle.
#[test]
fn tidy_the_core_s_modules_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/core/src");
    let mut graph: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let p = e.path();
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        let test_only = ["lib", "testkit", "fit_tests"].contains(&stem.as_str());
        if p.extension().is_none_or(|x| x != "rs") || test_only {
            continue;
        }
        let text = module_text(&p);
        let named = modules_named(&text)
            .into_iter()
            .filter(|m| *m != stem && m != "internal" && m != "v1")
            .collect();
        graph.insert(stem, named);
    }
    assert!(graph.len() > 10, "{graph:?}");
    // Depth-first search for a cycle, naming it.
    fn visit(
        m: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = Default::default();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("an import cycle in yurt-core: {}", cycle.join(" -> "));
        }
    }
}

/// The crates depend on each other in one direction: proto → types → tls | core | client →
/// server → cli (the bench may use any); the model crate (types) carries no transport; the
/// nemesis (the fault tests' and the soak's) and chromium (the UI tests' and the UI bench's)
/// stand apart from them all.
#[test]
fn tidy_the_crates_depend_in_one_direction() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let allowed: &[(&str, &[&str])] = &[
        ("proto", &[]),
        ("nemesis", &[]),
        ("chromium", &[]),
        ("types", &["yurt-proto"]),
        ("tls", &["yurt-types"]),
        ("core", &["yurt-proto", "yurt-types"]),
        ("client", &["yurt-proto", "yurt-types", "yurt-tls"]),
        (
            "server",
            &["yurt-proto", "yurt-types", "yurt-tls", "yurt-core"],
        ),
        (
            "cli",
            &[
                "yurt-proto",
                "yurt-types",
                "yurt-tls",
                "yurt-core",
                "yurt-client",
                "yurt-server",
            ],
        ),
    ];
    for (krate, may) in allowed {
        let toml =
            std::fs::read_to_string(root.join("crates").join(krate).join("Cargo.toml")).unwrap();
        let deps = toml.split("[dev-dependencies]").next().unwrap_or_default();
        for line in deps.lines() {
            let name = line.split(['.', ' ', '=']).next().unwrap_or_default();
            if name.starts_with("yurt-") {
                assert!(
                    may.contains(&name),
                    "crates/{krate} depends on {name}, against the direction"
                );
            }
        }
    }
}

/// The pure crates forbid clocks and sleeps to clippy (which CI runs with `-D warnings`).
#[test]
fn tidy_the_pure_crates_forbid_clocks_and_sleeps() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for krate in ["core", "types"] {
        let path = root.join("crates").join(krate).join("clippy.toml");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for m in [
            "std::time::Instant::now",
            "std::time::SystemTime::now",
            "std::thread::sleep",
        ] {
            assert!(text.contains(m), "{} does not forbid {m}", path.display());
        }
    }
}
