//! The pingora glue: `GatewayApp` is a pingora `HttpServerApp` that reads each request, takes
//! the current snapshot once, hands the work to `exchange::Exchange`, then logs and counts.

pub mod connections;
pub mod exchange;
pub mod failure;
pub mod request_id;
pub mod respond;
pub mod target;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use http::header;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::connectors::http::Connector;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::time::fast_timeout::fast_timeout;
use tokio::io::AsyncReadExt;

use crate::access_log;
use crate::engine::{BodySkip, GatewayFailure, Origin, ProblemFormat};
use crate::metrics::{Metrics, RouteMetrics};
use crate::reload::SnapshotHandle;
use crate::snapshot::Snapshot;
use exchange::{Ending, Exchange};
use failure as rescue;

/// Everything known about one request when it is done: the access log line and the metrics.
#[derive(Debug)]
pub struct RequestLog {
    pub started: Instant,
    pub request_id: String,
    /// The matched route's metrics (and name).
    pub route: Option<Arc<RouteMetrics>>,
    pub upstream_addr: Option<SocketAddr>,
    pub upstream_status: Option<u16>,
    pub status: u16,
    pub rule: Option<String>,
    pub rule_index: Option<usize>,
    pub origin: Origin,
    pub failure: Option<GatewayFailure>,
    pub body_skip: Option<BodySkip>,
    pub redactions: u32,
    pub failed_after_header: bool,
    /// The underlying error of a gateway-made failure, for the log.
    pub error: Option<String>,
    pub upstream_header_after: Option<Duration>,
}

impl RequestLog {
    /// A request that has just started: nothing known yet but its id.
    pub fn new(started: Instant, request_id: String) -> Self {
        RequestLog {
            started,
            request_id,
            route: None,
            upstream_addr: None,
            upstream_status: None,
            status: 0,
            rule: None,
            rule_index: None,
            origin: Origin::Upstream,
            failure: None,
            body_skip: None,
            redactions: 0,
            failed_after_header: false,
            error: None,
            upstream_header_after: None,
        }
    }
}

pub struct GatewayApp {
    snapshots: Arc<SnapshotHandle>,
    connector: Connector,
    metrics: Arc<Metrics>,
    listeners: connections::ListenerCounts,
}

impl GatewayApp {
    pub fn new(snapshots: Arc<SnapshotHandle>, metrics: Arc<Metrics>) -> Self {
        GatewayApp {
            snapshots,
            connector: Connector::new(None),
            listeners: connections::ListenerCounts::new(metrics.clone()),
            metrics,
        }
    }

    fn finish(&self, log: &RequestLog, req: Option<&pingora::http::RequestHeader>) {
        self.metrics.record(log);
        access_log::emit(log, req);
    }

    /// Answers a request that is refused before any routing (its header may be unreadable), and
    /// closes the connection.
    async fn refuse(&self, session: &mut ServerSession, snap: &Snapshot, started: Instant, failure: GatewayFailure) {
        let mut log = RequestLog::new(started, request_id::generate());
        let mut ex = Exchange {
            session,
            snap,
            connector: &self.connector,
            log: &mut log,
            format: ProblemFormat::Json,
            head_request: false,
            http10: false,
        };
        ex.fail(failure, false).await;
        self.finish(&log, None);
    }
}

/// Total size of the request's header fields, as the client sent them.
fn header_bytes(req: &pingora::http::RequestHeader) -> usize {
    req.uri.path_and_query().map_or(0, |p| p.as_str().len())
        + req.uri.authority().map_or(0, |a| a.as_str().len())
        + req
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>()
}

/// What the request header alone says about how to answer.
struct Intake {
    request_id: String,
    format: ProblemFormat,
    head_request: bool,
    http10: bool,
    /// A failure decided from the header alone.
    refused: Option<GatewayFailure>,
}

