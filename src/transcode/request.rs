//! Builds the request message from the body, the query string and the path
//! variables, in that order, so the path has the last word.

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value};

use prost::Message;

use super::fast::{Plans, from_json, wire};
use super::form::{self, FormPart};
use super::{JsonOptions, exact, field_mask, field_path, json, query, value, wkt};
use crate::error::Error;
use crate::route::binding::path_name;
use crate::route::{Binding, BodyRule};

/// The parts of an HTTP request that feed the request message.
#[derive(Debug, Clone, Copy)]
pub struct HttpInput<'a> {
    /// Decoded path variables, aligned with the binding's template variables.
    pub variables: &'a [String],
    pub query: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// Builds the request message for `binding`, or a 400/415 naming what is wrong.
pub fn build(
    binding: &Binding,
    input_type: &MessageDescriptor,
    http: HttpInput<'_>,
    options: &JsonOptions,
) -> Result<DynamicMessage, Error> {
    let mut message = DynamicMessage::new(input_type.clone());
    read_body(&mut message, binding, http, options)?;
    let mask = options.patch_field_mask.then(|| field_mask::target(binding, &message)).flatten();
    if let Some((mask, body_type)) = mask {
        field_mask::fill(&mut message, &mask, &body_type, http.body);
    }
    with_query_and_path(message, binding, http, options)
}

