//! An allocation's directory as the fs API shows it (`/v1/client/fs/{ls,stat,cat,readat}`):
//! a user's path resolved inside the directory (never out of it: `..`, and symlinks that lead
//! out, are refused), a task's `secrets` hidden as in Nomad, and reads bounded per call.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use tonic::Status;
use yurt_proto::v1::{FsFileInfo, FsReadResponse};

/// The most one read returns.
pub const MAX_READ: u64 = 1024 * 1024;

/// `path` (relative to the allocation directory `root`; `/` is `root`) as a path on this
/// host inside `root`; a 400 naming the path when it is not one.
pub fn resolve(root: &Path, path: &str) -> Result<PathBuf, Status> {
    let outside = || {
        Status::invalid_argument(format!(
            "path {} is outside the allocation directory",
            yurt_types::limits::shown(path)
        ))
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(path.trim_start_matches('/')).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().ok_or_else(outside)?),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(outside())
            }
        }
    }
    // A task's secrets are the task's own (`<task>/secrets`), by the path asked for and by
    // where a symlink leads: a task could link to its secrets from a directory that is shown.
    let secret = |parts: &[&str]| parts.get(1) == Some(&"secrets");
    let hidden = || {
        Status::permission_denied(format!(
            "reading {} is not allowed: a task's secrets are its own",
            yurt_types::limits::shown(path)
        ))
    };
    if secret(&parts) {
        return Err(hidden());
    }
    let full = parts.iter().fold(root.to_path_buf(), |p, c| p.join(c));
    // A symlink inside may point out: what it leads to must be inside too.
    if let (Ok(real), Ok(base)) = (full.canonicalize(), root.canonicalize()) {
        let Ok(inside) = real.strip_prefix(&base) else {
            return Err(outside());
        };
        let real_parts: Vec<&str> = inside.iter().filter_map(|c| c.to_str()).collect();
        if secret(&real_parts) {
            return Err(hidden());
        }
    }
    Ok(full)
}

fn not_found(path: &str, e: std::io::Error) -> Status {
    match e.kind() {
        std::io::ErrorKind::NotFound => Status::not_found(format!(
            "{} does not exist in the allocation directory",
            yurt_types::limits::shown(path)
        )),
        _ => Status::internal(format!(
            "cannot read {}: {e}",
            yurt_types::limits::shown(path)
        )),
    }
}

/// `ls -l`'s mode string.
fn mode_string(m: &std::fs::Metadata) -> String {
    let bits = m.permissions().mode();
    let kind = if m.is_dir() {
        'd'
    } else if m.file_type().is_symlink() {
        'L'
    } else {
        '-'
    };
    let mut s = String::from(kind);
    for shift in [6, 3, 0] {
        let b = (bits >> shift) & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn info(name: String, m: &std::fs::Metadata) -> FsFileInfo {
    let mod_time_unix_ms = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    FsFileInfo {
        name,
        is_dir: m.is_dir(),
        size: m.len() as i64,
        file_mode: mode_string(m),
        mod_time_unix_ms,
    }
}

/// One file or directory.
pub fn stat(root: &Path, path: &str) -> Result<FsFileInfo, Status> {
    let full = resolve(root, path)?;
    let m = std::fs::metadata(&full).map_err(|e| not_found(path, e))?;
    let name = full
        .file_name()
        .map_or_else(|| "/".to_string(), |n| n.to_string_lossy().into_owned());
    Ok(info(name, &m))
}

/// A directory's entries, by name (a task's `secrets` left out).
pub fn list(root: &Path, path: &str) -> Result<Vec<FsFileInfo>, Status> {
    let full = resolve(root, path)?;
    let entries = std::fs::read_dir(&full).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotADirectory => Status::invalid_argument(format!(
            "{} is a file, not a directory",
            yurt_types::limits::shown(path)
        )),
        _ => not_found(path, e),
    })?;
    let in_task_dir = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .count()
        == 1;
    let mut out: Vec<FsFileInfo> = entries
        .filter_map(Result::ok)
        .filter(|e| !(in_task_dir && e.file_name() == "secrets"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some(info(e.file_name().to_string_lossy().into_owned(), &m))
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Up to `limit` bytes (at most [`MAX_READ`]) of a file from `offset` (from its end when
/// `from_end`).
pub fn read_at(
    root: &Path,
    path: &str,
    offset: u64,
    limit: u64,
    from_end: bool,
) -> Result<FsReadResponse, Status> {
    let full = resolve(root, path)?;
    let mut f = std::fs::File::open(&full).map_err(|e| not_found(path, e))?;
    let size = f.metadata().map_err(|e| not_found(path, e))?.len();
    if f.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(Status::invalid_argument(format!(
            "{} is a directory",
            yurt_types::limits::shown(path)
        )));
    }
    let start = if from_end {
        size.saturating_sub(offset)
    } else {
        offset.min(size)
    };
    let limit = if limit == 0 {
        MAX_READ
    } else {
        limit.min(MAX_READ)
    };
    f.seek(SeekFrom::Start(start))
        .map_err(|e| not_found(path, e))?;
    let mut data = Vec::new();
    f.take(limit)
        .read_to_end(&mut data)
        .map_err(|e| not_found(path, e))?;
    Ok(FsReadResponse {
        next_offset: start + data.len() as u64,
        data,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_and_secrets_stay_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("web/local")).unwrap();
        std::fs::create_dir_all(root.join("web/secrets")).unwrap();
        std::fs::write(root.join("web/local/conf"), "0123456789").unwrap();
        std::fs::write(root.join("web/secrets/token"), "s3").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("web/local/out")).unwrap();
        std::os::unix::fs::symlink("../secrets", root.join("web/local/keys")).unwrap();
        assert_eq!(resolve(root, "/").unwrap(), root);
        assert!(resolve(root, "web/local/conf").is_ok());
        for bad in ["../x", "web/../../x", "web/local/out/passwd"] {
            let e = resolve(root, bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(
                e.message().contains("outside the allocation directory"),
                "{bad}"
            );
        }
        for hidden in [
            "web/secrets/token",
            "web/local/keys/token",
            "web/local/keys",
        ] {
            let e = resolve(root, hidden).unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{hidden}");
        }
        let names: Vec<String> = list(root, "web")
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["local"]);
        let conf = stat(root, "web/local/conf").unwrap();
        assert_eq!((conf.size, conf.is_dir), (10, false));
        assert!(conf.file_mode.starts_with("-rw"), "{}", conf.file_mode);
        let r = read_at(root, "web/local/conf", 2, 3, false).unwrap();
        assert_eq!(
            (r.data.as_slice(), r.next_offset, r.size),
            (&b"234"[..], 5, 10)
        );
        let tail = read_at(root, "web/local/conf", 4, 0, true).unwrap();
        assert_eq!(tail.data, b"6789");
        assert_eq!(
            read_at(root, "web/nope", 0, 0, false).unwrap_err().code(),
            tonic::Code::NotFound
        );
        assert_eq!(
            list(root, "web/local/conf").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
