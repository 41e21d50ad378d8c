//! The file-change reload trigger (the others: `POST /-/reload` in `admin`, SIGHUP in `reload`).
//!
//! Files: the directories holding the loaded files are watched (not the files: editors save by
//! rename and Kubernetes swaps a `..data` symlink, both of which replace the inode), but only
//! events on the loaded files' own names, on a watched directory itself, and on `..`-prefixed
//! entries (a ConfigMap or Secret volume's `..data` symlink and its `..2026_..` timestamped
//! directories) count. Anything else in those directories (a log file next to the configuration,
//! an editor's swap file) is ignored, so a rejected reload that logs an error cannot trigger the
//! next one.
//!
//! Debounce: a reload runs once relevant events have settled for `debounce`, and at most
//! `MAX_DELAY` after the first of them, however many follow. After each reload the watch set
//! follows the files the configuration now names (plus, after a rejection, the files the
//! problems point at). A reload whose files hash the same is a no-op.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notify::{EventKind, RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::time::Instant;

use crate::reload::{ReloadOutcome, SnapshotHandle};

/// The longest a reload waits after the first relevant event, whatever else is written.
pub const MAX_DELAY: Duration = Duration::from_millis(500);

pub struct ConfigWatcher {
    pub handle: Arc<SnapshotHandle>,
    /// How long relevant events must have stopped before the reload (capped by `MAX_DELAY`).
    pub debounce: Duration,
}

fn is_embedded(p: &Path) -> bool {
    p.to_string_lossy().starts_with("embedded:")
}

fn dir_of(p: &Path) -> Option<PathBuf> {
    p.parent().map(|d| {
        if d.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            d.to_path_buf()
        }
    })
}

/// The watched directories, each with the names in it that belong to the configuration.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WatchSet(BTreeMap<PathBuf, BTreeSet<OsString>>);

impl WatchSet {
    pub fn of<'a>(files: impl IntoIterator<Item = &'a Path>) -> Self {
        let mut set = WatchSet::default();
        for f in files.into_iter().filter(|f| !is_embedded(f)) {
            // A file in a directory that does not exist yet is watched through its nearest
            // existing ancestor, by the name of the first missing directory: creating that
            // directory is the relevant event.
            let mut at = f.to_path_buf();
            while let Some(dir) = dir_of(&at) {
                if dir == at || dir.is_dir() || dir == Path::new(".") {
                    if let Some(name) = at.file_name() {
                        set.0.entry(dir).or_default().insert(name.to_owned());
                    }
                    break;
                }
                at = dir;
            }
        }
        set
    }

    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.0.keys().map(PathBuf::as_path)
    }

    /// Whether a change at `path` may change the configuration.
    pub fn is_relevant(&self, path: &Path) -> bool {
        if self.0.contains_key(path) {
            return true; // a watched directory itself was replaced or removed
        }
        let (Some(dir), Some(name)) = (dir_of(path), path.file_name()) else {
            return false;
        };
        let Some(names) = self.0.get(&dir) else {
            return false;
        };
        names.contains(name) || name.to_string_lossy().starts_with("..")
    }

    fn is_relevant_event(&self, ev: &notify::Event) -> bool {
        // Reads (ours included) are not changes.
        !matches!(ev.kind, EventKind::Access(_)) && ev.paths.iter().any(|p| self.is_relevant(p))
    }
}

/// The files to watch: those of the serving snapshot, the main file (it may be unreadable right
/// now) and `extra` (what the last rejected reload complained about).
fn watch_set(handle: &SnapshotHandle, extra: &BTreeSet<PathBuf>) -> WatchSet {
    let snap = handle.current();
    WatchSet::of(
        snap.files
            .iter()
            .map(PathBuf::as_path)
            .chain(std::iter::once(handle.path()))
            .chain(extra.iter().map(PathBuf::as_path)),
    )
}

