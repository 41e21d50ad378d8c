//! Upstream host names against a real DNS server on loopback (dnsmasq, tests/common/dns.rs)
//! whose records change during the test: every record of a name is used, a changed record is
//! followed within its TTL, a server that stops answering leaves the last good addresses
//! serving (counted in /metrics) until `resolver.stale_for`, and a name that never resolved is
//! a load warning and a 503 `no-upstream-address`, not a rejection, a crash or a hang. The
//! documented examples of docs/configuration.md's DNS and health-check sections pass the load
//! that `statusgate check` runs.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::assert;
use common::config::{Config, Route, Upstream as Up};
use common::dns::Dnsmasq;
use common::{request, Gateway, Reply, Upstream};

/// One upstream server on each of `ips`, all on the same port (a name's records carry no port).
fn servers_on(ips: &[&str]) -> (u16, Vec<Upstream>) {
    for _attempt in 0..20 {
        let port = TcpListener::bind(format!("{}:0", ips[0]))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let servers: Option<Vec<Upstream>> = ips
            .iter()
            .map(|ip| {
                let tag = ip.to_string();
                Upstream::start_at(&format!("{ip}:{port}"), move |_| {
                    Reply::json(200, "OK", &format!(r#"{{"served_by":"{tag}"}}"#))
                })
            })
            .collect();
        if let Some(s) = servers {
            return (port, s);
        }
    }
    panic!("no port free on all of {ips:?}");
}

fn config(dns: &Dnsmasq, addrs: &[&str], resolver: &[(&str, &str)]) -> String {
    let mut c = Config::new().set("resolver", "nameservers", &format!("[{}]", dns.addr()));
    for (k, v) in resolver {
        c = c.set("resolver", k, v);
    }
    c.upstream("api", Up::addrs(addrs))
        .route(Route::new("api", "api").prefix("/"))
        .build()
}

/// Who answered a request to the gateway.
fn served_by(gw: &Gateway) -> String {
    let r = request(gw.port, "GET", "/x", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["served_by"].as_str().unwrap_or_default().to_owned()
}

/// Polls `cond` every 50ms, at most `tries` times.
fn eventually(tries: usize, what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..tries {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("never happened: {what}");
}

fn dns_failures(gw: &Gateway, host: &str) -> f64 {
    ["timeout", "error", "nxdomain", "no_records"]
        .iter()
        .map(|r| {
            gw.metric(
                "statusgate_dns_resolutions_total",
                &[("upstream", "api"), ("host", host), ("result", r)],
            )
        })
        .sum()
}

#[test]
fn every_record_of_a_name_is_used_and_a_changed_record_is_followed_within_its_ttl() {
    let (port, servers) = servers_on(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let dns = Dnsmasq::start(&[("127.0.0.2", "api.test"), ("127.0.0.3", "api.test")]);
    let addr = format!("api.test:{port}");
    let gw = Gateway::start(&config(&dns, &[&addr], &[("min_ttl", "1s"), ("max_ttl", "2s")]), &[]);

    let mut seen: Vec<String> = (0..8).map(|_| served_by(&gw)).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["127.0.0.2", "127.0.0.3"], "both A records are in the rotation");
    let host = servers[0].requests()[0].header("host").map(str::to_owned);
    assert_eq!(
        host.as_deref(),
        Some(addr.as_str()),
        "Host defaults to the configured name"
    );
    gw.expect_metric(
        "statusgate_dns_addresses",
        &[("upstream", "api"), ("host", "api.test")],
        2.0,
        "two records",
    );

    dns.set(&[("127.0.0.4", "api.test")]);
    eventually(200, "the gateway follows the changed record", || {
        served_by(&gw) == "127.0.0.4"
    });
    let after: Vec<String> = (0..6).map(|_| served_by(&gw)).collect();
    assert!(
        after.iter().all(|s| s == "127.0.0.4"),
        "the old addresses left: {after:?}"
    );
    let state = gw.admin_get("/-/config").json();
    let api = &state["upstreams"]["api"];
    assert_eq!(api["names"][0]["host"], "api.test", "{api}");
    assert_eq!(api["names"][0]["addresses"], serde_json::json!(["127.0.0.4"]), "{api}");
    assert_eq!(api["addresses"][0]["address"], format!("127.0.0.4:{port}"), "{api}");
    assert_eq!(api["addresses"][0]["from"], addr, "{api}");
    assert!(
        gw.metric(
            "statusgate_dns_resolutions_total",
            &[("upstream", "api"), ("result", "ok")]
        ) >= 2.0
    );
    let metrics = gw.admin_get("/metrics").text();
    let up = |ip: &str| format!("statusgate_upstream_address_up{{address=\"{ip}:{port}\",upstream=\"api\"}} 1");
    assert!(metrics.contains(&up("127.0.0.4")), "{metrics}");
    assert!(
        !metrics.contains(&format!("127.0.0.2:{port}")),
        "a left address takes its series along"
    );
}

#[test]
fn a_dns_server_that_stops_answering_leaves_the_last_good_addresses_serving_and_is_counted() {
    let (port, _servers) = servers_on(&["127.0.0.2"]);
    let mut dns = Dnsmasq::start(&[("127.0.0.2", "api.test")]);
    let addr = format!("api.test:{port}");
    let resolver = [
        ("min_ttl", "1s"),
        ("max_ttl", "1s"),
        ("timeout", "300ms"),
        ("stale_for", "1h"),
    ];
    let gw = Gateway::start(&config(&dns, &[&addr], &resolver), &[]);
    assert_eq!(served_by(&gw), "127.0.0.2");

    dns.stop();
    eventually(200, "a failed resolution is counted", || {
        dns_failures(&gw, "api.test") >= 1.0
    });
    for _ in 0..5 {
        assert_eq!(served_by(&gw), "127.0.0.2", "the last good address keeps serving");
    }
    let state = gw.admin_get("/-/config").json();
    let name = &state["upstreams"]["api"]["names"][0];
    assert_ne!(name["last_result"], "ok", "{name}");
    assert_eq!(name["addresses"], serde_json::json!(["127.0.0.2"]), "{name}");
}

#[test]
fn stale_addresses_leave_after_stale_for_and_the_group_answers_no_upstream_address() {
    let (port, _servers) = servers_on(&["127.0.0.2"]);
    let mut dns = Dnsmasq::start(&[("127.0.0.2", "api.test")]);
    let addr = format!("api.test:{port}");
    let resolver = [
        ("min_ttl", "1s"),
        ("max_ttl", "1s"),
        ("timeout", "300ms"),
        ("stale_for", "2s"),
    ];
    let gw = Gateway::start(&config(&dns, &[&addr], &resolver), &[]);
    assert_eq!(served_by(&gw), "127.0.0.2");

    dns.stop();
    eventually(300, "the stale address leaves", || {
        request(gw.port, "GET", "/x", &[], b"").status == 503
    });
    let r = request(gw.port, "GET", "/x", &[], b"");
    assert::strict_gateway_problem(&r, 503, "no-upstream-address");
    gw.expect_metric(
        "statusgate_dns_addresses",
        &[("upstream", "api"), ("host", "api.test")],
        0.0,
        "stale addresses gone",
    );
}

#[test]
fn a_name_that_never_resolved_is_a_load_warning_and_a_503_no_upstream_address_until_it_resolves() {
    let (port, _servers) = servers_on(&["127.0.0.3"]);
    let dns = Dnsmasq::start(&[]);
    let addr = format!("late.test:{port}");
    let text = config(&dns, &[&addr], &[("min_ttl", "1s"), ("max_ttl", "1s")]);

    // The load that `statusgate check` runs: accepted, with a positioned warning.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statusgate.yaml");
    std::fs::write(
        &path,
        text.replace("${LISTEN}", "127.0.0.1:1")
            .replace("${ADMIN}", "127.0.0.1:2"),
    )
    .unwrap();
    let snap = statusgate::snapshot::load(&path).expect("an unresolvable name does not reject the load");
    let warning = snap
        .warnings
        .iter()
        .map(ToString::to_string)
        .find(|w| w.contains("late.test"))
        .expect("a warning names the host");
    assert!(
        warning.contains("does not resolve") && warning.contains("statusgate.yaml:"),
        "{warning}"
    );

    let gw = Gateway::start(&text, &[]);
    for _ in 0..3 {
        let r = request(gw.port, "GET", "/x", &[], b"");
        assert::strict_gateway_problem(&r, 503, "no-upstream-address");
    }
    gw.expect_metric(
        "statusgate_upstream_failures_total",
        &[("route", "api"), ("kind", "no_upstream_address")],
        3.0,
        "counted as its own kind",
    );
    assert!(
        dns_failures(&gw, "late.test") >= 1.0,
        "the failed load-time resolution is counted"
    );

    dns.set(&[("127.0.0.3", "late.test")]);
    eventually(200, "the name resolves and serves", || {
        request(gw.port, "GET", "/x", &[], b"").status == 200
    });
}

#[test]
fn passive_health_skips_one_resolved_address_and_keeps_the_others() {
    let (port, _servers) = servers_on(&["127.0.0.2"]);
    // 127.0.0.5 has no server on the port: connecting to it is refused.
    let dns = Dnsmasq::start(&[("127.0.0.2", "api.test"), ("127.0.0.5", "api.test")]);
    let addr = format!("api.test:{port}");
    let mut c = Config::new().set("resolver", "nameservers", &format!("[{}]", dns.addr()));
    c = c.upstream("api", Up::addr(&addr).fail_timeout("1h"));
    let gw = Gateway::start(&c.route(Route::new("api", "api").prefix("/")).build(), &[]);
    for _ in 0..6 {
        assert_eq!(
            served_by(&gw),
            "127.0.0.2",
            "a refused address is skipped, the request retried"
        );
    }
    let state = gw.admin_get("/-/config").json();
    let addresses = state["upstreams"]["api"]["addresses"].as_array().unwrap().clone();
    let of = |ip: &str| {
        addresses
            .iter()
            .find(|a| a["address"] == format!("{ip}:{port}"))
            .unwrap_or_else(|| panic!("{ip} in {addresses:?}"))
            .clone()
    };
    assert_eq!(of("127.0.0.5")["in_rotation"], false, "{addresses:?}");
    assert!(of("127.0.0.5")["passive_down_ms"].as_u64() > Some(0), "{addresses:?}");
    assert_eq!(of("127.0.0.2")["in_rotation"], true, "{addresses:?}");
}

#[test]
fn a_reload_that_keeps_the_group_keeps_its_resolution_running() {
    let (port, _servers) = servers_on(&["127.0.0.2", "127.0.0.3"]);
    let dns = Dnsmasq::start(&[("127.0.0.2", "api.test")]);
    let addr = format!("api.test:{port}");
    let text = config(&dns, &[&addr], &[("min_ttl", "1s"), ("max_ttl", "1s")]);
    let gw = Gateway::start(&text, &[]);
    assert_eq!(served_by(&gw), "127.0.0.2");

    // An unrelated change (a new route) keeps the group and its resolution running.
    let path = gw.path("statusgate.yaml");
    let on_disk = std::fs::read_to_string(&path).unwrap();
    let more = on_disk.replace(
        "routes:\n",
        "routes:\n  - name: other\n    path_prefix: /other/\n    upstream: api\n",
    );
    std::fs::write(&path, more).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The file watcher may have applied it first: then this reload finds it unchanged.
    let (outcome, _) = rt.block_on(gw.handle.reload());
    assert_ne!(outcome, statusgate::reload::ReloadOutcome::Rejected);
    assert_eq!(gw.handle.current().routes.len(), 2, "the new route serves");
    dns.set(&[("127.0.0.3", "api.test")]);
    eventually(200, "the kept group still follows its name", || {
        served_by(&gw) == "127.0.0.3"
    });

    // Shutdown stops the background tasks.
    let handle = gw.handle.clone();
    drop(gw);
    assert!(
        handle.current().balancers.iter().all(|b| b.is_retired()),
        "upkeep stopped at shutdown"
    );
}

/// The YAML blocks of a `### heading` section of docs/configuration.md.
fn doc_examples(heading: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/configuration.md has `{heading}`"));
    let section = &doc[start + heading.len()..];
    // The section ends at the next heading of either level, whichever comes first.
    let end = [section.find("\n## "), section.find("\n### ")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(section.len());
    let section = &section[..end];
    section
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(y, _)| y.to_owned()))
        .collect()
}

#[test]
fn the_documented_dns_and_health_check_examples_pass_check() {
    let mut checked = 0;
    for heading in ["### Host names and DNS", "### Health checks"] {
        for example in doc_examples(heading) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("statusgate.yaml");
            std::fs::write(&path, &example).unwrap();
            if let Err(problems) = statusgate::snapshot::load(&path) {
                let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
                panic!("example under {heading} fails check:\n{example}\n{}", shown.join("\n"));
            }
            checked += 1;
        }
    }
    assert!(checked >= 2, "each section has an example");
}
