//! An allocation's files over HTTP, in Nomad's shapes: `GET /v1/client/fs/ls/:alloc` and
//! `/stat/:alloc` (JSON: `Name`, `IsDir`, `Size`, `FileMode`, `ModTime` as RFC 3339),
//! `/cat/:alloc` and `/readat/:alloc` (`offset`, `limit`: the bytes as they are),
//! `/stream/:alloc` (`offset`, `origin=start|end`, `follow`) and `/logs/:alloc` (`task`,
//! `type=stdout|stderr`, `offset`, `origin`, `follow`, `plain`): a stream of JSON frames
//! `{"Offset", "Data" (base64), "File"}` (or the bytes themselves with `plain=true`), `{}` while
//! a followed file is idle. `path` is inside the allocation directory; anything else is a 400.

use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;

use super::*;

/// How often a followed file is read again when it had nothing new.
const POLL: Duration = Duration::from_millis(250);
/// A followed stream that had nothing new this long sends `{}`.
const IDLE_BEAT: Duration = Duration::from_secs(10);

fn info(f: &FsFileInfo) -> Value {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(f.mod_time_unix_ms.max(0) as u64);
    serde_json::json!({
        "Name": f.name,
        "IsDir": f.is_dir,
        "Size": f.size,
        "FileMode": f.file_mode,
        "ModTime": humantime::format_rfc3339_seconds(at).to_string(),
    })
}

fn number(q: &str, name: &str) -> Result<u64, Failure> {
    match query(q, name) {
        None | Some("") => Ok(0),
        Some(v) => v.parse().map_err(|_| {
            bad(format!(
                "{name}: {} is not a whole number",
                yurt_types::limits::shown(v)
            ))
        }),
    }
}

/// `origin=start|end`: whether offsets count from the end.
fn from_end(q: &str) -> Result<bool, Failure> {
    match query(q, "origin") {
        None | Some("" | "start") => Ok(false),
        Some("end") => Ok(true),
        Some(other) => Err(bad(format!(
            "origin must be \"start\" or \"end\", not {}",
            yurt_types::limits::shown(other)
        ))),
    }
}

fn response(body: Body, content_type: &'static str, index: u64) -> HttpResponse {
    let mut r = Response::new(body);
    set_headers(&mut r, content_type, index);
    r
}

/// What one read of a followed stream gives: data at an offset, whether the source is done.
type Chunk = Result<(Vec<u8>, u64, bool), tonic::Status>;

impl Http {
    /// `/v1/client/fs/<what>/<alloc>`.
    pub(super) async fn client_fs(
        &self,
        what: &str,
        alloc: &str,
        q: &str,
        rq: &Rq,
        index: u64,
    ) -> Result<HttpResponse, Failure> {
        let api = &self.api;
        let alloc_id = alloc.to_string();
        let path = query(q, "path")
            .map(decoded)
            .transpose()?
            .unwrap_or_else(|| "/".into());
        match what {
            "ls" => {
                let r = Allocs::fs_list(api, rq.of(FsRequest { alloc_id, path }))
                    .await?
                    .into_inner();
                let list: Vec<Value> = r.files.iter().map(info).collect();
                Ok(json_response(&Value::from(list), index))
            }
            "stat" => {
                let f = Allocs::fs_stat(api, rq.of(FsRequest { alloc_id, path }))
                    .await?
                    .into_inner();
                Ok(json_response(&info(&f), index))
            }
            "cat" | "readat" => {
                let (offset, limit) = if what == "cat" {
                    (0, 0)
                } else {
                    (number(q, "offset")?, number(q, "limit")?)
                };
                let r = Allocs::fs_read_at(
                    api,
                    rq.of(FsReadRequest {
                        alloc_id,
                        path,
                        offset,
                        limit,
                        from_end: false,
                    }),
                )
                .await?
                .into_inner();
                Ok(response(full(r.data), "text/plain; charset=utf-8", index))
            }
            "stream" | "logs" => self.follow(what, alloc_id, path, q, rq, index).await,
            _ => Err(no_route(&Method::GET, &["v1", "client", "fs", what, "*"])),
        }
    }

