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
}

fn fail(msg: String) -> CliError {
    CliError::Other(msg)
}

/// Checks `dir` and claims it as a Yurt data dir (creating it if needed).
pub fn prepare(dir: &Path) -> Result<(), CliError> {
    let shown = dir.display();
    let marker = dir.join(MARKER);
    if marker.exists() {
        let text = std::fs::read_to_string(&marker)
            .map_err(|e| fail(format!("cannot read {}: {e}", marker.display())))?;
        let m: Marker = serde_json::from_str(&text).map_err(|e| {
            fail(format!(
                "data dir {shown} is damaged: {MARKER} is unreadable ({e})"
            ))
        })?;
        if m.format > FORMAT || yurt_types::version::newer(&m.written_by, yurt_types::VERSION) {
            return Err(fail(format!(
                "data dir {shown} was written by Yurt {} (data dir format {}), and this is Yurt {} (format {FORMAT}): downgrades are not supported",
                m.written_by,
                m.format,
                yurt_types::VERSION
            )));
        }
    } else if dir.exists() {
        let foreign: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| fail(format!("cannot read data dir {shown}: {e}")))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "agent-addrs.json")
            .collect();
        let ours = foreign.iter().all(|n| n == "server" || n == "client");
        if !foreign.is_empty() && !ours {
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
    };
    let tmp = dir.join(format!("{MARKER}.tmp"));
    let bytes = serde_json::to_vec_pretty(&m).map_err(|e| fail(e.to_string()))?;
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, &marker))
        .map_err(|e| fail(format!("cannot write {}: {e}", marker.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_empty_dirs_and_refuses_foreign_damaged_or_newer_ones() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("fresh");
        prepare(&fresh).unwrap();
        assert!(fresh.join(MARKER).exists());
        prepare(&fresh).unwrap();

        let foreign = root.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join("photo.jpg"), b"x").unwrap();
        let err = prepare(&foreign).unwrap_err().to_string();
        assert!(err.contains("is not a Yurt data dir"), "{err}");
        assert!(!foreign.join(MARKER).exists(), "untouched");

        let damaged = root.path().join("damaged");
        std::fs::create_dir(&damaged).unwrap();
        std::fs::write(damaged.join(MARKER), b"{not json").unwrap();
        let err = prepare(&damaged).unwrap_err().to_string();
        assert!(err.contains("is damaged"), "{err}");

        let newer = root.path().join("newer");
        std::fs::create_dir(&newer).unwrap();
        std::fs::write(
            newer.join(MARKER),
            br#"{"format": 9, "written_by": "9.0.0"}"#,
        )
        .unwrap();
        let err = prepare(&newer).unwrap_err().to_string();
        assert!(err.contains("written by Yurt 9.0.0"), "{err}");
        assert!(err.contains("downgrades are not supported"), "{err}");
        let text = std::fs::read_to_string(newer.join(MARKER)).unwrap();
        assert!(text.contains("9.0.0"), "untouched");

        // A newer version with the same layout is refused too; an older one is taken over.
        let same_format = root.path().join("same-format");
        std::fs::create_dir(&same_format).unwrap();
        let marker = format!(r#"{{"format": {FORMAT}, "written_by": "99.1.0"}}"#);
        std::fs::write(same_format.join(MARKER), &marker).unwrap();
        let err = prepare(&same_format).unwrap_err().to_string();
        assert!(err.contains("downgrades are not supported"), "{err}");
        let older = root.path().join("older");
        std::fs::create_dir(&older).unwrap();
        std::fs::write(
            older.join(MARKER),
            br#"{"format": 1, "written_by": "0.0.1"}"#,
        )
        .unwrap();
        prepare(&older).unwrap();
        let text = std::fs::read_to_string(older.join(MARKER)).unwrap();
        assert!(text.contains(&format!("\"format\": {FORMAT}")), "{text}");
    }
}
