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
