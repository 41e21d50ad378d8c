//! Client -> gateway -> scripted upstream and back: rules rewrite statuses, headers and bodies;
//! success bodies pass untouched; caps, gzip, bodiless responses and problem+xml.

mod common;

use std::io::Write;

use common::assert;
use common::config::{Config, Route, Upstream as Up};
use common::{request, Gateway, Reply, Upstream};

const PROFILE: &str = r#"
vendor: test
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
    when:
      status: 200
      method: POST
      path: /v1/*/things
    then:
      status: 201
      headers: { set: { Location: "/v1/things/${json:/thing/id}" } }
  - name: keep
    when: { status: 409 }
    then: { keep_body: true }
  - name: strip-powered-by
    when: { status: 200, headers: { X-Powered-By: { exists: true } } }
    then: { headers: { remove: [X-Powered-By] } }
"#;

/// One route named `route`: metrics are process-wide, so each test counts under its own route.
/// `base` holds any further settings.
fn gateway(route: &str, up: &Upstream, base: Config) -> Gateway {
    let cfg = base
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new(route, "up").prefix("/").profile("profile.yaml"))
        .build();
    Gateway::start(&cfg, &[("profile.yaml", PROFILE)])
}

#[test]
fn success_passes_untouched_with_upstream_status_and_request_id() {
    let up = Upstream::start(|_| {
        Reply::new(
            200,
            "Success",
            &[("Content-Type", "application/json"), ("ETag", "\"r1\"")],
            br#"{"id":1}"#,
        )
    });
    let gw = gateway("success", &up, Config::new());
    let r = request(gw.port, "GET", "/v1/p/things/1", &[], b"");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (200, "OK"),
        "vendor reason phrase replaced"
    );
    assert_eq!(r.body, br#"{"id":1}"#);
    assert_eq!(r.header("x-upstream-status"), Some("200"));
    assert_eq!(r.header("etag"), Some("\"r1\""));
    let rid = r.header("x-request-id").expect("request id");
    assert_eq!(
        up.requests()[0].header("x-request-id"),
        Some(rid),
        "the same id goes upstream"
    );
    // A 20 KiB header block: above the 16 KiB read buffer, below the 32 KiB limit.
    let big = "b".repeat(20 * 1024);
    let r = request(gw.port, "GET", "/v1/p/things/2", &[("X-Big", &big)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(up.requests()[1].header("x-big").map(str::len), Some(20 * 1024));
}

#[test]
fn body_dependent_status_rewrite_with_problem_body() {
    let up = Upstream::start(|_| {
        let mut r = Reply::json(
            400,
            "BadRequest",
            r#"{"error_code":"Endpoint.0022","error_msg":"The number of requests exceeded the limit."}"#,
        );
        if let Reply::Raw(b) = &mut r {
            let s = String::from_utf8(b.clone())
                .unwrap()
                .replacen("\r\n", "\r\nX-Request-Id: hw-77\r\n", 1);
            *b = s.into_bytes();
        }
        r
    });
    let gw = gateway("throttle", &up, Config::new());
    let r = request(
        gw.port,
        "GET",
        "/v1/p/vpc-endpoints",
        &[("X-Request-Id", "client-abc")],
        b"",
    );
    assert_eq!((r.status, r.reason.as_str()), (429, "Too Many Requests"));
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.header("x-upstream-status"), Some("400"));
    assert_eq!(r.header("x-request-id"), Some("client-abc"));
    let p = r.json();
    assert_eq!(p["status"], 429);
    assert_eq!(p["title"], "Too Many Requests");
    assert_eq!(p["detail"], "The number of requests exceeded the limit.");
    assert_eq!(p["vendor_code"], "Endpoint.0022");
    assert_eq!(p["upstream_status"], 400);
    assert_eq!(p["request_id"], "client-abc");
    assert_eq!(p["vendor_request_id"], "hw-77");
    assert_eq!(p["origin"], "upstream");
    gw.expect_metric(
        "statusgate_rule_matches_total",
        &[("route", "throttle"), ("rule", "throttled")],
        1.0,
        "",
    );
}

#[test]
fn xml_error_detail_without_stack_trace_and_problem_xml_on_request() {
    let body = r#"<Error Message="Object reference not set to an instance of an object." StatusCode="500" xmlns="http://www.veeam.com/ent/v1.0"><FirstChanceExceptionMessage>NullReferenceException</FirstChanceExceptionMessage><StackTrace>   at Veeam.Backup.Core.CDbAccessor.Get()</StackTrace></Error>"#;
    let up = Upstream::start(move |_| Reply::xml(500, "InternalServerError", body));
    let gw = gateway("xml", &up, Config::new());
    let r = request(gw.port, "GET", "/api/query", &[], b"");
    assert_eq!((r.status, r.reason.as_str()), (500, "Internal Server Error"));
    let p = r.json();
    assert_eq!(p["detail"], "Object reference not set to an instance of an object.");
    assert::no_leak(&r.text(), &["Veeam.Backup.Core", "NullReferenceException"]);

    let r = request(gw.port, "GET", "/api/query", &[("Accept", "application/xml")], b"");
    assert_eq!(r.header("content-type"), Some("application/problem+xml"));
    let x = r.text();
    assert!(x.contains(r#"<problem xmlns="urn:ietf:rfc:7807">"#), "{x}");
    assert!(
        x.contains("<status>500</status>") && x.contains("<detail>Object reference not set"),
        "{x}"
    );
    assert!(!x.contains("StackTrace") && !x.contains("Veeam.Backup.Core"));
}

#[test]
fn location_built_from_body_cannot_inject_headers() {
    let up = Upstream::start(|req| {
        let id = if req.path.contains("evil") {
            "x\\r\\nSet-Cookie: pwned=1"
        } else {
            "t-42"
        };
        Reply::json(200, "OK", &format!(r#"{{"thing":{{"id":"{id}"}}}}"#))
    });
    let gw = gateway("location", &up, Config::new());
    let r = request(
        gw.port,
        "POST",
        "/v1/p/things",
        &[("Content-Type", "application/json")],
        br#"{"name":"a"}"#,
    );
    assert_eq!((r.status, r.reason.as_str()), (201, "Created"));
    assert_eq!(r.header("location"), Some("/v1/things/t-42"));
    assert_eq!(r.body, br#"{"thing":{"id":"t-42"}}"#, "a 2xx body is not replaced");
    assert_eq!(up.requests()[0].body, br#"{"name":"a"}"#, "request body forwarded");

    let r = request(gw.port, "POST", "/v1/evil/things", &[], b"{}");
    assert_eq!(r.status, 201);
    assert!(
        r.header("set-cookie").is_none(),
        "CR/LF from upstream data injected a header"
    );
    assert!(r.header("location").unwrap().contains("Set-Cookie: pwned=1"));
}

#[test]
fn fallbacks_keep_body_and_header_removal() {
    let up = Upstream::start(|req| match req.path.as_str() {
        "/teapot" => Reply::json(418, "I'm a teapot", r#"{"short":"stout"}"#),
        "/insufficient" => Reply::json(507, "Insufficient Storage", "{}"),
        "/partial" => Reply::new(206, "Partial Content", &[("Content-Range", "bytes 0-1/4")], b"ab"),
        "/conflict" => Reply::json(409, "Conflict", r#"{"vendor":"body"}"#),
        "/invented" => Reply::json(799, "Whatever", "{}"),
        _ => Reply::new(200, "OK", &[("X-Powered-By", "ASP.NET")], b"ok"),
    });
    let gw = gateway("fallback", &up, Config::new());
    let r = request(gw.port, "GET", "/teapot", &[], b"");
    assert_eq!((r.status, r.reason.as_str()), (400, "Bad Request"));
    assert_eq!(r.json()["upstream_status"], 418);
    let r = request(gw.port, "GET", "/insufficient", &[], b"");
    assert_eq!((r.status, r.json()["status"].as_u64()), (502, Some(502)));
    let r = request(gw.port, "GET", "/partial", &[], b"");
    assert_eq!((r.status, r.body.as_slice()), (206, b"ab".as_slice()));
    let r = request(gw.port, "GET", "/conflict", &[], b"");
    assert_eq!((r.status, r.text().as_str()), (409, r#"{"vendor":"body"}"#));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = request(gw.port, "GET", "/plain", &[], b"");
    assert!(r.header("x-powered-by").is_none());
    let r = request(gw.port, "GET", "/invented", &[], b"");
    assert_eq!((r.status, r.header("x-upstream-status")), (502, Some("799")));
    gw.expect_metric(
        "statusgate_responses_total",
        &[("route", "fallback"), ("code", "502"), ("upstream_code", "other")],
        1.0,
        "invented statuses count as `other`, so an upstream cannot grow the label set",
    );
    gw.expect_metric(
        "statusgate_rule_matches_total",
        &[("route", "fallback"), ("rule", "keep")],
        1.0,
        "",
    );
    gw.expect_metric(
        "statusgate_responses_total",
        &[("route", "fallback"), ("code", "400"), ("upstream_code", "418")],
        1.0,
        "",
    );
}

#[test]
fn over_the_cap_the_status_mapping_applies_and_nothing_is_truncated() {
    // A 5xx XML error larger than the 1 KiB cap: the XML rule cannot read it, so the canonical
    // 5xx fallback applies (problem body without detail) ...
    let big_error = format!(r#"<Error Message="m">{}</Error>"#, "x".repeat(4000));
    // ... and a 200 that a body rule wants (POST create) streams through whole.
    let big_ok = format!(r#"{{"thing":{{"id":"t"}},"pad":"{}"}}"#, "y".repeat(200_000));
    let up = Upstream::start(move |req| match req.method.as_str() {
        "POST" => Reply::json(200, "OK", &big_ok),
        _ => Reply::xml(503, "ServiceUnavailable", &big_error),
    });
    let gw = gateway("cap", &up, Config::new().body_buffer("1KiB"));
    let r = request(gw.port, "GET", "/x", &[], b"");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], 503);
    assert!(r.json().get("detail").is_none());
    let r = request(gw.port, "POST", "/v1/p/things", &[], b"{}");
    // The status mapping still applies; the Location template cannot render without the body.
    assert_eq!(r.status, 201);
    assert!(r.header("location").is_none());
    assert!(!r.truncated);
    assert_eq!(r.body.len(), 200_000 + r#"{"thing":{"id":"t"},"pad":""}"#.len());
    gw.expect_metric(
        "statusgate_body_rewrites_skipped_total",
        &[("route", "cap"), ("reason", "over_cap")],
        2.0,
        "",
    );
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn gzip_bodies_are_decoded_for_matching_only() {
    let err = gzip(br#"{"error_code":"EndPoint.0022","error_msg":"slow down"}"#);
    let ok = gzip(br#"{"fine":true}"#);
    let up = Upstream::start(move |req| {
        let (status, body) = if req.path == "/err" {
            (400, err.clone())
        } else {
            (200, ok.clone())
        };
        Reply::new(
            status,
            "X",
            &[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
            &body,
        )
    });
    let gw = gateway("gzip", &up, Config::new());
    let r = request(gw.port, "GET", "/err", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(r.status, 429);
    assert!(r.header("content-encoding").is_none());
    assert_eq!(r.json()["detail"], "slow down");
    let r = request(gw.port, "GET", "/ok", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.body, gzip(br#"{"fine":true}"#));
}

#[test]
fn bodiless_responses_stay_bodiless() {
    let up = Upstream::start(|req| match req.path.as_str() {
        "/204" => Reply::new(204, "NoContent", &[], b""),
        "/304" => Reply::new(304, "Not Modified", &[("ETag", "\"v2\"")], b""),
        _ => Reply::json(404, "NotFound", r#"{"m":"gone"}"#),
    });
    let gw = gateway("bodiless", &up, Config::new());
    let r = request(gw.port, "DELETE", "/204", &[], b"");
    assert_eq!((r.status, r.reason.as_str(), r.body.len()), (204, "No Content", 0));
    let r = request(gw.port, "GET", "/304", &[("If-None-Match", "\"v2\"")], b"");
    assert_eq!((r.status, r.header("etag")), (304, Some("\"v2\"")));
    // HEAD of an error: canonical status and type, no body; a second request on the same
    // connection proves no stray body bytes were written.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.write_all(b"HEAD /missing HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut rd = std::io::BufReader::new(s.try_clone().unwrap());
    let head = common::client::read_response(&mut rd, true).unwrap();
    assert_eq!(
        (head.status, head.header("content-type")),
        (404, Some("application/problem+json"))
    );
    s.write_all(b"GET /204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let next = common::client::read_response(&mut rd, false).unwrap();
    assert_eq!(next.status, 204);
}

#[test]
fn missing_challenges_are_supplied_and_the_route_wins_over_the_profile() {
    let up = Upstream::start(|req| match req.path.as_str() {
        "/own" => Reply::new(
            401,
            "Unauthorized",
            &[("WWW-Authenticate", "Vendor realm=\"v\"")],
            b"{}",
        ),
        "/verb" => Reply::json(405, "MethodNotAllowed", "{}"),
        _ => Reply::json(401, "Unauthorized", "{}"),
    });
    let profile =
        "ensure_headers:\n  401: { WWW-Authenticate: 'Basic realm=\"profile\"' }\n  405: { Allow: 'GET' }\nrules: []\n";
    let cfg = Config::new()
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("challenge", "up").profile("p.yaml").ensure_header(
            401,
            "WWW-Authenticate",
            "Bearer realm=\"route\"",
        ))
        .build();
    let gw = Gateway::start(&cfg, &[("p.yaml", profile)]);
    let r = request(gw.port, "GET", "/missing", &[], b"");
    assert_eq!(r.headers_named("www-authenticate"), vec!["Bearer realm=\"route\""]);
    let r = request(gw.port, "GET", "/own", &[], b"");
    assert_eq!(
        r.headers_named("www-authenticate"),
        vec!["Vendor realm=\"v\""],
        "the vendor's own challenge is kept"
    );
    let r = request(gw.port, "DELETE", "/verb", &[], b"");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
}

/// The drift case of issue 10: a gzip body over the cap raw but under it decoded. The example
/// (run by the loader through the live pipeline) and the live answer agree: over the cap, the
/// body rule does not fire.
#[test]
fn a_gzip_body_over_the_cap_raw_is_answered_live_as_its_example_says() {
    const ERR: &str = r#"{"error_code":"EndPoint.0022","error_msg":"slow down"}"#;
    let stored = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        e.write_all(ERR.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    assert!(
        ERR.len() <= 64 && stored.len() > 64,
        "the case needs raw > cap >= decoded"
    );
    let profile = format!(
        "body_buffer: 64\n{PROFILE}examples:\n  - name: gzip-over-cap-raw\n    upstream:\n      status: 400\n      headers: {{ Content-Type: application/json }}\n      encoding: gzip\n      body: '{ERR}'\n    expect: {{ status: 400, rule: none }}\n"
    );
    let body = stored.clone();
    let up = Upstream::start(move |_| {
        Reply::new(
            400,
            "Bad Request",
            &[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
            &body,
        )
    });
    let cfg = Config::new()
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("drift", "up").prefix("/").profile("profile.yaml"))
        .build();
    let gw = Gateway::start(&cfg, &[("profile.yaml", &profile)]);
    let r = request(gw.port, "GET", "/", &[], b"");
    assert_eq!(r.status, 400, "live must match the example that passed at load");
    assert_eq!(r.header("x-upstream-status"), Some("400"));
    // `explain` answers the same for the same bytes.
    std::fs::write(gw.path("body.gz"), &stored).unwrap();
    let snap = statusgate::snapshot::load(&gw.path("statusgate.yaml")).expect("config loads");
    let args = statusgate::cli::ExplainArgs {
        config: statusgate::cli::ConfigArg { config: None },
        route: "drift".into(),
        status: 400,
        method: "GET".into(),
        path: "/".into(),
        headers: vec!["Content-Type: application/json".into(), "Content-Encoding: gzip".into()],
        request_headers: Vec::new(),
        body: Some(format!("@{}", gw.path("body.gz").display())),
        trace: false,
    };
    let text = statusgate::cli::explain(&snap, &args).unwrap();
    assert!(
        text.contains("# body not used: over_cap\nHTTP/1.1 400 Bad Request\n"),
        "{text}"
    );
    gw.expect_metric(
        "statusgate_body_rewrites_skipped_total",
        &[("route", "drift"), ("reason", "over_cap")],
        1.0,
        "",
    );
}

/// The exact bytes a client gets for one problem, JSON and XML, from the shipped Huawei
/// profile's `throttled` rule: member order (RFC 9457's first, then the gateway's), escaping of
/// a quote, a backslash, a tab and non-ASCII text in the vendor's message, the vendor's request
/// id, and the Content-Length of each. A change in how problem bodies are written shows here.
#[test]
fn a_huawei_throttling_problem_is_byte_for_byte_the_golden_body() {
    let up = Upstream::start(|_| {
        Reply::new(
            400,
            "BadRequest",
            &[("Content-Type", "application/json"), ("X-Request-Id", "hw-77")],
            "{\"error_code\":\"EndPoint.0022\",\"error_msg\":\"Too many \\\"requests\\\"\\t\u{2014} slow down\\\\ retry\"}"
                .as_bytes(),
        )
    });
    let cfg = Config::new()
        .upstream("up", Up::addr(&up.addr()))
        .route(
            Route::new("golden", "up")
                .prefix("/")
                .profile(&common::vendor::profile("huawei-vpcep.yaml")),
        )
        .build();
    let gw = Gateway::start(&cfg, &[]);
    let json = request(
        gw.port,
        "GET",
        "/v1/p/vpc-endpoints",
        &[("X-Request-Id", "client-abc")],
        b"",
    );
    assert_eq!(json.status, 429);
    let want = "{\"type\":\"about:blank\",\"title\":\"Too Many Requests\",\"status\":429,\
        \"detail\":\"Too many \\\"requests\\\"\\t\u{2014} slow down\\\\ retry\",\"upstream_status\":400,\
        \"vendor_code\":\"EndPoint.0022\",\"request_id\":\"client-abc\",\"vendor_request_id\":\"hw-77\",\
        \"origin\":\"upstream\",\"retryable\":true}";
    assert_eq!(json.text(), want);
    assert_eq!(json.header("content-length"), Some(want.len().to_string().as_str()));
    let xml = request(
        gw.port,
        "GET",
        "/v1/p/vpc-endpoints",
        &[("X-Request-Id", "client-abc"), ("Accept", "application/problem+xml")],
        b"",
    );
    assert_eq!(xml.header("content-type"), Some("application/problem+xml"));
    let want = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><problem xmlns=\"urn:ietf:rfc:7807\">\
        <type>about:blank</type><title>Too Many Requests</title><status>429</status>\
        <detail>Too many &quot;requests&quot;\t\u{2014} slow down\\ retry</detail>\
        <upstream_status>400</upstream_status><vendor_code>EndPoint.0022</vendor_code>\
        <request_id>client-abc</request_id><vendor_request_id>hw-77</vendor_request_id>\
        <origin>upstream</origin><retryable>true</retryable></problem>";
    assert_eq!(xml.text(), want);
    assert_eq!(xml.header("content-length"), Some(want.len().to_string().as_str()));
}
