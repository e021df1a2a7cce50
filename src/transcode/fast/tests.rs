//! Differential tests: the fast transcoder against prost-reflect (the
//! reference) on generated messages of every field kind and on arbitrary
//! bytes. Both must accept and reject the same inputs and produce the same
//! JSON values / the same messages.

use std::sync::OnceLock;

use proptest::prelude::*;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MapKey, MessageDescriptor, Value};

use super::differential;
use super::*;
use crate::transcode::JsonOptions;

fn pool() -> &'static (DescriptorPool, Plans) {
    static POOL: OnceLock<(DescriptorPool, Plans)> = OnceLock::new();
    POOL.get_or_init(|| {
        let pool = DescriptorPool::decode(crate::pb::EVERYTHING_DESCRIPTOR_SET).expect("test descriptors");
        let plans = Plans::compile(&pool);
        (pool, plans)
    })
}

fn everything() -> MessageDescriptor {
    pool().0.get_message_by_name("protogate.test.v1.Everything").expect("Everything")
}

/// A deterministic stream of choices from proptest's bytes.
struct Entropy<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Entropy<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| (acc << 8) | u64::from(self.byte()))
    }

    fn chance(&mut self, in_256: u8) -> bool {
        self.byte() < in_256
    }

    fn text(&mut self) -> String {
        let len = self.byte() % 12;
        (0..len)
            .map(|_| ['a', 'Z', '0', ' ', '"', '\\', '\n', 'é', '€', '😀', '\u{1}', '/'][usize::from(self.byte() % 12)])
            .collect()
    }
}

/// A random message of `descriptor`: any field may be set, nested up to a
/// few levels, lists and maps of a few entries, well-known types valid.
fn arbitrary(descriptor: &MessageDescriptor, entropy: &mut Entropy<'_>, depth: usize) -> DynamicMessage {
    let mut message = DynamicMessage::new(descriptor.clone());
    match descriptor.full_name() {
        "google.protobuf.Any" => return message,
        "google.protobuf.Timestamp" => {
            message.set_field_by_name(
                "seconds",
                Value::I64((entropy.u64() % 253_402_300_799) as i64 - 62_135_596_800 / 2),
            );
            message.set_field_by_name("nanos", Value::I32((entropy.u64() % 1_000_000_000) as i32));
            return message;
        }
        "google.protobuf.Duration" => {
            let seconds = (entropy.u64() % 100_000) as i64 - 50_000;
            let nanos = (entropy.u64() % 1_000_000_000) as i32 * if seconds < 0 { -1 } else { 1 };
            message.set_field_by_name("seconds", Value::I64(seconds));
            message.set_field_by_name("nanos", Value::I32(nanos));
            return message;
        }
        "google.protobuf.FieldMask" => {
            message.set_field_by_name("paths", Value::List(vec![Value::String("a_b.c".into())]));
            return message;
        }
        _ => {}
    }
    for field in descriptor.fields() {
        if !entropy.chance(110) || (depth > 3 && matches!(field.kind(), Kind::Message(_))) {
            continue;
        }
        if field.containing_oneof().is_some() && entropy.chance(128) {
            continue;
        }
        let value = if field.is_map() {
            let Kind::Message(entry) = field.kind() else { continue };
            let (key_kind, value_field) = (entry.map_entry_key_field().kind(), entry.map_entry_value_field());
            let count = entropy.byte() % 4;
            let map = (0..count)
                .filter_map(|_| {
                    let key = match arbitrary_value(&key_kind, entropy, depth + 1) {
                        Value::String(s) => MapKey::String(s),
                        Value::I32(i) => MapKey::I32(i),
                        Value::I64(i) => MapKey::I64(i),
                        Value::U32(i) => MapKey::U32(i),
                        Value::U64(i) => MapKey::U64(i),
                        Value::Bool(b) => MapKey::Bool(b),
                        _ => return None,
                    };
                    Some((key, arbitrary_value(&value_field.kind(), entropy, depth + 1)))
                })
                .collect();
            Value::Map(map)
        } else if field.is_list() {
            let count = entropy.byte() % 4;
            Value::List((0..count).map(|_| arbitrary_value(&field.kind(), entropy, depth + 1)).collect())
        } else {
            arbitrary_value(&field.kind(), entropy, depth + 1)
        };
        message.set_field(&field, value);
    }
    message
}

