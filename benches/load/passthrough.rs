//! The baseline for the load benchmark (`benches/load/run`): a bare pingora passthrough proxy,
//! the smallest `ProxyHttp` (like pingora-proxy's examples/gateway.rs, minus the filters),
//! on the same pingora version and with the same server settings as statusgate
//! (`gateway/server.rs`: worker threads, grace period, graceful shutdown timeout).
//!
//! It forwards every request unchanged to one plain-HTTP upstream and streams the response back,
//! whatever its status. Upstream connections are pooled (pingora's keepalive pool, 128 per
//! worker thread, idle timeout 60 s as statusgate's default `idle_timeout`). No logging, no
//! metrics: the cost of pingora itself, which is what statusgate's overhead is measured against.
//!
//! ```sh
//! cargo build --release --example passthrough
//! target/release/examples/passthrough LISTEN UPSTREAM [THREADS] [GRACE_SECONDS]
//! target/release/examples/passthrough 127.0.0.1:18201 127.0.0.1:18200 2 5
//! ```
//!
//! THREADS defaults to the number of cores (statusgate's `server.threads` default), GRACE_SECONDS
//! to 5 (statusgate's `server.grace_period` default). SIGINT exits at once, SIGTERM drains.
//!
//! TLS to the upstream (the benchmark's TLS rows): `UPSTREAM_TLS_SNI=name` makes the upstream
//! connections TLS with that SNI, verified against the CA certificates of the PEM file
//! `UPSTREAM_TLS_CA` (pingora's per-peer `ca`, as statusgate's `tls: {ca, sni}` sets it).
//!
//! HTTP/2 from clients (the benchmark's h2 rows): `H2C=1` lets the listener take HTTP/2 with
//! prior knowledge beside HTTP/1.1 (pingora's `HttpServerOptions::h2c`, as statusgate's
//! `http2.h2c: true`), with pingora's default HTTP/2 limits (100 streams, 64 KiB header list).

/// `--features mimalloc`: the same allocator experiment as statusgate's.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
/// `--features jemalloc`: the same experiment with jemalloc.
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::net::SocketAddr;
use std::process::exit;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::prelude::HttpPeer;
use pingora::protocols::tls::CaType;
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::utils::tls::{parse_x509, WrappedX509};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// statusgate's default `idle_timeout` for pooled upstream connections.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

struct Passthrough {
    upstream: SocketAddr,
    /// SNI and trusted CAs when the upstream speaks TLS.
    tls: Option<(String, Arc<CaType>)>,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Self::CTX) -> pingora::Result<Box<HttpPeer>> {
        let mut peer = match &self.tls {
            None => HttpPeer::new(self.upstream, false, String::new()),
            Some((sni, ca)) => {
                let mut p = HttpPeer::new(self.upstream, true, sni.clone());
                p.options.ca = Some(ca.clone());
                p
            }
        };
        peer.options.idle_timeout = Some(IDLE_TIMEOUT);
        Ok(Box::new(peer))
    }
}

fn usage(problem: &str) -> ! {
    eprintln!("passthrough: {problem}");
    eprintln!("usage: passthrough LISTEN UPSTREAM [THREADS] [GRACE_SECONDS]");
    eprintln!("  e.g. passthrough 127.0.0.1:18201 127.0.0.1:18200 2 5");
    exit(2)
}

/// The CA certificates of a PEM file, each checked before pingora's wrapper parses it.
fn load_ca(path: &str) -> Arc<CaType> {
    let text = std::fs::read(path).unwrap_or_else(|e| usage(&format!("UPSTREAM_TLS_CA {path:?}: {e}")));
    let mut certs = Vec::new();
    for c in CertificateDer::pem_slice_iter(&text) {
        match c {
            Ok(c) if x509_parser::parse_x509_certificate(&c).is_ok() => certs.push(c.to_vec()),
            _ => usage(&format!("UPSTREAM_TLS_CA {path:?}: not a PEM certificate file")),
        }
    }
    if certs.is_empty() {
        usage(&format!("UPSTREAM_TLS_CA {path:?}: no certificate"));
    }
    certs.into_iter().map(|d| WrappedX509::new(d, parse_x509)).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args.len() > 4 {
        usage("expected 2 to 4 arguments");
    }
    let listen = args[0].clone();
    if listen.parse::<SocketAddr>().is_err() {
        usage(&format!("LISTEN {listen:?} is not an address:port"));
    }
    let upstream: SocketAddr = args[1]
        .parse()
        .unwrap_or_else(|_| usage(&format!("UPSTREAM {:?} is not an address:port", args[1])));
    let threads = match args.get(2) {
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| usage(&format!("THREADS {t:?} is not a positive number"))),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let grace = match args.get(3) {
        Some(g) => g
            .parse::<u64>()
            .unwrap_or_else(|_| usage(&format!("GRACE_SECONDS {g:?} is not a number"))),
        None => 5,
    };

    // The same lifecycle settings as statusgate's gateway/server.rs; WORK_STEALING=false mirrors
    // statusgate's `server.work_stealing: false`.
    let work_stealing = std::env::var("WORK_STEALING").map_or(true, |v| v != "false");
    let conf = ServerConf {
        threads,
        work_stealing,
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(2),
        upgrade_sock: format!("/tmp/statusgate_passthrough_{}.sock", std::process::id()),
        pid_file: format!("/tmp/statusgate_passthrough_{}.pid", std::process::id()),
        upstream_keepalive_pool_size: 128,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(Opt::default()), conf);
    server.bootstrap();
    let tls = std::env::var("UPSTREAM_TLS_SNI").ok().map(|sni| {
        let ca = std::env::var("UPSTREAM_TLS_CA").unwrap_or_else(|_| usage("UPSTREAM_TLS_SNI needs UPSTREAM_TLS_CA"));
        (sni, load_ca(&ca))
    });
    let mode = if tls.is_some() { "TLS" } else { "plain" };
    let mut proxy = http_proxy_service(&server.configuration, Passthrough { upstream, tls });
    let h2c = std::env::var("H2C").is_ok_and(|v| v == "1");
    if h2c {
        let mut options = pingora::apps::HttpServerOptions::default();
        options.h2c = true;
        if let Some(app) = proxy.app_logic_mut() {
            app.server_options = Some(options);
        }
    }
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    eprintln!("passthrough: {listen} -> {upstream} ({mode}), {threads} threads, grace {grace}s, h2c {h2c}");
    server.run_forever()
}
