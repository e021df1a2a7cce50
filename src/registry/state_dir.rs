//! Durable registrations in a state directory. Blobs are content-addressed
//! and written (temp file, fsync, rename) before the manifest that names
//! them, and the manifest is replaced the same way: a crash at any point
//! leaves either the old or the new manifest, each fully backed by blobs.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::sets::{RegisteredSet, Sets, digest};

const MANIFEST: &str = "manifest.json";
const BLOBS: &str = "blobs";
const DAMAGED: &str = "damaged";

/// A state directory holding every registered set and kept version.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    sets: Vec<RegisteredSet>,
}

impl StateDir {
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join(BLOBS))?;
        Ok(Self { root })
    }

    /// Reads every set the manifest names, checking each blob's digest.
    /// Damage never stops a start: a version whose blob is missing or does
    /// not match its digest is left out (the newest intact one becomes
    /// active), an unreadable manifest means starting empty, and each
    /// damaged file is moved into `damaged/` (never overwritten by the next
    /// save) and described in the returned list.
    pub fn load(&self) -> io::Result<(Sets, Vec<String>)> {
        let path = self.root.join(MANIFEST);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Sets::new(), Vec::new())),
            Err(e) => return Err(e),
        };
        let mut damage = Vec::new();
        let manifest: Manifest = match serde_json::from_slice(&text) {
            Ok(manifest) => manifest,
            Err(e) => {
                let kept = self.set_aside(&path)?;
                damage.push(format!("{MANIFEST}: unreadable ({e}); started without stored sets, kept as {kept}"));
                return Ok((Sets::new(), damage));
            }
        };
        let mut sets = Sets::new();
        for mut set in manifest.sets {
            let mut intact = Vec::with_capacity(set.versions.len());
            for mut version in std::mem::take(&mut set.versions) {
                let blob = self.blob_path(&version.digest);
                let problem = match fs::read(&blob) {
                    Ok(bytes) if digest(&bytes) == version.digest => {
                        version.bytes = Arc::new(bytes);
                        intact.push(version);
                        continue;
                    }
                    Ok(_) => format!("content does not match its digest; kept as {}", self.set_aside(&blob)?),
                    Err(e) => format!("unreadable ({e})"),
                };
                damage.push(format!("set {:?} version {}: {}: {problem}", set.name, version.number, blob.display()));
            }
            set.versions = intact;
            let Some(newest) = set.versions.iter().map(|v| v.number).max() else {
                damage.push(format!("set {:?}: no intact version left; not loaded", set.name));
                continue;
            };
            if set.active_version().is_none() {
                damage.push(format!("set {:?}: its active version is damaged; version {newest} is active", set.name));
                set.active = newest;
            }
            sets.insert(set.name.clone(), set);
        }
        Ok((sets, damage))
    }

    /// Moves a damaged file into `damaged/` under a unique name.
    fn set_aside(&self, path: &Path) -> io::Result<String> {
        let dir = self.root.join(DAMAGED);
        fs::create_dir_all(&dir)?;
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
        let target = dir.join(format!("{stamp}-{name}"));
        fs::rename(path, &target)?;
        Ok(target.display().to_string())
    }

    /// Persists `sets` (file-backed sets excepted) durably, then drops blobs
    /// no version names any more.
    pub fn save(&self, sets: &Sets) -> io::Result<()> {
        let kept: Vec<RegisteredSet> = sets.values().filter(|s| !s.from_file).cloned().collect();
        for version in kept.iter().flat_map(|s| &s.versions) {
            let blob = self.blob_path(&version.digest);
            if !blob.exists() {
                write_atomically(&blob, &version.bytes)?;
            }
        }
        let manifest = serde_json::to_vec_pretty(&Manifest { sets: kept.clone() }).map_err(io::Error::other)?;
        write_atomically(&self.root.join(MANIFEST), &manifest)?;
        self.collect_garbage(&kept)
    }

    fn collect_garbage(&self, kept: &[RegisteredSet]) -> io::Result<()> {
        let live: Vec<PathBuf> = kept.iter().flat_map(|s| &s.versions).map(|v| self.blob_path(&v.digest)).collect();
        for entry in fs::read_dir(self.root.join(BLOBS))? {
            let path = entry?.path();
            if !live.contains(&path) {
                fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.root.join(BLOBS).join(format!("{hex}.binpb"))
    }
}

/// Writes a temp file, fsyncs it, renames it over `path` and fsyncs the
/// directory, so `path` holds the old or the new content, never a mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("no parent directory"))?;
    let temp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("state")));
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_every_version_and_collects_garbage() {
        let root = std::env::temp_dir().join(format!("protogate-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let store = StateDir::open(&root).unwrap();
        assert!(store.load().unwrap().0.is_empty());
        let mut set = RegisteredSet {
            name: "a".into(),
            upstream: Some("http://x:1".into()),
            versions: Vec::new(),
            active: 0,
            from_file: false,
        };
        set.push(Arc::new(vec![1, 2]), 2);
        set.push(Arc::new(vec![3]), 2);
        let file_set = RegisteredSet { name: "f".into(), from_file: true, ..set.clone() };
        let sets = Sets::from([("a".to_string(), set.clone()), ("f".to_string(), file_set)]);
        store.save(&sets).unwrap();
        let (loaded, damage) = store.load().unwrap();
        assert!(damage.is_empty());
        assert_eq!(loaded.len(), 1, "file-backed sets are not persisted");
        assert_eq!(loaded["a"], set);
        assert_eq!(*loaded["a"].versions[0].bytes, vec![1, 2]);

        set.push(Arc::new(vec![4]), 1);
        store.save(&Sets::from([("a".to_string(), set)])).unwrap();
        assert_eq!(fs::read_dir(root.join(BLOBS)).unwrap().count(), 1);

        fs::write(
            root.join(BLOBS).join(fs::read_dir(root.join(BLOBS)).unwrap().next().unwrap().unwrap().file_name()),
            b"x",
        )
        .unwrap();
        let (loaded, damage) = store.load().unwrap();
        assert!(loaded.is_empty());
        assert_eq!(damage.len(), 2, "{damage:?}");
        assert!(damage[0].contains("does not match its digest; kept as"), "{damage:?}");
        assert!(damage[1].contains("no intact version left"), "{damage:?}");
        assert_eq!(fs::read_dir(root.join(DAMAGED)).unwrap().count(), 1, "set aside, not deleted");
        fs::remove_dir_all(&root).unwrap();
    }
}
