//! Connection accounting: open client connections per listener (with the optional cap
//! `limits.client_connections`) and connections in use per upstream group (`max_connections`).
//! A slot is held for as long as its connection (or upstream exchange) lives and released on
//! drop, so no path can leak a count.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pingora::protocols::l4::socket::SocketAddr;
use prometheus::IntGauge;

use crate::balancer::Balancer;
use crate::snapshot::UpstreamGroup;
use crate::telemetry::metrics::Metrics;

struct Listener {
    open: AtomicUsize,
    gauge: IntGauge,
    refused: prometheus::IntCounter,
}

/// Open client connections, per listener address.
pub struct ListenerCounts {
    metrics: Arc<Metrics>,
    by_addr: Mutex<HashMap<String, Arc<Listener>>>,
}

/// A connection cap is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtCapacity;

/// One client connection's place on its listener.
pub struct ClientSlot(Arc<Listener>);

/// What an HTTP/1.x client connection carries from one request to the next (pingora's
/// connection user context): whether the next request's whole header is already read (then no
/// header deadline is needed: nothing is left to wait for). Its place on the listener is held
/// by `admission` for the connection's whole life.
pub struct ClientConnection {
    pub header_ready: bool,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.gauge.dec();
    }
}

fn listener_name(addr: Option<&SocketAddr>) -> String {
    match addr {
        Some(SocketAddr::Inet(a)) => a.to_string(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_owned(),
    }
}

impl ListenerCounts {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        ListenerCounts {
            metrics,
            by_addr: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a place for a new connection on the listener at `local`; `Err` when the listener
    /// already holds `cap` connections (the refusal is counted).
    pub fn admit(&self, local: Option<&SocketAddr>, cap: Option<u32>) -> Result<ClientSlot, AtCapacity> {
        let name = listener_name(local);
        let listener = {
            let Ok(mut map) = self.by_addr.lock() else {
                return Err(AtCapacity);
            };
            map.entry(name)
                .or_insert_with_key(|name| {
                    Arc::new(Listener {
                        open: AtomicUsize::new(0),
                        gauge: self.metrics.client_connections.with_label_values(&[name]),
                        refused: self.metrics.client_connections_refused.with_label_values(&[name]),
                    })
                })
                .clone()
        };
        if let Err(full) = take_place(&listener.open, cap) {
            listener.refused.inc();
            return Err(full);
        }
        listener.gauge.inc();
        Ok(ClientSlot(listener))
    }
}

/// Counts one more user in `open` unless it already holds `cap`.
fn take_place(open: &AtomicUsize, cap: Option<u32>) -> Result<(), AtCapacity> {
    let before = open.fetch_add(1, Ordering::Relaxed);
    if cap.is_some_and(|cap| before >= cap as usize) {
        open.fetch_sub(1, Ordering::Relaxed);
        return Err(AtCapacity);
    }
    Ok(())
}

/// One exchange's use of an upstream group under `max_connections`.
pub struct UpstreamSlot<'a> {
    balancer: &'a Balancer,
    gauge: IntGauge,
}

impl Drop for UpstreamSlot<'_> {
    fn drop(&mut self) {
        self.balancer.connections.fetch_sub(1, Ordering::Relaxed);
        self.gauge.dec();
    }
}

/// Takes a connection place in `group`: `Ok(None)` when the group has no cap, `Err` when it is
/// full.
pub fn acquire_upstream<'a>(
    group: &UpstreamGroup,
    balancer: &'a Balancer,
    metrics: &Metrics,
) -> Result<Option<UpstreamSlot<'a>>, AtCapacity> {
    let Some(cap) = group.def.max_connections else {
        return Ok(None);
    };
    take_place(&balancer.connections, Some(cap))?;
    let gauge = metrics.upstream_connections.with_label_values(&[&group.name]);
    gauge.inc();
    Ok(Some(UpstreamSlot { balancer, gauge }))
}
