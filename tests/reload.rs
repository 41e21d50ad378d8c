//! Live reload under load: clients send requests continuously on keep-alive connections while
//! the rules switch 100 times between two valid sets, with broken files in between (syntax
//! error, unknown key, failing example, unreadable file). No request may fail, every response
//! must come from exactly one of the two sets, and the reload metrics must count what happened.
//! And the file watcher: only the loaded files (and a ConfigMap's `..data` swap) trigger a
//! reload, within a bounded time however busy the directory is.
//!
//! The reload counters are process-wide, so the tests of this file run one at a time (`serial`)
//! and compare counters against the value they read at their start.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::config::{Config, Route, Upstream as Up};
use common::{request, Gateway, Reply, Upstream};

fn ruleset(name: &str, status: u16) -> String {
    format!(
        "rules:\n  - name: set-{name}\n    when: {{ status: 400 }}\n    then:\n      status: {status}\n      headers: {{ set: {{ X-Ruleset: \"{name}\" }} }}\n      problem: {{ detail: \"${{json:/msg}}\" }}\nexamples:\n  - name: maps\n    upstream: {{ status: 400, body: '{{\"msg\":\"m\"}}' }}\n    expect: {{ status: {status}, headers: {{ X-Ruleset: \"{name}\" }} }}\n"
    )
}

const BROKEN: [&str; 3] = [
    "rules:\n  - name: broken\n    when: { status: [400\n",
    "rules:\n  - name: broken\n    whn: { status: 400 }\n",
    "rules:\n  - name: broken\n    when: { status: 400 }\n    then: { status: 404 }\nexamples:\n  - name: lies\n    upstream: { status: 400 }\n    expect: { status: 422 }\n",
];

/// Replaces a file the way editors save: write a temp file, rename it over.
fn save(path: &std::path::Path, text: &str) {
    if path.is_dir() {
        std::fs::remove_dir(path).unwrap();
    }
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

static SERIAL: Mutex<()> = Mutex::new(());

/// One test of this file at a time: they read the process-wide reload counters.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn reload(gw: &Gateway) -> String {
    let r = request(gw.admin, "POST", "/-/reload", &[], b"");
    r.json()["outcome"].as_str().unwrap().to_owned()
}

#[test]
fn hundred_switches_under_load_lose_no_request() {
    let _serial = serial();
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", r#"{"msg":"vendor says no"}"#));
    let cfg = Config::new()
        .threads(2)
        .grace_period("0s")
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("reload-load", "up").profile("rules/vendor.yaml"))
        .build();
    let gw = Gateway::start(&cfg, &[("rules/vendor.yaml", &ruleset("A", 422))]);
    let profile = gw.path("rules/vendor.yaml");
    let applied0 = gw.metric("statusgate_config_reloads_total", &[("result", "applied")]);
    let rejected0 = gw.metric("statusgate_config_reloads_total", &[("result", "rejected")]);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let port = gw.port;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok) = (stop.clone(), ok.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let started = Instant::now();
                let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                // Bounded: until told to stop, at most 60 s or 200k requests.
                for _ in 0..200_000 {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(60) {
                        break;
                    }
                    w.write_all(b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n")
                        .map_err(|e| format!("write: {e}"))?;
                    let resp = common::client::read_response(&mut r, false).map_err(|e| format!("read: {e}"))?;
                    let set = resp.header("x-ruleset").unwrap_or("-").to_owned();
                    let problem: serde_json::Value =
                        serde_json::from_slice(&resp.body).map_err(|e| format!("body: {e}"))?;
                    let consistent = matches!((resp.status, set.as_str()), (422, "A") | (409, "B"))
                        && problem["status"] == resp.status
                        && problem["detail"] == "vendor says no"
                        && !resp.truncated;
                    if !consistent {
                        return Err(format!(
                            "mixed or failed response: {} {set} {}",
                            resp.status,
                            resp.text()
                        ));
                    }
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();

    let mut switches = 0;
    let mut broken_writes = 0;
    let mut reported_rejections = 0;
    for i in 0..100 {
        if i % 4 == 3 {
            // A broken edit, in one of four ways.
            match (i / 4) % 4 {
                3 => {
                    std::fs::remove_file(&profile).unwrap();
                    std::fs::create_dir(&profile).unwrap(); // unreadable as a file
                }
                k => save(&profile, BROKEN[k]),
            }
            broken_writes += 1;
            if reload(&gw) == "rejected" {
                reported_rejections += 1;
            }
        }
        let (name, status) = if i % 2 == 0 { ("B", 409) } else { ("A", 422) };
        save(&profile, &ruleset(name, status));
        switches += 1;
        let outcome = reload(&gw);
        assert!(outcome == "applied" || outcome == "unchanged", "switch {i}: {outcome}");
        let r = request(gw.port, "GET", "/x", &[], b"");
        assert_eq!(r.header("x-ruleset"), Some(name), "switch {i} serves");
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap().unwrap();
    }
    let served = ok.load(Ordering::Relaxed);
    assert!(served > 100, "the load ran alongside the switches ({served} requests)");

    // Each switch is applied exactly once (by the watcher or by POST); every broken file is
    // rejected at least once, and whatever rejected it, the counter saw it.
    std::thread::sleep(Duration::from_millis(300)); // let a pending watcher reload finish
    let applied = gw.metric("statusgate_config_reloads_total", &[("result", "applied")]) - applied0;
    let rejected = gw.metric("statusgate_config_reloads_total", &[("result", "rejected")]) - rejected0;
    assert_eq!(applied, switches as f64);
    assert!(reported_rejections >= 1, "POST /-/reload reported rejections");
    assert!(
        rejected >= broken_writes as f64,
        "rejected {rejected}, broken writes {broken_writes}"
    );
}

/// A gateway whose profile `rules/vendor.yaml` maps 400 to 422 (set A), watching its files.
fn watched_gateway(up: &Upstream) -> Gateway {
    let cfg = Config::new()
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("watched", "up").profile("rules/vendor.yaml"))
        .build();
    Gateway::start(&cfg, &[("rules/vendor.yaml", &ruleset("A", 422))])
}

/// Every reload outcome, summed: any reload at all moves it.
fn reloads_total(gw: &Gateway) -> f64 {
    gw.metric("statusgate_config_reloads_total", &[])
}

fn version(gw: &Gateway) -> String {
    gw.admin_get("/-/config").json()["version"].as_str().unwrap().to_owned()
}

/// Appends a line to `path` every 20 ms until `stop` (at most 10 s): a log file next to the
/// configuration, as with `statusgate run -c ./statusgate.yaml > ./statusgate.log`.
fn keep_writing(path: std::path::PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut lines = 0;
        while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(10) {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap();
            writeln!(f, "line {lines}: GET /x 422").unwrap();
            lines += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        lines
    })
}

