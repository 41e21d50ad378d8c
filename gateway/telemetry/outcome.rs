//! What one request did, known when it is done: the leaf type the proxy fills and the metrics
//! and the access log read. It holds no proxy or snapshot types: the route is its index in the
//! serving snapshot (metrics find its series by it, the access log its name).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
}

impl Outcome {
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
        }
    }
}
