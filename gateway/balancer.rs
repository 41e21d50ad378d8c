//! Upstream group runtime state: the pingora peers (made by `crate::upstream_peer`), round
//! robin, passive health (addresses that refused or timed out skipped for `fail_timeout`) and
//! the connections in use under `max_connections`. The snapshot holds only the group's
//! definition; a `Balancer` is made when a snapshot is accepted and carried over to the next one
//! when its group's definition did not change.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use std::net::SocketAddr;

use crate::snapshot::{Snapshot, UpstreamDef, UpstreamGroup};
use crate::upstream_peer::{make_peers, UpstreamPeer};

/// One upstream group's runtime state.
#[derive(Debug)]
pub struct Balancer {
    /// The definition this state belongs to (compared at the next reload).
    def: UpstreamDef,
    /// One pingora peer per address, in the order of `def.addrs`.
    peers: Vec<UpstreamPeer>,
    next: AtomicUsize,
    /// Per address: until when (ms since `epoch`) it is skipped.
    down_until: Vec<AtomicU64>,
    epoch: Instant,
    /// Connections in use right now (counted where `max_connections` is set).
    pub connections: AtomicUsize,
}

impl Balancer {
    fn new(def: &UpstreamDef) -> Self {
        Balancer {
            def: def.clone(),
            peers: make_peers(def),
            next: AtomicUsize::new(0),
            down_until: def.addrs.iter().map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            connections: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Round robin over the group's addresses that have not failed within `fail_timeout`;
    /// `None` when every address is down.
    pub fn pick(&self) -> Option<&UpstreamPeer> {
        let n = self.peers.len().min(self.down_until.len());
        let now = self.now_ms();
        for _ in 0..n {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
            if self.down_until[i].load(Ordering::Relaxed) <= now {
                return self.peers.get(i);
            }
        }
        None
    }

    /// How many addresses the group has.
    pub fn addresses(&self) -> usize {
        self.peers.len()
    }

    /// Takes an address out of rotation for `fail_timeout` (passive health checking).
    pub fn mark_down(&self, addr: SocketAddr) {
        let until = self.now_ms() + self.def.fail_timeout.as_millis() as u64;
        for (a, d) in self.def.addrs.iter().zip(&self.down_until) {
            if *a == addr {
                d.store(until, Ordering::Relaxed);
            }
        }
    }
}

/// The balancers of one accepted snapshot, indexed by `UpstreamGroup::index`.
#[derive(Debug, Default)]
pub struct Balancers(Vec<Arc<Balancer>>);

impl Balancers {
    /// The state for `next`'s groups: a group whose name and definition equal one of
    /// `previous`'s keeps that group's balancer (its health and connection count), any other
    /// starts afresh.
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
                        .unwrap_or_else(|| Arc::new(Balancer::new(&g.def)))
                })
                .collect(),
        )
    }

    /// The balancer of `group` (a group of the snapshot these balancers were made for).
    pub fn of(&self, group: &UpstreamGroup) -> Option<&Balancer> {
        self.0.get(group.index).map(|b| &**b)
    }
}
