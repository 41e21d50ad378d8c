//! The admin listener (loopback by default): `/metrics`, `/healthz`, `/readyz`,
//! `GET /-/config`, `POST /-/reload`, `GET /-/shadow` (shadow profiles' divergences) and `GET /-/unmatched`
//! (upstream errors no rule matched), and its protection: an optional bearer token
//! (`admin.token_file` / `admin.token_env`, compiled by `config::admin`) required
//! for the revealing and mutating endpoints, and a refusal of cross-site requests that change
//! state (a browser page must not be able to POST a reload).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{Encoder, TextEncoder};
use serde_json::json;

use crate::config::ConfigProblem;
use crate::reload::{ReloadOutcome, SnapshotHandle};

pub use crate::config::admin::{AdminAuth, AdminSettings, AdminToken, CHALLENGE, DEFAULT_ADMIN_ADDR};

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

fn unauthorized() -> Response<Vec<u8>> {
    let mut r = reply(
        StatusCode::UNAUTHORIZED,
        "text/plain",
        b"a valid bearer token is required\n".to_vec(),
    );
    r.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static(CHALLENGE),
    );
    r
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Metrics,
    Healthz,
    Readyz,
    Config,
    Reload,
    Shadow,
    Unmatched,
}

impl Endpoint {
    fn of(path: &str) -> Option<Self> {
        Some(match path {
            "/metrics" => Endpoint::Metrics,
            "/healthz" => Endpoint::Healthz,
            "/readyz" => Endpoint::Readyz,
            "/-/config" => Endpoint::Config,
            "/-/reload" => Endpoint::Reload,
            "/-/shadow" => Endpoint::Shadow,
            "/-/unmatched" => Endpoint::Unmatched,
            _ => return None,
        })
    }

    fn method(self) -> Method {
        if self == Endpoint::Reload {
            Method::POST
        } else {
            Method::GET
        }
    }

    /// With a token configured: `/-/config` and `/-/reload` always need it, the others when
    /// the settings say so.
    fn needs_token(self, auth: &AdminAuth) -> bool {
        match self {
            // Request ids and decisions of live traffic: as revealing as the configuration.
            // Upstream bodies (redacted) too, for `/-/unmatched`.
            Endpoint::Config | Endpoint::Reload | Endpoint::Shadow | Endpoint::Unmatched => true,
            Endpoint::Metrics => auth.protect_metrics,
            Endpoint::Healthz | Endpoint::Readyz => auth.protect_probes,
        }
    }
}

/// The `Authorization: Bearer <token>` credentials, if well formed.
fn bearer(session: &ServerSession) -> Option<&[u8]> {
    let v = session
        .req_header()
        .headers
        .get(http::header::AUTHORIZATION)?
        .as_bytes();
    let (scheme, rest) = v.split_at(v.iter().position(|b| *b == b' ')?);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| rest.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// A request that changes state, sent by a browser on behalf of another site: its `Origin` is
/// not this listener's own (`http://<local address>`, the configured address, or
/// `http://localhost:<port>` on loopback), or `Sec-Fetch-Site` says it is not same-origin.
/// Requests without either header (curl, scripts, probes) are not cross-site.
fn cross_site(session: &ServerSession, configured: &str) -> bool {
    let headers = &session.req_header().headers;
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.as_bytes();
        if !(site.eq_ignore_ascii_case(b"same-origin") || site.eq_ignore_ascii_case(b"none")) {
            return true;
        }
    }
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return false;
    };
    let origin = origin.as_bytes();
    let mut own = vec![format!("http://{configured}")];
    if let Some(local) = session.server_addr().and_then(|a| a.as_inet()) {
        own.push(format!("http://{local}"));
        if local.ip().is_loopback() {
            own.push(format!("http://localhost:{}", local.port()));
        }
    }
    !own.iter().any(|o| o.as_bytes().eq_ignore_ascii_case(origin))
}

/// Problems as machines read them: file, line, column, severity, a stable kind name, message.
fn diagnostics(problems: &[ConfigProblem]) -> Vec<serde_json::Value> {
    problems
        .iter()
        .map(|p| {
            json!({
                "file": p.at.file.display().to_string(),
                "line": p.at.line,
                "column": p.at.col,
                "severity": match p.severity {
                    crate::config::Severity::Error => "error",
                    crate::config::Severity::Warning => "warning",
                },
                "kind": p.kind.name(),
                "message": p.kind.to_string(),
            })
        })
        .collect()
}

