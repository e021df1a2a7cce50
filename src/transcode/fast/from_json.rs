//! Proto3 JSON text → protobuf wire bytes, driven by the plans: serde_json
//! tokenizes, seeds write each value straight into the output (nested
//! messages with back-patched lengths), and no `DynamicMessage` or
//! `serde_json::Value` is built. Field names resolve by either JSON name
//! without allocating. Every input whose reading this path is not certain
//! to share with prost-reflect — nulls, duplicate keys, two members of one
//! oneof, unknown names, numbers in unusual forms, Any, Struct — is handed
//! over, and prost-reflect gives the answer or the error.

use std::fmt;

use base64::Engine;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::Handover;
use super::plan::{FieldKind, FieldPlan, MessagePlan, Plans, Special};
use super::wire::{self, begin_len, end_len, put_tag, put_varint};

const MAX_DEPTH: usize = 64;

/// Parses `json` as the message `plan`, appending its wire form to `out`.
pub fn parse(plans: &Plans, plan: usize, json: &[u8], ignore_unknown: bool, out: &mut Vec<u8>) -> Result<(), Handover> {
    let start = out.len();
    let mut context = Context { plans, out, ignore_unknown, depth: 0 };
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let parsed = MessageSeed { context: &mut context, plan }.deserialize(&mut deserializer);
    match parsed.and_then(|()| deserializer.end()) {
        Ok(()) => Ok(()),
        Err(_) => {
            context.out.truncate(start);
            Err(Handover)
        }
    }
}

struct Context<'a> {
    plans: &'a Plans,
    out: &'a mut Vec<u8>,
    ignore_unknown: bool,
    depth: usize,
}

fn handover<E: serde::de::Error>() -> E {
    E::custom("handover")
}

/// The fields of one message, written as they come.
struct MessageSeed<'c, 'a> {
    context: &'c mut Context<'a>,
    plan: usize,
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let plans = self.context.plans;
        let plan = plans.messages.get(self.plan).ok_or_else(handover::<D::Error>)?;
        if !plan.fast || self.context.depth > MAX_DEPTH {
            return Err(handover());
        }
        match plan.special {
            Special::None | Special::Empty => {
                deserializer.deserialize_map(FieldsVisitor { context: self.context, plan })
            }
            Special::Wrapper => {
                let field = plan.fields.first().ok_or_else(handover::<D::Error>)?;
                let number = Some(field.number);
                ValueSeed { context: self.context, number, kind: field.kind, skip_default: true }
                    .deserialize(deserializer)
            }
            Special::Timestamp | Special::Duration => {
                deserializer.deserialize_str(TimeVisitor { context: self.context, plan })
            }
            _ => Err(handover()),
        }
    }
}

struct FieldsVisitor<'c, 'a> {
    context: &'c mut Context<'a>,
    plan: &'a MessagePlan,
}

impl<'de> Visitor<'de> for FieldsVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        let (mut seen, mut oneofs) = (0u128, 0u64);
        while let Some(found) = map.next_key_seed(KeySeed(self.plan))? {
            let Some(index) = found else {
                if !self.context.ignore_unknown || self.plan.special == Special::Empty {
                    return Err(handover());
                }
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let field = &self.plan.fields[index];
            if index >= 128 || seen & (1 << index) != 0 {
                return Err(handover());
            }
            seen |= 1 << index;
            if let Some(oneof) = field.oneof {
                if oneof >= 64 || oneofs & (1 << oneof) != 0 {
                    return Err(handover());
                }
                oneofs |= 1 << oneof;
            }
            map.next_value_seed(FieldSeed { context: self.context, field })?;
        }
        if self.plan.special == Special::Empty && seen != 0 {
            return Err(handover());
        }
        Ok(())
    }
}

/// Resolves a key to a field index; `None` for a name the message lacks.
struct KeySeed<'a>(&'a MessagePlan);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.field_by_key(key).map(|(i, _)| i))
    }
}

/// One field's value: a list, a map, or a single value.
struct FieldSeed<'c, 'a> {
    context: &'c mut Context<'a>,
    field: &'a FieldPlan,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let field = self.field;
        if field.map.is_some() {
            deserializer.deserialize_map(MapVisitor { context: self.context, field })
        } else if field.list {
            deserializer.deserialize_seq(ListVisitor { context: self.context, field })
        } else {
            let skip_default = !field.explicit_presence;
            ValueSeed { context: self.context, number: Some(field.number), kind: field.kind, skip_default }
                .deserialize(deserializer)
        }
    }
}

