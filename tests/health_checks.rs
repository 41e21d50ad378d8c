//! Active health checks against real upstream servers on loopback: an address whose health
//! endpoint starts failing leaves the rotation (no client request reaches it, counted per
//! server), comes back only after `rise` passing probes, and `statusgate_upstream_address_up`
//! and `GET /-/config` show it; `expect` and `HEAD` probes; bad `health_check:` keys are
//! problems at their file:line:col.

mod common;

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::config::{Config, Route, Upstream as Up};
use common::{request, Gateway, Reply, Upstream};

/// A server whose `/health` answers the status in `health` (counting the passing answers) and
/// everything else 200 with its name.
struct Server {
    up: Upstream,
    health: Arc<AtomicU16>,
    passes: Arc<AtomicUsize>,
}

impl Server {
    fn start(name: &'static str) -> Server {
        let health = Arc::new(AtomicU16::new(200));
        let passes = Arc::new(AtomicUsize::new(0));
        let (h, p) = (health.clone(), passes.clone());
        let up = Upstream::start(move |req| {
            if req.path == "/health" {
                let status = h.load(Ordering::Relaxed);
                if status < 400 {
                    p.fetch_add(1, Ordering::Relaxed);
                }
                return Reply::new(status, "Health", &[], b"");
            }
            Reply::json(200, "OK", &format!(r#"{{"served_by":"{name}"}}"#))
        });
        Server { up, health, passes }
    }

    /// Client requests (not probes) it received.
    fn client_requests(&self) -> usize {
        self.up.requests().iter().filter(|r| r.path != "/health").count()
    }

    fn probes(&self) -> Vec<common::upstream::Received> {
        self.up.requests().into_iter().filter(|r| r.path == "/health").collect()
    }
}

fn eventually(tries: usize, what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..tries {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("never happened: {what}");
}

fn up_metric(gw: &Gateway, s: &Server) -> f64 {
    gw.metric(
        "statusgate_upstream_address_up",
        &[("upstream", "pool"), ("address", &s.up.addr())],
    )
}

fn address_state(gw: &Gateway, s: &Server) -> serde_json::Value {
    let state = gw.admin_get("/-/config").json();
    state["upstreams"]["pool"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["address"] == s.up.addr()).cloned())
        .unwrap_or_else(|| panic!("{} in {state}", s.up.addr()))
}

#[test]
fn an_address_failing_its_health_check_leaves_the_rotation_and_returns_after_rise_passes() {
    let (a, b) = (Server::start("a"), Server::start("b"));
    let check = "{ path: /health, interval: 100ms, timeout: 500ms, rise: 3, fall: 2 }";
    let config = Config::new()
        .upstream(
            "pool",
            Up::addrs(&[&a.up.addr(), &b.up.addr()]).set("health_check", check),
        )
        .route(Route::new("r", "pool").prefix("/"))
        .build();
    let gw = Gateway::start(&config, &[]);
    eventually(100, "a is probed", || !a.probes().is_empty());
    assert_eq!(up_metric(&gw, &a), 1.0);
    let mut seen: Vec<String> = (0..6)
        .map(|_| request(gw.port, "GET", "/x", &[], b"").json()["served_by"].to_string())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 2, "both addresses serve while healthy: {seen:?}");

    a.health.store(503, Ordering::Relaxed);
    eventually(200, "a leaves the rotation", || up_metric(&gw, &a) == 0.0);
    let state = address_state(&gw, &a);
    assert_eq!(state["active_up"], false, "{state}");
    assert_eq!(state["in_rotation"], false, "{state}");
    let before = a.client_requests();
    for _ in 0..10 {
        let r = request(gw.port, "GET", "/x", &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["served_by"], "b");
    }
    assert_eq!(
        a.client_requests(),
        before,
        "no client request reaches a failed address"
    );

    let passes_before = a.passes.load(Ordering::Relaxed);
    a.health.store(200, Ordering::Relaxed);
    eventually(200, "a comes back", || up_metric(&gw, &a) == 1.0);
    assert!(
        a.passes.load(Ordering::Relaxed) - passes_before >= 3,
        "back only after rise (3) passing probes"
    );
    assert_eq!(address_state(&gw, &a)["active_up"], true);
    eventually(20, "a serves clients again", || {
        request(gw.port, "GET", "/x", &[], b"").json()["served_by"] == "a"
    });
    let probe = &a.probes()[0];
    assert_eq!(probe.method, "GET");
    assert_eq!(
        probe.header("host"),
        Some(a.up.addr().as_str()),
        "a literal's probe Host is the address"
    );
}

#[test]
fn expect_lists_the_passing_statuses_and_head_probes_work() {
    let a = Server::start("a");
    let b = Server::start("b");
    b.health.store(204, Ordering::Relaxed);
    let check = "{ path: /health, method: HEAD, interval: 100ms, timeout: 500ms, expect: [204], rise: 1, fall: 1, host: probe.example }";
    let config = Config::new()
        .upstream(
            "pool",
            Up::addrs(&[&a.up.addr(), &b.up.addr()]).set("health_check", check),
        )
        .route(Route::new("r", "pool").prefix("/"))
        .build();
    let gw = Gateway::start(&config, &[]);
    eventually(200, "a's 200 is not in expect", || up_metric(&gw, &a) == 0.0);
    assert_eq!(up_metric(&gw, &b), 1.0, "b's 204 passes");
    let probe = &b.probes()[0];
    assert_eq!(probe.method, "HEAD");
    assert_eq!(probe.header("host"), Some("probe.example"));
    for _ in 0..4 {
        assert_eq!(request(gw.port, "GET", "/x", &[], b"").json()["served_by"], "b");
    }
}

#[test]
fn every_address_failing_its_checks_is_503_no_upstream() {
    let a = Server::start("a");
    a.health.store(500, Ordering::Relaxed);
    let config = Config::new()
        .upstream(
            "pool",
            Up::addr(&a.up.addr()).set("health_check", "{ path: /health, interval: 100ms, fall: 1 }"),
        )
        .route(Route::new("r", "pool").prefix("/"))
        .build();
    let gw = Gateway::start(&config, &[]);
    eventually(200, "a leaves", || up_metric(&gw, &a) == 0.0);
    let r = request(gw.port, "GET", "/x", &[], b"");
    common::assert::strict_gateway_problem(&r, 503, "no-upstream");
    assert_eq!(a.client_requests(), 0);
}

#[test]
fn bad_health_check_keys_are_problems_at_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statusgate.yaml");
    let text = "listen: 127.0.0.1:1\nupstreams:\n  pool:\n    addrs: [127.0.0.1:9]\n    health_check: { path: health, method: POST, rise: 0, expect: [700] }\nroutes:\n  - { name: r, upstream: pool }\n";
    std::fs::write(&path, text).unwrap();
    let problems: Vec<String> = statusgate::snapshot::load(&path)
        .expect_err("rejected")
        .iter()
        .map(ToString::to_string)
        .collect();
    for (what, col) in [
        ("path `health` must be an origin-form path", "5:27"),
        ("method `POST`", "5:43"),
        ("rise", "5:55"),
        ("700", "5:67"),
    ] {
        assert!(
            problems
                .iter()
                .any(|p| p.contains(what) && p.contains(&format!("statusgate.yaml:{col}"))),
            "{what} at {col}: {problems:#?}"
        );
    }
}
