//! TLS listeners' certificates, over real loopback handshakes: a CA and leaf certificates made
//! with rcgen in the test, the gateway in-process, and a rustls client that trusts the test CA
//! and reads the served certificate's serial number (plus `openssl s_client` as a second TLS
//! stack). Rotation by `POST /-/reload` and by the file watcher, SNI selection with a default,
//! `min_version: "1.3"`, ALPN (`http2`), a broken rotation that keeps the old certificate, what
//! a reload says needs a restart, the load problems of `tls_listen:` and the documented example.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::config::{Config, Route, TlsListen, Upstream as Up};
use common::docs::doc_block;
use common::gateway::free_port;
use common::tls::{Ca, Leaf};
use common::{request, Gateway};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A leaf for `names` with the serial number `serial`.
fn leaf(ca: &Ca, names: &[&str], serial: u64) -> Leaf {
    ca.leaf_with(names, |p| p.serial_number = Some(serial.into()))
}

/// What a handshake showed the client.
#[derive(Debug)]
struct Seen {
    serial: u64,
    alpn: Option<String>,
    version: String,
}

/// How the test client connects.
#[derive(Clone)]
struct Client<'a> {
    ca: &'a Ca,
    /// SNI; `None`: none is sent (the certificate is still checked against "localhost").
    sni: Option<&'a str>,
    tls12_only: bool,
    /// With `tls12_only`: offer no TLS 1.3 cipher suite either (like OpenSSL's `-tls1_2`).
    no_tls13_suites: bool,
    alpn: &'a [&'a str],
}

impl<'a> Client<'a> {
    fn new(ca: &'a Ca) -> Client<'a> {
        Client {
            ca,
            sni: Some("localhost"),
            tls12_only: false,
            no_tls13_suites: false,
            alpn: &[],
        }
    }

    fn sni(self, sni: Option<&'a str>) -> Client<'a> {
        Client { sni, ..self }
    }

    /// The whole handshake with the listener on `port`.
    fn handshake(&self, port: u16) -> Result<Seen, String> {
        let mut provider = rustls::crypto::ring::default_provider();
        if self.no_tls13_suites {
            provider.cipher_suites.retain(|s| s.tls13().is_none());
        }
        let provider = Arc::new(provider);
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS12, &rustls::version::TLS13]
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der.clone().into()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyName(verifier)))
            .with_no_client_auth();
        config.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.enable_sni = self.sni.is_some();
        let name = ServerName::try_from(self.sni.unwrap_or("localhost").to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
        }
        let der = conn.peer_certificates().unwrap()[0].clone();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        Ok(Seen {
            serial: u64::try_from(cert.serial.clone()).unwrap(),
            alpn: conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
            version: format!("{:?}", conn.protocol_version().unwrap()),
        })
    }

    fn serial(&self, port: u16) -> u64 {
        self.handshake(port)
            .unwrap_or_else(|e| panic!("handshake failed: {e}"))
            .serial
    }
}

/// Verifies the chain against the test CA but not the name: the tests look at which
/// certificate was served, also when it is the default for a name it does not carry.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A gateway with the TLS listener `listener` (its address is replaced by a free port, which
/// is returned) and `files`; `watch`: the file watcher on.
fn gateway(listener: TlsListen, files: &[(&str, &str)], watch: bool) -> (Gateway, u16, TlsListen) {
    let port = free_port();
    let listener = TlsListen {
        addr: format!("127.0.0.1:{port}"),
        ..listener
    };
    let gw = Gateway::start(&config(&listener, watch), files);
    (gw, port, listener)
}

fn config(listener: &TlsListen, watch: bool) -> String {
    Config::new()
        .tls_listener(listener.clone())
        .threads(1)
        .grace_period("0s")
        .watch_config(watch)
        .upstream("up", Up::addr("127.0.0.1:1"))
        .route(Route::new("r", "up"))
        .build()
}

