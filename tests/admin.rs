//! The admin listener: health, readiness, the loaded configuration, and reload through
//! `POST /-/reload` (a bad edit is rejected with file:line:col and the old rules keep serving).

mod common;

use common::{request, Gateway, Reply, Upstream};

const V1: &str = "rules:\n  - name: v1\n    when: { status: 400 }\n    then: { status: 422 }\n";
const V2: &str = "rules:\n  - name: v2\n    when: { status: 400 }\n    then: { status: 409 }\n";

fn gateway(up: &Upstream) -> Gateway {
    let cfg = format!(
        "listen: ${{LISTEN}}\nadmin: ${{ADMIN}}\nupstreams:\n  up:\n    addrs: [{}]\nroutes:\n  - name: admin-test\n    upstream: up\n    profile: rules/vendor.yaml\n",
        up.addr()
    );
    Gateway::start(&cfg, &[("rules/vendor.yaml", V1)])
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
    let cfg = format!(
        "listen: ${{LISTEN}}\nadmin: ${{ADMIN}}\nupstreams:\n  up:\n    addrs: [{}]\nroutes:\n  - name: configmap\n    upstream: up\n    profile: {}\n",
        up.addr(),
        cm.join("vendor.yaml").display()
    );
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
    let cfg = format!(
        "listen: ${{LISTEN}}\nadmin: ${{ADMIN}}\nserver:\n  watch_config: false\nupstreams:\n  up:\n    addrs: [127.0.0.1:{dead}]\n    fail_timeout: 1m\nroutes:\n  - name: health-kept\n    upstream: up\n    profile: rules/vendor.yaml\n"
    );
    let gw = Gateway::start(&cfg, &[("rules/vendor.yaml", V1)]);
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
    let main = std::fs::read_to_string(gw.path("statusgate.yaml")).unwrap();
    std::fs::write(
        gw.path("statusgate.yaml"),
        main.replace("fail_timeout: 1m", "fail_timeout: 2m"),
    )
    .unwrap();
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
    let main = std::fs::read_to_string(gw.path("statusgate.yaml")).unwrap();
    let moved = common::gateway::free_port();
    let edited = main.replace(
        &format!("listen: 127.0.0.1:{}", gw.port),
        &format!("listen: 127.0.0.1:{moved}"),
    );
    assert_ne!(edited, main);
    std::fs::write(gw.path("statusgate.yaml"), edited).unwrap();
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
