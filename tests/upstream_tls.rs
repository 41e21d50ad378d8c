//! TLS and HTTP/2 to upstreams, against real servers on loopback: a rustls server thread (CA and
//! certificates made by rcgen in the test) for trust, SNI, hostname checks, client certificates
//! and protocol versions, and Debian's nginx for HTTP/2 (ALPN h2 and h2c) and for an upstream
//! that answers its own 400 when the client certificate is missing. Also the load problems of
//! `tls:` and the documentation's examples.

mod common;

use common::config::{Config, Route, Upstream as Up};
use common::docs::doc_block;
use common::tls::{require_nginx, Ca, Nginx, ServerOpts, TlsServer};
use common::{assert::gateway_problem, request, Gateway};

fn gateway(up: Up, files: &[(&str, &str)]) -> Gateway {
    Gateway::start(
        &Config::new().upstream("up", up).route(Route::new("r", "up")).build(),
        files,
    )
}

fn get(gw: &Gateway) -> common::Response {
    request(gw.port, "GET", "/", &[], b"")
}

/// The rustls server's report of what it saw in the handshake.
fn seen(r: &common::Response) -> serde_json::Value {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The problems of loading `config` (with `files` beside it), as printed.
fn problems(config: &str, files: &[(&str, &str)]) -> (String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let path = dir.path().join("statusgate.yaml");
    let text = config
        .replace("${LISTEN}", "127.0.0.1:1")
        .replace("${ADMIN}", "127.0.0.1:2");
    std::fs::write(&path, text).unwrap();
    let out = match statusgate::snapshot::load(&path) {
        Ok(_) => Vec::new(),
        Err(ps) => ps.iter().map(ToString::to_string).collect(),
    };
    (path.display().to_string(), out)
}

#[test]
fn a_custom_ca_is_trusted_and_the_configured_sni_is_sent() {
    let ca = Ca::new("company CA");
    let srv = TlsServer::start(&ca.leaf(&["vendor.internal"]), ServerOpts::default());
    let gw = gateway(
        Up::addr(&srv.addr()).set("tls", "{ ca: ca.pem, sni: vendor.internal }"),
        &[("ca.pem", &ca.pem)],
    );
    let s = seen(&get(&gw));
    assert_eq!(s["sni"], "vendor.internal");
    assert_eq!(s["client_cert"], false);
}

#[test]
fn an_upstream_signed_by_another_ca_is_the_gateways_502_tls() {
    let (ours, theirs) = (Ca::new("ours"), Ca::new("theirs"));
    let srv = TlsServer::start(&theirs.leaf(&["vendor.internal"]), ServerOpts::default());
    let gw = gateway(
        Up::addr(&srv.addr()).set("tls", "{ ca: ca.pem, sni: vendor.internal }"),
        &[("ca.pem", &ours.pem)],
    );
    gateway_problem(&get(&gw), 502, "upstream-tls");
    // The system roots do not know a private CA either.
    let gw = gateway(Up::addr(&srv.addr()).set("tls", "{ sni: vendor.internal }"), &[]);
    gateway_problem(&get(&gw), 502, "upstream-tls");
    // With system_roots: true the group's CA adds to them.
    let gw = gateway(
        Up::addr(&srv.addr()).set("tls", "{ ca: ca.pem, system_roots: true, sni: vendor.internal }"),
        &[("ca.pem", &theirs.pem)],
    );
    seen(&get(&gw));
}

#[test]
fn hostname_verification_rejects_a_certificate_for_another_name() {
    let ca = Ca::new("ca");
    let srv = TlsServer::start(&ca.leaf(&["vendor.internal"]), ServerOpts::default());
    let gw = gateway(
        Up::addr(&srv.addr()).set("tls", "{ ca: ca.pem, sni: other.internal }"),
        &[("ca.pem", &ca.pem)],
    );
    gateway_problem(&get(&gw), 502, "upstream-tls");
    // verify_hostname: false keeps the chain check but accepts the name.
    let gw = gateway(
        Up::addr(&srv.addr()).set("tls", "{ ca: ca.pem, sni: other.internal, verify_hostname: false }"),
        &[("ca.pem", &ca.pem)],
    );
    assert_eq!(seen(&get(&gw))["sni"], "other.internal");
}

#[test]
fn without_sni_a_literal_ip_address_is_verified_against_the_certificates_ip() {
    let ca = Ca::new("ca");
    let by_ip = TlsServer::start(&ca.leaf(&["127.0.0.1"]), ServerOpts::default());
    let gw = gateway(
        Up::addr(&by_ip.addr()).set("tls", "{ ca: ca.pem }"),
        &[("ca.pem", &ca.pem)],
    );
    // No SNI is sent for an IP address (RFC 6066 section 3), and the certificate matched it.
    assert_eq!(seen(&get(&gw))["sni"], serde_json::Value::Null);
    let by_name = TlsServer::start(&ca.leaf(&["vendor.internal"]), ServerOpts::default());
    let gw = gateway(
        Up::addr(&by_name.addr()).set("tls", "{ ca: ca.pem }"),
        &[("ca.pem", &ca.pem)],
    );
    gateway_problem(&get(&gw), 502, "upstream-tls");
}

#[test]
fn the_sni_defaults_to_the_configured_host_name() {
    let ca = Ca::new("ca");
    let srv = TlsServer::start(&ca.leaf(&["localhost"]), ServerOpts::default());
    let gw = gateway(
        Up::addr(&format!("localhost:{}", srv.port)).set("tls", "{ ca: ca.pem }"),
        &[("ca.pem", &ca.pem)],
    );
    assert_eq!(seen(&get(&gw))["sni"], "localhost");
}

#[test]
fn an_mtls_upstream_is_served_with_cert_and_key_and_refuses_the_handshake_without() {
    let (ca, clients) = (Ca::new("server ca"), Ca::new("client ca"));
    let opts = || ServerOpts {
        client_ca: Some(&clients),
        ..ServerOpts::default()
    };
    let srv = TlsServer::start(&ca.leaf(&["vendor.internal"]), opts());
    let client = clients.leaf(&["statusgate"]);
    let files = [
        ("ca.pem", ca.pem.as_str()),
        ("client.crt", client.cert_pem.as_str()),
        ("client.key", client.key_pem.as_str()),
    ];
    let gw = gateway(
        Up::addr(&srv.addr()).set(
            "tls",
            "{ ca: ca.pem, sni: vendor.internal, cert: client.crt, key: client.key }",
        ),
        &files,
    );
    assert_eq!(seen(&get(&gw))["client_cert"], true);
    // No certificate: over TLS 1.3 the server's refusal arrives after the client's handshake
    // finished, as an alert on the first read; still the gateway's 502 tls.
    let gw = gateway(
        Up::addr(&srv.addr()).set("tls", "{ ca: ca.pem, sni: vendor.internal }"),
        &files,
    );
    gateway_problem(&get(&gw), 502, "upstream-tls");
    // A certificate from a CA the upstream does not trust.
    let stranger = ca.leaf(&["statusgate"]);
    let gw = gateway(
        Up::addr(&srv.addr()).set("tls", "{ ca: ca.pem, sni: vendor.internal, cert: s.crt, key: s.key }"),
        &[
            ("ca.pem", &ca.pem),
            ("s.crt", &stranger.cert_pem),
            ("s.key", &stranger.key_pem),
        ],
    );
    gateway_problem(&get(&gw), 502, "upstream-tls");
    // Over TLS 1.2 the refusal is part of the handshake itself.
    let srv12 = TlsServer::start(
        &ca.leaf(&["vendor.internal"]),
        ServerOpts {
            client_ca: Some(&clients),
            tls12_only: true,
        },
    );
    let gw = gateway(
        Up::addr(&srv12.addr()).set("tls", "{ ca: ca.pem, sni: vendor.internal }"),
        &files,
    );
    gateway_problem(&get(&gw), 502, "upstream-tls");
}

#[test]
fn verify_false_accepts_an_untrusted_certificate_and_is_warned_about() {
    let stranger = Ca::new("nobody trusts me");
    let srv = TlsServer::start(&stranger.leaf(&["vendor.internal"]), ServerOpts::default());
    let gw = gateway(
        Up::addr(&srv.addr()).set("tls", "{ sni: vendor.internal, verify: false }"),
        &[],
    );
    seen(&get(&gw));
    let snap = statusgate::snapshot::load(&gw.path("statusgate.yaml")).unwrap();
    let warnings: Vec<String> = snap.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings.iter().any(|w| w.contains("tls.verify is false")),
        "{warnings:?}"
    );
}

