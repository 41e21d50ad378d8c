//! The background tasks that keep each balancer current: one resolution loop per configured
//! host name (re-resolving when the clamped TTL runs out, backing off while it fails) and one
//! active health-check loop per group with `health_check:` (probes by pingora-load-balancing's
//! `HttpHealthCheck`). They run on a small runtime of their own, hold their balancer weakly,
//! and stop when it is retired (its group gone or redefined at a reload, or the server shutting
//! down: `reload::UpkeepStop`) or dropped. A request never waits on them: they only replace the
//! balancer's address set or flip an address's health.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use pingora::http::{RequestHeader, ResponseHeader};
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck};
use pingora::lb::Backend;
use pingora::ErrorType::CustomCode;

use crate::balancer::Balancer;
use crate::dns::{DnsError, Resolver};
use crate::snapshot::{ConfiguredAddr, HealthCheckDef, UpstreamDef};
use crate::upstream_peer::make_peer;

/// The runtime the tasks run on (one worker: they mostly wait).
fn runtime() -> Option<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("statusgate-upkeep")
            .enable_all()
            .build()
            .map_err(|e| tracing::error!(error = %e, "cannot start the upkeep runtime: host names are not re-resolved, health checks do not run"))
            .ok()
    })
    .as_ref()
}

/// Activates `b` (its metric series) and starts its tasks.
pub fn start(b: &Arc<Balancer>) {
    b.activate();
    let named = b.named_entries();
    if named.is_empty() && b.def().health_check.is_none() {
        // Literal addresses, passive health only: nothing to keep current.
        return;
    }
    let Some(rt) = runtime() else {
        return;
    };
    for (entry, host, first_wait) in named {
        rt.spawn(resolve_loop(Arc::downgrade(b), entry, host, first_wait));
    }
    if b.def().health_check.is_some() {
        rt.spawn(health_loop(Arc::downgrade(b)));
    }
}

/// Waits `d`, or returns false when the balancer is retired or dropped first.
async fn wait(stop: &mut tokio::sync::watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => !*stop.borrow(),
        changed = stop.changed() => changed.is_ok() && !*stop.borrow(),
    }
}

async fn resolve_loop(b: Weak<Balancer>, entry: usize, host: String, mut next: Duration) {
    let Some((mut stop, settings)) = b
        .upgrade()
        .map(|b| (b.stopped(), b.def().resolver.clone().unwrap_or_default()))
    else {
        return;
    };
    let resolver = Resolver::new(&settings);
    loop {
        if !wait(&mut stop, next).await {
            return;
        }
        let result = match &resolver {
            Ok(r) => r.resolve(&host).await,
            Err(e) => Err::<_, DnsError>(e.clone()),
        };
        let Some(b) = b.upgrade().filter(|b| !b.is_retired()) else {
            return;
        };
        next = b.record_resolution(entry, result);
    }
}

/// One probe per configured entry (its Host and SNI differ), reused round after round.
fn probe_for(def: &UpstreamDef, hc: &HealthCheckDef, entry: &ConfiguredAddr) -> HttpHealthCheck {
    let placeholder = std::net::SocketAddr::from(([0, 0, 0, 0], 1));
    let host = hc
        .host
        .clone()
        .or_else(|| entry.name().map(|n| n.to_owned()))
        .or_else(|| {
            def.host_header
                .as_ref()
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| entry.to_string());
    let mut probe = HttpHealthCheck::new(&host, def.tls.is_some());
    let mut peer = make_peer(placeholder, entry.name(), def);
    peer.options.connection_timeout = Some(hc.timeout);
    peer.options.total_connection_timeout = Some(hc.timeout);
    peer.options.read_timeout = Some(hc.timeout);
    peer.options.write_timeout = Some(hc.timeout);
    probe.peer_template = peer;
    if let Ok(mut req) = RequestHeader::build(hc.method.as_str(), hc.path.as_bytes(), None) {
        if req.insert_header(http::header::HOST, &host).is_ok() {
            let _ = req.insert_header(http::header::USER_AGENT, "statusgate-health-check");
            probe.req = req;
        }
    }
    let expect = hc.clone();
    probe.validator = Some(Box::new(move |resp: &ResponseHeader| {
        let status = resp.status.as_u16();
        if expect.passes(status) {
            Ok(())
        } else {
            pingora::Error::e_explain(CustomCode("unexpected status", status), "health check")
        }
    }));
    probe
}

async fn health_loop(b: Weak<Balancer>) {
    let Some((mut stop, def)) = b.upgrade().map(|b| (b.stopped(), b.def().clone())) else {
        return;
    };
    let Some(hc) = def.health_check.clone() else {
        return;
    };
    let probes: Vec<Arc<HttpHealthCheck>> = def.addrs.iter().map(|e| Arc::new(probe_for(&def, &hc, e))).collect();
    loop {
        let Some(set) = b.upgrade().filter(|b| !b.is_retired()).map(|b| b.addresses()) else {
            return;
        };
        let mut round = tokio::task::JoinSet::new();
        for a in &set.addrs {
            let (Some(probe), Ok(backend)) = (probes.get(a.entry).cloned(), Backend::new(&a.addr.to_string())) else {
                continue;
            };
            let (addr, entry, timeout) = (a.addr, a.entry, hc.timeout);
            round.spawn(async move {
                let outcome = match tokio::time::timeout(timeout, probe.check(&backend)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer within the health check timeout".to_owned()),
                };
                (addr, entry, outcome)
            });
        }
        drop(set);
        while let Some(done) = round.join_next().await {
            let (Ok((addr, entry, outcome)), Some(b)) = (done, b.upgrade()) else {
                continue;
            };
            if !b.is_retired() {
                b.record_check(addr, entry, outcome.is_ok(), outcome.err());
            }
        }
        if !wait(&mut stop, hc.interval).await {
            return;
        }
    }
}
