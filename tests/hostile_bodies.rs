//! Hostile upstream bodies through a real gateway: nesting far past any parser's comfort, an
//! invalid UTF-8 byte in a JSON error, a gzip bomb. The gateway answers each one, counts what
//! it could not read, and keeps serving other requests.

mod common;

use std::io::Write;

use common::config::{Config, Route, Upstream as Up};
use common::vendor::profile;
use common::{request, Gateway, Reply, Upstream};

/// Two routes on one upstream: `veeam` (the shipped profile) and `other` (no profile).
/// `base` holds any further settings; `limits.body_buffer` is 256KiB.
fn gateway(route: &str, up: &Upstream, base: Config) -> Gateway {
    let cfg = base
        .body_buffer("256KiB")
        .upstream("up", Up::addr(&up.addr()))
        .route(
            Route::new(route, "up")
                .prefix("/v/")
                .strip_prefix()
                .profile(&profile("veeam.yaml")),
        )
        .route(Route::new(&format!("{route}-other"), "up").prefix("/"))
        .build();
    Gateway::start(&cfg, &[])
}

fn deep_xml(depth: usize) -> String {
    format!(
        r#"<Error Message="deep" StatusCode="500">{}{}</Error>"#,
        "<a>".repeat(depth),
        "</a>".repeat(depth)
    )
}

#[test]
fn a_thirty_thousand_deep_xml_error_is_skipped_as_too_deep_and_the_gateway_keeps_serving() {
    let body = deep_xml(30_000);
    assert!(
        body.len() < 256 * 1024,
        "the body fits the buffer: the parser is what is tested"
    );
    let up = Upstream::start(move |req| match req.path.as_str() {
        "/api/deep" => Reply::xml(500, "InternalServerError", &body),
        _ => Reply::json(200, "OK", r#"{"ok":true}"#),
    });
    let gw = gateway("deepxml", &up, Config::new());
    let r = request(gw.port, "GET", "/v/api/deep", &[], b"");
    // No rule could read the body: the canonical 500 without a detail.
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["status"], 500);
    assert!(r.json().get("detail").is_none(), "{}", r.text());
    let r = request(gw.port, "GET", "/elsewhere", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), r#"{"ok":true}"#);
    gw.expect_metric(
        "statusgate_body_rewrites_skipped_total",
        &[("route", "deepxml"), ("reason", "too_deep")],
        1.0,
        "the deep body is counted as a skip",
    );
}

#[test]
fn nesting_at_the_limit_is_read_and_one_level_more_is_too_deep() {
    // The Error element is level 1: 63 more levels inside it are exactly the default 64.
    let at_limit = deep_xml(63);
    let over = deep_xml(64);
    let up = Upstream::start(move |req| match req.path.as_str() {
        "/api/at" => Reply::xml(500, "InternalServerError", &at_limit),
        _ => Reply::xml(500, "InternalServerError", &over),
    });
    let gw = gateway("depthedge", &up, Config::new());
    let r = request(gw.port, "GET", "/v/api/at", &[], b"");
    assert_eq!(r.json()["detail"], "deep", "{}", r.text());
    let r = request(gw.port, "GET", "/v/api/over", &[], b"");
    assert!(r.json().get("detail").is_none(), "{}", r.text());
    gw.expect_metric(
        "statusgate_body_rewrites_skipped_total",
        &[("route", "depthedge"), ("reason", "too_deep")],
        1.0,
        "",
    );
}

#[test]
fn a_lower_body_depth_applies_to_json_bodies_too() {
    // {"Message":"m","StatusCode":500,"x":[[[...]]]}: 1 + 5 levels.
    let nested = format!(
        r#"{{"Message":"m","StatusCode":500,"x":{}{}}}"#,
        "[".repeat(5),
        "]".repeat(5)
    );
    let up = Upstream::start(move |_| Reply::json(500, "InternalServerError", &nested));
    let gw = gateway("jsondepth", &up, Config::new().body_depth(5));
    let r = request(gw.port, "GET", "/v/api/x", &[], b"");
    assert!(r.json().get("detail").is_none(), "{}", r.text());
    gw.expect_metric(
        "statusgate_body_rewrites_skipped_total",
        &[("route", "jsondepth"), ("reason", "too_deep")],
        1.0,
        "",
    );
}