#[test]
fn min_version_refuses_an_upstream_that_only_speaks_tls_1_2() {
    let ca = Ca::new("ca");
    let srv = TlsServer::start(
        &ca.leaf(&["vendor.internal"]),
        ServerOpts {
            tls12_only: true,
            ..ServerOpts::default()
        },
    );
    let tls = |min: &str| format!("{{ ca: ca.pem, sni: vendor.internal, min_version: \"{min}\" }}");
    let gw = gateway(Up::addr(&srv.addr()).set("tls", &tls("1.3")), &[("ca.pem", &ca.pem)]);
    gateway_problem(&get(&gw), 502, "upstream-tls");
    let gw = gateway(Up::addr(&srv.addr()).set("tls", &tls("1.2")), &[("ca.pem", &ca.pem)]);
    assert_eq!(seen(&get(&gw))["version"], "TLSv1_2");
}

#[test]
fn a_rotated_ca_file_is_picked_up_by_a_reload() {
    let (old, new) = (Ca::new("old"), Ca::new("new"));
    let srv = TlsServer::start(&new.leaf(&["vendor.internal"]), ServerOpts::default());
    let gw = Gateway::start(
        &Config::new()
            .server("watch_config", "false")
            .server("threads", "1")
            .server("grace_period", "0s")
            .upstream(
                "up",
                Up::addr(&srv.addr()).set("tls", "{ ca: ca.pem, sni: vendor.internal }"),
            )
            .route(Route::new("r", "up"))
            .build(),
        &[("ca.pem", &old.pem)],
    );
    gateway_problem(&get(&gw), 502, "upstream-tls");
    let before = gw.admin_get("/-/config").json()["version"].clone();
    std::fs::write(gw.path("ca.pem"), &new.pem).unwrap();
    let r = request(gw.admin, "POST", "/-/reload", &[], b"");
    assert_eq!(r.json()["outcome"], "applied", "{}", r.text());
    let after = gw.admin_get("/-/config").json()["version"].clone();
    assert_ne!(before, after, "the CA file's content is part of the version");
    seen(&get(&gw));
}

