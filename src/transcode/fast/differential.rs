//! The differential check shared by the property tests and the fuzz
//! target: the fast transcoder against prost-reflect (the reference) on the
//! same input. Both must make the same decision and produce the same JSON
//! values; a mismatch panics with both sides. Not used on request paths.

use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor};

use super::{Handover, Plans, Renderer, Style, from_json};
use crate::transcode::JsonOptions;

fn slow_json(descriptor: &MessageDescriptor, bytes: &[u8], options: &JsonOptions) -> Result<serde_json::Value, ()> {
    let message = DynamicMessage::decode(descriptor.clone(), bytes).map_err(drop)?;
    // As text, like the response path: f32 keeps its shortest form.
    let text = crate::transcode::response::to_json(&message, &options.serialize_options(), false).map_err(drop)?;
    Ok(serde_json::from_slice(&text).expect("prost-reflect writes JSON"))
}

pub fn fast_json(
    plans: &Plans,
    descriptor: &MessageDescriptor,
    bytes: &[u8],
    style: Style,
) -> Result<serde_json::Value, Handover> {
    let plan = plans.message_index(descriptor.full_name()).ok_or(Handover)?;
    let mut out = Vec::new();
    Renderer::default().render(plans, plan, bytes, style, &mut out)?;
    Ok(serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("fast path wrote invalid JSON ({e}): {}", String::from_utf8_lossy(&out))))
}

pub fn styles() -> [(Style, JsonOptions); 3] {
    let plain = JsonOptions::default();
    let defaults = JsonOptions { emit_defaults: true, ..JsonOptions::default() };
    let renamed = JsonOptions { proto_field_names: true, enums_as_numbers: true, ..JsonOptions::default() };
    [plain, defaults, renamed].map(|o| {
        (
            Style {
                emit_defaults: o.emit_defaults,
                proto_field_names: o.proto_field_names,
                enums_as_numbers: o.enums_as_numbers,
            },
            o,
        )
    })
}

/// Both paths on the same bytes: the same decision and the same JSON.
/// Returns whether the fast path rendered it (under any style).
pub fn agree(plans: &Plans, descriptor: &MessageDescriptor, bytes: &[u8]) -> bool {
    let mut rendered = false;
    for (style, options) in styles() {
        let slow = slow_json(descriptor, bytes, &options);
        match (fast_json(plans, descriptor, bytes, style), slow) {
            (Ok(mut fast), Ok(slow)) => {
                known_reference_bug(&mut fast, &slow);
                assert_eq!(fast, slow, "{style:?} on {bytes:?}");
                rendered = true;
            }
            (Ok(fast), Err(())) => panic!("the fast path accepted what prost-reflect refuses: {fast} from {bytes:?}"),
            (Err(Handover), _) => {}
        }
    }
    rendered
}

/// prost-reflect writes a non-finite DoubleValue / FloatValue as `null`;
/// proto3 JSON (and the fast path) write "NaN", "Infinity", "-Infinity".
/// Only that difference is forgiven.
pub fn known_reference_bug(fast: &mut serde_json::Value, slow: &serde_json::Value) {
    use serde_json::Value as Json;
    match (fast, slow) {
        (Json::Object(fast), Json::Object(slow)) => {
            for (key, value) in fast.iter_mut() {
                if let Some(other) = slow.get(key) {
                    known_reference_bug(value, other);
                }
            }
        }
        (Json::Array(fast), Json::Array(slow)) => {
            fast.iter_mut().zip(slow).for_each(|(f, s)| known_reference_bug(f, s))
        }
        (fast @ Json::String(_), Json::Null)
            if ["NaN", "Infinity", "-Infinity"].contains(&fast.as_str().unwrap_or("")) =>
        {
            *fast = Json::Null;
        }
        _ => {}
    }
}

/// The reference reading of JSON text, rendered back for comparison: the
/// gateway's own (prost-reflect, after the exact-integer check that keeps
/// it from clamping numbers out of range).
fn slow_parse(descriptor: &MessageDescriptor, json: &[u8], ignore_unknown: bool) -> Result<serde_json::Value, ()> {
    if crate::transcode::exact::check(json, descriptor).is_err() {
        return Err(());
    }
    let options = prost_reflect::DeserializeOptions::new().deny_unknown_fields(!ignore_unknown);
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let message =
        DynamicMessage::deserialize_with_options(descriptor.clone(), &mut deserializer, &options).map_err(drop)?;
    deserializer.end().map_err(drop)?;
    render_reference(&message.encode_to_vec(), descriptor)
}

fn render_reference(bytes: &[u8], descriptor: &MessageDescriptor) -> Result<serde_json::Value, ()> {
    let options = JsonOptions { emit_defaults: true, ..JsonOptions::default() };
    slow_json(descriptor, bytes, &options)
}

/// JSON text through both readers: the same decision and the same message.
/// Returns whether the fast path took it.
pub fn parse_agree(plans: &Plans, descriptor: &MessageDescriptor, json: &[u8]) -> bool {
    let plan = plans.message_index(descriptor.full_name()).expect("plan");
    let mut fast = Vec::new();
    let outcome = from_json::parse(plans, plan, json, false, &mut fast);
    let slow = slow_parse(descriptor, json, false);
    match (outcome, slow) {
        (Ok(()), Ok(slow)) => {
            let fast = render_reference(&fast, descriptor).expect("the fast path wrote a decodable message");
            assert_eq!(fast, slow, "from {}", String::from_utf8_lossy(json));
            true
        }
        (Ok(()), Err(())) => {
            panic!("the fast path accepted what prost-reflect refuses: {}", String::from_utf8_lossy(json))
        }
        (Err(Handover), _) => {
            assert!(fast.is_empty(), "a handover leaves no output");
            false
        }
    }
}
