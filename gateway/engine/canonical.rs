//! The canonical profile: which statuses exist, their reason phrases and problem types, the
//! fallbacks for statuses outside the set, and the problem types (and `Retry-After`, from
//! `gateway_retry_after`) of gateway-made errors.

use std::collections::HashMap;

use http::HeaderValue;

use super::problem::{retryable, Origin, ProblemBody};
use super::redact::Redaction;

/// A status's canonical description.
#[derive(Debug, Clone)]
pub struct CanonicalStatus {
    pub reason: String,
    pub type_uri: String,
    pub title: String,
}

/// Whose doing a gateway-made failure is: the metric it is counted in
/// (`statusgate_upstream_failures_total` or `statusgate_client_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Upstream,
    Client,
}

/// Defines `GatewayFailure` from one table: each row is a variant, its stable name (config,
/// metrics, logs), its status, whose doing it is, and its default problem detail. `ALL`, the
/// names, the statuses and the default problem types (`urn:statusgate:problem:<name>`) all come
/// from these rows, so adding a kind is one row here plus its row in the proxy's failure table.
macro_rules! gateway_failures {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $status:literal, $blame:ident, $detail:literal;)+) => {
        /// Errors the gateway answers itself (never produced by a rule).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum GatewayFailure {
            $($(#[$doc])* $variant,)+
        }

        impl GatewayFailure {
            /// Every kind, in declaration order (`index`).
            pub const ALL: [GatewayFailure; [$(stringify!($variant)),+].len()] = [$(Self::$variant),+];

            /// Stable name, used in config (`gateway_problems`), metrics and logs.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }

            pub fn status(self) -> u16 {
                match self {
                    $(Self::$variant => $status,)+
                }
            }

            /// Whose doing the failure is.
            pub fn blame(self) -> Blame {
                match self {
                    $(Self::$variant => Blame::$blame,)+
                }
            }

            fn default_detail(self) -> &'static str {
                match self {
                    $(Self::$variant => $detail,)+
                }
            }
        }
    };
}

gateway_failures! {
    /// Connection refused or no route to the upstream.
    UpstreamRefused = "upstream_refused", 502, Upstream, "The upstream refused the connection.";
    /// Connection reset while sending or reading.
    UpstreamReset = "upstream_reset", 502, Upstream, "The upstream connection was reset.";
    /// Connection closed before a complete response header.
    UpstreamClosed = "upstream_closed", 502, Upstream, "The upstream closed the connection before a complete response.";
    /// The upstream's response was not valid HTTP.
    InvalidResponse = "invalid_response", 502, Upstream, "The upstream sent an invalid HTTP response.";
    /// TLS handshake or certificate failure.
    Tls = "tls", 502, Upstream, "The TLS handshake with the upstream failed.";
    ConnectTimeout = "connect_timeout", 504, Upstream, "Connecting to the upstream timed out.";
    /// No response header before the route's response deadline.
    ResponseTimeout = "response_timeout", 504, Upstream, "The upstream did not answer in time.";
    /// The route's upstream group has no usable address.
    NoUpstream = "no_upstream", 503, Upstream, "No upstream address is available for this route.";
    NoRoute = "no_route", 404, Client, "No route matches this request.";
    BadRequest = "bad_request", 400, Client, "The request is not valid HTTP.";
    RequestTooLarge = "request_too_large", 413, Client, "The request body is larger than the gateway accepts.";
    HeaderTooLarge = "header_too_large", 431, Client, "The request header fields are larger than the gateway accepts.";
    /// The client sent a method the gateway refuses (CONNECT, `OPTIONS *`).
    MethodNotAllowed = "method_not_allowed", 405, Client, "The gateway does not forward this method.";
    /// The request target is ambiguous or climbs out of its route (`..` above the root,
    /// encoded separators, backslashes, NUL).
    BadTarget = "bad_target", 400, Client, "The request target is ambiguous or leaves its route.";
    /// The client did not send its whole request header in time (slowloris).
    ClientHeaderTimeout = "client_header_timeout", 408, Client, "The request header did not arrive in time.";
    /// The client stopped sending its request body.
    ClientBodyTimeout = "client_body_timeout", 408, Client, "The request body stopped arriving.";
    /// The listener already serves its maximum of client connections.
    ClientConnectionLimit = "client_connection_limit", 503, Client, "The gateway serves its maximum of connections; retry later.";
    /// The upstream stopped reading the request (a stalled upload).
    UpstreamWriteTimeout = "upstream_write_timeout", 504, Upstream, "The upstream stopped reading the request.";
    /// The upstream stopped sending a body a rule needs.
    UpstreamBodyTimeout = "upstream_body_timeout", 504, Upstream, "The upstream stopped sending its response body.";
    /// A body a rule needs did not arrive whole within the buffering deadline.
    BodyDeadline = "body_deadline", 504, Upstream, "The upstream's response body did not arrive in time.";
    /// The gateway ran out of file descriptors (EMFILE/ENFILE): its own trouble, not the
    /// upstream's, so the address stays in rotation.
    FdExhausted = "fd_exhausted", 503, Upstream, "The gateway is out of connection resources; retry later.";
    /// The upstream group already holds its maximum of connections.
    UpstreamConnectionLimit = "upstream_connection_limit", 503, Upstream, "The upstream's connection limit is reached; retry later.";
    /// The group has no address: its host names have not resolved yet, or resolution has
    /// failed for longer than `resolver.stale_for`.
    NoUpstreamAddress = "no_upstream_address", 503, Upstream, "The upstream's host name has no address; retry later.";
    /// An `Expect` field other than `100-continue` (RFC 9110 section 10.1.1).
    ExpectationFailed = "expectation_failed", 417, Client, "The gateway supports no expectation but 100-continue.";
    /// An upgrade request (`Connection: upgrade`, `Upgrade: X`) on a route whose `upgrades:`
    /// does not list X (Envoy answers 403 too). The proxy names X in the detail.
    UpgradeRefused = "upgrade_refused", 403, Client, "This route does not forward this Upgrade protocol.";
}

