//! The live configuration: one compiled `Snapshot` behind `arc-swap`. A request takes the
//! snapshot once and finishes on it; a reload runs the start-up path (`snapshot::load`) and
//! swaps only on success, so a bad edit never replaces a good configuration.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::config::ConfigProblem;
use crate::snapshot::{self, Snapshot};

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
    current: ArcSwap<Snapshot>,
    last_error: Mutex<Option<ReloadFailure>>,
    /// The listener addresses bound at start: a reload cannot rebind them.
    bound: Listeners,
    reload_lock: tokio::sync::Mutex<()>,
}

impl SnapshotHandle {
    pub fn new(path: &Path, first: Snapshot) -> Self {
        crate::metrics::global().config_loaded(&first.version, first.loaded_at);
        let bound = Listeners::of(&first);
        SnapshotHandle {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(first),
            last_error: Mutex::new(None),
            bound,
            reload_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    fn restart_needed_for(&self, snap: &Snapshot) -> Option<String> {
        let want = Listeners::of(snap);
        (want != self.bound).then(|| {
            format!(
                "listener addresses changed ({:?} -> {:?}): they take effect only after a restart or a graceful upgrade (SIGQUIT, then `statusgate run --upgrade`); the old addresses keep serving the new rules",
                self.bound, want
            )
        })
    }

    /// Set when the serving configuration names listeners other than those bound.
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
        let previous = self.current.load_full();
        let result = tokio::task::spawn_blocking(move || snapshot::load_next(&path, Some(&previous)))
            .await
            .unwrap_or_else(|e| {
                Err(vec![crate::config::ConfigProblem::error(
                    crate::config::SourcePos::file(&self.path),
                    crate::config::ProblemKind::Invalid(format!("reload task failed: {e}")),
                )])
            });
        match result {
            Ok(next) => {
                let metrics = crate::metrics::global();
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
                self.current.store(Arc::new(next));
                if let Ok(mut g) = self.last_error.lock() {
                    *g = None;
                }
                (ReloadOutcome::Applied, Vec::new())
            }
            Err(problems) => {
                crate::metrics::global().reloads.with_label_values(&["rejected"]).inc();
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

/// The addresses a snapshot listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listeners {
    plain: Vec<String>,
    tls: Vec<String>,
    admin: String,
}

impl Listeners {
    fn of(s: &Snapshot) -> Self {
        Listeners {
            plain: s.listen.clone(),
            tls: s.tls_listen.iter().map(|t| t.addr.clone()).collect(),
            admin: s.admin.clone(),
        }
    }
}