#[test]
fn tls_files_that_are_missing_unparsable_or_half_a_pair_are_positioned_problems() {
    let ca = Ca::new("ca");
    let leaf = ca.leaf(&["x"]);
    let cfg = |tls: &str| {
        Config::new()
            .upstream("up", Up::addr("127.0.0.1:1").set("tls", tls))
            .route(Route::new("r", "up"))
            .build()
    };
    let line_of = |cfg: &str| cfg.lines().position(|l| l.contains("tls:")).unwrap() + 1;
    for (tls, files, says) in [
        ("{ ca: missing.pem }", vec![], "tls.ca"),
        (
            "{ ca: [ok.pem, bad.pem] }",
            vec![("ok.pem", ca.pem.as_str()), ("bad.pem", "not a certificate\n")],
            "no PEM certificate",
        ),
        (
            "{ ca: bad.pem }",
            vec![(
                "bad.pem",
                "-----BEGIN CERTIFICATE-----\nAAAA!!!!\n-----END CERTIFICATE-----\n",
            )],
            "tls.ca",
        ),
        (
            "{ cert: c.crt }",
            vec![("c.crt", leaf.cert_pem.as_str())],
            "without tls.key",
        ),
        (
            "{ key: c.key }",
            vec![("c.key", leaf.key_pem.as_str())],
            "without tls.cert",
        ),
        (
            "{ cert: c.crt, key: c.key }",
            vec![("c.crt", leaf.cert_pem.as_str()), ("c.key", "garbage\n")],
            "tls.key",
        ),
        ("{ min_version: \"1.1\" }", vec![], "min_version"),
    ] {
        let text = cfg(tls);
        let (path, ps) = problems(&text, &files);
        let want = format!("{path}:{}:", line_of(&text));
        assert!(
            ps.iter().any(|p| p.starts_with(&want) && p.contains(says)),
            "{tls}: want {want} .. {says}, got {ps:?}"
        );
    }
}

