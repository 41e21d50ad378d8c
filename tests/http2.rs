//! HTTP/2 from clients: curl and nghttp2's client tools (and the h2 crate, for a stream reset)
//! against the gateway. Every normalization and failure scenario gives the same status,
//! headers and body over HTTP/2 (h2c with prior knowledge, and ALPN h2 over TLS) as over
//! HTTP/1.1; streams of one connection run concurrently, and a stream the client resets leaves
//! its siblings alone.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::assert;
use common::config::{Config, Route, Upstream as Up};
use common::curl::{curl, Proto};
use common::tls::Ca;
use common::{Gateway, Reply, Response, Upstream};

const PROFILE: &str = r#"
rules:
  - name: throttled
    when:
      status: 400
      json: { /error_code: { equals: EndPoint.0022, ignore_case: true } }
    then:
      status: 429
      headers: { set: { Retry-After: "2" } }
      problem: { detail: "${json:/error_msg}", vendor_code: "${json:/error_code}" }
  - name: dotnet-error
    when:
      status: 5xx
      content_type: "*/xml"
      xml: { Error/@Message: { exists: true } }
    then:
      problem: { detail: "${xml:Error/@Message}" }
  - name: created
    when: { status: 200, method: POST, path: /v1/*/things }
    then:
      status: 201
      headers: { set: { Location: "/v1/things/${json:/thing/id}" } }
  - name: strip-powered-by
    when: { status: 200, headers: { X-Powered-By: { exists: true } } }
    then: { headers: { remove: [X-Powered-By] } }
"#;

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// The scripted vendor: what it answers depends on the path.
fn vendor(req: &common::upstream::Received) -> Reply {
    let path = req.path.split('?').next().unwrap_or("");
    match path {
        "/ok" => Reply::new(
            200,
            "Success",
            &[("Content-Type", "application/json"), ("ETag", "\"r1\""), ("X-Powered-By", "ASP.NET")],
            br#"{"id":1}"#,
        ),
        "/throttle" => Reply::json(
            400,
            "BadRequest",
            r#"{"error_code":"EndPoint.0022","error_msg":"The number of requests exceeded the limit."}"#,
        ),
        "/xml-error" => Reply::xml(
            500,
            "Internal",
            r#"<Error Message="Job 7 failed" StackTrace="at Veeam.Backup.Core.Run() in C:\src\Job.cs:line 12"/>"#,
        ),
        "/v1/p/things" => Reply::json(200, "OK", r#"{"thing":{"id":"t-9"}}"#),
        "/teapot" => Reply::new(418, "I'm a teapot", &[("Content-Type", "text/plain")], b"short and stout"),
        "/empty" => Reply::new(204, "No Content", &[("X-Trace", "e1")], b""),
        "/chunked" => Reply::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                .to_vec(),
        ),
        "/gzip-throttle" => Reply::new(
            400,
            "BadRequest",
            &[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
            &gzip(br#"{"error_code":"EndPoint.0022","error_msg":"zipped"}"#),
        ),
        "/large" => Reply::new(200, "OK", &[("Content-Type", "application/octet-stream")], &vec![b'x'; 300_000]),
        "/echo" => Reply::new(200, "OK", &[("Content-Type", "application/octet-stream")], &req.body),
        "/reset" => Reply::Reset,
        "/close" => Reply::Close,
        "/garbage" => Reply::Raw(b"NOT HTTP AT ALL\r\n\r\n".to_vec()),
        "/hang" => Reply::Hang,
        _ => Reply::json(404, "Not Found", r#"{"message":"no such thing"}"#),
    }
}

struct Setup {
    gw: Gateway,
    up: Upstream,
    tls_port: u16,
}

/// One gateway with a plain listener accepting h2c and a TLS listener offering h2 by ALPN
/// (its certificate names `localhost`), in front of the scripted vendor.
fn setup(route: &str) -> Setup {
    let up = Upstream::start(vendor);
    let ca = Ca::new("h2-test-ca");
    let leaf = ca.leaf(&["localhost"]);
    let tls_port = common::gateway::free_port();
    let cfg = Config::new()
        .tls_listen(&format!("127.0.0.1:{tls_port}"), "gw.crt", "gw.key")
        .set("http2", "h2c", "true")
        .body_buffer("64KiB")
        .request_body("1MiB")
        .upstream("up", Up::addr(&up.addr()).response_timeout("500ms"))
        .route(Route::new(route, "up").prefix("/").profile("profile.yaml"))
        .build();
    let gw = Gateway::start(
        &cfg,
        &[
            ("profile.yaml", PROFILE),
            ("gw.crt", &leaf.cert_pem),
            ("gw.key", &leaf.key_pem),
            ("ca.pem", &ca.pem),
        ],
    );
    wait_port(tls_port);
    // A request body over the 1 MiB limit.
    std::fs::write(gw.path("big.bin"), vec![b'z'; 1_500_000]).unwrap();
    Setup { gw, up, tls_port }
}

fn wait_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listens on {port}");
}

impl Setup {
    /// curl over `proto` to `path`, with curl's other `args`.
    fn get(&self, proto: Proto, path: &str, args: &[&str]) -> common::curl::Exchange {
        let url = match proto {
            Proto::H2Tls => format!("https://localhost:{}{path}", self.tls_port),
            _ => format!("http://127.0.0.1:{}{path}", self.gw.port),
        };
        let ca = self.gw.path("ca.pem");
        let mut all = vec!["--cacert", ca.to_str().unwrap()];
        all.extend_from_slice(args);
        curl(proto, &url, &all)
    }
}

/// What a client can compare across protocols: the status, the header fields that are not
/// about the connection (sorted), and the body.
fn comparable(r: &Response) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "date" | "connection" | "keep-alive" | "transfer-encoding"))
        .cloned()
        .collect();
    headers.sort();
    (r.status, headers, r.body.clone())
}

/// The scenarios of tests/normalize.rs and tests/failures.rs that make sense over HTTP/2:
/// (name, curl arguments, path).
const SCENARIOS: &[(&str, &[&str], &str)] = &[
    ("success", &[], "/ok"),
    ("body rule rewrite", &[], "/throttle"),
    (
        "problem+xml on request",
        &["-H", "Accept: application/problem+xml"],
        "/throttle",
    ),
    ("xml error without stack trace", &[], "/xml-error"),
    (
        "POST with a rule on method and path",
        &["-X", "POST", "--data-binary", "{}"],
        "/v1/p/things",
    ),
    ("status fallback", &[], "/teapot"),
    ("bodiless 204", &[], "/empty"),
    ("HEAD", &["-I"], "/ok"),
    ("chunked upstream body", &[], "/chunked"),
    ("gzip body decoded for matching", &[], "/gzip-throttle"),
    ("body larger than the buffer passes whole", &[], "/large"),
    ("request body forwarded", &["--data-binary", "a request body"], "/echo"),
    ("upstream reset", &[], "/reset"),
    ("upstream closed", &[], "/close"),
    ("invalid upstream response", &[], "/garbage"),
    ("response deadline", &[], "/hang"),
    ("bad target", &["--path-as-is"], "/a/../../etc/passwd"),
];

#[test]
fn every_scenario_answers_the_same_over_http2_as_over_http_1_1() {
    let s = setup("h2-same");
    for (i, (name, args, path)) in SCENARIOS.iter().enumerate() {
        let mut answers = Vec::new();
        for proto in [Proto::Http11, Proto::H2c, Proto::H2Tls] {
            // One request id for all three: problem bodies carry it.
            let id = format!("same-{i}");
            let header = format!("X-Request-Id: {id}");
            let mut a: Vec<&str> = vec!["-H", &header];
            a.extend_from_slice(args);
            let ex = s.get(proto, path, &a);
            let want_version = if proto == Proto::Http11 { "1.1" } else { "2" };
            assert_eq!(ex.version, want_version, "{name}: {proto:?} negotiated");
            let mut seen = comparable(&ex.response);
            if *name == "HEAD" {
                seen.2.clear(); // curl -I writes the header block where the body would go
            }
            answers.push((proto, seen));
        }
        let (_, h1) = &answers[0];
        for (proto, other) in &answers[1..] {
            assert_eq!(
                (other.0, &other.1),
                (h1.0, &h1.1),
                "{name}: status and headers over {proto:?} differ from HTTP/1.1"
            );
            assert!(
                other.2 == h1.2,
                "{name}: body over {proto:?} differs from HTTP/1.1:\n{}\n{}",
                String::from_utf8_lossy(&other.2),
                String::from_utf8_lossy(&h1.2)
            );
        }
        // And the answer is the one the HTTP/1.1 tests expect.
        let status = h1.0;
        let expected = match *name {
            "success"
            | "HEAD"
            | "chunked upstream body"
            | "body larger than the buffer passes whole"
            | "request body forwarded" => 200,
            "body rule rewrite" | "problem+xml on request" | "gzip body decoded for matching" => 429,
            "xml error without stack trace" => 500,
            "POST with a rule on method and path" => 201,
            "status fallback" | "bad target" => 400,
            "bodiless 204" => 204,
            "upstream reset" | "upstream closed" | "invalid upstream response" => 502,
            "response deadline" => 504,
            other => panic!("no expectation for {other}"),
        };
        assert_eq!(status, expected, "{name}");
    }
    // The body-dependent rewrite is a full problem over HTTP/2 too.
    let ex = s.get(Proto::H2c, "/throttle", &["-H", "X-Request-Id: h2-problem"]);
    let p = assert::upstream_problem(&ex.response, 429, "", 400);
    assert_eq!(p["vendor_code"], "EndPoint.0022");
    assert_eq!(ex.response.header("retry-after"), Some("2"));
    let ex = s.get(Proto::H2Tls, "/xml-error", &[]);
    assert::no_leak(&ex.response.text(), &["Veeam.Backup", "Job.cs"]);
    // The request body reached the upstream whole over both HTTP/2 paths.
    let echoed: Vec<_> = s.up.requests().into_iter().filter(|r| r.path == "/echo").collect();
    assert!(echoed.iter().all(|r| r.body == b"a request body"), "{echoed:?}");
    // Metrics count HTTP/2 requests like HTTP/1.1 ones: three protocols per scenario.
    s.gw.expect_metric(
        "statusgate_rule_matches_total",
        &[("route", "h2-same"), ("rule", "throttled")],
        // body rule rewrite, problem+xml, gzip: three protocols each, plus the one above.
        10.0,
        "",
    );
}

#[test]
fn a_body_over_the_limit_is_413_and_the_stream_ends_without_error() {
    let s = setup("h2-too-large");
    // curl 7.88 reports the RST_STREAM(NO_ERROR) that follows an early response as a failure
    // (RFC 9113 section 8.1 allows it): nghttp shows the frames.
    let url = format!("http://127.0.0.1:{}/echo", s.gw.port);
    let out = Command::new("nghttp")
        .args(["-n", "-v", "-d"])
        .arg(s.gw.path("big.bin"))
        .arg(&url)
        .output()
        .expect("nghttp runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(":status: 413"), "{text}");
    assert!(
        text.contains("urn:statusgate:problem:request-too-large")
            || text.contains("content-type: application/problem+json"),
        "{text}"
    );
    assert!(
        text.contains("recv RST_STREAM") && text.contains("error_code=NO_ERROR"),
        "the unread body is declined with NO_ERROR: {text}"
    );
    assert!(s.up.requests().is_empty(), "nothing reached the upstream");
}

#[test]
fn upstreams_get_http_1_1_with_one_cookie_field_and_the_authority_as_host() {
    let s = setup("h2-cookies");
    let url = format!("http://127.0.0.1:{}/ok?q=1", s.gw.port);
    let out = Command::new("nghttp")
        .args(["-n", "-H", "cookie: a=1", "-H", "cookie: b=2", &url])
        .output()
        .expect("nghttp runs (scripts/test installs nghttp2-client)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = s.up.requests();
    let r = seen
        .iter()
        .find(|r| r.path == "/ok?q=1")
        .expect("the upstream saw the request");
    let cookies: Vec<_> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
        .collect();
    assert_eq!(cookies.len(), 1, "HTTP/1.1 allows one Cookie field: {:?}", r.headers);
    assert_eq!(cookies[0].1, "a=1; b=2");
    assert_eq!(r.header("host"), Some(format!("127.0.0.1:{}", s.gw.port).as_str()));
    assert!(r.header("te").is_none() && r.header("connection").is_none());
}

#[test]
fn streams_of_one_connection_are_served_concurrently() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (f, m) = (in_flight.clone(), most.clone());
    let up = Upstream::start(move |_| {
        let now = f.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(now, Ordering::SeqCst);
        // Hold the request until a sibling has arrived (bounded: a serial gateway never sends one).
        for _ in 0..100 {
            if m.load(Ordering::SeqCst) > 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        f.fetch_sub(1, Ordering::SeqCst);
        Reply::json(200, "OK", r#"{"ok":true}"#)
    });
    let cfg = Config::new()
        .set("http2", "h2c", "true")
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("h2-concurrent", "up").prefix("/"))
        .build();
    let gw = Gateway::start(&cfg, &[]);
    let url = format!("http://127.0.0.1:{}/c", gw.port);
    // nghttp: one connection, 8 requests multiplexed on it.
    let out = Command::new("nghttp")
        .args(["-n", "-v", "-m", "8", &url])
        .output()
        .expect("nghttp runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches(":status: 200").count(), 8, "{text}");
    assert_eq!(
        text.matches("recv SETTINGS frame").count(),
        2,
        "one connection (settings + ack)"
    );
    assert!(most.load(Ordering::SeqCst) > 1, "the upstream saw streams in parallel");
    gw.expect_metric(
        "statusgate_responses_total",
        &[("route", "h2-concurrent"), ("code", "200")],
        8.0,
        "",
    );
}

#[test]
fn a_stream_reset_by_the_client_leaves_its_siblings_alone() {
    let up = Upstream::start(|req| {
        if req.path == "/slow" {
            std::thread::sleep(Duration::from_millis(300));
        }
        Reply::new(200, "OK", &[("Content-Type", "text/plain")], &vec![b'y'; 50_000])
    });
    let cfg = Config::new()
        .set("http2", "h2c", "true")
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("h2-reset", "up").prefix("/"))
        .build();
    let gw = Gateway::start(&cfg, &[]);
    let port = gw.port;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (sibling_status, sibling_len) = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut client = client.ready().await.unwrap();
        let req = |path: &str| {
            http::Request::get(format!("http://127.0.0.1:{port}{path}"))
                .body(())
                .unwrap()
        };
        let (doomed, mut doomed_stream) = client.send_request(req("/slow"), true).unwrap();
        let mut client = client.ready().await.unwrap();
        let (sibling, _) = client.send_request(req("/slow"), true).unwrap();
        // The client gives up on the first stream while both are in flight.
        doomed_stream.send_reset(h2::Reason::CANCEL);
        drop(doomed);
        let resp = tokio::time::timeout(Duration::from_secs(10), sibling)
            .await
            .unwrap()
            .unwrap();
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut len = 0;
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.data())
            .await
            .unwrap()
        {
            let chunk = chunk.unwrap();
            len += chunk.len();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        // The connection still serves a new stream afterwards.
        let mut client = client.ready().await.unwrap();
        let (third, _) = client.send_request(req("/fast"), true).unwrap();
        let third = tokio::time::timeout(Duration::from_secs(10), third)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(third.status(), 200);
        (status, len)
    });
    assert_eq!((sibling_status, sibling_len), (200, 50_000));
}

#[test]
fn h2c_is_off_unless_configured_and_limits_reach_the_connection() {
    let up = Upstream::start(|_| Reply::json(200, "OK", "{}"));
    // Off by default: the HTTP/2 preface is not HTTP/1.1, so it gets a 400 problem.
    let cfg = Config::new()
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("h2c-off", "up").prefix("/"))
        .build();
    let gw = Gateway::start(&cfg, &[]);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            &format!("http://127.0.0.1:{}/x", gw.port),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "no HTTP/2 without http2.h2c");
    assert!(up.requests().is_empty());
    drop(gw);
    // On, with a stream limit that nghttp reads from the server's SETTINGS.
    let cfg = Config::new()
        .set("http2", "h2c", "true")
        .set("http2", "max_concurrent_streams", "7")
        .set("http2", "stream_window", "1MiB")
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("h2c-on", "up").prefix("/"))
        .build();
    let gw = Gateway::start(&cfg, &[]);
    let out = Command::new("nghttp")
        .args(["-n", "-v", &format!("http://127.0.0.1:{}/x", gw.port)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7"), "{text}");
    assert!(text.contains("SETTINGS_INITIAL_WINDOW_SIZE(0x04):1048576"), "{text}");
}

#[test]
fn http2_limits_out_of_range_are_positioned_problems() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statusgate.yaml");
    let text = "listen: 127.0.0.1:1\nhttp2:\n  max_concurrent_streams: 0\n  stream_window: 4096MiB\n  max_header_list_size: 10\nupstreams: {}\nroutes: []\n";
    std::fs::write(&path, text).unwrap();
    let problems: BTreeMap<String, String> = statusgate::snapshot::load(&path)
        .expect_err("rejected")
        .iter()
        .map(|p| {
            let s = p.to_string();
            let at = s.split(": ").next().unwrap().rsplit('/').next().unwrap().to_owned();
            (at, s)
        })
        .collect();
    assert!(
        problems["statusgate.yaml:3:27"].contains("http2.max_concurrent_streams: 0 is outside 1-"),
        "{problems:#?}"
    );
    assert!(
        problems["statusgate.yaml:4:18"].contains("http2.stream_window: 4294967296 is outside 1-2147483647"),
        "{problems:#?}"
    );
    assert!(
        problems["statusgate.yaml:5:25"].contains("http2.max_header_list_size: 10 is outside 1024-"),
        "{problems:#?}"
    );
}

#[test]
fn the_streams_of_one_connection_share_its_place_under_client_connections() {
    let up = Upstream::start(|_| {
        std::thread::sleep(Duration::from_millis(100));
        Reply::json(200, "OK", "{}")
    });
    let cfg = Config::new()
        .set("http2", "h2c", "true")
        .client_connections(1)
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("h2-places", "up").prefix("/"))
        .build();
    let gw = Gateway::start(&cfg, &[]);
    let port = gw.port;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (statuses, second) = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        // Four streams at once on the one connection the listener allows.
        let mut pending = Vec::new();
        for i in 0..4 {
            let mut c = client.clone().ready().await.unwrap();
            let req = http::Request::get(format!("http://127.0.0.1:{port}/s{i}"))
                .body(())
                .unwrap();
            pending.push(c.send_request(req, true).unwrap().0);
        }
        let mut statuses = Vec::new();
        for p in pending {
            statuses.push(
                tokio::time::timeout(Duration::from_secs(10), p)
                    .await
                    .unwrap()
                    .unwrap()
                    .status()
                    .as_u16(),
            );
        }
        // The HTTP/2 connection is admitted (it has answered) and still open: a second
        // connection is over the limit.
        let second = tokio::task::spawn_blocking(move || common::request(port, "GET", "/other", &[], b""))
            .await
            .unwrap();
        drop(client);
        (statuses, second)
    });
    assert_eq!(statuses, [200, 200, 200, 200], "streams are not connections");
    assert::strict_gateway_problem(&second, 503, "client-connection-limit");
}

#[test]
fn the_documented_http2_example_passes_check() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    let section = &doc[doc.find("### HTTP/2 from clients").expect("the section")..];
    let start = section.find("```yaml\n").unwrap() + "```yaml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statusgate.yaml");
    std::fs::write(&path, example).unwrap();
    let snap = statusgate::snapshot::load(&path).unwrap_or_else(|ps| panic!("{ps:?}"));
    assert!(snap.boot.h2c);
    assert_eq!(snap.limits.http2.max_concurrent_streams, 100);
}
