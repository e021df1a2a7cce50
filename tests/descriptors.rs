//! The checked-in descriptor set must match what build.rs compiles from proto/.

use std::path::Path;

const CHECKED_IN: &str = "descriptors/library.binpb";

#[test]
fn checked_in_descriptor_set_is_fresh() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CHECKED_IN);
    let fresh = protogate::pb::LIBRARY_DESCRIPTOR_SET;
    if std::env::var_os("PROTOGATE_WRITE_DESCRIPTORS").is_some() {
        std::fs::write(&path, fresh).unwrap();
    }
    let current = std::fs::read(&path).unwrap_or_default();
    assert!(
        current == fresh,
        "{CHECKED_IN} is stale: proto/ changed since it was written. Refresh it with\n  \
         PROTOGATE_WRITE_DESCRIPTORS=1 cargo test --test descriptors\nand commit the result."
    );
}
