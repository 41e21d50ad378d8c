//! The one factory of pingora upstream peers: an address of a group, with the name it was
//! configured by, becomes an `HttpPeer` carrying the group's timeouts, TLS (SNI, verification,
//! trust roots, client certificate) and HTTP/2 offer. Whatever resolves addresses calls
//! `make_peer` for each (the balancer, for literal and resolved addresses; the health probes'
//! template); nothing else builds a peer. Also the one check pingora's connector cannot make itself: the negotiated TLS version against `tls.min_version`.
//!
//! SNI: `tls.sni` when set, else the configured host name, else the literal IP address. pingora
//! turns verification off entirely for an empty SNI (nginx's behaviour); an IP instead is
//! verified against the certificate's IP addresses, and rustls sends no SNI for it.

use std::net::SocketAddr;

use pingora::protocols::http::client::HttpSession;
use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};

use crate::config::upstream_tls::TlsVersion;
use crate::snapshot::UpstreamDef;

/// The peer for `addr` of the group `def`; `name` is the configured host name `addr` came
/// from (`None` for a literal IP address).
pub fn make_peer(addr: SocketAddr, name: Option<&str>, def: &UpstreamDef) -> HttpPeer {
    let sni = match &def.tls {
        Some(t) => t
            .sni
            .clone()
            .or_else(|| name.map(str::to_owned))
            .unwrap_or_else(|| addr.ip().to_string()),
        None => String::new(),
    };
    let mut peer = HttpPeer::new(addr, def.tls.is_some(), sni);
    let o = &mut peer.options;
    o.connection_timeout = Some(def.connect_timeout);
    o.total_connection_timeout = Some(def.connect_timeout);
    o.read_timeout = Some(def.body_timeout);
    o.write_timeout = Some(def.response_timeout);
    o.idle_timeout = Some(def.idle_timeout);
    if let Some(t) = &def.tls {
        o.verify_cert = t.verify;
        o.verify_hostname = t.verify && t.verify_hostname;
        o.ca = t.roots.as_ref().map(|r| r.ca.clone());
    }
    if def.http2 {
        // TLS: offer h2 and http/1.1 by ALPN. Plain text has no negotiation: h2 only is
        // pingora's h2c with prior knowledge.
        o.alpn = if def.tls.is_some() { ALPN::H2H1 } else { ALPN::H2 };
        o.max_h2_streams = def.max_h2_streams;
    }
    if let Some(client) = def.tls.as_ref().and_then(|t| t.client.as_ref()) {
        peer.client_cert_key = Some(client.cert_key.clone());
    }
    peer
}

/// An error when a fresh connection's negotiated TLS version is below the group's
/// `tls.min_version` (pingora's rustls connector always offers 1.2 and 1.3, so the minimum is
/// enforced here, after the handshake and before any request byte is sent).
pub fn below_min_version(session: &HttpSession, def: &UpstreamDef) -> Option<Box<Error>> {
    let min = def.tls.as_ref()?.min_version;
    if min == TlsVersion::V1_2 {
        return None;
    }
    let digest = session.digest()?.ssl_digest.as_ref()?;
    let got = TlsVersion::from_digest(&digest.version);
    if got.is_some_and(|v| v >= min) {
        return None;
    }
    Some(Error::explain(
        ErrorType::TLSHandshakeFailure,
        format!(
            "upstream negotiated {}, below tls.min_version {}",
            digest.version,
            min.name()
        ),
    ))
}
