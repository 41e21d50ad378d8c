//! Clients as attackers send them, over raw loopback sockets: traversal and ambiguous targets,
//! absolute-form, missing Host, slowloris headers and stalled bodies, request smuggling (CL.TE,
//! TE.CL, duplicate Content-Length, obs-fold, chunk-size overflow), HTTP/1.0 and pipelining,
//! oversize requests and connection floods. The upstream counts what reaches it: nothing
//! smuggled, nothing outside the route that matched.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::assert;
use common::client::read_response;
use common::config::{Config, Route, Upstream as Up};
use common::{Gateway, Reply, Upstream};

/// An upstream that answers every request 200 with its own request line's path as the body.
fn echo() -> Upstream {
    Upstream::start(|r| Reply::new(200, "OK", &[("Content-Type", "text/plain")], r.path.as_bytes()))
}

/// The main configuration: `base` with `request_header: 32KiB`, each upstream with a 2 s
/// response deadline, and `routes` (one catch-all route named `route` to the first upstream
/// when empty).
fn config(route: &str, base: Config, upstreams: &[(&str, &Upstream)], routes: &[Route]) -> String {
    let mut cfg = base.request_header("32KiB");
    for (name, up) in upstreams {
        cfg = cfg.upstream(name, Up::addr(&up.addr()).response_timeout("2s"));
    }
    if routes.is_empty() {
        cfg = cfg.route(Route::new(route, upstreams[0].0).prefix("/"));
    }
    for r in routes {
        cfg = cfg.route(r.clone());
    }
    cfg.build()
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Writes `raw` and reads every response until the gateway closes (bounded by the read timeout).
fn exchange(port: u16, raw: &[u8]) -> (Vec<common::Response>, bool) {
    let s = connect(port);
    (&s).write_all(raw).unwrap();
    let mut r = BufReader::new(s);
    let mut out = Vec::new();
    loop {
        match read_response(&mut r, false) {
            Ok(resp) => out.push(resp),
            Err(e) => {
                let closed = e.kind() == std::io::ErrorKind::UnexpectedEof;
                return (out, closed);
            }
        }
    }
}

fn one(port: u16, raw: &str) -> common::Response {
    let (mut rs, _) = exchange(port, raw.as_bytes());
    assert!(!rs.is_empty(), "no response to {raw:?}");
    rs.remove(0)
}

fn two_routes() -> [Route; 2] {
    [
        Route::new("public", "public").prefix("/public/").strip_prefix(),
        Route::new("veeam", "veeam").prefix("/veeam/").strip_prefix(),
    ]
}

#[test]
fn dot_segments_are_resolved_before_routing_so_an_upstream_gets_only_what_its_route_matched() {
    let (public, veeam) = (echo(), echo());
    let gw = Gateway::start(
        &config(
            "",
            Config::new(),
            &[("public", &public), ("veeam", &veeam)],
            &two_routes(),
        ),
        &[],
    );
    for (target, upstream_path) in [
        ("/public/../veeam/x", "/x"),
        ("/public/%2e%2e/veeam/x", "/x"),
        ("/public/%2E./veeam/x?q=1", "/x?q=1"),
        ("/public/a/./b/../c", "/a/c"),
        ("/public//a///b", "/a/b"),
        ("/public/%61bc", "/abc"),
    ] {
        let r = one(
            gw.port,
            &format!("GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        assert_eq!(r.text(), upstream_path, "{target}");
    }
    // Nothing that reached the public upstream came from outside /public/, nor carries a dot
    // segment in any spelling.
    let public_paths: Vec<String> = public.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(public_paths, ["/a/c", "/a/b", "/abc"]);
    for p in veeam.requests().iter().map(|r| r.path.to_ascii_lowercase()) {
        assert!(!p.contains("..") && !p.contains("%2e"), "{p}");
    }
    // Climbing out of every route is no route at all.
    let r = one(
        gw.port,
        "GET /public/../etc/passwd HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert::gateway_problem(&r, 404, "no-route");
}

#[test]
fn ambiguous_targets_are_refused_with_400_and_never_forwarded() {
    let up = echo();
    let gw = Gateway::start(&config("bad-target", Config::new(), &[("up", &up)], &[]), &[]);
    for target in [
        "/..",
        "/a/../../etc/passwd",
        "/public%2f..%2finternal",
        "/public%2F..%2Finternal",
        "/a%5c..%5cb",
        "/a\\..\\b",
        "/a%00.txt",
        "/a%zz",
    ] {
        let r = one(
            gw.port,
            &format!("GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
        );
        assert::gateway_problem(&r, 400, "bad-target");
    }
    assert!(up.requests().is_empty(), "{:?}", up.requests());
    gw.expect_metric(
        "statusgate_client_failures_total",
        &[("route", "none"), ("kind", "bad_target")],
        8.0,
        "refusals counted as client failures",
    );
}

#[test]
fn absolute_form_reaches_the_upstream_in_origin_form_with_its_authority_as_host() {
    let up = echo();
    let gw = Gateway::start(&config("absolute", Config::new(), &[("up", &up)], &[]), &[]);
    let r = one(
        gw.port,
        "GET http://b.test/abs?x=1 HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/abs?x=1");
    assert_eq!(got[0].header("host"), Some("b.test"));
    // A Host that disagrees with the target's authority is refused by the parser.
    let r = one(
        gw.port,
        "GET http://b.test/abs HTTP/1.1\r\nHost: c.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn http11_without_host_is_400_while_http10_without_host_is_served() {
    let up = echo();
    let gw = Gateway::start(&config("no-host", Config::new(), &[("up", &up)], &[]), &[]);
    let r = one(gw.port, "GET /a HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert::gateway_problem(&r, 400, "bad-request");
    assert!(up.requests().is_empty());
    let r = one(gw.port, "GET /b HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(up.requests().len(), 1);
    assert_eq!(up.requests()[0].path, "/b");
}

#[test]
fn a_header_trickled_one_byte_at_a_time_is_cut_off_at_the_header_deadline_with_408() {
    let up = echo();
    let gw = Gateway::start(
        &config(
            "slowloris",
            Config::new().client_header_timeout("1s"),
            &[("up", &up)],
            &[],
        ),
        &[],
    );
    let s = connect(gw.port);
    let writer = s.try_clone().unwrap();
    // 200 ms a byte: each read is far inside any per-read timeout, the whole header never is.
    let trickle = std::thread::spawn(move || {
        let header = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Pad: {}\r\n\r\n", "a".repeat(60));
        for b in header.bytes() {
            if (&writer).write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r, false).expect("a 408 before the client's read timeout");
    assert::gateway_problem(&resp, 408, "client-header-timeout");
    assert_eq!(resp.header("connection"), Some("close"));
    // Closed, not left open: end of stream, or a reset when the close met the client's next
    // trickled byte (the kernel answers bytes for a closed socket with RST). A read timeout
    // (the connection left open) fails.
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the gateway closes the connection, but reading on gave {e}"),
    }
    trickle.join().unwrap();
    assert!(up.requests().is_empty());
}

#[test]
fn a_second_request_trickled_on_a_kept_alive_connection_is_cut_off_at_the_header_deadline() {
    let up = echo();
    let gw = Gateway::start(
        &config(
            "slowloris-reused",
            Config::new().client_header_timeout("1s"),
            &[("up", &up)],
            &[],
        ),
        &[],
    );
    let s = connect(gw.port);
    (&s).write_all(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert_eq!(read_response(&mut r, false).unwrap().text(), "/first");
    // Idle for longer than the header deadline: that is keep-alive time, not header time.
    std::thread::sleep(Duration::from_millis(1500));
    let writer = s.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for b in b"GET /second HTTP/1.1\r\nHost: a\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n" {
            if (&writer).write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let resp = read_response(&mut r, false).expect("a 408 for the trickled second request");
    assert::gateway_problem(&resp, 408, "client-header-timeout");
    trickle.join().unwrap();
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn a_request_body_that_stops_arriving_gets_408_and_a_closed_connection() {
    let up = echo();
    let gw = Gateway::start(
        &config(
            "stalled-body",
            Config::new().client_body_timeout("300ms"),
            &[("up", &up)],
            &[],
        ),
        &[],
    );
    let s = connect(gw.port);
    (&s).write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789")
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let resp = read_response(&mut r, false).expect("a 408 while the client is silent");
    assert::gateway_problem(&resp, 408, "client-body-timeout");
    drop(s);
}

#[test]
fn http10_without_keep_alive_gets_connection_close_and_an_unchunked_body() {
    let chunked = Upstream::start(|r| {
        if r.path == "/sized" {
            return Reply::new(200, "OK", &[], b"sized");
        }
        Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec())
    });
    let gw = Gateway::start(&config("http10", Config::new(), &[("up", &chunked)], &[]), &[]);
    let s = connect(gw.port);
    (&s).write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    (&s).read_to_end(&mut raw)
        .expect("the gateway closes after the response");
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        !head.contains("transfer-encoding"),
        "HTTP/1.0 has no chunked coding: {head}"
    );
    assert_eq!(body, "hello world");
    // HTTP/1.0 with keep-alive and a length-delimited body stays open for a second request.
    let s = connect(gw.port);
    (&s).write_all(b"GET /sized HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let first = read_response(&mut r, false).unwrap();
    assert_eq!(first.header("connection"), Some("keep-alive"));
    assert_eq!(first.text(), "sized");
    (&s).write_all(b"GET /sized HTTP/1.0\r\n\r\n").unwrap();
    let second = read_response(&mut r, false).unwrap();
    assert_eq!(second.header("connection"), Some("close"));
}

#[test]
fn content_length_with_transfer_encoding_is_answered_once_and_the_connection_closed() {
    let up = echo();
    let gw = Gateway::start(&config("cl-te", Config::new(), &[("up", &up)], &[]), &[]);
    // CL.TE: a front end that trusts Content-Length would see "GET /smuggled" as a second
    // request; the gateway decodes chunked, answers once and closes (RFC 9112 section 6.1).
    let raw = "POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let (responses, closed) = exchange(gw.port, raw.as_bytes());
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(responses[0].header("connection"), Some("close"));
    assert!(closed);
    let paths: Vec<String> = up.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/first"]);
}

#[test]
fn smuggling_variants_never_reach_the_upstream_as_a_request_of_their_own() {
    let up = echo();
    let gw = Gateway::start(&config("smuggling", Config::new(), &[("up", &up)], &[]), &[]);
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let attacks = [
        // TE.CL: a back end that trusts Content-Length would read the chunk as a request.
        format!(
            "POST /te-cl HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
            smuggled.len()
        ),
        // Two different lengths.
        format!("POST /dup-cl HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 36\r\n\r\n{smuggled}"),
        // obs-fold hides a header inside another.
        format!("GET /fold HTTP/1.1\r\nHost: a\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n\r\n{smuggled}"),
        // A chunk size that overflows 64 bits.
        format!("POST /overflow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000000001\r\n{smuggled}\r\n0\r\n\r\n"),
        // A transfer coding that is not chunked last.
        format!("POST /te-identity HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n{smuggled}"),
        format!("POST /neg-cl HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n{smuggled}"),
    ];
    for raw in &attacks {
        let (responses, _) = exchange(gw.port, raw.as_bytes());
        assert!(responses.len() <= 1, "at most one answer to {raw:?}: {responses:?}");
        for r in &responses {
            assert!(r.status < 500, "{raw:?}: {}", r.status);
        }
    }
    let paths: Vec<String> = up.requests().iter().map(|r| r.path.clone()).collect();
    assert!(!paths.iter().any(|p| p == "/smuggled"), "{paths:?}");
    // The TE.CL request's body went upstream as data, chunked, not as a request.
    assert!(paths.len() <= 1, "only /te-cl may be forwarded: {paths:?}");
    if let Some(r) = up.requests().first() {
        assert_eq!(r.path, "/te-cl");
        assert_eq!(r.body, smuggled.as_bytes());
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = echo();
    let gw = Gateway::start(&config("pipelining", Config::new(), &[("up", &up)], &[]), &[]);
    let raw = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let (responses, closed) = exchange(gw.port, raw.as_bytes());
    let bodies: Vec<String> = responses.iter().map(|r| r.text()).collect();
    assert_eq!(bodies, ["/a", "/b", "/c"]);
    assert!(closed);
}

#[test]
fn oversize_header_is_431_and_an_oversize_declared_body_is_413_unforwarded() {
    let up = echo();
    let gw = Gateway::start(
        &config("oversize", Config::new().request_body("1KiB"), &[("up", &up)], &[]),
        &[],
    );
    let r = one(
        gw.port,
        &format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "b".repeat(40 * 1024)),
    );
    assert::gateway_problem(&r, 431, "header-too-large");
    let r = one(gw.port, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n");
    assert::gateway_problem(&r, 413, "request-too-large");
    assert!(up.requests().is_empty());
}

#[test]
fn connections_past_the_listener_cap_get_503_and_a_freed_place_is_reused() {
    let up = echo();
    let gw = Gateway::start(
        &config("conn-cap", Config::new().client_connections(2), &[("up", &up)], &[]),
        &[],
    );
    let held: Vec<(TcpStream, BufReader<TcpStream>)> = (0..2)
        .map(|_| {
            let s = connect(gw.port);
            (&s).write_all(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            assert_eq!(read_response(&mut r, false).unwrap().status, 200);
            (s, r)
        })
        .collect();
    let r = one(gw.port, "GET /third HTTP/1.1\r\nHost: a\r\n\r\n");
    assert::gateway_problem(&r, 503, "client-connection-limit");
    drop(held);
    // The gateway notices the closed connections and frees their places (bounded poll).
    let mut status = 0;
    for _ in 0..100 {
        status = one(gw.port, "GET /later HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").status;
        if status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(status, 200);
    assert!(gw.metric("statusgate_client_connections_refused_total", &[]) >= 1.0);
}
