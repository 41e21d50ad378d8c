//! The engine's canonical response, as pingora's `ResponseHeader`.

use http::{HeaderMap, StatusCode};
use pingora::http::ResponseHeader;
use pingora::Result;

pub use crate::engine::response::X_REQUEST_ID;

/// Moves the composed header map into pingora's header (no field is copied again). No case map:
/// the names are HeaderMap's (lower case) and go out as they are.
pub fn to_pingora(status: u16, reason: &str, headers: HeaderMap) -> Result<ResponseHeader> {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = StatusCode::from_u16(status)
        .map_err(|e| pingora::Error::because(pingora::ErrorType::InternalError, "status", e))?;
    parts.headers = headers;
    let mut h = ResponseHeader::from(parts);
    h.set_reason_phrase(Some(reason))?;
    Ok(h)
}
