//! The registry: named descriptor sets in, one immutable `Snapshot` out,
//! swapped atomically. Requests read the snapshot without locks and keep the
//! one they started with; writers are serialized, validate the whole next
//! state off the request path, persist it, and only then swap.

pub mod reflect;
pub mod sets;
pub mod snapshot;
pub mod source;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::Mutex;

use crate::upstream::Upstreams;
pub use sets::{RegisteredSet, Sets};
pub use snapshot::{MethodEntry, Snapshot, UpstreamMap};
pub use store::StateDir;

/// Holds the current snapshot and the sets it was built from.
#[derive(Debug)]
pub struct Registry {
    current: ArcSwap<Snapshot>,
    sets: Mutex<Sets>,
    settings: Settings,
    generation: AtomicU64,
}

/// What the registry needs besides the sets.
#[derive(Debug, Clone)]
pub struct Settings {
    pub upstreams: UpstreamMap,
    pub channels: Arc<Upstreams>,
    /// Versions kept per set (the active one always).
    pub max_versions: usize,
    pub store: Option<StateDir>,
}

/// Every problem that keeps sets from loading; `conflict` when route
/// conflicts are among them (an API answers 409 rather than 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadErrors {
    pub messages: Vec<String>,
    pub conflict: bool,
}

/// Why a registry change was refused. Nothing changed in any case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    Invalid(Vec<String>),
    Conflict(Vec<String>),
    NotFound(String),
    /// The set comes from a `--descriptor` file, not the API.
    FromFile(String),
    Storage(String),
}

/// The outcome of an accepted change.
#[derive(Debug, Clone)]
pub struct Change {
    /// False when the set existed before.
    pub created: bool,
    pub set: RegisteredSet,
    pub snapshot: Arc<Snapshot>,
}

impl LoadErrors {
    pub fn invalid(messages: Vec<String>) -> Self {
        Self {
            messages,
            conflict: false,
        }
    }
}

impl From<LoadErrors> for ChangeError {
    fn from(errors: LoadErrors) -> Self {
        if errors.conflict {
            Self::Conflict(errors.messages)
        } else {
            Self::Invalid(errors.messages)
        }
    }
}

impl Registry {
    /// Opens the registry: the stored sets plus the sets from files (named
    /// by the caller), validated together.
    pub async fn open(
        settings: Settings,
        file_sets: Vec<(String, Vec<u8>)>,
    ) -> Result<Self, LoadErrors> {
        let mut sets = match &settings.store {
            Some(store) => store.load().map_err(|e| LoadErrors::invalid(vec![e]))?,
            None => Sets::new(),
        };
        for (name, bytes) in file_sets {
            let mut set = RegisteredSet {
                name: name.clone(),
                upstream: None,
                versions: Vec::new(),
                active: 0,
                from_file: true,
            };
            set.push(Arc::new(bytes), settings.max_versions);
            sets.insert(name, set);
        }
        let snapshot = build(&sets, &settings, 1).await?;
        Ok(Self {
            current: ArcSwap::from_pointee(snapshot),
            sets: Mutex::new(sets),
            settings,
            generation: AtomicU64::new(1),
        })
    }

    /// The snapshot for one request: one atomic load, no lock.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A copy of the registered sets.
    pub async fn sets(&self) -> Sets {
        self.sets.lock().await.clone()
    }

    /// Registers `bytes` as the next version of `name` (or the first).
    pub async fn register(
        &self,
        name: &str,
        bytes: Vec<u8>,
        upstream: Option<String>,
    ) -> Result<Change, ChangeError> {
        sets::validate_name(name).map_err(|e| ChangeError::Invalid(vec![e]))?;
        self.change(name, |sets, max| {
            let created = !sets.contains_key(name);
            let set = sets
                .entry(name.to_string())
                .or_insert_with(|| RegisteredSet {
                    name: name.to_string(),
                    upstream: None,
                    versions: Vec::new(),
                    active: 0,
                    from_file: false,
                });
            if set.from_file {
                return Err(ChangeError::FromFile(name.to_string()));
            }
            if upstream.is_some() {
                set.upstream = upstream;
            }
            set.push(Arc::new(bytes), max);
            Ok(created)
        })
        .await
    }

