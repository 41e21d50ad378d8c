//! The rule engine: pure functions from (request facts, upstream response) to the canonical
//! response. No pingora types and no I/O, so tests, `statusgate explain` and the benches call
//! it directly.
//!
//! Flow: `CompiledProfile::compile` (once per snapshot; the loader then runs the profile's
//! `examples`) -> per response, `pipeline::body_need` (may the answer depend on the body?) ->
//! the caller buffers the raw body up to the cap -> `pipeline::normalize` (cap, decode,
//! `evaluate`, `compose`) -> the canonical response.

pub mod body;
pub mod canonical;
pub mod diagnostics;
pub mod examples;
pub mod matcher;
pub mod pipeline;
pub mod problem;
pub mod profile;
pub mod redact;
pub mod response;
pub mod spec;
pub mod spec_schema;
pub mod template;
#[cfg(test)]
mod testing;
pub mod trace;
pub mod units;
pub mod vendor_code;
pub mod yaml;

use http::{HeaderMap, HeaderName, HeaderValue};

pub use canonical::{CanonicalProfile, GatewayFailure};
pub use problem::{Origin, ProblemBody, ProblemFormat};
pub use profile::CompiledProfile;

/// What the gateway knows of the client's request.
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// The path as the upstream sees it (after the route's prefix strip), without the query:
    /// profiles are route-agnostic.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub request_id: &'a str,
}

/// The upstream's status and headers.
pub struct UpstreamHead<'a> {
    pub status: u16,
    pub headers: &'a HeaderMap,
}

/// Why a body that rules wanted could not be read; rules that need it then do not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySkip {
    OverCap,
    Undecodable,
    UnsupportedEncoding,
    /// Nested deeper than the profile's `body_depth`: not parsed past the limit.
    TooDeep,
}

impl BodySkip {
    /// Every reason, in the order of its index (`self as usize`).
    pub const ALL: [BodySkip; 4] = [
        BodySkip::OverCap,
        BodySkip::Undecodable,
        BodySkip::UnsupportedEncoding,
        BodySkip::TooDeep,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BodySkip::OverCap => "over_cap",
            BodySkip::Undecodable => "undecodable",
            BodySkip::UnsupportedEncoding => "unsupported_encoding",
            BodySkip::TooDeep => "too_deep",
        }
    }
}

/// The upstream body as far as the engine is concerned (already decoded).
#[derive(Debug, Clone, Copy)]
pub enum UpstreamBody<'a> {
    /// Not read, because `needs_body` said no rule could use it.
    NotRead,
    Read(&'a [u8]),
    Skipped(BodySkip),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    Set(HeaderName, HeaderValue),
    Append(HeaderName, HeaderValue),
    Remove(HeaderName),
}

#[derive(Debug, Clone, PartialEq)]
pub enum BodyPlan {
    /// Send the upstream body unchanged.
    Passthrough,
    /// Replace it with a problem body.
    Problem(Box<ProblemBody>),
}

/// The canonical response for one upstream response.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<'p> {
    pub status: u16,
    pub reason: &'p str,
    /// The rule that matched, if any.
    pub rule: Option<&'p str>,
    /// Its position in the profile (for pre-resolved per-rule counters).
    pub rule_index: Option<usize>,
    pub headers: Vec<HeaderEdit>,
    pub body: BodyPlan,
    /// Why a body that rules wanted was not used: the caller's skip, or one the readers hit
    /// (`TooDeep`).
    pub body_skip: Option<BodySkip>,
    /// How many problem members the redaction filter changed (`statusgate_redactions_total`).
    pub redactions: u32,
}

/// Makes a header value from text that may come from an upstream: control characters
/// (CR, LF, NUL...) become spaces, so no header can be injected; `None` if still invalid.
pub fn safe_header_value(s: &str) -> Option<HeaderValue> {
    if s.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
        let cleaned: String = s
            .chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect();
        HeaderValue::from_str(cleaned.trim()).ok()
    } else {
        HeaderValue::from_str(s).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_cannot_carry_crlf() {
        let v = safe_header_value("/tasks/1\r\nSet-Cookie: evil=1").unwrap();
        assert_eq!(v.to_str().unwrap(), "/tasks/1  Set-Cookie: evil=1");
        assert_eq!(safe_header_value("plain").unwrap(), "plain");
    }
}
