//! The one normalization path, shared by the proxy, `statusgate explain` and the profile
//! examples: bodyless? -> does the decision need the body? -> the cap on the RAW body ->
//! decode -> evaluate -> compose. The caller owns the I/O: it asks [`body_need`], buffers the
//! raw (still encoded) bytes up to the cap itself, then hands them to [`normalize`] as a
//! [`RawBody`]. Callers that hold the whole body in memory use [`RawBody::buffered`], which
//! applies the cap exactly as the proxy's read loop does.

use super::profile::{CompiledProfile, EnsureHeaders, ProblemDetail};
use super::response::{compose, decode, CanonicalResponse};
use super::trace::RuleTrace;
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
    normalize_traced(profile, canonical, route_ensure, facts, head, raw, format, None)
}

/// [`normalize`], recording each rule's outcome into `trace` when given (`explain --trace`,
/// the examples gate); the proxy passes none.
#[allow(clippy::too_many_arguments)]
pub fn normalize_traced<'p>(
    profile: &'p CompiledProfile,
    canonical: &'p CanonicalProfile,
    route_ensure: &'p EnsureHeaders,
    facts: &RequestFacts<'_>,
    head: &UpstreamHead<'_>,
    raw: RawBody<'_>,
    format: ProblemFormat,
    trace: Option<&mut RuleTrace>,
) -> Normalized<'p> {
    let decision = decide(
        profile,
        canonical,
        route_ensure,
        facts,
        head,
        raw,
        trace,
        ProblemDetail::Full,
    );
    let bodyless = is_bodyless(facts, head.status);
    let response = compose(&decision, head.status, head.headers, facts.request_id, format, bodyless);
    Normalized { decision, response }
}

/// The decision alone, with the problem worked out as far as `detail` asks: the same cap,
/// decode and rules as [`normalize`], nothing composed. A shadow comparison asks for
/// [`ProblemDetail::Outline`]: status, rule, problem type and header edits are exact, the
/// problem's templated members are not rendered.
#[allow(clippy::too_many_arguments)]
pub fn decide<'p>(
    profile: &'p CompiledProfile,
    canonical: &'p CanonicalProfile,
    route_ensure: &'p EnsureHeaders,
    facts: &RequestFacts<'_>,
    head: &UpstreamHead<'_>,
    raw: RawBody<'_>,
    trace: Option<&mut RuleTrace>,
    detail: ProblemDetail,
) -> Decision<'p> {
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
    profile.evaluate_with(canonical, route_ensure, facts, head, body, trace, detail)
}

#[cfg(test)]
mod tests {
    //! The proxy, `explain` and the examples gate agree: the proxy's read loop (chunks, the
    //! cap on the raw bytes) is mirrored by `proxy_reads`, `explain` and the examples use
    //! `RawBody::buffered`, and the examples gate is run on the same cases through `check_all`.

    use std::io::Write;
    use std::path::Path;

    use http::{HeaderMap, HeaderValue};

    use super::*;
    use crate::examples;
    use crate::response::CanonicalBody;
    use crate::testing::{canonical, compile, get_root};

    const CAP: usize = 64;
    /// 49 bytes: under the cap decoded, over it once gzip's framing (stored) is added.
    const THROTTLED: &str = r#"{"code":"slow","msg":"slow down, try again soon"}"#;

    fn profile_yaml(examples: &str) -> String {
        format!(
            "body_buffer: {CAP}\nrules:\n  - name: throttled\n    when:\n      status: 400\n      json: {{ /code: {{ equals: slow }} }}\n    then:\n      status: 429\n      problem: {{ detail: \"${{json:/msg}}\" }}\n{examples}"
        )
    }

    fn gzip_stored(b: &[u8]) -> Vec<u8> {
        let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        w.write_all(b).unwrap();
        w.finish().unwrap()
    }

