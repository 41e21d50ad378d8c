//! OpenTelemetry traces (`tracing:`) end to end: client -> gateway -> scripted upstream on
//! loopback, the spans exported over OTLP/HTTP to a receiver that decodes the real protobuf
//! messages (tests/common/otlp.rs, the official `opentelemetry-proto` types). The route uses
//! the shipped Huawei VPCEP profile: a 400 `EndPoint.0022` is the rule `throttled`'s 429.

mod common;

use std::time::Duration;

use common::access_log::{access_line, capture_access_log};
use common::config::{Config, Route, Upstream as Up};
use common::gateway::free_port;
use common::otlp::{Blackhole, ReceivedSpan, Receiver};
use common::{request, Gateway, Reply, Upstream};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

const HUAWEI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/huawei-vpcep.yaml");
const THROTTLED: &str = r#"{"error_code":"EndPoint.0022","error_msg":"Request throttled"}"#;
const PATH: &str = "/vpcep/v1/0605767d/vpc-endpoints";

/// A Huawei upstream that throttles every request (and records what it was sent).
fn throttling_upstream() -> Upstream {
    Upstream::start(|_| Reply::json(400, "Bad Request", THROTTLED))
}

/// A gateway routing `/vpcep/` to `upstream` with the shipped Huawei profile, tracing to
/// `endpoint` with `tracing` keys beside it.
fn gateway(upstream: u16, endpoint: Option<&str>, tracing: &[(&str, &str)]) -> Gateway {
    let mut config = Config::new()
        .upstream("huawei", Up::addr(&format!("127.0.0.1:{upstream}")))
        .route(Route::new("vpcep", "huawei").prefix("/vpcep/").profile(HUAWEI));
    if let Some(endpoint) = endpoint {
        config = config.tracing("endpoint", endpoint);
    }
    for (k, v) in tracing {
        config = config.tracing(k, v);
    }
    Gateway::start(&config.build(), &[])
}

/// A `traceparent`'s four fields: version, trace id, parent (span) id, flags.
fn fields(traceparent: &str) -> [String; 4] {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent `{traceparent}`");
    assert_eq!(
        (parts[1].len(), parts[2].len(), parts[3].len()),
        (32, 16, 2),
        "traceparent `{traceparent}`"
    );
    [0, 1, 2, 3].map(|i| parts[i].to_owned())
}

fn only(spans: &[ReceivedSpan], kind: SpanKind) -> &ReceivedSpan {
    let of_kind: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.kind() == kind).collect();
    assert_eq!(of_kind.len(), 1, "one {kind:?} span expected: {spans:?}");
    of_kind[0]
}

