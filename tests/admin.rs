//! The admin listener: health, readiness, the loaded configuration, and reload through
//! `POST /-/reload` (a bad edit is rejected with file:line:col and the old rules keep serving);
//! its bearer token (`admin.token_file` / `admin.token_env`) and the refusal of cross-site POSTs.

mod common;

use common::config::{Config, Route, Upstream as Up};
use common::{request, Gateway, Reply, Upstream};

const V1: &str = "rules:\n  - name: v1\n    when: { status: 400 }\n    then: { status: 422 }\n";
const V2: &str = "rules:\n  - name: v2\n    when: { status: 400 }\n    then: { status: 409 }\n";

/// `base` with the upstream `up` and one route `admin-test` through `rules/vendor.yaml`.
fn admin_test(base: Config, up: &Upstream) -> String {
    base.upstream("up", Up::addr(&up.addr()))
        .route(Route::new("admin-test", "up").profile("rules/vendor.yaml"))
        .build()
}

fn gateway(up: &Upstream) -> Gateway {
    Gateway::start(&admin_test(Config::new(), up), &[("rules/vendor.yaml", V1)])
}

#[test]
fn health_readiness_and_config() {
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", "{}"));
    let gw = gateway(&up);
    assert_eq!(gw.admin_get("/healthz").status, 200);
    let ready = gw.admin_get("/readyz");
    assert_eq!(ready.status, 200);
    let cfg = gw.admin_get("/-/config").json();
    let version = cfg["version"].as_str().unwrap().to_owned();
    assert!(ready.text().contains(&version));
    assert_eq!(cfg["routes"][0]["name"], "admin-test");
    assert_eq!(cfg["routes"][0]["rules"][0], "v1");
    let files: Vec<String> = cfg["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    assert!(files.iter().any(|f| f.ends_with("rules/vendor.yaml")), "{files:?}");
    assert!(cfg["last_error"].is_null());
    assert_eq!(request(gw.admin, "GET", "/-/reload", &[], b"").status, 405);
    assert_eq!(gw.admin_get("/nope").status, 404);
}

#[test]
fn reload_applies_good_edits_and_rejects_bad_ones_keeping_the_old_rules() {
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", "{}"));
    let gw = gateway(&up);
    assert_eq!(request(gw.port, "GET", "/", &[], b"").status, 422);

    std::fs::write(gw.path("rules/vendor.yaml"), V2).unwrap();
    let r = request(gw.admin, "POST", "/-/reload", &[], b"");
    assert_eq!((r.status, r.json()["outcome"].as_str()), (200, Some("applied")));
    assert_eq!(request(gw.port, "GET", "/", &[], b"").status, 409);
    let r = request(gw.admin, "POST", "/-/reload", &[], b"");
    assert_eq!(r.json()["outcome"], "unchanged");

    std::fs::write(
        gw.path("rules/vendor.yaml"),
        "rules:\n  - name: v3\n    then: { status: 999 }\n",
    )
    .unwrap();
    let r = request(gw.admin, "POST", "/-/reload", &[], b"");
    assert_eq!((r.status, r.json()["outcome"].as_str()), (422, Some("rejected")));
    let problem = r.json()["problems"][0].as_str().unwrap().to_owned();
    assert!(
        problem.contains("rules/vendor.yaml:3:21: status 999 is not in the canonical set"),
        "{problem}"
    );
    assert_eq!(
        request(gw.port, "GET", "/", &[], b"").status,
        409,
        "the last good rules keep serving"
    );
    let cfg = gw.admin_get("/-/config").json();
    assert!(cfg["last_error"]["problems"][0]
        .as_str()
        .unwrap()
        .contains("vendor.yaml:3:21"));
}

/// Polls (bounded) until the gateway answers `want` for GET /.
fn wait_for_status(gw: &Gateway, want: u16) -> u16 {
    let mut got = 0;
    for _ in 0..100 {
        got = request(gw.port, "GET", "/", &[], b"").status;
        if got == want {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    got
}

#[test]
fn editing_a_rule_file_reloads_it() {
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", "{}"));
    let gw = gateway(&up);
    assert_eq!(request(gw.port, "GET", "/", &[], b"").status, 422);
    // Editors save by writing a temp file and renaming it over the original.
    let tmp = gw.path("rules/.vendor.yaml.swp");
    std::fs::write(&tmp, V2).unwrap();
    std::fs::rename(&tmp, gw.path("rules/vendor.yaml")).unwrap();
    assert_eq!(wait_for_status(&gw, 409), 409, "the watcher reloaded the edited file");
    // A broken edit is rejected and the last good rules keep serving.
    std::fs::write(gw.path("rules/vendor.yaml"), "rules: [\n").unwrap();
    for _ in 0..100 {
        if gw.admin_get("/-/config").json()["last_error"].is_object() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let cfg = gw.admin_get("/-/config").json();
    assert!(
        cfg["last_error"]["problems"][0]
            .as_str()
            .unwrap()
            .contains("vendor.yaml:1:8: unclosed bracket"),
        "{cfg}"
    );
    assert_eq!(request(gw.port, "GET", "/", &[], b"").status, 409);
}

#[test]
fn a_kubernetes_configmap_update_is_seen() {
    // ConfigMap volumes: the file is a symlink through `..data`, which an update swaps atomically.
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", "{}"));
    let dir = tempfile::tempdir().unwrap();
    let cm = dir.path().join("cm");
    std::fs::create_dir_all(cm.join("..2026_11_22_v1")).unwrap();
    std::fs::write(cm.join("..2026_11_22_v1/vendor.yaml"), V1).unwrap();
    std::os::unix::fs::symlink("..2026_11_22_v1", cm.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/vendor.yaml", cm.join("vendor.yaml")).unwrap();
    let cfg = Config::new()
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("configmap", "up").profile(&cm.join("vendor.yaml").display().to_string()))
        .build();
    let gw = Gateway::start(&cfg, &[]);
    assert_eq!(request(gw.port, "GET", "/", &[], b"").status, 422);
    std::fs::create_dir_all(cm.join("..2026_11_22_v2")).unwrap();
    std::fs::write(cm.join("..2026_11_22_v2/vendor.yaml"), V2).unwrap();
    std::os::unix::fs::symlink("..2026_11_22_v2", cm.join("..data_tmp")).unwrap();
    std::fs::rename(cm.join("..data_tmp"), cm.join("..data")).unwrap();
    assert_eq!(wait_for_status(&gw, 409), 409, "the ..data swap triggered a reload");
}

#[test]
fn unchanged_upstream_groups_keep_their_health_across_a_reload() {
    let dead = common::gateway::free_port();
    let cfg = |fail_timeout: &str| {
        Config::new()
            .watch_config(false)
            .upstream("up", Up::addr(&format!("127.0.0.1:{dead}")).fail_timeout(fail_timeout))
            .route(Route::new("health-kept", "up").profile("rules/vendor.yaml"))
            .build()
    };
    let gw = Gateway::start(&cfg("1m"), &[("rules/vendor.yaml", V1)]);
    assert_eq!(
        request(gw.port, "GET", "/", &[], b"").status,
        502,
        "refused: marked down"
    );
    assert_eq!(request(gw.port, "GET", "/", &[], b"").status, 503);
    std::fs::write(gw.path("rules/vendor.yaml"), V2).unwrap();
    assert_eq!(
        request(gw.admin, "POST", "/-/reload", &[], b"").json()["outcome"],
        "applied"
    );
    assert_eq!(
        request(gw.port, "GET", "/", &[], b"").status,
        503,
        "still down after a rules-only reload"
    );
    // Changing the group itself starts it afresh.
    gw.write_config(&cfg("2m"));
    assert_eq!(
        request(gw.admin, "POST", "/-/reload", &[], b"").json()["outcome"],
        "applied"
    );
    assert_eq!(request(gw.port, "GET", "/", &[], b"").status, 502);
}

#[test]
fn a_listener_change_says_it_needs_a_restart() {
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", "{}"));
    let gw = gateway(&up);
    assert!(gw.admin_get("/-/config").json()["restart_needed"].is_null());
    let moved = common::gateway::free_port();
    gw.write_config(&admin_test(
        Config::new().listen_addr(&format!("127.0.0.1:{moved}")),
        &up,
    ));
    let r = request(gw.admin, "POST", "/-/reload", &[], b"").json();
    assert_eq!(r["outcome"], "applied");
    let note = r["restart_needed"].as_str().expect("a restart note");
    assert!(note.contains("restart") && note.contains("--upgrade"), "{note}");
    assert_eq!(
        request(gw.port, "GET", "/", &[], b"").status,
        422,
        "the bound listener keeps serving"
    );
}

#[test]
fn pooled_upstream_connections_survive_a_reload() {
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", "{}"));
    let gw = gateway(&up);
    assert_eq!(request(gw.port, "GET", "/", &[], b"").status, 422);
    std::fs::write(gw.path("rules/vendor.yaml"), V2).unwrap();
    assert_eq!(
        request(gw.admin, "POST", "/-/reload", &[], b"").json()["outcome"],
        "applied"
    );
    assert_eq!(request(gw.port, "GET", "/", &[], b"").status, 409);
    assert_eq!(request(gw.port, "GET", "/", &[], b"").status, 409);
    assert_eq!(
        up.connections.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the upstream connection opened before the reload served the requests after it"
    );
}

const TOKEN: &str = "3f9c1d2e7a5b4c6d8e0f1a2b3c4d5e6f";

/// The `gateway` above with `admin:` as a map: `admin` sets its keys.
fn protected_gateway(up: &Upstream, admin: Config, files: &[(&str, &str)]) -> Gateway {
    let cfg = admin_test(admin, up);
    let mut all = vec![("rules/vendor.yaml", V1)];
    all.extend_from_slice(files);
    Gateway::start(&cfg, &all)
}

fn with_token(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn without_a_token_reload_and_config_answer_any_local_client_as_before() {
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", "{}"));
    let gw = gateway(&up);
    let r = request(gw.admin, "POST", "/-/reload", &[], b"");
    assert_eq!((r.status, r.json()["outcome"].as_str()), (200, Some("unchanged")));
    let cfg = gw.admin_get("/-/config");
    assert_eq!(cfg.status, 200);
    assert!(cfg.json()["admin"]["token"].is_null());
    assert_eq!(gw.admin_get("/metrics").status, 200);
    // A browser POST from the listener's own origin is no cross-site request.
    let own = format!("http://127.0.0.1:{}", gw.admin);
    let r = request(gw.admin, "POST", "/-/reload", &[("Origin", &own)], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn with_a_token_reload_and_config_need_it_while_metrics_and_probes_stay_open() {
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", "{}"));
    let gw = protected_gateway(
        &up,
        Config::new().admin_token_file("secrets/admin-token"),
        &[("secrets/admin-token", &format!("{TOKEN}\n"))],
    );
    for (method, path) in [("POST", "/-/reload"), ("GET", "/-/config")] {
        for auth in [
            None,
            Some(with_token("wrong")),
            Some(with_token(&TOKEN[..TOKEN.len() - 1])),
            Some(format!("Basic {TOKEN}")),
            Some("Bearer".to_owned()),
        ] {
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
            let r = request(gw.admin, method, path, &headers, b"");
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}");
            assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="statusgate-admin""#));
            assert!(!r.text().contains(TOKEN));
        }
        let r = request(gw.admin, method, path, &[("Authorization", &with_token(TOKEN))], b"");
        assert_eq!(r.status, 200, "{method} {path} with the token: {}", r.text());
    }
    // The scheme is case-insensitive (RFC 9110 11.1).
    let r = request(
        gw.admin,
        "GET",
        "/-/config",
        &[("Authorization", &format!("bearer {TOKEN}"))],
        b"",
    );
    assert_eq!(r.status, 200);
    let cfg = r.json();
    assert!(
        cfg["admin"]["token"].as_str().unwrap().ends_with("secrets/admin-token"),
        "{cfg}"
    );
    assert!(!r.text().contains(TOKEN), "the token's value is never shown");
    for open in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(gw.admin_get(open).status, 200, "{open} is open by default");
    }
}

#[test]
fn metrics_and_probes_need_the_token_when_configured() {
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", "{}"));
    let gw = protected_gateway(
        &up,
        Config::new()
            .admin_token_file("admin-token")
            .protect_metrics(true)
            .protect_probes(true),
        &[("admin-token", TOKEN)],
    );
    for path in ["/metrics", "/healthz", "/readyz"] {
        let r = gw.admin_get(path);
        assert_eq!(
            (r.status, r.header("www-authenticate")),
            (401, Some(r#"Bearer realm="statusgate-admin""#)),
            "{path}"
        );
        let r = request(gw.admin, "GET", path, &[("Authorization", &with_token(TOKEN))], b"");
        assert_eq!(r.status, 200, "{path} with the token");
    }
}

#[test]
fn a_cross_site_post_is_refused_even_with_the_token() {
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", "{}"));
    let gw = protected_gateway(
        &up,
        Config::new().admin_token_file("admin-token"),
        &[("admin-token", TOKEN)],
    );
    let auth = with_token(TOKEN);
    let own = format!("http://127.0.0.1:{}", gw.admin);
    let localhost = format!("http://localhost:{}", gw.admin);
    let other_port = format!("http://127.0.0.1:{}", gw.port);
    for cross in [
        vec![("Origin", "http://evil.example")],
        vec![("Origin", "null")],
        vec![("Origin", other_port.as_str())],
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![("Origin", own.as_str()), ("Sec-Fetch-Site", "cross-site")],
    ] {
        let mut headers = cross.clone();
        headers.push(("Authorization", &auth));
        let r = request(gw.admin, "POST", "/-/reload", &headers, b"");
        assert_eq!(r.status, 403, "{cross:?}");
    }
    for same in [
        vec![("Origin", own.as_str())],
        vec![("Origin", localhost.as_str()), ("Sec-Fetch-Site", "same-origin")],
        vec![],
    ] {
        let mut headers = same.clone();
        headers.push(("Authorization", &auth));
        let r = request(gw.admin, "POST", "/-/reload", &headers, b"");
        assert_eq!(r.status, 200, "{same:?}");
    }
    // Without a token configured too.
    let open = gateway(&up);
    let r = request(
        open.admin,
        "POST",
        "/-/reload",
        &[("Origin", "http://evil.example")],
        b"",
    );
    assert_eq!(r.status, 403);
    let r = request(
        open.admin,
        "POST",
        "/-/reload",
        &[("Sec-Fetch-Site", "cross-site")],
        b"",
    );
    assert_eq!(r.status, 403);
}

#[test]
fn a_changed_token_file_is_applied_by_reload() {
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", "{}"));
    let gw = protected_gateway(
        &up,
        Config::new().admin_token_file("admin-token"),
        &[("admin-token", TOKEN)],
    );
    let version = |auth: &str| {
        request(gw.admin, "GET", "/-/config", &[("Authorization", auth)], b"").json()["version"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = version(&with_token(TOKEN));
    std::fs::write(gw.path("admin-token"), "a-new-token-0f1e2d3c4b5a69788796\n").unwrap();
    let r = request(
        gw.admin,
        "POST",
        "/-/reload",
        &[("Authorization", &with_token(TOKEN))],
        b"",
    );
    assert_eq!(
        r.json()["outcome"],
        "applied",
        "the token file is part of the configuration"
    );
    assert_eq!(
        request(
            gw.admin,
            "GET",
            "/-/config",
            &[("Authorization", &with_token(TOKEN))],
            b""
        )
        .status,
        401,
        "the old token no longer works"
    );
    assert_ne!(version(&with_token("a-new-token-0f1e2d3c4b5a69788796")), before);
}

#[test]
fn a_missing_or_empty_token_file_is_a_problem_on_the_key_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("statusgate.yaml");
    let text = "listen: 127.0.0.1:1\nadmin:\n  token_file: admin-token\nupstreams: {}\nroutes: []\n";
    std::fs::write(&main, text).unwrap();
    let problems = |main: &std::path::Path| -> Vec<String> {
        statusgate::snapshot::load(main)
            .map(|_| Vec::new())
            .unwrap_or_else(|ps| ps.iter().map(ToString::to_string).collect())
    };
    let missing = problems(&main);
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].starts_with(&format!("{}:3:15: token_file `", main.display()))
            && missing[0].contains("admin-token`: cannot read file"),
        "{missing:?}"
    );
    std::fs::write(dir.path().join("admin-token"), " \n").unwrap();
    let empty = problems(&main);
    assert_eq!(empty.len(), 1, "{empty:?}");
    assert!(
        empty[0].starts_with(&format!("{}:3:15: ", main.display())) && empty[0].ends_with("admin-token` is empty"),
        "{empty:?}"
    );
    // A well-formed map, but a token from nowhere for what it protects.
    std::fs::write(
        &main,
        "listen: 127.0.0.1:1\nadmin:\n  addr: 127.0.0.1:2\n  protect_metrics: true\nupstreams: {}\nroutes: []\n",
    )
    .unwrap();
    let p = problems(&main);
    assert_eq!(
        p,
        [format!(
            "{}:4:20: protect_metrics needs a token: set token_file or token_env",
            main.display()
        )]
    );
}

#[test]
fn check_warns_about_an_admin_listener_off_loopback_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str, env: Option<&str>| {
        let main = dir.path().join("gw.yaml");
        std::fs::write(
            &main,
            format!("listen: 127.0.0.1:1\n{text}upstreams: {{}}\nroutes: []\n"),
        )
        .unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_statusgate"));
        cmd.args(["check", "-c"])
            .arg(&main)
            .env_remove("STATUSGATE_TEST_ADMIN_TOKEN");
        if let Some(v) = env {
            cmd.env("STATUSGATE_TEST_ADMIN_TOKEN", v);
        }
        let out = cmd.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, err) = check("admin: 0.0.0.0:9090\n", None);
    assert!(ok, "a warning does not fail the check: {err}");
    assert!(
        err.contains("gw.yaml:2:8: warning: the admin listener `0.0.0.0:9090` is not on loopback and has no token"),
        "{err}"
    );
    let (ok, err) = check("admin:\n  addr: 0.0.0.0:9090\n", None);
    assert!(ok && err.contains("gw.yaml:3:9: warning: the admin listener"), "{err}");
    // Loopback, or a token: no warning.
    let (ok, err) = check("admin: 127.0.0.1:9090\n", None);
    assert!(ok && !err.contains("warning"), "{err}");
    let env_token = "admin:\n  addr: 0.0.0.0:9090\n  token_env: STATUSGATE_TEST_ADMIN_TOKEN\n";
    let (ok, err) = check(env_token, Some(TOKEN));
    assert!(ok && !err.contains("warning"), "{err}");
    assert!(!err.contains(TOKEN), "the token's value is never printed");
    // The variable unset: a problem on the key that names it.
    let (ok, err) = check(env_token, None);
    assert!(!ok);
    assert!(
        err.contains("gw.yaml:4:14: token_env `STATUSGATE_TEST_ADMIN_TOKEN`: the environment variable is not set"),
        "{err}"
    );
}

#[test]
fn a_kubernetes_secret_token_update_is_seen_by_the_watcher() {
    // A Secret volume looks like a ConfigMap one: `token` -> `..data/token`, `..data` swapped.
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", "{}"));
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::create_dir_all(secret.join("..2026_12_01_v1")).unwrap();
    std::fs::write(secret.join("..2026_12_01_v1/token"), TOKEN).unwrap();
    std::os::unix::fs::symlink("..2026_12_01_v1", secret.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/token", secret.join("token")).unwrap();
    let gw = protected_gateway(
        &up,
        Config::new().admin_token_file(&secret.join("token").display().to_string()),
        &[],
    );
    let config_with = |token: &str| {
        request(
            gw.admin,
            "GET",
            "/-/config",
            &[("Authorization", &with_token(token))],
            b"",
        )
        .status
    };
    assert_eq!(config_with(TOKEN), 200);
    let rotated = "rotated-7c1e0b9a2f4d6e8a0c2e4f6a8b0d2f4e";
    std::fs::create_dir_all(secret.join("..2026_12_01_v2")).unwrap();
    std::fs::write(secret.join("..2026_12_01_v2/token"), rotated).unwrap();
    std::os::unix::fs::symlink("..2026_12_01_v2", secret.join("..data_tmp")).unwrap();
    std::fs::rename(secret.join("..data_tmp"), secret.join("..data")).unwrap();
    let swapped = std::time::Instant::now();
    while config_with(rotated) != 200 {
        assert!(
            swapped.elapsed() < std::time::Duration::from_secs(3),
            "the rotated token was not applied within 3 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(config_with(TOKEN), 401, "the old token no longer works");
}

#[test]
fn a_rejected_reload_reports_file_line_column_kind_and_message_per_problem() {
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", "{}"));
    let gw = gateway(&up);
    std::fs::write(
        gw.path("rules/vendor.yaml"),
        "rules:\n  - name: v3\n    when: { status: 400, json: { /a: { one_of: [] } } }\n    then: { status: 422 }\n",
    )
    .unwrap();
    let r = request(gw.admin, "POST", "/-/reload", &[], b"");
    assert_eq!(r.status, 422);
    let cfg = gw.admin_get("/-/config").json();
    for d in [&r.json()["diagnostics"][0], &cfg["last_error"]["diagnostics"][0]] {
        assert!(d["file"].as_str().unwrap().ends_with("rules/vendor.yaml"), "{d}");
        assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(3), Some(38)), "{d}");
        assert_eq!(d["severity"], "error");
        assert_eq!(d["kind"], "matcher_empty_one_of");
        assert_eq!(d["message"], "one_of needs at least one value");
    }
}
