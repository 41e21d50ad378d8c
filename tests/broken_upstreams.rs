//! Upstreams as broken vendors run them: a body that stalls after the header, an error body a
//! rule needs that stalls or trickles, an upload the upstream stops reading, an unsolicited 101,
//! connection caps, and a gateway that runs out of file descriptors. Every phase has a deadline
//! with its own problem type; nothing holds a client forever.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::assert;
use common::client::read_response;
use common::config::{Config, Route, Upstream as Up};
use common::gateway::free_port;
use common::{request, Gateway, Reply, Upstream};

const PROFILE: &str = r#"
vendor: test
rules:
  - name: throttled
    when: { status: 400, json: { /code: throttled } }
    then: { status: 429 }
"#;

fn gateway(route: &str, up: Up) -> Gateway {
    let cfg = Config::new()
        .upstream("up", up.response_timeout("2s"))
        .route(Route::new(route, "up").prefix("/").profile("profile.yaml"))
        .build();
    Gateway::start(&cfg, &[("profile.yaml", PROFILE)])
}

#[test]
fn a_passthrough_body_that_stalls_ends_in_a_closed_connection_counted_after_header() {
    let up = Upstream::start(|_| {
        Reply::Stall(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789".to_vec(),
            Duration::from_secs(30),
        )
    });
    let gw = gateway("stalled-passthrough", Up::addr(&up.addr()).body_timeout("300ms"));
    let s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&s).write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    // EOF (not the 10 s read timeout): the gateway closed the connection.
    (&s).read_to_end(&mut raw)
        .expect("the gateway closes the stalled response");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("0123456789"), "the 10 bytes sent, no more: {text}");
    gw.expect_metric(
        "statusgate_upstream_failures_total",
        &[("route", "stalled-passthrough"), ("kind", "after_header")],
        1.0,
        "a failure after the header is counted",
    );
}

#[test]
fn an_error_body_a_rule_needs_that_stalls_gets_504_upstream_body_timeout() {
    let up = Upstream::start(|_| {
        Reply::Stall(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"code\":"
                .to_vec(),
            Duration::from_secs(30),
        )
    });
    let gw = gateway("stalled-error", Up::addr(&up.addr()).body_timeout("300ms"));
    let r = request(gw.port, "GET", "/", &[], b"");
    assert::gateway_problem(&r, 504, "upstream-body-timeout");
    gw.expect_metric(
        "statusgate_upstream_failures_total",
        &[("route", "stalled-error"), ("kind", "upstream_body_timeout")],
        1.0,
        "",
    );
}

#[test]
fn an_error_body_trickled_past_the_buffering_deadline_gets_504_body_deadline() {
    let body = format!("{{\"code\":\"throttled\",\"pad\":\"{}\"}}", "x".repeat(200));
    let raw = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // 20 ms a byte: each read is well inside body_timeout, the whole body never inside the deadline.
    let up = Upstream::start(move |_| Reply::Trickle(raw.clone().into_bytes(), Duration::from_millis(20)));
    let gw = gateway(
        "trickled-error",
        Up::addr(&up.addr()).body_timeout("2s").body_deadline("500ms"),
    );
    let r = request(gw.port, "GET", "/", &[], b"");
    assert::gateway_problem(&r, 504, "body-deadline");
}

#[test]
fn an_upload_the_upstream_stops_reading_gets_504_upstream_write_timeout() {
    // Accepts and never reads: the gateway's writes fill the socket buffers, then stall.
    let deaf = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = deaf.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        let conns: Vec<TcpStream> = deaf.incoming().take(1).filter_map(Result::ok).collect();
        std::thread::sleep(Duration::from_secs(8));
        drop(conns);
    });
    let gw = gateway("stalled-upload", Up::addr(&addr.to_string()).write_timeout("300ms"));
    let s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let len = 8 * 1024 * 1024;
    let writer = s.try_clone().unwrap();
    let upload = std::thread::spawn(move || {
        let _ = (&writer)
            .write_all(format!("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {len}\r\n\r\n").as_bytes());
        let chunk = vec![b'u'; 64 * 1024];
        let started = Instant::now();
        let mut sent = 0;
        while sent < len && started.elapsed() < Duration::from_secs(6) {
            if (&writer).write_all(&chunk).is_err() {
                return;
            }
            sent += chunk.len();
        }
    });
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r, false).expect("a 504 while the upstream is deaf");
    assert::gateway_problem(&resp, 504, "upstream-write-timeout");
    upload.join().unwrap();
    holder.join().unwrap();
}