    /// Makes an earlier kept version active again.
    pub async fn rollback(&self, name: &str, version: u64) -> Result<Change, ChangeError> {
        self.change(name, |sets, _| {
            let set = sets
                .get_mut(name)
                .ok_or_else(|| ChangeError::NotFound(name.to_string()))?;
            if !set.versions.iter().any(|v| v.number == version) {
                return Err(ChangeError::NotFound(format!("{name} version {version}")));
            }
            set.active = version;
            Ok(false)
        })
        .await
    }

    /// Removes a set and its routes.
    pub async fn delete(&self, name: &str) -> Result<Change, ChangeError> {
        let mut sets = self.sets.lock().await;
        let set = sets
            .get(name)
            .ok_or_else(|| ChangeError::NotFound(name.to_string()))?
            .clone();
        if set.from_file {
            return Err(ChangeError::FromFile(name.to_string()));
        }
        let mut next = sets.clone();
        next.remove(name);
        let snapshot = self.commit(&mut sets, next).await?;
        Ok(Change {
            created: false,
            set,
            snapshot,
        })
    }

    /// Replaces every API-registered set (a replica catching up with a
    /// shared store); sets from files stay. Nothing is persisted.
    pub async fn replace_registered(&self, registered: Sets) -> Result<Arc<Snapshot>, ChangeError> {
        let mut sets = self.sets.lock().await;
        let mut next: Sets = sets
            .iter()
            .filter(|(_, s)| s.from_file)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        next.extend(registered.into_iter().filter(|(_, s)| !s.from_file));
        if next == *sets {
            return Ok(self.snapshot());
        }
        let snapshot = self.build_next(&next).await?;
        *sets = next;
        Ok(self.swap(snapshot))
    }

    /// Applies `edit` to a copy of the sets, then validates, persists and
    /// swaps; on any failure nothing changes.
    async fn change<F>(&self, name: &str, edit: F) -> Result<Change, ChangeError>
    where
        F: FnOnce(&mut Sets, usize) -> Result<bool, ChangeError>,
    {
        let mut sets = self.sets.lock().await;
        let mut next = sets.clone();
        let created = edit(&mut next, self.settings.max_versions)?;
        let set = next
            .get(name)
            .cloned()
            .ok_or_else(|| ChangeError::NotFound(name.to_string()))?;
        let snapshot = if next == *sets {
            self.snapshot()
        } else {
            self.commit(&mut sets, next).await?
        };
        Ok(Change {
            created,
            set,
            snapshot,
        })
    }

    async fn commit(&self, sets: &mut Sets, next: Sets) -> Result<Arc<Snapshot>, ChangeError> {
        let snapshot = self.build_next(&next).await?;
        if let Some(store) = self.settings.store.clone() {
            let to_save = next.clone();
            tokio::task::spawn_blocking(move || store.save(&to_save))
                .await
                .map_err(|e| ChangeError::Storage(e.to_string()))?
                .map_err(|e| ChangeError::Storage(format!("cannot persist the registry: {e}")))?;
        }
        *sets = next;
        Ok(self.swap(snapshot))
    }

    async fn build_next(&self, next: &Sets) -> Result<Snapshot, ChangeError> {
        let generation = self.generation.load(Ordering::SeqCst) + 1;
        Ok(build(next, &self.settings, generation).await?)
    }

    fn swap(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        self.generation.store(snapshot.generation, Ordering::SeqCst);
        let snapshot = Arc::new(snapshot);
        self.current.store(snapshot.clone());
        tracing::info!(
            generation = snapshot.generation,
            routes = snapshot.routes.bindings().len(),
            "snapshot swapped"
        );
        snapshot
    }
}

/// Builds a snapshot on the blocking pool: decoding descriptors is CPU work
/// that must not stall request tasks.
async fn build(sets: &Sets, settings: &Settings, generation: u64) -> Result<Snapshot, LoadErrors> {
    let (sets, settings) = (sets.clone(), settings.clone());
    tokio::task::spawn_blocking(move || {
        Snapshot::build(&sets, &settings.upstreams, &settings.channels, generation)
    })
    .await
    .map_err(|e| LoadErrors::invalid(vec![format!("snapshot build failed: {e}")]))?
}

#[cfg(test)]
mod tests;
