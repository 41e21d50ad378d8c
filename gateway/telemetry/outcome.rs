//! What one request did, known when it is done: the leaf type the proxy fills and the metrics
//! and the access log read. It holds no proxy or snapshot types: the route is its index in the
//! serving snapshot (metrics find its series by it, the access log its name).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use opentelemetry::trace::TraceId;

use super::traces::RequestTrace;
use crate::engine::{BodySkip, GatewayFailure, Origin};

/// Everything known about one request when it is done.
#[derive(Debug)]
pub struct Outcome {
    pub started: Instant,
    pub request_id: String,
    /// The matched route's index in the serving snapshot's routes (`None`: no route).
    pub route: Option<usize>,
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
    /// An upgrade request (`Connection: upgrade`) and what became of it; `None` for every
    /// other request.
    pub upgrade: Option<Upgrade>,
    /// The request's spans while tracing is on (`tracing:`); `None` otherwise.
    pub trace: Option<Box<RequestTrace>>,
    /// The request's trace id (tracing on), kept for the access log once the spans ended.
    pub trace_id: Option<TraceId>,
}

/// An upgrade request: the protocol and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The protocol: the one the upstream switched to, else what was asked for (as sent,
    /// truncated for the log).
    pub protocol: String,
    pub result: UpgradeResult,
}

/// What became of an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeResult {
    /// The route does not forward the protocol: 403 `upgrade-refused`.
    Refused,
    /// Forwarded, and the upstream answered something else than 101 (normalized as usual).
    Declined,
    /// The upstream switched protocols: bytes were relayed both ways until this ended.
    Tunnel(TunnelStats),
}

impl UpgradeResult {
    /// Every result's label, in the order metrics index them.
    pub const NAMES: [&'static str; 3] = ["refused", "declined", "accepted"];

    /// The position of the result in `NAMES`.
    pub fn index(&self) -> usize {
        match self {
            UpgradeResult::Refused => 0,
            UpgradeResult::Declined => 1,
            UpgradeResult::Tunnel(_) => 2,
        }
    }
}

/// One tunnel, when it is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelStats {
    /// From the 101 written to the client to the end of the relay.
    pub duration: Duration,
    /// Bytes relayed from the client to the upstream, and back.
    pub to_upstream: u64,
    pub to_client: u64,
    pub end: TunnelEnd,
}

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelEnd {
    ClientClosed,
    UpstreamClosed,
    /// No byte either way for `limits.upgrade_idle_timeout`.
    Idle,
    /// Reading from or writing to the client failed.
    ClientError,
    /// Reading from or writing to the upstream failed.
    UpstreamError,
}

impl TunnelEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelEnd::ClientClosed => "client_closed",
            TunnelEnd::UpstreamClosed => "upstream_closed",
            TunnelEnd::Idle => "idle",
            TunnelEnd::ClientError => "client_error",
            TunnelEnd::UpstreamError => "upstream_error",
        }
    }
}

impl Outcome {
    /// The upstream's status when the canonical defaults decided an upstream error response
    /// (>= 400, no rule matched, answered from the upstream's response): what unmatched-response
    /// discovery counts and samples.
    pub fn unmatched_upstream_status(&self) -> Option<u16> {
        match self.upstream_status {
            Some(s) if s >= 400 && self.rule_index.is_none() && self.origin == Origin::Upstream => Some(s),
            _ => None,
        }
    }

    /// A request that has just started: nothing known yet but its id.
    pub fn new(started: Instant, request_id: String) -> Self {
        Outcome {
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
            upgrade: None,
            trace: None,
            trace_id: None,
        }
    }
}
