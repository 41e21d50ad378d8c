//! Upstream group runtime state: the group's current address set (its IP literals and what
//! its host names resolve to, each with its pingora peer) behind an `ArcSwap` that the
//! background tasks of `upkeep` replace, round robin over it, passive health per address
//! (addresses that refused or timed out skipped for `fail_timeout`), active health per address
//! (`rise` / `fall` counting) and the connections in use under `max_connections`. The snapshot
//! holds only the group's definition; a `Balancer` is made when a snapshot is accepted and
//! carried over to the next one when its group's definition did not change (its addresses,
//! health and resolution state with it).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use http::HeaderValue;
use pingora::upstreams::peer::HttpPeer;
use serde_json::json;

use crate::dns::{DnsError, Resolution};
use crate::snapshot::{ConfiguredAddr, Snapshot, UpstreamDef, UpstreamGroup};
use crate::telemetry::metrics;
use crate::upstream_peer::make_peer;

/// The health of one address, kept across address-set replacements while the address stays.
#[derive(Debug)]
pub struct AddrState {
    /// Until when (ms since the balancer's epoch) passive health skips it.
    down_until: AtomicU64,
    /// Active health: in rotation (starts true: an address serves until checks fail it).
    up: AtomicBool,
    /// Consecutive check results that disagree with `up`.
    streak: AtomicU32,
}

impl AddrState {
    fn new() -> Self {
        AddrState {
            down_until: AtomicU64::new(0),
            up: AtomicBool::new(true),
            streak: AtomicU32::new(0),
        }
    }
}

/// One address in rotation.
#[derive(Debug)]
pub struct Address {
    pub addr: SocketAddr,
    /// Its entry in the group's `addrs`.
    pub entry: usize,
    pub peer: HttpPeer,
    /// The upstream `Host` default of a named entry: the name (with the port unless it is the
    /// scheme's default).
    pub host: Option<HeaderValue>,
    state: Arc<AddrState>,
}

/// The addresses a group serves with right now.
#[derive(Debug, Default)]
pub struct AddressSet {
    pub addrs: Vec<Address>,
}

/// A picked address (the set it belongs to stays alive while the request uses it).
pub struct Picked {
    set: Arc<AddressSet>,
    index: usize,
}

impl Picked {
    pub fn address(&self) -> &Address {
        &self.set.addrs[self.index]
    }

    /// How many addresses the set has (the connect loop tries each at most once).
    pub fn set_len(&self) -> usize {
        self.set.addrs.len()
    }
}

/// Why no address was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPeer {
    /// The group has no address: its names never resolved, or their last good addresses
    /// outlived `resolver.stale_for`.
    NoAddress,
    /// Every address is out of rotation (passive or active health).
    AllDown,
}

/// What one configured host name resolves to, as the balancer keeps it.
#[derive(Debug)]
struct NameStatus {
    host: String,
    port: u16,
    /// The addresses it serves with (the last good ones while they are not stale).
    addrs: Vec<IpAddr>,
    last_result: &'static str,
    last_error: Option<String>,
    last_at: SystemTime,
    last_ok: Option<Instant>,
    ttl: Duration,
    /// Failures since the last success (the retry backoff).
    failures: u32,
}

