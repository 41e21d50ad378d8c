//! `Connection: upgrade` requests (WebSocket) through the gateway, over real loopback sockets:
//! a real WebSocket echo upstream (tokio-tungstenite) and a real WebSocket client; the per-route
//! opt-in (`upgrades:`), the 403 `upgrade-refused` of a route without it, `Upgrade: h2c` served
//! as an ordinary request, the idle timeout, and the smuggling attempts (bytes behind an
//! upgrade request's head never reach the upstream as a request, nor before its 101). Metrics
//! and the access log record each tunnel.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::access_log::{access_line, capture_access_log};
use common::client::read_response;
use common::config::{Config, Route, Upstream as Up};
use common::{assert, Gateway, Reply, Response, Upstream};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response as WsResponse};
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket echo server on a loopback port (its own thread and runtime): every text and
/// binary message comes back; the close handshake is tungstenite's. Records each handshake's
/// request header fields.
struct Echo {
    port: u16,
    handshakes: Arc<Mutex<Vec<Fields>>>,
}

/// One handshake's request header fields.
type Fields = Vec<(String, String)>;

// The handshake callback's signature (and its large `Err`) is tungstenite's.
#[allow(clippy::result_large_err)]
fn start_echo() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let seen = handshakes.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((tcp, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let record = |req: &Request, resp: WsResponse| {
                        let fields = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                            .collect();
                        seen.lock().unwrap().push(fields);
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, record).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
    });
    Echo { port, handshakes }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn websocket_gateway(route: &str, echo: &Echo, idle: Option<&str>) -> Gateway {
    let mut config = Config::new()
        .upstream("ws", Up::addr(&format!("127.0.0.1:{}", echo.port)))
        .route(Route::new(route, "ws").upgrades(&["websocket"]));
    if let Some(idle) = idle {
        config = config.upgrade_idle_timeout(idle);
    }
    Gateway::start(&config.build(), &[])
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A WebSocket handshake through the gateway with `X-Request-Id: id`.
async fn connect(port: u16, id: &str) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut req = format!("ws://127.0.0.1:{port}/chat").into_client_request().unwrap();
    req.headers_mut().insert("x-request-id", id.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("the handshake succeeds through the gateway");
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers()["x-request-id"], id);
    assert_eq!(resp.headers()["x-upstream-status"], "101");
    ws
}

/// The next message, bounded so a broken tunnel fails the test instead of hanging it.
async fn next(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the tunnel answers (or ends) within 10s")
}

#[test]
fn text_and_binary_messages_cross_a_websocket_tunnel_both_ways_and_the_close_handshake_completes() {
    capture_access_log();
    let echo = start_echo();
    let gw = websocket_gateway("ws-echo", &echo, None);
    let binary = vec![0u8, 1, 2, 254, 255];
    runtime().block_on(async {
        let mut ws = connect(gw.port, "ws-echo-1").await;
        ws.send(Message::text("hello through the gateway")).await.unwrap();
        match next(&mut ws).await {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "hello through the gateway"),
            other => panic!("expected the text echo, got {other:?}"),
        }
        ws.send(Message::binary(binary.clone())).await.unwrap();
        match next(&mut ws).await {
            Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], &binary[..]),
            other => panic!("expected the binary echo, got {other:?}"),
        }
        ws.close(None).await.unwrap();
        let mut saw_close = false;
        loop {
            match next(&mut ws).await {
                Some(Ok(Message::Close(_))) => saw_close = true,
                Some(Ok(other)) => panic!("unexpected {other:?} after close"),
                None | Some(Err(_)) => break,
            }
        }
        assert!(saw_close, "the upstream's close frame reaches the client");
    });
    // The upstream got the handshake's end-to-end fields and the upgrade itself.
    let seen = echo.handshakes.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(field(&seen[0], "upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")));
    assert!(field(&seen[0], "connection").is_some_and(|c| c.eq_ignore_ascii_case("upgrade")));
    assert!(field(&seen[0], "sec-websocket-key").is_some());
    assert_eq!(field(&seen[0], "sec-websocket-version"), Some("13"));
    assert_eq!(field(&seen[0], "x-request-id"), Some("ws-echo-1"));

    let route = ("route", "ws-echo");
    gw.expect_metric(
        "statusgate_upgrades_total",
        &[route, ("result", "accepted")],
        1.0,
        "one tunnel",
    );
    gw.expect_metric("statusgate_tunnels_open", &[route], 0.0, "the tunnel is over");
    gw.expect_metric(
        "statusgate_tunnel_duration_seconds_count",
        &[route],
        1.0,
        "one tunnel ended",
    );
    let line = access_line("ws-echo-1");
    assert_eq!(line["upgraded"], true, "{line}");
    assert_eq!(line["upgrade"], "websocket", "{line}");
    assert_eq!(line["status"], 101, "{line}");
    assert_eq!(line["tunnel_end"], "upstream_closed", "{line}");
    let (up, down) = (
        line["tunnel_to_upstream_bytes"].as_u64().unwrap(),
        line["tunnel_to_client_bytes"].as_u64().unwrap(),
    );
    // Two masked client frames and a close frame up; two echoes and a close frame down.
    assert!(up > 30 && down > 30, "{line}");
    let bytes = |d| gw.metric("statusgate_tunnel_bytes_total", &[route, ("direction", d)]);
    assert_eq!((bytes("to_upstream"), bytes("to_client")), (up as f64, down as f64));
}

