//! Registered descriptor sets and their versions: the registry's source of
//! truth, from which every snapshot is built and which the stores persist.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Every registered set by name.
pub type Sets = BTreeMap<String, RegisteredSet>;

/// One named descriptor set and its kept versions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegisteredSet {
    pub name: String,
    /// Backend of this set's services (unless the config names one per service).
    pub upstream: Option<String>,
    /// Oldest first; bounded in count, the active one always kept.
    pub versions: Vec<Version>,
    pub active: u64,
    /// Sets from `--descriptor` files: replaced by reloads, not by the API.
    #[serde(default)]
    pub from_file: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Version {
    pub number: u64,
    /// `sha256:<hex>` of the bytes.
    pub digest: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    #[serde(skip)]
    pub bytes: Arc<Vec<u8>>,
}

impl RegisteredSet {
    pub fn active_version(&self) -> Option<&Version> {
        self.versions.iter().find(|v| v.number == self.active)
    }

    /// Adds `bytes` as the next version and makes it active, unless they are
    /// the active version already. Returns whether anything changed.
    pub fn push(&mut self, bytes: Arc<Vec<u8>>, max_versions: usize) -> bool {
        let digest = digest(&bytes);
        if self.active_version().is_some_and(|v| v.digest == digest) {
            return false;
        }
        let number = self.versions.iter().map(|v| v.number).max().unwrap_or(0) + 1;
        self.versions.push(Version { number, digest, created: now(), bytes });
        self.active = number;
        self.prune(max_versions);
        true
    }

    /// Drops the oldest versions beyond `max`, never the active one.
    fn prune(&mut self, max: usize) {
        while self.versions.len() > max.max(1) {
            let Some(oldest) = self.versions.iter().position(|v| v.number != self.active) else {
                return;
            };
            self.versions.remove(oldest);
        }
    }
}

/// `sha256:<hex>` of a descriptor set.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Set names appear in URLs and file names: keep them plain.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid set name {name:?}: use 1 to 128 letters, digits, '-', '_' or '.', not starting with '.'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> RegisteredSet {
        RegisteredSet { name: "s".into(), upstream: None, versions: Vec::new(), active: 0, from_file: false }
    }

    #[test]
    fn versions_are_numbered_deduplicated_and_bounded() {
        let mut s = set();
        assert!(s.push(Arc::new(vec![1]), 2));
        assert!(!s.push(Arc::new(vec![1]), 2), "same bytes again change nothing");
        assert!(s.push(Arc::new(vec![2]), 2));
        assert!(s.push(Arc::new(vec![3]), 2));
        let numbers: Vec<u64> = s.versions.iter().map(|v| v.number).collect();
        assert_eq!((numbers, s.active), (vec![2, 3], 3));
        s.active = 2;
        s.push(Arc::new(vec![4]), 2);
        let numbers: Vec<u64> = s.versions.iter().map(|v| v.number).collect();
        assert_eq!((numbers, s.active), (vec![3, 4], 4));
    }

    #[test]
    fn digests_and_names() {
        assert_eq!(digest(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        for ok in ["library", "a.b-c_d", "v1"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "a b", "x:rollback", &"n".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
