//! The canonical profile: which statuses exist, their reason phrases and problem types, the
//! fallbacks for statuses outside the set, and the problem types of gateway-made errors.

use std::collections::HashMap;

use super::problem::{Origin, ProblemBody};
use super::redact::Redaction;

/// A status's canonical description.
#[derive(Debug, Clone)]
pub struct CanonicalStatus {
    pub reason: String,
    pub type_uri: String,
    pub title: String,
}

/// Errors the gateway answers itself (never produced by a rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GatewayFailure {
    /// Connection refused or no route to the upstream.
    UpstreamRefused,
    /// Connection reset while sending or reading.
    UpstreamReset,
    /// Connection closed before a complete response header.
    UpstreamClosed,
    /// The upstream's response was not valid HTTP.
    InvalidResponse,
    /// TLS handshake or certificate failure.
    Tls,
    ConnectTimeout,
    /// No response header before the route's response deadline.
    ResponseTimeout,
    /// The route's upstream group has no usable address.
    NoUpstream,
    NoRoute,
    BadRequest,
    RequestTooLarge,
    HeaderTooLarge,
    /// The client sent a method the gateway refuses (CONNECT, `OPTIONS *`).
    MethodNotAllowed,
    /// The request target is ambiguous or climbs out of its route (`..` above the root,
    /// encoded separators, backslashes, NUL).
    BadTarget,
    /// The client did not send its whole request header in time (slowloris).
    ClientHeaderTimeout,
    /// The client stopped sending its request body.
    ClientBodyTimeout,
    /// The listener already serves its maximum of client connections.
    ClientConnectionLimit,
    /// The upstream stopped reading the request (a stalled upload).
    UpstreamWriteTimeout,
    /// The upstream stopped sending a body a rule needs.
    UpstreamBodyTimeout,
    /// A body a rule needs did not arrive whole within the buffering deadline.
    BodyDeadline,
    /// The gateway ran out of file descriptors (EMFILE/ENFILE): its own trouble, not the
    /// upstream's, so the address stays in rotation.
    FdExhausted,
    /// The upstream group already holds its maximum of connections.
    UpstreamConnectionLimit,
}

impl GatewayFailure {
    pub const ALL: [GatewayFailure; 22] = [
        Self::UpstreamRefused,
        Self::UpstreamReset,
        Self::UpstreamClosed,
        Self::InvalidResponse,
        Self::Tls,
        Self::ConnectTimeout,
        Self::ResponseTimeout,
        Self::NoUpstream,
        Self::NoRoute,
        Self::BadRequest,
        Self::RequestTooLarge,
        Self::HeaderTooLarge,
        Self::MethodNotAllowed,
        Self::BadTarget,
        Self::ClientHeaderTimeout,
        Self::ClientBodyTimeout,
        Self::ClientConnectionLimit,
        Self::UpstreamWriteTimeout,
        Self::UpstreamBodyTimeout,
        Self::BodyDeadline,
        Self::FdExhausted,
        Self::UpstreamConnectionLimit,
    ];

    /// Whether the failure is the upstream's (or the path to it) rather than the client's:
    /// counted in `statusgate_upstream_failures_total`, else `statusgate_client_failures_total`.
    pub fn is_upstream(self) -> bool {
        !matches!(
            self,
            Self::NoRoute
                | Self::BadRequest
                | Self::RequestTooLarge
                | Self::HeaderTooLarge
                | Self::MethodNotAllowed
                | Self::BadTarget
                | Self::ClientHeaderTimeout
                | Self::ClientBodyTimeout
                | Self::ClientConnectionLimit
        )
    }

    pub fn status(self) -> u16 {
        match self {
            Self::UpstreamRefused | Self::UpstreamReset | Self::UpstreamClosed | Self::InvalidResponse | Self::Tls => {
                502
            }
            Self::ConnectTimeout
            | Self::ResponseTimeout
            | Self::UpstreamWriteTimeout
            | Self::UpstreamBodyTimeout
            | Self::BodyDeadline => 504,
            Self::NoUpstream | Self::FdExhausted | Self::UpstreamConnectionLimit | Self::ClientConnectionLimit => 503,
            Self::NoRoute => 404,
            Self::BadRequest | Self::BadTarget => 400,
            Self::ClientHeaderTimeout | Self::ClientBodyTimeout => 408,
            Self::RequestTooLarge => 413,
            Self::HeaderTooLarge => 431,
            Self::MethodNotAllowed => 405,
        }
    }