#[test]
fn writing_an_unrelated_file_in_the_configuration_directory_causes_no_reload() {
    let _serial = serial();
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", r#"{"msg":"m"}"#));
    let gw = watched_gateway(&up);
    let (before, version_before) = (reloads_total(&gw), version(&gw));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_writing(gw.path("statusgate.log"), stop.clone());
    let writer_rules = keep_writing(gw.path("rules/notes.txt"), stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    assert!(writer.join().unwrap() > 20 && writer_rules.join().unwrap() > 20);
    std::thread::sleep(Duration::from_millis(700)); // past any settle or cap
    assert_eq!(reloads_total(&gw), before, "no reload of any outcome");
    assert_eq!(version(&gw), version_before);
}

#[test]
fn a_profile_edit_is_applied_within_a_bounded_time_while_another_file_is_written_every_20ms() {
    let _serial = serial();
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", r#"{"msg":"m"}"#));
    let gw = watched_gateway(&up);
    let version_before = version(&gw);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_writing(gw.path("statusgate.log"), stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    save(&gw.path("rules/vendor.yaml"), &ruleset("B", 409));
    let edited = Instant::now();
    while version(&gw) == version_before {
        assert!(
            edited.elapsed() < Duration::from_secs(3),
            "the edit was not applied within 3 s while the log was written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let r = request(gw.port, "GET", "/x", &[], b"");
    assert_eq!((r.status, r.header("x-ruleset")), (409, Some("B")));
}

#[test]
fn a_rejected_reload_followed_by_log_writes_in_the_same_directory_is_rejected_exactly_once() {
    let _serial = serial();
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", r#"{"msg":"m"}"#));
    let gw = watched_gateway(&up);
    let rejected = |gw: &Gateway| gw.metric("statusgate_config_reloads_total", &[("result", "rejected")]);
    let before = rejected(&gw);
    save(&gw.path("rules/vendor.yaml"), BROKEN[0]);
    let saved = Instant::now();
    while rejected(&gw) == before {
        assert!(saved.elapsed() < Duration::from_secs(3), "the broken edit was seen");
        std::thread::sleep(Duration::from_millis(20));
    }
    // What the rejection logged lands in a file next to the configuration, again and again.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_writing(gw.path("statusgate.log"), stop.clone());
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    std::thread::sleep(Duration::from_millis(700)); // past any settle or cap
    assert_eq!(rejected(&gw) - before, 1.0, "exactly one rejected reload");
    let r = request(gw.port, "GET", "/x", &[], b"");
    assert_eq!(r.header("x-ruleset"), Some("A"), "the last good rules keep serving");
}

#[test]
fn a_file_named_by_a_rejected_edit_is_watched_and_applied_once_it_appears() {
    let _serial = serial();
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", r#"{"msg":"m"}"#));
    let gw = watched_gateway(&up);
    let rejected = |gw: &Gateway| gw.metric("statusgate_config_reloads_total", &[("result", "rejected")]);
    let before = rejected(&gw);
    // The main file now names a profile in a directory that does not exist yet.
    let main = std::fs::read_to_string(gw.path("statusgate.yaml")).unwrap();
    save(
        &gw.path("statusgate.yaml"),
        &main.replace("profile: rules/vendor.yaml", "profile: more-rules/next.yaml"),
    );
    let saved = Instant::now();
    while rejected(&gw) == before {
        assert!(
            saved.elapsed() < Duration::from_secs(3),
            "the edit was seen and rejected"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::create_dir(gw.path("more-rules")).unwrap();
    std::fs::write(gw.path("more-rules/next.yaml"), ruleset("B", 409)).unwrap();
    let created = Instant::now();
    loop {
        let r = request(gw.port, "GET", "/x", &[], b"");
        if r.header("x-ruleset") == Some("B") {
            break;
        }
        assert!(
            created.elapsed() < Duration::from_secs(3),
            "the file the rejected edit named was not picked up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_profile_saved_every_20ms_is_still_reloaded_at_least_every_500ms() {
    let _serial = serial();
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", r#"{"msg":"m"}"#));
    let gw = watched_gateway(&up);
    let before = reloads_total(&gw);
    let profile = gw.path("rules/vendor.yaml");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for i in 0..500 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (name, status) = if i % 2 == 0 { ("B", 409) } else { ("A", 422) };
                save(&profile, &ruleset(name, status));
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // The settle time never passes while the writes go on: the cap makes the reloads happen.
    std::thread::sleep(Duration::from_millis(1800));
    let during = reloads_total(&gw) - before;
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(during >= 2.0, "{during} reloads in 1.8 s of saves every 20 ms");
}
