//! One ordered place that maps what went wrong with an upstream to the failure the gateway
//! answers itself (linkerd's "rescue" table): timeouts are 504, everything else that kept the
//! upstream from giving a complete response header is 502.

use pingora::{Error, ErrorType};

use crate::engine::GatewayFailure;

/// Classifies a pingora error raised while connecting, sending, or reading the response header.
pub fn classify(e: &Error) -> GatewayFailure {
    use ErrorType::*;
    match e.etype() {
        ConnectTimedout | TLSHandshakeTimedout => GatewayFailure::ConnectTimeout,
        ReadTimedout | WriteTimedout => GatewayFailure::ResponseTimeout,
        ConnectRefused | ConnectNoRoute | ConnectError | BindError | SocketError | ConnectProxyFailure => {
            GatewayFailure::UpstreamRefused
        }
        TLSWantX509Lookup | TLSHandshakeFailure | InvalidCert | HandshakeError => GatewayFailure::Tls,
        ConnectionClosed => GatewayFailure::UpstreamClosed,
        ReadError | WriteError => {
            // A peer that closes cleanly mid-header shows as a read of 0 bytes on some paths.
            if e.to_string().contains("closed") {
                GatewayFailure::UpstreamClosed
            } else {
                GatewayFailure::UpstreamReset
            }
        }
        InvalidHTTPHeader | H1Error | H2Error | InvalidH2 | H2Downgrade => GatewayFailure::InvalidResponse,
        _ => GatewayFailure::InvalidResponse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_504_and_the_rest_502() {
        for (t, want) in [
            (ErrorType::ConnectTimedout, 504),
            (ErrorType::ReadTimedout, 504),
            (ErrorType::ConnectRefused, 502),
            (ErrorType::TLSHandshakeFailure, 502),
            (ErrorType::ConnectionClosed, 502),
            (ErrorType::InvalidHTTPHeader, 502),
        ] {
            assert_eq!(classify(&Error::new(t.clone())).status(), want, "{t:?}");
        }
    }
}
