//! Errors the gateway answers itself, each with its own problem type and metric kind:
//! 502 (refused, reset, closed, invalid HTTP, TLS), 504 (connect timeout, response deadline),
//! 503 (no upstream left), 404/400/413/431 for requests, and failures after the header.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::assert;
use common::client::send_raw;
use common::config::{Config, Route, Upstream as Up};
use common::gateway::free_port;
use common::{request, Gateway, Reply, Upstream};

/// One route named `route`: metrics are process-wide, so each test counts under its own route.
fn one_route(route: &str, up: Up) -> Gateway {
    let cfg = Config::new()
        .upstream("up", up.connect_timeout("300ms").response_timeout("500ms"))
        .route(Route::new(route, "up").prefix("/"))
        .build();
    Gateway::start(&cfg, &[])
}

#[test]
fn refused_then_no_upstream_left() {
    let dead = free_port();
    let gw = one_route("refused", Up::addr(&format!("127.0.0.1:{dead}")).fail_timeout("1m"));
    let r = request(gw.port, "GET", "/a", &[], b"");
    assert::strict_gateway_problem(&r, 502, "upstream-refused");
    gw.expect_metric(
        "statusgate_upstream_failures_total",
        &[("route", "refused"), ("kind", "upstream_refused")],
        1.0,
        "",
    );
    // The refusing address is out of rotation for fail_timeout: nothing left to try.
    let r = request(gw.port, "GET", "/a", &[], b"");
    assert::strict_gateway_problem(&r, 503, "no-upstream");
    gw.expect_metric(
        "statusgate_upstream_failures_total",
        &[("route", "refused"), ("kind", "no_upstream")],
        1.0,
        "",
    );
}

