//! Turning decisions into HTTP: the canonical response header built from the upstream's, the
//! problem bodies, and decoding of compressed upstream bodies for matching.

use std::borrow::Cow;
use std::io::Read;

use bytes::Bytes;
use http::header::{self, HeaderName};
use pingora::http::ResponseHeader;
use pingora::Result;

use crate::engine::{BodySkip, Decision, HeaderEdit, ProblemBody, ProblemFormat};

pub const X_UPSTREAM_STATUS: HeaderName = HeaderName::from_static("x-upstream-status");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_VENDOR_REQUEST_ID: HeaderName = HeaderName::from_static("x-vendor-request-id");

/// Connection-scoped headers that never cross the gateway (RFC 9110 section 7.6.1).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::UPGRADE
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || name == header::TRAILER
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
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

/// Decodes a body for matching; output is capped at `cap` bytes.
pub fn decode<'b>(content_encoding: Option<&str>, body: &'b [u8], cap: usize) -> Result<Cow<'b, [u8]>, BodySkip> {
    let enc = content_encoding.map(|e| e.trim().to_ascii_lowercase());
    let mut out = Vec::new();
    let limit = cap as u64 + 1;
    let res = match enc.as_deref() {
        None | Some("") | Some("identity") => return Ok(Cow::Borrowed(body)),
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

/// What goes after the header.
pub enum BodyOut {
    /// The upstream's bytes (already read ones first, then the rest streamed).
    Upstream,
    /// A replacement body.
    Replace(Bytes),
    None,
}

/// Builds the canonical response header from the upstream's and the decision.
pub fn canonical_header(
    upstream: &ResponseHeader,
    decision: &Decision<'_>,
    request_id: &str,
    format: ProblemFormat,
    bodyless: bool,
) -> Result<(ResponseHeader, BodyOut)> {
    let mut resp = ResponseHeader::build(decision.status, Some(upstream.headers.len() + 4))?;
    resp.set_reason_phrase(Some(decision.reason))?;
    for (name, value) in upstream.headers.iter() {
        if !is_hop_by_hop(name) && name != X_REQUEST_ID {
            resp.append_header(name.clone(), value.clone())?;
        }
    }
    if let Some(vendor_id) = upstream.headers.get(X_REQUEST_ID) {
        if vendor_id.as_bytes() != request_id.as_bytes() {
            resp.insert_header(X_VENDOR_REQUEST_ID, vendor_id.clone())?;
        }
    }
    for edit in &decision.headers {
        match edit {
            HeaderEdit::Set(n, v) => {
                resp.insert_header(n.clone(), v.clone())?;
            }
            HeaderEdit::Append(n, v) => {
                resp.append_header(n.clone(), v.clone())?;
            }
            HeaderEdit::Remove(n) => {
                resp.remove_header(n);
            }
        }
    }
    resp.insert_header(X_UPSTREAM_STATUS, upstream.status.as_u16())?;
    resp.insert_header(X_REQUEST_ID, request_id)?;
    let body = match &decision.body {
        crate::engine::BodyPlan::Problem(p) => replace_with_problem(&mut resp, p, format, bodyless)?,
        crate::engine::BodyPlan::Passthrough if bodyless => BodyOut::None,
        crate::engine::BodyPlan::Passthrough => {
            if resp.headers.get(header::CONTENT_LENGTH).is_none()
                && resp.headers.get(header::TRANSFER_ENCODING).is_none()
            {
                // Close-delimited upstream body: chunk it so the client connection stays reusable.
                resp.insert_header(header::TRANSFER_ENCODING, "chunked")?;
            }
            BodyOut::Upstream
        }
    };
    Ok((resp, body))
}

fn replace_with_problem(
    resp: &mut ResponseHeader,
    p: &ProblemBody,
    format: ProblemFormat,
    bodyless: bool,
) -> Result<BodyOut> {
    for h in &REPRESENTATION {
        resp.remove_header(h);
    }
    resp.insert_header(header::CONTENT_TYPE, format.content_type())?;
    if bodyless {
        return Ok(BodyOut::None);
    }
    let body = Bytes::from(p.render(format));
    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    Ok(BodyOut::Replace(body))
}

/// A complete gateway-made error response.
pub fn problem_response(
    p: &ProblemBody,
    reason: &str,
    format: ProblemFormat,
    bodyless: bool,
) -> Result<(ResponseHeader, Bytes)> {
    let mut resp = ResponseHeader::build(p.status, Some(4))?;
    resp.set_reason_phrase(Some(reason))?;
    resp.insert_header(header::CONTENT_TYPE, format.content_type())?;
    resp.insert_header(header::CACHE_CONTROL, "no-store")?;
    resp.insert_header(X_REQUEST_ID, p.request_id.as_str())?;
    let body = Bytes::from(p.render(format));
    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    Ok((resp, if bodyless { Bytes::new() } else { body }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
        assert_eq!(&*decode(None, b"raw", 1).unwrap(), b"raw");
    }
}
