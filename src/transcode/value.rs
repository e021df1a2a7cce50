//! Field values from text (path variables and query parameters), typed by the
//! field's kind.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use prost_reflect::{Kind, Value};

use super::wkt;

/// Parses text as a value of `kind`: numbers by width, booleans, enums by
/// name or number, bytes as standard or URL-safe base64, well-known types in
/// their JSON string form.
pub fn parse_scalar(kind: &Kind, text: &str) -> Result<Value, String> {
    let value = match kind {
        Kind::Double => Value::F64(parse_float(text)?),
        Kind::Float => {
            let v = parse_float(text)?;
            if v.is_finite() && (v as f32).is_infinite() {
                return Err("number out of range for a 32-bit float".into());
            }
            Value::F32(v as f32)
        }
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(parse_int(text, "a 32-bit integer")?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(parse_int(text, "a 64-bit integer")?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(parse_int(text, "an unsigned 32-bit integer")?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(parse_int(text, "an unsigned 64-bit integer")?),
        Kind::Bool => Value::Bool(match text {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err("expected true or false".into()),
        }),
        Kind::String => Value::String(text.to_string()),
        Kind::Bytes => Value::Bytes(decode_base64(text)?.into()),
        Kind::Enum(e) => {
            let number = match e.get_value_by_name(text) {
                Some(v) => v.number(),
                None => text.parse::<i32>().map_err(|_| format!("expected a value of enum {}", e.full_name()))?,
            };
            Value::EnumNumber(number)
        }
        Kind::Message(_) => {
            return wkt::parse_message_text(kind, text).unwrap_or_else(|| Err("not a scalar".into()));
        }
    };
    Ok(value)
}

fn parse_int<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.parse::<T>().map_err(|_| format!("expected {what}"))
}

fn parse_float(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        // Rust also reads "inf" and "nan"; the JSON mapping does not.
        _ if text.bytes().any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') => Err("expected a number".into()),
        _ => match text.parse::<f64>() {
            // `1e999` is not Infinity: only the word is.
            Ok(v) if v.is_infinite() => Err("number out of range for a 64-bit float".into()),
            Ok(v) => Ok(v),
            Err(_) => Err("expected a number".into()),
        },
    }
}

/// Standard or URL-safe base64, padded or not.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let url_safe = text.contains(['-', '_']);
    let padded = text.ends_with('=');
    let engine = match (url_safe, padded) {
        (false, true) => &STANDARD,
        (false, false) => &STANDARD_NO_PAD,
        (true, true) => &URL_SAFE,
        (true, false) => &URL_SAFE_NO_PAD,
    };
    engine.decode(text).map_err(|_| "expected standard or URL-safe base64".into())
}