fn arbitrary_value(kind: &Kind, entropy: &mut Entropy<'_>, depth: usize) -> Value {
    let small = entropy.chance(100);
    let raw = if small { u64::from(entropy.byte() % 3) } else { entropy.u64() };
    match kind {
        Kind::Double => Value::F64(match entropy.byte() % 8 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -0.0,
            3 => 0.1,
            _ => f64::from_bits(raw) / 1e300 * 1e-10 + raw as f64,
        }),
        Kind::Float => Value::F32(match entropy.byte() % 6 {
            0 => f32::NEG_INFINITY,
            1 => 1.1,
            _ => raw as f32 / 7.0,
        }),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(raw as i32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(raw as i64),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(raw as u32),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(raw),
        Kind::Bool => Value::Bool(raw % 2 == 1),
        Kind::String => Value::String(entropy.text()),
        Kind::Bytes => Value::Bytes(entropy.text().into_bytes().into()),
        // Mostly known numbers, sometimes any: unknown ones render as numbers.
        Kind::Enum(_) => Value::EnumNumber(if entropy.chance(230) { (raw % 4) as i32 } else { raw as i32 }),
        Kind::Message(m) => Value::Message(arbitrary(m, entropy, depth)),
    }
}

fn agree(descriptor: &MessageDescriptor, bytes: &[u8]) -> bool {
    differential::agree(&pool().1, descriptor, bytes)
}

fn parse_agree(descriptor: &MessageDescriptor, json: &[u8]) -> bool {
    differential::parse_agree(&pool().1, descriptor, json)
}

fn fast_json(descriptor: &MessageDescriptor, bytes: &[u8], style: Style) -> Result<serde_json::Value, Handover> {
    differential::fast_json(&pool().1, descriptor, bytes, style)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_messages_render_alike(entropy in proptest::collection::vec(any::<u8>(), 0..600)) {
        let message = arbitrary(&everything(), &mut Entropy { bytes: &entropy, at: 0 }, 0);
        agree(&everything(), &message.encode_to_vec());
    }

    #[test]
    fn arbitrary_bytes_are_refused_alike(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        agree(&everything(), &bytes);
    }
}

#[test]
fn most_generated_messages_take_the_fast_path() {
    let mut fast = 0;
    for seed in 0..300u32 {
        let entropy: Vec<u8> =
            (0..600u32).map(|i| (seed.wrapping_mul(2_654_435_761).wrapping_add(i * 40_503) >> 7) as u8).collect();
        let message = arbitrary(&everything(), &mut Entropy { bytes: &entropy, at: 0 }, 0);
        fast += usize::from(agree(&everything(), &message.encode_to_vec()));
    }
    assert!(fast > 150, "only {fast} of 300 generated messages took the fast path");
}

#[test]
fn fields_split_across_the_wire_and_oneofs_follow_the_last_value() {
    // r_int32 = 20 packed [1, 2], then f_int32 = 3, then r_int32 unpacked 3;
    // o_string (40) then o_int32 (42): the later member wins.
    let bytes = [0xa2, 0x01, 0x02, 0x01, 0x02, 0x18, 0x07, 0xa0, 0x01, 0x03, 0xc2, 0x02, 0x01, b'x', 0xd0, 0x02, 0x05];
    assert!(agree(&everything(), &bytes));
    let json = fast_json(&everything(), &bytes, Style::default()).unwrap();
    assert_eq!(json, serde_json::json!({"fInt32": 7, "rInt32": [1, 2, 3], "oInt32": 5}));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_json_parses_alike(entropy in proptest::collection::vec(any::<u8>(), 0..600), proto_names: bool) {
        let message = arbitrary(&everything(), &mut Entropy { bytes: &entropy, at: 0 }, 0);
        let options = JsonOptions { proto_field_names: proto_names, ..JsonOptions::default() };
        if let Ok(json) = crate::transcode::response::to_json(&message, &options.serialize_options(), false) {
            parse_agree(&everything(), &json);
        }
    }

    #[test]
    fn mutated_json_is_refused_alike(
        entropy in proptest::collection::vec(any::<u8>(), 0..300),
        edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..4),
    ) {
        let message = arbitrary(&everything(), &mut Entropy { bytes: &entropy, at: 0 }, 0);
        let options = JsonOptions::default().serialize_options();
        if let Ok(mut json) = crate::transcode::response::to_json(&message, &options, false) {
            for (at, byte) in edits {
                if !json.is_empty() {
                    let at = usize::from(at) % json.len();
                    let table = b"{}[],:\"0-1.e tnfx\\99999";
                    json[at] = table[usize::from(byte) % table.len()];
                }
            }
            parse_agree(&everything(), &json);
        }
    }
}

