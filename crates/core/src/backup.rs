//! Snapshot files written by `yurt operator snapshot save` and read by `restore`: the magic
//! `YURTSNAP`, then a `yurt.internal.v1.SnapshotFile` carrying the encoded state and its
//! SHA-256. A file that is not one, is cut short or has a flipped bit is refused before any
//! state changes.

use prost::Message;
use sha2::{Digest, Sha256};

use crate::internal::SnapshotFile;
use crate::state::{SnapshotError, State};

const MAGIC: &[u8; 8] = b"YURTSNAP";
/// Version of the file layout (the state inside carries its own).
pub const FILE_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    #[error("not a Yurt snapshot file (it does not start with YURTSNAP)")]
    NotASnapshot,
    #[error("snapshot file is truncated or damaged: {0}")]
    Damaged(String),
    #[error("snapshot file is corrupt: its checksum does not match its contents")]
    Checksum,
    #[error("snapshot file format {found} is newer than this binary reads ({FILE_FORMAT}); downgrades are not supported")]
    TooNew { found: u32 },
    #[error(transparent)]
    State(#[from] SnapshotError),
}

/// Encodes `state` as a snapshot file.
pub fn encode(state: &State, term: u64, written_by: &str, now_unix_ms: i64) -> Vec<u8> {
    let bytes = state.to_snapshot(written_by);
    let file = SnapshotFile {
        format_version: FILE_FORMAT,
        written_by: written_by.into(),
        created_unix_ms: now_unix_ms,
        index: state.index,
        term,
        sha256: Sha256::digest(&bytes).to_vec(),
        state: bytes,
    };
    let mut out = MAGIC.to_vec();
    out.extend(file.encode_to_vec());
    out
}

/// Decodes and verifies a snapshot file; returns its header and the state it holds.
pub fn decode(bytes: &[u8]) -> Result<(SnapshotFile, State), BackupError> {
    let body = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(BackupError::NotASnapshot)?;
    let file = SnapshotFile::decode(body).map_err(|e| BackupError::Damaged(e.to_string()))?;
    if file.format_version > FILE_FORMAT {
        return Err(BackupError::TooNew {
            found: file.format_version,
        });
    }
    if Sha256::digest(&file.state).as_slice() != file.sha256.as_slice() {
        return Err(BackupError::Checksum);
    }
    let state = State::from_snapshot(&file.state)?;
    Ok((file, state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::Job;

    fn state() -> State {
        let mut s = State {
            index: 42,
            ..State::default()
        };
        s.jobs.insert(
            crate::state::job_key("", "web"),
            Job {
                id: "web".into(),
                ..Job::default()
            }
            .into(),
        );
        s
    }

    #[test]
    fn round_trips_with_its_header() {
        let bytes = encode(&state(), 3, "0.1.0", 1000);
        let (file, back) = decode(&bytes).unwrap();
        assert_eq!((file.index, file.term, file.created_unix_ms), (42, 3, 1000));
        assert_eq!(back, state());
    }

    #[test]
    fn damage_of_any_kind_is_refused() {
        let good = encode(&state(), 3, "0.1.0", 1000);
        assert_eq!(decode(b"hello"), Err(BackupError::NotASnapshot));
        let cut = &good[..good.len() - 10];
        assert!(
            matches!(decode(cut), Err(BackupError::Damaged(_))),
            "{:?}",
            decode(cut)
        );
        // Flip a bit inside the state bytes (the checksum field is the last 34 bytes).
        let mut flipped = good.clone();
        let at = good.len() - 40;
        flipped[at] ^= 0x01;
        assert_eq!(decode(&flipped), Err(BackupError::Checksum));
        for cut_at in [9, 20, good.len() / 2] {
            assert!(decode(&good[..cut_at]).is_err());
        }
    }
}

#[cfg(test)]
mod fixtures {
    /// Every release's snapshot (`fixtures/<version>/state.snap`) loads in this build.
    #[test]
    fn snapshots_written_by_every_release_load() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let releases = std::fs::read_to_string(format!("{root}/RELEASES")).unwrap();
        let mut seen = 0;
        for line in releases
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
        {
            let Some(version) = line.split_whitespace().next() else {
                continue;
            };
            let path = format!("{root}/fixtures/{version}/state.snap");
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let (file, state) = super::decode(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(file.written_by, version, "{path}");
            let job = &state.jobs[&crate::state::job_key("", "kept")];
            assert_eq!(job.version, 1, "{path}");
            assert_eq!(
                state.job_versions[&crate::state::job_key("", "kept")].len(),
                2,
                "{path}"
            );
            seen += 1;
        }
        assert!(seen > 0, "RELEASES names at least one release");
    }
}
