//! The one normalization path, shared by the proxy, `statusgate explain` and the profile
//! examples: bodyless? -> does the decision need the body? -> the cap on the RAW body ->
//! decode -> evaluate -> compose. The caller owns the I/O: it asks [`body_need`], buffers the
//! raw (still encoded) bytes up to the cap itself, then hands them to [`normalize`] as a
//! [`RawBody`]. Callers that hold the whole body in memory use [`RawBody::buffered`], which
//! applies the cap exactly as the proxy's read loop does.

use super::profile::{CompiledProfile, EnsureHeaders};
use super::response::{compose, decode, CanonicalResponse};
use super::{BodySkip, CanonicalProfile, Decision, ProblemFormat, RequestFacts, UpstreamBody, UpstreamHead};

/// What the caller must do with the upstream body before calling [`normalize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyNeed {
    /// HEAD, 204 or 304: the client gets no body, nothing is read for the rules.
    Bodyless,
    /// No rule whose header conditions hold uses the body: stream it, do not read it.
    NotNeeded,
    /// Buffer the raw bytes; more than `cap` of them is [`RawBody::OverCap`].
    Buffer { cap: usize },
}

/// The raw upstream body as the caller read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawBody<'a> {
    /// Not read (not needed, bodyless, or the caller stopped before the end).
    NotRead,
    /// The whole raw body, at most the cap long.
    Complete(&'a [u8]),
    /// More raw bytes than the cap: not used for matching.
    OverCap,
}

impl<'a> RawBody<'a> {
    /// A body already whole in memory (explain, examples), read as the proxy reads one: only
    /// when `need` says so, and over the cap as soon as the raw bytes exceed it.
    pub fn buffered(need: BodyNeed, bytes: &'a [u8]) -> RawBody<'a> {
        match need {
            BodyNeed::Bodyless | BodyNeed::NotNeeded => RawBody::NotRead,
            BodyNeed::Buffer { cap } if bytes.len() > cap => RawBody::OverCap,
            BodyNeed::Buffer { .. } => RawBody::Complete(bytes),
        }
    }
}

/// The decision and the response composed from it.
#[derive(Debug, Clone)]
pub struct Normalized<'p> {
    pub decision: Decision<'p>,
    pub response: CanonicalResponse<'p>,
}

/// HEAD, 204 and 304 carry no body to the client (RFC 9110 sections 9.3.2, 15.3.5, 15.4.5);
/// methods are case-sensitive (section 9.1), as the proxy reads them.
pub fn is_bodyless(facts: &RequestFacts<'_>, status: u16) -> bool {
    facts.method == "HEAD" || status == 204 || status == 304
}

/// The problem format the client asked for (its `Accept`).
pub fn format_for(facts: &RequestFacts<'_>) -> ProblemFormat {
    ProblemFormat::negotiate(facts.headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()))
}

/// Whether, and how far, the caller must read the upstream body.
pub fn body_need(profile: &CompiledProfile, facts: &RequestFacts<'_>, head: &UpstreamHead<'_>) -> BodyNeed {
    if is_bodyless(facts, head.status) {
        BodyNeed::Bodyless
    } else if profile.needs_body(facts, head) {
        BodyNeed::Buffer {
            cap: profile.body_buffer,
        }
    } else {
        BodyNeed::NotNeeded
    }
}

/// The canonical response for one upstream response: the body (if read) is capped, decoded
/// and evaluated, and the response composed in `format`.
pub fn normalize<'p>(
    profile: &'p CompiledProfile,
    canonical: &'p CanonicalProfile,
    route_ensure: &'p EnsureHeaders,
    facts: &RequestFacts<'_>,
    head: &UpstreamHead<'_>,
    raw: RawBody<'_>,
    format: ProblemFormat,
) -> Normalized<'p> {
    let bodyless = is_bodyless(facts, head.status);
    let cap = profile.body_buffer;
    let decoded;
    let body = match raw {
        _ if bodyless => UpstreamBody::NotRead,
        RawBody::NotRead => UpstreamBody::NotRead,
        RawBody::OverCap => UpstreamBody::Skipped(BodySkip::OverCap),
        RawBody::Complete(b) if b.len() > cap => UpstreamBody::Skipped(BodySkip::OverCap),
        RawBody::Complete(b) => {
            let encoding = head
                .headers
                .get(http::header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok());
            match decode(encoding, b, cap) {
                Ok(d) => {
                    decoded = d;
                    UpstreamBody::Read(&decoded)
                }
                Err(s) => UpstreamBody::Skipped(s),
            }
        }
    };
    let decision = profile.evaluate(canonical, route_ensure, facts, head, body);
    let response = compose(&decision, head.status, head.headers, facts.request_id, format, bodyless);
    Normalized { decision, response }
}