#[test]
fn most_generated_json_takes_the_fast_path() {
    let mut fast = 0;
    for seed in 0..300u32 {
        let entropy: Vec<u8> =
            (0..600u32).map(|i| (seed.wrapping_mul(2_654_435_761).wrapping_add(i * 40_503) >> 7) as u8).collect();
        let mut message = arbitrary(&everything(), &mut Entropy { bytes: &entropy, at: 0 }, 0);
        // Any, Struct, Value, ListValue and FieldMask are always handed over.
        for name in ["w_any", "w_struct", "w_value", "w_list", "w_field_mask"] {
            message.clear_field_by_name(name);
        }
        let json = crate::transcode::response::to_json(&message, &JsonOptions::default().serialize_options(), false);
        fast += usize::from(json.is_ok_and(|json| parse_agree(&everything(), &json)));
    }
    assert!(fast > 100, "only {fast} of 300 generated bodies took the fast path");
}

#[test]
fn json_case_table() {
    let cases: &[(&str, bool)] = &[
        (r#"{"fInt32": 5, "f_string": "x", "rInt32": [1, 2], "fNested": {"name": "n"}}"#, true),
        (r#"{"fInt64": "-9223372036854775808", "fUint64": "18446744073709551615"}"#, true),
        (r#"{"fEnum": "COLOR_RED", "rEnum": ["COLOR_BLUE", 2]}"#, true),
        (r#"{"fDouble": "NaN", "fFloat": "-Infinity", "fBytes": "AAE="}"#, true),
        (r#"{"mString": {"a": "b"}, "mNested": {"7": {"count": 1}}, "mBool": {"true": "3"}}"#, true),
        (r#"{"wTimestamp": "2024-01-02T03:04:05.5Z", "wDuration": "1.5s", "wInt64": "7", "wEmpty": {}}"#, true),
        (r#"{"oString": "a", "oInt32": 1}"#, false),
        (r#"{"fInt32": 1, "f_int32": 2}"#, false),
        (r#"{"fInt32": null}"#, false),
        (r#"{"nope": 1}"#, false),
        (r#"{"fInt32": 1.5}"#, false),
        (r#"{"fInt32": 2147483648}"#, false),
        (r#"{"wAny": {}}"#, false),
        // Found by the fuzz target: no time zone.
        (r#"{"wTimestamp": "4048-01-02T03:04:05"}"#, false),
        (r#"{"wTimestamp": "2024-01-02T03:04:05+01:00"}"#, false),
        (r#"{"wDuration": "999999999999s"}"#, false),
        (r#"{"mString": {"a": "b", "a": "c"}}"#, false),
        // Out of range: refused by both (prost-reflect alone clamped them).
        (r#"{"fUint64": 18446744073709551616}"#, false),
        (r#"{"fInt64": -9223372036854775809}"#, false),
        (r#"{"fSint64": 9223372036854775808}"#, false),
        (r#"{"fFixed64": 1e20}"#, false),
        (r#"{"wUint64": 18446744073709551616}"#, false),
        (r#"{"fUint64": 18446744073709551615, "fInt64": -9223372036854775808}"#, true),
    ];
    for (json, fast) in cases {
        assert_eq!(parse_agree(&everything(), json.as_bytes()), *fast, "{json}");
    }
}

#[test]
fn defaults_sent_on_the_wire_and_empty_packed_lists_render_like_absent_ones() {
    // Found by the fuzz target: f_int64 sent twice, the last time as 0.
    assert!(agree(&everything(), &[32, 32, 32, 0]));
    // r_int32 as an empty packed list.
    assert!(agree(&everything(), &[0xa2, 0x01, 0x00]));
}
