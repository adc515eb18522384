//! A task's stdout or stderr as rotated files: `<base>.0`, `<base>.1`, ... Each file is filled to
//! exactly `max_file_bytes` before the next one starts, so byte `n` of the stream is always
//! at offset `n % max_file_bytes` of file `n / max_file_bytes`, even after the oldest files
//! were deleted. At most `max_files` files are kept.
//!
//! The executor writes through [`Writer`]; `alloc logs` reads through [`read`].

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Where one stream's files live and how many of them to keep.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rotation {
    /// The files' common path, without the `.N` suffix (`.../alloc/logs/web.stdout`).
    pub base: PathBuf,
    pub max_files: u32,
    pub max_file_bytes: u64,
}

impl Rotation {
    fn file(&self, index: u64) -> PathBuf {
        let mut name = self.base.as_os_str().to_owned();
        name.push(format!(".{index}"));
        PathBuf::from(name)
    }

    /// The indexes of the files that exist, oldest first.
    pub fn indexes(&self) -> Vec<u64> {
        let (Some(dir), Some(stem)) = (self.base.parent(), self.base.file_name()) else {
            return Vec::new();
        };
        let prefix = format!("{}.", stem.to_string_lossy());
        let mut out: Vec<u64> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix(&prefix)?.parse().ok())
            .collect();
        out.sort_unstable();
        out
    }

    /// Total bytes written to the stream so far (including deleted files).
    pub fn end(&self) -> u64 {
        match self.indexes().last() {
            None => 0,
            Some(&i) => {
                let len = std::fs::metadata(self.file(i)).map_or(0, |m| m.len());
                i * self.max_file_bytes + len
            }
        }
    }
}

/// Appends to a stream, rotating files as they fill. A new writer continues where the last
/// one stopped (a restarted task appends to its earlier output).
pub struct Writer {
    rotation: Rotation,
    index: u64,
    len: u64,
    file: File,
}

impl Writer {
    pub fn open(rotation: Rotation) -> std::io::Result<Writer> {
        let index = rotation.indexes().last().copied().unwrap_or(0);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(rotation.file(index))?;
        let len = file.metadata()?.len();
        Ok(Writer {
            rotation,
            index,
            len,
            file,
        })
    }

    pub fn write_all(&mut self, mut buf: &[u8]) -> std::io::Result<()> {
        let max = self.rotation.max_file_bytes.max(1);
        while !buf.is_empty() {
            if self.len >= max {
                self.rotate()?;
            }
            let room = (max - self.len).min(buf.len() as u64) as usize;
            self.file.write_all(&buf[..room])?;
            self.len += room as u64;
            buf = &buf[room..];
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.index += 1;
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(self.rotation.file(self.index))?;
        self.len = 0;
        let keep = u64::from(self.rotation.max_files.max(1));
        for old in self.rotation.indexes() {
            if old + keep <= self.index {
                let _ = std::fs::remove_file(self.rotation.file(old));
            }
        }
        Ok(())
    }
}

/// Reads up to `limit` bytes of the stream from byte `offset` on (or, with `from_end`, from
/// `offset` bytes before its end). Bytes in deleted files are skipped. Returns the data and
/// the offset just after it.
pub fn read(
    rotation: &Rotation,
    offset: u64,
    from_end: bool,
    limit: u64,
) -> std::io::Result<(Vec<u8>, u64)> {
    let max = rotation.max_file_bytes.max(1);
    let indexes = rotation.indexes();
    let end = rotation.end();
    let first = indexes.first().map_or(0, |i| i * max);
    let mut at = if from_end {
        end.saturating_sub(offset)
    } else {
        offset
    }
    .max(first);
    let mut data = Vec::new();
    while (data.len() as u64) < limit && at < end {
        let mut f = match File::open(rotation.file(at / max)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(e),
        };
        f.seek(SeekFrom::Start(at % max))?;
        let want = (limit - data.len() as u64).min(max - at % max);
        let got = f.take(want).read_to_end(&mut data)? as u64;
        at += got;
        if got < want {
            break;
        }
    }
    Ok((data, at))
}

/// The rotation of one task stream under an allocation's log dir.
pub fn rotation(
    logs_dir: &Path,
    task: &str,
    stderr: bool,
    max_files: u32,
    max_mb: u32,
) -> Rotation {
    let stream = if stderr { "stderr" } else { "stdout" };
    Rotation {
        base: logs_dir.join(format!("{task}.{stream}")),
        max_files,
        max_file_bytes: u64::from(max_mb) * 1024 * 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(dir: &Path) -> Rotation {
        Rotation {
            base: dir.join("t.stdout"),
            max_files: 3,
            max_file_bytes: 4,
        }
    }

    #[test]
    fn rotates_at_the_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let r = small(dir.path());
        let mut w = Writer::open(r.clone()).unwrap();
        w.write_all(b"abcdefghij").unwrap();
        // abcd | efgh | ij
        assert_eq!(r.indexes(), vec![0, 1, 2]);
        w.write_all(b"klmnop").unwrap();
        // efgh | ijkl | mnop; abcd deleted: three files at most.
        assert_eq!(r.indexes(), vec![1, 2, 3]);
        assert_eq!(std::fs::read(r.file(2)).unwrap(), b"ijkl");
        assert_eq!(r.end(), 16);
        // A new writer (a restarted task) continues the same stream.
        drop(w);
        let mut w = Writer::open(r.clone()).unwrap();
        w.write_all(b"q").unwrap();
        assert_eq!(r.indexes(), vec![2, 3, 4]);
        assert_eq!(r.end(), 17);
        assert_eq!(std::fs::read(r.file(4)).unwrap(), b"q");
    }

    #[test]
    fn reads_across_files_and_skips_deleted_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let r = small(dir.path());
        Writer::open(r.clone())
            .unwrap()
            .write_all(b"abcdefghijklmnopq")
            .unwrap();
        // Files 2, 3, 4 remain: "ijkl", "mnop", "q"; bytes 0-7 are gone.
        assert_eq!(
            read(&r, 0, false, 100).unwrap(),
            (b"ijklmnopq".to_vec(), 17)
        );
        assert_eq!(read(&r, 10, false, 3).unwrap(), (b"klm".to_vec(), 13));
        assert_eq!(read(&r, 3, true, 100).unwrap(), (b"opq".to_vec(), 17));
        assert_eq!(read(&r, 17, false, 100).unwrap(), (Vec::new(), 17));
        let empty = Rotation {
            base: dir.path().join("none.stdout"),
            ..r
        };
        assert_eq!(read(&empty, 0, false, 10).unwrap(), (Vec::new(), 0));
    }
}
