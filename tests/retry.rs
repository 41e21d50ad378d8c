//! Retry guidance (issue 14, part 3) through the real gateway on loopback: the `retryable`
//! member of every problem for each canonical error status crossed with the two method classes
//! of RFC 9110 section 9.2.2 (a real upstream answering each status), the gateway's own
//! failures (connect refused, no upstream left, an upstream that never answers) with
//! `Retry-After` when `gateway_retry_after` configures it and without when it does not, and a
//! rule's `retryable:` override.

mod common;

use common::assert;
use common::config::{Config, Route, Upstream as Up};
use common::docs::{fenced, shell_command};
use common::gateway::free_port;
use common::{request, Gateway, Reply, Upstream};

const IDEMPOTENT: [&str; 3] = ["GET", "PUT", "DELETE"];
const NOT_IDEMPOTENT: [&str; 2] = ["POST", "PATCH"];

/// The shipped canonical profile with `gateway_retry_after` appended (or as shipped).
fn canonical(retry_after: Option<&str>) -> String {
    let shipped = std::fs::read_to_string(format!("{}/rules/canonical.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
    match retry_after {
        Some(block) => format!("{shipped}gateway_retry_after:\n{block}"),
        None => shipped,
    }
}

/// The error statuses of the shipped canonical set with their reasons, read from the file
/// itself (`  429: { reason: Too Many Requests }`).
fn canonical_error_statuses() -> Vec<(u16, String)> {
    let text = canonical(None);
    let statuses: Vec<(u16, String)> = text
        .lines()
        .filter_map(|l| {
            let (code, rest) = l.trim().split_once(": { reason: ")?;
            Some((code.parse::<u16>().ok()?, rest.strip_suffix(" }")?.to_owned()))
        })
        .filter(|(s, _)| *s >= 400)
        .collect();
    assert!(statuses.len() >= 20, "{statuses:?}");
    statuses
}

#[test]
fn every_canonical_error_status_says_whether_each_method_class_may_retry() {
    let up = Upstream::start(|req| {
        let status: u16 = req.path.trim_start_matches("/s/").parse().unwrap_or(500);
        Reply::json(status, "Vendor", r#"{"message":"no"}"#)
    });
    let cfg = Config::new()
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("statuses", "up").prefix("/"))
        .build();
    let gw = Gateway::start(&cfg, &[]);
    for (status, reason) in canonical_error_statuses() {
        for (methods, idempotent) in [(&IDEMPOTENT[..], true), (&NOT_IDEMPOTENT[..], false)] {
            for method in methods {
                let r = request(gw.port, method, &format!("/s/{status}"), &[], b"{}");
                let p = assert::upstream_problem(&r, status, &reason, status);
                let want = match status {
                    429 | 503 => true,
                    504 => idempotent,
                    _ => false,
                };
                assert_eq!(p["retryable"], want, "{method} -> upstream {status}: {p}");
                // An upstream's answer carries the upstream's own Retry-After only.
                assert_eq!(r.header("retry-after"), None, "{method} {status}");
            }
        }
    }
    // The XML problem carries the member too.
    let r = request(gw.port, "GET", "/s/503", &[("Accept", "application/xml")], b"");
    assert!(r.text().contains("<retryable>true</retryable>"), "{}", r.text());
}

/// Routes to a closed port, each in its own group (a refusal takes the address out of its
/// group's rotation, so the second request on a route finds no upstream left: 503), and to an
/// upstream that never answers (504 after the response deadline).
fn failing_gateway(retry_after: Option<&str>) -> (Gateway, Upstream) {
    let hang = Upstream::start(|_| Reply::Hang);
    let mut cfg = Config::new().canonical("canonical.yaml");
    for method in ["get", "post"] {
        let dead = format!("127.0.0.1:{}", free_port());
        cfg = cfg
            .upstream(&format!("dead-{method}"), Up::addr(&dead).fail_timeout("1m"))
            .route(
                Route::new(&format!("refused-{method}"), &format!("dead-{method}"))
                    .prefix(&format!("/refused-{method}")),
            )
            .upstream(
                &format!("hang-{method}"),
                Up::addr(&hang.addr()).response_timeout("300ms"),
            )
            .route(Route::new(&format!("slow-{method}"), &format!("hang-{method}")).prefix(&format!("/slow-{method}")));
    }
    let gw = Gateway::start(&cfg.build(), &[("canonical.yaml", &canonical(retry_after))]);
    (gw, hang)
}

#[test]
fn gateway_made_failures_say_whether_to_retry_and_carry_the_configured_retry_after() {
    let (gw, _hang) = failing_gateway(Some("  503: 5s\n  504: 2m\n"));
    // Connect refused: the request never left; an idempotent method may retry.
    let r = request(gw.port, "GET", "/refused-get", &[], b"");
    let p = assert::strict_gateway_problem(&r, 502, "upstream-refused");
    assert_eq!(p["retryable"], true, "{p}");
    assert_eq!(r.header("retry-after"), None, "502 takes no Retry-After");
    let r = request(gw.port, "POST", "/refused-post", &[], b"{}");
    let p = assert::strict_gateway_problem(&r, 502, "upstream-refused");
    assert_eq!(p["retryable"], false, "{p}");
    // The refusing addresses are out of rotation: 503, retryable for any method, Retry-After.
    for (method, path) in [("GET", "/refused-get"), ("POST", "/refused-post")] {
        let r = request(gw.port, method, path, &[], b"");
        let p = assert::strict_gateway_problem(&r, 503, "no-upstream");
        assert_eq!(p["retryable"], true, "{method}: {p}");
        assert_eq!(r.header("retry-after"), Some("5"), "{method}");
    }
    // No response header before the deadline: 504, retryable (with Retry-After, 2m = 120
    // seconds) only for an idempotent method.
    let r = request(gw.port, "GET", "/slow-get", &[], b"");
    let p = assert::strict_gateway_problem(&r, 504, "response-timeout");
    assert_eq!(p["retryable"], true, "{p}");
    assert_eq!(r.header("retry-after"), Some("120"));
    let r = request(gw.port, "POST", "/slow-post", &[], b"{}");
    let p = assert::strict_gateway_problem(&r, 504, "response-timeout");
    assert_eq!(p["retryable"], false, "{p}");
    assert_eq!(
        r.header("retry-after"),
        None,
        "no Retry-After where retrying is not safe"
    );
}

#[test]
fn without_gateway_retry_after_no_gateway_answer_carries_retry_after() {
    let (gw, _hang) = failing_gateway(None);
    let r = request(gw.port, "GET", "/refused-get", &[], b"");
    assert::strict_gateway_problem(&r, 502, "upstream-refused");
    let r = request(gw.port, "GET", "/refused-get", &[], b"");
    let p = assert::strict_gateway_problem(&r, 503, "no-upstream");
    assert_eq!((p["retryable"].as_bool(), r.header("retry-after")), (Some(true), None));
    let r = request(gw.port, "GET", "/slow-get", &[], b"");
    let p = assert::strict_gateway_problem(&r, 504, "response-timeout");
    assert_eq!((p["retryable"].as_bool(), r.header("retry-after")), (Some(true), None));
}

#[test]
fn a_bad_gateway_retry_after_is_a_positioned_problem() {
    let dir = tempfile::tempdir().unwrap();
    let text = canonical(Some("  502: 5s\n  503: 1500ms\n  504: soon\n"));
    std::fs::write(dir.path().join("canonical.yaml"), &text).unwrap();
    let main = dir.path().join("statusgate.yaml");
    let cfg = Config::new()
        .listen_addr("127.0.0.1:1")
        .no_admin()
        .canonical("canonical.yaml")
        .upstream("u", Up::addr("127.0.0.1:2"))
        .route(Route::new("r", "u"))
        .build();
    std::fs::write(&main, cfg).unwrap();
    let problems: Vec<String> = statusgate::snapshot::load(&main)
        .map(|_| ())
        .unwrap_err()
        .iter()
        .map(|p| p.to_string().replace(&format!("{}/", dir.path().display()), ""))
        .collect();
    let line = |needle: &str| text.lines().position(|l| l == needle).unwrap() + 1;
    let want = [
        format!(
            "canonical.yaml:{}:8: invalid status: gateway_retry_after 502: only 503 and 504 (the gateway's retryable answers)",
            line("  502: 5s")
        ),
        format!(
            "canonical.yaml:{}:8: invalid duration: gateway_retry_after 503: `1500ms` is not a whole number of seconds (Retry-After counts seconds)",
            line("  503: 1500ms")
        ),
        format!(
            "canonical.yaml:{}:8: invalid duration: gateway_retry_after 504: `soon` is not a duration like 250ms, 1s or 2m",
            line("  504: soon")
        ),
    ];
    assert_eq!(problems, want);
}

/// A rule's `retryable:` wins over the default, through the live path.
#[test]
fn a_rule_overrides_retryable_either_way() {
    let up = Upstream::start(|req| match req.path.as_str() {
        "/final" => Reply::json(400, "Bad Request", r#"{"code":"MAINTENANCE_FINAL"}"#),
        "/conflict" => Reply::json(409, "Conflict", r#"{"code":"VERSION"}"#),
        _ => Reply::json(400, "Bad Request", r#"{"code":"BUSY"}"#),
    });
    let profile = "rules:\n  - name: busy\n    when: { status: 400, json: { /code: BUSY } }\n    then: { status: 503 }\n  - name: closed-for-good\n    when: { status: 400, json: { /code: MAINTENANCE_FINAL } }\n    then: { status: 503, retryable: false }\n  - name: stale-version\n    when: { status: 409 }\n    then: { retryable: true, problem: { detail: \"Fetch the resource again and retry.\" } }\n";
    let cfg = Config::new()
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("override", "up").prefix("/").profile("p.yaml"))
        .build();
    let gw = Gateway::start(&cfg, &[("p.yaml", profile)]);
    for method in ["GET", "POST"] {
        let r = request(gw.port, method, "/busy", &[], b"");
        let p = assert::upstream_problem(&r, 503, "Service Unavailable", 400);
        assert_eq!(p["retryable"], true, "{method}: 503 by default: {p}");
        let r = request(gw.port, method, "/final", &[], b"");
        let p = assert::upstream_problem(&r, 503, "Service Unavailable", 400);
        assert_eq!(p["retryable"], false, "{method}: the rule says no: {p}");
        let r = request(gw.port, method, "/conflict", &[], b"");
        let p = assert::upstream_problem(&r, 409, "Conflict", 409);
        assert_eq!(p["retryable"], true, "{method}: the rule says yes: {p}");
    }
}

/// docs/canonical-profile.md's worked example (the Huawei profile's throttled 400) prints the
/// problem body the document shows, `retryable` and `Retry-After` included.
#[test]
fn the_documented_retry_example_is_what_explain_prints() {
    let doc = std::fs::read_to_string(format!("{}/docs/canonical-profile.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let section = &doc[doc.find("## Retry guidance").unwrap()..];
    let cmd = shell_command(section, "statusgate explain");
    let want = fenced(section, "json").trim_end();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd.replacen("statusgate", env!("CARGO_BIN_EXE_statusgate"), 1))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{cmd}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("\nretry-after: 1\n"), "{text}");
    assert_eq!(text.lines().find(|l| l.starts_with('{')), Some(want), "{text}");
}
