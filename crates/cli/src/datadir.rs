//! The agent's data dir: recognised by `yurt-data-dir.json` (format version and the binary
//! that last used it), checked before anything in it is opened. A directory that is someone
//! else's, damaged, or written by a newer format is refused with one sentence, untouched.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cmd::CliError;

pub const MARKER: &str = "yurt-data-dir.json";
/// Bump on a change of layout an older binary could misread. 2 (Yurt 0.2): the Raft log and
/// snapshots may hold deployments and drains, which 0.1 would drop.
pub const FORMAT: u32 = 2;

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    format: u32,
    written_by: String,
    /// A server has kept its Raft state here (`server/`): a data dir without it is damaged,
    /// not new. Absent in markers of Yurt 0.2.0 and older.
    #[serde(default)]
    server: bool,
}

fn fail(msg: String) -> CliError {
    CliError::Other(msg)
}

/// The marker of `dir`, if it has one.
fn read_marker(dir: &Path) -> Result<Option<Marker>, CliError> {
    let marker = dir.join(MARKER);
    if !marker.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&marker)
        .map_err(|e| fail(format!("cannot read {}: {e}", marker.display())))?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        fail(format!(
            "data dir {} is damaged: {MARKER} is unreadable ({e})",
            dir.display()
        ))
    })
}

/// Checks `dir` and claims it as a Yurt data dir (creating it if needed), for an agent that
/// runs a server if `server`.
pub fn prepare(dir: &Path, server: bool) -> Result<(), CliError> {
    let shown = dir.display();
    let mut had_server = false;
    if let Some(m) = read_marker(dir)? {
        if m.format > FORMAT || yurt_types::version::newer(&m.written_by, yurt_types::VERSION) {
            return Err(fail(format!(
                "data dir {shown} was written by Yurt {} (data dir format {}), and this is Yurt {} (format {FORMAT}): downgrades are not supported",
                m.written_by,
                m.format,
                yurt_types::VERSION
            )));
        }
        had_server = m.server;
        if m.server && server && !dir.join("server").exists() {
            return Err(fail(format!(
                "data dir {shown} is damaged: it held a server's Raft state, but server/ is missing; restore it, or start with an empty data dir to join the cluster as a new server"
            )));
        }
    } else if dir.exists() {
        let foreign: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| fail(format!("cannot read data dir {shown}: {e}")))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "agent-addrs.json")
            .collect();
        let ours = foreign.iter().any(|n| n == "server" || n == "client");
        if ours {
            return Err(fail(format!(
                "data dir {shown} is damaged: it holds an agent's state but no {MARKER}; restore the file, or use an empty data dir"
            )));
        }
        if !foreign.is_empty() {
            return Err(fail(format!(
                "{shown} is not a Yurt data dir: it is not empty and has no {MARKER}; use an empty or new directory"
            )));
        }
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| fail(format!("cannot create data dir {shown}: {e}")))?;
    let m = Marker {
        format: FORMAT,
        written_by: yurt_types::VERSION.into(),
        // Set by [`mark_server`] once a server has started here.
        server: had_server,
    };
    write_marker(dir, &m)
}

/// Writes the marker whole or not at all (a temporary file renamed over it).
fn write_marker(dir: &Path, m: &Marker) -> Result<(), CliError> {
    let marker = dir.join(MARKER);
    let tmp = dir.join(format!("{MARKER}.tmp"));
    let bytes = serde_json::to_vec_pretty(m).map_err(|e| fail(e.to_string()))?;
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, &marker))
        .map_err(|e| fail(format!("cannot write {}: {e}", marker.display())))
}