fn intake(req: &pingora::http::RequestHeader, snap: &Snapshot) -> Intake {
    let request_id = req
        .headers
        .get(respond::X_REQUEST_ID)
        .map(|v| v.as_bytes())
        .filter(|v| request_id::is_sane(v))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(request_id::generate);
    let format = ProblemFormat::negotiate(req.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let refused = if header_bytes(req) > snap.limits.request_header {
        Some(GatewayFailure::HeaderTooLarge)
    } else if req.version == http::Version::HTTP_11 && !req.headers.contains_key(header::HOST) {
        // RFC 9112 section 3.2: an HTTP/1.1 request without Host is answered 400.
        Some(GatewayFailure::BadRequest)
    } else if req.method == http::Method::CONNECT || !req.uri.path().starts_with('/') {
        Some(GatewayFailure::MethodNotAllowed)
    } else {
        None
    };
    Intake {
        request_id,
        format,
        head_request: req.method == http::Method::HEAD,
        http10: req.version == http::Version::HTTP_10,
        refused,
    }
}

#[async_trait]
impl HttpServerApp for GatewayApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let started = Instant::now();
        let snap = self.snapshots.current();
        // The connection's place under `limits.client_connections`, carried from request to
        // request; `None` on a connection's first request.
        let conn = session
            .take_connection_user_context()
            .and_then(|c| c.downcast::<connections::ClientConnection>().ok());
        // The whole header within `client_header_timeout` (a per-read timeout would let a
        // client trickle one byte at a time forever). On a reused connection the next request's
        // first bytes are already here (see `keep_alive`), so the clock runs from them; when
        // they hold the whole header there is nothing to wait for and no timer to arm.
        let read = if conn.as_ref().is_some_and(|c| c.header_ready) {
            Ok(session.read_request().await)
        } else {
            tokio::select! {
                biased;
                r = fast_timeout(snap.limits.client_header_timeout, session.read_request()) => r,
                _ = wait_shutdown(shutdown) => return None,
            }
        };
        match read {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return None,
            Ok(Err(e)) => {
                // Not HTTP: answer a canonical 400 (431 when the header block is too large).
                if let Some(failure) = rescue::refusal(&e) {
                    self.refuse(&mut session, &snap, started, failure).await;
                }
                return None;
            }
            Err(_) => {
                self.refuse(&mut session, &snap, started, GatewayFailure::ClientHeaderTimeout)
                    .await;
                return None;
            }
        }
        // Keep-alive as the request's version and Connection field say (RFC 9112 section 9.3:
        // HTTP/1.0 only with `keep-alive`; pingora also turns it off for CL + TE), never longer
        // than configured and never while shutting down.
        let keepalive = session.get_keepalive().is_some() && !*shutdown.borrow();
        session.set_keepalive(keepalive.then(|| snap.limits.client_keepalive_timeout.as_secs().max(1)));
        session.set_read_timeout(Some(snap.limits.client_body_timeout));
        // Pipelined requests are answered one after the other, in order (RFC 9112 section 9.3.2).
        session.set_pipelining_enabled(true);

        let conn = match conn {
            Some(c) => c,
            None => match self
                .listeners
                .admit(session.server_addr(), snap.limits.client_connections)
            {
                Ok(slot) => Box::new(connections::ClientConnection {
                    slot,
                    header_ready: false,
                }),
                Err(connections::AtCapacity) => {
                    self.refuse(&mut session, &snap, started, GatewayFailure::ClientConnectionLimit)
                        .await;
                    return None;
                }
            },
        };

        let Intake {
            request_id,
            format,
            head_request,
            http10,
            refused,
        } = intake(session.req_header(), &snap);
        let mut log = RequestLog::new(started, request_id);
        self.metrics.in_flight.inc();
        let ending = {
            let mut ex = Exchange {
                session: &mut session,
                snap: &snap,
                connector: &self.connector,
                log: &mut log,
                format,
                head_request,
                http10,
            };
            match refused {
                Some(f) => ex.fail(f, false).await,
                None => ex.run().await,
            }
        };
        self.metrics.in_flight.dec();
        self.finish(&log, Some(session.req_header()));
        if ending == Ending::Close {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        let reusable = session.finish().await.ok()??;
        keep_alive(reusable, settings, conn, snap.limits.client_keepalive_timeout, shutdown).await
    }
}

/// Waits (at most the keep-alive timeout) for the next request on an idle connection and
/// reads its first bytes, so that the next request's header deadline starts when the client
/// starts sending. Pipelined bytes already read count as that start.
async fn keep_alive(
    reusable: pingora::protocols::http::server::ReusableHttpStream,
    mut settings: HttpPersistentSettings,
    mut conn: Box<connections::ClientConnection>,
    idle: Duration,
    shutdown: &ShutdownWatch,
) -> Option<ReusedHttpStream> {
    let (mut stream, prefix) = reusable.into_parts();
    let prefix = match prefix.filter(|p| !p.is_empty()) {
        Some(p) => p,
        None => {
            let mut buf = BytesMut::with_capacity(4096);
            tokio::select! {
                biased;
                r = fast_timeout(idle, stream.read_buf(&mut buf)) => match r {
                    Ok(Ok(n)) if n > 0 => buf,
                    _ => return None,
                },
                _ = wait_shutdown(shutdown) => return None,
            }
        }
    };
    conn.header_ready = header_complete(&prefix);
    settings.set_pipelined_prefix(prefix);
    settings.set_user_context(conn);
    Some(ReusedHttpStream::new(stream, Some(settings)))
}

/// Whether `buf` holds a whole header block (its blank line). A bare-LF header is not
/// recognized here and simply gets the deadline.
fn header_complete(buf: &[u8]) -> bool {
    // A bodyless request ends with its blank line: checked first, in constant time.
    buf.ends_with(b"\r\n\r\n") || memchr::memmem::find(buf, b"\r\n\r\n").is_some()
}

async fn wait_shutdown(shutdown: &ShutdownWatch) {
    let mut s = shutdown.clone();
    while !*s.borrow() {
        if s.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
