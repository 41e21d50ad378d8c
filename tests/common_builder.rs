//! The typed configuration builder of tests/common/config.rs, tested once (not once per test
//! binary): the YAML it writes, and that a configuration using its typed methods is one the
//! real loader accepts.

mod common;

use common::config::{Config, Route, TlsListen, Upstream};

#[test]
fn a_built_config_is_the_yaml_the_tests_used_to_write_by_hand() {
    let y = Config::new()
        .limit("request_header", "1KiB")
        .upstream(
            "up",
            Upstream::addrs(&["127.0.0.1:1", "127.0.0.1:2"]).response_timeout("2s"),
        )
        .route(Route::new("api", "up").prefix("/api/").strip_prefix().profile("p.yaml"))
        .build();
    assert_eq!(
        y,
        "listen: ${LISTEN}\nadmin: ${ADMIN}\nlimits:\n  request_header: 1KiB\nupstreams:\n  up:\n    addrs: [127.0.0.1:1, 127.0.0.1:2]\n    response_timeout: 2s\nroutes:\n  - name: api\n    upstream: up\n    path_prefix: /api/\n    strip_prefix: true\n    profile: p.yaml\n"
    );
    let protected = Config::new().admin("token", "x").build();
    assert!(protected.starts_with("listen: ${LISTEN}\nadmin:\n  addr: ${ADMIN}\n  token: x\n"));
}

#[test]
fn a_config_using_every_typed_method_is_accepted_by_the_loader() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin-token"), "3f9c1d2e7a5b4c6d8e0f1a2b3c4d5e6f\n").unwrap();
    std::fs::write(dir.path().join("p.yaml"), "rules: []\n").unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("gw.crt"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("gw.key"), cert.signing_key.serialize_pem()).unwrap();
    let canonical = std::fs::read_to_string(format!("{}/rules/canonical.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
    std::fs::write(dir.path().join("canonical.yaml"), canonical).unwrap();
    let text = Config::new()
        .listen_addr("127.0.0.1:1")
        .admin_addr("127.0.0.1:2")
        .admin_token_file("admin-token")
        .protect_metrics(true)
        .protect_probes(false)
        .tls_listen("127.0.0.1:3", "gw.crt", "gw.key")
        .tls_listener(
            TlsListen::new("127.0.0.1:5", "gw.crt", "gw.key")
                .sni_cert("gw.crt", "gw.key")
                .min_version("1.3")
                .http2(false),
        )
        .canonical("canonical.yaml")
        .body_buffer("256KiB")
        .body_depth(50)
        .request_header("1KiB")
        .request_body("1KiB")
        .client_header_timeout("1s")
        .client_body_timeout("1s")
        .client_keepalive_timeout("1s")
        .client_connections(10)
        .upgrade_idle_timeout("30s")
        .work_stealing(true)
        .threads(1)
        .grace_period("0s")
        .watch_config(false)
        .upgrade_sock("upgrade.sock")
        .log_format("json")
        .log_filter("warn,statusgate::access=info")
        .tracing("endpoint", "http://127.0.0.1:4318/v1/traces")
        .tracing("sample_ratio", "0.5")
        .upstream(
            "up",
            Upstream::addr("127.0.0.1:4")
                .connect_timeout("1s")
                .response_timeout("1s")
                .body_timeout("1s")
                .body_deadline("1s")
                .write_timeout("1s")
                .idle_timeout("1s")
                .fail_timeout("1s")
                .max_connections(4)
                .host_header("vendor.internal"),
        )
        .route(
            Route::new("r", "up")
                .prefix("/api/")
                .strip_prefix()
                .host("api.example.test")
                .profile("p.yaml")
                .shadow_profile("p.yaml")
                .upgrades(&["websocket", "My-Proto"])
                .ensure_header(401, "WWW-Authenticate", "Bearer realm=\"it's\""),
        )
        .build();
    let main = dir.path().join("statusgate.yaml");
    std::fs::write(&main, &text).unwrap();
    if let Err(problems) = statusgate::snapshot::load(&main) {
        panic!("{text}\n{problems:?}");
    }
    // Nothing but the listen address when nothing else is asked for.
    let bare = Config::new().listen_addr("127.0.0.1:1").no_admin().build();
    assert_eq!(bare, "listen: 127.0.0.1:1\nupstreams: {}\nroutes: []\n");
}