#[test]
fn http2_is_negotiated_by_alpn_and_falls_back_to_http_1_1() {
    require_nginx();
    let ca = Ca::new("ca");
    let leaf = ca.leaf(&["vendor.internal"]);
    let nginx = Nginx::start(
        "ssl http2",
        "    ssl_certificate $DIR/s.crt;\n    ssl_certificate_key $DIR/s.key;\n    location / { return 200 \"$server_protocol $ssl_server_name\"; }",
        &[("s.crt", &leaf.cert_pem), ("s.key", &leaf.key_pem)],
    );
    let tls = "{ ca: ca.pem, sni: vendor.internal }";
    let gw = gateway(
        Up::addr(&nginx.addr())
            .set("tls", tls)
            .set("http2", "true")
            .set("max_h2_streams", "10"),
        &[("ca.pem", &ca.pem)],
    );
    for _ in 0..3 {
        let r = get(&gw);
        assert_eq!((r.status, r.text().as_str()), (200, "HTTP/2.0 vendor.internal"));
    }
    let gw = gateway(Up::addr(&nginx.addr()).set("tls", tls), &[("ca.pem", &ca.pem)]);
    assert_eq!(get(&gw).text(), "HTTP/1.1 vendor.internal");
    // min_version holds for every stream of a multiplexed connection, not only its first.
    let tls12 = Nginx::start(
        "ssl http2",
        "    ssl_protocols TLSv1.2;\n    ssl_certificate $DIR/s.crt;\n    ssl_certificate_key $DIR/s.key;\n    location / { return 200 \"$server_protocol\"; }",
        &[("s.crt", &leaf.cert_pem), ("s.key", &leaf.key_pem)],
    );
    let gw = gateway(
        Up::addr(&tls12.addr())
            .set("tls", "{ ca: ca.pem, sni: vendor.internal, min_version: \"1.3\" }")
            .set("http2", "true")
            .fail_timeout("0s"),
        &[("ca.pem", &ca.pem)],
    );
    for _ in 0..3 {
        gateway_problem(&get(&gw), 502, "upstream-tls");
    }
    // An upstream without h2: ALPN falls back to HTTP/1.1.
    let h1 = Nginx::start(
        "ssl",
        "    ssl_certificate $DIR/s.crt;\n    ssl_certificate_key $DIR/s.key;\n    location / { return 200 \"$server_protocol\"; }",
        &[("s.crt", &leaf.cert_pem), ("s.key", &leaf.key_pem)],
    );
    let gw = gateway(
        Up::addr(&h1.addr()).set("tls", tls).set("http2", "true"),
        &[("ca.pem", &ca.pem)],
    );
    assert_eq!(get(&gw).text(), "HTTP/1.1");
}

