//! The registry: descriptor sets in, one immutable `Snapshot` out, swapped
//! atomically. A request keeps the snapshot it started with.

pub mod snapshot;
pub mod source;

use std::sync::Arc;

use arc_swap::ArcSwap;

pub use snapshot::{MethodEntry, Snapshot, UpstreamMap};

/// Holds the current snapshot.
#[derive(Debug)]
pub struct Registry {
    current: ArcSwap<Snapshot>,
}

impl Registry {
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// The snapshot for one request: one atomic load, no lock.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the whole snapshot; requests in flight keep the old one.
    pub fn swap(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }
}

#[cfg(test)]
mod tests;
