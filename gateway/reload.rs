//! The live configuration: one accepted snapshot (`Serving`: the compiled `Snapshot` with its
//! metric series and its upstream groups' runtime state) behind `arc-swap`. A request takes it
//! once and finishes on it; a reload runs the start-up path (`snapshot::load`) and swaps only on
//! success, so a bad edit never replaces a good configuration. Accepting a snapshot is the one
//! place that resolves its metric series (removing those of routes that are gone) and carries
//! the balancers of unchanged groups over; a rejected reload leaves no trace. Boot-only
//! settings a reload changes are reported as `restart_needed`, by name. An accepted snapshot's
//! listener certificates are stored into the running TLS listeners' resolvers
//! (`crate::listener_certs`): certificates, SNI sets and minimum versions reload, addresses do
//! not.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::balancer::Balancers;
use crate::config::ConfigProblem;
use crate::listener_certs::ListenerResolvers;
use crate::snapshot::{self, BootSettings, Snapshot};
use crate::telemetry::metrics::{self, SnapshotSeries};
use crate::telemetry::shadow::ShadowStats;
use crate::telemetry::unmatched::UnmatchedStore;

/// An accepted snapshot: the definitions and what serving them needs at run time.
#[derive(Debug)]
pub struct Serving {
    pub snapshot: Snapshot,
    /// The routes' metric series, indexed like `snapshot.routes`.
    pub series: SnapshotSeries,
    /// The upstream groups' runtime state, indexed by `UpstreamGroup::index`.
    pub balancers: Balancers,
    /// Each route's shadow record (`None`: no `shadow_profile`), indexed like `snapshot.routes`;
    /// new with every accepted snapshot.
    pub shadows: Vec<Option<ShadowStats>>,
    /// Each route's unmatched responses (discovery), indexed like `snapshot.routes`; new with
    /// every accepted snapshot.
    pub unmatched: Vec<UnmatchedStore>,
}

impl std::ops::Deref for Serving {
    type Target = Snapshot;

    fn deref(&self) -> &Snapshot {
        &self.snapshot
    }
}

impl Serving {
    /// Accepts `snapshot`: resolves its series and balancers (carrying over `previous`'s).
    /// `upkeep`: start the new balancers' background tasks (false once the server stopped).
    fn accept(snapshot: Snapshot, previous: Option<&Serving>, upkeep: bool) -> Serving {
        let series = metrics::global().accept(
            snapshot.routes.iter().map(|r| (&*r.name, r.profile.rule_names())),
            previous.map(|p| &p.series),
        );
        let balancers = Balancers::carry(&snapshot, previous.map(|p| (&p.snapshot, &p.balancers)));
        // Balancers not carried over stop (and take their series with them) before the new
        // ones start writing theirs: a redefined group keeps its name, so its labels.
        for old in previous.iter().flat_map(|p| p.balancers.iter()) {
            if !balancers.contains(old) {
                old.retire();
            }
        }
        for b in balancers.iter() {
            let carried = previous.is_some_and(|p| p.balancers.contains(b));
            if !carried && upkeep {
                crate::upkeep::start(b);
            }
        }
        // A group that is gone takes its connection gauge with it.
        for name in previous.iter().flat_map(|p| p.snapshot.upstreams.keys()) {
            if !snapshot.upstreams.contains_key(name) {
                let _ = metrics::global().upstream_connections.remove_label_values(&[name]);
            }
        }
        let shadows = snapshot
            .routes
            .iter()
            .map(|r| (r.shadow.as_ref()).map(|s| ShadowStats::new(&r.profile.source, &s.source)))
            .collect();
        let unmatched = snapshot.routes.iter().map(|_| UnmatchedStore::default()).collect();
        Serving {
            snapshot,
            series,
            balancers,
            shadows,
            unmatched,
        }
    }

    /// The name of the route at `index` (`-` for none).
    pub fn route_name(&self, index: Option<usize>) -> &str {
        index
            .and_then(|i| self.snapshot.routes.get(i))
            .map_or("-", |r| &*r.name)
    }
}

/// The last failed reload, kept for `GET /-/config`, with its typed, positioned problems.
#[derive(Debug, Clone)]
pub struct ReloadFailure {
    pub at: SystemTime,
    pub problems: Vec<ConfigProblem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new snapshot serves.
    Applied,
    /// The files did not change; nothing swapped.
    Unchanged,
    /// Problems found; the previous snapshot keeps serving.
    Rejected,
}

pub struct SnapshotHandle {
    path: PathBuf,
    current: ArcSwap<Serving>,
    last_error: Mutex<Option<ReloadFailure>>,
    /// The boot-only settings the process started with: a reload cannot change them.
    boot: BootSettings,
    /// The TLS listeners' certificate resolvers, made from the first snapshot.
    listener_certs: ListenerResolvers,
    reload_lock: tokio::sync::Mutex<()>,
    /// Set at shutdown: the balancers' background tasks are stopped and no new ones start.
    upkeep_stopped: std::sync::atomic::AtomicBool,
}

