//! Who may call what on an agent's gRPC port. With mutual TLS and `verify_server_hostname`, the
//! calls only agents make need a certificate naming the right role
//! ([`yurt_tls::roles_for`]): a CLI or client certificate cannot speak Raft, and only
//! servers read a client agent's files. The TLS handshake itself already refused callers with
//! no certificate or one from another CA. The layer also answers an undecodable request with
//! `INVALID_ARGUMENT`.

use std::sync::Arc;

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use yurt_tls::{has_role, roles_for, Role, TlsConfig};

/// The layer an agent's gRPC server runs every call through.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// The region whose role names are required; `None`: roles are not checked.
    region: Option<Arc<str>>,
}

impl Guard {
    pub fn new(tls: &TlsConfig, region: &str) -> Guard {
        Guard {
            region: (tls.rpc && tls.verify_server_hostname).then(|| region.into()),
        }
    }

    /// Why a call with these peer certificates (leaf first) is refused, if it is.
    fn refuse(&self, path: &str, certs: Option<&[impl AsRef<[u8]>]>) -> Option<String> {
        let region = self.region.as_deref()?;
        let roles = roles_for(path)?;
        let leaf = certs.and_then(|c| c.first());
        if leaf.is_some_and(|c| roles.iter().any(|r| has_role(c.as_ref(), *r, region))) {
            return None;
        }
        let names: Vec<String> = roles.iter().map(|r| Role::name(*r, region)).collect();
        Some(format!(
            "refused {path}: it is for agents, and the caller's certificate does not name {}",
            names.join(" or ")
        ))
    }
}

impl<S> tower::Layer<S> for Guard {
    type Service = Guarded<S>;
    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            guard: self.clone(),
            inner,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Guarded<S> {
    guard: Guard,
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for Guarded<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let info = req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
        let certs = info.and_then(|i| i.peer_certs());
        let refused = self
            .guard
            .refuse(req.uri().path(), certs.as_deref().map(Vec::as_slice));
        if let Some(why) = refused {
            let remote = info.and_then(|i| i.get_ref().remote_addr());
            tracing::warn!(?remote, "refused: {why}");
            let denied = tonic::Status::permission_denied(why).into_http();
            return Box::pin(std::future::ready(Ok(denied)));
        }
        let path = req.uri().path().to_string();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let mut r = answer.await?;
            undecodable_is_invalid_argument(r.headers_mut());
            one_sentence(r.headers_mut(), &path);
            Ok(r)
        })
    }
}

/// A refusal reaches the caller as one short line: a handler's message through
/// [`yurt_types::limits::tidy`], and a call of a method this agent does not serve (a client's
/// on a server-only agent, a misspelled one) named instead of answered with nothing.
fn one_sentence(headers: &mut http::HeaderMap, path: &str) {
    let code = headers
        .get("grpc-status")
        .and_then(|s| s.to_str().ok())
        .and_then(|s| s.parse::<u32>().ok());
    let Some(code) = code.filter(|c| *c != 0) else {
        return;
    };
    let message = headers
        .get("grpc-message")
        .map(|m| {
            percent_encoding::percent_decode(m.as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    let message = match (code, message.trim()) {
        // UNIMPLEMENTED
        (12, "") => format!(
            "this agent does not serve {}",
            yurt_types::limits::shown(path)
        ),
        (_, "") => return,
        (_, m) => yurt_types::limits::tidy(m),
    };
    // gRPC's percent-encoding of a message: everything but printable ASCII, and '%'.
    const ENCODE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');
    let encoded = percent_encoding::utf8_percent_encode(&message, ENCODE).to_string();
    if let Ok(v) = http::HeaderValue::from_str(&encoded) {
        headers.insert("grpc-message", v);
    }
}

/// A request the server could not decode is the caller's mistake: `INVALID_ARGUMENT`, not the
/// `INTERNAL` tonic answers with (its status travels in the headers of such an answer).
fn undecodable_is_invalid_argument(headers: &mut http::HeaderMap) {
    let internal = headers
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() == b"13");
    let decode = headers.get("grpc-message").is_some_and(|m| {
        let m = m.as_bytes();
        m.starts_with(b"failed to decode") || m.starts_with(b"failed%20to%20decode")
    });
    if internal && decode {
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
    }
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    #[test]
    fn an_undecodable_request_is_the_caller_s_mistake() {
        let mut h = tonic::Status::internal("failed to decode Protobuf message: buffer underflow")
            .into_http::<tonic::body::Body>()
            .headers()
            .clone();
        undecodable_is_invalid_argument(&mut h);
        assert_eq!(h["grpc-status"], "3");
        let mut other = tonic::Status::internal("the state machine failed")
            .into_http::<tonic::body::Body>()
            .headers()
            .clone();
        undecodable_is_invalid_argument(&mut other);
        assert_eq!(other["grpc-status"], "13");
    }

    #[test]
    fn every_refusal_is_one_short_line_and_an_unserved_method_is_named() {
        let headers = |s: tonic::Status| s.into_http::<tonic::body::Body>().headers().clone();
        let message = |h: &http::HeaderMap| {
            percent_encoding::percent_decode(h["grpc-message"].as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        };
        let mut h = headers(tonic::Status::unimplemented(""));
        one_sentence(&mut h, "/yurt.v1.ClientFs/Logs");
        assert_eq!(
            message(&h),
            "this agent does not serve \"/yurt.v1.ClientFs/Logs\""
        );
        let mut h = headers(tonic::Status::not_found(format!(
            "no job {}\nat all",
            "x".repeat(5_000)
        )));
        one_sentence(&mut h, "/yurt.v1.Jobs/Get");
        let m = message(&h);
        assert!(!m.contains('\n') && m.len() < 600, "{m}");
        let mut ok = headers(tonic::Status::ok(""));
        one_sentence(&mut ok, "/yurt.v1.Jobs/Get");
        assert!(!ok.contains_key("grpc-message") || message(&ok).is_empty());
    }
}
