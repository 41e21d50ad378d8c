//! One ordered place that maps what went wrong to the failure the gateway answers itself
//! (linkerd's "rescue" table): the client's unreadable requests, and everything that kept an
//! upstream from giving a complete response. Timeouts are 504, the gateway's own resource
//! exhaustion 503, everything else the upstream did 502.

use pingora::{Error, ErrorType};

use crate::engine::GatewayFailure;

/// A request header pingora could not read: 431 when too large, else 400; `None` when the
/// client is simply gone (nobody to answer).
pub fn refusal(e: &Error) -> Option<GatewayFailure> {
    match e.etype() {
        // pingora gives no type of its own to "too large"; its message is the only sign.
        ErrorType::InvalidHTTPHeader if e.to_string().contains("larger than") => Some(GatewayFailure::HeaderTooLarge),
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error => Some(GatewayFailure::BadRequest),
        _ => None,
    }
}

/// Whether an error is the gateway running out of file descriptors (EMFILE / ENFILE). pingora
/// nests its errors as boxed causes (`root_cause` unwraps them); below that, std's `source`.
fn fd_exhausted(e: &Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e.root_cause());
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc_emfile::EMFILE | libc_emfile::ENFILE)) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

/// errno values (Linux and the BSDs agree on these two).
mod libc_emfile {
    pub const ENFILE: i32 = 23;
    pub const EMFILE: i32 = 24;
}

/// Classifies a pingora error raised while connecting, sending, or reading the response header.
pub fn classify(e: &Error) -> GatewayFailure {
    use ErrorType::*;
    if fd_exhausted(e) {
        return GatewayFailure::FdExhausted;
    }
    match e.etype() {
        ConnectTimedout | TLSHandshakeTimedout => GatewayFailure::ConnectTimeout,
        ReadTimedout => GatewayFailure::ResponseTimeout,
        WriteTimedout => GatewayFailure::UpstreamWriteTimeout,
        ConnectRefused | ConnectNoRoute | ConnectError | BindError | SocketError | ConnectProxyFailure => {
            GatewayFailure::UpstreamRefused
        }
        TLSWantX509Lookup | TLSHandshakeFailure | InvalidCert | HandshakeError => GatewayFailure::Tls,
        ConnectionClosed => GatewayFailure::UpstreamClosed,
        ReadError | WriteError => {
            // A peer that closes cleanly mid-header shows as a read of 0 bytes on some paths;
            // pingora types it as a read error with "closed" in its message.
            if e.to_string().contains("closed") {
                GatewayFailure::UpstreamClosed
            } else {
                GatewayFailure::UpstreamReset
            }
        }
        _ => GatewayFailure::InvalidResponse,
    }
}

/// Classifies an error raised while reading a response body a rule needs.
pub fn classify_body(e: &Error) -> GatewayFailure {
    match e.etype() {
        ErrorType::ReadTimedout => GatewayFailure::UpstreamBodyTimeout,
        _ => classify(e),
    }
}

/// Whether the failure says something about the upstream address (passive health): the
/// gateway's own exhaustion does not.
pub fn marks_down(f: GatewayFailure) -> bool {
    !matches!(f, GatewayFailure::FdExhausted | GatewayFailure::UpstreamConnectionLimit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_504_and_the_rest_502() {
        for (t, want) in [
            (ErrorType::ConnectTimedout, 504),
            (ErrorType::ReadTimedout, 504),
            (ErrorType::WriteTimedout, 504),
            (ErrorType::ConnectRefused, 502),
            (ErrorType::TLSHandshakeFailure, 502),
            (ErrorType::ConnectionClosed, 502),
            (ErrorType::InvalidHTTPHeader, 502),
        ] {
            assert_eq!(classify(&Error::new(t.clone())).status(), want, "{t:?}");
        }
    }

    #[test]
    fn fd_exhaustion_is_the_gateways_own_503() {
        let emfile = std::io::Error::from_raw_os_error(24);
        let e = Error::because(ErrorType::ConnectError, "connecting", emfile);
        assert_eq!(classify(&e), GatewayFailure::FdExhausted);
        // As pingora's connector wraps it: a socket error inside an internal error.
        let inner = Error::because(
            ErrorType::SocketError,
            "failed to create socket",
            std::io::Error::from_raw_os_error(24),
        );
        let e = Error::because(ErrorType::InternalError, "Fail to connect", inner);
        assert_eq!(classify(&e), GatewayFailure::FdExhausted);
        assert_eq!(classify(&e).status(), 503);
        assert!(!marks_down(classify(&e)));
        let refused = std::io::Error::from_raw_os_error(111);
        let e = Error::because(ErrorType::ConnectRefused, "connecting", refused);
        assert_eq!(classify(&e), GatewayFailure::UpstreamRefused);
    }

    #[test]
    fn request_read_errors() {
        let big = Error::explain(ErrorType::InvalidHTTPHeader, "Request header larger than 1048575");
        assert_eq!(refusal(&big), Some(GatewayFailure::HeaderTooLarge));
        assert_eq!(
            refusal(&Error::new(ErrorType::InvalidHTTPHeader)),
            Some(GatewayFailure::BadRequest)
        );
        assert_eq!(refusal(&Error::new(ErrorType::ReadError)), None);
    }
}
