//! The registry: named descriptor sets in, one immutable `Snapshot` out,
//! swapped atomically. Requests read the snapshot without locks and keep the
//! one they started with; writers are serialized, validate the whole next
//! state off the request path, persist it, and only then swap.

pub mod cost;
pub mod reflect;
pub mod sets;
pub mod shared;
pub mod snapshot;
pub mod source;
pub mod state_dir;
pub mod store;
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::Mutex;

use crate::upstream::Upstreams;
pub use sets::{RegisteredSet, Sets};
pub use shared::RedisStore;
pub use snapshot::{MethodEntry, Snapshot, UpstreamMap};
pub use state_dir::StateDir;
pub use store::Store;

/// Holds the current snapshot and the sets it was built from.
#[derive(Debug)]
pub struct Registry {
    current: ArcSwap<Snapshot>,
    sets: Mutex<Sets>,
    settings: Settings,
    generation: AtomicU64,
    /// The last store failure, cleared by the next success; for readiness.
    store_error: std::sync::Mutex<Option<String>>,
    /// What the store held damaged at start.
    damaged: Vec<String>,
    guard: arc_swap::ArcSwapOption<Guard>,
    /// True once the gateway drains: what outlives every config reload,
    /// so long-lived calls (health watches) of any context learn it.
    draining: tokio::sync::watch::Sender<bool>,
}

/// A check of a new snapshot by what depends on it; the problems if it fails.
pub struct Guard(pub Box<GuardFn>);

pub type GuardFn = dyn Fn(&Snapshot) -> Result<(), Vec<String>> + Send + Sync;

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Guard")
    }
}

/// Attempts at a change while other replicas keep winning the race; each
/// lost race means another change landed, so this bounds waiting, not
/// progress.
const MAX_ATTEMPTS: usize = 64;

/// What the registry needs besides the sets.
#[derive(Debug, Clone)]
pub struct Settings {
    pub upstreams: UpstreamMap,
    pub channels: Arc<Upstreams>,
    /// Versions kept per set (the active one always).
    pub max_versions: usize,
    pub store: Option<Store>,
    /// Most memory the active sets may cost (`cost::elements` estimate).
    pub memory_budget: u64,
    /// Serve the valid routes of sets with invalid or conflicting ones.
    pub lenient_routes: bool,
}

/// Every problem that keeps sets from loading; `conflict` when route
/// conflicts are among them (an API answers 409 rather than 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadErrors {
    pub messages: Vec<String>,
    pub conflict: bool,
    /// Over `registry.memory_budget_mb` (an API answers 413).
    pub too_large: bool,
}

/// Why a registry change was refused. Nothing changed in any case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    Invalid(Vec<String>),
    Conflict(Vec<String>),
    /// The sets would cost more memory than the budget allows.
    TooLarge(String),
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
        Self { messages, conflict: false, too_large: false }
    }
}

impl From<LoadErrors> for ChangeError {
    fn from(errors: LoadErrors) -> Self {
        match errors {
            LoadErrors { too_large: true, messages, .. } => Self::TooLarge(messages.join("; ")),
            LoadErrors { conflict: true, messages, .. } => Self::Conflict(messages),
            LoadErrors { messages, .. } => Self::Invalid(messages),
        }
    }
}

impl Registry {
    /// Opens the registry: the stored sets plus the sets from files (named
    /// by the caller), validated together. A shared store that cannot be
    /// read yet is reported and retried by the follower, not fatal.
    /// The upstream pools every snapshot shares.
    pub fn upstreams(&self) -> &Arc<Upstreams> {
        &self.settings.channels
    }

