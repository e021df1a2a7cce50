//! Descriptor sources: binary `FileDescriptorSet`s merged into one pool that
//! always knows the bundled `google.api`, `google.rpc` and well-known types.

use std::path::Path;

use prost_reflect::DescriptorPool;

use crate::pb::BUNDLED_DESCRIPTOR_SET;

/// A pool holding only the bundled files.
pub fn bundled_pool() -> Result<DescriptorPool, String> {
    DescriptorPool::decode(BUNDLED_DESCRIPTOR_SET).map_err(|e| format!("bundled descriptors: {e}"))
}

/// Merges descriptor sets, each given with the name used in errors. Files
/// already in the pool (such as `google/api/http.proto`) are kept as they
/// are. Reports every set that fails, not just the first.
pub fn merge(sets: &[(String, Vec<u8>)]) -> Result<DescriptorPool, Vec<String>> {
    let mut pool = bundled_pool().map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    for (name, bytes) in sets {
        if let Err(e) = pool.decode_file_descriptor_set(bytes.as_slice()) {
            errors.push(format!("{name}: {e}"));
        }
    }
    if errors.is_empty() { Ok(pool) } else { Err(errors) }
}

/// Reads descriptor set files, reporting every unreadable one.
pub fn read_files(paths: &[impl AsRef<Path>]) -> Result<Vec<(String, Vec<u8>)>, Vec<String>> {
    let mut sets = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let path = path.as_ref();
        match std::fs::read(path) {
            Ok(bytes) => sets.push((path.display().to_string(), bytes)),
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    if errors.is_empty() { Ok(sets) } else { Err(errors) }
}
