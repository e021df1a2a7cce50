//! Compiles `proto/` with protox (no protoc needed): writes the descriptor sets
//! the gateway embeds and generates the example and test backends.

use std::{env, fs, path::PathBuf};

/// Descriptor sets written to OUT_DIR: (file name, root .proto files).
const SETS: &[(&str, &[&str])] = &[
    ("library.binpb", &["library/v1/library.proto"]),
    ("everything.binpb", &["protogate/test/v1/everything.proto"]),
    (
        "bundled.binpb",
        &[
            "google/api/annotations.proto",
            "google/api/httpbody.proto",
            "google/rpc/status.proto",
            "google/rpc/error_details.proto",
        ],
    ),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    for (name, roots) in SETS {
        let mut compiler = protox::Compiler::new(["proto"])?;
        compiler.include_imports(true).include_source_info(true);
        compiler.open_files(*roots)?;
        // encode_file_descriptor_set keeps the google.api.http option bytes;
        // a round trip through prost_types would drop them.
        fs::write(out_dir.join(name), compiler.encode_file_descriptor_set())?;
    }

    let mut all = protox::Compiler::new(["proto"])?;
    all.include_imports(true);
    all.open_files(SETS.iter().flat_map(|(_, roots)| roots.iter()))?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(all.file_descriptor_set())?;
    Ok(())
}
