//! The admin listener (loopback by default): `/metrics`, `/healthz`, `/readyz`,
//! `GET /-/config` and `POST /-/reload`, and its protection: an optional bearer token
//! (`admin.token_file` / `admin.token_env`, compiled here from the `admin:` section) required
//! for the revealing and mutating endpoints, and a refusal of cross-site requests that change
//! state (a browser page must not be able to POST a reload).

use std::fmt;
use std::net::ToSocketAddrs;
use std::path::Path;
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
use serde_saphyr::Spanned;
use subtle::ConstantTimeEq;

use crate::config::load::resolve;
use crate::config::schema::RawAdmin;
use crate::config::{ConfigProblem, ProblemKind, SourcePos};
use crate::reload::{ReloadOutcome, SnapshotHandle};

/// Where the admin listener binds without an `admin:` setting.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9090";

/// The challenge sent with every 401.
pub const CHALLENGE: &str = r#"Bearer realm="statusgate-admin""#;

/// The bearer token. Its value is never printed: `Debug` redacts it, `/-/config` shows only
/// where it comes from.
#[derive(Clone)]
pub struct AdminToken(Arc<[u8]>);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// Constant-time comparison (only the length can be learned from timing).
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_ref().ct_eq(presented).into()
    }
}

/// Who may use the admin endpoints, part of each snapshot (so a reload changes it).
#[derive(Debug, Clone, Default)]
pub struct AdminAuth {
    pub token: Option<AdminToken>,
    /// Where the token comes from, for `/-/config`: `file:<path>` or `env:<NAME>`.
    pub token_source: Option<String>,
    /// `/metrics` needs the token too.
    pub protect_metrics: bool,
    /// `/healthz` and `/readyz` need the token too.
    pub protect_probes: bool,
}

/// The compiled `admin:` section.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub addr: String,
    pub auth: AdminAuth,
}

fn invalid(at: SourcePos, msg: String) -> ConfigProblem {
    ConfigProblem::error(at, ProblemKind::Invalid(msg))
}

/// A token is sent as `Authorization: Bearer <token>`: visible ASCII, no spaces.
fn token_value(raw: &str, what: &str, at: &SourcePos) -> Result<AdminToken, ConfigProblem> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(invalid(at.clone(), format!("{what} is empty")));
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            at.clone(),
            format!("{what}: the token must be visible ASCII without spaces (it is sent as `Authorization: Bearer <token>`)"),
        ));
    }
    Ok(AdminToken(Arc::from(t.as_bytes())))
}

/// Compiles the `admin:` section of `main`. `read` reads a token file and makes it part of the
/// configuration (its content goes into the version hash, its directory is watched). Errors go
/// to `problems`; a listener off loopback without a token is a warning.
pub fn compile_admin(
    main: &Path,
    raw: Option<&Spanned<RawAdmin>>,
    read: &mut dyn FnMut(&Path) -> Result<String, ConfigProblem>,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<ConfigProblem>,
) -> AdminSettings {
    let mut settings = AdminSettings {
        addr: DEFAULT_ADMIN_ADDR.to_owned(),
        auth: AdminAuth::default(),
    };
    let Some(raw) = raw else {
        return settings;
    };
    let addr_at = match &raw.value {
        RawAdmin::Addr(a) => {
            settings.addr = a.clone();
            SourcePos::of(main, raw)
        }
        RawAdmin::Listener(l) => {
            let auth = &mut settings.auth;
            if let (Some(_), Some(env)) = (&l.token_file, &l.token_env) {
                problems.push(invalid(
                    SourcePos::of(main, env),
                    "set token_file or token_env, not both".to_owned(),
                ));
            } else if let Some(f) = &l.token_file {
                let at = SourcePos::of(main, f);
                let path = resolve(main, &f.value);
                let what = format!("token_file `{}`", path.display());
                match read(&path) {
                    Ok(text) => match token_value(&text, &what, &at) {
                        Ok(t) => {
                            auth.token = Some(t);
                            auth.token_source = Some(format!("file:{}", path.display()));
                        }
                        Err(p) => problems.push(p),
                    },
                    Err(p) => problems.push(invalid(at, format!("{what}: {}", p.kind))),
                }
            } else if let Some(env) = &l.token_env {
                let at = SourcePos::of(main, env);
                let what = format!("token_env `{}`", env.value);
                match std::env::var(&env.value) {
                    Ok(text) => match token_value(&text, &what, &at) {
                        Ok(t) => {
                            auth.token = Some(t);
                            auth.token_source = Some(format!("env:{}", env.value));
                        }
                        Err(p) => problems.push(p),
                    },
                    Err(std::env::VarError::NotPresent) => {
                        problems.push(invalid(at, format!("{what}: the environment variable is not set")))
                    }
                    Err(std::env::VarError::NotUnicode(_)) => {
                        problems.push(invalid(at, format!("{what}: the value is not valid UTF-8")))
                    }
                }
            }
            for (flag, name, field) in [
                (&l.protect_metrics, "protect_metrics", &mut auth.protect_metrics),
                (&l.protect_probes, "protect_probes", &mut auth.protect_probes),
            ] {
                if let Some(flag) = flag {
                    *field = flag.value;
                    if flag.value && l.token_file.is_none() && l.token_env.is_none() {
                        problems.push(invalid(
                            SourcePos::of(main, flag),
                            format!("{name} needs a token: set token_file or token_env"),
                        ));
                    }
                }
            }
            match &l.addr {
                Some(a) => {
                    settings.addr = a.value.clone();
                    SourcePos::of(main, a)
                }
                None => SourcePos::of(main, raw),
            }
        }
    };
    match settings.addr.to_socket_addrs() {
        Err(_) => problems.push(ConfigProblem::error(
            addr_at,
            ProblemKind::Address(settings.addr.clone()),
        )),
        Ok(resolved) => {
            let resolved: Vec<_> = resolved.collect();
            let loopback = !resolved.is_empty() && resolved.iter().all(|a| a.ip().is_loopback());
            if !loopback && settings.auth.token.is_none() {
                warnings.push(ConfigProblem::warning(
                    addr_at,
                    format!(
                        "the admin listener `{}` is not on loopback and has no token: whoever reaches it can read the configuration (GET /-/config) and reload it (POST /-/reload); set admin.token_file or admin.token_env",
                        settings.addr
                    ),
                ));
            }
        }
    }
    settings
}

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
}

impl Endpoint {
    fn of(path: &str) -> Option<Self> {
        Some(match path {
            "/metrics" => Endpoint::Metrics,
            "/healthz" => Endpoint::Healthz,
            "/readyz" => Endpoint::Readyz,
            "/-/config" => Endpoint::Config,
            "/-/reload" => Endpoint::Reload,
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
            Endpoint::Config | Endpoint::Reload => true,
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
                "rules": r.profile.rule_names().collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "admin": {
                "token": snap.admin_auth.token_source,
                "protect_metrics": snap.admin_auth.protect_metrics,
                "protect_probes": snap.admin_auth.protect_probes,
            },
            "last_error": last_error,
            "restart_needed": self.snapshots.restart_needed(),
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
