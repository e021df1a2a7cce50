//! Response messages → HTTP bodies: canonical proto3 JSON, the
//! `response_body` field alone, or the raw bytes of a `google.api.HttpBody`.

use bytes::Bytes;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, ReflectMessage, Value};
use serde::Serialize;

use super::fast::{Plans, Renderer, Style};
use super::{JsonOptions, wkt};

/// A rendered response body.
#[derive(Debug, PartialEq)]
pub enum Rendered {
    Json(Vec<u8>),
    /// An `HttpBody`: bytes and content type go out unchanged.
    Raw {
        content_type: String,
        data: Bytes,
    },
}

/// Renders a response message, or its `response_body` field.
pub fn render(
    message: &DynamicMessage,
    response_body: Option<&FieldDescriptor>,
    options: &JsonOptions,
    pretty: bool,
) -> Result<Rendered, String> {
    let Some(field) = response_body else {
        return render_message(message, options, pretty);
    };
    match (field.kind(), message.get_field(field).as_ref()) {
        (Kind::Message(_), Value::Message(inner)) if !field.is_list() && !field.is_map() => {
            render_message(inner, options, pretty)
        }
        _ => render_field(message, field, options, pretty),
    }
}

fn render_message(message: &DynamicMessage, options: &JsonOptions, pretty: bool) -> Result<Rendered, String> {
    if wkt::is_http_body(&message.descriptor()) {
        return Ok(raw_http_body(message));
    }
    to_json(message, &options.serialize_options(), pretty).map(Rendered::Json)
}

/// The JSON of a message in wire form by the fast transcoder: the whole
/// message, compact. `None` hands over to `render` on the decoded message.
pub fn render_wire(plans: &Plans, plan: Option<usize>, bytes: &[u8], options: &JsonOptions) -> Option<Vec<u8>> {
    if options.indent {
        return None;
    }
    fast_json(plans, plan?, bytes, style_of(options))
}

/// The fast rendering with defaults and field names as the caller asks (a
/// composite's references read every field by its JSON name), compact.
pub fn render_wire_as(
    plans: &Plans,
    plan: Option<usize>,
    bytes: &[u8],
    options: &JsonOptions,
    (emit_defaults, proto_field_names): (bool, bool),
) -> Option<Vec<u8>> {
    let style = Style { emit_defaults, proto_field_names, ..style_of(options) };
    fast_json(plans, plan?, bytes, style)
}

fn style_of(options: &JsonOptions) -> Style {
    Style {
        emit_defaults: options.emit_defaults,
        proto_field_names: options.proto_field_names,
        enums_as_numbers: options.enums_as_numbers,
    }
}

fn fast_json(plans: &Plans, plan: usize, bytes: &[u8], style: Style) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() * 2 + 16);
    RENDERER.with_borrow_mut(|renderer| renderer.render(plans, plan, bytes, style, &mut out)).ok()?;
    Some(out)
}

/// Renders one method's answers from wire form, each as compact JSON: by
/// the fast transcoder when its plan takes the message, else decoded and
/// rendered by prost-reflect. Built once per stream; the stream messages of
/// REST, Connect and WebSocket all go through it.
#[derive(Debug, Clone)]
pub struct WireRenderer {
    plans: std::sync::Arc<Plans>,
    plan: Option<usize>,
    output: prost_reflect::MessageDescriptor,
    style: Style,
    serialize: prost_reflect::SerializeOptions,
}

impl WireRenderer {
    pub fn new(
        plans: std::sync::Arc<Plans>,
        plan: Option<usize>,
        output: prost_reflect::MessageDescriptor,
        options: &JsonOptions,
    ) -> Self {
        Self { plans, plan, output, style: style_of(options), serialize: options.serialize_options() }
    }

    /// The message's JSON, and whether the fast transcoder wrote it.
    pub fn json(&self, wire: &[u8]) -> Result<(Vec<u8>, bool), String> {
        if let Some(json) = self.plan.and_then(|plan| fast_json(&self.plans, plan, wire, self.style)) {
            return Ok((json, true));
        }
        let message = DynamicMessage::decode(self.output.clone(), wire)
            .map_err(|e| format!("backend sent an undecodable {}: {e}", self.output.full_name()))?;
        Ok((to_json(&message, &self.serialize, false)?, false))
    }
}

thread_local! {
    /// Rendering scratch, reused across requests on a worker thread.
    static RENDERER: std::cell::RefCell<Renderer> = std::cell::RefCell::default();
}

/// Serializes a message as JSON text, compact or indented.
pub fn to_json(
    message: &DynamicMessage,
    serialize_options: &prost_reflect::SerializeOptions,
    pretty: bool,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(128);
    let result = if pretty {
        let mut serializer = serde_json::Serializer::pretty(&mut out);
        message.serialize_with_options(&mut serializer, serialize_options)
    } else {
        let mut serializer = serde_json::Serializer::new(&mut out);
        message.serialize_with_options(&mut serializer, serialize_options)
    };
    result.map_err(|e| format!("cannot render {} as JSON: {e}", message.descriptor().full_name()))?;
    Ok(out)
}

/// A repeated, map or scalar `response_body`: rendered through the message
/// mapping so every kind follows the same rules, then picked out.
fn render_field(
    message: &DynamicMessage,
    field: &FieldDescriptor,
    options: &JsonOptions,
    pretty: bool,
) -> Result<Rendered, String> {
    let mut only = DynamicMessage::new(message.descriptor());
    only.set_field(field, message.get_field(field).into_owned());
    let serialize_options = options.serialize_options().skip_default_fields(false);
    let json = only
        .serialize_with_options(serde_json::value::Serializer, &serialize_options)
        .map_err(|e| format!("cannot render {}: {e}", field.full_name()))?;
    let key = if options.proto_field_names { field.name() } else { field.json_name() };
    let value = json.get(key).cloned().unwrap_or(serde_json::Value::Null);
    let mut out = Vec::new();
    let written = if pretty {
        value.serialize(&mut serde_json::Serializer::pretty(&mut out))
    } else {
        value.serialize(&mut serde_json::Serializer::new(&mut out))
    };
    written.map_err(|e| e.to_string())?;
    Ok(Rendered::Json(out))
}

fn raw_http_body(message: &DynamicMessage) -> Rendered {
    let content_type = match message.get_field_by_name("content_type").as_deref() {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => "application/octet-stream".to_string(),
    };
    let data = match message.get_field_by_name("data").as_deref() {
        Some(Value::Bytes(b)) => b.clone(),
        _ => Bytes::new(),
    };
    Rendered::Raw { content_type, data }
}