/// The request message from a `multipart/form-data` body's parts (see
/// `form`), then the query string and path variables as in `build`. A
/// PATCH's unset field mask lists the parts' fields.
pub fn build_form(
    binding: &Binding,
    input_type: &MessageDescriptor,
    http: HttpInput<'_>,
    parts: &[FormPart<'_>],
    options: &JsonOptions,
) -> Result<DynamicMessage, Error> {
    let mut message = DynamicMessage::new(input_type.clone());
    let mask = options.patch_field_mask.then(|| field_mask::target(binding, &message)).flatten();
    let paths = match (&binding.body, form_body(binding, input_type)) {
        (BodyRule::Whole, true) => form::apply(&mut message, parts, options)?,
        (BodyRule::Field(field), true) => match message.get_field_mut(field) {
            Value::Message(body) => form::apply(body, parts, options)?,
            _ => return Err(Error::gateway(tonic::Code::Internal, "a form's body field holds no message")),
        },
        _ => {
            return Err(Error::bad_request(format!(
                "{} {} takes no multipart/form-data body",
                binding.http_method, binding.template_text
            )));
        }
    };
    if let Some((mask, _)) = mask {
        field_mask::set_paths(&mut message, &mask, paths);
    }
    with_query_and_path(message, binding, http, options)
}

/// Whether the route's body is a message a form can fill: the whole
/// request or one singular message field, not a raw `google.api.HttpBody`.
pub fn form_body(binding: &Binding, input_type: &MessageDescriptor) -> bool {
    match &binding.body {
        BodyRule::Whole => !wkt::is_http_body(input_type),
        BodyRule::Field(field) => {
            !field.is_list() && !field.is_map() && matches!(field.kind(), Kind::Message(m) if !wkt::is_http_body(&m))
        }
        BodyRule::None => false,
    }
}

/// Applies the query string, then the path variables, which have the last word.
fn with_query_and_path(
    mut message: DynamicMessage,
    binding: &Binding,
    http: HttpInput<'_>,
    options: &JsonOptions,
) -> Result<DynamicMessage, Error> {
    if let Some(query) = http.query {
        query::apply(&mut message, binding, query, options)?;
    }
    for (path, text) in binding.path_fields.iter().zip(http.variables) {
        let value = value::parse_scalar(&path_leaf_kind(path), text).map_err(|reason| {
            Error::bad_request(format!(
                "invalid value {text:?} for field {:?} in the URL path: {reason}",
                path_name(path)
            ))
        })?;
        field_path::set(&mut message, path, value);
    }
    Ok(message)
}

/// The request in wire form by the fast transcoder, for the common shape:
/// a JSON body (whole, or one message field), no query string, and path
/// variables appended as a patch (a later field wins, messages merge — the
/// path has the last word, as in `build`). `input_plan` is the input
/// type's plan, looked up once per snapshot. `None` hands over to `build`.
pub fn build_wire(
    binding: &Binding,
    input_type: &MessageDescriptor,
    (plans, input_plan): (&Plans, Option<usize>),
    http: HttpInput<'_>,
    options: &JsonOptions,
) -> Option<Vec<u8>> {
    // A PATCH may need its field mask filled from the body (`build` does).
    if http.query.is_some_and(|q| !q.is_empty())
        || (options.patch_field_mask && binding.http_method == http::Method::PATCH)
        || http.body.iter().all(u8::is_ascii_whitespace)
        || check_json_content_type(http.content_type).is_err()
        || json::exceeds_depth(http.body, options.max_depth)
    {
        return None;
    }
    // Counting ignored fields needs prost-reflect's reading (`parse_message`).
    let ignore_unknown = options.unknown_fields == super::Unknown::Ignore && !options.count_ignored_fields;
    let mut wire = Vec::with_capacity(http.body.len());
    match &binding.body {
        BodyRule::Whole if !wkt::is_http_body(input_type) => {
            from_json::parse(plans, input_plan?, http.body, ignore_unknown, &mut wire).ok()?;
        }
        BodyRule::Field(field) if !field.is_list() && !field.is_map() => {
            let Kind::Message(body_type) = field.kind() else { return None };
            if wkt::is_http_body(&body_type) {
                return None;
            }
            let plan = plans.message_index(body_type.full_name())?;
            let start = wire::begin_len(&mut wire, field.number());
            from_json::parse(plans, plan, http.body, ignore_unknown, &mut wire).ok()?;
            wire::end_len(&mut wire, start);
        }
        _ => return None,
    }
    if !binding.path_fields.is_empty() {
        let mut patch = DynamicMessage::new(input_type.clone());
        for (path, text) in binding.path_fields.iter().zip(http.variables) {
            let value = value::parse_scalar(&path_leaf_kind(path), text).ok()?;
            // A default value would not be encoded, so it could not win.
            if value.is_default(&path_leaf_kind(path)) {
                return None;
            }
            field_path::set(&mut patch, path, value);
        }
        patch.encode(&mut wire).ok()?;
    }
    Some(wire)
}

fn path_leaf_kind(path: &[FieldDescriptor]) -> Kind {
    path.last().map(|f| f.kind()).unwrap_or(Kind::String)
}

fn read_body(
    message: &mut DynamicMessage,
    binding: &Binding,
    http: HttpInput<'_>,
    options: &JsonOptions,
) -> Result<(), Error> {
    let target = match &binding.body {
        // `{}` adds nothing, and grpc-gateway clients send it on every call.
        BodyRule::None if is_empty_json(http.body) => return Ok(()),
        BodyRule::None => {
            return Err(Error::bad_request(format!(
                "{} {} takes no request body",
                binding.http_method, binding.template_text
            )));
        }
        BodyRule::Whole => None,
        BodyRule::Field(field) => Some(field),
    };
    let body_type = match target {
        None => Some(message.descriptor()),
        Some(field) => match field.kind() {
            Kind::Message(m) if !field.is_list() && !field.is_map() => Some(m),
            _ => None,
        },
    };
    if let Some(http_body) = body_type.clone().filter(wkt::is_http_body) {
        let raw = self::http_body(&http_body, http.content_type, http.body);
        match target {
            None => *message = raw,
            Some(field) => message.set_field(field, Value::Message(raw)),
        }
        return Ok(());
    }
    if http.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    check_json_content_type(http.content_type)?;
    check_depth(http.body, options)?;
    match (target, body_type) {
        (None, _) => *message = parse_message(message.descriptor(), http.body, options, "")?,
        (Some(field), Some(field_type)) => {
            let parsed = parse_message(field_type, http.body, options, field.name())?;
            message.set_field(field, Value::Message(parsed));
        }
        (Some(field), None) => parse_field_value(message, field, http.body, options)?,
    }
    Ok(())
}

/// No body, whitespace, or an empty JSON object.
fn is_empty_json(body: &[u8]) -> bool {
    let text = body.trim_ascii();
    text.is_empty()
        || text.strip_prefix(b"{").and_then(|t| t.strip_suffix(b"}")).is_some_and(|t| t.trim_ascii().is_empty())
}

/// A `google.api.HttpBody` holding `data` as it came, with its type.
pub(super) fn http_body(descriptor: &MessageDescriptor, content_type: Option<&str>, data: &[u8]) -> DynamicMessage {
    let mut raw = DynamicMessage::new(descriptor.clone());
    let content_type = content_type.unwrap_or("application/octet-stream");
    // Field names are the standard ones of google/api/httpbody.proto.
    raw.set_field_by_name("content_type", Value::String(content_type.to_string()));
    raw.set_field_by_name("data", Value::Bytes(bytes::Bytes::copy_from_slice(data)));
    raw
}

/// JSON bodies only: `application/json`, any `+json` type, or no type at all.
fn check_json_content_type(content_type: Option<&str>) -> Result<(), Error> {
    let Some(content_type) = content_type else {
        return Ok(());
    };
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    // An empty value is no value: Go's http.Post(url, "", body) sends one.
    if essence.is_empty() || essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(Error::unsupported_media_type(content_type))
    }
}

