//! The engine's canonical response, as pingora's `ResponseHeader`.

use pingora::http::ResponseHeader;
use pingora::Result;

use crate::engine::response::CanonicalResponse;

pub use crate::engine::response::{is_hop_by_hop, X_REQUEST_ID};

pub fn to_pingora(resp: &CanonicalResponse<'_>) -> Result<ResponseHeader> {
    // No case map: the names are HeaderMap's (lower case) and sent as they are.
    let mut h = ResponseHeader::build_no_case(resp.status, Some(resp.headers.len()))?;
    h.set_reason_phrase(Some(resp.reason))?;
    for (name, value) in resp.headers.iter() {
        // Iteration yields every value of a repeated field; append keeps them all.
        h.append_header(name.clone(), value.clone())?;
    }
    Ok(h)
}