#[test]
fn h2c_rules_bodies_and_failures_work_as_over_http_1_1() {
    require_nginx();
    let nginx = Nginx::start(
        "http2",
        "    location /proto { return 200 \"$server_protocol $http_host\"; }\n    location /throttle { default_type application/json; return 400 '{\"error_code\":\"EndPoint.0022\"}'; }\n    location /post { default_type text/plain; return 200 \"$request_method $content_length\"; }",
        &[],
    );
    let profile = "vendor: h2\nrules:\n  - name: throttled\n    when:\n      status: 400\n      json: { /error_code: EndPoint.0022 }\n    then:\n      status: 429\n";
    let gw = Gateway::start(
        &Config::new()
            .upstream(
                "up",
                Up::addr(&nginx.addr()).set("http2", "true").host_header("api.example"),
            )
            .route(Route::new("r", "up").profile("vendor.yaml"))
            .build(),
        &[("vendor.yaml", profile)],
    );
    let r = request(gw.port, "GET", "/proto", &[], b"");
    assert_eq!((r.status, r.text().as_str()), (200, "HTTP/2.0 api.example"));
    // A rule that needs the body: buffered over h2 as over HTTP/1.1.
    let r = request(gw.port, "GET", "/throttle", &[], b"");
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("x-upstream-status"), Some("400"));
    let r = request(gw.port, "POST", "/post", &[("Content-Type", "text/plain")], b"hello");
    assert_eq!((r.status, r.text().as_str()), (200, "POST 5"));
    drop(nginx);
    gateway_problem(&request(gw.port, "GET", "/proto", &[], b""), 502, "upstream-refused");
}

/// nginx with `ssl_verify_client on` completes the handshake without a client certificate and
/// answers its own 400; the profile in docs/configuration.md maps that to the gateway's side.
#[test]
fn nginx_answering_400_for_a_missing_client_certificate_is_mapped_by_the_documented_profile() {
    require_nginx();
    let (ca, clients) = (Ca::new("server ca"), Ca::new("client ca"));
    let leaf = ca.leaf(&["vendor.internal"]);
    let nginx = Nginx::start(
        "ssl",
        "    ssl_certificate $DIR/s.crt;\n    ssl_certificate_key $DIR/s.key;\n    ssl_client_certificate $DIR/clients.pem;\n    ssl_verify_client on;\n    location / { return 200 'ok'; }",
        &[("s.crt", &leaf.cert_pem), ("s.key", &leaf.key_pem), ("clients.pem", &clients.pem)],
    );
    let profile = doc_block("client-certificate-profile");
    let gw = Gateway::start(
        &Config::new()
            .upstream(
                "up",
                Up::addr(&nginx.addr()).set("tls", "{ ca: ca.pem, sni: vendor.internal }"),
            )
            .route(Route::new("r", "up").profile("nginx-mtls.yaml"))
            .build(),
        &[("ca.pem", &ca.pem), ("nginx-mtls.yaml", &profile)],
    );
    let r = get(&gw);
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("x-upstream-status"), Some("400"));
    assert_eq!(r.json()["type"], "urn:statusgate:problem:client-certificate-required");
    // With the certificate configured the same upstream serves.
    let client = clients.leaf(&["statusgate"]);
    let gw = Gateway::start(
        &Config::new()
            .upstream(
                "up",
                Up::addr(&nginx.addr()).set("tls", "{ ca: ca.pem, sni: vendor.internal, cert: c.crt, key: c.key }"),
            )
            .route(Route::new("r", "up").profile("nginx-mtls.yaml"))
            .build(),
        &[
            ("ca.pem", &ca.pem),
            ("c.crt", &client.cert_pem),
            ("c.key", &client.key_pem),
            ("nginx-mtls.yaml", &profile),
        ],
    );
    assert_eq!((get(&gw).status, get(&gw).text().as_str()), (200, "ok"));
}

#[test]
fn the_documented_upstream_tls_and_http2_examples_pass_check() {
    let ca = Ca::new("ca");
    let client = ca.leaf(&["statusgate"]);
    let profile = doc_block("client-certificate-profile");
    for name in ["upstream-tls-example", "upstream-http2-example"] {
        let (_, ps) = problems(
            &doc_block(name),
            &[
                ("company-ca.pem", &ca.pem),
                ("partner-ca.pem", &ca.pem),
                ("client.crt", &client.cert_pem),
                ("client.key", &client.key_pem),
                ("nginx-mtls.yaml", &profile),
            ],
        );
        assert!(ps.is_empty(), "{name}: {ps:?}");
    }
}