#[test]
fn an_idle_tunnel_is_closed_after_upgrade_idle_timeout() {
    capture_access_log();
    let echo = start_echo();
    let gw = websocket_gateway("ws-idle", &echo, Some("300ms"));
    runtime().block_on(async {
        let mut ws = connect(gw.port, "ws-idle-1").await;
        // Silence both ways: the gateway ends the tunnel (no close frame: the stream just ends).
        match next(&mut ws).await {
            None | Some(Err(_)) => {}
            Some(Ok(m)) => panic!("expected the tunnel to end, got {m:?}"),
        }
    });
    let line = access_line("ws-idle-1");
    assert_eq!(line["tunnel_end"], "idle", "{line}");
    gw.expect_metric(
        "statusgate_tunnels_open",
        &[("route", "ws-idle")],
        0.0,
        "closed when idle",
    );
}

const WS_HEAD: &str = "GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
const SMUGGLED: &[u8] = b"GET /secret HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Writes `raw` in one write, reads one response, then everything until the gateway closes
/// (bounded: a connection left open fails the read).
fn exchange_until_closed(port: u16, raw: &[u8]) -> (Response, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw).unwrap();
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r, false).unwrap();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest)
        .expect("the gateway closes the connection after the answer");
    (resp, rest)
}

#[test]
fn a_route_without_upgrades_answers_403_upgrade_refused_and_the_upstream_never_sees_it() {
    let up = Upstream::start(|_| Reply::json(200, "OK", "{}"));
    let gw = Gateway::start(
        &Config::new()
            .upstream("plain", Up::addr(&up.addr()))
            .route(Route::new("no-upgrades", "plain"))
            .build(),
        &[],
    );
    let raw = format!("{WS_HEAD}X-Request-Id: refused-1\r\n\r\n");
    let (r, rest) = exchange_until_closed(gw.port, raw.as_bytes());
    let p = assert::strict_gateway_problem(&r, 403, "upgrade-refused");
    assert_eq!(p["detail"], "This route does not forward `Upgrade: websocket`.");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(rest.is_empty(), "nothing after the refusal");
    assert!(up.requests().is_empty(), "the upstream never sees a refused upgrade");
    assert_eq!(up.connections.load(std::sync::atomic::Ordering::Relaxed), 0);
    let route = ("route", "no-upgrades");
    gw.expect_metric(
        "statusgate_client_failures_total",
        &[route, ("kind", "upgrade_refused")],
        1.0,
        "counted as the client's failure",
    );
    gw.expect_metric(
        "statusgate_upgrades_total",
        &[route, ("result", "refused")],
        1.0,
        "refused",
    );
}

