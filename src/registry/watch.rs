//! Descriptor files and directories reloaded when they change on disk.
//!
//! Polls size and modification time rather than using inotify: polling also
//! sees Kubernetes ConfigMap symlink swaps and network filesystems, and the
//! handful of stats per interval costs nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::{ChangeError, Registry, source};

/// File extensions read from a `--descriptor-dir`.
const EXTENSIONS: [&str; 4] = ["binpb", "pb", "protoset", "desc"];

/// What identifies one version of the watched files.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The files to load: the listed ones, then each directory's descriptor
/// files in name order.
pub fn files(listed: &[PathBuf], dirs: &[PathBuf]) -> Result<Vec<PathBuf>, Vec<String>> {
    let mut files = listed.to_vec();
    let mut errors = Vec::new();
    for dir in dirs {
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e)))
                    .collect();
                found.sort();
                files.extend(found);
            }
            Err(e) => errors.push(format!("{}: {e}", dir.display())),
        }
    }
    if errors.is_empty() { Ok(files) } else { Err(errors) }
}

/// Reads files and names each set by its file name, which must be unique.
pub fn read_named(paths: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>, Vec<String>> {
    let mut named: Vec<(String, Vec<u8>)> = Vec::with_capacity(paths.len());
    let mut errors = Vec::new();
    for (path, bytes) in paths.iter().zip(source::read_files(paths)?) {
        let name = path.file_name().map_or_else(|| bytes.0.clone(), |n| n.to_string_lossy().into_owned());
        if named.iter().any(|(n, _)| *n == name) {
            errors.push(format!("{}: another descriptor file is also named {name:?}", path.display()));
        }
        named.push((name, bytes.1));
    }
    if errors.is_empty() { Ok(named) } else { Err(errors) }
}

fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            (p.clone(), len, meta.and_then(|m| m.modified().ok()))
        })
        .collect()
}

/// Reloads the file sets whenever a file or directory listing changes; an
/// invalid change is logged and the running snapshot kept.
pub fn spawn(
    registry: Arc<Registry>,
    listed: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut last = files(&listed, &dirs).map(|f| fingerprint(&f)).unwrap_or_default();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let Ok(current) = files(&listed, &dirs) else {
                continue;
            };
            let print = fingerprint(&current);
            if print == last {
                continue;
            }
            last = print;
            reload(&registry, &current).await;
        }
    });
}

async fn reload(registry: &Registry, files: &[PathBuf]) {
    let sets = match read_named(files) {
        Ok(sets) => sets,
        Err(errors) => {
            tracing::warn!(?errors, "descriptor files unreadable; keeping the current snapshot");
            return;
        }
    };
    match registry.replace_file_sets(sets).await {
        Ok(snapshot) => tracing::info!(generation = snapshot.generation, "descriptor files reloaded"),
        Err(ChangeError::Invalid(errors) | ChangeError::Conflict(errors)) => {
            tracing::warn!(?errors, "changed descriptor files rejected; keeping the current snapshot")
        }
        Err(error) => tracing::warn!(?error, "descriptor files not reloaded"),
    }
}
