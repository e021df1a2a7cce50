//! Well-known types that have a JSON string form, so they can be set from a
//! path variable or a query parameter (`?published_after=2024-01-01T00:00:00Z`).

use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, Value};

use super::value;
pub use crate::route::binding::has_text_form;
use crate::route::binding::{STRING_FORMS, WRAPPERS};

pub const HTTP_BODY: &str = "google.api.HttpBody";

pub fn is_http_body(message: &MessageDescriptor) -> bool {
    message.full_name() == HTTP_BODY
}

/// Parses the string form of a well-known type.
pub fn parse_text(message: &MessageDescriptor, text: &str) -> Result<DynamicMessage, String> {
    let name = message.full_name();
    if WRAPPERS.contains(&name) {
        let field = message.get_field_by_name("value").ok_or_else(|| format!("{name} has no value field"))?;
        let inner = value::parse_scalar(&field.kind(), text)?;
        let mut wrapper = DynamicMessage::new(message.clone());
        wrapper.set_field(&field, inner);
        return Ok(wrapper);
    }
    if name == "google.protobuf.FieldMask" {
        return field_mask(message, text);
    }
    if STRING_FORMS.contains(&name) {
        let json = serde_json::Value::String(text.to_string());
        return DynamicMessage::deserialize(message.clone(), json).map_err(|e| match name {
            "google.protobuf.Timestamp" => "expected an RFC 3339 timestamp such as 2024-01-31T12:00:00Z".to_string(),
            "google.protobuf.Duration" => "expected a duration in seconds such as 1.5s".to_string(),
            _ => e.to_string(),
        });
    }
    Err(format!("{name} has no string form; set its fields one by one"))
}

/// A field mask from `a.b,cD`: paths in proto (`page_count`) or JSON
/// (`pageCount`) form, since users write both in query strings.
fn field_mask(message: &MessageDescriptor, text: &str) -> Result<DynamicMessage, String> {
    let field =
        message.get_field_by_name("paths").ok_or_else(|| "google.protobuf.FieldMask has no paths field".to_string())?;
    let mut paths = Vec::new();
    for path in text.split(',').filter(|p| !p.is_empty()) {
        let valid = path.split('.').all(|part| {
            part.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if !valid {
            return Err(format!("expected comma-separated field paths, found {path:?}"));
        }
        paths.push(Value::String(snake_case(path)));
    }
    let mut mask = DynamicMessage::new(message.clone());
    mask.set_field(&field, Value::List(paths));
    Ok(mask)
}

fn snake_case(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses a message-typed leaf from text, if its type allows it.
pub fn parse_message_text(kind: &Kind, text: &str) -> Option<Result<Value, String>> {
    match kind {
        Kind::Message(m) => Some(parse_text(m, text).map(Value::Message)),
        _ => None,
    }
}
