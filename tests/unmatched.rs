//! Unmatched-response discovery (issue 14, part 2): upstream errors that no rule matched are
//! counted (`statusgate_unmatched_total`), kept distinct by status, media type and vendor code
//! in a bounded store per route and listed at the admin's `GET /-/unmatched` (bodies redacted,
//! truncated and saying so); 5,000 distinct vendor codes keep the store at its bound with the
//! gateway healthy. `statusgate suggest` (the real binary) turns the listing of a gateway that
//! serves the shipped Huawei profile into rule skeletons that, pasted into that profile, pass
//! `statusgate check` and `statusgate explain` shows matching.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::config::{Config, Route, Upstream as Up};
use common::{request, Gateway, Reply, Upstream};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_statusgate"))
}

/// The listing's entry of `route`, once it has counted `n` responses (polled, bounded: the
/// sample is recorded just after the client's response is written).
fn listing_of(gw: &Gateway, route: &str, n: u64) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..250 {
        let listing = gw.admin_get("/-/unmatched").json();
        last = listing["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == route)
            .cloned()
            .unwrap();
        let counted: u64 = last["unmatched"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["count"].as_u64().unwrap())
            .sum::<u64>()
            + last["dropped"].as_u64().unwrap();
        if counted == n {
            return last;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("route {route} did not count {n} unmatched responses: {last:#}");
}

#[test]
fn five_thousand_distinct_vendor_codes_keep_the_store_at_its_bound() {
    const CODES: usize = 5000;
    let up = Upstream::start(|r| {
        let n = r.path.trim_start_matches("/code/");
        Reply::json(
            400,
            "Bad Request",
            &format!(r#"{{"error_code":"VND.{n}","error_msg":"no rule for this"}}"#),
        )
    });
    let cfg = Config::new()
        .threads(2)
        .grace_period("0s")
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("flood", "up").profile("rules/empty.yaml"))
        .build();
    let gw = Gateway::start(&cfg, &[("rules/empty.yaml", "rules: []\n")]);
    let port = gw.port;
    let clients: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in (t..CODES).step_by(4) {
                    let r = request(port, "GET", &format!("/code/{i}"), &[], b"");
                    assert_eq!(r.status, 400, "request {i}");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let route = listing_of(&gw, "flood", CODES as u64);
    let entries = route["unmatched"].as_array().unwrap();
    assert_eq!(route["entries"], 256);
    assert_eq!(entries.len(), 256, "the listing holds the bound, not the traffic");
    assert_eq!(route["dropped"], CODES as u64 - 256);
    assert!(entries
        .iter()
        .all(|e| e["count"] == 1 && e["vendor_code"]["path"] == "/error_code"));
    let text = gw.admin_get("/-/unmatched").text();
    assert!(text.len() < 256 * 1024, "the listing stays small: {} bytes", text.len());
    gw.expect_metric(
        "statusgate_unmatched_total",
        &[("route", "flood"), ("upstream_code", "400")],
        CODES as f64,
        "every unmatched response is counted, kept or not",
    );
    // Healthy: probes answer and a known kind is still counted once the store is full.
    assert_eq!(gw.admin_get("/healthz").status, 200);
    let kept = entries[0]["vendor_code"]["value"]
        .as_str()
        .unwrap()
        .trim_start_matches("VND.")
        .to_owned();
    assert_eq!(request(gw.port, "GET", &format!("/code/{kept}"), &[], b"").status, 400);
    let route = listing_of(&gw, "flood", CODES as u64 + 1);
    assert_eq!(route["entries"], 256);
    assert_eq!(route["unmatched"][0]["count"], 2);
}

#[test]
fn matched_responses_are_not_listed_and_bodies_are_redacted_and_marked_truncated() {
    let trace = r#"{"code":"E.500","message":"java.lang.NullPointerException: boom\n\tat com.vendor.internal.Handler.run(Handler.java:42)"}"#;
    let big = format!(r#"{{"code":"E.big","pad":"{}"}}"#, "x".repeat(5000));
    let up = Upstream::start(move |r| match r.path.as_str() {
        "/matched" => Reply::json(400, "Bad Request", r#"{"code":"KNOWN"}"#),
        "/trace" => Reply::json(500, "Internal Server Error", trace),
        "/big" => Reply::json(409, "Conflict", &big),
        _ => Reply::new(
            502,
            "Bad Gateway",
            &[("Content-Type", "text/html")],
            b"<html>edge</html>",
        ),
    });
    let profile = "rules:\n  - name: known\n    when: { status: 400, json: { /code: { equals: KNOWN } } }\n    then: { status: 422 }\n";
    let cfg = Config::new()
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("redacting", "up").profile("rules/p.yaml"))
        .build();
    let gw = Gateway::start(&cfg, &[("rules/p.yaml", profile)]);
    for path in ["/matched", "/trace", "/big", "/html", "/html"] {
        request(gw.port, "GET", path, &[], b"");
    }
    let route = listing_of(&gw, "redacting", 4);
    let entries = route["unmatched"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "the matched 400 is not listed: {route:#}");
    let of = |s: u64| entries.iter().find(|e| e["upstream_status"] == s).unwrap();
    let html = of(502);
    assert_eq!(
        (html["count"].as_u64(), html["content_type"].as_str()),
        (Some(2), Some("text/html"))
    );
    assert!(html["vendor_code"].is_null());
    assert_eq!(html["example"], "<html>edge</html>");
    let traced = of(500);
    let example = traced["example"].as_str().unwrap();
    common::assert::no_leak(example, &["Handler.java", "NullPointerException"]);
    assert_eq!(traced["redacted"], true);
    assert_eq!(traced["vendor_code"]["value"], "E.500");
    let cut = of(409);
    assert_eq!(cut["truncated"], true);
    assert_eq!(cut["example"].as_str().unwrap().len(), 2048);
    assert_eq!(cut["vendor_code"]["value"], "E.big");
    gw.expect_metric(
        "statusgate_unmatched_total",
        &[("route", "redacting"), ("upstream_code", "502")],
        2.0,
        "the edge's HTML 502s",
    );
    assert_eq!(
        gw.metric(
            "statusgate_unmatched_total",
            &[("route", "redacting"), ("upstream_code", "400")]
        ),
        0.0,
        "a matched response is not unmatched"
    );
}

/// Pastes a `suggest` document into a profile whose last section is `examples:`: the rules at
/// the end of its `rules:` list, the examples at the end of its `examples:` list.
fn paste(profile: &str, suggestion: &str) -> String {
    let (rules, examples) = suggestion
        .split_once("\nrules:\n")
        .and_then(|(_, rest)| rest.split_once("examples:\n"))
        .expect("a suggestion document has rules: and examples:");
    let at = profile.find("\nexamples:\n").expect("the profile has examples:") + 1;
    let mut out = format!("{}{rules}{}", &profile[..at], &profile[at..]);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(examples);
    out
}

#[test]
fn suggestions_for_the_huawei_profile_pass_check_and_explain_shows_them_matching() {
    // Answers the shipped Huawei profile does not know: IAM's token errors (no error_code:
    // `{"error":{"code":..}}`), a quota error from another Huawei service with a message that
    // leaks internals, and the load balancer's HTML page.
    let iam = r#"{"error":{"code":"401","message":"The request you have made requires authentication.","title":"Unauthorized"}}"#;
    let elb = "<html><head><title>502 Bad Gateway</title></head><body>elb</body></html>";
    let up = Upstream::start(move |r| match r.path.as_str() {
        "/v1/p/vpc-endpoints" => Reply::json(401, "Unauthorized", iam),
        "/v1/p/vpc-endpoint-services" => {
            Reply::new(502, "Bad Gateway", &[("Content-Type", "text/html")], elb.as_bytes())
        }
        _ => Reply::json(
            404,
            "Not Found",
            r#"{"error_code":"EndPoint.0404","error_msg":"not found"}"#,
        ),
    });
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/huawei-vpcep.yaml")).unwrap();
    let cfg = Config::new()
        .upstream("up", Up::addr(&up.addr()))
        .route(
            Route::new("huawei", "up")
                .prefix("/huawei/")
                .strip_prefix()
                .profile("rules/huawei-vpcep.yaml"),
        )
        .build();
    let gw = Gateway::start(&cfg, &[("rules/huawei-vpcep.yaml", &shipped)]);
    for path in [
        "/v1/p/vpc-endpoints",
        "/v1/p/vpc-endpoints",
        "/v1/p/vpc-endpoint-services",
        "/v1/p/other",
    ] {
        request(gw.port, "GET", &format!("/huawei{path}"), &[], b"");
    }
    // The 404 with an error_code is the profile's `vpcep-error`: only 3 are unmatched.
    let route = listing_of(&gw, "huawei", 3);
    assert_eq!(route["entries"], 2, "{route:#}");

    // From the running gateway's admin listener, and from a saved listing: the same output.
    let config = gw.path("statusgate.yaml");
    let url = format!("http://127.0.0.1:{}/-/unmatched", gw.admin);
    let out = bin()
        .args(["suggest", "--from", &url, "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.stderr.is_empty(),
        "nothing left out: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let saved = gw.path("unmatched.json");
    std::fs::write(&saved, gw.admin_get("/-/unmatched").body).unwrap();
    let from_file = bin()
        .args(["suggest", "--from"])
        .arg(&saved)
        .arg("-c")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(from_file.stdout).unwrap(), text);

    assert!(text.contains("  - name: huawei-401-401\n"), "{text}");
    assert!(text.contains(r#"json: { "/error/code": { equals: "401" } }"#), "{text}");
    assert!(text.contains(r#"detail: "${json:/error/message}""#), "{text}");
    assert!(text.contains("  - name: huawei-502-html\n"), "{text}");

    // Pasted into the shipped profile: `statusgate check` accepts it (examples included) ...
    let doc = text.split("---\n").nth(1).expect("one document for the route");
    let pasted = paste(&shipped, doc);
    std::fs::write(gw.path("rules/huawei-vpcep.yaml"), &pasted).unwrap();
    let check = bin().arg("check").arg("-c").arg(&config).output().unwrap();
    assert!(
        check.status.success(),
        "check: {}\n{pasted}",
        String::from_utf8_lossy(&check.stderr)
    );
    // ... `statusgate explain` shows the suggested rule matching the vendor's answer ...
    let explain = bin()
        .args(["explain", "-c"])
        .arg(&config)
        .args([
            "--route",
            "huawei",
            "--status",
            "401",
            "--path",
            "/huawei/v1/p/vpc-endpoints",
        ])
        .args(["--header", "Content-Type: application/json", "--body", iam])
        .output()
        .unwrap();
    let explained = String::from_utf8(explain.stdout).unwrap();
    assert!(explained.contains("# rule: huawei-401-401\n"), "{explained}");
    assert!(
        explained.contains("The request you have made requires authentication."),
        "{explained}"
    );
    // ... and once reloaded the gateway matches it: nothing unmatched any more for IAM.
    // (The file watcher may have applied the edit already: then the reload finds it unchanged.)
    let r = request(gw.admin, "POST", "/-/reload", &[], b"");
    assert!(
        ["applied", "unchanged"].contains(&r.json()["outcome"].as_str().unwrap()),
        "{}",
        r.text()
    );
    let rules = gw.admin_get("/-/config").json()["routes"][0]["rules"].to_string();
    assert!(rules.contains("huawei-401-401"), "{rules}");
    let r = request(gw.port, "GET", "/huawei/v1/p/vpc-endpoints", &[], b"");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["vendor_code"], "401");
    let route = listing_of(&gw, "huawei", 0);
    assert_eq!(route["entries"], 0);
}

#[test]
fn with_an_admin_token_the_listings_and_suggest_need_it() {
    let up = Upstream::start(|_| Reply::json(418, "I'm a teapot", r#"{"errorCode":"Teapot.1"}"#));
    let cfg = Config::new()
        .admin_token_file("admin-token")
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("guarded", "up"))
        .build();
    let gw = Gateway::start(&cfg, &[("admin-token", "s3cret-admin-token\n")]);
    assert_eq!(
        request(gw.port, "GET", "/", &[], b"").status,
        400,
        "418 is outside the canonical set"
    );
    for path in ["/-/unmatched", "/-/shadow"] {
        assert_eq!(gw.admin_get(path).status, 401, "{path} without the token");
    }
    let auth = [("Authorization", "Bearer s3cret-admin-token")];
    // The sample is recorded just after the client's response is written: polled, bounded.
    let mut listed = serde_json::Value::Null;
    for _ in 0..250 {
        let listing = request(gw.admin, "GET", "/-/unmatched", &auth, b"");
        assert_eq!(listing.status, 200);
        listed = listing.json()["routes"][0]["unmatched"][0]["vendor_code"]["value"].clone();
        if !listed.is_null() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(listed, "Teapot.1");

    let config = gw.path("statusgate.yaml");
    let url = format!("http://127.0.0.1:{}", gw.admin);
    let refused = bin()
        .args(["suggest", "--from", &url, "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("the admin listener answered 401"), "{stderr}");
    let out = bin()
        .args(["suggest", "--from", &url, "--route", "guarded", "--token-file"])
        .arg(gw.path("admin-token"))
        .arg("-c")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    // The 418 was answered 400 by the canonical fallback: the skeleton keeps that status.
    assert!(text.contains("  - name: guarded-418-teapot-1\n"), "{text}");
    assert!(
        text.contains("expect: { status: 400, rule: guarded-418-teapot-1 }"),
        "{text}"
    );
    let unknown = bin()
        .args(["suggest", "--from", &url, "--route", "nope", "--token-file"])
        .arg(gw.path("admin-token"))
        .arg("-c")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no route `nope`"));
}