    pub async fn open(settings: Settings, file_sets: Vec<(String, Vec<u8>)>) -> Result<Self, LoadErrors> {
        let mut store_error = None;
        let mut damaged = Vec::new();
        let mut sets = match &settings.store {
            Some(store) => match store.load().await {
                Ok((sets, damage)) => {
                    for problem in &damage {
                        tracing::error!(%problem, "damaged registry state left out");
                    }
                    damaged = damage;
                    sets
                }
                Err(e) if store.is_shared() => {
                    tracing::warn!(error = %e, "shared registry unreachable; starting without it");
                    store_error = Some(e);
                    Sets::new()
                }
                Err(e) => return Err(LoadErrors::invalid(vec![e])),
            },
            None => Sets::new(),
        };
        for (name, bytes) in file_sets {
            sets.insert(name.clone(), file_set(name, bytes, settings.max_versions));
        }
        let snapshot = build(&sets, &settings, 1).await?;
        Ok(Self {
            current: ArcSwap::from_pointee(snapshot),
            sets: Mutex::new(sets),
            settings,
            generation: AtomicU64::new(1),
            store_error: std::sync::Mutex::new(store_error),
            damaged,
            guard: arc_swap::ArcSwapOption::empty(),
            draining: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Stored state found damaged at start and left out (set aside on disk).
    pub fn damaged(&self) -> &[String] {
        &self.damaged
    }

    /// Marks the gateway as draining (it stops accepting and finishes
    /// what is in flight).
    pub fn drain(&self) {
        self.draining.send_replace(true);
    }

    /// Whether the gateway drains, and a way to wait for it.
    pub fn draining(&self) -> tokio::sync::watch::Receiver<bool> {
        self.draining.subscribe()
    }

    /// The snapshot for one request: one atomic load, no lock.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The snapshot a request is served with: pinned in its extensions on
    /// first use, so policy layers and the protocol handler see the same one.
    pub fn snapshot_for(&self, extensions: &mut http::Extensions) -> Arc<Snapshot> {
        if let Some(snapshot) = extensions.get::<Arc<Snapshot>>() {
            return snapshot.clone();
        }
        let snapshot = self.snapshot();
        extensions.insert(snapshot.clone());
        snapshot
    }

    /// A copy of the registered sets.
    pub async fn sets(&self) -> Sets {
        self.sets.lock().await.clone()
    }

    /// The last failure to reach the store, if it has not recovered since.
    pub fn store_error(&self) -> Option<String> {
        self.store_error.lock().ok().and_then(|e| e.clone())
    }

    pub fn store(&self) -> Option<&Store> {
        self.settings.store.as_ref()
    }

    /// Registers `bytes` as the next version of `name` (or the first).
    pub async fn register(&self, name: &str, bytes: Vec<u8>, upstream: Option<String>) -> Result<Change, ChangeError> {
        sets::validate_name(name).map_err(|e| ChangeError::Invalid(vec![e]))?;
        let bytes = Arc::new(bytes);
        self.change(name, |sets, max| {
            let created = !sets.contains_key(name);
            let set = sets.entry(name.to_string()).or_insert_with(|| RegisteredSet {
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
                set.upstream = upstream.clone();
            }
            set.push(bytes.clone(), max);
            Ok(Some(created))
        })
        .await
    }

    /// Makes an earlier kept version active again.
    pub async fn rollback(&self, name: &str, version: u64) -> Result<Change, ChangeError> {
        self.change(name, |sets, _| {
            let set = sets.get_mut(name).ok_or_else(|| ChangeError::NotFound(name.to_string()))?;
            if !set.versions.iter().any(|v| v.number == version) {
                return Err(ChangeError::NotFound(format!("{name} version {version}")));
            }
            set.active = version;
            Ok(Some(false))
        })
        .await
    }

    /// Removes a set and its routes.
    pub async fn delete(&self, name: &str) -> Result<Change, ChangeError> {
        self.change(name, |sets, _| {
            let set = sets.get(name).ok_or_else(|| ChangeError::NotFound(name.to_string()))?;
            if set.from_file {
                return Err(ChangeError::FromFile(name.to_string()));
            }
            sets.remove(name);
            Ok(None)
        })
        .await
    }

    /// Replaces every set that came from a file (files changed on disk);
    /// API-registered sets stay. Refused as a whole if the result is invalid.
    pub async fn replace_file_sets(&self, files: Vec<(String, Vec<u8>)>) -> Result<Arc<Snapshot>, ChangeError> {
        let mut sets = self.sets.lock().await;
        let mut next: Sets = sets.iter().filter(|(_, s)| !s.from_file).map(|(k, v)| (k.clone(), v.clone())).collect();
        for (name, bytes) in files {
            if next.contains_key(&name) {
                return Err(ChangeError::Invalid(vec![format!("file set {name} has the name of a registered set")]));
            }
            next.insert(name.clone(), file_set(name, bytes, self.settings.max_versions));
        }
        if next == *sets {
            return Ok(self.snapshot());
        }
        let snapshot = self.build_next(&next).await?;
        *sets = next;
        Ok(self.swap(snapshot))
    }

    /// Catches up with a shared store: its sets replace every API-registered
    /// set; sets from files stay. Nothing is written back.
    pub async fn follow_store(&self) -> Result<Arc<Snapshot>, ChangeError> {
        let Some(store) = &self.settings.store else {
            return Ok(self.snapshot());
        };
        let mut sets = self.sets.lock().await;
        let registered = self.record(store.load().await.map(|(sets, _)| sets)).map_err(ChangeError::Storage)?;
        let mut next: Sets = sets.iter().filter(|(_, s)| s.from_file).map(|(k, v)| (k.clone(), v.clone())).collect();
        next.extend(registered.into_iter().filter(|(_, s)| !s.from_file));
        if next == *sets {
            return Ok(self.snapshot());
        }
        let snapshot = self.build_next(&next).await?;
        *sets = next;
        Ok(self.swap(snapshot))
    }

    /// Applies `edit` to the latest sets (re-read first when the store is
    /// shared), then validates, persists and swaps; on any failure nothing
    /// changes. `edit` returns whether the set was created, or `None` when
    /// it removed the set.
    async fn change<F>(&self, name: &str, mut edit: F) -> Result<Change, ChangeError>
    where
        F: FnMut(&mut Sets, usize) -> Result<Option<bool>, ChangeError>,
    {
        let mut sets = self.sets.lock().await;
        for _ in 0..MAX_ATTEMPTS {
            let base = match &self.settings.store {
                Some(store) if store.is_shared() => self.shared_base(store, &sets).await?,
                _ => sets.clone(),
            };
            let mut next = base.clone();
            let outcome = edit(&mut next, self.settings.max_versions)?;
            let set = match outcome {
                Some(_) => next.get(name).cloned(),
                None => base.get(name).cloned(),
            }
            .ok_or_else(|| ChangeError::NotFound(name.to_string()))?;
            let created = outcome.unwrap_or(false);
            if next == base && base == *sets {
                return Ok(Change { created, set, snapshot: self.snapshot() });
            }
            let snapshot = self.build_next(&next).await?;
            if let Some(store) = &self.settings.store {
                let saved = self.record(store.save(&base, &next).await);
                if saved.map_err(ChangeError::Storage)? == shared::Saved::Conflict {
                    // Let the winner's announcement land before reading again.
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    continue;
                }
            }
            *sets = next;
            return Ok(Change { created, set, snapshot: self.swap(snapshot) });
        }
        Err(ChangeError::Storage("the shared registry kept changing; try again".into()))
    }

    /// The shared sets plus this process's file sets.
    async fn shared_base(&self, store: &Store, sets: &Sets) -> Result<Sets, ChangeError> {
        let mut base = self.record(store.load().await.map(|(sets, _)| sets)).map_err(ChangeError::Storage)?;
        base.retain(|_, s| !s.from_file);
        base.extend(sets.iter().filter(|(_, s)| s.from_file).map(|(k, v)| (k.clone(), v.clone())));
        Ok(base)
    }

    /// Notes a store outcome for readiness.
    fn record<T>(&self, result: Result<T, String>) -> Result<T, String> {
        if let Ok(mut last) = self.store_error.lock() {
            *last = result.as_ref().err().cloned();
        }
        result
    }

    async fn build_next(&self, next: &Sets) -> Result<Snapshot, ChangeError> {
        let generation = self.generation.load(Ordering::SeqCst) + 1;
        let snapshot = build(next, &self.settings, generation).await?;
        if let Some(guard) = self.guard.load().as_deref() {
            // What else depends on the schema (composite endpoints) must
            // still fit, or the change is refused like a route conflict.
            (guard.0)(&snapshot).map_err(ChangeError::Conflict)?;
        }
        Ok(snapshot)
    }

    /// Installs the check every new snapshot of a change must pass.
    pub fn set_guard(&self, guard: Guard) {
        self.guard.store(Some(Arc::new(guard)));
    }

    fn swap(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        self.generation.store(snapshot.generation, Ordering::SeqCst);
        let snapshot = Arc::new(snapshot);
        self.current.store(snapshot.clone());
        tracing::info!(generation = snapshot.generation, routes = snapshot.routes.bindings().len(), "snapshot swapped");
        for reason in &snapshot.skipped {
            tracing::warn!(%reason, "route skipped (registry.lenient_routes)");
        }
        snapshot
    }
}

fn file_set(name: String, bytes: Vec<u8>, max_versions: usize) -> RegisteredSet {
    let mut set = RegisteredSet { name, upstream: None, versions: Vec::new(), active: 0, from_file: true };
    set.push(Arc::new(bytes), max_versions);
    set
}

/// Builds a snapshot on the blocking pool: decoding descriptors is CPU work
/// that must not stall request tasks.
async fn build(sets: &Sets, settings: &Settings, generation: u64) -> Result<Snapshot, LoadErrors> {
    within_budget(sets, settings.memory_budget)?;
    let (sets, settings) = (sets.clone(), settings.clone());
    tokio::task::spawn_blocking(move || {
        let built =
            Snapshot::build_with(&sets, &settings.upstreams, &settings.channels, generation, settings.lenient_routes);
        release_freed_memory();
        built
    })
    .await
    .map_err(|e| LoadErrors::invalid(vec![format!("snapshot build failed: {e}")]))?
}

/// Refuses sets whose estimated memory (see `cost`) would pass the budget,
/// before anything is decoded.
fn within_budget(sets: &Sets, budget: u64) -> Result<(), LoadErrors> {
    let active = sets.values().filter_map(|set| Some((set.name.as_str(), set.active_version()?.bytes.as_slice())));
    let costs: Vec<(&str, u64)> =
        active.map(|(name, bytes)| (name, cost::elements(bytes) * cost::BYTES_PER_ELEMENT)).collect();
    let total: u64 = costs.iter().map(|(_, cost)| cost).sum();
    if total <= budget {
        return Ok(());
    }
    let mib = |bytes: u64| bytes.div_ceil(1024 * 1024);
    let parts: Vec<String> = costs.iter().map(|(name, cost)| format!("{name} ~{} MiB", mib(*cost))).collect();
    let message = format!(
        "the descriptor sets would take ~{} MiB of memory ({}), over registry.memory_budget_mb = {}",
        mib(total),
        parts.join(", "),
        mib(budget)
    );
    Err(LoadErrors { messages: vec![message], conflict: false, too_large: true })
}

/// Building a snapshot (the OpenAPI document above all) allocates hundreds
/// of MB transiently for 10 000 routes; glibc keeps the freed pages, so a
/// gateway stayed at 470 MB RSS with a 40 MB live heap (measured with
/// massif). Hand them back to the system after each big build.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's own arenas;
    // it takes no pointers and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests;