    /// The proxy's loop in `respond()`: buffer chunks only when needed, stop past the cap.
    fn proxy_reads(need: BodyNeed, raw: &[u8]) -> RawBody<'_> {
        let BodyNeed::Buffer { cap } = need else {
            return RawBody::NotRead;
        };
        let mut len = 0;
        for chunk in raw.chunks(7) {
            len += chunk.len();
            if len > cap {
                return RawBody::OverCap;
            }
        }
        RawBody::Complete(raw)
    }

    struct Case {
        name: &'static str,
        method: &'static str,
        status: u16,
        encoding: Option<&'static str>,
        body: Vec<u8>,
        want_status: u16,
        want_rule: Option<&'static str>,
        want_skip: Option<BodySkip>,
        want_no_body: bool,
    }

    /// What a caller sees: status, rule, skip reason, body and headers.
    type Seen = (u16, Option<String>, Option<BodySkip>, CanonicalBody, HeaderMap);

    /// What the proxy and explain compute, in that order.
    fn both_ways(p: &CompiledProfile, c: &CanonicalProfile, case: &Case) -> [Seen; 2] {
        let req_headers = HeaderMap::new();
        let mut up_headers = HeaderMap::new();
        up_headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(e) = case.encoding {
            up_headers.insert(http::header::CONTENT_ENCODING, HeaderValue::from_static(e));
        }
        let facts = RequestFacts {
            method: case.method,
            path: "/",
            headers: &req_headers,
            request_id: "example",
        };
        let head = UpstreamHead {
            status: case.status,
            headers: &up_headers,
        };
        let ensure = EnsureHeaders::default();
        let need = body_need(p, &facts, &head);
        let run = |raw: RawBody<'_>| {
            let n = normalize(p, c, &ensure, &facts, &head, raw, format_for(&facts));
            (
                n.response.status,
                n.decision.rule.map(str::to_owned),
                n.decision.body_skip,
                n.response.body,
                n.response.headers,
            )
        };
        [
            run(proxy_reads(need, &case.body)),
            run(RawBody::buffered(need, &case.body)),
        ]
    }

    fn cases() -> Vec<Case> {
        let case = |name, method, status, encoding, body: Vec<u8>, want_status, want_rule, want_skip| Case {
            name,
            method,
            status,
            encoding,
            body,
            want_status,
            want_rule,
            want_skip,
            want_no_body: method == "HEAD" || status == 204,
        };
        vec![
            case(
                "matches",
                "GET",
                400,
                None,
                THROTTLED.into(),
                429,
                Some("throttled"),
                None,
            ),
            case(
                "drift",
                "GET",
                400,
                Some("gzip"),
                gzip_stored(THROTTLED.as_bytes()),
                400,
                None,
                Some(BodySkip::OverCap),
            ),
            case("bodyless", "GET", 204, None, Vec::new(), 204, None, None),
            case("head", "HEAD", 400, None, THROTTLED.into(), 400, None, None),
            case(
                "over-cap",
                "GET",
                400,
                None,
                vec![b' '; CAP + 1],
                400,
                None,
                Some(BodySkip::OverCap),
            ),
            case(
                "undecodable",
                "GET",
                400,
                Some("gzip"),
                b"{\"code\":\"slow\"}".to_vec(),
                400,
                None,
                Some(BodySkip::Undecodable),
            ),
        ]
    }

    fn example_yaml(case: &Case, rule: Option<&str>) -> String {
        let body = String::from_utf8(match case.encoding {
            Some(_) if case.name == "drift" => THROTTLED.as_bytes().to_vec(),
            _ => case.body.clone(),
        })
        .unwrap();
        let encoding = match (case.name, case.encoding) {
            ("drift", Some(e)) => format!(", encoding: {e}"),
            (_, Some(e)) => format!(", headers: {{ Content-Encoding: {e} }}"),
            (_, None) => String::new(),
        };
        format!(
            "  - name: {}\n    request: {{ method: {} }}\n    upstream: {{ status: {}, body: {:?}{encoding} }}\n    expect: {{ status: {}, rule: {} }}\n",
            case.name,
            case.method,
            case.status,
            body,
            case.want_status,
            rule.unwrap_or("none"),
        )
    }

    #[test]
    fn the_proxy_explain_and_the_examples_agree_on_every_body_case() {
        let c = canonical();
        let cases = cases();
        let examples: String = cases.iter().map(|k| example_yaml(k, k.want_rule)).collect();
        let (raw, p) = compile(&profile_yaml(&format!("examples:\n{examples}")));
        for case in &cases {
            let [proxy, explain] = both_ways(&p, &c, case);
            assert_eq!(proxy, explain, "{}: proxy and explain differ", case.name);
            assert_eq!(proxy.0, case.want_status, "{}", case.name);
            assert_eq!(proxy.1.as_deref(), case.want_rule, "{}", case.name);
            assert_eq!(proxy.2, case.want_skip, "{}", case.name);
            assert_eq!(proxy.3 == CanonicalBody::None, case.want_no_body, "{}", case.name);
        }
        let problems = examples::check_all(Path::new("p.yaml"), &p, &c, &raw.examples);
        assert!(problems.is_empty(), "the examples gate disagrees: {problems:?}");
    }

    #[test]
    fn a_gzip_example_over_the_cap_raw_but_under_it_decoded_fails_if_it_expects_the_rule() {
        let c = canonical();
        let drift = cases().into_iter().find(|k| k.name == "drift").unwrap();
        assert!(THROTTLED.len() <= CAP && drift.body.len() > CAP);
        let (raw, p) = compile(&profile_yaml(&format!(
            "examples:\n{}",
            example_yaml(&drift, Some("throttled"))
        )));
        let problems = examples::check_all(Path::new("p.yaml"), &p, &c, &raw.examples);
        assert_eq!(problems.len(), 1);
        assert_eq!(
            problems[0].to_string(),
            "p.yaml:11:11: example `drift` fails: rule `throttled` expected, `none` matched; trace: rule throttled: json /code: the body was not used (over_cap) | decision: no rule matched, canonical defaults -> 400 Bad Request"
        );
    }

    /// What a shadow comparison reads of an outline decision (status, rule, problem type,
    /// header edits, skip) is what the full decision says, on every body case; only the
    /// templated problem members are left out.
    #[test]
    fn an_outline_decision_agrees_with_the_full_one_on_what_a_comparison_reads() {
        let c = canonical();
        let (_, p) = compile(&format!(
            "{}      headers: {{ set: {{ X-Code: \"${{json:/code}}\" }} }}\n",
            profile_yaml("").trim_end_matches('\n').to_owned() + "\n"
        ));
        let req_headers = HeaderMap::new();
        let mut up_headers = HeaderMap::new();
        up_headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for case in cases() {
            let mut headers = up_headers.clone();
            if let Some(e) = case.encoding {
                headers.insert(http::header::CONTENT_ENCODING, HeaderValue::from_static(e));
            }
            let facts = RequestFacts {
                method: case.method,
                path: "/",
                headers: &req_headers,
                request_id: "example",
            };
            let head = UpstreamHead {
                status: case.status,
                headers: &headers,
            };
            let ensure = EnsureHeaders::default();
            let raw = RawBody::buffered(body_need(&p, &facts, &head), &case.body);
            let full = normalize(&p, &c, &ensure, &facts, &head, raw, ProblemFormat::Json).decision;
            let outline = decide(&p, &c, &ensure, &facts, &head, raw, None, ProblemDetail::Outline);
            let seen = |d: &Decision<'_>| {
                let kind = match &d.body {
                    crate::BodyPlan::Problem(b) => Some((b.type_uri.clone(), b.title.clone(), b.status, b.retryable)),
                    crate::BodyPlan::Passthrough => None,
                };
                (
                    d.status,
                    d.rule.map(str::to_owned),
                    d.headers.clone(),
                    d.body_skip,
                    kind,
                )
            };
            assert_eq!(seen(&outline), seen(&full), "{}", case.name);
            if let crate::BodyPlan::Problem(b) = &outline.body {
                assert_eq!(
                    (&b.detail, &b.vendor_code),
                    (&None, &None),
                    "{}: not rendered",
                    case.name
                );
            }
            if case.name == "matches" {
                assert_eq!(full.headers.len(), 1, "the rule's header edit is compared");
            }
        }
    }

    #[test]
    fn a_complete_body_over_the_cap_is_over_cap_even_when_handed_whole() {
        let c = canonical();
        let (_, p) = compile(&profile_yaml(""));
        let body = vec![b' '; CAP + 1];
        let h = HeaderMap::new();
        let facts = get_root(&h);
        let head = UpstreamHead {
            status: 400,
            headers: &h,
        };
        let ensure = EnsureHeaders::default();
        let n = normalize(
            &p,
            &c,
            &ensure,
            &facts,
            &head,
            RawBody::Complete(&body),
            ProblemFormat::Json,
        );
        assert_eq!(n.decision.body_skip, Some(BodySkip::OverCap));
    }
}
