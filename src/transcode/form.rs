//! `multipart/form-data` parts → the request's body message: each part by
//! name (`a.b` for nested fields, proto or JSON names) onto a field. File
//! content goes onto `bytes` fields as it is and onto `google.api.HttpBody`
//! fields with its content type; text parts are typed as query parameters
//! are; a message field takes its part as JSON.

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value};

use super::{JsonOptions, Unknown, field_path, query, request, value, wkt};
use crate::error::Error;
use crate::route::binding::path_name;

/// How big a form may be: the whole body, one part, how many parts.
#[derive(Debug, Clone, Copy)]
pub struct FormLimits {
    pub body: usize,
    pub part: usize,
    pub parts: usize,
}

/// One part of a form, read in full (the reader bounded its size).
#[derive(Debug, Clone, Copy)]
pub struct FormPart<'a> {
    pub name: &'a str,
    /// Set for a file part (`filename=` in its Content-Disposition).
    pub filename: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub data: &'a [u8],
}

/// Sets every part onto `message` (the body message), refusing with a 400
/// naming the part anything that names no field (unless unknown fields are
/// ignored), a map, a singular field given twice, two members of a oneof,
/// or a value its field cannot hold. Returns the proto paths it set, for a
/// PATCH's field mask.
pub fn apply(
    message: &mut DynamicMessage,
    parts: &[FormPart<'_>],
    options: &JsonOptions,
) -> Result<Vec<String>, Error> {
    let mut seen: Vec<Vec<FieldDescriptor>> = Vec::new();
    let mut paths = Vec::new();
    for part in parts {
        let name = part.name;
        if name.bytes().filter(|&b| b == b'.').count() >= options.max_depth {
            return Err(Error::bad_request(format!(
                "form part {:?}…: nested deeper than {} levels",
                name.chars().take(64).collect::<String>(),
                options.max_depth
            )));
        }
        let Some(path) = query::resolve(&message.descriptor(), name) else {
            if options.unknown_fields == Unknown::Ignore {
                if options.count_ignored_fields {
                    request::note_ignored();
                }
                continue;
            }
            return Err(Error::bad_request(format!("unknown form part {name:?}")));
        };
        let Some(leaf) = path.last() else { continue };
        if leaf.is_map() {
            return Err(Error::bad_request(format!("form part {name:?}: map fields cannot be set from a form")));
        }
        if !leaf.is_list() {
            if seen.iter().any(|p| field_path::overlaps(p, &path) && p.len() == path.len()) {
                return Err(Error::bad_request(format!("form part {name:?} is given more than once")));
            }
            seen.push(path.clone());
        }
        query::check_oneof(message, "form part", name, &path)?;
        let parsed = part_value(leaf, part, &path, options)?;
        field_path::set(message, &path, parsed);
        paths.push(path.iter().map(FieldDescriptor::name).collect::<Vec<_>>().join("."));
    }
    Ok(paths)
}

/// The value a part gives its field.
fn part_value(
    leaf: &FieldDescriptor,
    part: &FormPart<'_>,
    path: &[FieldDescriptor],
    options: &JsonOptions,
) -> Result<Value, Error> {
    let field = path_name(path);
    match leaf.kind() {
        Kind::Bytes => Ok(Value::Bytes(bytes::Bytes::copy_from_slice(part.data))),
        Kind::Message(body) if wkt::is_http_body(&body) => {
            Ok(Value::Message(request::http_body(&body, part.content_type, part.data)))
        }
        Kind::Message(inner) if !wkt::has_text_form(&inner) => {
            let inner = message_part(inner, part, &field, options)?;
            Ok(Value::Message(inner))
        }
        kind => {
            let text = std::str::from_utf8(part.data).map_err(|_| {
                Error::bad_request(format!("form part {:?} for field {field:?} is not UTF-8 text", part.name))
            })?;
            value::parse_scalar(&kind, text).map_err(|reason| {
                Error::bad_request(format!(
                    "invalid value {text:?} for field {field:?} in form part {:?}: {reason}",
                    part.name
                ))
            })
        }
    }
}

/// A message field's part: JSON of that message, nesting bounded as a body is.
fn message_part(
    descriptor: MessageDescriptor,
    part: &FormPart<'_>,
    field: &str,
    options: &JsonOptions,
) -> Result<DynamicMessage, Error> {
    request::message_from_json(descriptor, part.data, options).map_err(|error| {
        let reason = error.message.strip_prefix("invalid JSON body: ").unwrap_or(&error.message).to_string();
        Error::bad_request(format!("form part {:?} for field {field:?} is not a JSON message: {reason}", part.name))
    })
}

/// Whether `content_type` is `multipart/form-data`, whose parts this module
/// maps onto fields.
pub fn is_form(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("multipart/form-data"))
}
