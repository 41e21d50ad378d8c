//! The admin listener (loopback by default): `/metrics`, `/healthz`, `/readyz`,
//! `GET /-/config` and `POST /-/reload`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{Encoder, TextEncoder};
use serde_json::json;

use crate::reload::{ReloadOutcome, SnapshotHandle};

pub struct AdminApp {
    pub snapshots: Arc<SnapshotHandle>,
    pub ready: Arc<AtomicBool>,
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

fn json_reply(status: StatusCode, v: serde_json::Value) -> Response<Vec<u8>> {
    reply(
        status,
        "application/json",
        serde_json::to_vec_pretty(&v).unwrap_or_default(),
    )
}

impl AdminApp {
    fn config(&self) -> serde_json::Value {
        let snap = self.snapshots.current();
        let secs = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last_error = self
            .snapshots
            .last_error()
            .map(|e| json!({"at_unix": secs(e.at), "problems": e.problems}));
        json!({
            "version": snap.version,
            "loaded_at_unix": secs(snap.loaded_at),
            "config": self.snapshots.path().display().to_string(),
            "files": snap.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "routes": snap.routes.iter().map(|r| json!({
                "name": &*r.name,
                "host": r.host,
                "path_prefix": r.path_prefix,
                "upstream": r.upstream.name,
                "profile": r.profile.source,
                "rules": r.profile.rule_names().collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "last_error": last_error,
            "restart_needed": self.snapshots.restart_needed(),
        })
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_owned();
        let _ = session.drain_request_body().await;
        match (method.as_str(), path.as_str()) {
            ("GET", "/metrics") => {
                let mut buf = Vec::new();
                let encoder = TextEncoder::new();
                let _ = encoder.encode(&prometheus::gather(), &mut buf);
                reply(StatusCode::OK, encoder.format_type(), buf)
            }
            ("GET", "/healthz") => reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            ("GET", "/readyz") => {
                if self.ready.load(Ordering::Acquire) {
                    reply(
                        StatusCode::OK,
                        "text/plain",
                        format!("ready {}\n", self.snapshots.current().version).into_bytes(),
                    )
                } else {
                    reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", b"not ready\n".to_vec())
                }
            }
            ("GET", "/-/config") => json_reply(StatusCode::OK, self.config()),
            ("POST", "/-/reload") => {
                let (outcome, problems) = self.snapshots.reload().await;
                let status = if outcome == ReloadOutcome::Rejected {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    StatusCode::OK
                };
                let outcome = match outcome {
                    ReloadOutcome::Applied => "applied",
                    ReloadOutcome::Unchanged => "unchanged",
                    ReloadOutcome::Rejected => "rejected",
                };
                json_reply(
                    status,
                    json!({
                        "outcome": outcome,
                        "version": self.snapshots.current().version,
                        "problems": problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "restart_needed": self.snapshots.restart_needed(),
                    }),
                )
            }
            (_, "/metrics" | "/healthz" | "/readyz" | "/-/config" | "/-/reload") => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"method not allowed\n".to_vec(),
            ),
            _ => reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}

/// Marks the gateway ready while the server runs, and not ready once shutdown begins.
pub struct Readiness(pub Arc<AtomicBool>);

#[async_trait]
impl BackgroundService for Readiness {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.0.store(true, Ordering::Release);
        let _ = shutdown.changed().await;
        self.0.store(false, Ordering::Release);
    }
}
