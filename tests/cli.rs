//! The `statusgate` binary: `check` (exit codes, file:line:col problems), `explain`, `run` with
//! a bad configuration, and a graceful SIGTERM that lets an in-flight request finish.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::config::{Config, Route, Upstream as Up};
use common::gateway::free_port;
use common::{request, Reply, Upstream};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_statusgate"))
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

/// Starts `statusgate run -c cfg` and waits (bounded) until it listens on `port`.
fn spawn_run(cfg: &std::path::Path, port: u16, stderr: Stdio) -> std::process::Child {
    let child = bin()
        .args(["run", "-c"])
        .arg(cfg)
        .env_remove("RUST_LOG")
        .stderr(stderr)
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "gateway did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Polls `probe` every 50 ms, at most 5 s, until it returns `Some`.
fn eventually<T>(mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..100 {
        if let Some(v) = probe() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

const GOOD_PROFILE: &str = r#"rules:
  - name: throttled
    when:
      status: 400
      json: { /error_code: { equals: EndPoint.0022, ignore_case: true } }
    then:
      status: 429
      headers: { set: { Retry-After: "1" } }
      problem: { detail: "${json:/error_msg}", vendor_code: "${json:/error_code}" }
"#;

/// The route `huawei` (`/huawei/`, stripped) through `rules/p.yaml`.
fn huawei() -> Route {
    Route::new("huawei", "up")
        .prefix("/huawei/")
        .strip_prefix()
        .profile("rules/p.yaml")
}

/// One thread and `grace_period`, the upstream `up` and no route yet.
fn base(upstream: &str, listen: u16, admin: u16, grace_period: &str) -> Config {
    Config::new()
        .listen_addr(&format!("127.0.0.1:{listen}"))
        .admin_addr(&format!("127.0.0.1:{admin}"))
        .threads(1)
        .grace_period(grace_period)
        .upstream("up", Up::addr(upstream))
}

/// `base` with the route `huawei`.
fn server(upstream: &str, listen: u16, admin: u16, grace_period: &str) -> Config {
    base(upstream, listen, admin, grace_period).route(huawei())
}

fn config(upstream: &str, listen: u16, admin: u16) -> String {
    server(upstream, listen, admin, "3s").build()
}

#[test]
fn check_accepts_a_good_config_and_the_embedded_one() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rules/p.yaml", GOOD_PROFILE);
    let cfg = write(dir.path(), "gw.yaml", &config("127.0.0.1:1", 1, 2));
    let out = bin().args(["check", "-c"]).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 routes, 1 upstreams, 1 rules"));
    assert!(
        bin().arg("check").output().unwrap().status.success(),
        "the embedded default config is valid"
    );
}

#[test]
fn check_and_run_report_every_problem_with_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rules/p.yaml",
        "rules:\n  - name: a\n    when:\n      json: { /code: { regex: \"([\" } }\n    then:\n      status: 418\n  - name: a\n    whenn: {}\n",
    );
    let cfg = write(
        dir.path(),
        "gw.yaml",
        // Raw YAML: the positions asserted below are this text's.
        "listen: 127.0.0.1:1\nadmin: 127.0.0.1:2\nserver:\n  threads: 1\n  grace_period: 3s\nupstreams:\n  up:\n    addrs: [127.0.0.1:1]\nroutes:\n  - name: huawei\n    path_prefix: /huawei/\n    strip_prefix: true\n    upstream: nope\n    profile: rules/p.yaml\n",
    );
    for cmd in ["check", "run"] {
        let out = bin().args([cmd, "-c"]).arg(&cfg).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("gw.yaml:13:15: unknown upstream `nope` (defined: up)"),
            "{cmd}: {err}"
        );
        // serde stops a file at its first shape error: the unknown key is what p.yaml reports.
        assert!(err.contains("rules/p.yaml:8:5: unknown field `whenn`"), "{cmd}: {err}");
        assert!(err.lines().all(|l| !l.trim().is_empty()), "one line per problem: {err}");
    }
    // With the shape fixed, the semantic problems of the same file all come out at once.
    write(dir.path(), "rules/p.yaml", "rules:\n  - name: a\n    when:\n      json: { /code: { regex: \"([\" } }\n    then:\n      status: 418\n  - name: a\n");
    let out = bin().args(["check", "-c"]).arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rules/p.yaml:4:22: invalid regex"), "{err}");
    assert!(
        err.contains("rules/p.yaml:6:15: status 418 is not in the canonical set"),
        "{err}"
    );
    assert!(err.contains("rules/p.yaml:7:11: duplicate name `a`"), "{err}");
}

