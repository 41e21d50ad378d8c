//! A TLS listener (rustls) in front of a plain upstream: the same canonical responses over HTTPS.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;

use common::{Gateway, Reply, Upstream};

#[test]
fn tls_listener_serves_canonical_responses() {
    let up = Upstream::start(|_| Reply::json(418, "I'm a teapot", "{}"));
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cfg = format!(
        "listen: ${{LISTEN}}\nadmin: ${{ADMIN}}\ntls_listen:\n  - addr: 127.0.0.1:TLSPORT\n    cert: gw.crt\n    key: gw.key\nupstreams:\n  up:\n    addrs: [{}]\nroutes:\n  - name: tls\n    upstream: up\n",
        up.addr()
    );
    let tls_port = common::gateway::free_port();
    let gw = Gateway::start(
        &cfg.replace("TLSPORT", &tls_port.to_string()),
        &[
            ("gw.crt", &cert.cert.pem()),
            ("gw.key", &cert.signing_key.serialize_pem()),
        ],
    );

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /brew HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = common::client::read_response(&mut BufReader::new(tls), false).unwrap();
    assert_eq!((r.status, r.reason.as_str()), (400, "Bad Request"));
    assert_eq!(r.json()["upstream_status"], 418);
    drop(gw);
}