/// Records that a server keeps its state in `dir` (once it has started there), so that a later
/// start without `server/` is refused instead of starting empty.
pub fn mark_server(dir: &Path) -> Result<(), CliError> {
    let Some(mut m) = read_marker(dir)? else {
        return Err(fail(format!("{} has no {MARKER}", dir.display())));
    };
    if m.server {
        return Ok(());
    }
    m.server = true;
    write_marker(dir, &m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_empty_dirs_and_refuses_foreign_damaged_or_newer_ones() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("fresh");
        prepare(&fresh, true).unwrap();
        assert!(fresh.join(MARKER).exists());
        prepare(&fresh, true).unwrap();

        let foreign = root.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join("photo.jpg"), b"x").unwrap();
        let err = prepare(&foreign, true).unwrap_err().to_string();
        assert!(err.contains("is not a Yurt data dir"), "{err}");
        assert!(!foreign.join(MARKER).exists(), "untouched");

        let damaged = root.path().join("damaged");
        std::fs::create_dir(&damaged).unwrap();
        std::fs::write(damaged.join(MARKER), b"{not json").unwrap();
        let err = prepare(&damaged, true).unwrap_err().to_string();
        assert!(err.contains("is damaged"), "{err}");

        let newer = root.path().join("newer");
        std::fs::create_dir(&newer).unwrap();
        std::fs::write(
            newer.join(MARKER),
            br#"{"format": 9, "written_by": "9.0.0"}"#,
        )
        .unwrap();
        let err = prepare(&newer, true).unwrap_err().to_string();
        assert!(err.contains("written by Yurt 9.0.0"), "{err}");
        assert!(err.contains("downgrades are not supported"), "{err}");
        let text = std::fs::read_to_string(newer.join(MARKER)).unwrap();
        assert!(text.contains("9.0.0"), "untouched");

        // A newer version with the same layout is refused too; an older one is taken over.
        let same_format = root.path().join("same-format");
        std::fs::create_dir(&same_format).unwrap();
        let marker = format!(r#"{{"format": {FORMAT}, "written_by": "99.1.0"}}"#);
        std::fs::write(same_format.join(MARKER), &marker).unwrap();
        let err = prepare(&same_format, true).unwrap_err().to_string();
        assert!(err.contains("downgrades are not supported"), "{err}");
        let older = root.path().join("older");
        std::fs::create_dir(&older).unwrap();
        std::fs::write(
            older.join(MARKER),
            br#"{"format": 1, "written_by": "0.0.1"}"#,
        )
        .unwrap();
        prepare(&older, true).unwrap();
        let text = std::fs::read_to_string(older.join(MARKER)).unwrap();
        assert!(text.contains(&format!("\"format\": {FORMAT}")), "{text}");
    }

    #[test]
    fn a_server_data_dir_missing_its_state_or_its_marker_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("d");
        prepare(&dir, true).unwrap();
        std::fs::create_dir_all(dir.join("server/raft")).unwrap();
        mark_server(&dir).unwrap();
        prepare(&dir, true).unwrap();
        // server/ deleted: refused, not an empty new server.
        std::fs::remove_dir_all(dir.join("server")).unwrap();
        let err = prepare(&dir, true).unwrap_err().to_string();
        assert!(err.contains("server/ is missing"), "{err}");
        // Run as a client only, it may go on (its client state is its own).
        prepare(&dir, false).unwrap();
        let err = prepare(&dir, true).unwrap_err().to_string();
        assert!(err.contains("server/ is missing"), "the mark stays: {err}");
        // The marker deleted beside an agent's state: refused, untouched.
        std::fs::create_dir_all(dir.join("server")).unwrap();
        std::fs::remove_file(dir.join(MARKER)).unwrap();
        let err = prepare(&dir, true).unwrap_err().to_string();
        assert!(
            err.contains("holds an agent's state but no yurt-data-dir.json"),
            "{err}"
        );
        assert!(!dir.join(MARKER).exists());
        // A marker of 0.2.0 (no `server` field) is read as before.
        std::fs::write(dir.join(MARKER), br#"{"format": 2, "written_by": "0.2.0"}"#).unwrap();
        prepare(&dir, true).unwrap();
    }
}
