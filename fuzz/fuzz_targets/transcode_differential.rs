//! The fast transcoder against prost-reflect on arbitrary input: the first
//! byte picks the direction (wire → JSON, or JSON → wire) and the rest is
//! the input. Any difference in decision or output panics (see
//! protogate::transcode::fast::differential).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost_reflect::{DescriptorPool, MessageDescriptor};
use protogate::transcode::fast::{Plans, differential};

fn setup() -> &'static (Plans, MessageDescriptor) {
    static SETUP: OnceLock<(Plans, MessageDescriptor)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let pool = DescriptorPool::decode(protogate::pb::EVERYTHING_DESCRIPTOR_SET).expect("descriptors");
        let descriptor = pool.get_message_by_name("protogate.test.v1.Everything").expect("Everything");
        (Plans::compile(&pool), descriptor)
    })
}

fuzz_target!(|data: &[u8]| {
    let (plans, descriptor) = setup();
    match data.split_first() {
        Some((mode, input)) if mode % 2 == 0 => {
            differential::agree(plans, descriptor, input);
        }
        Some((_, input)) => {
            differential::parse_agree(plans, descriptor, input);
        }
        None => {}
    }
});
