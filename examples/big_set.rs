//! Writes a large descriptor set for memory measurements:
//! `cargo run --release --example big_set -- OUT.binpb [MESSAGES] [FIELDS] [METHODS]`.
//! Each message has scalar fields and a few fields of later messages (so
//! query parameters nest); one service has GET methods over them.

use std::fmt::Write;

/// The set: `messages` messages of `fields` fields, `methods` GET methods.
pub fn big_set(messages: usize, fields: usize, methods: usize) -> Vec<u8> {
    let mut text = String::from(
        "syntax = \"proto3\";\npackage big.v1;\nimport \"google/api/annotations.proto\";\nservice Big {\n",
    );
    for i in 0..methods.min(messages) {
        let _ = writeln!(
            text,
            "  rpc Get{i}(M{i}) returns (M{i}) {{ option (google.api.http) = {{ get: \"/v1/m{i}\" }}; }}"
        );
    }
    text.push_str("}\n");
    for m in 0..messages {
        let _ = writeln!(text, "message M{m} {{");
        for f in 0..fields {
            let kind = match f % 10 {
                // One field in ten refers to a later message.
                9 => format!("M{}", (m + f / 10 + 1) % messages),
                n if n % 2 == 0 => "string".to_string(),
                _ => "int64".to_string(),
            };
            let _ = writeln!(text, "  {kind} f{f} = {};", f + 1);
        }
        text.push_str("}\n");
    }
    let set = protogate::registry::source::compile_protos(&[("big/v1/big.proto".into(), text)], &[])
        .unwrap_or_else(|e| panic!("the generated source compiles: {e:?}"));
    without_source_info(&set)
}

/// The set as `protoc` writes it without `--include_source_info`.
fn without_source_info(set: &[u8]) -> Vec<u8> {
    use prost::Message;
    let pool = protogate::registry::source::bundled_pool().expect("bundled descriptors");
    let descriptor = pool.get_message_by_name("google.protobuf.FileDescriptorSet").expect("descriptor.proto");
    let mut set = prost_reflect::DynamicMessage::decode(descriptor, set).expect("a descriptor set");
    if let Some(prost_reflect::Value::List(files)) = set.get_field_by_name_mut("file") {
        for file in files {
            if let prost_reflect::Value::Message(file) = file {
                file.clear_field_by_name("source_code_info");
            }
        }
    }
    set.encode_to_vec()
}

#[allow(dead_code)]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let number = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let out = args.get(1).cloned().unwrap_or_else(|| "big.binpb".into());
    let bytes = big_set(number(2, 2000), number(3, 100), number(4, 200));
    std::fs::write(&out, &bytes).expect("writable output");
    println!("{out}: {} bytes", bytes.len());
}