impl SnapshotHandle {
    pub fn new(path: &Path, first: Snapshot) -> Self {
        metrics::global().config_loaded(&first.version, first.loaded_at);
        let boot = first.boot.clone();
        let listener_certs = ListenerResolvers::new(&first);
        SnapshotHandle {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(Serving::accept(first, None, true)),
            last_error: Mutex::new(None),
            boot,
            listener_certs,
            reload_lock: tokio::sync::Mutex::new(()),
            upkeep_stopped: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Stops every balancer's background tasks (resolution, health checks) for good.
    pub fn stop_upkeep(&self) {
        use std::sync::atomic::Ordering;
        self.upkeep_stopped.store(true, Ordering::Relaxed);
        for b in self.current.load().balancers.iter() {
            b.retire();
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn current(&self) -> Arc<Serving> {
        self.current.load_full()
    }

    /// The TLS listeners' certificate resolvers (the server installs them, reloads fill them).
    pub fn listener_certs(&self) -> &ListenerResolvers {
        &self.listener_certs
    }

    /// The boot-only settings the process runs with.
    pub fn boot(&self) -> &BootSettings {
        &self.boot
    }

    fn restart_needed_for(&self, snap: &Snapshot) -> Option<String> {
        let changed = snap.boot.changed_from(&self.boot);
        (!changed.is_empty()).then(|| {
            format!(
                "changed settings that need a restart: {}. They take effect only after a restart or a graceful upgrade (SIGQUIT, then `statusgate run --upgrade`); until then the running values stay and the rest of the new configuration (routes, rules, upstreams, limits) serves",
                changed.join(", ")
            )
        })
    }

    /// Set when the serving configuration changes boot-only settings the process started with.
    pub fn restart_needed(&self) -> Option<String> {
        self.restart_needed_for(&self.current.load())
    }

    pub fn last_error(&self) -> Option<ReloadFailure> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }

    /// Loads, validates and compiles the configuration again; swaps it in when it is good.
    /// Problems are logged once each, with file:line:col.
    pub async fn reload(&self) -> (ReloadOutcome, Vec<ConfigProblem>) {
        let _one_at_a_time = self.reload_lock.lock().await;
        let path = self.path.clone();
        let result = tokio::task::spawn_blocking(move || snapshot::load(&path))
            .await
            .unwrap_or_else(|e| {
                Err(vec![crate::config::ConfigProblem::error(
                    crate::config::SourcePos::file(&self.path),
                    crate::config::ProblemKind::ReloadTask(e.to_string()),
                )])
            });
        match result {
            Ok(next) => {
                let metrics = metrics::global();
                if next.version == self.current.load().version {
                    metrics.reloads.with_label_values(&["unchanged"]).inc();
                    return (ReloadOutcome::Unchanged, Vec::new());
                }
                metrics.reloads.with_label_values(&["applied"]).inc();
                metrics.config_loaded(&next.version, next.loaded_at);
                if let Some(note) = self.restart_needed_for(&next) {
                    tracing::warn!("{note}");
                }
                for w in &next.warnings {
                    tracing::warn!(problem = %w, "configuration warning");
                }
                tracing::info!(version = %next.version, "configuration reloaded");
                let upkeep = !self.upkeep_stopped.load(std::sync::atomic::Ordering::Relaxed);
                let serving = Serving::accept(next, Some(&self.current.load()), upkeep);
                self.listener_certs.store(&serving.snapshot);
                self.current.store(Arc::new(serving));
                if let Ok(mut g) = self.last_error.lock() {
                    *g = None;
                }
                (ReloadOutcome::Applied, Vec::new())
            }
            Err(problems) => {
                metrics::global().reloads.with_label_values(&["rejected"]).inc();
                for p in &problems {
                    tracing::error!(problem = %p, "reload rejected; the previous configuration keeps serving");
                }
                if let Ok(mut g) = self.last_error.lock() {
                    *g = Some(ReloadFailure {
                        at: SystemTime::now(),
                        problems: problems.clone(),
                    });
                }
                (ReloadOutcome::Rejected, problems)
            }
        }
    }
}

/// Reloads on SIGHUP (pingora does not handle it; its default action would kill the process).
pub struct SighupReload(pub Arc<SnapshotHandle>);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for SighupReload {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::error!("cannot install the SIGHUP handler");
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    self.0.reload().await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Stops the balancers' background tasks when the server shuts down: when the shutdown watch
/// fires, or when pingora drops this service's task with its runtime first (a zero grace
/// period can do that before the task sees the watch).
pub struct UpkeepStop(pub Arc<SnapshotHandle>);

struct StopOnDrop<'a>(&'a SnapshotHandle);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop_upkeep();
    }
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for UpkeepStop {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let _stop = StopOnDrop(&self.0);
        let _ = shutdown.changed().await;
    }
}
