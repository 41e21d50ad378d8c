//! The pingora glue: `GatewayApp` is a pingora `HttpServerApp` that reads each request, takes
//! the current snapshot once, hands the work to `exchange::Exchange`, then logs and counts.

pub mod exchange;
pub mod failure;
pub mod request_id;
pub mod respond;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::header;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::connectors::http::Connector;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::ErrorType;

use crate::access_log;
use crate::engine::{BodySkip, GatewayFailure, Origin, ProblemFormat};
use crate::metrics::{Metrics, RouteMetrics};
use crate::reload::SnapshotHandle;
use exchange::{Ending, Exchange};

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
}

impl GatewayApp {
    pub fn new(snapshots: Arc<SnapshotHandle>, metrics: Arc<Metrics>) -> Self {
        GatewayApp {
            snapshots,
            connector: Connector::new(None),
            metrics,
        }
    }

    fn finish(&self, log: &RequestLog, req: Option<&pingora::http::RequestHeader>) {
        self.metrics.record(log);
        access_log::emit(log, req);
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

#[async_trait]
impl HttpServerApp for GatewayApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let started = Instant::now();
        let read = tokio::select! {
            biased;
            r = session.read_request() => r,
            _ = wait_shutdown(shutdown) => return None,
        };
        let snap = self.snapshots.current();
        match read {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                // Not HTTP: answer a canonical 400 (431 when the header block is too large).
                if matches!(e.etype(), ErrorType::InvalidHTTPHeader) {
                    let failure = if e.to_string().contains("larger than") {
                        GatewayFailure::HeaderTooLarge
                    } else {
                        GatewayFailure::BadRequest
                    };
                    let mut log = RequestLog::new(started, request_id::generate());
                    let mut ex = Exchange {
                        session: &mut session,
                        snap: &snap,
                        connector: &self.connector,
                        log: &mut log,
                        format: ProblemFormat::Json,
                        head_request: false,
                    };
                    ex.fail(failure, false).await;
                    self.finish(&log, None);
                }
                return None;
            }
        }
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });

        let (request_id, format, head_request, oversized, refused) = {
            let req = session.req_header();
            let request_id = req
                .headers
                .get(respond::X_REQUEST_ID)
                .map(|v| v.as_bytes())
                .filter(|v| request_id::is_sane(v))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_else(request_id::generate);
            let format = ProblemFormat::negotiate(req.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
            let refused = req.method == http::Method::CONNECT || !req.uri.path().starts_with('/');
            (
                request_id,
                format,
                req.method == http::Method::HEAD,
                header_bytes(req) > snap.limits.request_header,
                refused,
            )
        };
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
            };
            if oversized {
                ex.fail(GatewayFailure::HeaderTooLarge, false).await
            } else if refused {
                ex.fail(GatewayFailure::MethodNotAllowed, false).await
            } else {
                ex.run().await
            }
        };
        self.metrics.in_flight.dec();
        self.finish(&log, Some(session.req_header()));
        if ending == Ending::Close {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(Some(stream)) => Some(ReusedHttpStream::from_reusable_stream(stream, settings)),
            _ => None,
        }
    }
}

async fn wait_shutdown(shutdown: &ShutdownWatch) {
    let mut s = shutdown.clone();
    while !*s.borrow() {
        if s.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
