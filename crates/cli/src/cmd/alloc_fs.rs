//! `yurt alloc fs [-stat] ALLOC [PATH]`: an allocation directory's files, as Nomad's `alloc
//! fs`: a directory's entries, a file's contents, or (`-stat`) what one path is.

use std::io::Write;

use yurt_proto::v1::allocs_client::AllocsClient;
use yurt_proto::v1::{FsFileInfo, FsReadRequest, FsRequest};

use super::{connect, CliError, CmdResult};
use crate::output::{table, time};

fn rows(files: &[FsFileInfo]) -> Vec<Vec<String>> {
    files
        .iter()
        .map(|f| {
            let name = if f.is_dir {
                format!("{}/", f.name)
            } else {
                f.name.clone()
            };
            vec![
                f.file_mode.clone(),
                f.size.to_string(),
                time(f.mod_time_unix_ms),
                name,
            ]
        })
        .collect()
}

pub async fn run(addr: &str, alloc: &str, path: &str, stat: bool) -> CmdResult {
    let mut allocs = AllocsClient::new(connect(addr).await?);
    let req = |path: &str| FsRequest {
        alloc_id: alloc.to_string(),
        path: path.to_string(),
    };
    let header = ["Mode", "Size", "Modified Time", "Name"];
    let info = allocs
        .fs_stat(req(path))
        .await
        .map_err(CliError::api("reading the allocation's files"))?
        .into_inner();
    if stat {
        print!("{}", table(&header, &rows(&[info])));
        return Ok(0);
    }
    if info.is_dir {
        let files = allocs
            .fs_list(req(path))
            .await
            .map_err(CliError::api("listing the allocation's files"))?
            .into_inner()
            .files;
        print!("{}", table(&header, &rows(&files)));
        return Ok(0);
    }
    // A file: read to its end, a chunk at a time.
    let mut offset = 0;
    let mut out = std::io::stdout().lock();
    loop {
        let r = allocs
            .fs_read_at(FsReadRequest {
                alloc_id: alloc.to_string(),
                path: path.to_string(),
                offset,
                ..FsReadRequest::default()
            })
            .await
            .map_err(CliError::api("reading the file"))?
            .into_inner();
        if r.data.is_empty() {
            return Ok(0);
        }
        out.write_all(&r.data)
            .map_err(|e| CliError::Other(format!("cannot write the file out: {e}")))?;
        offset = r.next_offset;
    }
}
