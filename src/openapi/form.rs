//! A body message with a file field (`bytes` or `google.api.HttpBody`) is
//! also offered as `multipart/form-data`, the way browsers and generated
//! clients send files: one property per part, files as binary, message
//! fields as JSON parts.

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use super::schema::{Comments, Schemas};
use crate::transcode::wkt;

/// The `multipart/form-data` media type object for `body`, when it has a
/// file field; fields bound by the URL path (`bound`) are left out.
pub(super) fn content(
    body: &MessageDescriptor,
    bound: &[FieldDescriptor],
    schemas: &mut Schemas,
    comments: &Comments,
) -> Option<Value> {
    if !body.fields().any(|field| is_file(&field)) {
        return None;
    }
    let mut properties = Map::new();
    let mut encoding = Map::new();
    for field in body.fields().filter(|f| !f.is_map() && !bound.iter().any(|b| b.number() == f.number())) {
        let name = field.json_name().to_string();
        let single = match field.kind() {
            _ if is_file(&field) => binary(),
            Kind::Message(message) if !wkt::has_text_form(&message) => {
                encoding.insert(name.clone(), json!({ "contentType": "application/json" }));
                schemas.reference(&message, comments)
            }
            _ => {
                properties.insert(name, schemas.field_schema(&field, comments));
                continue;
            }
        };
        let schema = if field.is_list() { json!({ "type": "array", "items": single }) } else { single };
        properties.insert(name, schema);
    }
    let mut media = json!({ "schema": { "type": "object", "properties": properties } });
    if !encoding.is_empty() {
        media["encoding"] = Value::Object(encoding);
    }
    Some(media)
}

fn is_file(field: &FieldDescriptor) -> bool {
    match field.kind() {
        Kind::Bytes => true,
        Kind::Message(message) => wkt::is_http_body(&message),
        _ => false,
    }
}

/// A file part: generated clients take it as a blob or file argument.
fn binary() -> Value {
    json!({ "type": "string", "format": "binary", "contentMediaType": "application/octet-stream" })
}