fn pair(name: &str, l: &Leaf) -> [(String, String); 2] {
    [
        (format!("{name}.crt"), l.cert_pem.clone()),
        (format!("{name}.key"), l.key_pem.clone()),
    ]
}

fn files(pairs: &[[(String, String); 2]]) -> Vec<(&str, &str)> {
    pairs.iter().flatten().map(|(n, t)| (n.as_str(), t.as_str())).collect()
}

/// Replaces a file the way editors and cert tools save: a temp file renamed over it.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn reload(gw: &Gateway) -> serde_json::Value {
    request(gw.admin, "POST", "/-/reload", &[], b"").json()
}

#[test]
fn a_certificate_rotated_on_disk_is_served_after_post_reload_without_a_restart() {
    let ca = Ca::new("test ca");
    let (old, new) = (leaf(&ca, &["localhost"], 1001), leaf(&ca, &["localhost"], 1002));
    let (gw, port, _) = gateway(
        TlsListen::new("", "gw.crt", "gw.key"),
        &files(&[pair("gw", &old)]),
        false,
    );
    let client = Client::new(&ca);
    assert_eq!(client.serial(port), 1001);
    // An established connection is not touched by the rotation.
    let before = client.handshake(port).unwrap();
    save(&gw.path("gw.key"), &new.key_pem);
    save(&gw.path("gw.crt"), &new.cert_pem);
    let r = reload(&gw);
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(r["restart_needed"], serde_json::Value::Null, "{r}");
    assert_eq!(client.serial(port), 1002);
    assert_eq!(before.serial, 1001);
    // `GET /-/config` says what is served.
    let config = gw.admin_get("/-/config").json();
    let served = &config["tls_listeners"][0]["certificates"][0];
    assert_eq!(served["file"], "gw.crt", "{config}");
    assert_eq!(served["default"], true, "{config}");
    assert_eq!(served["names"], serde_json::json!(["localhost"]), "{config}");
    assert_eq!(
        u64::from_str_radix(served["serial"].as_str().unwrap(), 16),
        Ok(1002),
        "{config}"
    );
    // The gateway still answers over the new certificate.
    let seen = client.handshake(port).unwrap();
    assert_eq!(seen.version, "TLSv1_3");
}

