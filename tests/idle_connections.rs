//! Idle keep-alive client connections hold no read buffer of their own: plain listeners have no
//! L4 read buffer, and the wait for a connection's next request reads its first bytes through a
//! buffer shared by the worker thread (gateway/proxy/mod.rs `keep_alive`, `read_first`). What
//! that could break, over real sockets after a real idle wait: a next request larger than one
//! read (a big header block, a body, a batch of pipelined requests), a header that arrives in
//! pieces, and many connections waking at once on a shared buffer; and the same wait on a TLS
//! listener (16 KiB L4 read buffer, reads through rustls).

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use common::client::read_response;
use common::config::{Config, Route, TlsListen, Upstream as Up};
use common::gateway::free_port;
use common::tls::Ca;
use common::{Gateway, Reply, Upstream};

/// An upstream that answers 200 with its request's path, then the length of its `X-Big` header
/// and of its body (`/path big=N body=M`).
fn echo() -> Upstream {
    Upstream::start(|r| {
        let text = format!(
            "{} big={} body={}",
            r.path,
            r.header("x-big").map_or(0, str::len),
            r.body.len()
        );
        Reply::new(200, "OK", &[("Content-Type", "text/plain")], text.as_bytes())
    })
}

/// Two worker threads (the shared buffer is per thread), a 32 KiB header limit.
fn gateway(up: &Upstream) -> Gateway {
    let cfg = Config::new()
        .threads(2)
        .grace_period("0s")
        .request_header("32KiB")
        .client_header_timeout("5s")
        .upstream("up", Up::addr(&up.addr()).response_timeout("5s"))
        .route(Route::new("idle", "up").prefix("/"))
        .build();
    Gateway::start(&cfg, &[])
}

/// A connection that has been served one request and then left idle.
fn idle_connection(port: u16) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&s).write_all(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!((resp.status, resp.text()), (200, "/first big=0 body=0".to_owned()));
    (s, r)
}

/// Long enough for the connection to be parked in the keep-alive wait.
fn idle() {
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn a_header_block_larger_than_one_read_after_an_idle_wait_reaches_the_upstream_whole() {
    let up = echo();
    let gw = gateway(&up);
    let (s, mut r) = idle_connection(gw.port);
    idle();
    // 28 KiB of header: more than the 16 KiB first read, less than the 32 KiB limit.
    let big = "b".repeat(28 * 1024);
    (&s).write_all(format!("GET /second HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .unwrap();
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), format!("/second big={} body=0", big.len()));
    let got = up.requests();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].header("x-big"), Some(big.as_str()));
}

#[test]
fn a_header_that_arrives_in_pieces_after_an_idle_wait_is_read_to_its_end() {
    let up = echo();
    let gw = gateway(&up);
    let (s, mut r) = idle_connection(gw.port);
    idle();
    let big = "p".repeat(6000);
    let raw = format!("GET /pieces HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n");
    // The first bytes wake the connection; the rest follows in three more writes.
    for part in [&raw[..5], &raw[5..3000], &raw[3000..5000], &raw[5000..]] {
        (&s).write_all(part.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.text(), format!("/pieces big={} body=0", big.len()));
}

#[test]
fn a_body_sent_with_the_next_request_after_an_idle_wait_arrives_whole() {
    let up = echo();
    let gw = gateway(&up);
    let (s, mut r) = idle_connection(gw.port);
    idle();
    let body: Vec<u8> = (0..100 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let mut raw = format!(
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    (&s).write_all(&raw).unwrap();
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.text(), format!("/upload big=0 body={}", body.len()));
    assert_eq!(up.requests()[1].body, body);
}

#[test]
fn pipelined_requests_past_one_read_after_an_idle_wait_are_answered_in_order() {
    let up = echo();
    let gw = gateway(&up);
    let (s, mut r) = idle_connection(gw.port);
    idle();
    // 40 requests of about 600 bytes each, in one write: about 24 KiB, more than one read.
    let pad = "x".repeat(560);
    let raw: String = (0..40)
        .map(|i| format!("GET /p{i} HTTP/1.1\r\nHost: a\r\nX-Big: {pad}\r\n\r\n"))
        .collect();
    (&s).write_all(raw.as_bytes()).unwrap();
    for i in 0..40 {
        let resp = read_response(&mut r, false).unwrap_or_else(|e| panic!("response {i}: {e}"));
        assert_eq!(resp.text(), format!("/p{i} big=560 body=0"));
    }
    // Still open and idle-able once more.
    idle();
    (&s).write_all(b"GET /last HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().text(), "/last big=0 body=0");
    assert_eq!(up.requests().len(), 42);
}

#[test]
fn many_idle_connections_waking_together_each_get_the_answer_to_their_own_request() {
    let up = echo();
    let gw = gateway(&up);
    let mut conns: Vec<(TcpStream, BufReader<TcpStream>)> = (0..50).map(|_| idle_connection(gw.port)).collect();
    idle();
    // Every connection sends its next request before any answer is read.
    for (i, (s, _)) in conns.iter().enumerate() {
        let pad = "z".repeat(100 * i);
        (&*s)
            .write_all(format!("GET /conn{i} HTTP/1.1\r\nHost: a\r\nX-Big: {pad}\r\n\r\n").as_bytes())
            .unwrap();
    }
    for (i, (_, r)) in conns.iter_mut().enumerate() {
        let resp = read_response(r, false).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_eq!(resp.text(), format!("/conn{i} big={} body=0", 100 * i));
    }
}

#[test]
fn a_client_that_closes_an_idle_connection_leaves_the_gateway_serving() {
    let up = echo();
    let gw = gateway(&up);
    for _ in 0..20 {
        let (s, _r) = idle_connection(gw.port);
        s.shutdown(std::net::Shutdown::Both).unwrap();
    }
    idle();
    let (_s, _r) = idle_connection(gw.port);
    assert_eq!(up.requests().len(), 21);
}

#[test]
fn a_kept_alive_tls_connection_idle_then_sending_a_large_header_block_is_served_whole() {
    let up = echo();
    let ca = Ca::new("idle-test-ca");
    let leaf = ca.leaf(&["localhost"]);
    let port = free_port();
    let cfg = Config::new()
        .tls_listener(TlsListen::new(&format!("127.0.0.1:{port}"), "gw.crt", "gw.key"))
        .threads(2)
        .grace_period("0s")
        .request_header("32KiB")
        .upstream("up", Up::addr(&up.addr()).response_timeout("5s"))
        .route(Route::new("idle-tls", "up").prefix("/"))
        .build();
    let _gw = Gateway::start(&cfg, &[("gw.crt", &leaf.cert_pem), ("gw.key", &leaf.key_pem)]);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone().into()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(rustls::StreamOwned::new(conn, tcp));

    r.get_mut()
        .write_all(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().text(), "/first big=0 body=0");
    idle();
    let big = "t".repeat(28 * 1024);
    r.get_mut()
        .write_all(format!("GET /second HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .unwrap();
    assert_eq!(
        read_response(&mut r, false).unwrap().text(),
        format!("/second big={} body=0", big.len())
    );
    idle();
    r.get_mut()
        .write_all(b"GET /third HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().text(), "/third big=0 body=0");
    assert_eq!(up.requests().len(), 3);
}