struct ListVisitor<'c, 'a> {
    context: &'c mut Context<'a>,
    field: &'a FieldPlan,
}

impl<'de> Visitor<'de> for ListVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        let field = self.field;
        let packed = field.kind.packable();
        let start = if packed { begin_len(self.context.out, field.number) } else { 0 };
        let number = if packed { None } else { Some(field.number) };
        let mut count = 0usize;
        loop {
            let seed = ValueSeed { context: &mut *self.context, number, kind: field.kind, skip_default: false };
            if seq.next_element_seed(seed)?.is_none() {
                break;
            }
            count += 1;
        }
        if packed {
            if count == 0 {
                abandon_len(self.context.out, start, field.number);
            } else {
                end_len(self.context.out, start);
            }
        }
        Ok(())
    }
}

struct MapVisitor<'c, 'a> {
    context: &'c mut Context<'a>,
    field: &'a FieldPlan,
}

impl<'de> Visitor<'de> for MapVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        let Some((key_kind, value_kind)) = self.field.map else { return Err(handover()) };
        let (mut keys, mut spans) = (Vec::new(), Vec::new());
        loop {
            let entry = begin_len(self.context.out, self.field.number);
            let key_start = self.context.out.len();
            if map.next_key_seed(MapKeySeed { context: &mut *self.context, kind: key_kind })?.is_none() {
                abandon_len(self.context.out, entry, self.field.number);
                break;
            }
            let at = keys.len();
            keys.extend_from_slice(&self.context.out[key_start..]);
            spans.push((at, keys.len()));
            let value =
                ValueSeed { context: &mut *self.context, number: Some(2), kind: value_kind, skip_default: false };
            map.next_value_seed(value)?;
            end_len(self.context.out, entry);
        }
        spans.sort_by(|a, b| keys[a.0..a.1].cmp(&keys[b.0..b.1]));
        if spans.windows(2).any(|w| keys[w[0].0..w[0].1] == keys[w[1].0..w[1].1]) {
            // prost-reflect keeps the last of repeated keys; let it.
            return Err(handover());
        }
        Ok(())
    }
}

/// A map key (always a JSON string), written as the entry's field 1.
struct MapKeySeed<'c, 'a> {
    context: &'c mut Context<'a>,
    kind: FieldKind,
}

impl<'de> DeserializeSeed<'de> for MapKeySeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for MapKeySeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<(), E> {
        let out = &mut *self.context.out;
        let value = match self.kind {
            FieldKind::String => {
                write_bytes(out, Some(1), key.as_bytes());
                return Ok(());
            }
            FieldKind::Bool => match key {
                "true" => Number::Int(1),
                "false" => Number::Int(0),
                _ => return Err(handover()),
            },
            FieldKind::Uint32 | FieldKind::Fixed32 | FieldKind::Uint64 | FieldKind::Fixed64 => {
                Number::Int(i128::from(key.parse::<u64>().map_err(|_| handover::<E>())?))
            }
            _ => Number::Int(i128::from(key.parse::<i64>().map_err(|_| handover::<E>())?)),
        };
        write_number(out, Some(1), self.kind, value, false).ok_or_else(handover)
    }
}

/// One value: a nested message, or a scalar written with its tag (`None`
/// inside a packed list). `skip_default` leaves out implicit defaults.
struct ValueSeed<'c, 'a> {
    context: &'c mut Context<'a>,
    number: Option<u32>,
    kind: FieldKind,
    skip_default: bool,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let FieldKind::Message(plan) = self.kind else {
            return deserializer.deserialize_any(self);
        };
        let number = self.number.ok_or_else(handover::<D::Error>)?;
        let start = begin_len(self.context.out, number);
        self.context.depth += 1;
        let parsed = MessageSeed { context: &mut *self.context, plan }.deserialize(deserializer);
        self.context.depth -= 1;
        parsed?;
        end_len(self.context.out, start);
        Ok(())
    }
}

