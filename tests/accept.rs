//! What accepting a snapshot does, seen from outside: metric series are resolved when a
//! snapshot is accepted (start or applied reload) and removed when their route is gone, a
//! rejected reload leaves no series behind, and a reload that changes boot-only settings still
//! applies the new rules while `restart_needed` names those settings in words (reload
//! response and `/-/config`). Series are scraped from `/metrics` on the admin listener; each
//! test uses its own route names (the registry is process-wide).

mod common;

use common::config::{Config, Route, Upstream as Up};
use common::{request, Gateway, Reply, Upstream};

const RULES: &str = "rules:\n  - name: teapot\n    when: { status: 400 }\n    then: { status: 409 }\n";

/// `base` with `threads`, no grace period, no file watching (the tests reload by hand), the
/// upstream `up` and one route `route` through rules.yaml.
fn configured(base: Config, threads: usize, up: Up, route: &str) -> String {
    base.threads(threads)
        .grace_period("0s")
        .watch_config(false)
        .upstream("up", up)
        .route(Route::new(route, "up").profile("rules.yaml"))
        .build()
}

/// `configured` with one thread.
fn config(up: &Upstream, route: &str) -> String {
    configured(Config::new(), 1, Up::addr(&up.addr()), route)
}

fn scrape(gw: &Gateway) -> String {
    gw.admin_get("/metrics").text()
}

fn reload(gw: &Gateway) -> serde_json::Value {
    request(gw.admin, "POST", "/-/reload", &[], b"").json()
}

#[test]
fn a_renamed_route_loses_its_old_series_and_gets_new_ones_on_reload() {
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", "{}"));
    let gw = Gateway::start(&config(&up, "accept-old"), &[("rules.yaml", RULES)]);
    assert_eq!(request(gw.port, "GET", "/", &[], b"").status, 409);
    gw.expect_metric("statusgate_responses_total", &[("route", "accept-old")], 1.0, "counted");
    assert!(scrape(&gw).contains("route=\"accept-old\",rule=\"teapot\""));

    gw.write_config(&config(&up, "accept-new"));
    assert_eq!(reload(&gw)["outcome"], "applied");
    let text = scrape(&gw);
    assert!(
        !text.contains("route=\"accept-old\""),
        "the gone route's series are removed:\n{text}"
    );
    assert!(
        text.contains("statusgate_rule_matches_total{route=\"accept-new\",rule=\"teapot\"} 0"),
        "the new route's series exist from its acceptance:\n{text}"
    );
    assert_eq!(request(gw.port, "GET", "/", &[], b"").status, 409);
    gw.expect_metric(
        "statusgate_responses_total",
        &[("route", "accept-new")],
        1.0,
        "counted on the new route",
    );
}

#[test]
fn a_rejected_reload_that_names_a_new_route_leaves_no_series_behind() {
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", "{}"));
    let gw = Gateway::start(&config(&up, "accept-kept"), &[("rules.yaml", RULES)]);
    // A valid new route, and a bad duration elsewhere: the reload is rejected after the
    // route compiled.
    gw.write_config(&configured(
        Config::new(),
        1,
        Up::addr(&up.addr()).connect_timeout("soon"),
        "accept-rejected",
    ));
    assert_eq!(reload(&gw)["outcome"], "rejected");
    let text = scrape(&gw);
    assert!(
        !text.contains("accept-rejected"),
        "no series of a rejected snapshot:\n{text}"
    );
    assert!(
        text.contains("route=\"accept-kept\""),
        "the serving route keeps its series"
    );
}

#[test]
fn a_reload_that_changes_threads_and_log_format_applies_the_rules_and_names_both_as_needing_a_restart() {
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", "{}"));
    let gw = Gateway::start(&config(&up, "accept-boot"), &[("rules.yaml", RULES)]);
    assert!(gw.admin_get("/-/config").json()["restart_needed"].is_null());
    gw.write_config(&configured(
        Config::new().log_format("json"),
        3,
        Up::addr(&up.addr()),
        "accept-boot",
    ));
    std::fs::write(gw.path("rules.yaml"), RULES.replace("409", "429")).unwrap();
    let r = reload(&gw);
    assert_eq!(r["outcome"], "applied", "{r}");
    let note = r["restart_needed"].as_str().expect("a restart note");
    assert!(note.contains("server.threads") && note.contains("log.format"), "{note}");
    assert!(
        !note.contains("listen") && !note.contains("grace_period"),
        "only what changed: {note}"
    );
    assert!(!note.contains('{'), "words, not a Debug dump: {note}");
    assert_eq!(
        gw.admin_get("/-/config").json()["restart_needed"].as_str(),
        Some(note),
        "/-/config says the same"
    );
    assert_eq!(
        request(gw.port, "GET", "/", &[], b"").status,
        429,
        "the new rules serve"
    );
}
