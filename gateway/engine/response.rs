//! Composing the canonical response: status line, headers and body plan, from the upstream's
//! header and the decision; and decoding a body for matching. Pure: `pipeline::normalize`
//! calls both for the proxy, `explain` and the profile examples alike.

use std::borrow::Cow;
use std::io::Read;
use std::sync::OnceLock;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::{BodyPlan, BodySkip, Decision, HeaderEdit, ProblemBody, ProblemFormat};

pub const X_UPSTREAM_STATUS: HeaderName = HeaderName::from_static("x-upstream-status");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_VENDOR_REQUEST_ID: HeaderName = HeaderName::from_static("x-vendor-request-id");

/// Connection-scoped fields that never cross the gateway, either way (RFC 9110 section 7.6.1).
pub const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::TE,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRAILER,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Headers that describe the upstream's representation and so go when the body is replaced.
const REPRESENTATION: [HeaderName; 9] = [
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CONTENT_TYPE,
    header::CONTENT_RANGE,
    header::CONTENT_LANGUAGE,
    header::ETAG,
    header::LAST_MODIFIED,
    header::ACCEPT_RANGES,
    header::TRANSFER_ENCODING,
];

/// What follows the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanonicalBody {
    /// The upstream's bytes, unchanged.
    Upstream,
    /// A replacement (problem) body.
    Replace(Vec<u8>),
    /// Nothing (HEAD, 204, 304).
    None,
}

#[derive(Debug, Clone)]
pub struct CanonicalResponse<'p> {
    pub status: u16,
    pub reason: &'p str,
    pub headers: HeaderMap,
    pub body: CanonicalBody,
}