#[test]
fn a_certificate_rotated_on_disk_is_served_after_the_file_watcher_reloads() {
    let ca = Ca::new("test ca");
    let (old, new) = (leaf(&ca, &["localhost"], 2001), leaf(&ca, &["localhost"], 2002));
    let (gw, port, _) = gateway(
        TlsListen::new("", "gw.crt", "gw.key"),
        &files(&[pair("gw", &old)]),
        true,
    );
    let client = Client::new(&ca);
    assert_eq!(client.serial(port), 2001);
    save(&gw.path("gw.key"), &new.key_pem);
    save(&gw.path("gw.crt"), &new.cert_pem);
    // No timing assertion: wait (bounded) for the watcher's reload to be served.
    let t = Instant::now();
    while client.serial(port) != 2002 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the rotated certificate was not served; last reload error: {:?}",
            gw.handle.last_error()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sni_picks_the_certificate_naming_the_server_and_anything_else_gets_the_default() {
    let ca = Ca::new("test ca");
    let default = leaf(&ca, &["localhost"], 3000);
    let api = leaf(&ca, &["api.example.test"], 3001);
    let wild = leaf(&ca, &["*.apps.example.test", "apps.example.test"], 3002);
    let exact_in_wild = leaf(&ca, &["special.apps.example.test"], 3003);
    let (_gw, port, _) = gateway(
        TlsListen::new("", "default.crt", "default.key")
            .sni_cert("api.crt", "api.key")
            .sni_cert("wild.crt", "wild.key")
            .sni_cert("special.crt", "special.key"),
        &files(&[
            pair("default", &default),
            pair("api", &api),
            pair("wild", &wild),
            pair("special", &exact_in_wild),
        ]),
        false,
    );
    let client = Client::new(&ca);
    for (sni, want) in [
        (Some("api.example.test"), 3001),
        (Some("API.Example.TEST"), 3001),
        (Some("one.apps.example.test"), 3002),
        (Some("apps.example.test"), 3002),
        // An exact name wins over the wildcard.
        (Some("special.apps.example.test"), 3003),
        // A wildcard covers exactly one label.
        (Some("a.b.apps.example.test"), 3000),
        (Some("unknown.example.test"), 3000),
        (Some("localhost"), 3000),
        (None, 3000),
    ] {
        assert_eq!(client.clone().sni(sni).serial(port), want, "SNI {sni:?}");
    }
}

#[test]
fn min_version_1_3_refuses_tls_1_2_clients_and_the_default_accepts_them() {
    let ca = Ca::new("test ca");
    let l = leaf(&ca, &["localhost"], 4001);
    let (_gw13, port13, _) = gateway(
        TlsListen::new("", "gw.crt", "gw.key").min_version("1.3"),
        &files(&[pair("gw", &l)]),
        false,
    );
    let (_gw12, port12, _) = gateway(TlsListen::new("", "gw.crt", "gw.key"), &files(&[pair("gw", &l)]), false);
    let tls13 = Client::new(&ca);
    // A TLS 1.2-only rustls client still lists TLS 1.3 suites; one like OpenSSL's does not.
    let tls12 = Client {
        tls12_only: true,
        ..Client::new(&ca)
    };
    let tls12_suites = Client {
        no_tls13_suites: true,
        ..tls12.clone()
    };
    assert_eq!(tls13.handshake(port13).unwrap().version, "TLSv1_3");
    for client in [&tls12, &tls12_suites] {
        let r = client.handshake(port13);
        assert!(r.is_err(), "a TLS 1.2 client got in: {r:?}");
        assert_eq!(client.handshake(port12).unwrap().version, "TLSv1_2");
    }
    // A second TLS stack: OpenSSL's client.
    assert!(
        Path::new(OPENSSL).exists(),
        "{OPENSSL} is missing: run scripts/setup openssl (scripts/test does)"
    );
    let s_client = |port: u16, version: &str| {
        Command::new(OPENSSL)
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), version])
            .args(["-servername", "localhost"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(
        !s_client(port13, "-tls1_2"),
        "openssl -tls1_2 got in at min_version 1.3"
    );
    assert!(s_client(port13, "-tls1_3"), "openssl -tls1_3 was refused");
    assert!(
        s_client(port12, "-tls1_2"),
        "openssl -tls1_2 was refused at min_version 1.2"
    );
}

const OPENSSL: &str = "/usr/bin/openssl";

#[test]
fn a_rotation_with_a_broken_key_is_rejected_with_its_position_and_the_old_certificate_serves() {
    let ca = Ca::new("test ca");
    let (old, new, other) = (
        leaf(&ca, &["localhost"], 5001),
        leaf(&ca, &["localhost"], 5002),
        leaf(&ca, &["localhost"], 5003),
    );
    let (gw, port, _) = gateway(
        TlsListen::new("", "gw.crt", "gw.key"),
        &files(&[pair("gw", &old)]),
        false,
    );
    let client = Client::new(&ca);
    assert_eq!(client.serial(port), 5001);
    let main = gw.path("statusgate.yaml").display().to_string();
    // Lines: listen, tls_listen, addr, cert, key.
    save(&gw.path("gw.crt"), &new.cert_pem);
    save(
        &gw.path("gw.key"),
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    );
    let r = reload(&gw);
    assert_eq!(r["outcome"], "rejected", "{r}");
    let problems = r["problems"].to_string();
    assert!(
        problems.contains(&format!("{main}:5:10: tls_listen.key gw.key: ")),
        "{r}"
    );
    assert_eq!(client.serial(port), 5001);
    // A key of another certificate: the same, as a mismatch.
    save(&gw.path("gw.key"), &other.key_pem);
    let r = reload(&gw);
    assert_eq!(r["outcome"], "rejected", "{r}");
    assert!(
        r["problems"][0].as_str().unwrap().starts_with(&format!(
            "{main}:5:10: tls_listen.key gw.key does not fit its certificate gw.crt"
        )),
        "{r}"
    );
    assert_eq!(client.serial(port), 5001);
    // The fitting key: applied.
    save(&gw.path("gw.key"), &new.key_pem);
    assert_eq!(reload(&gw)["outcome"], "applied");
    assert_eq!(client.serial(port), 5002);
}

#[test]
fn alpn_offers_h2_by_default_and_http1_only_with_http2_false() {
    let ca = Ca::new("test ca");
    let l = leaf(&ca, &["localhost"], 6001);
    let (_gw, port, _) = gateway(TlsListen::new("", "gw.crt", "gw.key"), &files(&[pair("gw", &l)]), false);
    let (_gw1, port1, _) = gateway(
        TlsListen::new("", "gw.crt", "gw.key").http2(false),
        &files(&[pair("gw", &l)]),
        false,
    );
    let offers = Client {
        alpn: &["h2", "http/1.1"],
        ..Client::new(&ca)
    };
    assert_eq!(offers.handshake(port).unwrap().alpn.as_deref(), Some("h2"));
    assert_eq!(offers.handshake(port1).unwrap().alpn.as_deref(), Some("http/1.1"));
    // A client that offers no ALPN still gets HTTP/1.1 from both.
    assert_eq!(Client::new(&ca).handshake(port).unwrap().alpn, None);
}

#[test]
fn a_reload_needs_no_restart_for_certificates_and_names_address_and_alpn_changes() {
    let ca = Ca::new("test ca");
    let (old, new) = (leaf(&ca, &["localhost"], 7001), leaf(&ca, &["localhost"], 7002));
    let (gw, port, listener) = gateway(
        TlsListen::new("", "gw.crt", "gw.key"),
        &files(&[pair("gw", &old)]),
        false,
    );
    // Certificates, an SNI entry and the minimum version: reloadable.
    save(&gw.path("gw.key"), &new.key_pem);
    save(&gw.path("gw.crt"), &new.cert_pem);
    let changed = TlsListen {
        addr: listener.addr.clone(),
        ..TlsListen::new("", "gw.crt", "gw.key")
            .sni_cert("gw.crt", "gw.key")
            .min_version("1.3")
    };
    gw.write_config(&config(&changed, false));
    let r = reload(&gw);
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(r["restart_needed"], serde_json::Value::Null, "{r}");
    assert_eq!(Client::new(&ca).serial(port), 7002);
    // HTTP/2 by ALPN is part of the listener.
    gw.write_config(&config(&changed.clone().http2(false), false));
    let r = reload(&gw);
    assert_eq!(r["outcome"], "applied", "{r}");
    let note = r["restart_needed"].as_str().unwrap_or_default().to_owned();
    assert!(
        note.contains(&format!("tls_listen `{}` http2 (ALPN)", listener.addr)),
        "{r}"
    );
    // So is its address; the running listener keeps serving.
    let moved = TlsListen {
        addr: format!("127.0.0.1:{}", free_port()),
        ..changed
    };
    gw.write_config(&config(&moved, false));
    let r = reload(&gw);
    assert_eq!(r["outcome"], "applied", "{r}");
    let note = r["restart_needed"].as_str().unwrap_or_default().to_owned();
    assert!(note.contains("tls_listen addresses"), "{r}");
    assert_eq!(Client::new(&ca).serial(port), 7002);
}

/// The problems and warnings of loading `config` with `files` beside it, as printed.
fn load(config: &str, files: &[(&str, &str)]) -> (String, Result<Vec<String>, Vec<String>>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let path = dir.path().join("statusgate.yaml");
    std::fs::write(&path, config).unwrap();
    let out = match statusgate::snapshot::load(&path) {
        Ok(s) => Ok(s.warnings.iter().map(ToString::to_string).collect()),
        Err(ps) => Err(ps.iter().map(ToString::to_string).collect()),
    };
    (path.display().to_string(), out)
}

#[test]
fn every_listener_certificate_problem_is_reported_at_once_on_the_key_naming_the_file() {
    let ca = Ca::new("test ca");
    let good = leaf(&ca, &["localhost"], 8001);
    let other = leaf(&ca, &["localhost"], 8002);
    let a = leaf(&ca, &["a.example.test"], 8003);
    let a_again = leaf(&ca, &["A.example.test"], 8004);
    let no_dns = leaf(&ca, &["127.0.0.1"], 8005);
    let text = r#"listen: 127.0.0.1:1
admin: 127.0.0.1:2
tls_listen:
  - addr: 127.0.0.1:3
    cert: missing.crt
    key: good.key
  - addr: 127.0.0.1:4
    cert: good.crt
    key: other.key
    min_version: "1.1"
  - addr: 127.0.0.1:5
    cert: good.crt
    key: good.key
    certs:
      - { cert: a.crt, key: a.key }
      - { cert: a2.crt, key: a2.key }
      - { cert: nodns.crt, key: nodns.key }
      - { cert: good.crt, key: garbage.key }
upstreams: {}
routes: []
"#;
    let pairs = [
        pair("good", &good),
        pair("other", &other),
        pair("a", &a),
        pair("a2", &a_again),
        pair("nodns", &no_dns),
    ];
    let mut written = files(&pairs);
    written.push(("garbage.key", "just text\n"));
    let (main, out) = load(text, &written);
    let problems = out.unwrap_err();
    let want = [
        format!("{main}:5:11: tls_listen.cert missing.crt: cannot read file: "),
        format!("{main}:9:10: tls_listen.key other.key does not fit its certificate good.crt: "),
        format!("{main}:10:18: tls_listen.min_version `1.1`: use \"1.2\" or \"1.3\""),
        format!("{main}:16:17: tls_listen.certs[1].cert a2.crt: `a.example.test` is already claimed by tls_listen.certs[0].cert a.crt ({main}:15:17) on this listener"),
        format!("{main}:17:17: tls_listen.certs[2].cert nodns.crt: the certificate has no DNS name in its subjectAltName"),
        format!("{main}:18:32: tls_listen.certs[3].key garbage.key: no usable PEM private key"),
    ];
    for w in &want {
        assert!(
            problems.iter().any(|p| p.starts_with(w)),
            "missing {w}\nin {problems:#?}"
        );
    }
    assert_eq!(problems.len(), want.len(), "{problems:#?}");
}

#[test]
fn an_expired_certificate_is_a_warning_and_still_served() {
    let ca = Ca::new("test ca");
    let expired = ca.leaf_with(&["localhost"], |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let text = "listen: 127.0.0.1:1\nadmin: 127.0.0.1:2\ntls_listen:\n  - { addr: 127.0.0.1:3, cert: gw.crt, key: gw.key }\nupstreams: {}\nroutes: []\n";
    let (main, out) = load(text, &files(&[pair("gw", &expired)]));
    let warnings = out.unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(&format!(
            "{main}:4:32: warning: tls_listen.cert gw.crt: the certificate expired on "
        )),
        "{warnings:?}"
    );
}

#[test]
fn the_documented_tls_listener_example_passes_check() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    for (name, names) in [
        ("gw", &["gateway.example.com"][..]),
        ("api", &["api.example.com", "api.example.net"][..]),
        ("apps", &["*.apps.example.com"][..]),
    ] {
        let l = ca.leaf(names);
        std::fs::write(dir.path().join(format!("certs/{name}.crt")), &l.cert_pem).unwrap();
        std::fs::write(dir.path().join(format!("certs/{name}.key")), &l.key_pem).unwrap();
    }
    let path = dir.path().join("statusgate.yaml");
    std::fs::write(&path, doc_block("tls-listener-example")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_statusgate"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
