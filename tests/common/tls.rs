//! TLS parts for upstream tests, all on loopback: a CA and certificates made with rcgen; a
//! rustls HTTP/1.1 server thread (optionally requiring a client certificate, optionally TLS 1.2
//! only) that answers every request with what it saw (SNI, client certificate, version) as
//! JSON; and Debian's nginx in the foreground on a generated configuration (HTTP/2).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
    pub der: Vec<u8>,
}

/// A certificate signed by a `Ca`, with its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub key_der: Vec<u8>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A server or client certificate for `names` (DNS names or IP addresses).
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |_| {})
    }

    /// A certificate for `names` whose parameters `edit` changes first (serial number,
    /// validity, ...).
    pub fn leaf_with(&self, names: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let mut p = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("client"));
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        edit(&mut p);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }
}

/// How the rustls server is set up.
#[derive(Default)]
pub struct ServerOpts<'a> {
    /// Require a client certificate signed by this CA.
    pub client_ca: Option<&'a Ca>,
    /// Speak TLS 1.2 only.
    pub tls12_only: bool,
}

fn server_config(leaf: &Leaf, opts: &ServerOpts) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if opts.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS12, &rustls::version::TLS13]
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap();
    let builder = match opts.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der.clone().into()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf.key_der.clone()).unwrap();
    builder.with_single_cert(vec![leaf.der.clone().into()], key).unwrap()
}

/// A rustls HTTP/1.1 server on loopback. Each response body is
/// `{"sni": .., "client_cert": .., "version": ..}`.
pub struct TlsServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TlsServer {
    pub fn start(leaf: &Leaf, opts: ServerOpts) -> TlsServer {
        let config = Arc::new(server_config(leaf, &opts));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            for tcp in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(tcp) = tcp else { continue };
                let config = config.clone();
                std::thread::spawn(move || serve(tcp, config));
            }
        });
        TlsServer {
            port,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Up to 100 requests on one connection, each answered with what the handshake showed.
fn serve(tcp: TcpStream, config: Arc<rustls::ServerConfig>) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut r = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    for _ in 0..100 {
        let mut head_len = 0;
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(n) => head_len += n,
            }
            if head_len > 64 * 1024 {
                return;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    content_length = v.trim().parse().unwrap_or(0);
                }
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; content_length.min(1 << 20)];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let conn = &r.get_ref().conn;
        let seen = serde_json::json!({
            "sni": conn.server_name(),
            "client_cert": conn.peer_certificates().is_some(),
            "version": conn.protocol_version().map(|v| format!("{v:?}")),
        })
        .to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{seen}",
            seen.len()
        );
        if r.get_mut().write_all(resp.as_bytes()).is_err() {
            return;
        }
        let _ = r.get_mut().flush();
    }
}

/// Debian's nginx in the foreground (no master process, no user switch) in its own temp dir.
pub struct Nginx {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

pub const NGINX_BIN: &str = "/usr/sbin/nginx";

/// Fails the test, saying how to fix it, when the machine has no nginx.
pub fn require_nginx() {
    assert!(
        Path::new(NGINX_BIN).exists(),
        "{NGINX_BIN} is missing: run scripts/setup nginx (scripts/test does)"
    );
}

impl Nginx {
    /// One `server` listening on a free port with `listen_params` (e.g. `ssl http2`), with
    /// `body` as its content; `files` are written to its directory, which `body` reaches as
    /// `$DIR`.
    pub fn start(listen_params: &str, body: &str, files: &[(&str, &str)]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let port = super::gateway::free_port();
        let d = dir.path().display().to_string();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 128; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tb;\n  proxy_temp_path {d}/tp;\n  fastcgi_temp_path {d}/tf;\n  uwsgi_temp_path {d}/tu;\n  scgi_temp_path {d}/ts;\n\
             server {{\n    listen 127.0.0.1:{port} {listen_params};\n{}\n  }}\n}}\n",
            body.replace("$DIR", &d)
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new(NGINX_BIN)
            .args([
                "-p",
                &d,
                "-c",
                &format!("{d}/nginx.conf"),
                "-e",
                &format!("{d}/error.log"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nginx did not listen on {port}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { port, dir, child }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