impl AdminApp {
    fn config(&self) -> serde_json::Value {
        let snap = self.snapshots.current();
        let secs = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last_error = self.snapshots.last_error().map(|e| {
            json!({
                "at_unix": secs(e.at),
                "problems": e.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "diagnostics": diagnostics(&e.problems),
            })
        });
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
                "shadow_profile": r.shadow.as_ref().map(|s| &s.source),
                "rules": r.profile.rule_names().collect::<Vec<_>>(),
                "upgrades": r.upgrades,
            })).collect::<Vec<_>>(),
            "upstreams": snap.upstreams.values().filter_map(|g| {
                let b = snap.balancers.of(g)?;
                Some((g.name.clone(), b.status()))
            }).collect::<serde_json::Map<_, _>>(),
            "resolver": {
                "nameservers": snap.resolver.nameservers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "min_ttl_ms": snap.resolver.min_ttl.as_millis() as u64,
                "max_ttl_ms": snap.resolver.max_ttl.as_millis() as u64,
                "stale_for_ms": snap.resolver.stale_for.as_millis() as u64,
                "timeout_ms": snap.resolver.timeout.as_millis() as u64,
            },
            "tls_listeners": snap.listener_certs.iter().map(|l| json!({
                "addr": l.addr,
                "min_version": l.certs.min_version.name(),
                "http2": snap.boot.tls_listen.iter().find(|t| t.addr == l.addr).map(|t| t.http2),
                "certificates": l.certs.served.iter().map(|c| json!({
                    "file": c.file,
                    "default": c.default,
                    "serial": c.serial,
                    "names": c.names,
                    "not_after_unix": c.not_after_unix,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            // The running exporter's (its keys are boot-only) and the serving sample ratio.
            "tracing": self.snapshots.boot().tracing.as_ref().map(|t| json!({
                "endpoint": t.endpoint,
                "service_name": t.service_name,
                "sample_ratio": snap.trace_sample_ratio,
                "queue_size": t.queue_size,
                "batch_size": t.batch_size,
                "batch_delay_ms": t.batch_delay.as_millis() as u64,
                "export_timeout_ms": t.export_timeout.as_millis() as u64,
            })),
            "admin": {
                "token": snap.admin_auth.token_source,
                "protect_metrics": snap.admin_auth.protect_metrics,
                "protect_probes": snap.admin_auth.protect_probes,
            },
            "last_error": last_error,
            "restart_needed": self.snapshots.restart_needed(),
        })
    }

    /// `GET /-/shadow`: per route with a `shadow_profile`, what its shadow record holds (since
    /// the serving snapshot was loaded).
    fn shadow(&self) -> serde_json::Value {
        let snap = self.snapshots.current();
        json!({
            "version": snap.version,
            "routes": snap.routes.iter().zip(&snap.shadows).filter_map(|(r, s)| {
                Some(s.as_ref()?.to_json(&r.name))
            }).collect::<Vec<_>>(),
        })
    }

    /// `GET /-/unmatched`: per route, the upstream error responses no rule matched (since the
    /// serving snapshot was loaded), with the bounds and the vendor-code fields looked for.
    fn unmatched(&self) -> serde_json::Value {
        use crate::engine::vendor_code::{JSON_FIELDS, XML_FIELDS};
        use crate::telemetry::unmatched::{EXAMPLE_BYTES, MAX_ENTRIES};
        let snap = self.snapshots.current();
        json!({
            "version": snap.version,
            "limits": { "entries_per_route": MAX_ENTRIES, "example_bytes": EXAMPLE_BYTES },
            "vendor_code_fields": { "json": JSON_FIELDS, "xml": XML_FIELDS },
            "routes": snap.routes.iter().zip(&snap.unmatched)
                .map(|(r, u)| u.to_json(&r.name, &r.profile.source))
                .collect::<Vec<_>>(),
        })
    }

    async fn serve(&self, endpoint: Endpoint) -> Response<Vec<u8>> {
        match endpoint {
            Endpoint::Metrics => {
                let mut buf = Vec::new();
                let encoder = TextEncoder::new();
                let _ = encoder.encode(&prometheus::gather(), &mut buf);
                reply(StatusCode::OK, encoder.format_type(), buf)
            }
            Endpoint::Healthz => reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            Endpoint::Readyz => {
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
            Endpoint::Config => json_reply(StatusCode::OK, self.config()),
            Endpoint::Shadow => json_reply(StatusCode::OK, self.shadow()),
            Endpoint::Unmatched => json_reply(StatusCode::OK, self.unmatched()),
            Endpoint::Reload => {
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
                        "diagnostics": diagnostics(&problems),
                        "restart_needed": self.snapshots.restart_needed(),
                    }),
                )
            }
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_owned();
        let _ = session.drain_request_body().await;
        let snap = self.snapshots.current();
        let safe = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe && cross_site(session, &snap.boot.admin) {
            return reply(
                StatusCode::FORBIDDEN,
                "text/plain",
                b"cross-site request refused\n".to_vec(),
            );
        }
        let Some(endpoint) = Endpoint::of(&path) else {
            return reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec());
        };
        if method != endpoint.method() {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"method not allowed\n".to_vec(),
            );
        }
        if let Some(token) = &snap.admin_auth.token {
            if endpoint.needs_token(&snap.admin_auth) && !bearer(session).is_some_and(|t| token.matches(t)) {
                tracing::debug!(%path, "admin request without a valid bearer token");
                return unauthorized();
            }
        }
        drop(snap);
        self.serve(endpoint).await
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