/// The canonical response for an upstream response the engine decided on.
pub fn compose<'p>(
    decision: &Decision<'p>,
    upstream_status: u16,
    upstream: &HeaderMap,
    request_id: &str,
    format: ProblemFormat,
    bodyless: bool,
) -> CanonicalResponse<'p> {
    let mut headers = HeaderMap::with_capacity(upstream.len() + 4);
    // A replaced body takes none of the upstream's representation fields: they are left out
    // here rather than removed afterwards (one hash per field saved on the error path).
    let replacing = matches!(decision.body, BodyPlan::Problem(_));
    for (name, value) in upstream.iter() {
        if !is_hop_by_hop(name) && name != X_REQUEST_ID && !(replacing && REPRESENTATION.contains(name)) {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Some(vendor_id) = upstream.get(X_REQUEST_ID) {
        if vendor_id.as_bytes() != request_id.as_bytes() {
            headers.insert(X_VENDOR_REQUEST_ID, vendor_id.clone());
        }
    }
    for edit in &decision.headers {
        match edit {
            HeaderEdit::Set(n, v) => {
                headers.insert(n.clone(), v.clone());
            }
            HeaderEdit::Append(n, v) => {
                headers.append(n.clone(), v.clone());
            }
            HeaderEdit::Remove(n) => {
                headers.remove(n);
            }
        }
    }
    headers.insert(X_UPSTREAM_STATUS, status_value(upstream_status));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    let body = match &decision.body {
        BodyPlan::Problem(p) => {
            let edits_representation = decision.headers.iter().any(|e| match e {
                HeaderEdit::Set(n, _) | HeaderEdit::Append(n, _) => REPRESENTATION.contains(n),
                HeaderEdit::Remove(_) => false,
            });
            replace_with_problem(&mut headers, edits_representation, p, format, bodyless)
        }
        BodyPlan::Passthrough if bodyless => CanonicalBody::None,
        BodyPlan::Passthrough => {
            if !headers.contains_key(header::CONTENT_LENGTH) && !headers.contains_key(header::TRANSFER_ENCODING) {
                // Close-delimited upstream body: chunk it so the client connection stays reusable.
                headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            }
            CanonicalBody::Upstream
        }
    };
    CanonicalResponse {
        status: decision.status,
        reason: decision.reason,
        headers,
        body,
    }
}

/// A status code as a header value (`X-Upstream-Status`). The values for 100-599 are made once:
/// cloning one costs a reference count, making one an allocation and a number format.
pub fn status_value(status: u16) -> HeaderValue {
    static VALUES: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    match status {
        100..=599 => {
            VALUES.get_or_init(|| (100..=599u16).map(HeaderValue::from).collect())[usize::from(status - 100)].clone()
        }
        _ => HeaderValue::from(status),
    }
}

fn replace_with_problem(
    headers: &mut HeaderMap,
    edits_representation: bool,
    p: &ProblemBody,
    format: ProblemFormat,
    bodyless: bool,
) -> CanonicalBody {
    // Only a rule's own header edits can have brought representation fields back.
    if edits_representation {
        for h in &REPRESENTATION {
            headers.remove(h);
        }
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    if bodyless {
        return CanonicalBody::None;
    }
    let body = p.render(format);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    CanonicalBody::Replace(body)
}

/// The header fields of the `101 Switching Protocols` a client gets when its upgrade was
/// accepted upstream: the upstream's fields (Sec-WebSocket-Accept, Sec-WebSocket-Protocol, ...)
/// less the hop-by-hop and body-framing ones, then `Connection: upgrade` and the upstream's
/// `Upgrade` (the protocol it switched to), with the request ids and `X-Upstream-Status` as on
/// every upstream-answered response. No rule applies to a 101: it carries no body to rewrite
/// and a changed status would break the protocol switch.
pub fn compose_switch(upstream: &HeaderMap, request_id: &str) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(upstream.len() + 4);
    let named: Vec<&str> = upstream
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for (name, value) in upstream.iter() {
        let framing = *name == header::CONTENT_LENGTH || *name == header::TRANSFER_ENCODING;
        let listed = named.iter().any(|n| n.eq_ignore_ascii_case(name.as_str()));
        if !is_hop_by_hop(name) && !framing && !listed && name != X_REQUEST_ID {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    for value in upstream.get_all(header::UPGRADE) {
        headers.append(header::UPGRADE, value.clone());
    }
    if let Some(vendor_id) = upstream.get(X_REQUEST_ID) {
        if vendor_id.as_bytes() != request_id.as_bytes() {
            headers.insert(X_VENDOR_REQUEST_ID, vendor_id.clone());
        }
    }
    headers.insert(X_UPSTREAM_STATUS, HeaderValue::from(101u16));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    headers
}

/// A complete response for an error the gateway answers itself, with `Retry-After` when the
/// canonical profile gives one (`CanonicalProfile::gateway_retry_after`).
pub fn compose_gateway<'p>(
    p: &ProblemBody,
    reason: &'p str,
    retry_after: Option<&HeaderValue>,
    format: ProblemFormat,
    bodyless: bool,
) -> CanonicalResponse<'p> {
    let mut headers = HeaderMap::with_capacity(5);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(v) = retry_after {
        headers.insert(header::RETRY_AFTER, v.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&p.request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    let body = p.render(format);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let body = if bodyless {
        CanonicalBody::None
    } else {
        CanonicalBody::Replace(body)
    };
    CanonicalResponse {
        status: p.status,
        reason,
        headers,
        body,
    }
}

/// Decodes an upstream body for matching (gzip, deflate); the output is capped at `cap` bytes.
pub fn decode<'b>(content_encoding: Option<&str>, body: &'b [u8], cap: usize) -> Result<Cow<'b, [u8]>, BodySkip> {
    let enc = content_encoding.map(|e| e.trim().to_ascii_lowercase());
    let mut out = Vec::new();
    let limit = cap as u64 + 1;
    let res = match enc.as_deref() {
        None | Some("") | Some("identity") => {
            return if body.len() > cap {
                Err(BodySkip::OverCap)
            } else {
                Ok(Cow::Borrowed(body))
            }
        }
        Some("gzip") | Some("x-gzip") => flate2::read::MultiGzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out),
        Some("deflate") => {
            let zlib = flate2::read::ZlibDecoder::new(body).take(limit).read_to_end(&mut out);
            if zlib.is_err() {
                out.clear();
                flate2::read::DeflateDecoder::new(body)
                    .take(limit)
                    .read_to_end(&mut out)
            } else {
                zlib
            }
        }
        Some(_) => return Err(BodySkip::UnsupportedEncoding),
    };
    match res {
        Ok(_) if out.len() > cap => Err(BodySkip::OverCap),
        Ok(_) => Ok(Cow::Owned(out)),
        Err(_) => Err(BodySkip::Undecodable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_switch_keeps_the_protocol_fields_and_drops_the_connection_scoped_ones() {
        let mut up = HeaderMap::new();
        up.insert(header::CONNECTION, HeaderValue::from_static("Upgrade, X-Hop"));
        up.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        up.insert(
            "sec-websocket-accept",
            HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        );
        up.insert("x-hop", HeaderValue::from_static("1"));
        up.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        up.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        up.insert(X_REQUEST_ID, HeaderValue::from_static("vendor-1"));
        let h = compose_switch(&up, "gw-1");
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(h[X_REQUEST_ID], "gw-1");
        assert_eq!(h[X_VENDOR_REQUEST_ID], "vendor-1");
        assert_eq!(h[X_UPSTREAM_STATUS], "101");
        for gone in ["x-hop", "keep-alive", "content-length"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
    }

    fn decision(body: BodyPlan) -> Decision<'static> {
        Decision {
            status: 429,
            reason: "Too Many Requests",
            rule: Some("r"),
            rule_index: Some(0),
            headers: vec![HeaderEdit::Set(header::RETRY_AFTER, HeaderValue::from_static("1"))],
            body,
            body_skip: None,
            redactions: 0,
        }
    }

    fn upstream() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(header::ETAG, HeaderValue::from_static("\"e\""));
        h.insert(X_REQUEST_ID, HeaderValue::from_static("vendor-1"));
        h
    }

    #[test]
    fn compose_drops_hop_by_hop_keeps_the_vendor_id_and_chunks_a_close_delimited_body() {
        let r = compose(
            &decision(BodyPlan::Passthrough),
            400,
            &upstream(),
            "gw-1",
            ProblemFormat::Json,
            false,
        );
        assert_eq!((r.status, r.reason), (429, "Too Many Requests"));
        assert!(r.headers.get(header::CONNECTION).is_none());
        assert_eq!(r.headers[X_REQUEST_ID], "gw-1");
        assert_eq!(r.headers[X_VENDOR_REQUEST_ID], "vendor-1");
        assert_eq!(r.headers[X_UPSTREAM_STATUS], "400");
        assert_eq!(r.headers[header::RETRY_AFTER], "1");
        assert_eq!(r.headers[header::TRANSFER_ENCODING], "chunked");
        assert_eq!(r.body, CanonicalBody::Upstream);
    }

    #[test]
    fn compose_replaces_the_representation_with_a_problem_and_keeps_bodyless_bodyless() {
        let p = ProblemBody {
            type_uri: "urn:t".into(),
            title: "t".into(),
            status: 429,
            detail: None,
            instance: None,
            upstream_status: Some(400),
            vendor_code: None,
            request_id: "gw-1".into(),
            vendor_request_id: None,
            origin: crate::Origin::Upstream,
            retryable: false,
            extensions: Vec::new(),
        };
        let plan = BodyPlan::Problem(Box::new(p));
        let r = compose(
            &decision(plan.clone()),
            400,
            &upstream(),
            "gw-1",
            ProblemFormat::Json,
            false,
        );
        assert!(r.headers.get(header::ETAG).is_none());
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
        let CanonicalBody::Replace(body) = &r.body else {
            panic!("{:?}", r.body)
        };
        assert_eq!(r.headers[header::CONTENT_LENGTH], body.len().to_string().as_str());
        let head = compose(&decision(plan), 400, &upstream(), "gw-1", ProblemFormat::Json, true);
        assert_eq!(head.body, CanonicalBody::None);
        assert_eq!(head.headers[header::CONTENT_TYPE], "application/problem+json");
    }

    #[test]
    fn status_values_are_the_numbers_inside_the_table_and_out() {
        for s in [0u16, 99, 100, 101, 200, 429, 599, 600, 999, 65535] {
            assert_eq!(status_value(s), HeaderValue::from(s), "{s}");
            assert_eq!(status_value(s).to_str().unwrap(), s.to_string());
        }
    }

    #[test]
    fn decodes_gzip_and_deflate_with_a_cap() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"{\"a\":1}").unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(&*decode(Some("gzip"), &gz, 100).unwrap(), b"{\"a\":1}");
        assert_eq!(decode(Some("gzip"), &gz, 3).unwrap_err(), BodySkip::OverCap);
        assert_eq!(decode(Some("gzip"), b"nope", 100).unwrap_err(), BodySkip::Undecodable);
        assert_eq!(
            decode(Some("br"), b"x", 100).unwrap_err(),
            BodySkip::UnsupportedEncoding
        );
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"hi").unwrap();
        assert_eq!(&*decode(Some("deflate"), &z.finish().unwrap(), 100).unwrap(), b"hi");
        assert_eq!(&*decode(None, b"raw", 10).unwrap(), b"raw");
        assert_eq!(decode(None, b"raw", 1).unwrap_err(), BodySkip::OverCap);
    }

    fn problem_decision(headers: Vec<HeaderEdit>) -> Decision<'static> {
        Decision {
            status: 429,
            reason: "Too Many Requests",
            rule: Some("r"),
            rule_index: Some(0),
            headers,
            body: BodyPlan::Problem(Box::new(ProblemBody {
                type_uri: "about:blank".into(),
                title: "Too Many Requests".into(),
                status: 429,
                detail: None,
                instance: None,
                upstream_status: Some(400),
                vendor_code: None,
                request_id: "r1".into(),
                vendor_request_id: None,
                origin: crate::Origin::Upstream,
                retryable: false,
                extensions: Vec::new(),
            })),
            body_skip: None,
            redactions: 0,
        }
    }

    #[test]
    fn a_replaced_body_keeps_no_representation_field_whether_upstream_or_rule_set() {
        let mut up = HeaderMap::new();
        for (k, v) in [
            ("content-type", "application/json"),
            ("content-length", "80"),
            ("content-encoding", "gzip"),
            ("etag", "\"v1\""),
            ("x-vendor", "kept"),
        ] {
            up.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let set_language = vec![HeaderEdit::Set(
            header::CONTENT_LANGUAGE,
            HeaderValue::from_static("de"),
        )];
        for edits in [Vec::new(), set_language] {
            let d = problem_decision(edits);
            let r = compose(&d, 400, &up, "r1", ProblemFormat::Json, false);
            assert_eq!(r.headers.get(header::CONTENT_TYPE).unwrap(), "application/problem+json");
            let CanonicalBody::Replace(body) = &r.body else {
                panic!("replaced")
            };
            assert_eq!(r.headers.get(header::CONTENT_LENGTH).unwrap(), &body.len().to_string());
            for gone in [header::CONTENT_ENCODING, header::ETAG, header::CONTENT_LANGUAGE] {
                assert!(r.headers.get(&gone).is_none(), "{gone}");
            }
            assert_eq!(r.headers.get("x-vendor").unwrap(), "kept");
        }
    }
}