#[test]
fn upgrade_h2c_is_served_as_an_ordinary_http11_request() {
    let up = Upstream::start(|_| Reply::json(200, "OK", r#"{"ok":true}"#));
    let gw = Gateway::start(
        &Config::new()
            .upstream("plain", Up::addr(&up.addr()))
            .route(Route::new("h2c", "plain").upgrades(&["websocket"]))
            .build(),
        &[],
    );
    // What `curl --http2 http://...` sends, then a second request on the same connection.
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let first = read_response(&mut r, false).unwrap();
    assert_eq!((first.status, first.text().as_str()), (200, r#"{"ok":true}"#));
    assert_ne!(first.header("connection"), Some("close"), "the connection stays usable");
    s.write_all(b"GET /b HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let second = read_response(&mut r, false).unwrap();
    assert_eq!(second.status, 200);
    let seen = up.requests();
    assert_eq!(seen.iter().map(|q| q.path.as_str()).collect::<Vec<_>>(), ["/a", "/b"]);
    for name in ["upgrade", "http2-settings"] {
        assert!(seen[0].header(name).is_none(), "{name} is not forwarded");
    }
    assert_ne!(
        seen[0].header("connection").map(str::to_ascii_lowercase),
        Some("upgrade".to_owned())
    );
}

#[test]
fn a_smuggled_request_behind_a_declined_upgrade_never_reaches_the_upstream() {
    let up = Upstream::start(|_| {
        Reply::new(
            426,
            "Upgrade Required",
            &[("Upgrade", "websocket"), ("Content-Type", "text/plain")],
            b"websocket only",
        )
    });
    let gw = Gateway::start(
        &Config::new()
            .upstream("ws", Up::addr(&up.addr()))
            .route(Route::new("declined", "ws").upgrades(&["websocket"]))
            .build(),
        &[],
    );
    let mut raw = format!("{WS_HEAD}\r\n").into_bytes();
    raw.extend_from_slice(SMUGGLED);
    let (r, rest) = exchange_until_closed(gw.port, &raw);
    // The 426 is normalized like any other response (not canonical: the 4xx fallback).
    assert::upstream_problem(&r, 400, "Bad Request", 426);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        rest.is_empty(),
        "no second response: {}",
        String::from_utf8_lossy(&rest)
    );
    let seen = up.requests();
    assert_eq!(seen.len(), 1, "exactly one request upstream: {seen:?}");
    assert_eq!(seen[0].path, "/chat");
    assert_eq!(seen[0].header("upgrade"), Some("websocket"));
    gw.expect_metric(
        "statusgate_upgrades_total",
        &[("route", "declined"), ("result", "declined")],
        1.0,
        "declined by the upstream",
    );
}

/// What the raw upstream of the smuggling test saw.
struct Seen {
    head: String,
    /// Bytes that arrived after the head and before the 101 (must be none).
    early: Vec<u8>,
    /// Bytes that arrived after the 101, as tunnel data.
    tunnel: Vec<u8>,
}

#[test]
fn bytes_behind_an_upgrade_request_reach_the_upstream_only_after_its_101_as_tunnel_data() {
    capture_access_log();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head_end = loop {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "the gateway closed before a whole head");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let mut early = buf.split_off(head_end);
        // Correctness, not timing: nothing may arrive before the 101, so a short wait that
        // sees a byte proves the gateway forwarded it early.
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        if let Ok(n) = s.read(&mut chunk) {
            early.extend_from_slice(&chunk[..n]);
        }
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tunnel = Vec::new();
        while tunnel.len() < SMUGGLED.len() {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => tunnel.extend_from_slice(&chunk[..n]),
            }
        }
        s.write_all(b"pong").unwrap();
        let _ = s.shutdown(std::net::Shutdown::Both);
        tx.send(Seen {
            head: String::from_utf8_lossy(&buf).into_owned(),
            early,
            tunnel,
        })
        .unwrap();
    });
    let gw = Gateway::start(
        &Config::new()
            .upstream("raw", Up::addr(&addr.to_string()))
            .route(Route::new("smuggle", "raw").upgrades(&["websocket"]))
            .build(),
        &[],
    );
    let mut raw = format!("{WS_HEAD}X-Request-Id: smuggle-1\r\n\r\n").into_bytes();
    raw.extend_from_slice(SMUGGLED);
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&raw).unwrap();
    let mut r = BufReader::new(s);
    let switched = read_response(&mut r, false).unwrap();
    assert_eq!(switched.status, 101, "{switched:?}");
    assert_eq!(switched.header("upgrade"), Some("websocket"));
    assert_eq!(switched.header("connection"), Some("upgrade"));
    assert_eq!(
        switched.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(switched.header("x-request-id"), Some("smuggle-1"));
    let mut from_upstream = Vec::new();
    r.read_to_end(&mut from_upstream)
        .expect("the tunnel ends when the upstream closes");
    assert_eq!(from_upstream, b"pong");

    let seen = rx.recv_timeout(Duration::from_secs(10)).expect("the upstream finished");
    assert!(seen.head.starts_with("GET /chat HTTP/1.1\r\n"), "{}", seen.head);
    assert!(
        seen.head.to_ascii_lowercase().contains("\r\nupgrade: websocket\r\n"),
        "{}",
        seen.head
    );
    assert!(
        seen.early.is_empty(),
        "bytes reached the upstream before its 101: {}",
        String::from_utf8_lossy(&seen.early)
    );
    assert_eq!(seen.tunnel, SMUGGLED, "after the 101 the same bytes are tunnel data");

    let route = ("route", "smuggle");
    gw.expect_metric(
        "statusgate_upgrades_total",
        &[route, ("result", "accepted")],
        1.0,
        "upgraded",
    );
    let line = access_line("smuggle-1");
    assert_eq!(line["upgraded"], true, "{line}");
    assert_eq!(line["tunnel_to_upstream_bytes"], SMUGGLED.len(), "{line}");
    assert_eq!(line["tunnel_to_client_bytes"], 4, "{line}");
    let bytes = |d| gw.metric("statusgate_tunnel_bytes_total", &[route, ("direction", d)]);
    assert_eq!((bytes("to_upstream"), bytes("to_client")), (SMUGGLED.len() as f64, 4.0));
}

#[test]
fn bad_upgrades_settings_are_load_problems_at_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("statusgate.yaml");
    let text = Config::new()
        .listen_addr("127.0.0.1:1")
        .no_admin()
        .upgrade_idle_timeout("0s")
        .upstream("h1", Up::addr("127.0.0.1:2"))
        .upstream("h2", Up::addr("127.0.0.1:3").set("http2", "true"))
        .route(
            Route::new("a", "h1")
                .prefix("/a/")
                .upgrades(&["WebSocket", "h2c", "web/socket"]),
        )
        .route(Route::new("b", "h2").prefix("/b/").upgrades(&["websocket"]))
        .build();
    std::fs::write(&main, &text).unwrap();
    let problems = statusgate::snapshot::load(&main).expect_err("rejected");
    let texts: Vec<String> = problems.iter().map(|p| p.kind.to_string()).collect();
    assert!(problems.iter().all(|p| p.kind.name() == "upgrade"), "{texts:?}");
    for want in [
        "limits.upgrade_idle_timeout must be above 0",
        "upgrades: h2c is never forwarded",
        "upgrades: `web/socket` is not a protocol name",
        "route `b` goes to upstream `h2`, which has http2: true",
    ] {
        assert!(texts.iter().any(|t| t.contains(want)), "`{want}` not in {texts:?}");
    }
    assert_eq!(problems.len(), 4, "{texts:?}");
}

