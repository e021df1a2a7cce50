//! `google.rpc.Status` JSON: `{"code", "message", "details"}`, with details
//! decoded from `grpc-status-details-bin` and tagged with `@type`.

use base64::Engine;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde::Serialize;

use crate::pb::google::rpc::Status;

#[derive(Serialize)]
struct StatusJson<'a> {
    code: i32,
    message: &'a str,
    details: Vec<serde_json::Value>,
}

/// Renders a status. `details` is an encoded `google.rpc.Status` (may be
/// empty); each detail is decoded with the first pool that knows its type.
pub fn to_json(
    code: i32,
    message: &str,
    details: &[u8],
    pools: &[&DescriptorPool],
    options: &SerializeOptions,
) -> Vec<u8> {
    let details = decode_details(details, pools, options);
    let status = StatusJson { code, message, details };
    serde_json::to_vec(&status).unwrap_or_else(|_| br#"{"code":13,"message":"internal error","details":[]}"#.to_vec())
}

fn decode_details(bytes: &[u8], pools: &[&DescriptorPool], options: &SerializeOptions) -> Vec<serde_json::Value> {
    details(bytes)
        .iter()
        .map(|any| match decode_any_with(any, pools, options) {
            Some(serde_json::Value::Object(fields)) => {
                let mut tagged = serde_json::Map::with_capacity(fields.len() + 1);
                tagged.insert("@type".into(), any.type_url.clone().into());
                tagged.extend(fields);
                serde_json::Value::Object(tagged)
            }
            _ => serde_json::json!({
                "@type": any.type_url,
                "value": base64::engine::general_purpose::STANDARD.encode(&any.value),
            }),
        })
        .collect()
}

/// The details of an encoded `google.rpc.Status` (none when it is empty or
/// unreadable).
pub fn details(bytes: &[u8]) -> Vec<prost_types::Any> {
    if bytes.is_empty() {
        return Vec::new();
    }
    Status::decode(bytes).map(|s| s.details).unwrap_or_default()
}

/// A detail as JSON, decoded with the first pool that knows its type.
pub fn decode_any(any: &prost_types::Any, pools: &[&DescriptorPool]) -> Option<serde_json::Value> {
    decode_any_with(any, pools, &SerializeOptions::new())
}

/// Like `decode_any`, with the gateway's JSON options (proto field names,
/// enums as numbers, defaults), as for every other message it renders.
pub fn decode_any_with(
    any: &prost_types::Any,
    pools: &[&DescriptorPool],
    options: &SerializeOptions,
) -> Option<serde_json::Value> {
    let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
    let descriptor = pools.iter().find_map(|pool| pool.get_message_by_name(type_name))?;
    let message = DynamicMessage::decode(descriptor, any.value.as_slice()).ok()?;
    message.serialize_with_options(serde_json::value::Serializer, options).ok()
}
