//! Shadow profiles on live traffic (issue 14, part 1): a route names `shadow_profile:` beside
//! `profile:`; every upstream response is also decided by the shadow, the client keeps getting
//! the active profile's answer byte for byte (compared with a route without a shadow on the
//! same gateway and upstream), divergences are counted in Prometheus text and listed at the
//! admin's `GET /-/shadow`, a body rule only the shadow has still sees the body while the
//! client's body arrives intact, and a shadow profile that fails to load rejects the reload.

mod common;

use std::time::Duration;

use common::config::{Config, Route, Upstream as Up};
use common::{request, Gateway, Reply, Response, Upstream};

/// The active profile: no body rule at all (so it never buffers), one header-level rule.
const ACTIVE: &str = "rules:\n  - name: gone\n    when: { status: 410 }\n    then: { status: 404 }\n";

/// The shadow: Huawei's throttling 400 is a 429 (a body rule the active profile lacks), and a
/// 200 with an `id` is a creation (a body rule on a large success body).
const SHADOW: &str = r#"rules:
  - name: gone
    when: { status: 410 }
    then: { status: 404 }
  - name: throttled
    when:
      status: 400
      json: { /error_code: { equals: EndPoint.0022, ignore_case: true } }
    then:
      status: 429
      headers: { set: { Retry-After: "1" } }
      problem: { detail: "${json:/error_msg}", vendor_code: "${json:/error_code}" }
  - name: created
    when:
      status: 200
      json: { /id: { exists: true } }
    then:
      status: 201
examples:
  - name: throttling
    upstream: { status: 400, headers: { Content-Type: application/json }, body: '{"error_code":"EndPoint.0022","error_msg":"slow down"}' }
    expect: { status: 429, rule: throttled }
"#;

/// A shadow profile whose example fails: the gate rejects it.
const BROKEN_SHADOW: &str = "rules:\n  - name: lies\n    when: { status: 400 }\n    then: { status: 409 }\nexamples:\n  - name: wrong\n    upstream: { status: 400 }\n    expect: { status: 422 }\n";

const THROTTLED: &str = r#"{"error_code":"EndPoint.0022","error_msg":"slow down"}"#;
const OTHER_400: &str = r#"{"error_code":"EndPoint.0001","error_msg":"bad parameter"}"#;

/// A JSON document of about `n` bytes with an `id`, so the shadow's `created` rule reads it.
fn big_json(n: usize) -> String {
    let filler: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    format!(r#"{{"id":"ep-1","filler":"{filler}"}}"#)
}

fn vendor() -> Upstream {
    let big = big_json(300 * 1024);
    let small = big_json(100);
    Upstream::start(move |r| match r.path.as_str() {
        "/throttle" => Reply::json(400, "Bad Request", THROTTLED),
        "/other" => Reply::json(400, "Bad Request", OTHER_400),
        "/gone" => Reply::json(410, "Gone", "{}"),
        "/big" => Reply::json(200, "OK", &big),
        "/small" => Reply::json(200, "OK", &small),
        // A success body cut short: 100 bytes of the 1,000 declared, then the connection closes.
        "/cut" => Reply::Partial(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{}",
                &small[..100]
            )
            .into_bytes(),
        ),
        _ => Reply::json(404, "Not Found", "{}"),
    })
}

/// `name`: the shadowed route's name (metric series are process-wide: one name per test).
fn config(up: &Upstream, shadow: &str, name: &str) -> String {
    Config::new()
        .upstream("up", Up::addr(&up.addr()))
        .route(
            Route::new("plain", "up")
                .prefix("/plain/")
                .strip_prefix()
                .profile("rules/active.yaml"),
        )
        .route(
            Route::new(name, "up")
                .prefix("/shadowed/")
                .strip_prefix()
                .profile("rules/active.yaml")
                .shadow_profile(shadow),
        )
        .build()
}

fn start(up: &Upstream, name: &str) -> Gateway {
    Gateway::start(
        &config(up, "rules/shadow.yaml", name),
        &[
            ("rules/active.yaml", ACTIVE),
            ("rules/shadow.yaml", SHADOW),
            ("rules/broken.yaml", BROKEN_SHADOW),
        ],
    )
}