impl GatewayFailure {
    /// The kind's position in `ALL` (metrics index their series by it).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the failure is the upstream's (or the path to it) rather than the client's:
    /// counted in `statusgate_upstream_failures_total`, else `statusgate_client_failures_total`.
    pub fn is_upstream(self) -> bool {
        self.blame() == Blame::Upstream
    }

    pub fn from_name(s: &str) -> Option<GatewayFailure> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }

    /// A failure to connect: the request never reached the upstream (`retryable` for an
    /// idempotent method, like a 504).
    pub fn is_connect_failure(self) -> bool {
        matches!(self, GatewayFailure::UpstreamRefused | GatewayFailure::ConnectTimeout)
    }

    /// The problem type used when the canonical profile's `gateway_problems` names none.
    pub fn default_type(self) -> String {
        format!("urn:statusgate:problem:{}", self.name().replace('_', "-"))
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
    /// `Retry-After` of gateway-made 503 and 504 answers (`gateway_retry_after:`), by status.
    retry_after: Vec<(u16, HeaderValue)>,
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
            retry_after: Vec::new(),
        }
    }

    /// Sets the `Retry-After` values of gateway-made answers, by status (503, 504).
    pub fn with_gateway_retry_after(mut self, retry_after: Vec<(u16, HeaderValue)>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// The `Retry-After` a gateway-made problem carries: configured for its status, and only
    /// when the problem says the client may retry.
    pub fn gateway_retry_after(&self, problem: &ProblemBody) -> Option<&HeaderValue> {
        if !problem.retryable {
            return None;
        }
        self.retry_after
            .iter()
            .find(|(s, _)| *s == problem.status)
            .map(|(_, v)| v)
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

    /// The problem body for an error the gateway answers itself; `method` is the client's
    /// (`None` when its request header was not read: not retryable but for a 503).
    pub fn gateway_problem(&self, failure: GatewayFailure, method: Option<&str>, request_id: &str) -> ProblemBody {
        let status = failure.status();
        let (type_uri, title) = match self.gateway.get(&failure) {
            Some((t, ti)) => (t.clone(), ti.clone()),
            None => (failure.default_type(), self.reason(status).to_owned()),
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
            retryable: retryable(status, method.unwrap_or(""), failure.is_connect_failure()),
            extensions: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_kind_has_its_index_a_name_a_detail_and_a_default_problem_type() {
        for (i, f) in GatewayFailure::ALL.into_iter().enumerate() {
            assert_eq!(f.index(), i, "ALL is in declaration order (metrics index by it)");
            assert!(!f.name().is_empty() && f.name().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(f.default_type().starts_with("urn:statusgate:problem:"));
            assert_eq!(GatewayFailure::from_name(f.name()), Some(f));
            assert!(!f.default_detail().is_empty());
            assert!((400..600).contains(&f.status()));
        }
    }

    fn canonical_with_retry_after() -> CanonicalProfile {
        CanonicalProfile::new(HashMap::new(), 400, 502, HashMap::new()).with_gateway_retry_after(vec![
            (503, HeaderValue::from_static("5")),
            (504, HeaderValue::from_static("2")),
        ])
    }

    /// Every gateway-made failure, for an idempotent and a non-idempotent method and for a
    /// request whose header was never read: `retryable` and `Retry-After` as documented.
    #[test]
    fn gateway_problems_say_whether_to_retry_and_when() {
        let c = canonical_with_retry_after();
        let bare = CanonicalProfile::new(HashMap::new(), 400, 502, HashMap::new());
        for f in GatewayFailure::ALL {
            for method in [Some("GET"), Some("PUT"), Some("POST"), Some("PATCH"), None] {
                let idempotent = matches!(method, Some("GET" | "PUT"));
                let p = c.gateway_problem(f, method, "r");
                let want = match f.status() {
                    503 => true,
                    504 => idempotent,
                    _ => f == GatewayFailure::UpstreamRefused && idempotent,
                };
                assert_eq!(p.retryable, want, "{} {method:?}", f.name());
                let want_after = match (f.status(), want) {
                    (503, true) => Some("5"),
                    (504, true) => Some("2"),
                    _ => None,
                };
                assert_eq!(
                    c.gateway_retry_after(&p).map(|v| v.to_str().unwrap()),
                    want_after,
                    "{} {method:?}",
                    f.name()
                );
                assert_eq!(bare.gateway_retry_after(&p), None, "not configured: no Retry-After");
            }
        }
    }
}
