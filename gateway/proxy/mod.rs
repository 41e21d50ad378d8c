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
    pub method: String,
    pub path: String,
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
    pub failed_after_header: bool,
    /// The underlying error of a gateway-made failure, for the log.
    pub error: Option<String>,
    pub upstream_header_after: Option<Duration>,
}

impl RequestLog {
    fn new(started: Instant, request_id: String) -> Self {
        RequestLog {
            started,
            request_id,
            method: String::new(),
            path: String::new(),
            route: None,
            upstream_addr: None,
            upstream_status: None,
            status: 0,
            rule: None,
            rule_index: None,
            origin: Origin::Upstream,
            failure: None,
            body_skip: None,
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

    fn finish(&self, log: &RequestLog) {
        self.metrics.record(log);
        access_log::emit(log);
    }
}

/// Total size of the request's header fields, as the client sent them.
fn header_bytes(req: &pingora::http::RequestHeader) -> usize {
    req.uri.to_string().len()
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
                    self.finish(&log);
                }
                return None;
            }
        }
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });

        let req = session.req_header().clone();
        let request_id = req
            .headers
            .get(respond::X_REQUEST_ID)
            .map(|v| v.as_bytes())
            .filter(|v| request_id::is_sane(v))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(request_id::generate);
        let mut log = RequestLog::new(started, request_id);
        log.method = req.method.as_str().to_owned();
        log.path = req.uri.path().to_owned();
        let format = ProblemFormat::negotiate(req.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
        self.metrics.in_flight.inc();
        let ending = {
            let mut ex = Exchange {
                session: &mut session,
                snap: &snap,
                connector: &self.connector,
                log: &mut log,
                format,
                head_request: req.method == http::Method::HEAD,
            };
            if header_bytes(&req) > snap.limits.request_header {
                ex.fail(GatewayFailure::HeaderTooLarge, false).await
            } else if req.method == http::Method::CONNECT
                || req.uri.path().is_empty()
                || !req.uri.path().starts_with('/')
            {
                ex.fail(GatewayFailure::MethodNotAllowed, false).await
            } else {
                ex.run(&req).await
            }
        };
        self.metrics.in_flight.dec();
        self.finish(&log);
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
