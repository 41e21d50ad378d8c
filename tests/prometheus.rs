//! The metrics as a real Prometheus sees them. A gateway answers every kind of response (200
//! passed, vendor 4xx rewritten by rules and by the canonical fallback, 502/503 from a refusing
//! port, 504 from a hanging upstream, 404 no route); then:
//! - `promtool check metrics` on a scrape of `/metrics`, `promtool check rules` / `test rules`
//!   on deploy/prometheus/alerts.yaml, `promtool check config` on deploy/prometheus/prometheus.yml;
//! - a `prometheus` process on loopback scrapes the admin listener every second and evaluates
//!   the alert rules (each must evaluate without error);
//! - every panel query of deploy/grafana/statusgate.json, its variables substituted, must parse
//!   and return series through Prometheus's HTTP API (the Process row's `process_*` panels too).
//!
//! Needs Debian's prometheus package (`scripts/setup prometheus`; scripts/test installs it).

mod common;

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::client::send_raw;
use common::config::{Config, Route, Upstream as Up};
use common::gateway::free_port;
use common::{request, Gateway, Reply, Response, Upstream};
use serde_json::Value;

const SETUP_HINT: &str =
    "`scripts/setup prometheus` installs them (Debian's prometheus package: /usr/bin/prometheus, /usr/bin/promtool)";

const PROFILE: &str = r#"
vendor: prometheus-test
rules:
  - name: throttled
    when: { status: 400, json: { /error_code: THROTTLED } }
    then: { status: 429, headers: { set: { Retry-After: "1" } } }
  - name: validation
    when: { status: 403, json: { /error_code: VALIDATION } }
    then: { status: 422 }
  - name: never-matches
    when: { status: 418, method: PATCH }
    then: { status: 400 }
"#;

/// One round of load: each request and the statuses it may get.
const ROUND: &[(&str, &[u16])] = &[
    ("/pass/items/1", &[200]),
    ("/vendor/throttle", &[429]), // 400 -> 429 by rule `throttled`
    ("/vendor/invalid", &[422]),  // 403 -> 422 by rule `validation`
    ("/vendor/teapot", &[400]),   // 418 -> 400 by the canonical 4xx fallback
    ("/vendor/missing", &[404]),  // 404 passes unchanged
    ("/refused/x", &[502, 503]),  // refused; then 503 while the address is marked down
    ("/slow/x", &[504]),          // no header before the 200 ms deadline
    ("/nowhere", &[404]),         // no route
];

/// The statusgate metrics the dashboard and alerts rely on; each must be in a scrape.
const FAMILIES: &[&str] = &[
    "statusgate_responses_total",
    "statusgate_upstream_failures_total",
    "statusgate_rule_matches_total",
    "statusgate_body_rewrites_skipped_total",
    "statusgate_request_duration_seconds_bucket",
    "statusgate_upstream_header_seconds_bucket",
    "statusgate_requests_in_flight",
    "statusgate_build_info",
    "statusgate_config_reloads_total",
    "statusgate_config_last_reload_success_timestamp_seconds",
    "statusgate_config_info",
    // prometheus's ProcessCollector (Linux): the dashboard's Process row and the fd alert.
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
];

/// The dashboard's Process panels: each must exist and return series (section d).
const PROCESS_PANELS: &[&str] = &["CPU (cores used)", "Resident memory", "Open file descriptors", "Uptime"];

/// Metrics with a `route` label: the dashboard must select them with `route=~"$route"`.
const ROUTE_METRICS: &[&str] = &[
    "statusgate_responses_total",
    "statusgate_upstream_failures_total",
    "statusgate_rule_matches_total",
    "statusgate_body_rewrites_skipped_total",
    "statusgate_request_duration_seconds",
    "statusgate_upstream_header_seconds",
];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A binary from PATH (or /usr/bin); a clear failure, not a skip, when it is missing.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed (not in PATH nor /usr/bin): {SETUP_HINT}"))
}

/// Runs a tool; fails the test with everything it printed unless it exits 0. Returns its output.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not run: {e} ({SETUP_HINT})"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed ({}):\n{text}", out.status);
    text
}

