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
                    if let Some(difference) = schema_difference(first, &raw) {
                        consistent = false;
                        errors.push(format!(
                            "{name}: file {file:?} differs from the one in {}: {difference}",
                            sets[*other].0
                        ));
                    }
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

/// What differs between two copies of one file, ignoring what does not
/// change the schema: source info (comments, locations) and file-level
/// options, which buf and protoc write differently into the same
/// well-known-type files. `None` when both define the same thing.
fn schema_difference(a: &[u8], b: &[u8]) -> Option<String> {
    use prost::Message;
    let decode = |bytes: &[u8]| prost_types::FileDescriptorProto::decode(bytes).ok();
    let (Some(a), Some(b)) = (decode(a), decode(b)) else {
        return Some("one copy cannot be read".into());
    };
    let named = |kind: &str, a: Vec<(String, Vec<u8>)>, b: Vec<(String, Vec<u8>)>| {
        let missing = a.iter().find(|(name, _)| !b.iter().any(|(other, _)| other == name));
        let missing = missing.or_else(|| b.iter().find(|(name, _)| !a.iter().any(|(other, _)| other == name)));
        if let Some((name, _)) = missing {
            return Some(format!("{kind} {name} is in one copy only"));
        }
        let changed = a.iter().find(|(name, bytes)| b.iter().any(|(other, theirs)| other == name && theirs != bytes));
        changed.map(|(name, _)| format!("{kind} {name} is defined differently"))
    };
    let messages = |f: &prost_types::FileDescriptorProto| {
        f.message_type.iter().map(|m| (m.name().to_string(), m.encode_to_vec())).collect::<Vec<_>>()
    };
    let enums = |f: &prost_types::FileDescriptorProto| {
        f.enum_type.iter().map(|e| (e.name().to_string(), e.encode_to_vec())).collect::<Vec<_>>()
    };
    let services = |f: &prost_types::FileDescriptorProto| {
        f.service.iter().map(|s| (s.name().to_string(), s.encode_to_vec())).collect::<Vec<_>>()
    };
    let extensions = |f: &prost_types::FileDescriptorProto| {
        f.extension.iter().map(|e| (e.name().to_string(), e.encode_to_vec())).collect::<Vec<_>>()
    };
    if a.package != b.package {
        return Some(format!("the package is {:?} in one, {:?} in the other", a.package(), b.package()));
    }
    named("message", messages(&a), messages(&b))
        .or_else(|| named("enum", enums(&a), enums(&b)))
        .or_else(|| named("service", services(&a), services(&b)))
        .or_else(|| named("extension", extensions(&a), extensions(&b)))
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
    let too_deep: Vec<String> = sources.iter().filter_map(|(name, text)| nesting_problem(name, text)).collect();
    if !too_deep.is_empty() {
        return Err(too_deep);
    }
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

/// Deepest nesting of `{ [ ( <` accepted in an uploaded `.proto`: the
/// parser recurses per level, and ~900 nested `additional_bindings` (or
/// option aggregates) overflowed the stack and aborted the process. Real
/// files stay far below it.
pub const MAX_PROTO_NESTING: usize = 64;

/// Where a source first nests deeper than `MAX_PROTO_NESTING`, skipping
/// strings and comments: `name:line:column: …`.
fn nesting_problem(name: &str, text: &str) -> Option<String> {
    let (mut depth, mut line, mut column) = (0usize, 1usize, 0usize);
    let mut chars = text.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        column += 1;
        if c == '\n' {
            (line, column) = (line + 1, 0);
        }
        match quote {
            Some(q) => match c {
                '\\' => {
                    chars.next();
                }
                _ if c == q || c == '\n' => quote = None,
                _ => {}
            },
            None => match c {
                '"' | '\'' => quote = Some(c),
                '/' if chars.peek() == Some(&'/') => {
                    chars.by_ref().take_while(|&c| c != '\n').for_each(drop);
                    (line, column) = (line + 1, 0);
                }
                '/' if chars.peek() == Some(&'*') => {
                    chars.next();
                    let mut last = ' ';
                    for c in chars.by_ref() {
                        if c == '\n' {
                            (line, column) = (line + 1, 0);
                        }
                        if last == '*' && c == '/' {
                            break;
                        }
                        last = c;
                    }
                }
                '{' | '[' | '(' | '<' => {
                    depth += 1;
                    if depth > MAX_PROTO_NESTING {
                        return Some(format!("{name}:{line}:{column}: nested deeper than {MAX_PROTO_NESTING} levels"));
                    }
                }
                '}' | ']' | ')' | '>' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    None
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

#[cfg(test)]
mod nesting_tests {
    use super::*;

    #[test]
    fn sources_nested_too_deep_are_refused_with_their_location() {
        let deep = format!("syntax = \"proto3\";\nmessage M {{ {} }}", "option (x) = {".repeat(70));
        let cases: Vec<(String, Option<String>)> = vec![
            ("message M { message N { int32 a = 1; } }".into(), None),
            (format!("// {}\nmessage M {{}}", "{".repeat(100)), None),
            (format!("/* {} */ message M {{}}", "{".repeat(100)), None),
            (format!("option (a) = \"{}\";", "{".repeat(100)), None),
            (deep, Some("x.proto:2:".to_string())),
        ];
        for (text, expected) in cases {
            let problem = nesting_problem("x.proto", &text);
            match expected {
                None => assert_eq!(problem, None, "{text}"),
                Some(prefix) => {
                    let problem = problem.expect("refused");
                    assert!(
                        problem.starts_with(&prefix) && problem.ends_with("nested deeper than 64 levels"),
                        "{problem}"
                    );
                }
            }
        }
    }
}
