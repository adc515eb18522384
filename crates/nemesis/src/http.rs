//! One plain HTTP/1.1 exchange with an agent, bounded in time and allowed to fail (a link may
//! be cut): the fault tests' and the soak's client of the HTTP API.

use std::time::Duration;

/// An HTTP answer: the status line, the headers (names in lower case) and the body.
pub type HttpAnswer = (String, Vec<(String, String)>, String);

/// One HTTP exchange that may fail: connecting, or an answer within `within`. Returns the
/// status line, the headers (names in lower case) and the body (dechunked).
pub fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    token: &str,
    within: Duration,
) -> Result<HttpAnswer, String> {
    let s = connect(addr, within)?;
    exchange(s, addr, method, path, body, token, within)
}

/// A connection to the HTTP API at `addr`, within `within`. A request that could not connect
/// was never sent.
pub fn connect(addr: &str, within: Duration) -> Result<std::net::TcpStream, String> {
    let sock: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    std::net::TcpStream::connect_timeout(&sock, within)
        .map_err(|e| format!("connect to the HTTP API at {addr}: {e}"))
}

/// One request on a connection made by [`connect`], answered within `within`.
pub fn exchange(
    mut s: std::net::TcpStream,
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    token: &str,
    within: Duration,
) -> Result<HttpAnswer, String> {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(within)).unwrap();
    s.set_write_timeout(Some(within)).unwrap();
    let token = if token.is_empty() {
        String::new()
    } else {
        format!("X-Nomad-Token: {token}\r\n")
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{token}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("{method} {path} to {addr}: {e}"))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("{method} {path} to {addr}: {e}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunked(body)
    } else {
        body.to_string()
    };
    Ok((status, headers, body))
}

/// A chunked body's data (a streamed answer read to its end); chunks are counted in bytes.
fn dechunked(body: &str) -> String {
    let mut rest = body.as_bytes();
    let mut out = Vec::new();
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..end]);
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        let tail = &rest[end + 2..];
        if n == 0 || tail.len() < n {
            break;
        }
        out.extend_from_slice(&tail[..n]);
        rest = tail[n..].strip_prefix(b"\r\n").unwrap_or(&tail[n..]);
    }
    String::from_utf8_lossy(&out).into_owned()
}