#[test]
fn the_documented_upgrades_example_loads() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    let at = doc.find("<!-- upgrades-example -->").expect("the marker");
    let rest = &doc[at..];
    let start = rest.find("```yaml\n").unwrap() + "```yaml\n".len();
    let end = rest[start..].find("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("statusgate.yaml");
    std::fs::write(&main, &rest[start..start + end]).unwrap();
    let snap = statusgate::snapshot::load(&main).unwrap_or_else(|ps| panic!("{ps:?}"));
    assert_eq!(snap.routes[0].upgrades, ["websocket"]);
    assert!(snap.routes[1].upgrades.is_empty());
    assert_eq!(snap.limits.upgrade_idle_timeout, Duration::from_secs(300));
}

#[test]
fn a_gateway_failure_on_a_forwarded_upgrade_closes_the_connection_too() {
    // A port nobody listens on: the gateway answers 502 itself.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gw = Gateway::start(
        &Config::new()
            .upstream("down", Up::addr(&closed.to_string()))
            .route(Route::new("refused-upstream", "down").upgrades(&["websocket"]))
            .build(),
        &[],
    );
    let mut raw = format!("{WS_HEAD}\r\n").into_bytes();
    raw.extend_from_slice(SMUGGLED);
    let (r, rest) = exchange_until_closed(gw.port, &raw);
    assert::strict_gateway_problem(&r, 502, "upstream-refused");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        rest.is_empty(),
        "the smuggled request is never answered: {}",
        String::from_utf8_lossy(&rest)
    );
}

#[test]
fn a_client_that_hangs_up_ends_the_tunnel_and_the_upstream_connection() {
    capture_access_log();
    let echo = start_echo();
    let gw = websocket_gateway("ws-hangup", &echo, None);
    runtime().block_on(async {
        let mut ws = connect(gw.port, "ws-hangup-1").await;
        ws.send(Message::text("bye")).await.unwrap();
        assert!(matches!(next(&mut ws).await, Some(Ok(Message::Text(_)))));
        // Gone without a close frame: the TCP connection just closes.
        drop(ws);
    });
    let line = access_line("ws-hangup-1");
    assert_eq!(line["tunnel_end"], "client_closed", "{line}");
    gw.expect_metric("statusgate_tunnels_open", &[("route", "ws-hangup")], 0.0, "ended");
}
