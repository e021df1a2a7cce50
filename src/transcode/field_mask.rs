//! PATCH without a field mask: when a rule's body is one message field and
//! the request message has a `google.protobuf.FieldMask` field the client
//! left unset, the mask is filled with the paths present in the JSON body,
//! as grpc-gateway does and AIP-134 describes — so a partial update changes
//! what was sent and nothing else. Nested objects of message fields become
//! dotted paths; arrays, maps and well-known types are leaves.

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value};

use crate::route::{Binding, BodyRule};

/// The request's unset FieldMask field, when `binding` is a PATCH whose
/// body is a message field.
pub fn target(binding: &Binding, message: &DynamicMessage) -> Option<(FieldDescriptor, MessageDescriptor)> {
    if binding.http_method != http::Method::PATCH {
        return None;
    }
    let BodyRule::Field(body) = &binding.body else { return None };
    let Kind::Message(body_type) = body.kind() else { return None };
    let mask = message.descriptor().fields().find(|f| {
        !f.is_list() && matches!(f.kind(), Kind::Message(m) if m.full_name() == "google.protobuf.FieldMask")
    })?;
    (!message.has_field(&mask)).then_some((mask, body_type))
}

/// Sets the mask to the body's paths (proto field names, sorted by JSON key).
pub fn fill(message: &mut DynamicMessage, mask: &FieldDescriptor, body_type: &MessageDescriptor, body: &[u8]) {
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice::<serde_json::Value>(body) else { return };
    let mut paths = Vec::new();
    collect(body_type, &object, "", &mut paths);
    set_paths(message, mask, paths);
}

/// Sets the mask to `paths` (proto field names below the body field).
pub fn set_paths(message: &mut DynamicMessage, mask: &FieldDescriptor, paths: Vec<String>) {
    let Kind::Message(mask_type) = mask.kind() else { return };
    let mut value = DynamicMessage::new(mask_type);
    value.set_field_by_name("paths", Value::List(paths.into_iter().map(Value::String).collect()));
    message.set_field(mask, Value::Message(value));
}

fn collect(
    message: &MessageDescriptor,
    object: &serde_json::Map<String, serde_json::Value>,
    prefix: &str,
    out: &mut Vec<String>,
) {
    for (key, value) in object {
        let Some(field) = message.get_field_by_json_name(key).or_else(|| message.get_field_by_name(key)) else {
            continue;
        };
        let path = if prefix.is_empty() { field.name().to_string() } else { format!("{prefix}.{}", field.name()) };
        match (field.kind(), value) {
            (Kind::Message(child), serde_json::Value::Object(inner))
                if !field.is_list() && !field.is_map() && !child.full_name().starts_with("google.protobuf.") =>
            {
                collect(&child, inner, &path, out)
            }
            _ => out.push(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_paths_become_the_mask() {
        let pool = crate::registry::source::bundled_pool().unwrap();
        let pool = {
            let mut pool = pool;
            pool.decode_file_descriptor_set(crate::pb::EVERYTHING_DESCRIPTOR_SET).unwrap();
            pool
        };
        let everything = pool.get_message_by_name("protogate.test.v1.Everything").unwrap();
        let cases = [
            (r#"{"fString": "a", "f_int64": "1"}"#, vec!["f_string", "f_int64"]),
            (r#"{"fNested": {"name": "n", "child": {"count": 2}}}"#, vec!["f_nested.child.count", "f_nested.name"]),
            (
                r#"{"rString": ["x"], "mString": {"k": "v"}, "wTimestamp": "2024-01-01T00:00:00Z"}"#,
                vec!["m_string", "r_string", "w_timestamp"],
            ),
            (r#"{"unknown": 1}"#, vec![]),
        ];
        for (json, expected) in cases {
            let object = serde_json::from_str::<serde_json::Value>(json).unwrap();
            let mut paths = Vec::new();
            collect(&everything, object.as_object().unwrap(), "", &mut paths);
            assert_eq!(paths, expected, "{json}");
        }
    }
}