#[test]
fn explain_prints_the_canonical_response_and_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rules/p.yaml", GOOD_PROFILE);
    let cfg = write(dir.path(), "gw.yaml", &config("127.0.0.1:1", 1, 2));
    let out = bin()
        .args(["explain", "-c"])
        .arg(&cfg)
        .args([
            "--route",
            "huawei",
            "--status",
            "400",
            "--method",
            "POST",
            "--path",
            "/huawei/v1/p/vpc-endpoints",
        ])
        .args([
            "--header",
            "Content-Type: application/json",
            "--header",
            "X-Request-Id: hw-1",
        ])
        .args(["--body", r#"{"error_code":"EndPoint.0022","error_msg":"too many"}"#])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("# rule: throttled"), "{text}");
    assert!(text.contains("HTTP/1.1 429 Too Many Requests"), "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    assert!(text.contains("x-upstream-status: 400"), "{text}");
    let body = text.lines().find(|l| l.starts_with('{')).expect("a JSON body line");
    let p: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        (
            p["status"].as_u64(),
            p["detail"].as_str(),
            p["vendor_request_id"].as_str()
        ),
        (Some(429), Some("too many"), Some("hw-1"))
    );

    let body_file = write(dir.path(), "body.json", r#"{"error_code":"EndPoint.0001"}"#);
    let out = bin()
        .args(["explain", "-c"])
        .arg(&cfg)
        .args(["--route", "huawei", "--status", "418", "--body"])
        .arg(format!("@{}", body_file.display()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("# rule: (none: canonical defaults)") && text.contains("HTTP/1.1 400 Bad Request"),
        "{text}"
    );
    let out = bin()
        .args(["explain", "-c"])
        .arg(&cfg)
        .args(["--route", "nope", "--status", "200"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no route `nope` (routes: huawei)"));
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits() {
    let up = Upstream::start(|_| {
        std::thread::sleep(Duration::from_millis(800));
        Reply::json(200, "OK", r#"{"slow":true}"#)
    });
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rules/p.yaml", GOOD_PROFILE);
    let (port, admin) = (free_port(), free_port());
    let cfg = write(dir.path(), "gw.yaml", &config(&up.addr(), port, admin));
    let mut child = spawn_run(&cfg, port, Stdio::null());
    let in_flight = std::thread::spawn(move || request(port, "GET", "/huawei/slow", &[], b""));
    std::thread::sleep(Duration::from_millis(200));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let r = in_flight.join().unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, r#"{"slow":true}"#),
        "the in-flight request completes"
    );
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success() || status.code().is_none() || status.code() == Some(0),
                "{status:?}"
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "statusgate did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "listener closed"
    );
}

#[test]
fn sighup_reloads_and_a_bad_edit_keeps_the_old_rules() {
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", r#"{"error_code":"EndPoint.0022","error_msg":"m"}"#));
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rules/p.yaml", GOOD_PROFILE);
    let (port, admin) = (free_port(), free_port());
    let text = server(&up.addr(), port, admin, "0s").watch_config(false).build();
    let cfg = write(dir.path(), "gw.yaml", &text);
    let mut child = spawn_run(&cfg, port, Stdio::null());
    assert_eq!(request(port, "GET", "/huawei/x", &[], b"").status, 429);
    let hup = |child: &std::process::Child| {
        assert!(Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
            .success());
    };
    // The watcher is off: only SIGHUP can make the edit serve.
    write(
        dir.path(),
        "rules/p.yaml",
        &GOOD_PROFILE.replace("status: 429", "status: 503"),
    );
    assert_eq!(request(port, "GET", "/huawei/x", &[], b"").status, 429);
    hup(&child);
    let reloaded = eventually(|| (request(port, "GET", "/huawei/x", &[], b"").status == 503).then_some(()));
    assert!(reloaded.is_some(), "SIGHUP reloaded (and did not kill the process)");
    write(dir.path(), "rules/p.yaml", "rules: [oops\n");
    hup(&child);
    let last_error = eventually(|| {
        let e = request(admin, "GET", "/-/config", &[], b"").json()["last_error"].clone();
        e.is_object().then_some(e)
    })
    .expect("the rejected reload is reported");
    assert!(
        last_error["problems"][0].as_str().unwrap().contains("rules/p.yaml:1:8"),
        "{last_error}"
    );
    assert_eq!(
        request(port, "GET", "/huawei/x", &[], b"").status,
        503,
        "old rules keep serving"
    );
    assert!(child.try_wait().unwrap().is_none(), "still running");
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn check_warns_about_401_and_405_without_their_headers() {
    let dir = tempfile::tempdir().unwrap();
    let profile = "rules:\n  - name: login\n    when: { status: 400, json: { /code: AUTH } }\n    then: { status: 401 }\n  - name: verb\n    when: { status: 404, method: PATCH }\n    then: { status: 405, headers: { set: { Allow: \"GET, PUT\" } } }\n";
    write(dir.path(), "rules/p.yaml", profile);
    let cfg = write(dir.path(), "gw.yaml", &config("127.0.0.1:1", 1, 2));
    let out = bin().args(["check", "-c"]).arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "warnings do not fail the check: {err}");
    assert!(
        err.contains(
            "rules/p.yaml:2:11: warning: rule `login` maps to 401 but route `huawei` supplies no www-authenticate"
        ),
        "{err}"
    );
    assert!(!err.contains("`verb`"), "the rule sets Allow itself: {err}");
    // Supplied by the route: no warning.
    let with_route = base("127.0.0.1:1", 1, 2, "3s")
        .route(huawei().ensure_header(401, "WWW-Authenticate", "Bearer realm=\"x\""))
        .build();
    let cfg = write(dir.path(), "gw2.yaml", &with_route);
    let out = bin().args(["check", "-c"]).arg(&cfg).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn json_access_log_has_one_line_per_request_with_its_fields() {
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", r#"{"error_code":"EndPoint.0022","error_msg":"m"}"#));
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rules/p.yaml", GOOD_PROFILE);
    let (port, admin) = (free_port(), free_port());
    let text = server(&up.addr(), port, admin, "3s")
        .log_format("json")
        .log_filter("warn,statusgate::access=info")
        .set("http2", "h2c", "true")
        .build();
    let cfg = write(dir.path(), "gw.yaml", &text);
    let log_path = dir.path().join("stderr.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut child = spawn_run(&cfg, port, log_file.into());
    let r = request(port, "GET", "/huawei/v1/x", &[("X-Request-Id", "json-log-1")], b"");
    assert_eq!(r.status, 429);
    let h2 = common::curl::curl(
        common::curl::Proto::H2c,
        &format!("http://127.0.0.1:{port}/huawei/v1/y"),
        &["-H", "X-Request-Id: json-log-2"],
    );
    assert_eq!((h2.response.status, h2.version.as_str()), (429, "2"));
    let line_of = |id: &str| {
        eventually(|| {
            let text = std::fs::read_to_string(&log_path).unwrap();
            text.lines().find(|l| l.contains(id)).map(str::to_owned)
        })
    };
    let (line, line2) = (line_of("json-log-1"), line_of("json-log-2"));
    child.kill().unwrap();
    let _ = child.wait();
    let v2: serde_json::Value = serde_json::from_str(&line2.expect("an access line")).expect("JSON");
    assert_eq!(
        (v2["protocol"].as_str(), v2["status"].as_u64()),
        (Some("HTTP/2"), Some(429))
    );
    let v: serde_json::Value = serde_json::from_str(&line.expect("an access line")).expect("JSON");
    assert_eq!(v["protocol"], "HTTP/1.1");
    assert_eq!(v["request_id"], "json-log-1");
    assert_eq!(v["route"], "huawei");
    assert_eq!(v["status"], 429);
    assert_eq!(v["upstream_status"], 400);
    assert_eq!(v["rule"], "throttled");
    assert_eq!(v["origin"], "upstream");
    assert_eq!(v["path"], "/huawei/v1/x");
}

#[test]
fn the_demo_runs_the_emulators_behind_the_gateway() {
    // The README's run command: fixed demo ports 8080/9090/18001-18004 on loopback.
    let mut child = bin()
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", 8080)).is_err()
        || std::net::TcpStream::connect(("127.0.0.1", 18002)).is_err()
    {
        assert!(t.elapsed() < Duration::from_secs(20), "demo did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let project = statusgate_emulators::huawei::DEMO_PROJECT_ID;
    let token = statusgate_emulators::huawei::DEMO_TOKEN;
    let path = format!("/v1/{project}/vpc-endpoints");
    let direct = request(18002, "POST", &path, &[("X-Auth-Token", token)], b"");
    let through = request(8080, "POST", &format!("/huawei{path}"), &[("X-Auth-Token", token)], b"");
    assert_eq!((direct.status, through.status), (504, 400), "{}", through.text());
    assert_eq!(through.json()["vendor_code"], "EndPoint.0011");
    let r = request(8080, "GET", "/oracle/ords/hr/employees/999999", &[], b"");
    assert_eq!((r.status, r.json()["vendor_code"].as_str()), (404, Some("NotFound")));
    assert_eq!(request(9090, "GET", "/readyz", &[], b"").status, 200);
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn graceful_upgrade_hands_the_listener_to_a_new_process() {
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", r#"{"error_code":"EndPoint.0022","error_msg":"m"}"#));
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rules/p.yaml", GOOD_PROFILE);
    let (port, admin) = (free_port(), free_port());
    let text = server(&up.addr(), port, admin, "1s")
        .watch_config(false)
        .upgrade_sock("upgrade.sock")
        .build();
    let cfg = write(dir.path(), "gw.yaml", &text);
    let mut old = spawn_run(&cfg, port, Stdio::null());
    assert_eq!(request(port, "GET", "/huawei/x", &[], b"").status, 429);
    // The new process (new rules, same listeners) waits for the sockets on upgrade.sock ...
    write(
        dir.path(),
        "rules/p.yaml",
        &GOOD_PROFILE.replace("status: 429", "status: 503"),
    );
    let mut new = bin()
        .args(["run", "--upgrade", "-c"])
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // ... which the old one sends on SIGQUIT (retried: the new one may not be listening yet).
    let handed_over = eventually(|| {
        let _ = Command::new("kill").args(["-QUIT", &old.id().to_string()]).status();
        std::thread::sleep(Duration::from_millis(200));
        old.try_wait().unwrap().map(|_| ())
    });
    assert!(handed_over.is_some(), "the old process exited after handing over");
    assert_eq!(
        request(port, "GET", "/huawei/x", &[], b"").status,
        503,
        "the new process serves on the same port"
    );
    new.kill().unwrap();
    let _ = new.wait();
}