/// One JSON request message (a Connect or WebSocket message, a stream
/// line): nesting bounded, integers exact, errors naming the field path.
pub fn message_from_json(
    descriptor: MessageDescriptor,
    body: &[u8],
    options: &JsonOptions,
) -> Result<DynamicMessage, Error> {
    check_depth(body, options)?;
    parse_message(descriptor, body, options, "")
}

/// `message_from_json` straight to wire form when the fast transcoder
/// takes the message (else `None`: the caller falls back, and any error is
/// reported by `message_from_json`).
pub fn message_wire_from_json(
    descriptor: &MessageDescriptor,
    (plans, plan): (&Plans, Option<usize>),
    body: &[u8],
    options: &JsonOptions,
) -> Option<Vec<u8>> {
    if body.iter().all(u8::is_ascii_whitespace)
        || wkt::is_http_body(descriptor)
        || json::exceeds_depth(body, options.max_depth)
    {
        return None;
    }
    let ignore_unknown = options.unknown_fields == super::Unknown::Ignore && !options.count_ignored_fields;
    let mut wire = Vec::with_capacity(body.len());
    from_json::parse(plans, plan?, body, ignore_unknown, &mut wire).ok()?;
    Some(wire)
}

/// Builds one method's request messages in wire form, owned for a stream
/// of them: by the fast transcoder when it takes the input, else built by
/// prost-reflect (which names what is wrong) and encoded. With a binding,
/// each message is read as that binding's body with its path variables and
/// query; without one, as the whole message.
#[derive(Debug, Clone)]
pub struct WireBuilder {
    binding: Option<Binding>,
    input: MessageDescriptor,
    plans: std::sync::Arc<Plans>,
    plan: Option<usize>,
    options: JsonOptions,
}

impl WireBuilder {
    pub fn new(
        binding: Option<Binding>,
        input: MessageDescriptor,
        (plans, plan): (std::sync::Arc<Plans>, Option<usize>),
        options: &JsonOptions,
    ) -> Self {
        Self { binding, input, plans, plan, options: options.clone() }
    }

    /// The message's wire bytes, and whether the fast transcoder wrote them.
    pub fn wire(&self, http: HttpInput<'_>) -> Result<(Vec<u8>, bool), Error> {
        let plans = (&*self.plans, self.plan);
        let fast = match &self.binding {
            Some(binding) => build_wire(binding, &self.input, plans, http, &self.options),
            None => message_wire_from_json(&self.input, plans, http.body, &self.options),
        };
        if let Some(wire) = fast {
            return Ok((wire, true));
        }
        let message = match &self.binding {
            Some(binding) => build(binding, &self.input, http, &self.options)?,
            None => message_from_json(self.input.clone(), http.body, &self.options)?,
        };
        Ok((message.encode_to_vec(), false))
    }
}