/// One upstream group's runtime state.
#[derive(Debug)]
pub struct Balancer {
    /// The group's name (metric labels).
    name: String,
    /// The definition this state belongs to (compared at the next reload).
    def: UpstreamDef,
    next: AtomicUsize,
    epoch: Instant,
    /// Connections in use right now (counted where `max_connections` is set).
    pub connections: AtomicUsize,
    set: ArcSwap<AddressSet>,
    /// Per entry of `def.addrs`: the resolution state of a named one.
    names: Vec<Option<Mutex<NameStatus>>>,
    /// Serializes address-set rebuilds.
    rebuild: Mutex<()>,
    retired: AtomicBool,
    /// Set by `activate`: only a live balancer writes metric series (a new one must not touch
    /// the series before the balancer it replaces has removed its own).
    live: AtomicBool,
    stop: tokio::sync::watch::Sender<bool>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Balancer {
    fn new(group: &UpstreamGroup, resolved: &HashMap<String, Result<Resolution, DnsError>>) -> Self {
        let now = Instant::now();
        let names = group
            .def
            .addrs
            .iter()
            .map(|a| {
                let ConfiguredAddr::Name { host, port } = a else {
                    return None;
                };
                let seed = resolved.get(host);
                let (addrs, last_result, last_error, ttl, last_ok) = match seed {
                    Some(Ok(r)) => (r.addrs.clone(), "ok", None, r.ttl, Some(now)),
                    Some(Err(e)) => (Vec::new(), e.label(), Some(e.to_string()), Duration::ZERO, None),
                    None => (Vec::new(), "pending", None, Duration::ZERO, None),
                };
                Some(Mutex::new(NameStatus {
                    host: host.clone(),
                    port: *port,
                    addrs,
                    last_result,
                    last_error,
                    last_at: SystemTime::now(),
                    last_ok,
                    ttl,
                    failures: u32::from(seed.is_some_and(|r| r.is_err())),
                }))
            })
            .collect();
        let b = Balancer {
            name: group.name.clone(),
            def: group.def.clone(),
            next: AtomicUsize::new(0),
            epoch: now,
            connections: AtomicUsize::new(0),
            set: ArcSwap::from_pointee(AddressSet::default()),
            names,
            rebuild: Mutex::new(()),
            retired: AtomicBool::new(false),
            live: AtomicBool::new(false),
            stop: tokio::sync::watch::channel(false).0,
        };
        b.rebuild_set();
        b
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn def(&self) -> &UpstreamDef {
        &self.def
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Round robin over the addresses in rotation (not skipped by passive health, not failed by
    /// active checks). One `ArcSwap` load (`load_full`: the set stays alive while the request
    /// uses its peer, across awaits), no allocation.
    pub fn pick(&self) -> Result<Picked, NoPeer> {
        let set = self.set.load_full();
        let n = set.addrs.len();
        if n == 0 {
            return Err(NoPeer::NoAddress);
        }
        let now = self.now_ms();
        for _ in 0..n {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
            let s = &set.addrs[i].state;
            if s.up.load(Ordering::Relaxed) && s.down_until.load(Ordering::Relaxed) <= now {
                return Ok(Picked { set, index: i });
            }
        }
        Err(NoPeer::AllDown)
    }

    /// Takes an address out of rotation for `fail_timeout` (passive health checking).
    pub fn mark_down(&self, addr: SocketAddr) {
        let until = self.now_ms() + self.def.fail_timeout.as_millis() as u64;
        for a in self.set.load().addrs.iter().filter(|a| a.addr == addr) {
            a.state.down_until.store(until, Ordering::Relaxed);
        }
    }

    /// The current address set (the health checker probes it).
    pub fn addresses(&self) -> Arc<AddressSet> {
        self.set.load_full()
    }

    /// A receiver that changes when the balancer is retired (its tasks stop).
    pub fn stopped(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// Starts writing metric series: the load-time resolutions are counted and the address and
    /// name gauges set. Called once the balancers this one replaces are retired.
    pub fn activate(&self) {
        if self.is_retired() || self.live.swap(true, Ordering::Relaxed) {
            return;
        }
        let m = metrics::global();
        for n in self.names.iter().flatten().filter_map(|n| n.lock().ok()) {
            if n.last_result != "pending" {
                m.dns_resolutions
                    .with_label_values(&[&self.name, &n.host, n.last_result])
                    .inc();
            }
        }
        self.publish(&AddressSet::default(), &self.set.load());
    }

    /// The configured named entries: (entry index, host, whether it has addresses now, the
    /// wait before its next resolution).
    pub fn named_entries(&self) -> Vec<(usize, String, Duration)> {
        self.names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let n = n.as_ref()?.lock().ok()?;
                let wait = if n.last_result == "ok" {
                    n.ttl
                } else {
                    self.retry_after(&n)
                };
                Some((i, n.host.clone(), wait))
            })
            .collect()
    }

    /// The wait before retrying a failing name: 1s doubling to 30s, never past the moment its
    /// stale addresses expire.
    fn retry_after(&self, n: &NameStatus) -> Duration {
        let backoff = Duration::from_secs(1 << n.failures.saturating_sub(1).min(5)).min(Duration::from_secs(30));
        let stale_left = n
            .last_ok
            .zip(self.def.resolver.as_ref())
            .and_then(|(ok, r)| (!n.addrs.is_empty()).then(|| r.stale_for.saturating_sub(ok.elapsed())));
        match stale_left {
            Some(left) if !left.is_zero() => backoff.min(left),
            _ => backoff,
        }
    }

    /// Records one resolution of the named `entry`; returns the wait before the next one. A
    /// failure keeps the last good addresses until `resolver.stale_for` has passed since the
    /// last success.
    pub fn record_resolution(&self, entry: usize, result: Result<Resolution, DnsError>) -> Duration {
        let Some(Some(cell)) = self.names.get(entry) else {
            return Duration::from_secs(30);
        };
        let stale_for = self.def.resolver.as_ref().map_or(Duration::ZERO, |r| r.stale_for);
        let (changed, wait, host, label) = {
            let Ok(mut n) = cell.lock() else {
                return Duration::from_secs(30);
            };
            n.last_at = SystemTime::now();
            let before = n.addrs.clone();
            let wait = match result {
                Ok(r) => {
                    n.addrs = r.addrs;
                    n.last_result = "ok";
                    n.last_error = None;
                    n.last_ok = Some(Instant::now());
                    n.ttl = r.ttl;
                    n.failures = 0;
                    r.ttl
                }
                Err(e) => {
                    n.last_result = e.label();
                    n.failures = n.failures.saturating_add(1);
                    let expired = n.last_ok.is_none_or(|ok| ok.elapsed() >= stale_for);
                    if expired && !n.addrs.is_empty() {
                        tracing::warn!(upstream = %self.name, host = %n.host, error = %e, "host name resolution keeps failing past resolver.stale_for: its addresses leave the rotation");
                        n.addrs.clear();
                    } else {
                        tracing::warn!(upstream = %self.name, host = %n.host, error = %e, "host name resolution failed; the last good addresses keep serving");
                    }
                    n.last_error = Some(e.to_string());
                    self.retry_after(&n)
                }
            };
            (before != n.addrs, wait, n.host.clone(), n.last_result)
        };
        if self.is_live() {
            metrics::global()
                .dns_resolutions
                .with_label_values(&[&self.name, &host, label])
                .inc();
        }
        if changed {
            self.rebuild_set();
        }
        wait
    }

    /// Builds the address set from the literals and the names' addresses, keeping the health
    /// of every address that stays, and updates the address series.
    fn rebuild_set(&self) {
        let Ok(_one_at_a_time) = self.rebuild.lock() else {
            return;
        };
        let old = self.set.load_full();
        let mut addrs = Vec::new();
        for (entry, a) in self.def.addrs.iter().enumerate() {
            let (ips, name, port): (Vec<SocketAddr>, Option<&str>, u16) = match a {
                ConfiguredAddr::Ip(sa) => (vec![*sa], None, sa.port()),
                ConfiguredAddr::Name { host, port } => {
                    let ips = self.names[entry]
                        .as_ref()
                        .and_then(|n| n.lock().ok().map(|n| n.addrs.clone()))
                        .unwrap_or_default();
                    (
                        ips.into_iter().map(|ip| SocketAddr::new(ip, *port)).collect(),
                        Some(host),
                        *port,
                    )
                }
            };
            let default_port = if self.def.tls.is_some() { 443 } else { 80 };
            let host = name.and_then(|h| {
                let v = if port == default_port {
                    h.to_owned()
                } else {
                    format!("{h}:{port}")
                };
                HeaderValue::from_str(&v).ok()
            });
            for addr in ips {
                let state = old
                    .addrs
                    .iter()
                    .find(|o| o.entry == entry && o.addr == addr)
                    .map_or_else(|| Arc::new(AddrState::new()), |o| o.state.clone());
                addrs.push(Address {
                    addr,
                    entry,
                    peer: make_peer(addr, name, &self.def),
                    host: host.clone(),
                    state,
                });
            }
        }
        let next = Arc::new(AddressSet { addrs });
        self.set.store(next.clone());
        if self.is_live() {
            self.publish(&old, &next);
        }
    }

    /// The address and name series of `next`, removing those of `old`'s addresses that left.
    fn publish(&self, old: &AddressSet, next: &AddressSet) {
        let m = metrics::global();
        let now: HashSet<String> = next.addrs.iter().map(|a| a.addr.to_string()).collect();
        for gone in old
            .addrs
            .iter()
            .map(|a| a.addr.to_string())
            .filter(|a| !now.contains(a))
        {
            let _ = m.upstream_address_up.remove_label_values(&[&self.name, &gone]);
        }
        for a in &next.addrs {
            m.upstream_address_up
                .with_label_values(&[&self.name, &a.addr.to_string()])
                .set(i64::from(a.state.up.load(Ordering::Relaxed)));
        }
        for n in self.names.iter().flatten().filter_map(|n| n.lock().ok()) {
            m.dns_addresses
                .with_label_values(&[&self.name, &n.host])
                .set(n.addrs.len() as i64);
        }
    }

    /// Records one active check of `addr`; flips it out of rotation after `fall` consecutive
    /// failures and back after `rise` consecutive passes.
    pub fn record_check(&self, addr: SocketAddr, entry: usize, passed: bool, why: Option<String>) {
        let Some(hc) = &self.def.health_check else {
            return;
        };
        let set = self.set.load();
        let Some(a) = set.addrs.iter().find(|a| a.addr == addr && a.entry == entry) else {
            return;
        };
        let s = &a.state;
        let up = s.up.load(Ordering::Relaxed);
        if up == passed {
            s.streak.store(0, Ordering::Relaxed);
            return;
        }
        let streak = s.streak.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < if up { hc.fall } else { hc.rise } {
            return;
        }
        s.streak.store(0, Ordering::Relaxed);
        s.up.store(passed, Ordering::Relaxed);
        if passed {
            tracing::info!(upstream = %self.name, address = %addr, "health check passes again: the address is back in rotation");
        } else {
            tracing::warn!(upstream = %self.name, address = %addr, reason = why.as_deref().unwrap_or("-"), "health check fails: the address leaves the rotation");
        }
        if self.is_live() {
            metrics::global()
                .upstream_address_up
                .with_label_values(&[&self.name, &addr.to_string()])
                .set(i64::from(passed));
        }
    }

    /// Stops the balancer's tasks and removes its series (its group is gone or redefined).
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        if !self.live.swap(false, Ordering::Relaxed) {
            return;
        }
        let m = metrics::global();
        for a in &self.set.load().addrs {
            let _ = m
                .upstream_address_up
                .remove_label_values(&[&self.name, &a.addr.to_string()]);
        }
        for n in self.names.iter().flatten().filter_map(|n| n.lock().ok()) {
            let _ = m.dns_addresses.remove_label_values(&[&self.name, &n.host]);
            for result in std::iter::once("ok").chain(DnsError::LABELS) {
                let _ = m.dns_resolutions.remove_label_values(&[&self.name, &n.host, result]);
            }
        }
    }

    /// The state `GET /-/config` shows: addresses, where each comes from, its passive and
    /// active health, and each name's last resolution.
    pub fn status(&self) -> serde_json::Value {
        let now = self.now_ms();
        let set = self.set.load();
        let resolved: Vec<_> = set
            .addrs
            .iter()
            .map(|a| {
                let down_ms = a.state.down_until.load(Ordering::Relaxed).saturating_sub(now);
                let active = a.state.up.load(Ordering::Relaxed);
                json!({
                    "address": a.addr.to_string(),
                    "from": self.def.addrs.get(a.entry).map(ToString::to_string),
                    "passive_down_ms": down_ms,
                    "active_up": active,
                    "in_rotation": active && down_ms == 0,
                })
            })
            .collect();
        let names: Vec<_> = self
            .names
            .iter()
            .flatten()
            .filter_map(|n| n.lock().ok())
            .map(|n| {
                json!({
                    "host": n.host,
                    "port": n.port,
                    "addresses": n.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "last_result": n.last_result,
                    "last_error": n.last_error,
                    "last_at_unix": unix(n.last_at),
                    "ttl_ms": n.ttl.as_millis() as u64,
                    "last_ok_ago_ms": n.last_ok.map(|t| t.elapsed().as_millis() as u64),
                })
            })
            .collect();
        json!({
            "addrs": self.def.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "health_check": self.def.health_check.as_ref().map(|h| json!({
                "path": h.path,
                "method": h.method.as_str(),
                "interval_ms": h.interval.as_millis() as u64,
                "rise": h.rise,
                "fall": h.fall,
            })),
            "addresses": resolved,
            "names": names,
        })
    }
}

/// The balancers of one accepted snapshot, indexed by `UpstreamGroup::index`.
#[derive(Debug, Default)]
pub struct Balancers(Vec<Arc<Balancer>>);

impl Balancers {
    /// The state for `next`'s groups: a group whose name and definition equal one of
    /// `previous`'s keeps that group's balancer (its addresses, health and connection count),
    /// any other starts afresh from what its names resolved to at load.
    pub fn carry(next: &Snapshot, previous: Option<(&Snapshot, &Balancers)>) -> Balancers {
        let mut groups: Vec<&Arc<UpstreamGroup>> = next.upstreams.values().collect();
        groups.sort_unstable_by_key(|g| g.index);
        Balancers(
            groups
                .into_iter()
                .map(|g| {
                    previous
                        .and_then(|(snap, balancers)| {
                            let old = snap.upstreams.get(&g.name)?;
                            let kept = balancers.0.get(old.index)?;
                            (kept.def == g.def).then(|| kept.clone())
                        })
                        .unwrap_or_else(|| Arc::new(Balancer::new(g, &next.resolved)))
                })
                .collect(),
        )
    }

    /// The balancer of `group` (a group of the snapshot these balancers were made for).
    pub fn of(&self, group: &UpstreamGroup) -> Option<&Balancer> {
        self.0.get(group.index).map(|b| &**b)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Balancer>> {
        self.0.iter()
    }

    /// Whether `b` is one of these.
    pub fn contains(&self, b: &Arc<Balancer>) -> bool {
        self.0.iter().any(|x| Arc::ptr_eq(x, b))
    }
}