/// A scalar as JSON gives it.
#[derive(Clone, Copy)]
enum Number {
    Int(i128),
    Float(f64),
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<(), E> {
        if self.kind != FieldKind::Bool {
            return Err(handover());
        }
        write_number(self.context.out, self.number, self.kind, Number::Int(i128::from(value)), self.skip_default)
            .ok_or_else(handover)
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<(), E> {
        self.number_value(Number::Int(i128::from(value)))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<(), E> {
        self.number_value(Number::Int(i128::from(value)))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<(), E> {
        match self.kind {
            FieldKind::Double | FieldKind::Float => self.number_value(Number::Float(value)),
            _ => Err(handover()),
        }
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<(), E> {
        let out = &mut *self.context.out;
        let number = match self.kind {
            FieldKind::String => {
                if !(self.skip_default && text.is_empty()) {
                    write_bytes(out, self.number, text.as_bytes());
                }
                return Ok(());
            }
            FieldKind::Bytes => {
                let data = BASE64.decode(text).map_err(|_| handover::<E>())?;
                if !(self.skip_default && data.is_empty()) {
                    write_bytes(out, self.number, &data);
                }
                return Ok(());
            }
            FieldKind::Enum(plan) => {
                let plan = self.context.plans.enums.get(plan).ok_or_else(handover::<E>)?;
                if plan.is_null_value() {
                    return Err(handover());
                }
                Number::Int(i128::from(plan.number_of(text).ok_or_else(handover::<E>)?))
            }
            FieldKind::Double | FieldKind::Float => Number::Float(match text {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                _ => return Err(handover()),
            }),
            FieldKind::Bool | FieldKind::Message(_) => return Err(handover()),
            FieldKind::Uint32 | FieldKind::Fixed32 | FieldKind::Uint64 | FieldKind::Fixed64 => {
                Number::Int(i128::from(text.parse::<u64>().map_err(|_| handover::<E>())?))
            }
            _ => Number::Int(i128::from(text.parse::<i64>().map_err(|_| handover::<E>())?)),
        };
        write_number(out, self.number, self.kind, number, self.skip_default).ok_or_else(handover)
    }
}

impl ValueSeed<'_, '_> {
    fn number_value<E: serde::de::Error>(self, number: Number) -> Result<(), E> {
        if self.kind == FieldKind::Bool {
            return Err(handover());
        }
        if let FieldKind::Enum(plan) = self.kind
            && self.context.plans.enums.get(plan).is_none_or(|p| p.is_null_value())
        {
            return Err(handover());
        }
        write_number(self.context.out, self.number, self.kind, number, self.skip_default).ok_or_else(handover)
    }
}

/// Standard base64 as prost-reflect reads it first (padding optional,
/// trailing bits allowed); anything else is handed over.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

fn write_bytes(out: &mut Vec<u8>, number: Option<u32>, bytes: &[u8]) {
    if let Some(number) = number {
        put_tag(out, number, wire::LEN);
    }
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Writes a number as `kind`; `None` when it does not fit the kind.
fn write_number(
    out: &mut Vec<u8>,
    number: Option<u32>,
    kind: FieldKind,
    value: Number,
    skip_default: bool,
) -> Option<()> {
    let int = |min: i128, max: i128| match value {
        Number::Int(i) if (min..=max).contains(&i) => Some(i),
        _ => None,
    };
    let (wire_type, bits): (u8, u64) = match kind {
        FieldKind::Int32 | FieldKind::Enum(_) => (wire::VARINT, int(i32::MIN.into(), i32::MAX.into())? as i64 as u64),
        FieldKind::Int64 => (wire::VARINT, int(i64::MIN.into(), i64::MAX.into())? as i64 as u64),
        FieldKind::Uint32 => (wire::VARINT, int(0, u32::MAX.into())? as u64),
        FieldKind::Uint64 => (wire::VARINT, int(0, u64::MAX.into())? as u64),
        FieldKind::Sint32 => (wire::VARINT, wire::zigzag32(int(i32::MIN.into(), i32::MAX.into())? as i32)),
        FieldKind::Sint64 => (wire::VARINT, wire::zigzag64(int(i64::MIN.into(), i64::MAX.into())? as i64)),
        FieldKind::Bool => (wire::VARINT, int(0, 1)? as u64),
        FieldKind::Fixed32 => (wire::FIXED32, int(0, u32::MAX.into())? as u64),
        FieldKind::Sfixed32 => (wire::FIXED32, u64::from(int(i32::MIN.into(), i32::MAX.into())? as i32 as u32)),
        FieldKind::Fixed64 => (wire::FIXED64, int(0, u64::MAX.into())? as u64),
        FieldKind::Sfixed64 => (wire::FIXED64, int(i64::MIN.into(), i64::MAX.into())? as i64 as u64),
        FieldKind::Double => (wire::FIXED64, float(value)?.to_bits()),
        FieldKind::Float => {
            let wide = float(value)?;
            if wide.is_finite() && (wide < f64::from(f32::MIN) || wide > f64::from(f32::MAX)) {
                return None;
            }
            (wire::FIXED32, u64::from((wide as f32).to_bits()))
        }
        FieldKind::String | FieldKind::Bytes | FieldKind::Message(_) => return None,
    };
    let default = match kind {
        FieldKind::Double => f64::from_bits(bits) == 0.0,
        FieldKind::Float => f32::from_bits(bits as u32) == 0.0,
        _ => bits == 0,
    };
    if skip_default && default {
        return Some(());
    }
    if let Some(number) = number {
        put_tag(out, number, wire_type);
    }
    match wire_type {
        wire::FIXED32 => out.extend_from_slice(&(bits as u32).to_le_bytes()),
        wire::FIXED64 => out.extend_from_slice(&bits.to_le_bytes()),
        _ => put_varint(out, bits),
    }
    Some(())
}

fn float(value: Number) -> Option<f64> {
    match value {
        Number::Float(f) => Some(f),
        // Integers beyond 2^53 would round: prost-reflect decides those.
        Number::Int(i) if i.unsigned_abs() <= 1 << 53 => Some(i as f64),
        Number::Int(_) => None,
    }
}

/// Removes a length-delimited field started by `begin_len` that got nothing.
fn abandon_len(out: &mut Vec<u8>, start: usize, number: u32) {
    let tag_len = wire::varint_len((u64::from(number) << 3) | u64::from(wire::LEN));
    out.truncate(start - 1 - tag_len);
}

/// Timestamp and Duration strings, parsed by prost-types as prost-reflect
/// does.
struct TimeVisitor<'c, 'a> {
    context: &'c mut Context<'a>,
    plan: &'a MessagePlan,
}

impl<'de> Visitor<'de> for TimeVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a timestamp or duration string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<(), E> {
        let (seconds, nanos) = if self.plan.special == Special::Timestamp {
            // prost-reflect validates RFC 3339 strictly before parsing; only
            // the canonical UTC form is certain to pass it.
            if !canonical_utc(text) {
                return Err(handover());
            }
            let parsed: prost_types::Timestamp = text.parse().map_err(|_| handover::<E>())?;
            if !(-62_135_596_800..=253_402_300_799).contains(&parsed.seconds) {
                return Err(handover());
            }
            (parsed.seconds, parsed.nanos)
        } else {
            let parsed: prost_types::Duration = text.parse().map_err(|_| handover::<E>())?;
            if parsed.seconds.unsigned_abs() > 315_576_000_000 || parsed.nanos.unsigned_abs() > 999_999_999 {
                return Err(handover());
            }
            (parsed.seconds, parsed.nanos)
        };
        let out = &mut *self.context.out;
        write_number(out, Some(1), FieldKind::Int64, Number::Int(i128::from(seconds)), true).ok_or_else(handover)?;
        write_number(out, Some(2), FieldKind::Int32, Number::Int(i128::from(nanos)), true).ok_or_else(handover)
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`.
fn canonical_utc(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes.get(range).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let fixed = bytes.len() >= 20
        && digits(0..4)
        && bytes[4] == b'-'
        && digits(5..7)
        && bytes[7] == b'-'
        && digits(8..10)
        && bytes[10] == b'T'
        && digits(11..13)
        && bytes[13] == b':'
        && digits(14..16)
        && bytes[16] == b':'
        && digits(17..19);
    let rest = &bytes[19.min(bytes.len())..];
    let fraction = match rest.split_last() {
        Some((b'Z', fraction)) => fraction,
        _ => return false,
    };
    fixed
        && match fraction.split_first() {
            None => true,
            Some((b'.', digits)) => (1..=9).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit),
            Some(_) => false,
        }
}