#[test]
fn an_unsolicited_101_is_a_502_invalid_response() {
    let up = Upstream::start(|_| {
        Reply::Raw(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nraw tunnel bytes"
                .to_vec(),
        )
    });
    let gw = gateway("unsolicited-101", Up::addr(&up.addr()));
    let r = request(gw.port, "GET", "/", &[], b"");
    assert::gateway_problem(&r, 502, "invalid-response");
    assert!(!r.text().contains("tunnel"));
}

#[test]
fn requests_past_the_upstream_connection_cap_get_503_upstream_connection_limit() {
    let up = Upstream::start(|_| {
        Reply::Delay(
            Duration::from_millis(800),
            Box::new(Reply::new(200, "OK", &[], b"slow")),
        )
    });
    let gw = gateway("upstream-cap", Up::addr(&up.addr()).max_connections(1));
    let port = gw.port;
    let first = std::thread::spawn(move || request(port, "GET", "/first", &[], b"").status);
    // Wait until the first request holds the group's only place.
    for _ in 0..100 {
        if up.requests().len() == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = request(gw.port, "GET", "/second", &[], b"");
    assert::gateway_problem(&r, 503, "upstream-connection-limit");
    assert_eq!(first.join().unwrap(), 200);
    assert_eq!(
        request(gw.port, "GET", "/third", &[], b"").status,
        200,
        "the place is free again"
    );
}

/// The real binary under `ulimit -n 64` (soft and hard: nothing to raise to), a slow upstream,
/// and more concurrent clients than descriptors.
#[test]
fn running_out_of_file_descriptors_is_a_503_that_marks_no_upstream_address_down() {
    let up = Upstream::start(|_| Reply::Delay(Duration::from_millis(700), Box::new(Reply::new(200, "OK", &[], b"ok"))));
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.path().join("statusgate.yaml");
    let text = Config::new()
        .listen_addr(&format!("127.0.0.1:{port}"))
        .admin_addr(&format!("127.0.0.1:{admin}"))
        .threads(1)
        .grace_period("0s")
        .watch_config(false)
        .upstream("up", Up::addr(&up.addr()).fail_timeout("1m").response_timeout("5s"))
        .route(Route::new("fd", "up").prefix("/"))
        .build();
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec {} run -c {}",
            env!("CARGO_BIN_EXE_statusgate"),
            cfg.display()
        ))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "gateway did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let clients: Vec<_> = (0..70)
        .map(|i| {
            std::thread::spawn(move || {
                let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
                s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
                (&s).write_all(format!("GET /{i} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes())
                    .ok()?;
                let mut r = BufReader::new(s);
                read_response(&mut r, false).ok()
            })
        })
        .collect();
    let answers: Vec<common::Response> = clients.into_iter().filter_map(|c| c.join().unwrap()).collect();
    let exhausted = answers
        .iter()
        .filter(|r| r.status == 503 && r.text().contains("fd-exhausted"))
        .count();
    let no_upstream = answers.iter().filter(|r| r.text().contains("no-upstream")).count();
    let after = (0..50)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            request(port, "GET", "/after", &[], b"").status
        })
        .find(|s| *s == 200);
    let _ = child.kill();
    let _ = child.wait();
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        exhausted >= 1,
        "some clients met EMFILE: {:?}",
        answers.iter().map(|r| r.text()).collect::<Vec<_>>()
    );
    assert_eq!(no_upstream, 0, "EMFILE never took the upstream address out of rotation");
    assert_eq!(after, Some(200), "the upstream still serves afterwards");
    assert!(stderr.contains("open-file limit"), "{stderr}");
}
