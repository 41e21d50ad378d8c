//! The one failure table (linkerd's "rescue"): every way a request can go wrong before its
//! response header is out, whether a refusal the gateway decides or a pingora error, maps here,
//! in `rescue`, to the failure kind the gateway answers (its status and problem type come from
//! `GatewayFailure`) and to whether the client connection can be reused afterwards. Timeouts
//! are 504, the gateway's own resource exhaustion 503, everything else the upstream did 502.
//!
//! pingora errors are matched by their `ErrorType` wherever pingora has one. It has none for
//! three cases, matched here and nowhere else: a request header over pingora's buffer is an
//! `InvalidHTTPHeader` whose message says "larger than"; a bad request-body chunk is
//! `Custom("InvalidChunk")` (pingora-core's crate-private `INVALID_CHUNK`); and a peer that
//! closes cleanly mid-header is, on some paths, a read or write error whose message says
//! "closed". A TLS alert after the handshake (TLS 1.3: the upstream refuses the client
//! certificate only once the client's side of the handshake is done) is a read error whose
//! cause is rustls's error: matched by type, it is the gateway's `tls` failure.

use pingora::{Error, ErrorType};

use crate::engine::GatewayFailure;

/// Everything that can keep a request from an upstream response, before the header is out.
#[derive(Debug, Clone, Copy)]
pub enum Trouble<'e> {
    /// pingora could not read the request header.
    UnreadableHeader(&'e Error),
    /// The request header did not arrive within `client_header_timeout`.
    ClientHeaderTimeout,
    /// The listener is at `limits.client_connections`.
    ClientConnectionLimit,
    /// The header fields exceed `limits.request_header`.
    HeaderTooLarge,
    /// HTTP/1.1 without Host (RFC 9112 section 3.2).
    MissingHost,
    /// CONNECT, or a target that is not origin- or absolute-form.
    MethodRefused,
    /// An `Expect` other than `100-continue`.
    UnmetExpectation,
    /// An upgrade request for protocols its route does not forward (the outcome's `upgrade`
    /// names them, for the detail); the bytes after its header cannot be trusted, so the
    /// connection closes.
    UpgradeRefused,
    /// An upgrade request that declares a body: nothing after its header is read before the
    /// upstream's 101, so it cannot be forwarded.
    UpgradeWithBody,
    /// The target is ambiguous or leaves its route.
    BadTarget,
    NoRoute,
    /// Content-Length over `limits.request_body`.
    DeclaredBodyTooLarge,
    /// The upstream request could not be built from the client's.
    UnbuildableRequest,
    /// The group is at `max_connections`.
    UpstreamConnectionLimit,
    /// Every address of the group is marked down.
    NoUpstream,
    /// The group has no address at all (its host names never resolved, or stale too long).
    NoAddress,
    /// Connecting to an address failed (the last one tried, when it blames the address).
    Connect(&'e Error),
    /// Writing the request or reading the response header failed.
    Send {
        error: &'e Error,
        body_sent: bool,
    },
    /// No response header within `response_timeout`.
    ResponseDeadline {
        body_sent: bool,
    },
    /// The request body grew past `limits.request_body`.
    RequestBodyTooLarge,
    /// Reading the client's request body failed.
    ClientBody(&'e Error),
    /// The upstream session has no response header.
    NoResponseHeader,
    /// A 101 the client did not ask for (no upgrade was forwarded), or one naming a protocol
    /// that was not offered.
    UnsolicitedSwitch,
    /// Reading a body a rule needs failed.
    Body(&'e Error),
    /// A body a rule needs did not arrive within `body_deadline`.
    BodyDeadline,
    /// The composed response header is not valid HTTP.
    UnwritableHeader,
}

/// What to do about a `Trouble`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rescue {
    /// Answer `failure` with its problem body; `reuse`: the client connection can serve its
    /// next request afterwards (false when its request body is left unread or half sent).
    Answer { failure: GatewayFailure, reuse: bool },
    /// Nobody to answer (the client is gone): close.
    HangUp,
}

impl Rescue {
    /// Whether the failure blames the upstream address (passive health): the gateway's own
    /// exhaustion does not.
    pub fn marks_down(self) -> bool {
        matches!(self, Rescue::Answer { failure, .. } if marks_down(failure))
    }
}

const fn answer(failure: GatewayFailure, reuse: bool) -> Rescue {
    Rescue::Answer { failure, reuse }
}

/// The table.
pub fn rescue(t: Trouble<'_>) -> Rescue {
    use GatewayFailure as F;
    match t {
        Trouble::UnreadableHeader(e) => match e.etype() {
            ErrorType::InvalidHTTPHeader if e.to_string().contains("larger than") => answer(F::HeaderTooLarge, false),
            ErrorType::InvalidHTTPHeader | ErrorType::H1Error => answer(F::BadRequest, false),
            _ => Rescue::HangUp,
        },
        Trouble::ClientHeaderTimeout => answer(F::ClientHeaderTimeout, false),
        Trouble::ClientConnectionLimit => answer(F::ClientConnectionLimit, false),
        Trouble::HeaderTooLarge => answer(F::HeaderTooLarge, false),
        Trouble::MissingHost => answer(F::BadRequest, false),
        Trouble::MethodRefused => answer(F::MethodNotAllowed, false),
        // The body (if any) was not read: the connection closes.
        Trouble::UnmetExpectation => answer(F::ExpectationFailed, false),
        Trouble::UpgradeRefused => answer(F::UpgradeRefused, false),
        Trouble::UpgradeWithBody => answer(F::BadRequest, false),
        Trouble::BadTarget => answer(F::BadTarget, false),
        Trouble::NoRoute => answer(F::NoRoute, true),
        Trouble::DeclaredBodyTooLarge => answer(F::RequestTooLarge, false),
        Trouble::UnbuildableRequest => answer(F::BadRequest, false),
        Trouble::UpstreamConnectionLimit => answer(F::UpstreamConnectionLimit, false),
        Trouble::NoUpstream => answer(F::NoUpstream, true),
        Trouble::NoAddress => answer(F::NoUpstreamAddress, true),
        Trouble::Connect(e) => {
            let failure = classify(e);
            answer(failure, marks_down(failure))
        }
        Trouble::Send { error, body_sent } => answer(classify(error), !body_sent),
        Trouble::ResponseDeadline { body_sent } => answer(F::ResponseTimeout, !body_sent),
        Trouble::RequestBodyTooLarge => answer(F::RequestTooLarge, false),
        Trouble::ClientBody(e) => match e.etype() {
            // A malformed body (bad chunk framing) is the client's mistake: 400. Anything else
            // (reset) means it is gone: nobody to answer.
            ErrorType::InvalidHTTPHeader | ErrorType::H1Error | ErrorType::Custom("InvalidChunk") => {
                answer(F::BadRequest, false)
            }
            ErrorType::ReadTimedout => answer(F::ClientBodyTimeout, false),
            _ => Rescue::HangUp,
        },
        Trouble::NoResponseHeader | Trouble::UnsolicitedSwitch => answer(F::InvalidResponse, true),
        Trouble::Body(e) => match e.etype() {
            ErrorType::ReadTimedout => answer(F::UpstreamBodyTimeout, true),
            _ => answer(classify(e), true),
        },
        Trouble::BodyDeadline => answer(F::BodyDeadline, true),
        Trouble::UnwritableHeader => answer(F::InvalidResponse, false),
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

/// Whether a read or write failed on a TLS error (rustls's, inside the I/O error): over TLS 1.3
/// the client's handshake ends before the server has checked the client certificate, so an
/// upstream refusing it (alert `certificate_required`, `unknown_ca`, ...) shows up on the first
/// read after the request was sent, as a `ReadError`, not as a handshake failure.
fn tls_refused(e: &Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e.root_cause());
    while let Some(c) = cause {
        if c.downcast_ref::<pingora::tls::RusTlsError>().is_some() {
            return true;
        }
        if let Some(inner) = c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            if inner.downcast_ref::<pingora::tls::RusTlsError>().is_some() {
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

/// A pingora error raised while connecting, sending, or reading the response header.
fn classify(e: &Error) -> GatewayFailure {
    use ErrorType::*;
    if fd_exhausted(e) {
        return GatewayFailure::FdExhausted;
    }
    if tls_refused(e) {
        return GatewayFailure::Tls;
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
        ReadError | WriteError if e.to_string().contains("closed") => GatewayFailure::UpstreamClosed,
        ReadError | WriteError => GatewayFailure::UpstreamReset,
        _ => GatewayFailure::InvalidResponse,
    }
}

fn marks_down(f: GatewayFailure) -> bool {
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
    fn a_tls_alert_on_a_read_is_the_gateways_502_tls() {
        let alert = pingora::tls::RusTlsError::NoCertificatesPresented;
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, alert);
        let e = Error::because(ErrorType::ReadError, "while reading", io);
        assert_eq!(classify(&e), GatewayFailure::Tls);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let e = Error::because(ErrorType::ReadError, "while reading", reset);
        assert_eq!(classify(&e), GatewayFailure::UpstreamReset);
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
        assert!(!rescue(Trouble::Connect(&e)).marks_down());
        let refused = std::io::Error::from_raw_os_error(111);
        let e = Error::because(ErrorType::ConnectRefused, "connecting", refused);
        assert_eq!(classify(&e), GatewayFailure::UpstreamRefused);
    }

    #[test]
    fn request_read_errors() {
        let big = Error::explain(ErrorType::InvalidHTTPHeader, "Request header larger than 1048575");
        assert_eq!(
            rescue(Trouble::UnreadableHeader(&big)),
            answer(GatewayFailure::HeaderTooLarge, false)
        );
        assert_eq!(
            rescue(Trouble::UnreadableHeader(&Error::new(ErrorType::InvalidHTTPHeader))),
            answer(GatewayFailure::BadRequest, false)
        );
        assert_eq!(
            rescue(Trouble::UnreadableHeader(&Error::new(ErrorType::ReadError))),
            Rescue::HangUp
        );
    }

    #[test]
    fn a_request_body_half_sent_upstream_closes_the_client_connection_and_one_not_sent_keeps_it() {
        let e = Error::new(ErrorType::ConnectionClosed);
        assert_eq!(
            rescue(Trouble::Send {
                error: &e,
                body_sent: true
            }),
            answer(GatewayFailure::UpstreamClosed, false)
        );
        assert_eq!(
            rescue(Trouble::Send {
                error: &e,
                body_sent: false
            }),
            answer(GatewayFailure::UpstreamClosed, true)
        );
    }

    #[test]
    fn a_bad_chunk_is_a_400_a_stalled_body_a_408_and_a_reset_a_hang_up() {
        let chunk = Error::new(ErrorType::Custom("InvalidChunk"));
        assert_eq!(
            rescue(Trouble::ClientBody(&chunk)),
            answer(GatewayFailure::BadRequest, false)
        );
        let slow = Error::new(ErrorType::ReadTimedout);
        assert_eq!(
            rescue(Trouble::ClientBody(&slow)),
            answer(GatewayFailure::ClientBodyTimeout, false)
        );
        assert_eq!(
            rescue(Trouble::ClientBody(&Error::new(ErrorType::ReadError))),
            Rescue::HangUp
        );
    }

    #[test]
    fn a_refused_upgrade_is_the_clients_403_and_closes_the_connection() {
        let r = rescue(Trouble::UpgradeRefused);
        assert_eq!(r, answer(GatewayFailure::UpgradeRefused, false));
        assert_eq!(GatewayFailure::UpgradeRefused.status(), 403);
        assert!(!GatewayFailure::UpgradeRefused.is_upstream());
        assert_eq!(
            rescue(Trouble::UpgradeWithBody),
            answer(GatewayFailure::BadRequest, false)
        );
    }

    #[test]
    fn a_body_read_timeout_is_the_upstream_body_timeout() {
        let e = Error::new(ErrorType::ReadTimedout);
        assert_eq!(
            rescue(Trouble::Body(&e)),
            answer(GatewayFailure::UpstreamBodyTimeout, true)
        );
    }
}
