//! Descriptor sources: binary `FileDescriptorSet`s merged into one pool that
//! always knows the bundled `google.api`, `google.rpc` and well-known types.

use std::collections::HashMap;
use std::path::Path;

use prost::Message;
use prost_reflect::DescriptorPool;

use super::LoadErrors;
use crate::pb::BUNDLED_DESCRIPTOR_SET;

/// `google.protobuf.FileDescriptorSet` with its files left encoded.
#[derive(Clone, PartialEq, prost::Message)]
struct RawSet {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

/// Just the name of a `google.protobuf.FileDescriptorProto`.
#[derive(Clone, PartialEq, prost::Message)]
struct RawFileName {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
}

/// A pool holding only the bundled files.
pub fn bundled_pool() -> Result<DescriptorPool, String> {
    DescriptorPool::decode(BUNDLED_DESCRIPTOR_SET).map_err(|e| format!("bundled descriptors: {e}"))
}

/// A merged pool and, for each file, the index of the set it came from.
#[derive(Debug)]
pub struct Merged {
    pub pool: DescriptorPool,
    pub owners: HashMap<String, usize>,
}

/// Merges descriptor sets, each given with the name used in errors, onto the
/// bundled files. A file that two sets both carry must be identical in both
/// (the bundled `google/...` files excepted: the gateway's copy is used).
/// Reports every set that fails, not just the first.
pub fn merge<B: AsRef<[u8]>>(sets: &[(String, B)]) -> Result<Merged, LoadErrors> {
    let mut pool = bundled_pool().map_err(|e| LoadErrors::invalid(vec![e]))?;
    let mut owners: HashMap<String, usize> = HashMap::new();
    let mut seen: HashMap<String, (usize, Vec<u8>)> = HashMap::new();
    let mut errors = Vec::new();
    for (index, (name, bytes)) in sets.iter().enumerate() {
        let bytes = bytes.as_ref();
        let files = match file_entries(bytes) {
            Ok(files) => files,
            Err(e) => {
                errors.push(format!("{name}: {e}"));
                continue;
            }
        };
        let mut consistent = true;
        for (file, raw) in files {
            if pool.get_file_by_name(&file).is_some() && !seen.contains_key(&file) {
                continue;
            }
            match seen.get(&file) {
                Some((other, first)) if *first != raw => {
                    consistent = false;
                    errors.push(format!("{name}: file {file:?} differs from the one in {}", sets[*other].0));
                }
                Some(_) => {}
                None => {
                    owners.insert(file.clone(), index);
                    seen.insert(file, (index, raw));
                }
            }
        }
        if consistent && let Err(e) = pool.decode_file_descriptor_set(bytes) {
            errors.push(format!("{name}: {e}"));
        }
    }
    if errors.is_empty() { Ok(Merged { pool, owners }) } else { Err(LoadErrors::invalid(errors)) }
}

/// The name and raw bytes of each file in an encoded set, without decoding
/// the descriptors themselves.
fn file_entries(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let set = RawSet::decode(bytes).map_err(|e| format!("not a FileDescriptorSet: {e}"))?;
    set.file
        .into_iter()
        .map(|raw| {
            let name = RawFileName::decode(raw.as_slice())
                .map_err(|e| format!("not a FileDescriptorSet: {e}"))?
                .name
                .ok_or("a file in the set has no name")?;
            Ok((name, raw))
        })
        .collect()
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

/// Compiles `.proto` sources (import path, text) into a binary descriptor
/// set. Imports resolve against the given sources, the bundled `google/api`,
/// `google/rpc` and `google/protobuf` files, and the `registered` sets only —
/// never the filesystem.
pub fn compile_protos(sources: &[(String, String)], registered: &[&[u8]]) -> Result<Vec<u8>, Vec<String>> {
    let bundled = protox::file::DescriptorSetFileResolver::decode(BUNDLED_DESCRIPTOR_SET)
        .map_err(|e| vec![format!("bundled descriptors: {e}")])?;
    let mut resolver = protox::file::ChainFileResolver::new();
    resolver.add(MemoryResolver(sources.to_vec()));
    resolver.add(bundled);
    for set in registered {
        let set = protox::file::DescriptorSetFileResolver::decode(*set)
            .map_err(|e| vec![format!("registered descriptors: {e}")])?;
        resolver.add(set);
    }
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
    /// Sources are named by their import path already.
    fn resolve_path(&self, path: &Path) -> Option<String> {
        let path = path.to_str()?;
        self.0.iter().any(|(n, _)| n == path).then(|| path.to_string())
    }

    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        match self.0.iter().find(|(n, _)| n == name) {
            Some((name, source)) => protox::file::File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}