#[test]
fn a_request_span_carries_route_rule_statuses_and_origin_and_its_child_is_the_upstream_exchange() {
    capture_access_log();
    let receiver = Receiver::start();
    let up = throttling_upstream();
    let gw = gateway(
        up.port,
        Some(&receiver.endpoint()),
        &[("service_name", "edge-gateway"), ("batch_delay", "100ms")],
    );
    let (trace, client_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let r = request(
        gw.port,
        "GET",
        PATH,
        &[
            ("X-Request-Id", "otel-attrs-1"),
            ("traceparent", &format!("00-{trace}-{client_span}-01")),
            ("tracestate", "vendor=abc,other=1"),
        ],
        b"",
    );
    assert_eq!(r.status, 429, "{}", r.text());

    // The upstream got the client's trace with a span id of the gateway's: its CLIENT span.
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let sent = seen[0].header("traceparent").expect("a traceparent upstream");
    let [version, sent_trace, sent_parent, flags] = fields(sent);
    assert_eq!(
        (version.as_str(), sent_trace.as_str(), flags.as_str()),
        ("00", trace, "01")
    );
    assert_ne!(
        sent_parent, client_span,
        "the upstream is told the gateway's span, not the client's"
    );
    assert_eq!(seen[0].header("tracestate"), Some("vendor=abc,other=1"));
    assert_eq!(
        seen[0]
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
            .count(),
        1
    );

    let spans = receiver.wait_for_trace(trace, 2);
    assert_eq!(spans.len(), 2, "{spans:?}");
    let server = only(&spans, SpanKind::Server);
    let upstream = only(&spans, SpanKind::Client);
    assert_eq!(
        (server.service_name.as_str(), server.scope.as_str()),
        ("edge-gateway", "statusgate")
    );
    assert_eq!(server.service_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(server.span.name, "GET /vpcep/");
    assert_eq!(
        server.parent_span_id(),
        client_span,
        "the client's span is the request span's parent"
    );
    assert_eq!(server.span.trace_state, "vendor=abc,other=1");
    let up_addr = format!("127.0.0.1:{}", up.port);
    for (key, want) in [
        ("http.request.method", "GET"),
        ("url.path", PATH),
        ("http.route", "/vpcep/"),
        ("network.protocol.version", "1.1"),
        ("statusgate.route", "vpcep"),
        ("statusgate.rule", "throttled"),
        ("statusgate.origin", "upstream"),
        ("statusgate.upstream.address", up_addr.as_str()),
        ("statusgate.request_id", "otel-attrs-1"),
    ] {
        assert_eq!(server.str(key), Some(want), "{key} of {:?}", server.keys());
    }
    assert_eq!(server.int("http.response.status_code"), Some(429));
    assert_eq!(server.int("statusgate.upstream.status_code"), Some(400));
    assert_eq!(server.str("statusgate.failure"), None);
    assert_eq!(server.str("error.type"), None, "a 4xx is not a server error");

    assert_eq!(
        upstream.parent_span_id(),
        server.span_id(),
        "the upstream span is the request's child"
    );
    assert_eq!(
        upstream.span_id(),
        sent_parent,
        "the upstream request names the upstream span"
    );
    assert_eq!(upstream.span.name, "GET");
    assert_eq!(upstream.str("http.request.method"), Some("GET"));
    assert_eq!(upstream.str("server.address"), Some("127.0.0.1"));
    assert_eq!(upstream.int("server.port"), Some(i64::from(up.port)));
    assert_eq!(upstream.str("url.path"), Some(PATH));
    assert_eq!(upstream.int("http.response.status_code"), Some(400));
    assert_eq!(
        upstream.str("error.type"),
        Some("400"),
        "a client span's 4xx is an error"
    );
    assert!(upstream.span.start_time_unix_nano >= server.span.start_time_unix_nano);
    assert!(upstream.span.end_time_unix_nano <= server.span.end_time_unix_nano);

    let line = access_line("otel-attrs-1");
    assert_eq!(line["trace_id"], trace, "{line}");
    assert!(
        receiver.content_types().iter().all(|c| c == "application/x-protobuf"),
        "{:?}",
        receiver.content_types()
    );
}

#[test]
fn gateway_made_answers_are_traced_and_a_request_without_a_valid_traceparent_starts_a_trace() {
    capture_access_log();
    let receiver = Receiver::start();
    let up = throttling_upstream();
    let dead = free_port();
    let config = Config::new()
        .tracing("endpoint", &receiver.endpoint())
        .tracing("batch_delay", "100ms")
        .upstream("huawei", Up::addr(&format!("127.0.0.1:{}", up.port)))
        .upstream("gone", Up::addr(&format!("127.0.0.1:{dead}")))
        .route(Route::new("vpcep", "huawei").prefix("/vpcep/").profile(HUAWEI))
        .route(Route::new("gone", "gone").prefix("/gone/"));
    let gw = Gateway::start(&config.build(), &[]);

    // A malformed traceparent: ignored, a new trace starts and the upstream gets a valid one.
    let r = request(
        gw.port,
        "GET",
        PATH,
        &[("X-Request-Id", "otel-new-1"), ("traceparent", "00-not-a-trace-01")],
        b"",
    );
    assert_eq!(r.status, 429);
    let line = access_line("otel-new-1");
    let trace = line["trace_id"].as_str().expect("a trace id").to_owned();
    assert_eq!(trace.len(), 32, "{line}");
    let sent = up.requests()[0]
        .header("traceparent")
        .expect("a traceparent upstream")
        .to_owned();
    let [_, sent_trace, sent_parent, flags] = fields(&sent);
    assert_eq!((sent_trace.as_str(), flags.as_str()), (trace.as_str(), "01"));
    let spans = receiver.wait_for_trace(&trace, 2);
    let server = only(&spans, SpanKind::Server);
    assert_eq!(server.parent_span_id(), "", "a new trace's request span is its root");
    assert_eq!(only(&spans, SpanKind::Client).span_id(), sent_parent);

    // The upstream refuses the connection: the gateway's 502, with the failure kind on both.
    let r = request(gw.port, "POST", "/gone/x", &[("X-Request-Id", "otel-refused-1")], b"{}");
    assert_eq!(r.status, 502);
    let line = access_line("otel-refused-1");
    let failure = line["failure"].as_str().unwrap().to_owned();
    assert_eq!(failure, "upstream_refused");
    let spans = receiver.wait_for_trace(line["trace_id"].as_str().unwrap(), 2);
    let server = only(&spans, SpanKind::Server);
    assert_eq!(server.int("http.response.status_code"), Some(502));
    assert_eq!(server.str("statusgate.origin"), Some("gateway"));
    assert_eq!(server.str("statusgate.failure"), Some(failure.as_str()));
    assert_eq!(server.str("error.type"), Some(failure.as_str()));
    assert_eq!(server.str("statusgate.route"), Some("gone"));
    assert_eq!(server.span.name, "POST /gone/");
    assert_eq!(server.int("statusgate.upstream.status_code"), None);
    let upstream = only(&spans, SpanKind::Client);
    assert_eq!(upstream.str("error.type"), Some(failure.as_str()));
    assert_eq!(upstream.int("server.port"), Some(i64::from(dead)));
    assert_eq!(upstream.int("http.response.status_code"), None);

    // The upstream's body is cut short after the status went out: `after_header`.
    let cut = Upstream::start(|_| Reply::Partial(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort".to_vec()));
    let config = Config::new()
        .tracing("endpoint", &receiver.endpoint())
        .tracing("batch_delay", "100ms")
        .upstream("cut", Up::addr(&format!("127.0.0.1:{}", cut.port)))
        .route(Route::new("cut", "cut").prefix("/cut/"));
    let gw_cut = Gateway::start(&config.build(), &[]);
    let r = request(gw_cut.port, "GET", "/cut/x", &[("X-Request-Id", "otel-cut-1")], b"");
    assert_eq!((r.status, r.truncated), (200, true));
    let line = access_line("otel-cut-1");
    let spans = receiver.wait_for_trace(line["trace_id"].as_str().unwrap(), 2);
    let server = only(&spans, SpanKind::Server);
    assert_eq!(server.int("http.response.status_code"), Some(200));
    assert_eq!(server.str("statusgate.failure"), Some("after_header"));
    assert_eq!(server.str("error.type"), Some("after_header"));
    assert_eq!(
        server
            .span
            .attributes
            .iter()
            .filter(|kv| kv.key == "statusgate.failure")
            .count(),
        1
    );
    drop(gw_cut);

    // No route: the request span alone, with the failure.
    let r = request(
        gw.port,
        "PROPFIND",
        "/elsewhere",
        &[("X-Request-Id", "otel-noroute-1")],
        b"",
    );
    assert_eq!(r.status, 404);
    let line = access_line("otel-noroute-1");
    let spans = receiver.wait_for_trace(line["trace_id"].as_str().unwrap(), 1);
    let server = only(&spans, SpanKind::Server);
    assert_eq!(server.str("statusgate.failure"), line["failure"].as_str());
    assert_eq!(server.str("statusgate.route"), None);
    assert_eq!(server.str("http.request.method"), Some("_OTHER"));
    assert_eq!(server.str("http.request.method_original"), Some("PROPFIND"));
    assert_eq!(server.span.name, "HTTP");
    assert_eq!(server.int("http.response.status_code"), Some(404));
}

#[test]
fn with_tracing_off_the_client_trace_context_passes_upstream_unchanged_and_none_is_added() {
    capture_access_log();
    let up = throttling_upstream();
    let gw = gateway(up.port, None, &[]);
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let r = request(
        gw.port,
        "GET",
        PATH,
        &[
            ("X-Request-Id", "otel-off-1"),
            ("traceparent", traceparent),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
        b"",
    );
    assert_eq!(r.status, 429);
    let r = request(gw.port, "GET", PATH, &[("X-Request-Id", "otel-off-2")], b"");
    assert_eq!(r.status, 429);
    let seen = up.requests();
    assert_eq!(seen[0].header("traceparent"), Some(traceparent));
    assert_eq!(seen[0].header("tracestate"), Some("congo=t61rcWkgMzE"));
    assert_eq!(seen[1].header("traceparent"), None, "tracing off adds no trace context");
    assert_eq!(seen[1].header("tracestate"), None);
    assert_eq!(access_line("otel-off-1")["trace_id"], "-");
    assert!(gw.admin_get("/-/config").json()["tracing"].is_null());
}

#[test]
fn unsampled_traces_are_propagated_not_exported_and_sample_ratio_reloads_without_a_restart() {
    capture_access_log();
    let receiver = Receiver::start();
    let up = throttling_upstream();
    let endpoint = receiver.endpoint();
    let config = |ratio: &str, service: &str| {
        Config::new()
            .tracing("endpoint", &endpoint)
            .tracing("batch_delay", "100ms")
            .tracing("sample_ratio", ratio)
            .tracing("service_name", service)
            .watch_config(false)
            .threads(1)
            .grace_period("0s")
            .upstream("huawei", Up::addr(&format!("127.0.0.1:{}", up.port)))
            .route(Route::new("vpcep", "huawei").prefix("/vpcep/").profile(HUAWEI))
            .build()
    };
    let gw = Gateway::start(&config("0", "statusgate"), &[]);

    // The client's unsampled trace: passed on (flags 00) with the gateway's span id.
    let unsampled = "11111111111111111111111111111111";
    let r = request(
        gw.port,
        "GET",
        PATH,
        &[("traceparent", &format!("00-{unsampled}-2222222222222222-00"))],
        b"",
    );
    assert_eq!(r.status, 429);
    // No traceparent at ratio 0: a new trace, not recorded, still propagated.
    let r = request(gw.port, "GET", PATH, &[("X-Request-Id", "otel-ratio0-1")], b"");
    assert_eq!(r.status, 429);
    let new_trace = access_line("otel-ratio0-1")["trace_id"].as_str().unwrap().to_owned();
    let seen = up.requests();
    let [_, t0, p0, f0] = fields(seen[0].header("traceparent").unwrap());
    assert_eq!((t0.as_str(), f0.as_str()), (unsampled, "00"));
    assert_ne!(p0, "2222222222222222");
    let [_, t1, _, f1] = fields(seen[1].header("traceparent").unwrap());
    assert_eq!((t1.as_str(), f1.as_str()), (new_trace.as_str(), "00"));

    // A sampled client trace is recorded whatever the ratio; once its spans are in, the
    // unsampled ones (made earlier) are known never to have been exported.
    let sampled = "33333333333333333333333333333333";
    let r = request(
        gw.port,
        "GET",
        PATH,
        &[("traceparent", &format!("00-{sampled}-4444444444444444-01"))],
        b"",
    );
    assert_eq!(r.status, 429);
    receiver.wait_for_trace(sampled, 2);
    let traces: Vec<String> = receiver.spans().iter().map(ReceivedSpan::trace_id).collect();
    assert!(
        !traces.contains(&unsampled.to_owned()) && !traces.contains(&new_trace),
        "{traces:?}"
    );

    // sample_ratio reloads: every new trace is recorded now, and no restart is asked for.
    assert_eq!(gw.admin_get("/-/config").json()["tracing"]["sample_ratio"], 0.0);
    gw.write_config(&config("1.0", "statusgate"));
    let reload = request(gw.admin, "POST", "/-/reload", &[], b"").json();
    assert_eq!(reload["outcome"], "applied", "{reload}");
    let shown = gw.admin_get("/-/config").json();
    assert!(shown["restart_needed"].is_null(), "{shown}");
    assert_eq!(shown["tracing"]["sample_ratio"], 1.0);
    assert_eq!(shown["tracing"]["endpoint"], endpoint.as_str());
    let r = request(gw.port, "GET", PATH, &[("X-Request-Id", "otel-ratio1-1")], b"");
    assert_eq!(r.status, 429);
    let trace = access_line("otel-ratio1-1")["trace_id"].as_str().unwrap().to_owned();
    let spans = receiver.wait_for_trace(&trace, 2);
    assert_eq!(only(&spans, SpanKind::Server).service_name, "statusgate");

    // The exporter's keys are boot-only: the reload applies, and says what needs a restart.
    gw.write_config(&config("1.0", "renamed"));
    let reload = request(gw.admin, "POST", "/-/reload", &[], b"").json();
    assert_eq!(reload["outcome"], "applied", "{reload}");
    let note = gw.admin_get("/-/config").json()["restart_needed"]
        .as_str()
        .expect("a restart note")
        .to_owned();
    assert!(note.contains("tracing.service_name"), "{note}");
    let shown = gw.admin_get("/-/config").json();
    assert_eq!(
        shown["tracing"]["service_name"], "statusgate",
        "the running exporter's name: {shown}"
    );
}

#[test]
fn an_unreachable_or_silent_collector_never_fails_requests_and_the_lost_spans_are_counted() {
    // Nothing listens on the collector's port: every export fails, and is counted.
    let up = throttling_upstream();
    let refused = format!("http://127.0.0.1:{}/v1/traces", free_port());
    let gw = gateway(
        up.port,
        Some(&refused),
        &[("batch_delay", "50ms"), ("export_timeout", "2s")],
    );
    let failed_before = gw.metric("statusgate_trace_spans_export_failed_total", &[]);
    for i in 0..20 {
        let r = request(gw.port, "GET", PATH, &[], b"");
        assert_eq!(r.status, 429, "request {i}: {}", r.text());
        assert_eq!(r.json()["vendor_code"], "EndPoint.0022");
    }
    assert_eq!(up.requests().len(), 20);
    let mut failed = failed_before;
    for _ in 0..200 {
        failed = gw.metric("statusgate_trace_spans_export_failed_total", &[]);
        if failed > failed_before {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        failed > failed_before,
        "failed exports are counted ({failed_before} -> {failed})"
    );
    drop(gw);

    // A collector that accepts and never answers: the exporter waits on it (up to
    // export_timeout) while the 4-span queue fills; requests go on, spans past it are dropped.
    let hole = Blackhole::start();
    let up = throttling_upstream();
    let gw = gateway(
        up.port,
        Some(&hole.endpoint()),
        &[
            ("queue_size", "4"),
            ("batch_size", "2"),
            ("batch_delay", "50ms"),
            ("export_timeout", "2s"),
        ],
    );
    let dropped_before = gw.metric("statusgate_trace_spans_dropped_total", &[]);
    for i in 0..40 {
        let r = request(gw.port, "GET", PATH, &[], b"");
        assert_eq!(r.status, 429, "request {i}: {}", r.text());
        assert_eq!(r.json()["vendor_code"], "EndPoint.0022");
    }
    assert_eq!(up.requests().len(), 40);
    let dropped = gw.metric("statusgate_trace_spans_dropped_total", &[]);
    assert!(
        dropped > dropped_before,
        "80 spans into a queue of 4 that drains at most 2 per 2s export: drops are counted ({dropped_before} -> {dropped})"
    );
}

#[test]
fn the_documented_tracing_example_loads_with_the_documented_defaults() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    let at = doc.find("<!-- tracing-example -->").expect("the marker");
    let rest = &doc[at..];
    let start = rest.find("```yaml\n").unwrap() + "```yaml\n".len();
    let end = rest[start..].find("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::copy(HUAWEI, dir.path().join("rules/huawei-vpcep.yaml")).unwrap();
    let main = dir.path().join("statusgate.yaml");
    std::fs::write(&main, &rest[start..start + end]).unwrap();
    let snap = statusgate::snapshot::load(&main).unwrap_or_else(|ps| panic!("{ps:?}"));
    assert!(snap.warnings.is_empty(), "{:?}", snap.warnings);
    let t = snap.boot.tracing.as_ref().expect("tracing on");
    assert_eq!(t.endpoint, "http://127.0.0.1:4318/v1/traces");
    assert_eq!(t.service_name, "statusgate");
    assert_eq!((t.queue_size, t.batch_size), (2048, 512));
    assert_eq!(
        (t.batch_delay, t.export_timeout),
        (Duration::from_secs(1), Duration::from_secs(10))
    );
    assert_eq!(snap.trace_sample_ratio, 1.0);
    // The same file with every key but the endpoint removed: the documented defaults.
    let bare: String = rest[start..start + end]
        .lines()
        .filter(|l| {
            !l.starts_with("  ")
                || ![
                    "service_name",
                    "sample_ratio",
                    "queue_size",
                    "batch_size",
                    "batch_delay",
                    "export_timeout",
                ]
                .iter()
                .any(|k| l.trim_start().starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&main, &bare).unwrap();
    let defaults = statusgate::snapshot::load(&main).unwrap_or_else(|ps| panic!("{ps:?}"));
    assert_eq!(defaults.boot.tracing, snap.boot.tracing, "{bare}");
    assert_eq!(defaults.trace_sample_ratio, 1.0);
}

#[test]
fn an_http2_request_is_traced_like_an_http1_one() {
    let receiver = Receiver::start();
    let up = throttling_upstream();
    let config = Config::new()
        .set("http2", "h2c", "true")
        .tracing("endpoint", &receiver.endpoint())
        .tracing("batch_delay", "100ms")
        .upstream("huawei", Up::addr(&format!("127.0.0.1:{}", up.port)))
        .route(Route::new("vpcep", "huawei").prefix("/vpcep/").profile(HUAWEI));
    let gw = Gateway::start(&config.build(), &[]);
    let port = gw.port;
    let trace = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut client = client.ready().await.unwrap();
        let req = http::Request::get(format!("http://127.0.0.1:{port}{PATH}"))
            .header("traceparent", format!("00-{trace}-6f6f6f6f6f6f6f6f-01"))
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), resp)
            .await
            .unwrap()
            .unwrap();
        resp.status().as_u16()
    });
    assert_eq!(status, 429);
    let [_, sent_trace, sent_parent, _] = fields(up.requests()[0].header("traceparent").unwrap());
    assert_eq!(sent_trace, trace);
    let spans = receiver.wait_for_trace(trace, 2);
    let server = only(&spans, SpanKind::Server);
    assert_eq!(server.str("network.protocol.version"), Some("2"));
    assert_eq!(server.parent_span_id(), "6f6f6f6f6f6f6f6f");
    assert_eq!(server.str("statusgate.rule"), Some("throttled"));
    assert_eq!(only(&spans, SpanKind::Client).span_id(), sent_parent);
}
