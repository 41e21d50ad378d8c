//! statusgate-emulators: small stateful servers that speak each vendor's dialect (paths, status
//! codes, error bodies, reason phrases, quirks) from real requests. `statusgate demo` (the
//! binary only) and the end-to-end tests put them behind the gateway. They are test and demo
//! fixtures: the `statusgate` library does not depend on them, and they depend on nothing of
//! statusgate (their XML reader is their own, `xml`).

pub mod crest;
pub mod huawei;
pub mod oracle;
pub mod veeam;
pub mod xml;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderMap;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::services::listening::Service;

/// Largest request body an emulator reads.
const MAX_BODY: usize = 1024 * 1024;

/// A request as an emulator sees it.
#[derive(Debug, Clone)]
pub struct EmuRequest {
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string, if any (no leading `?`).
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl EmuRequest {
    /// A request from its parts; `target` is a path with an optional `?query`. Headers that are
    /// not valid HTTP are left out.
    pub fn new(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> EmuRequest {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.to_owned(), None),
        };
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                map.append(k, v);
            }
        }
        EmuRequest {
            method: method.to_owned(),
            path,
            query,
            headers: map,
            body: Bytes::copy_from_slice(body),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value of a query parameter (no percent-decoding beyond `+`).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }
}

/// A response, with the vendor's own reason phrase when it has one (Veeam's `BadRequest`).
#[derive(Debug, Clone, Default)]
pub struct EmuResponse {
    pub status: u16,
    pub reason: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl EmuResponse {
    pub fn new(status: u16) -> Self {
        EmuResponse {
            status,
            ..Default::default()
        }
    }

    pub fn reason(mut self, r: &str) -> Self {
        self.reason = Some(r.to_owned());
        self
    }

    pub fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_owned(), v.into()));
        self
    }

    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.headers.push(("Content-Type".to_owned(), content_type.to_owned()));
        self.body = body.into();
        self
    }

    pub fn json(self, v: &serde_json::Value) -> Self {
        self.body("application/json", serde_json::to_vec(v).unwrap_or_default())
    }
}

/// One vendor's behaviour. `handle` is called once per request, possibly concurrently.
pub trait Emulator: Send + Sync + 'static {
    fn handle(&self, req: &EmuRequest) -> EmuResponse;
}

/// Serves an `Emulator` over HTTP/1.1 with keep-alive, on pingora's server session.
pub struct EmulatorApp<E: Emulator>(pub Arc<E>);

#[async_trait]
impl<E: Emulator> HttpServerApp for EmulatorApp<E> {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        _: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !session.read_request().await.ok()? {
            return None;
        }
        session.set_keepalive(Some(60));
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = session.read_request_body().await {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY {
                return None;
            }
        }
        let h = session.req_header();
        let req = EmuRequest {
            method: h.method.as_str().to_owned(),
            path: h.uri.path().to_owned(),
            query: h.uri.query().map(str::to_owned),
            headers: h.headers.clone(),
            body: Bytes::from(body),
        };
        let resp = self.0.handle(&req);
        let mut header = ResponseHeader::build(resp.status, Some(resp.headers.len() + 1)).ok()?;
        if let Some(r) = &resp.reason {
            header.set_reason_phrase(Some(r)).ok()?;
        }
        for (k, v) in &resp.headers {
            header.append_header(k.clone(), v.clone()).ok()?;
        }
        let bodyless = req.method == "HEAD" || matches!(resp.status, 204 | 304);
        if !bodyless {
            header
                .insert_header(http::header::CONTENT_LENGTH, resp.body.len())
                .ok()?;
        }
        session.write_response_header(Box::new(header)).await.ok()?;
        if !bodyless && !resp.body.is_empty() {
            session.write_response_body(Bytes::from(resp.body), true).await.ok()?;
        } else {
            session.finish_body().await.ok()?;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        session
            .finish()
            .await
            .ok()?
            .map(|s| ReusedHttpStream::from_reusable_stream(s, settings))
    }
}

/// A pingora service serving `emulator` on `addr`.
pub fn service<E: Emulator>(name: &str, emulator: E, addr: &str) -> Service<EmulatorApp<E>> {
    let mut svc = Service::new(name.to_owned(), EmulatorApp(Arc::new(emulator)));
    svc.add_tcp(addr);
    svc
}