    /// Stable name, used in config (`gateway_problems`), metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::UpstreamRefused => "upstream_refused",
            Self::UpstreamReset => "upstream_reset",
            Self::UpstreamClosed => "upstream_closed",
            Self::InvalidResponse => "invalid_response",
            Self::Tls => "tls",
            Self::ConnectTimeout => "connect_timeout",
            Self::ResponseTimeout => "response_timeout",
            Self::NoUpstream => "no_upstream",
            Self::NoRoute => "no_route",
            Self::BadRequest => "bad_request",
            Self::RequestTooLarge => "request_too_large",
            Self::HeaderTooLarge => "header_too_large",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BadTarget => "bad_target",
            Self::ClientHeaderTimeout => "client_header_timeout",
            Self::ClientBodyTimeout => "client_body_timeout",
            Self::ClientConnectionLimit => "client_connection_limit",
            Self::UpstreamWriteTimeout => "upstream_write_timeout",
            Self::UpstreamBodyTimeout => "upstream_body_timeout",
            Self::BodyDeadline => "body_deadline",
            Self::FdExhausted => "fd_exhausted",
            Self::UpstreamConnectionLimit => "upstream_connection_limit",
        }
    }

    pub fn from_name(s: &str) -> Option<GatewayFailure> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }

    fn default_detail(self) -> &'static str {
        match self {
            Self::UpstreamRefused => "The upstream refused the connection.",
            Self::UpstreamReset => "The upstream connection was reset.",
            Self::UpstreamClosed => "The upstream closed the connection before a complete response.",
            Self::InvalidResponse => "The upstream sent an invalid HTTP response.",
            Self::Tls => "The TLS handshake with the upstream failed.",
            Self::ConnectTimeout => "Connecting to the upstream timed out.",
            Self::ResponseTimeout => "The upstream did not answer in time.",
            Self::NoUpstream => "No upstream address is available for this route.",
            Self::NoRoute => "No route matches this request.",
            Self::BadRequest => "The request is not valid HTTP.",
            Self::RequestTooLarge => "The request body is larger than the gateway accepts.",
            Self::HeaderTooLarge => "The request header fields are larger than the gateway accepts.",
            Self::MethodNotAllowed => "The gateway does not forward this method.",
            Self::BadTarget => "The request target is ambiguous or leaves its route.",
            Self::ClientHeaderTimeout => "The request header did not arrive in time.",
            Self::ClientBodyTimeout => "The request body stopped arriving.",
            Self::ClientConnectionLimit => "The gateway serves its maximum of connections; retry later.",
            Self::UpstreamWriteTimeout => "The upstream stopped reading the request.",
            Self::UpstreamBodyTimeout => "The upstream stopped sending its response body.",
            Self::BodyDeadline => "The upstream's response body did not arrive in time.",
            Self::FdExhausted => "The gateway is out of connection resources; retry later.",
            Self::UpstreamConnectionLimit => "The upstream's connection limit is reached; retry later.",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CanonicalProfile {
    statuses: HashMap<u16, CanonicalStatus>,
    fallback_4xx: u16,
    fallback_5xx: u16,
    gateway: HashMap<GatewayFailure, (String, String)>,
    /// The filter every upstream-derived problem member passes (`redaction:`).
    redaction: Redaction,
}

/// Reason phrase for any status, by RFC 9110 (or "Unknown").
pub fn standard_reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

impl CanonicalProfile {
    pub fn new(
        statuses: HashMap<u16, CanonicalStatus>,
        fallback_4xx: u16,
        fallback_5xx: u16,
        gateway: HashMap<GatewayFailure, (String, String)>,
    ) -> Self {
        CanonicalProfile {
            statuses,
            fallback_4xx,
            fallback_5xx,
            gateway,
            redaction: Redaction::default(),
        }
    }

    /// Sets the redaction filter (the builtin one by default).
    pub fn with_redaction(mut self, redaction: Redaction) -> Self {
        self.redaction = redaction;
        self
    }

    pub fn redaction(&self) -> &Redaction {
        &self.redaction
    }

    pub fn contains(&self, status: u16) -> bool {
        self.statuses.contains_key(&status)
    }

    pub fn codes(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.statuses.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// The canonical status for an upstream status no rule mapped: kept if in the set,
    /// else 4xx -> fallback, 5xx (and anything >= 500 or invented) -> fallback, 1xx-3xx pass.
    pub fn canonicalize(&self, status: u16) -> u16 {
        if self.statuses.contains_key(&status) {
            return status;
        }
        match status {
            400..=499 => self.fallback_4xx,
            100..=399 => status,
            _ => self.fallback_5xx,
        }
    }

    pub fn reason(&self, status: u16) -> &str {
        match self.statuses.get(&status) {
            Some(s) => &s.reason,
            None => standard_reason(status),
        }
    }

    /// (type, title) of the problem for a status.
    pub fn problem_type(&self, status: u16) -> (&str, &str) {
        match self.statuses.get(&status) {
            Some(s) => (&s.type_uri, &s.title),
            None => ("about:blank", standard_reason(status)),
        }
    }

    /// The problem body for an error the gateway answers itself.
    pub fn gateway_problem(&self, failure: GatewayFailure, request_id: &str) -> ProblemBody {
        let status = failure.status();
        let (type_uri, title) = match self.gateway.get(&failure) {
            Some((t, ti)) => (t.clone(), ti.clone()),
            None => (
                format!("urn:statusgate:problem:{}", failure.name().replace('_', "-")),
                self.reason(status).to_owned(),
            ),
        };
        ProblemBody {
            type_uri,
            title,
            status,
            detail: Some(failure.default_detail().to_owned()),
            instance: None,
            upstream_status: None,
            vendor_code: None,
            request_id: request_id.to_owned(),
            vendor_request_id: None,
            origin: Origin::Gateway,
            extensions: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_kind_has_its_index_a_name_and_a_detail() {
        for (i, f) in GatewayFailure::ALL.into_iter().enumerate() {
            assert_eq!(f as usize, i, "ALL is in declaration order (metrics index by it)");
            assert_eq!(GatewayFailure::from_name(f.name()), Some(f));
            assert!(!f.default_detail().is_empty());
            assert!((400..600).contains(&f.status()));
        }
    }
}
