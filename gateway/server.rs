//! Assembles the pingora server from a snapshot: the gateway listeners (plain and TLS), the
//! admin listener, readiness, and the lifecycle settings (threads, grace period).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use pingora::apps::http_app::HttpServer;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{ListenerConfig, ALPN};
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

/// Per client connection pingora reads through an L4 read buffer (64 KiB by default), allocated
/// when the connection is accepted and held for its whole life, idle or not. On plain listeners
/// statusgate has none: pingora reads request headers into its own header buffer, bodies into its
/// own 64 KiB body buffer (tokio's `BufReader` passes those reads through anyway), HTTP/2 frames
/// into the h2 codec's buffer, and an idle keep-alive connection's next request is first read
/// into a per-thread buffer (`proxy::keep_alive`): the same number of reads for a request, and
/// 16 KiB less per idle connection (BENCHMARKS.md, "Memory per idle connection").
const PLAIN_CLIENT_BUFFERS: L4BufferSettings = L4BufferSettings {
    read: Some(0),
    write: None,
};

/// TLS listeners keep a 16 KiB read buffer: rustls reads the socket in small steps (4 KiB), and a
/// TLS record is up to 16 KiB, so without it a record would take several reads.
const TLS_CLIENT_BUFFERS: L4BufferSettings = L4BufferSettings {
    read: Some(16 * 1024),
    write: None,
};

use crate::admin::{AdminApp, Readiness};
use crate::proxy::admission::Admission;
use crate::proxy::GatewayApp;
use crate::reload::SnapshotHandle;
use crate::snapshot::TlsListener;
use crate::telemetry::traces::Traces;

pub struct Built {
    pub server: Server,
    pub ready: Arc<AtomicBool>,
    /// The span exporter (`tracing:`): `shutdown` it once the server stopped, to export the
    /// last spans.
    pub traces: Option<Arc<Traces>>,
}

/// Builds (does not run) the server. `upgrade` takes the listeners over from a running
/// instance (pingora's graceful upgrade).
pub fn build(handle: Arc<SnapshotHandle>, upgrade: bool) -> pingora::Result<Built> {
    let snap = handle.current();
    let conf = ServerConf {
        threads: snap.boot.threads,
        work_stealing: snap.boot.work_stealing,
        grace_period_seconds: Some(snap.boot.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(2),
        upgrade_sock: snap.boot.upgrade_sock.to_string_lossy().into_owned(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();

    let handle_for_hup = handle.clone();
    // Tracing: the exporter and its batch thread, made once (its settings are boot-only).
    let traces = match &snap.boot.tracing {
        None => None,
        Some(export) => {
            let metrics = crate::telemetry::metrics::global();
            let traces = Traces::start(export, snap.trace_sample_ratio, &metrics)
                .map_err(|e| pingora::Error::explain(pingora::ErrorType::InternalError, e.to_string()))?;
            Some(Arc::new(traces))
        }
    };
    let app = GatewayApp::new(handle.clone(), crate::telemetry::metrics::global(), traces.clone());
    let mut gateway = Service::new("statusgate".to_owned(), Admission::new(app));
    for addr in &snap.boot.listen {
        gateway.add_listener(ListenerConfig::tcp(addr.as_str()).l4_buffer(PLAIN_CLIENT_BUFFERS));
    }
    for t in &snap.boot.tls_listen {
        gateway.add_listener(
            ListenerConfig::tcp(t.addr.as_str())
                .tls(tls_settings(&handle, t)?)
                .l4_buffer(TLS_CLIENT_BUFFERS),
        );
    }
    server.add_service(gateway);

    let ready = Arc::new(AtomicBool::new(false));
    let mut admin = Service::new(
        "statusgate-admin".to_owned(),
        HttpServer::new_app(AdminApp {
            snapshots: handle,
            ready: ready.clone(),
        }),
    );
    admin.add_tcp(&snap.boot.admin);
    server.add_service(admin);
    server.add_service(background_service("readiness", Readiness(ready.clone())));
    server.add_service(background_service(
        "sighup-reload",
        crate::reload::SighupReload(handle_for_hup.clone()),
    ));
    server.add_service(background_service(
        "upstream-upkeep-stop",
        crate::reload::UpkeepStop(handle_for_hup.clone()),
    ));
    if snap.boot.watch_config {
        let watcher = crate::watch::ConfigWatcher {
            handle: handle_for_hup,
            debounce: std::time::Duration::from_millis(100),
        };
        server.add_service(background_service("config-watcher", watcher));
    }
    Ok(Built { server, ready, traces })
}

/// A TLS listener's settings: its certificates come from its resolver (reloadable, chosen by
/// SNI), never from files. `TlsSettings::build` (pingora-core 0.9.1,
/// `listeners/tls/rustls/mod.rs`) ignores the certificate paths when a resolver is set and
/// panics on paths it cannot load, so it is given none. ALPN: h2 then http/1.1 with `http2`,
/// else http/1.1 only (a client that offers only h2 is refused, as nginx does).
fn tls_settings(handle: &SnapshotHandle, t: &TlsListener) -> pingora::Result<TlsSettings> {
    let resolver = handle.listener_certs().get(&t.addr).ok_or_else(|| {
        pingora::Error::explain(
            pingora::ErrorType::InternalError,
            format!("tls_listen {}: no certificates were loaded", t.addr),
        )
    })?;
    let mut tls = TlsSettings::intermediate("", "")?;
    tls.set_cert_resolver(resolver);
    tls.set_alpn(if t.http2 { ALPN::H2H1 } else { ALPN::H1 });
    Ok(tls)
}

/// Raises the soft limit on open files to the hard limit (every client and upstream connection
/// is a descriptor; the common soft default of 1,024 runs out at a few hundred concurrent
/// proxied requests) and logs the result.
pub fn raise_fd_limit() {
    let before = rlimit::Resource::NOFILE.get().map(|(soft, _)| soft).unwrap_or(0);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => tracing::info!(before, now, "open-file limit (soft) raised to the hard limit"),
        Err(e) => tracing::warn!(before, error = %e, "cannot raise the open-file limit"),
    }
}
