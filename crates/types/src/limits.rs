//! The bounds on what one request may ask for, so that the work and the memory one job costs
//! every server and client are bounded: how many allocations, groups and tasks, how large a job
//! and each of its strings, and what IDs and names look like. [`check_job`] applies them to a
//! job; the APIs' edges apply [`MAX_MESSAGE_BYTES`] to every message and body.

use serde_json::Value as Json;

use crate::v1::{Job, Node};

/// Allocations one group may ask for (`count`).
pub const MAX_COUNT: u32 = 10_000;
/// Allocations one job may ask for, all groups together.
pub const MAX_JOB_ALLOCS: u64 = 10_000;
/// Groups in one job.
pub const MAX_GROUPS: usize = 1_000;
/// Tasks in one group.
pub const MAX_TASKS: usize = 100;
/// A job's encoded size: what Raft, snapshots and every client that runs it carry.
pub const MAX_JOB_BYTES: usize = 1 << 20;
/// One string of a job (a command, an env or meta value, an argument).
pub const MAX_FIELD_BYTES: usize = 64 << 10;
/// An ID or a name (job ID, group, task, port label, service).
pub const MAX_NAME_CHARS: usize = 128;
/// One gRPC message or HTTP body, on both APIs.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// How long `alloc exec` lets a command run: `asked_ms`, 60 s when 0, at most 10 minutes.
pub fn exec_timeout(asked_ms: u64) -> std::time::Duration {
    match asked_ms {
        0 => std::time::Duration::from_secs(60),
        ms => std::time::Duration::from_millis(ms).min(std::time::Duration::from_secs(600)),
    }
}

/// A value the user gave, quoted for a sentence and cut after 40 characters: an error message
/// never echoes a huge input (a gRPC status travels in a header that has a size limit).
pub fn shown(value: &str) -> String {
    let cut: String = value.chars().take(40).collect();
    if cut.len() < value.len() {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}

/// The message of a caught panic, cut after [`MAX_SENTENCE`] characters (a library's panic,
/// sled's on a damaged file, can carry megabytes of text).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    let cut: String = text.chars().take(MAX_SENTENCE).collect();
    if cut.len() < text.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

/// Longest sentence an error may be, and the longest run of characters without a space in it.
const MAX_SENTENCE: usize = 500;
const MAX_WORD: usize = 80;

/// An error sentence made safe to show whatever input it quotes: one line, every run without a
/// space cut after [`MAX_WORD`] characters, the whole after [`MAX_SENTENCE`]. Every reader's
/// errors pass through it, so no message echoes a huge or multi-line value back.
pub fn tidy(message: &str) -> String {
    let mut out = String::new();
    for (i, word) in message.split([' ', '\n', '\r']).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if word.chars().count() > MAX_WORD {
            out.extend(word.chars().take(MAX_WORD - 20));
            out.push_str("...");
        } else {
            out.push_str(word);
        }
        if out.chars().count() > MAX_SENTENCE {
            let cut: String = out.chars().take(MAX_SENTENCE).collect();
            return cut + "...";
        }
    }
    out
}