/// What the client got, but the `Date` field (it moves with the clock).
fn seen(r: &Response) -> (u16, String, Vec<(String, String)>, Vec<u8>, bool) {
    let headers = r
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("date"))
        .cloned()
        .collect();
    (r.status, r.reason.clone(), headers, r.body.clone(), r.truncated)
}

fn get(gw: &Gateway, route: &str, path: &str, id: &str) -> Response {
    request(gw.port, "GET", &format!("/{route}{path}"), &[("X-Request-Id", id)], b"")
}

/// `/-/shadow` once it has compared `n` responses on the shadowed route (polled: the comparison is
/// recorded just after the client's response is written).
fn shadow_listing(gw: &Gateway, n: u64) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..200 {
        last = gw.admin_get("/-/shadow").json();
        if last["routes"][0]["compared"].as_u64() == Some(n) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the shadow did not compare {n} responses: {last:#}");
}

#[test]
fn clients_get_the_active_answer_byte_for_byte_while_divergences_are_counted_and_listed() {
    let up = vendor();
    let gw = start(&up, "shadow-counted");
    let paths = [
        "/throttle",
        "/other",
        "/gone",
        "/small",
        "/big",
        "/throttle",
        "/throttle",
    ];
    for (i, path) in paths.iter().enumerate() {
        let id = format!("req-{i}");
        let plain = get(&gw, "plain", path, &id);
        let shadowed = get(&gw, "shadowed", path, &id);
        assert_eq!(
            seen(&plain),
            seen(&shadowed),
            "{path}: the shadow changed the client's answer"
        );
    }
    // The active answers, as a user checks them: the vendor's throttling 400 stays a 400.
    let throttled = get(&gw, "plain", "/throttle", "x");
    assert_eq!(throttled.status, 400);
    let big = get(&gw, "shadowed", "/big", "big");
    assert_eq!((big.status, big.body.len()), (200, big_json(300 * 1024).len()));
    assert_eq!(big.body, big_json(300 * 1024).into_bytes());

    // 8 responses on `shadowed`; 3 throttling 400s are 429s for the shadow, 1 small 200 is its
    // 201 (the 300 KiB one is over the body cap: the shadow's rule does not match it either).
    let listing = shadow_listing(&gw, 8);
    let routes = listing["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1, "only the route with a shadow is listed: {listing:#}");
    let route = &routes[0];
    assert_eq!(route["route"], "shadow-counted");
    assert!(route["shadow_profile"].as_str().unwrap().ends_with("rules/shadow.yaml"));
    assert_eq!(route["divergences"], 4, "{route:#}");
    assert_eq!(route["not_compared"], 0);
    let pairs: Vec<(String, String, u64)> = route["by_pair"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["active_code"].as_str().unwrap().to_owned(),
                p["shadow_code"].as_str().unwrap().to_owned(),
                p["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [("200".into(), "201".into(), 1), ("400".into(), "429".into(), 3)]
    );
    let recent = route["recent"].as_array().unwrap();
    let ids: Vec<&str> = recent.iter().map(|r| r["request_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["req-6", "req-5", "req-3", "req-0"], "newest first");
    let last = &recent[0];
    assert_eq!(last["upstream_status"], 400);
    assert_eq!(last["active"]["status"], 400);
    assert!(last["active"]["rule"].is_null());
    assert_eq!(last["shadow"]["status"], 429);
    assert_eq!(last["shadow"]["rule"], "throttled");
    assert_eq!(last["shadow"]["headers"][0], "set retry-after: 1");
    assert_eq!(last["active"]["problem_type"], "about:blank");

    // Prometheus text from the admin listener.
    let route_label = ("route", "shadow-counted");
    gw.expect_metric(
        "statusgate_shadow_divergences_total",
        &[route_label, ("active_code", "400"), ("shadow_code", "429")],
        3.0,
        "throttling 400s the shadow maps to 429",
    );
    gw.expect_metric(
        "statusgate_shadow_divergences_total",
        &[route_label, ("active_code", "200"), ("shadow_code", "201")],
        1.0,
        "the small creation",
    );
    gw.expect_metric(
        "statusgate_shadow_comparisons_total",
        &[route_label],
        8.0,
        "every response",
    );
    let text = gw.admin_get("/metrics").text();
    assert!(
        !text.contains("statusgate_shadow_comparisons_total{route=\"plain\"}"),
        "a route without a shadow has no shadow series"
    );
}

#[test]
fn a_shadow_only_body_rule_sees_the_body_and_the_client_body_is_intact() {
    let up = vendor();
    let gw = start(&up, "shadow-body");
    // The active profile never reads a body; the shadow reads the small creation's to find
    // its `id`, and the client still gets the vendor's exact bytes (Content-Length framed).
    let r = get(&gw, "shadowed", "/small", "small-1");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, big_json(100).into_bytes());
    assert_eq!(
        r.header("content-length"),
        Some(big_json(100).len().to_string().as_str())
    );
    let listing = shadow_listing(&gw, 1);
    let d = &listing["routes"][0]["recent"][0];
    assert_eq!(d["request_id"], "small-1");
    assert_eq!(
        (d["active"]["status"].as_u64(), d["shadow"]["status"].as_u64()),
        (Some(200), Some(201))
    );
    assert_eq!(d["shadow"]["rule"], "created", "the shadow's body rule saw the body");
    // The throttling body: the shadow's problem detail would come from it (it matched).
    let r = get(&gw, "shadowed", "/throttle", "t-1");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("\"upstream_status\":400"), "{}", r.text());
    let listing = shadow_listing(&gw, 2);
    assert_eq!(listing["routes"][0]["recent"][0]["shadow"]["rule"], "throttled");
}

#[test]
fn a_shadow_profile_that_fails_to_load_rejects_the_reload_and_the_old_rules_keep_serving() {
    let up = vendor();
    let gw = start(&up, "shadow-reload");
    let version = gw.admin_get("/-/config").json()["version"].clone();
    gw.write_config(&config(&up, "rules/broken.yaml", "shadow-reload"));
    let r = request(gw.admin, "POST", "/-/reload", &[], b"");
    assert_eq!(r.status, 422, "{}", r.text());
    let body = r.json();
    assert_eq!(body["outcome"], "rejected");
    let problems = body["problems"].to_string();
    assert!(
        problems.contains("rules/broken.yaml:") && problems.contains("example `wrong` fails"),
        "the problem names the shadow profile's file and line: {problems}"
    );
    // A shadow file that is not there at all is rejected the same way.
    gw.write_config(&config(&up, "rules/missing.yaml", "shadow-reload"));
    let r = request(gw.admin, "POST", "/-/reload", &[], b"");
    assert_eq!(r.json()["outcome"], "rejected");
    assert!(r.json()["problems"].to_string().contains("rules/missing.yaml"));

    // The old configuration, shadow included, keeps serving.
    assert_eq!(gw.admin_get("/-/config").json()["version"], version);
    assert_eq!(get(&gw, "shadowed", "/throttle", "after").status, 400);
    let listing = shadow_listing(&gw, 1);
    assert_eq!(listing["routes"][0]["recent"][0]["shadow"]["rule"], "throttled");
    // `statusgate check`'s path (the loader) says the same about the broken file.
    let problems = statusgate::snapshot::load(&gw.path("statusgate.yaml")).unwrap_err();
    assert!(problems.iter().any(|p| p.to_string().contains("missing.yaml")));
}

#[test]
fn a_body_cut_short_that_only_the_shadow_reads_reaches_the_client_as_it_would_without_the_shadow() {
    let up = vendor();
    let gw = start(&up, "shadow-cut");
    let plain = get(&gw, "plain", "/cut", "cut-1");
    let shadowed = get(&gw, "shadowed", "/cut", "cut-1");
    // Without a shadow: the 200 header, the 100 bytes, then the close; the same with one.
    assert_eq!((plain.status, plain.body.len(), plain.truncated), (200, 100, true));
    assert_eq!(seen(&plain), seen(&shadowed));
    let mut listing = serde_json::Value::Null;
    for _ in 0..200 {
        listing = gw.admin_get("/-/shadow").json();
        if listing["routes"][0]["not_compared"] == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(listing["routes"][0]["not_compared"], 1, "{listing:#}");
    assert_eq!(listing["routes"][0]["compared"], 0);
    gw.expect_metric(
        "statusgate_upstream_failures_total",
        &[("route", "shadow-cut"), ("kind", "after_header")],
        1.0,
        "counted as a failure after the header, as without the shadow",
    );
}
