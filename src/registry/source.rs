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
    if errors.is_empty() {
        Ok(pool)
    } else {
        Err(errors)
    }
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
    if errors.is_empty() {
        Ok(sets)
    } else {
        Err(errors)
    }
}

/// Compiles `.proto` sources (import path, text) into a binary descriptor
/// set. Imports resolve against the given sources and the bundled
/// `google/api`, `google/rpc` and `google/protobuf` files only — never the
/// filesystem.
pub fn compile_protos(sources: &[(String, String)]) -> Result<Vec<u8>, Vec<String>> {
    let bundled = protox::file::DescriptorSetFileResolver::decode(BUNDLED_DESCRIPTOR_SET)
        .map_err(|e| vec![format!("bundled descriptors: {e}")])?;
    let mut resolver = protox::file::ChainFileResolver::new();
    resolver.add(MemoryResolver(sources.to_vec()));
    resolver.add(bundled);
    resolver.add(protox::file::GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true).include_source_info(true);
    for (name, _) in sources {
        compiler.open_file(name).map_err(|e| vec![e.to_string()])?;
    }
    Ok(compiler.encode_file_descriptor_set())
}

/// `.proto` sources held in memory.
struct MemoryResolver(Vec<(String, String)>);

impl protox::file::FileResolver for MemoryResolver {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        match self.0.iter().find(|(n, _)| n == name) {
            Some((name, source)) => protox::file::File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}
