//! What a descriptor set will cost in memory once it is active, estimated
//! from its encoded bytes before anything is built, so a set that would
//! exceed the budget is refused (413) instead of risking the process.
//!
//! Measured (heaptrack, release build): a set of 2 000 messages × 100
//! fields and 200 GET methods, 3.9 MB encoded without source info, took the
//! gateway from 11 MB to 299 MB RSS — 1.4 KB per schema element, 75× the
//! encoded size — almost all of it prost-reflect's descriptor pool (the
//! decoded protos and its name index); the transcoding plans and routes are
//! a small part. The estimate counts elements (messages, fields, enums and
//! their values, services, methods), which the memory follows more closely
//! than bytes do (source info, for one, adds bytes but little memory).

use crate::transcode::fast::wire::{LEN, Reader};

/// Memory per schema element, from the measurement above (rounded up).
pub const BYTES_PER_ELEMENT: u64 = 1_500;

/// Schema elements in an encoded `FileDescriptorSet`; a walk over the wire
/// format without decoding, bounded in depth like prost's decoder.
pub fn elements(set: &[u8]) -> u64 {
    // (bytes, what they are); what = which message type of descriptor.proto.
    let mut stack: Vec<(&[u8], Kind, usize)> = vec![(set, Kind::Set, 0)];
    let mut count = 0u64;
    while let Some((bytes, kind, depth)) = stack.pop() {
        if depth > 100 {
            continue;
        }
        let mut reader = Reader::new(bytes);
        while let Some((number, wire_type)) = reader.tag() {
            if wire_type != LEN {
                if reader.skip(wire_type).is_none() {
                    break;
                }
                continue;
            }
            let Some(payload) = reader.len_delimited() else { break };
            if let Some(child) = kind.child(number) {
                if child != Kind::File {
                    count += 1;
                }
                stack.push((payload, child, depth + 1));
            }
        }
    }
    count
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Set,
    File,
    Message,
    Enum,
    Service,
    /// Fields, enum values, methods: counted, not entered.
    Leaf,
}

impl Kind {
    /// What field `number` of this message type holds, when it counts.
    fn child(self, number: u32) -> Option<Kind> {
        match (self, number) {
            (Kind::Set, 1) => Some(Kind::File),
            (Kind::File, 4) | (Kind::Message, 3) => Some(Kind::Message),
            (Kind::File, 5) | (Kind::Message, 4) => Some(Kind::Enum),
            (Kind::File, 6) => Some(Kind::Service),
            (Kind::File, 7) | (Kind::Message, 2 | 6) | (Kind::Enum, 2) | (Kind::Service, 2) => Some(Kind::Leaf),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_schema_element_of_a_set() {
        let pool = prost_reflect::DescriptorPool::decode(crate::pb::LIBRARY_DESCRIPTOR_SET).unwrap();
        let messages = pool.all_messages().count() as u64;
        let fields: u64 = pool.all_messages().map(|m| m.fields().count() as u64).sum();
        let enums = pool.all_enums().count() as u64;
        let values: u64 = pool.all_enums().map(|e| e.values().count() as u64).sum();
        let services = pool.services().count() as u64;
        let methods: u64 = pool.services().map(|s| s.methods().count() as u64).sum();
        let extensions = pool.all_extensions().count() as u64;
        let expected = messages + fields + enums + values + services + methods + extensions;
        assert_eq!(elements(crate::pb::LIBRARY_DESCRIPTOR_SET), expected);
        assert_eq!(elements(b""), 0);
        assert_eq!(elements(b"\x0a\xff"), 0, "truncated input counts what it can");
    }
}
