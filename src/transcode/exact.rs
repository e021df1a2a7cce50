//! Integers that do not fit their field exactly. serde_json reads a number
//! outside i64/u64 as an f64, and prost-reflect then clamps it:
//! `18446744073709551616` reached a uint64 field as `18446744073709551615`,
//! and `-9223372036854775809` an int64 as `-2^63`. This pass walks the JSON
//! beside the message descriptor and refuses, naming the field, any integer
//! field given a number it cannot hold exactly. It runs only when the body
//! holds a number that serde_json may have rounded (a cheap byte scan), and
//! only after the depth check, so its recursion is bounded.

use std::fmt;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// 2^53: every integer below it is exact as an f64.
const EXACT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Whether the body has a number serde_json might read as an f64: one of
/// 16 digits or more, or with a fraction or an exponent.
pub fn may_hold_rounded_numbers(body: &[u8]) -> bool {
    let mut run = 0usize;
    for b in super::json::outside_strings(body) {
        match b {
            b'0'..=b'9' => {
                run += 1;
                if run >= 16 {
                    return true;
                }
            }
            b'.' | b'e' | b'E' if run > 0 => return true,
            _ => run = 0,
        }
    }
    false
}

/// Checks every integer field of `body` (JSON for `message`); the error
/// names the field path and says why.
pub fn check(body: &[u8], message: &MessageDescriptor) -> Result<(), (String, String)> {
    check_shape(body, Shape::Message(message.clone()))
}

/// Like `check`, for a body that is one field's value.
pub fn check_field(body: &[u8], field: &FieldDescriptor) -> Result<(), (String, String)> {
    check_shape(body, shape(field))
}

fn check_shape(body: &[u8], kind: Shape) -> Result<(), (String, String)> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let mut path = Vec::new();
    let mut failure = None;
    let seed = Seed { kind, path: &mut path, failure: &mut failure };
    // A syntax error is prost-reflect's to report, with its own wording.
    let _ = seed.deserialize(&mut deserializer);
    failure.map_or(Ok(()), Err)
}

/// What a JSON value stands for.
enum Shape {
    Message(MessageDescriptor),
    /// A repeated field's elements, or a map's values.
    Elements(Box<Shape>),
    Map(Box<Shape>),
    Integer(&'static str),
    Other,
}

fn shape(field: &FieldDescriptor) -> Shape {
    let element = kind_shape(&field.kind());
    if field.is_map() {
        let value = match field.kind() {
            Kind::Message(entry) => kind_shape(&entry.map_entry_value_field().kind()),
            _ => Shape::Other,
        };
        Shape::Map(Box::new(value))
    } else if field.is_list() {
        Shape::Elements(Box::new(element))
    } else {
        element
    }
}

fn kind_shape(kind: &Kind) -> Shape {
    match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Shape::Integer("a 32-bit integer"),
        Kind::Uint32 | Kind::Fixed32 => Shape::Integer("an unsigned 32-bit integer"),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Shape::Integer("a 64-bit integer"),
        Kind::Uint64 | Kind::Fixed64 => Shape::Integer("an unsigned 64-bit integer"),
        Kind::Message(message) => match message.full_name() {
            "google.protobuf.Int64Value" => Shape::Integer("a 64-bit integer"),
            "google.protobuf.UInt64Value" => Shape::Integer("an unsigned 64-bit integer"),
            "google.protobuf.Int32Value" => Shape::Integer("a 32-bit integer"),
            "google.protobuf.UInt32Value" => Shape::Integer("an unsigned 32-bit integer"),
            name if name.starts_with("google.protobuf.") => Shape::Other,
            _ => Shape::Message(message.clone()),
        },
        _ => Shape::Other,
    }
}