#[test]
fn a_refusing_address_is_skipped_for_a_live_one_and_load_is_spread() {
    let a = Upstream::start(|_| Reply::json(200, "OK", r#"{"from":"a"}"#));
    let b = Upstream::start(|_| Reply::json(200, "OK", r#"{"from":"b"}"#));
    let dead = free_port();
    let gw = one_route(
        "spread",
        Up::addrs(&[&a.addr(), &format!("127.0.0.1:{dead}"), &b.addr()]),
    );
    for _ in 0..6 {
        let r = request(gw.port, "GET", "/x", &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert!(
        a.requests().len() >= 2 && b.requests().len() >= 2,
        "a={} b={}",
        a.requests().len(),
        b.requests().len()
    );
}

#[test]
fn reset_closed_and_invalid_upstreams_are_502_each_with_its_type() {
    let up = Upstream::start(|req| match req.path.as_str() {
        "/reset" => Reply::Reset,
        "/close" => Reply::Close,
        "/half" => Reply::Partial(b"HTTP/1.1 200 OK\r\nContent-Le".to_vec()),
        _ => Reply::Raw(b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec()),
    });
    let gw = one_route("broken", Up::addr(&up.addr()));
    assert::strict_gateway_problem(&request(gw.port, "GET", "/reset", &[], b""), 502, "upstream-reset");
    assert::strict_gateway_problem(&request(gw.port, "GET", "/close", &[], b""), 502, "upstream-closed");
    let half = request(gw.port, "GET", "/half", &[], b"");
    assert_eq!(half.status, 502, "{}", half.text());
    assert::strict_gateway_problem(&request(gw.port, "GET", "/garbage", &[], b""), 502, "invalid-response");
    gw.expect_metric(
        "statusgate_responses_total",
        &[("route", "broken"), ("code", "502"), ("origin", "gateway")],
        4.0,
        "",
    );
}

#[test]
fn tls_failure_is_502_tls() {
    let plain = Upstream::start(|_| Reply::json(200, "OK", "{}"));
    let gw = one_route(
        "tls",
        Up::addr(&plain.addr()).set("tls", "{ sni: localhost, verify: false }"),
    );
    assert::strict_gateway_problem(&request(gw.port, "GET", "/", &[], b""), 502, "upstream-tls");
}

#[test]
fn connect_timeout_is_504() {
    // A listener that never accepts, its backlog filled: further SYNs go unanswered.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into())
        .unwrap();
    sock.listen(0).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    std::thread::sleep(Duration::from_millis(100));
    let gw = one_route("connect-timeout", Up::addr(&addr.to_string()));
    assert::strict_gateway_problem(&request(gw.port, "GET", "/", &[], b""), 504, "connect-timeout");
    drop(fillers);
}

#[test]
fn response_deadline_is_a_deadline_not_a_per_read_timeout() {
    // One byte every 150 ms never trips a per-read timeout; the 500 ms header deadline must.
    let up = Upstream::start(|req| match req.path.as_str() {
        "/hang" => Reply::Hang,
        _ => Reply::Trickle(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            Duration::from_millis(150),
        ),
    });
    let gw = one_route("deadline", Up::addr(&up.addr()).body_timeout("10s"));
    assert::strict_gateway_problem(&request(gw.port, "GET", "/hang", &[], b""), 504, "response-timeout");
    assert::strict_gateway_problem(&request(gw.port, "GET", "/trickle", &[], b""), 504, "response-timeout");
    gw.expect_metric(
        "statusgate_upstream_failures_total",
        &[("route", "deadline"), ("kind", "response_timeout")],
        2.0,
        "",
    );
}

#[test]
fn failure_after_the_header_closes_the_connection_and_is_counted() {
    let up = Upstream::start(|_| {
        let mut b = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n".to_vec();
        b.extend_from_slice(b"[1,2,3,");
        Reply::Partial(b)
    });
    let gw = one_route("after-header", Up::addr(&up.addr()));
    let r = request(gw.port, "GET", "/stream", &[], b"");
    assert_eq!(r.status, 200, "the status was already sent");
    assert!(
        r.truncated,
        "the client must see the body end early, not a short complete body"
    );
    gw.expect_metric(
        "statusgate_upstream_failures_total",
        &[("route", "after-header"), ("kind", "after_header")],
        1.0,
        "",
    );
}

#[test]
fn bad_requests_get_canonical_4xx() {
    let up = Upstream::start(|_| Reply::json(200, "OK", "{}"));
    let cfg = Config::new()
        .request_header("1KiB")
        .request_body("1KiB")
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("api", "up").prefix("/api/"))
        .build();
    let gw = Gateway::start(&cfg, &[]);
    let r = request(gw.port, "GET", "/elsewhere", &[], b"");
    assert::strict_gateway_problem(&r, 404, "no-route");

    let r = send_raw(gw.port, b"THIS IS NOT HTTP\r\n\r\n", false).unwrap();
    assert::strict_gateway_problem(&r, 400, "bad-request");

    let r = request(gw.port, "POST", "/api/upload", &[], &vec![b'x'; 2048]);
    assert::strict_gateway_problem(&r, 413, "request-too-large");
    assert_eq!(r.reason, "Content Too Large");

    // Chunked, so the size is only known while streaming.
    let mut raw = b"POST /api/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        raw.extend_from_slice(b"400\r\n");
        raw.extend_from_slice(&[b'y'; 1024]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let r = send_raw(gw.port, &raw, false).unwrap();
    assert::strict_gateway_problem(&r, 413, "request-too-large");

    // Broken chunk framing in the body: the client's mistake, a canonical 400.
    let raw = b"POST /api/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    let r = send_raw(gw.port, raw, false).unwrap();
    assert::strict_gateway_problem(&r, 400, "bad-request");

    let big = "v".repeat(2000);
    let r = request(gw.port, "GET", "/api/x", &[("X-Big", &big)], b"");
    assert::strict_gateway_problem(&r, 431, "header-too-large");
    assert!(up.requests().is_empty(), "none of these reached the upstream");
}

#[test]
fn routing_by_host_and_prefix_with_strip_and_forwarding_headers() {
    let up = Upstream::start(|_| Reply::json(200, "OK", "{}"));
    let other = Upstream::start(|_| Reply::json(200, "OK", r#"{"other":true}"#));
    let cfg = Config::new()
        .upstream("up", Up::addr(&up.addr()).host_header("vpcep.vendor.internal"))
        .upstream("other", Up::addr(&other.addr()))
        .route(Route::new("by-host", "other").host("api.example.test"))
        .route(Route::new("huawei", "up").prefix("/huawei/").strip_prefix())
        .build();
    let gw = Gateway::start(&cfg, &[]);
    let r = request(
        gw.port,
        "GET",
        "/huawei/v1/p1/vpc-endpoints?limit=5",
        &[("X-Request-Id", "bad id with spaces")],
        b"",
    );
    assert_eq!(r.status, 200);
    let seen = &up.requests()[0];
    assert_eq!(seen.path, "/v1/p1/vpc-endpoints?limit=5");
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen.header("host"),
        Some("vpcep.vendor.internal"),
        "host_header overrides the client's Host"
    );
    let rid = r.header("x-request-id").unwrap();
    assert_ne!(rid, "bad id with spaces", "an insane client id is replaced");
    assert_eq!(seen.header("x-request-id"), Some(rid));

    // Hop-by-hop fields, and those the client's Connection names, stay at the gateway.
    let raw = b"GET /huawei/hop HTTP/1.1\r\nHost: x\r\nConnection: close, X-Session-Hint\r\nX-Session-Hint: 1\r\nUpgrade: h2c\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\n\r\n";
    assert_eq!(common::client::send_raw(gw.port, raw, false).unwrap().status, 200);
    let seen = up.requests().into_iter().find(|r| r.path == "/hop").expect("forwarded");
    for gone in ["connection", "x-session-hint", "upgrade", "keep-alive"] {
        assert!(seen.header(gone).is_none(), "{gone} was forwarded");
    }
    assert_eq!(seen.header("x-kept"), Some("yes"));

    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.write_all(b"GET /anything HTTP/1.1\r\nHost: API.example.test:8080\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = common::client::read_response(&mut std::io::BufReader::new(s), false).unwrap();
    assert_eq!(r.text(), r#"{"other":true}"#);
    gw.expect_metric("statusgate_responses_total", &[("route", "by-host")], 1.0, "");
}
