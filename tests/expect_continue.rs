//! `Expect: 100-continue` (RFC 9110 section 10.1.1): a client that waits for it is told to go
//! on when forwarding starts, a declared body over `limits.request_body` gets its 413 without
//! being read, any other expectation is 417, and HTTP/1.0 expectations are ignored. Raw
//! sockets for the exact order of bytes, curl for the upload a user would run.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::assert;
use common::client::read_response;
use common::config::{Config, Route, Upstream as Up};
use common::curl::{curl, Proto};
use common::{Gateway, Reply, Upstream};

fn gateway(route: &str, up: &Upstream) -> Gateway {
    let cfg = Config::new()
        .request_body("2MiB")
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new(route, "up").prefix("/up/"))
        .build();
    Gateway::start(&cfg, &[])
}

fn echo() -> Upstream {
    Upstream::start(|req| {
        let body = format!("{{\"received\":{}}}", req.body.len());
        Reply::json(200, "OK", &body)
    })
}

/// Sends a request head and reads the status line and fields that come back before any body
/// byte is sent (the read times out if the gateway waits for the body).
fn head_only(port: u16, head: &str) -> (TcpStream, BufReader<TcpStream>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut interim = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("an answer before the body is sent");
        interim.push_str(&line);
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    (s, r, interim)
}

#[test]
fn the_client_is_told_to_continue_before_it_sends_its_body() {
    let up = echo();
    let gw = gateway("expect-continue", &up);
    let body = vec![b'a'; 300_000];
    let head = format!(
        "PUT /up/file HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (mut s, mut r, interim) = head_only(gw.port, &head);
    assert!(interim.starts_with("HTTP/1.1 100 Continue\r\n"), "{interim}");
    s.write_all(&body).unwrap();
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["received"], 300_000);
    let seen = &up.requests()[0];
    assert_eq!(seen.body.len(), 300_000);
    assert!(
        seen.header("expect").is_none(),
        "the gateway met the expectation itself"
    );
}

#[test]
fn curl_uploads_a_file_through_the_gateway_after_a_100() {
    let up = echo();
    let gw = gateway("expect-curl", &up);
    let file = gw.path("upload.bin");
    std::fs::write(&file, vec![b'u'; 1024 * 1024]).unwrap();
    let ex = curl(
        Proto::Http11,
        &format!("http://127.0.0.1:{}/up/upload.bin", gw.port),
        &["-T", file.to_str().unwrap()],
    );
    assert_eq!(ex.interim, [100], "curl saw the 100 Continue");
    assert_eq!(ex.response.status, 200, "{}", ex.response.text());
    assert_eq!(ex.response.json()["received"], 1024 * 1024);
}

#[test]
fn a_declared_body_over_the_limit_is_413_without_reading_it() {
    let up = echo();
    let gw = gateway("expect-413", &up);
    let head = "PUT /up/big HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000000\r\n\r\n";
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r, false).expect("answered without the body");
    assert::strict_gateway_problem(&resp, 413, "request-too-large");
    assert_eq!(resp.header("connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).unwrap_or(0), 0, "then the connection closes");
    assert!(up.requests().is_empty());
}

#[test]
fn an_expectation_other_than_100_continue_is_417() {
    let up = echo();
    let gw = gateway("expect-417", &up);
    let r = common::request(gw.port, "POST", "/up/x", &[("Expect", "tea-please")], b"{}");
    assert::strict_gateway_problem(&r, 417, "expectation-failed");
    assert!(up.requests().is_empty());
    // An HTTP/1.0 request's expectation is ignored (RFC 9110 section 10.1.1).
    let raw = b"POST /up/y HTTP/1.0\r\nExpect: tea-please\r\nContent-Length: 2\r\n\r\n{}";
    let r = common::client::send_raw(gw.port, raw, false).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn an_answer_before_the_body_closes_the_connection_instead_of_waiting_for_it() {
    let up = echo();
    let gw = gateway("expect-no-route", &up);
    // No route for /elsewhere: the 404 comes before any body, and no 100.
    let head = "POST /elsewhere HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n";
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r, false).unwrap();
    assert::strict_gateway_problem(&resp, 404, "no-route");
    assert_eq!(
        resp.header("connection"),
        Some("close"),
        "the client may never send the body"
    );
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).unwrap_or(0), 0);
}