fn http_get(port: u16, path_and_query: &str) -> io::Result<Response> {
    let raw = format!("GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    send_raw(port, raw.as_bytes(), false)
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A `prometheus` server on a free loopback port with its own temp storage; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(scrape_port: u16, rules: &Path) -> Prometheus {
        let bin = tool("prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: statusgate\n    static_configs:\n      - targets: ['127.0.0.1:{scrape_port}']\n",
                rules.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let port = free_port();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e} ({SETUP_HINT})", bin.display()));
        let mut p = Prometheus { child, port, dir };
        let t = Instant::now();
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", p.log());
            }
            if http_get(p.port, "/-/ready").is_ok_and(|r| r.status == 200) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "prometheus not ready within 30 s:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    fn api(&self, path_and_query: &str) -> Value {
        let r = http_get(self.port, path_and_query)
            .unwrap_or_else(|e| panic!("prometheus {path_and_query}: {e}\n{}", self.log()));
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("prometheus {path_and_query}: not JSON ({e}): {}", r.text()))
    }

    /// An instant query: the API's answer, `{"status": "success" | "error", ...}`.
    fn query(&self, q: &str) -> Value {
        self.api(&format!("/api/v1/query?query={}", url_encode(q)))
    }

    /// The first sample value of a query, if any.
    fn value(&self, q: &str) -> Option<f64> {
        let v = self.query(q);
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(ok: &Upstream, vendor: &Upstream, slow: &Upstream) -> Gateway {
    let dead = free_port();
    let cfg = Config::new()
        .threads(2)
        .grace_period("0s")
        .watch_config(false)
        .upstream("ok", Up::addr(&ok.addr()))
        .upstream("vendor", Up::addr(&vendor.addr()))
        .upstream(
            "dead",
            Up::addr(&format!("127.0.0.1:{dead}"))
                .connect_timeout("300ms")
                .fail_timeout("1s"),
        )
        .upstream("slow", Up::addr(&slow.addr()).response_timeout("200ms"))
        .route(Route::new("pass", "ok").prefix("/pass/").strip_prefix())
        .route(
            Route::new("vendor", "vendor")
                .prefix("/vendor/")
                .strip_prefix()
                .profile("profile.yaml"),
        )
        .route(Route::new("refused", "dead").prefix("/refused/"))
        .route(Route::new("slow", "slow").prefix("/slow/"))
        .build();
    Gateway::start(&cfg, &[("profile.yaml", PROFILE)])
}

/// Metrics are recorded just after the response is written: poll (bounded) for a count.
fn at_least_one(gw: &Gateway, name: &str, labels: &[(&str, &str)], what: &str) {
    for _ in 0..100 {
        if gw.metric(name, labels) >= 1.0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what}: no {name}{labels:?}");
}

fn load_round(gw: &Gateway) {
    for (path, want) in ROUND {
        let r = request(gw.port, "GET", path, &[], b"");
        assert!(want.contains(&r.status), "GET {path}: {} {}", r.status, r.text());
    }
}

/// A reload of the same files (unchanged), a rejected one, and back (unchanged).
fn reloads(gw: &Gateway) {
    let path = gw.path("statusgate.yaml");
    let good = std::fs::read_to_string(&path).unwrap();
    assert_eq!(request(gw.admin, "POST", "/-/reload", &[], b"").status, 200);
    std::fs::write(&path, format!("{good}\nno_such_key: 1\n")).unwrap();
    assert_eq!(request(gw.admin, "POST", "/-/reload", &[], b"").status, 422);
    std::fs::write(&path, good).unwrap();
    assert_eq!(request(gw.admin, "POST", "/-/reload", &[], b"").status, 200);
}

/// Every panel (rows' nested panels too): `(title, refId, expr)` for each of its targets.
fn panel_queries(dashboard: &Value) -> Vec<(String, String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            walk(&p["panels"], out);
            if p["type"] == "row" {
                continue;
            }
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            assert!(!targets.is_empty(), "panel {title:?} has no targets");
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "panel {title:?} must use the datasource variable"
            );
            for t in targets {
                let expr = t["expr"].as_str();
                let expr = expr.unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
                let ref_id = t["refId"].as_str().unwrap_or("?").to_owned();
                out.push((title.clone(), ref_id, expr.to_owned()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// What Grafana would send: the variables replaced with concrete values.
fn substitute(expr: &str, route: &str) -> String {
    let mut q = expr.to_owned();
    for (var, value) in [
        ("${__rate_interval}", "1m"),
        ("$__rate_interval", "1m"),
        ("${__interval}", "1m"),
        ("$__interval", "1m"),
        ("${__range}", "1m"),
        ("$__range", "1m"),
        ("${route}", route),
        ("$route", route),
    ] {
        q = q.replace(var, value);
    }
    // `$1` (a label_replace group) is not a Grafana variable; anything else left is.
    let left = q
        .match_indices('$')
        .any(|(i, _)| !q[i + 1..].starts_with(|c: char| c.is_ascii_digit()));
    assert!(!left, "unsubstituted variable in {q}");
    q
}

fn check_dashboard_shape(d: &Value) {
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion");
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` variable"))
    };
    let ds = var("datasource");
    assert_eq!(
        (ds["type"].as_str(), ds["query"].as_str()),
        (Some("datasource"), Some("prometheus"))
    );
    let route = var("route");
    assert_eq!(route["type"], "query");
    assert_eq!(route["multi"], true);
    assert_eq!(route["includeAll"], true);
    assert_eq!(
        route["definition"], "label_values(statusgate_responses_total, route)",
        "route variable query"
    );
}

#[test]
fn metrics_dashboard_and_alerts_against_a_real_prometheus() {
    // Fail here, before any work, when the tools are missing.
    let promtool = tool("promtool");
    tool("prometheus");

    let ok = Upstream::start(|_| Reply::json(200, "OK", r#"{"id":1}"#));
    let vendor = Upstream::start(|req| match req.path.as_str() {
        "/throttle" => Reply::json(400, "BadRequest", r#"{"error_code":"THROTTLED"}"#),
        "/invalid" => Reply::json(403, "Forbidden", r#"{"error_code":"VALIDATION"}"#),
        "/teapot" => Reply::json(418, "I'm a teapot", r#"{"error":"teapot"}"#),
        "/missing" => Reply::json(404, "NotFound", r#"{"error":"no such item"}"#),
        _ => Reply::json(200, "OK", "{}"),
    });
    let slow = Upstream::start(|_| Reply::Hang);
    let gw = start_gateway(&ok, &vendor, &slow);

    // a. Every kind of response, a bounded number of times.
    let t = Instant::now();
    for _ in 0..3 {
        assert!(t.elapsed() < Duration::from_secs(60), "load rounds took over 60 s");
        load_round(&gw);
    }
    reloads(&gw);
    for (labels, what) in [
        (
            &[("route", "vendor"), ("code", "429"), ("upstream_code", "400")][..],
            "rule rewrite",
        ),
        (
            &[("route", "vendor"), ("code", "400"), ("upstream_code", "418")],
            "fallback",
        ),
        (&[("route", "refused"), ("code", "502"), ("origin", "gateway")], "502"),
        (&[("route", "slow"), ("code", "504"), ("origin", "gateway")], "504"),
        (
            &[("route", "none"), ("code", "404"), ("upstream_code", "none")],
            "no route",
        ),
    ] {
        at_least_one(&gw, "statusgate_responses_total", labels, what);
    }
    assert!(gw.metric("statusgate_config_reloads_total", &[("result", "rejected")]) >= 1.0);

    // b. The exposition, the rules and their tests, through promtool.
    let scrape = gw.admin_get("/metrics");
    assert_eq!(scrape.status, 200);
    let text = scrape.text();
    for family in FAMILIES {
        assert!(
            text.lines().any(|l| l.starts_with(family)),
            "{family} missing from /metrics"
        );
    }
    // Every reload result is exported from the start (at 0 until it happens: no `applied` here),
    // so the first rejected reload is an increase() the alert sees.
    for result in ["applied", "unchanged", "rejected"] {
        let series = format!("statusgate_config_reloads_total{{result=\"{result}\"}}");
        assert!(text.lines().any(|l| l.starts_with(&series)), "{series} missing");
    }
    let tmp = tempfile::tempdir().unwrap();
    let saved = tmp.path().join("metrics.txt");
    std::fs::write(&saved, &text).unwrap();
    let complaints = run(
        Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(&saved).unwrap()),
        "promtool check metrics",
    );
    assert!(
        complaints.trim().is_empty(),
        "promtool check metrics complains:\n{complaints}"
    );
    let alerts = repo("deploy/prometheus/alerts.yaml");
    run(
        Command::new(&promtool).arg("check").arg("rules").arg(&alerts),
        "promtool check rules",
    );
    run(
        Command::new(&promtool)
            .args(["test", "rules"])
            .arg(repo("deploy/prometheus/alerts_test.yaml")),
        "promtool test rules",
    );
    run(
        Command::new(&promtool)
            .args(["check", "config"])
            .arg(repo("deploy/prometheus/prometheus.yml")),
        "promtool check config",
    );

    // c. A real Prometheus scrapes the admin listener while more load runs.
    let prom = Prometheus::start(gw.admin, &alerts);
    let t = Instant::now();
    let mut rounds = 0;
    loop {
        load_round(&gw);
        rounds += 1;
        let scrapes = prom
            .value(r#"count_over_time(up{job="statusgate"}[10m])"#)
            .unwrap_or(0.0);
        let up = prom.value(r#"up{job="statusgate"}"#).unwrap_or(0.0);
        if scrapes >= 8.0 && up == 1.0 {
            break;
        }
        assert!(
            rounds < 400 && t.elapsed() < Duration::from_secs(120),
            "prometheus scraped {scrapes} times (up={up}) after {rounds} rounds:\n{}",
            prom.log()
        );
    }
    println!("prometheus scraped the gateway while {rounds} load rounds ran");

    // Every alert rule evaluates on real data without error (e.g. no many-to-many matching).
    let t = Instant::now();
    let rules = loop {
        let v = prom.api("/api/v1/rules");
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        if !rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown") {
            break rules;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "alert rules not evaluated in 30 s: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(rules.len(), 8, "alert rules loaded: {rules:?}");
    for r in &rules {
        assert_eq!(r["health"], "ok", "rule {} failed: {}", r["name"], r["lastError"]);
    }

    // d. Every dashboard query parses and returns series, for all routes and for a multi-route
    // selection as Grafana formats it.
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("deploy/grafana/statusgate.json")).unwrap())
            .expect("statusgate.json is JSON");
    check_dashboard_shape(&dashboard);
    // The route variable: label_values(statusgate_responses_total, route), as Grafana asks it.
    let v = prom.api(&format!(
        "/api/v1/label/route/values?match[]={}",
        url_encode("statusgate_responses_total")
    ));
    let mut routes: Vec<&str> = v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    routes.sort_unstable();
    assert_eq!(
        routes,
        ["none", "pass", "refused", "slow", "vendor"],
        "route variable values"
    );
    let queries = panel_queries(&dashboard);
    assert!(queries.len() >= 12, "{} panel queries", queries.len());
    for title in PROCESS_PANELS {
        assert!(
            queries.iter().any(|(t, _, _)| t == title),
            "no dashboard panel {title:?}"
        );
    }
    let mut failures = Vec::new();
    for (title, ref_id, expr) in &queries {
        for metric in ROUTE_METRICS {
            for (i, _) in expr.match_indices(metric) {
                let rest = expr[i + metric.len()..].trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_');
                if !rest.starts_with(r#"{route=~"$route""#) {
                    failures.push(format!(
                        "{title:?} {ref_id}: {metric} not selected by route=~\"$route\""
                    ));
                }
            }
        }
        for route in [".*", "(vendor|refused|slow)"] {
            let q = substitute(expr, route);
            let v = prom.query(&q);
            let series = v["data"]["result"].as_array().map_or(0, Vec::len);
            if v["status"] != "success" {
                failures.push(format!(
                    "{title:?} {ref_id} (route {route}): {} {}\n  {q}",
                    v["errorType"], v["error"]
                ));
            } else if v["data"]["resultType"] != "scalar" && series == 0 {
                failures.push(format!("{title:?} {ref_id} (route {route}): no series\n  {q}"));
            } else {
                println!("ok {series:>3} series  {title} {ref_id} (route {route})");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "dashboard queries failed:\n{}\nprometheus log:\n{}",
        failures.join("\n"),
        prom.log()
    );

    // The process panels read the gateway's own process: plausible values, not just series.
    let rss = prom
        .value(r#"process_resident_memory_bytes{job="statusgate"}"#)
        .unwrap_or(0.0);
    let (open, max) = (
        prom.value(r#"process_open_fds{job="statusgate"}"#).unwrap_or(0.0),
        prom.value(r#"process_max_fds{job="statusgate"}"#).unwrap_or(0.0),
    );
    assert!(rss > 1e6, "resident memory {rss}");
    assert!(open >= 3.0 && max > open, "open fds {open}, max {max}");

    // The rewrite matrix holds exactly the rewritten pairs: not the unchanged 404 and 200.
    let matrix = queries
        .iter()
        .find(|(title, _, _)| title.starts_with("Rewrite matrix"))
        .expect("rewrite matrix panel");
    let v = prom.query(&substitute(&matrix.2, ".*"));
    let mut pairs: Vec<(String, String, String)> = v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let m = &s["metric"];
            let l = |k: &str| m[k].as_str().unwrap_or("").to_owned();
            (l("route"), l("upstream_code"), l("code"))
        })
        .collect();
    pairs.sort();
    let want = [
        ("vendor", "400", "429"),
        ("vendor", "403", "422"),
        ("vendor", "418", "400"),
    ]
    .map(|(r, u, c)| (r.to_owned(), u.to_owned(), c.to_owned()));
    assert_eq!(pairs, want, "rewrite matrix");
}