fn check_depth(body: &[u8], options: &JsonOptions) -> Result<(), Error> {
    if json::exceeds_depth(body, options.max_depth) {
        return Err(Error::bad_request(format!("invalid JSON body: nested deeper than {} levels", options.max_depth)));
    }
    Ok(())
}

/// Joins the body field's name and a path inside it.
fn prefixed(prefix: &str, inner: &str) -> String {
    match (prefix, inner) {
        (p, "." | "?" | "") => p.to_string(),
        ("", inner) => inner.to_string(),
        (p, inner) => format!("{p}.{inner}"),
    }
}

/// Parses a JSON body as `descriptor`, naming the failing field path (below
/// `prefix`, the body field, if any) in the error.
fn parse_message(
    descriptor: MessageDescriptor,
    body: &[u8],
    options: &JsonOptions,
    prefix: &str,
) -> Result<DynamicMessage, Error> {
    if exact::may_hold_rounded_numbers(body) {
        exact::check(body, &descriptor).map_err(|(path, reason)| json_error(&prefixed(prefix, &path), &reason))?;
    }
    if options.count_ignored_fields && options.unknown_fields == super::Unknown::Ignore {
        // Strict first: the common body has no unknown field and is read once.
        let strict = JsonOptions { unknown_fields: super::Unknown::Reject, ..options.clone() };
        match parse_tracked(descriptor.clone(), body, &strict) {
            Err((_, e)) if e.starts_with("unrecognized field name") || e.starts_with("unknown field") => note_ignored(),
            Err((path, e)) => return Err(json_error(&prefixed(prefix, &path), &e)),
            Ok(message) => return Ok(message),
        }
    }
    parse_tracked(descriptor, body, options).map_err(|(path, e)| json_error(&prefixed(prefix, &path), &e))
}

/// Bodies whose unknown fields were ignored under `count_ignored_fields`.
static IGNORED_FIELDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts one request whose unknown input was ignored.
pub(super) fn note_ignored() {
    IGNORED_FIELDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// How many requests had unknown JSON fields or query parameters ignored
/// (counted under `count_ignored_fields`) so far.
pub fn ignored_field_bodies() -> u64 {
    IGNORED_FIELDS.load(std::sync::atomic::Ordering::Relaxed)
}

/// prost-reflect's reading, with the failing field path.
fn parse_tracked(
    descriptor: MessageDescriptor,
    body: &[u8],
    options: &JsonOptions,
) -> Result<DynamicMessage, (String, String)> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(&mut deserializer, &mut track);
    let parsed = DynamicMessage::deserialize_with_options(descriptor, tracked, &options.deserialize_options());
    let message = parsed.map_err(|e| (track.path().to_string(), e.to_string()))?;
    deserializer.end().map_err(|e| (String::new(), e.to_string()))?;
    Ok(message)
}

/// A body bound to a repeated, map or scalar field: read as one JSON value,
/// then set through the mapping of the whole message so every field kind
/// follows the same rules.
fn parse_field_value(
    message: &mut DynamicMessage,
    field: &FieldDescriptor,
    body: &[u8],
    options: &JsonOptions,
) -> Result<(), Error> {
    if exact::may_hold_rounded_numbers(body) {
        exact::check_field(body, field)
            .map_err(|(path, reason)| json_error(&prefixed(field.name(), &path), &reason))?;
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| json_error("", &e.to_string()))?;
    let wrapped = serde_json::Value::Object([(field.name().to_string(), value)].into_iter().collect());
    let parsed =
        DynamicMessage::deserialize_with_options(message.descriptor(), wrapped, &options.deserialize_options())
            .map_err(|e| json_error(field.name(), &e.to_string()))?;
    message.set_field(field, parsed.get_field(field).into_owned());
    Ok(())
}

fn json_error(path: &str, reason: &str) -> Error {
    if path.is_empty() {
        Error::bad_request(format!("invalid JSON body: {reason}"))
    } else {
        Error::bad_request(format!("invalid JSON body: field {path:?}: {reason}"))
    }
}
