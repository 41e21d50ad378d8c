//! Logging: the tracing subscriber (text or JSON, RUST_LOG-style filters) and the one
//! structured access-log line per request.

use tracing_subscriber::EnvFilter;

use super::outcome::{Outcome, UpgradeResult};

/// Installs the global subscriber; `RUST_LOG` in the environment overrides `filter`.
///
/// Lines are written to stderr by a dedicated thread (tracing-appender), so a worker never
/// blocks on a write syscall per request; if that thread falls behind, workers wait rather than
/// drop lines. Keep the returned guard alive: dropping it flushes what is buffered.
pub fn init(format: &str, filter: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    guard
}

/// One line per request (`route`: the matched route's name, `-` for none; `trace_id`: the
/// request's OpenTelemetry trace id while `tracing:` is on, else `-`); at WARN when the
/// gateway answered an upstream failure itself (the failure is logged once, here, with the
/// request id and pingora's error text). An upgraded request's line is written when its tunnel
/// ends: `upgraded`, `upgrade` (the protocol), `tunnel_ms`, the bytes each way and `tunnel_end`.
pub fn emit(log: &Outcome, route: &str, req: Option<&pingora::http::RequestHeader>) {
    let warn = log.failure.is_some_and(|f| f.status() >= 500) || log.failed_after_header;
    let level_enabled = if warn {
        tracing::enabled!(target: "statusgate::access", tracing::Level::WARN)
    } else {
        tracing::enabled!(target: "statusgate::access", tracing::Level::INFO)
    };
    if !level_enabled {
        return;
    }
    let upstream = log.upstream_addr.map(|a| a.to_string());
    // An upgrade request: its protocol, and for a tunnel its life and bytes each way.
    let (upgrade, tunnel) = match &log.upgrade {
        None => ("-", None),
        Some(u) => (
            u.protocol.as_str(),
            match &u.result {
                UpgradeResult::Tunnel(t) => Some(t),
                _ => None,
            },
        ),
    };
    let method = req.map_or("-", |r| r.method.as_str());
    let path = req.map_or("-", |r| r.uri.path());
    let protocol = req.map_or("-", |r| protocol_name(r.version));
    macro_rules! line {
        ($level:expr) => {
            tracing::event!(
                target: "statusgate::access",
                $level,
                request_id = %log.request_id,
                trace_id = tracing::field::display(TraceIdField(log.trace_id)),
                route = route,
                protocol = protocol,
                method = %method,
                path = %path,
                upstream = upstream.as_deref().unwrap_or("-"),
                upstream_status = log.upstream_status.unwrap_or(0),
                status = log.status,
                rule = log.rule.as_deref().unwrap_or("-"),
                origin = log.origin.as_str(),
                failure = log.failure.map_or("-", |f| f.name()),
                error = log.error.as_deref().unwrap_or("-"),
                after_header_failure = log.failed_after_header,
                upstream_header_ms = log.upstream_header_after.map_or(0.0, |d| d.as_secs_f64() * 1000.0),
                upgrade = upgrade,
                upgraded = tunnel.is_some(),
                tunnel_ms = tunnel.map_or(0.0, |t| t.duration.as_secs_f64() * 1000.0),
                tunnel_to_upstream_bytes = tunnel.map_or(0, |t| t.to_upstream),
                tunnel_to_client_bytes = tunnel.map_or(0, |t| t.to_client),
                tunnel_end = tunnel.map_or("-", |t| t.end.as_str()),
                duration_ms = log.started.elapsed().as_secs_f64() * 1000.0,
                "access"
            )
        };
    }
    if warn {
        line!(tracing::Level::WARN);
    } else {
        line!(tracing::Level::INFO);
    }
}

/// The trace id as 32 hex digits, `-` while tracing is off.
struct TraceIdField(Option<opentelemetry::trace::TraceId>);

impl std::fmt::Display for TraceIdField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(id) => write!(f, "{id}"),
            None => f.write_str("-"),
        }
    }
}

/// The client's protocol as the access log names it.
fn protocol_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "-",
    }
}