    /// `/stream` and `/logs`: reads from the offset on, and goes on reading while `follow`.
    async fn follow(
        &self,
        what: &str,
        alloc_id: String,
        path: String,
        q: &str,
        rq: &Rq,
        index: u64,
    ) -> Result<HttpResponse, Failure> {
        let follow = flag(q, "follow")?;
        let plain = flag(q, "plain")?;
        let offset = number(q, "offset")?;
        let from_end = from_end(q)?;
        let logs = what == "logs";
        let (task, stderr) = if logs {
            let kind = query(q, "type").unwrap_or("stdout");
            let stderr = match kind {
                "stdout" => false,
                "stderr" => true,
                other => {
                    return Err(bad(format!(
                        "type must be \"stdout\" or \"stderr\", not {}",
                        yurt_types::limits::shown(other)
                    )))
                }
            };
            let task = query(q, "task")
                .map(decoded)
                .transpose()?
                .unwrap_or_default();
            (task, stderr)
        } else {
            (String::new(), false)
        };
        let api = self.api.clone();
        let token = rq.of(());
        // One read at `at` (from the end for the first when asked).
        let read = move |at: u64, first: bool| {
            let api = api.clone();
            let (alloc_id, path, task) = (alloc_id.clone(), path.clone(), task.clone());
            let meta = token.metadata().clone();
            async move {
                let back = first && from_end;
                if logs {
                    let mut req = tonic::Request::new(LogsRequest {
                        alloc_id,
                        task,
                        stderr,
                        offset: at,
                        limit: 0,
                        from_end: back,
                    });
                    *req.metadata_mut() = meta;
                    let r = Allocs::logs(&api, req).await?.into_inner();
                    Ok::<_, tonic::Status>((r.data, r.next_offset, r.finished))
                } else {
                    let mut req = tonic::Request::new(FsReadRequest {
                        alloc_id,
                        path,
                        offset: at,
                        limit: 0,
                        from_end: back,
                    });
                    *req.metadata_mut() = meta;
                    let r = Allocs::fs_read_at(&api, req).await?.into_inner();
                    Ok((r.data, r.next_offset, false))
                }
            }
        };
        // The first read answers errors (a bad path, no such task) as the status.
        let first: Chunk = read(offset, true).await;
        let (data, next, done) = first?;
        let file = if logs {
            format!("alloc/logs/{}", if stderr { "stderr" } else { "stdout" })
        } else {
            query(q, "path").unwrap_or("/").to_string()
        };
        let frame = move |data: &[u8], end: u64| -> Bytes {
            if plain {
                Bytes::copy_from_slice(data)
            } else {
                let v = serde_json::json!({
                    "Offset": end,
                    "Data": base64::engine::general_purpose::STANDARD.encode(data),
                    "File": file,
                });
                Bytes::from(v.to_string() + "\n")
            }
        };
        let first_frame = (!data.is_empty()).then(|| frame(&data, next));
        struct State<R> {
            read: R,
            at: u64,
            done: bool,
            idle: Duration,
        }
        // Without `follow`, reading ends at the end of the file; with it, when the source is
        // done (a log whose task ended) and all of it was read.
        let state = State {
            read,
            at: next,
            done: data.is_empty() && (done || !follow),
            idle: Duration::ZERO,
        };
        let rest = futures_util::stream::unfold(state, move |mut s| {
            let frame = frame.clone();
            async move {
                loop {
                    if s.done {
                        return None;
                    }
                    match (s.read)(s.at, false).await {
                        Err(_) => return None,
                        Ok((data, next, _)) if !data.is_empty() => {
                            s.at = next;
                            s.idle = Duration::ZERO;
                            return Some((frame(&data, next), s));
                        }
                        Ok((_, _, done)) if done || !follow => return None,
                        Ok(_) => {
                            tokio::time::sleep(POLL).await;
                            s.idle += POLL;
                            if s.idle >= IDLE_BEAT && !plain {
                                s.idle = Duration::ZERO;
                                return Some((Bytes::from("{}\n"), s));
                            }
                        }
                    }
                }
            }
        });
        let frames = futures_util::stream::iter(first_frame)
            .chain(rest)
            .map(|b| Ok::<_, Infallible>(hyper::body::Frame::data(b)));
        let body = BodyExt::boxed_unsync(http_body_util::StreamBody::new(frames));
        let kind = if plain {
            "text/plain; charset=utf-8"
        } else {
            "application/json"
        };
        Ok(response(body, kind, index))
    }
}