#[async_trait]
impl BackgroundService for ConfigWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher = match notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev {
                let _ = tx.send(ev);
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch configuration files; reload with SIGHUP or POST /-/reload");
                return;
            }
        };
        let mut extra = BTreeSet::new();
        // Of the files the last rejected reload named, those that existed then.
        let mut existed: BTreeSet<PathBuf> = BTreeSet::new();
        let mut watched: Vec<PathBuf> = Vec::new();
        loop {
            // (Re)watch every directory: a directory reached through a symlink (a ConfigMap
            // item with a path) is a new one after a swap.
            let set = watch_set(&self.handle, &extra);
            for d in watched.drain(..) {
                let _ = watcher.unwatch(&d);
            }
            for d in set.dirs() {
                match watcher.watch(d, RecursiveMode::NonRecursive) {
                    Ok(()) => watched.push(d.to_path_buf()),
                    Err(e) => tracing::warn!(dir = %d.display(), error = %e, "cannot watch directory"),
                }
            }
            // A file the last rejection missed may have appeared before its directory was
            // watched (created together with it): reload at once, without waiting for an
            // event that has already passed. Only a newly appeared file does this, so a
            // configuration that stays broken cannot loop.
            let appeared = extra.iter().any(|f: &PathBuf| f.exists() && !existed.contains(f));
            // The first relevant event.
            if !appeared {
                loop {
                    tokio::select! {
                        got = rx.recv() => match got {
                            None => return,
                            Some(ev) if set.is_relevant_event(&ev) => break,
                            Some(_) => {}
                        },
                        _ = shutdown.changed() => return,
                    }
                }
            }

            // Let the burst settle, but not past the cap; unrelated events change nothing.
            let first = Instant::now();
            let mut last = first;
            loop {
                let at = (last + self.debounce).min(first + MAX_DELAY);
                tokio::select! {
                    got = rx.recv() => match got {
                        None => return,
                        Some(ev) if set.is_relevant_event(&ev) => last = Instant::now(),
                        Some(_) => {}
                    },
                    _ = tokio::time::sleep_until(at) => break,
                    _ = shutdown.changed() => return,
                }
            }
            let (outcome, problems) = self.handle.reload().await;
            extra = if outcome == ReloadOutcome::Rejected {
                problems.iter().map(|p| p.at.file.clone()).collect()
            } else {
                BTreeSet::new()
            };
            existed = extra.iter().filter(|f| f.exists()).cloned().collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_in_a_missing_directory_is_watched_through_its_nearest_existing_ancestor() {
        let dir = std::env::temp_dir().join(format!("sg-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("more-rules/deeper/next.yaml");
        let set = WatchSet::of([file.as_path()]);
        assert_eq!(set.dirs().collect::<Vec<_>>(), [dir.as_path()]);
        assert!(set.is_relevant(&dir.join("more-rules")));
        assert!(!set.is_relevant(&dir.join("other")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_loaded_names_and_configmap_entries_are_relevant() {
        // Real directories: a missing one would be watched through its ancestor instead.
        let root = std::env::temp_dir().join(format!("sg-relevant-{}", std::process::id()));
        std::fs::create_dir_all(root.join("etc/sg/rules")).unwrap();
        let at = |p: &str| match p.strip_prefix('/') {
            Some(rest) => root.join(rest),
            None => PathBuf::from(p),
        };
        let set = WatchSet::of([
            at("/etc/sg/statusgate.yaml").as_path(),
            at("/etc/sg/rules/huawei.yaml").as_path(),
            Path::new("statusgate.yaml"),
            Path::new("embedded:rules/canonical.yaml"),
        ]);
        assert_eq!(
            set.dirs().collect::<Vec<_>>(),
            [at("/etc/sg").as_path(), at("/etc/sg/rules").as_path(), Path::new(".")]
        );
        for yes in [
            "/etc/sg/statusgate.yaml",
            "/etc/sg/rules/huawei.yaml",
            "/etc/sg/..data",
            "/etc/sg/..data_tmp",
            "/etc/sg/..2026_12_01_21_00_00.123",
            "/etc/sg/rules",
            "./statusgate.yaml",
        ] {
            assert!(set.is_relevant(&at(yes)), "{yes}");
        }
        for no in [
            "/etc/sg/statusgate.log",
            "/etc/sg/rules/.huawei.yaml.swp",
            "/etc/sg/rules/huawei.yaml~",
            "/etc/other/statusgate.yaml",
            "./statusgate.log",
        ] {
            assert!(!set.is_relevant(&at(no)), "{no}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