struct Seed<'a> {
    kind: Shape,
    path: &'a mut Vec<String>,
    failure: &'a mut Option<(String, String)>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.kind {
            Shape::Other => deserializer.deserialize_ignored_any(IgnoredAny).map(drop),
            _ => deserializer.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<(), E> {
        if let Shape::Integer(what) = self.kind
            && !(value.fract() == 0.0 && value.abs() < EXACT_LIMIT)
        {
            let reason = format!("{value} does not fit {what} exactly; send large integers as exact digits or strings");
            *self.failure = Some((self.path.join("."), reason));
            return Err(E::custom("inexact integer"));
        }
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Shape::Elements(element) = self.kind else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let mut index = 0usize;
        loop {
            self.path.push(index.to_string());
            let seed = Seed { kind: element.reborrow(), path: self.path, failure: self.failure };
            let more = seq.next_element_seed(seed)?;
            self.path.pop();
            if more.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            let kind = match &self.kind {
                Shape::Message(message) => message
                    .get_field_by_json_name(&key)
                    .or_else(|| message.get_field_by_name(&key))
                    .map_or(Shape::Other, |field| shape(&field)),
                Shape::Map(value) => value.reborrow(),
                _ => Shape::Other,
            };
            self.path.push(key);
            map.next_value_seed(Seed { kind, path: self.path, failure: self.failure })?;
            self.path.pop();
        }
        Ok(())
    }
}

impl Shape {
    /// A copy for one element (descriptors are reference-counted).
    fn reborrow(&self) -> Shape {
        match self {
            Self::Message(m) => Self::Message(m.clone()),
            Self::Elements(e) => Self::Elements(Box::new(e.reborrow())),
            Self::Map(v) => Self::Map(Box::new(v.reborrow())),
            Self::Integer(what) => Self::Integer(what),
            Self::Other => Self::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn everything() -> MessageDescriptor {
        let pool = prost_reflect::DescriptorPool::decode(crate::pb::EVERYTHING_DESCRIPTOR_SET).unwrap();
        pool.get_message_by_name("protogate.test.v1.Everything").unwrap()
    }

    #[test]
    fn integers_that_do_not_fit_exactly_are_refused_with_their_field() {
        let unsigned = "does not fit an unsigned 64-bit integer exactly";
        let signed = "does not fit a 64-bit integer exactly";
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            (r#"{"fUint64": 18446744073709551615}"#, None),
            (r#"{"fUint64": 18446744073709551616}"#, Some(("fUint64", unsigned))),
            (r#"{"fInt64": -9223372036854775809}"#, Some(("fInt64", signed))),
            (r#"{"fInt64": -9223372036854775808}"#, None),
            (r#"{"fInt64": 1e3}"#, None),
            (r#"{"fInt64": 1.5}"#, Some(("fInt64", signed))),
            (r#"{"fInt64": 1e300}"#, Some(("fInt64", signed))),
            (r#"{"fDouble": 1e300}"#, None),
            (r#"{"rInt64": [1, 2, 99999999999999999999]}"#, Some(("rInt64.2", signed))),
            (r#"{"f_nested": {"child": {"count": 1e20}}}"#, Some(("f_nested.child.count", "a 32-bit integer"))),
            (r#"{"wInt64": 1e19}"#, Some(("wInt64", signed))),
            (r#"{"unknown": 1e300, "fString": "1e300"}"#, None),
        ];
        let descriptor = everything();
        for (json, expected) in cases {
            let got = check(json.as_bytes(), &descriptor);
            match expected {
                None => assert_eq!(got, Ok(()), "{json}"),
                Some((path, reason)) => {
                    let (got_path, got_reason) = got.expect_err(json);
                    assert_eq!(got_path, *path, "{json}");
                    assert!(got_reason.contains(reason), "{json}: {got_reason}");
                }
            }
        }
    }

    #[test]
    fn only_numbers_serde_may_round_trigger_the_check() {
        let cases = [
            (r#"{"a": 123456789012345}"#, false),
            (r#"{"a": 1234567890123456}"#, true),
            (r#"{"a": 1.5}"#, true),
            (r#"{"a": 2e3}"#, true),
            (r#"{"a": "1.5e3 and 12345678901234567"}"#, false),
            (r#"{"e": true}"#, false),
        ];
        for (json, expected) in cases {
            assert_eq!(may_hold_rounded_numbers(json.as_bytes()), expected, "{json}");
        }
    }
}