/// The rule for IDs and names, everywhere: 1 to [`MAX_NAME_CHARS`] characters, none of them a
/// control character (NUL included), whitespace or `/`. Any other Unicode is allowed.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let shown = || shown(name);
    if name.is_empty() {
        return Err(format!("{what} is empty"));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(format!(
            "{what} {} is {chars} characters long, more than the limit of {MAX_NAME_CHARS}",
            shown()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || *c == '/')
    {
        return Err(format!(
            "{what} {} must not contain {c:?} (no whitespace, control characters or '/')",
            shown()
        ));
    }
    Ok(())
}

/// The first string of `job` (by field path, in Nomad's names) that is longer than
/// [`MAX_FIELD_BYTES`] or holds a NUL byte, then the job's encoded size against
/// [`MAX_JOB_BYTES`]. Returns (path, sentence).
pub fn check_job(job: &Job) -> Result<(), (String, String)> {
    check_message(job, "job")
}

/// Every string of `value` (named by its path from `what`) within [`MAX_FIELD_BYTES`] and
/// without a NUL byte, then its encoded size within [`MAX_JOB_BYTES`].
fn check_message<M: prost::Message + serde::Serialize>(
    value: &M,
    what: &str,
) -> Result<(), (String, String)> {
    let tree = serde_json::to_value(value).unwrap_or(Json::Null);
    check_strings(&tree, what)?;
    let size = value.encoded_len();
    if size > MAX_JOB_BYTES {
        return Err((
            what.into(),
            format!(
                "the {what} is {} KiB, more than the limit of {} KiB",
                size.div_ceil(1024),
                MAX_JOB_BYTES >> 10
            ),
        ));
    }
    Ok(())
}

/// The most characters of an ACL token's name, which describes it (Nomad's limit).
pub const MAX_TOKEN_NAME_CHARS: usize = 256;

/// A node as its client registers it: ID, name and datacenter follow [`check_name`] (a class
/// too, when it has one), every string [`MAX_FIELD_BYTES`] and no NUL byte, the whole node
/// [`MAX_JOB_BYTES`]. Returns (path, sentence).
pub fn check_node(node: &Node) -> Result<(), (String, String)> {
    for (path, what, value) in [
        ("node.id", "node ID", &node.id),
        ("node.name", "node name", &node.name),
        ("node.datacenter", "datacenter", &node.datacenter),
    ] {
        check_name(what, value).map_err(|e| (path.to_string(), e))?;
    }
    if !node.node_class.is_empty() {
        check_name("node class", &node.node_class).map_err(|e| ("node.node_class".into(), e))?;
    }
    check_message(node, "node")
}

/// Nomad's rule for the names of ACL policies and namespaces: 1 to 128 letters, digits, `-`
/// or `_`; `what` names the kind in the sentence.
pub fn check_simple_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} {}: use 1 to 128 letters, digits, '-' or '_'",
            shown(name)
        ))
    }
}

/// An ACL token's name describes it: it may be empty and hold spaces, but has at most
/// [`MAX_TOKEN_NAME_CHARS`] characters and no control characters.
pub fn check_token_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars > MAX_TOKEN_NAME_CHARS {
        return Err(format!(
            "token name {} is {chars} characters long, more than the limit of {MAX_TOKEN_NAME_CHARS}",
            shown(name)
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "token name {} must not contain {c:?} (no control characters)",
            shown(name)
        ));
    }
    Ok(())
}

