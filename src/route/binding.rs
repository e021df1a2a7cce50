//! `google.api.http` rules → bindings: one HTTP method and path template
//! mapped onto a gRPC method, with its field paths resolved and checked once.

use http::Method;
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor, Value};

use super::template::Template;
use crate::pb::google::api::{HttpRule, http_rule::Pattern};

/// A chain of fields from the request message down to a leaf.
pub type FieldPath = Vec<FieldDescriptor>;

/// One HTTP route to a gRPC method.
#[derive(Debug, Clone)]
pub struct Binding {
    /// Index of the method in the snapshot.
    pub method: usize,
    /// Full gRPC method name, for errors and listings.
    pub rpc_name: String,
    pub http_method: Method,
    pub template: Template,
    pub template_text: String,
    /// The field each template variable sets, aligned with `template.variables`.
    pub path_fields: Vec<FieldPath>,
    pub body: BodyRule,
    pub response_body: Option<FieldDescriptor>,
    /// The `POST /<package>.<Service>/<Method>` binding every method gets.
    pub auto_mapped: bool,
}

/// Where the request body goes.
#[derive(Debug, Clone)]
pub enum BodyRule {
    /// No body; every field not in the path comes from the query string.
    None,
    /// `body: "*"`: the whole request message.
    Whole,
    /// `body: "field"`: one top-level field.
    Field(FieldDescriptor),
}

impl Binding {
    /// The binding `POST /<package>.<Service>/<Method>` with a JSON body that
    /// every method gets.
    pub fn rpc_path(method: &MethodDescriptor, index: usize) -> Result<Self, String> {
        let text = format!("/{}/{}", method.parent_service().full_name(), method.name());
        let template = Template::parse(&text).map_err(|e| format!("{text:?}: {e}"))?;
        Ok(Self {
            method: index,
            rpc_name: method.full_name().to_string(),
            http_method: Method::POST,
            template,
            template_text: text,
            path_fields: Vec::new(),
            body: BodyRule::Whole,
            response_body: None,
            auto_mapped: true,
        })
    }
}

/// Reads the `google.api.http` option of a method, if it has one.
pub fn http_rule(method: &MethodDescriptor) -> Result<Option<HttpRule>, String> {
    let Some(extension) = method.parent_pool().get_extension_by_name("google.api.http") else {
        return Ok(None);
    };
    let options = method.options();
    if !options.has_extension(&extension) {
        return Ok(None);
    }
    match options.get_extension(&extension).as_ref() {
        Value::Message(rule) => {
            rule.transcode_to::<HttpRule>().map(Some).map_err(|e| format!("unreadable google.api.http option: {e}"))
        }
        _ => Err("google.api.http option is not a message".into()),
    }
}

/// All bindings of one method's rule (the rule and its additional bindings),
/// or every problem found, each prefixed with where it is.
pub fn bindings(method: &MethodDescriptor, index: usize, rule: &HttpRule) -> Result<Vec<Binding>, Vec<String>> {
    let mut bindings = Vec::new();
    let mut errors = Vec::new();
    let rules = std::iter::once((rule, false)).chain(rule.additional_bindings.iter().map(|r| (r, true)));
    for (rule, additional) in rules {
        let location = format!("{}: {}", method.parent_file().name(), method.full_name());
        if additional && !rule.additional_bindings.is_empty() {
            errors.push(format!("{location}: additional_bindings must not be nested"));
        }
        match binding(method, index, rule) {
            Ok(binding) => bindings.push(binding),
            Err(e) => errors.push(format!("{location}: {e}")),
        }
    }
    if errors.is_empty() { Ok(bindings) } else { Err(errors) }
}

fn binding(method: &MethodDescriptor, index: usize, rule: &HttpRule) -> Result<Binding, String> {
    let (http_method, text) = match &rule.pattern {
        Some(Pattern::Get(t)) => (Method::GET, t.as_str()),
        Some(Pattern::Put(t)) => (Method::PUT, t.as_str()),
        Some(Pattern::Post(t)) => (Method::POST, t.as_str()),
        Some(Pattern::Delete(t)) => (Method::DELETE, t.as_str()),
        Some(Pattern::Patch(t)) => (Method::PATCH, t.as_str()),
        Some(Pattern::Custom(custom)) => {
            let method = Method::from_bytes(custom.kind.as_bytes())
                .map_err(|_| format!("custom kind {:?} is not an HTTP method", custom.kind))?;
            (method, custom.path.as_str())
        }
        None => {
            return Err("http rule has no pattern (get, put, post, delete, patch or custom)".into());
        }
    };
    let located = |e: String| format!("{http_method} {text:?}: {e}");
    let template = Template::parse(text).map_err(|e| located(e.to_string()))?;
    let input = method.input();
    let path_fields = template
        .variables
        .iter()
        .map(|v| path_field(&input, &v.field_path))
        .collect::<Result<Vec<_>, _>>()
        .map_err(located)?;
    let body = match rule.body.as_str() {
        "" => BodyRule::None,
        "*" => BodyRule::Whole,
        name => BodyRule::Field(top_level_field(&input, name, "body").map_err(located)?),
    };
    let response_body = match rule.response_body.as_str() {
        "" => None,
        name => Some(top_level_field(&method.output(), name, "response_body").map_err(located)?),
    };
    Ok(Binding {
        method: index,
        rpc_name: method.full_name().to_string(),
        http_method,
        template,
        template_text: text.to_string(),
        path_fields,
        body,
        response_body,
        auto_mapped: false,
    })
}

fn top_level_field(message: &MessageDescriptor, name: &str, what: &str) -> Result<FieldDescriptor, String> {
    message
        .get_field_by_name(name)
        .ok_or_else(|| format!("{what} field {name:?} is not a field of {}", message.full_name()))
}

/// Resolves a path variable's field path: singular messages down to a
/// singular leaf that has a text form (a scalar, an enum, or a well-known
/// type such as Timestamp).
fn path_field(message: &MessageDescriptor, names: &[String]) -> Result<FieldPath, String> {
    let mut path = Vec::with_capacity(names.len());
    let mut current = message.clone();
    let shown = names.join(".");
    for (i, name) in names.iter().enumerate() {
        let field = current
            .get_field_by_name(name)
            .ok_or_else(|| format!("path variable {shown:?}: no field {name:?} in {}", current.full_name()))?;
        if field.is_list() || field.is_map() {
            return Err(format!("path variable {shown:?} is a repeated field"));
        }
        let last = i + 1 == names.len();
        match field.kind() {
            Kind::Message(m) if !last => current = m,
            Kind::Message(m) if !has_text_form(&m) => {
                return Err(format!("path variable {shown:?} is a message ({})", m.full_name()));
            }
            _ if !last => {
                return Err(format!("path variable {shown:?}: {name:?} is not a message"));
            }
            _ => {}
        }
        path.push(field);
    }
    Ok(path)
}

/// Field path in its proto form, `a.b.c`.
pub fn path_name(path: &[FieldDescriptor]) -> String {
    let names: Vec<&str> = path.iter().map(|f| f.name()).collect();
    names.join(".")
}

// Well-known types with a JSON string form, so a path variable or a query
// parameter can set them (`?published_after=2024-01-01T00:00:00Z`).
pub(crate) const STRING_FORMS: [&str; 3] =
    ["google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"];

pub(crate) const WRAPPERS: [&str; 9] = [
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
];

/// Whether a message type can be written as one string.
pub fn has_text_form(message: &MessageDescriptor) -> bool {
    let name = message.full_name();
    STRING_FORMS.contains(&name) || WRAPPERS.contains(&name)
}
