//! The reload triggers besides `POST /-/reload`: file changes and SIGHUP.
//!
//! Files: the directories holding every loaded file are watched (not the files: editors save by
//! rename and Kubernetes swaps a `..data` symlink, both of which replace the inode). Bursts of
//! events settle for `debounce` before one reload; after each reload the watch set follows the
//! files the configuration now names. A reload whose files hash the same is a no-op.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notify::{EventKind, RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::reload::SnapshotHandle;

pub struct ConfigWatcher {
    pub handle: Arc<SnapshotHandle>,
    pub debounce: Duration,
}

fn watched_dirs(handle: &SnapshotHandle) -> BTreeSet<PathBuf> {
    let mut dirs: BTreeSet<PathBuf> = handle
        .current()
        .files
        .iter()
        .filter(|f| !f.to_string_lossy().starts_with("embedded:"))
        .filter_map(|f| {
            f.parent().map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            })
        })
        .collect();
    // The main file may be unreadable right now; its directory is watched regardless.
    if let Some(p) = handle.path().parent() {
        if !handle.path().to_string_lossy().starts_with("embedded:") {
            dirs.insert(if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            });
        }
    }
    dirs
}

#[async_trait]
impl BackgroundService for ConfigWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher = match notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev {
                // Reads (ours included) are not changes.
                if !matches!(ev.kind, EventKind::Access(_)) {
                    let _ = tx.send(());
                }
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch configuration files; reload with SIGHUP or POST /-/reload");
                return;
            }
        };
        let mut dirs = BTreeSet::new();
        loop {
            let want = watched_dirs(&self.handle);
            for gone in dirs.difference(&want) {
                let _ = watcher.unwatch(gone);
            }
            for new in want.difference(&dirs) {
                if let Err(e) = watcher.watch(new, RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %new.display(), error = %e, "cannot watch directory");
                }
            }
            dirs = want;
            tokio::select! {
                got = rx.recv() => if got.is_none() { return },
                _ = shutdown.changed() => return,
            }
            // Let the burst settle.
            loop {
                tokio::select! {
                    got = rx.recv() => if got.is_none() { return },
                    _ = tokio::time::sleep(self.debounce) => break,
                    _ = shutdown.changed() => return,
                }
            }
            self.handle.reload().await;
        }
    }
}