#[test]
fn a_gzip_bomb_stops_at_the_buffer_cap() {
    // 64 MiB of spaces compress to about 64 KiB; decoding stops just past the 256 KiB cap.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..64 {
        e.write_all(&chunk).unwrap();
    }
    let bomb = e.finish().unwrap();
    let up = Upstream::start(move |_| {
        Reply::new(
            500,
            "InternalServerError",
            &[("Content-Type", "application/xml"), ("Content-Encoding", "gzip")],
            &bomb,
        )
    });
    let gw = gateway("bomb", &up, Config::new());
    let started = std::time::Instant::now();
    let r = request(gw.port, "GET", "/v/api/x", &[], b"");
    assert_eq!(r.status, 500);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    gw.expect_metric(
        "statusgate_body_rewrites_skipped_total",
        &[("route", "bomb"), ("reason", "over_cap")],
        1.0,
        "",
    );
}

#[test]
fn a_huawei_error_with_one_invalid_utf8_byte_still_maps_throttling_to_429() {
    let mut body = br#"{"error_code":"EndPoint.0022","error_msg":"The number of requests exceeded the limit"#.to_vec();
    body.push(0xff);
    body.extend_from_slice(br#". Please try later."}"#);
    let up = Upstream::start(move |_| Reply::new(400, "Bad Request", &[("Content-Type", "application/json")], &body));
    let cfg = Config::new()
        .upstream("up", Up::addr(&up.addr()))
        .route(
            Route::new("utf8", "up")
                .prefix("/")
                .profile(&profile("huawei-vpcep.yaml")),
        )
        .build();
    let gw = Gateway::start(&cfg, &[]);
    let r = request(gw.port, "POST", "/v1/p/vpc-endpoints", &[], b"{}");
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["vendor_code"], "EndPoint.0022");
    assert_eq!(
        r.json()["detail"],
        "The number of requests exceeded the limit\u{fffd}. Please try later."
    );
}

#[test]
fn a_body_depth_outside_one_to_one_hundred_is_a_positioned_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), "vendor: x\nbody_depth: 0\n").unwrap();
    let main = dir.path().join("statusgate.yaml");
    std::fs::write(
        &main,
        "listen: 127.0.0.1:1\nlimits:\n  body_depth: 101\nupstreams: {u: {addrs: [127.0.0.1:2]}}\nroutes: [{name: r, upstream: u, profile: p.yaml}]\n",
    )
    .unwrap();
    let problems: Vec<String> = statusgate::snapshot::load(&main)
        .map(|_| ())
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.ends_with("statusgate.yaml:3:15: body_depth 101 is outside 1-100")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.ends_with("p.yaml:2:13: body_depth 0 is outside 1-100")),
        "{problems:?}"
    );
}

#[test]
fn a_profile_body_depth_overrides_the_limit() {
    let up = Upstream::start(|req| match req.path.as_str() {
        "/flat" => Reply::json(500, "InternalServerError", r#"{"m":"flat"}"#),
        _ => Reply::json(500, "InternalServerError", r#"{"m":"nested","x":{"y":{}}}"#),
    });
    let profile = "vendor: t\nbody_depth: 2\nrules:\n  - name: m\n    when: { status: 500, json: { /m: { exists: true } } }\n    then: { problem: { detail: \"${json:/m}\" } }\n";
    let cfg = Config::new()
        .body_depth(50)
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("override", "up").prefix("/").profile("p.yaml"))
        .build();
    let gw = Gateway::start(&cfg, &[("p.yaml", profile)]);
    assert_eq!(request(gw.port, "GET", "/flat", &[], b"").json()["detail"], "flat");
    let r = request(gw.port, "GET", "/nested", &[], b"");
    assert!(
        r.json().get("detail").is_none(),
        "three levels are over the profile's 2: {}",
        r.text()
    );
    gw.expect_metric(
        "statusgate_body_rewrites_skipped_total",
        &[("route", "override"), ("reason", "too_deep")],
        1.0,
        "",
    );
}