fn check_strings(v: &Json, path: &str) -> Result<(), (String, String)> {
    let check = |s: &str, path: &str| {
        if s.len() > MAX_FIELD_BYTES {
            return Err((
                path.to_string(),
                format!(
                    "{path} is {} KiB, more than the limit of {} KiB for one value",
                    s.len().div_ceil(1024),
                    MAX_FIELD_BYTES >> 10
                ),
            ));
        }
        if s.contains('\0') {
            return Err((path.to_string(), format!("{path} contains a NUL byte")));
        }
        Ok(())
    };
    match v {
        Json::String(s) => check(s, path),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| check_strings(x, &format!("{path}[{i}]"))),
        Json::Object(m) => m.iter().try_for_each(|(k, x)| {
            let p = format!("{path}.{k}");
            check(k, &p)?;
            check_strings(x, &p)
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_timeout_defaults_to_a_minute_and_stops_at_ten() {
        use std::time::Duration;
        assert_eq!(exec_timeout(0), Duration::from_secs(60));
        assert_eq!(exec_timeout(1500), Duration::from_millis(1500));
        assert_eq!(exec_timeout(u64::MAX), Duration::from_secs(600));
    }

    #[test]
    fn a_panic_s_text_is_cut_short() {
        let caught = std::panic::catch_unwind(|| panic!("{}", "x".repeat(10_000))).unwrap_err();
        let text = panic_text(&*caught);
        assert_eq!(text.len(), MAX_SENTENCE + 3);
        assert!(text.ends_with("..."));
        let caught = std::panic::catch_unwind(|| panic!("index out of range")).unwrap_err();
        assert_eq!(panic_text(&*caught), "index out of range");
    }

    #[test]
    fn names_follow_one_rule() {
        assert!(check_name("job ID", "web-1.prod_ü").is_ok());
        for (name, why) in [
            ("", "job ID is empty"),
            ("a b", "must not contain ' '"),
            ("a/b", "must not contain '/'"),
            ("a\0b", "must not contain '\\0'"),
            ("a\tb", "must not contain '\\t'"),
        ] {
            let e = check_name("job ID", name).unwrap_err();
            assert!(e.contains(why), "{name:?}: {e}");
        }
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        let e = check_name("job ID", &long).unwrap_err();
        assert!(
            e.contains("is 129 characters long, more than the limit of 128"),
            "{e}"
        );
        assert!(e.len() < 200, "the name is cut short in the sentence: {e}");
    }

    #[test]
    fn nodes_and_token_names_follow_their_rules() {
        let mut node = Node {
            id: "0b6f1a52-1f7e-4c1c-9a55-3f1d8a3c1f00".into(),
            name: "client-1".into(),
            datacenter: "dc1".into(),
            ..Default::default()
        };
        assert!(check_node(&node).is_ok());
        node.name = "my laptop".into();
        let (path, why) = check_node(&node).unwrap_err();
        assert_eq!(path, "node.name");
        assert!(
            why.starts_with("node name \"my laptop\" must not contain ' '"),
            "{why}"
        );
        node.name = "client-1".into();
        node.node_class = "a/b".into();
        assert_eq!(check_node(&node).unwrap_err().0, "node.node_class");
        node.node_class = String::new();
        node.datacenter = String::new();
        assert_eq!(
            check_node(&node).unwrap_err(),
            ("node.datacenter".into(), "datacenter is empty".into())
        );
        node.datacenter = "dc1".into();
        node.attributes
            .insert("kernel.name".into(), "li\0nux".into());
        assert_eq!(
            check_node(&node).unwrap_err().1,
            "node.attributes.kernel.name contains a NUL byte"
        );
        assert!(check_token_name("").is_ok());
        assert!(check_token_name("CI deploy token (read-only)").is_ok());
        assert!(check_token_name("a\nb")
            .unwrap_err()
            .contains("no control characters"));
        let long = "t".repeat(MAX_TOKEN_NAME_CHARS + 1);
        assert!(check_token_name(&long)
            .unwrap_err()
            .contains("more than the limit of 256"));
    }

    #[test]
    fn a_long_or_nul_string_is_named_by_its_path() {
        let mut job = Job {
            id: "web".into(),
            ..Default::default()
        };
        job.meta.insert("k".into(), "v".repeat(MAX_FIELD_BYTES + 1));
        let (path, why) = check_job(&job).unwrap_err();
        assert_eq!(path, "job.meta.k");
        assert!(why.contains("more than the limit of 64 KiB"), "{why}");
        job.meta.insert("k".into(), "a\0b".into());
        assert_eq!(
            check_job(&job).unwrap_err().1,
            "job.meta.k contains a NUL byte"
        );
        // Many values, each within its limit, past the job's.
        job.meta = (0..40)
            .map(|i| (format!("k{i}"), "v".repeat(MAX_FIELD_BYTES - 10)))
            .collect();
        let (path, why) = check_job(&job).unwrap_err();
        assert_eq!(path, "job");
        assert!(why.contains("more than the limit of 1024 KiB"), "{why}");
    }

    #[test]
    fn error_sentences_are_one_short_line_whatever_they_quote() {
        assert_eq!(
            tidy("count (3) must be at most 2"),
            "count (3) must be at most 2"
        );
        let long = format!("unknown field \"{}\"", "x".repeat(5_000));
        let t = tidy(&long);
        assert!(
            t.starts_with("unknown field \"xxxx") && t.ends_with("..."),
            "{t}"
        );
        assert!(t.len() < 100, "{t}");
        assert_eq!(tidy("a\nb"), "a b");
        let many = "word ".repeat(1_000);
        assert!(tidy(&many).chars().count() <= MAX_SENTENCE + 3);
    }
}
