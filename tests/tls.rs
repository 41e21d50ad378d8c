//! A TLS listener (rustls) in front of a plain upstream: the same canonical responses over HTTPS.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;

use common::config::{Config, Route, Upstream as Up};
use common::{Gateway, Reply, Upstream};

#[test]
fn tls_listener_serves_canonical_responses() {
    let up = Upstream::start(|_| Reply::json(418, "I'm a teapot", "{}"));
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let tls_port = common::gateway::free_port();
    let cfg = Config::new()
        .tls_listen(&format!("127.0.0.1:{tls_port}"), "gw.crt", "gw.key")
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("tls", "up"))
        .build();
    let gw = Gateway::start(
        &cfg,
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
