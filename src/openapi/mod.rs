//! The OpenAPI 3.1 document of a snapshot: one operation per binding, with
//! path, query and body parameters and proto3-JSON schemas. Built once with
//! the snapshot, never per request.

mod composite;
pub mod docs;
mod enforced;
mod form;
pub mod schema;

use std::collections::{BTreeMap, HashMap, HashSet};

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor};
use serde_json::{Map, Value, json};

use crate::route::template::Segment;
use crate::route::{Binding, BodyRule, RouteTable, Template};
use crate::transcode::wkt;
pub use composite::{AnswerShape, CallSummary, CompositeOperation};
pub use enforced::{Access, Enforcement, Schemes};
use schema::{Comments, Schemas};

#[derive(Clone, Copy)]
enum Source {
    /// A binding, by its index in the route table.
    Binding(usize),
    /// A composite, by its index in `composites`.
    Composite(usize),
}

/// How deep query parameters reach into nested messages.
const MAX_QUERY_DEPTH: usize = 3;

/// Most query parameters listed for one operation: flattening nested
/// messages multiplies (100 fields three levels deep are a million), and
/// the full list helps no one. Fields past it are still accepted.
const MAX_QUERY_PARAMETERS: usize = 200;

/// One operation to write: what it is for, verb, id and path parameters.
struct Planned {
    source: Source,
    verb: String,
    id: String,
    path_params: Vec<Value>,
}

/// What `info`, `servers` and the security parts say, and what the
/// gateway enforces on each binding.
#[derive(Clone, Copy)]
pub struct Info<'a> {
    pub version: &'a str,
    pub digest: &'a str,
    pub generation: u64,
    /// `servers` URLs; the gateway itself (`/`) when empty.
    pub servers: &'a [String],
    /// Title, description, contact and licence.
    pub about: &'a crate::config::OpenApiInfo,
    pub schemes: &'a Schemes,
    /// What the gateway enforces on a binding, by its index in the route
    /// table: success status, access, rate limit.
    pub enforced: &'a Enforced<'a>,
}

/// How the document learns what is enforced on a binding.
pub type Enforced<'a> = dyn Fn(usize) -> Enforcement + Send + Sync + 'a;

/// Writes the document for the bindings of `routes` over `methods`, and
/// for `composites`, as JSON text, one path item and one component schema at a time: the whole
/// document was a `serde_json::Value` tree first, which peaked at 2 GiB for
/// a 2.9 MiB descriptor set.
pub fn document(
    pool: &DescriptorPool,
    routes: &RouteTable,
    methods: &[MethodDescriptor],
    composites: &[CompositeOperation],
    info: &Info<'_>,
) -> serde_json::Result<Vec<u8>> {
    let comments = Comments::from_pool(pool);
    let mut schemas = Schemas::default();
    // Operations by path, ids given in binding order.
    let mut paths: BTreeMap<String, Vec<Planned>> = BTreeMap::new();
    let mut operation_ids = HashSet::new();
    let mut path_shapes = HashMap::new();
    let mut tags = BTreeMap::new();
    // The auto-mapped POST /pkg.Service/Method is listed only for methods
    // without a rule: generated clients got every operation twice.
    let annotated: HashSet<usize> = routes.bindings().iter().filter(|b| !b.auto_mapped).map(|b| b.method).collect();
    for (index, binding) in routes.bindings().iter().enumerate() {
        let Some(method) = methods.get(binding.method) else {
            continue;
        };
        if binding.auto_mapped && annotated.contains(&binding.method) {
            continue;
        }
        let verb = binding.http_method.as_str().to_ascii_lowercase();
        if !["get", "put", "post", "delete", "patch", "head", "options", "trace"].contains(&verb.as_str()) {
            continue;
        }
        let (path, mut path_params) = openapi_path(&binding.template, &binding.path_fields, &mut schemas, &comments);
        let path = share_path_item(path, &mut path_params, &mut path_shapes);
        let base = format!("{}_{}", method.parent_service().name(), method.name());
        let id = unique_id(if binding.auto_mapped { format!("{base}_rpc") } else { base }, &mut operation_ids);
        let service = method.parent_service();
        let description = comments.get(service.parent_file().name(), service.path());
        tags.entry(service.full_name().to_string()).or_insert_with(|| description.map(str::to_string));
        paths.entry(path).or_default().push(Planned { source: Source::Binding(index), verb, id, path_params });
    }
    for (index, composite) in composites.iter().enumerate() {
        let (path, mut path_params) = openapi_path(&composite.template, &[], &mut schemas, &comments);
        let path = share_path_item(path, &mut path_params, &mut path_shapes);
        let id = unique_id(composite::id_base(composite), &mut operation_ids);
        let description = "Endpoints answered by several gRPC calls, planned by the gateway.";
        tags.entry(composite::TAG.to_string()).or_insert_with(|| Some(description.to_string()));
        let planned = Planned { source: Source::Composite(index), verb: "get".into(), id, path_params };
        paths.entry(path).or_default().push(planned);
    }
    let mut out = Vec::new();
    let mut info_json = json!({
        "title": info.about.title,
        "version": info.version,
        "x-protogate-schema": { "digest": info.digest, "generation": info.generation },
    });
    if !info.about.description.is_empty() {
        info_json["description"] = Value::String(info.about.description.clone());
    }
    for (key, value) in [("contact", &info.about.contact), ("license", &info.about.license)] {
        if let Some(value) = value {
            info_json[key] = value.clone();
        }
    }
    out.extend_from_slice(br#"{"openapi":"3.1.0","info":"#);
    serde_json::to_writer(&mut out, &info_json)?;
    out.extend_from_slice(br#","servers":"#);
    serde_json::to_writer(&mut out, &servers(info.servers))?;
    out.extend_from_slice(br#","tags":"#);
    serde_json::to_writer(&mut out, &tag_list(tags))?;
    if info.schemes.is_empty() {
        // Nothing is asked of anyone; said once for the whole document.
        out.extend_from_slice(br#","security":[]"#);
    }
    out.extend_from_slice(br#","paths":{"#);
    for (n, (path, operations)) in paths.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let mut item = Map::new();
        for Planned { source, verb, id, path_params } in operations {
            let (mut operation, enforcement) = match source {
                Source::Binding(index) => {
                    let Some((binding, method)) =
                        routes.bindings().get(index).and_then(|b| Some((b, methods.get(b.method)?)))
                    else {
                        continue;
                    };
                    (operation(binding, method, path_params, &mut schemas, &comments), (info.enforced)(index))
                }
                Source::Composite(index) => {
                    let Some(composite) = composites.get(index) else { continue };
                    let operation = composite::operation(composite, path_params, &mut schemas, &comments);
                    (operation, composite.enforcement.clone())
                }
            };
            operation["operationId"] = Value::String(id);
            enforced::apply(&mut operation, &enforcement, info.schemes);
            item.insert(verb, operation);
        }
        serde_json::to_writer(&mut out, &path)?;
        out.push(b':');
        serde_json::to_writer(&mut out, &item)?;
    }
    out.extend_from_slice(br#"},"components":{"#);
    if !info.schemes.is_empty() {
        out.extend_from_slice(br#""securitySchemes":"#);
        serde_json::to_writer(&mut out, &info.schemes.components())?;
        out.push(b',');
    }
    out.extend_from_slice(br#""schemas":{"#);
    let mut components = BTreeMap::from([("google.rpc.Status".to_string(), serde_json::to_vec(&status_schema())?)]);
    while let Some(message) = schemas.next_pending() {
        let schema = schemas.message_schema(&message, &comments);
        components.insert(message.full_name().to_string(), serde_json::to_vec(&schema)?);
    }
    for (n, (name, schema)) in components.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, name)?;
        out.push(b':');
        out.extend_from_slice(schema);
    }
    out.extend_from_slice(b"}}}");
    Ok(out)
}

/// The document's `servers`: the configured URLs, else the gateway that
/// served it (a relative URL, right behind any host name or proxy).
fn servers(configured: &[String]) -> Value {
    if configured.is_empty() {
        return json!([{ "url": "/", "description": "This gateway" }]);
    }
    configured.iter().map(|url| json!({ "url": url })).collect()
}

/// One tag per service, described by its proto comment.
fn tag_list(tags: BTreeMap<String, Option<String>>) -> Value {
    // A service without a comment is still described (linters ask for it).
    let tags = tags.into_iter().map(|(name, description)| {
        let description = description.unwrap_or_else(|| format!("The gRPC service `{name}`."));
        json!({ "name": name, "description": description })
    });
    Value::Array(tags.collect())
}

fn operation(
    binding: &Binding,
    method: &MethodDescriptor,
    mut parameters: Vec<Value>,
    schemas: &mut Schemas,
    comments: &Comments,
) -> Value {
    let input = method.input();
    if !matches!(binding.body, BodyRule::Whole) {
        let body_field = match &binding.body {
            BodyRule::Field(field) => Some(field.number()),
            _ => None,
        };
        let mut path = Vec::new();
        query_parameters(&input, binding, body_field, &mut path, &mut parameters, schemas, comments);
    }
    let file = method.parent_file();
    let mut operation = json!({
        "tags": [method.parent_service().full_name()],
        "summary": method.full_name(),
        "parameters": parameters,
        "responses": {
            "200": response(binding, method, schemas, comments),
            "default": {
                "description": "An error: a google.rpc.Status with the HTTP status of its code.",
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/google.rpc.Status" } } },
            },
        },
    });
    if let Some(text) = comments.get(file.name(), method.path()) {
        operation["description"] = Value::String(text.to_string());
    }
    if let Some(body) = request_body(binding, &input, schemas, comments) {
        operation["requestBody"] = body;
    }
    operation
}

fn request_body(
    binding: &Binding,
    input: &MessageDescriptor,
    schemas: &mut Schemas,
    comments: &Comments,
) -> Option<Value> {
    let (schema, form) = match &binding.body {
        BodyRule::None => return None,
        BodyRule::Whole if wkt::is_http_body(input) => {
            return Some(raw_content("The raw request body."));
        }
        BodyRule::Whole => {
            // Path variables of the whole body are not parts.
            let bound: Vec<FieldDescriptor> =
                binding.path_fields.iter().filter(|p| p.len() == 1).filter_map(|p| p.first().cloned()).collect();
            (schemas.reference(input, comments), form::content(input, &bound, schemas, comments))
        }
        BodyRule::Field(field) => match field.kind() {
            Kind::Message(m) if wkt::is_http_body(&m) => {
                return Some(raw_content("The raw request body."));
            }
            Kind::Message(m) if !field.is_list() && !field.is_map() => {
                (schemas.field_schema(field, comments), form::content(&m, &[], schemas, comments))
            }
            _ => (schemas.field_schema(field, comments), None),
        },
    };
    let mut content = json!({ "application/json": { "schema": schema } });
    if let Some(form) = form {
        content["multipart/form-data"] = form;
    }
    Some(json!({ "required": true, "content": content }))
}

fn response(binding: &Binding, method: &MethodDescriptor, schemas: &mut Schemas, comments: &Comments) -> Value {
    let output = method.output();
    let schema = match &binding.response_body {
        Some(field) => match field.kind() {
            Kind::Message(m) if wkt::is_http_body(&m) => {
                return raw_content("The raw response body.");
            }
            _ => schemas.field_schema(field, comments),
        },
        None if wkt::is_http_body(&output) => return raw_content("The raw response body."),
        None => schemas.reference(&output, comments),
    };
    if method.is_server_streaming() {
        return json!({
            "description": "A stream: one JSON message per line (application/x-ndjson), or Server-Sent Events \
                            with Accept: text/event-stream. A failure after the start ends the stream with an \
                            {\"error\": Status} line or an `error` event.",
            "content": {
                "application/x-ndjson": { "schema": schema },
                "text/event-stream": { "schema": { "type": "string" } },
            },
        });
    }
    json!({ "description": "OK", "content": { "application/json": { "schema": schema } } })
}

/// A `google.api.HttpBody` body: bytes of whatever `Content-Type` the
/// caller or the backend names. Listed as `application/octet-stream` with
/// a binary schema, the form generators turn into a blob or file argument
/// (`*/*` made several of them emit an untyped `unknown`).
fn raw_content(description: &str) -> Value {
    json!({
        "description": format!("{description} Any Content-Type is passed through as HttpBody.content_type."),
        "content": { "application/octet-stream": {
            "schema": { "type": "string", "format": "binary", "contentMediaType": "application/octet-stream" }
        } },
    })
}

/// The OpenAPI path of a binding: a single-segment variable becomes one
/// parameter; a multi-segment variable keeps its literals in the path and
/// turns each wildcard into a parameter, so generated clients build real
/// URLs instead of escaping `/`.
fn openapi_path(
    template: &Template,
    path_fields: &[Vec<FieldDescriptor>],
    schemas: &mut Schemas,
    comments: &Comments,
) -> (String, Vec<Value>) {
    let mut path = String::new();
    let mut parameters = Vec::new();
    let mut used = HashSet::new();
    let mut index = 0;
    while index < template.segments.len() {
        path.push('/');
        let variable = template.variables.iter().enumerate().find(|(_, v)| v.start == index);
        let Some((variable, field_path)) = variable.map(|(i, v)| (v, path_fields.get(i).map_or(&[][..], |p| &p[..])))
        else {
            let name = format!("segment{index}");
            match &template.segments[index] {
                Segment::Literal(literal) => path.push_str(literal),
                _ => push_parameter(
                    &mut path,
                    &mut parameters,
                    &mut used,
                    &name,
                    json!({"type": "string"}),
                    "Any single path segment.",
                ),
            }
            index += 1;
            continue;
        };
        let field = variable.field_path.join(".");
        if !template.is_multi_segment(variable) {
            let schema = field_path.last().map_or(json!({"type": "string"}), |f| schemas.field_schema(f, comments));
            // `a.b` is no identifier for generators (Spectral and
            // openapi-python-client refused it): `a_b`, with the field path
            // kept in `x-protogate-field`.
            let name = field.replace('.', "_");
            push_parameter(&mut path, &mut parameters, &mut used, &name, schema, &format!("Sets `{field}`."));
            // Dropped again in `share_path_item` where the name says it.
            if let Some(Value::Object(parameter)) = parameters.last_mut() {
                parameter.insert("x-protogate-field".into(), Value::String(field.clone()));
            }
        } else {
            let pattern = &template.segments[variable.start..variable.end];
            for (offset, segment) in pattern.iter().enumerate() {
                if offset > 0 {
                    path.push('/');
                }
                let previous = offset.checked_sub(1).and_then(|i| match &pattern[i] {
                    Segment::Literal(l) => Some(l.as_str()),
                    _ => None,
                });
                let name = previous
                    .filter(|p| !used.contains(*p))
                    .map_or_else(|| format!("{}_{offset}", field.replace('.', "_")), str::to_string);
                let description =
                    format!("A segment of `{field}`, which is the whole matched `{}`.", pattern_text(pattern));
                match segment {
                    Segment::Literal(literal) => path.push_str(literal),
                    Segment::Single => push_parameter(
                        &mut path,
                        &mut parameters,
                        &mut used,
                        &name,
                        json!({"type": "string"}),
                        &description,
                    ),
                    Segment::Multi => push_parameter(
                        &mut path,
                        &mut parameters,
                        &mut used,
                        &name,
                        json!({"type": "string"}),
                        &format!("{description} May contain '/'."),
                    ),
                }
            }
        }
        index = variable.end;
    }
    if path.is_empty() {
        path.push('/');
    }
    if let Some(verb) = &template.verb {
        path.push(':');
        path.push_str(verb);
    }
    (path, parameters)
}

/// Templates that differ only in parameter names are one path to OpenAPI
/// (Redocly and Spectral refuse two such keys): a later one takes the first
/// one's names, its own field still named by `x-protogate-field`.
fn share_path_item(path: String, parameters: &mut [Value], shapes: &mut HashMap<String, String>) -> String {
    let names = |path: &str| -> Vec<String> {
        path.split('{').skip(1).filter_map(|rest| rest.split_once('}')).map(|(name, _)| name.to_string()).collect()
    };
    let own = names(&path);
    let shape = own.iter().fold(path.clone(), |shape, name| shape.replacen(&format!("{{{name}}}"), "{}", 1));
    let shared = shapes.entry(shape).or_insert_with(|| path.clone()).clone();
    let renamed: HashMap<String, String> = own.into_iter().zip(names(&shared)).collect();
    for parameter in parameters.iter_mut() {
        let Value::Object(parameter) = parameter else { continue };
        let name = parameter.get("name").and_then(Value::as_str).unwrap_or_default();
        let name = renamed.get(name).cloned().unwrap_or_else(|| name.to_string());
        if parameter.get("x-protogate-field").and_then(Value::as_str) == Some(name.as_str()) {
            parameter.remove("x-protogate-field");
        }
        parameter.insert("name".into(), Value::String(name));
    }
    shared
}

fn push_parameter(
    path: &mut String,
    parameters: &mut Vec<Value>,
    used: &mut HashSet<String>,
    name: &str,
    schema: Value,
    description: &str,
) {
    path.push('{');
    path.push_str(name);
    path.push('}');
    used.insert(name.to_string());
    parameters
        .push(json!({ "name": name, "in": "path", "required": true, "schema": schema, "description": description }));
}

fn pattern_text(pattern: &[Segment]) -> String {
    let parts: Vec<&str> = pattern
        .iter()
        .map(|s| match s {
            Segment::Literal(l) => l.as_str(),
            Segment::Single => "*",
            Segment::Multi => "**",
        })
        .collect();
    parts.join("/")
}

/// Query parameters: every field not bound by the path or body, nested
/// messages flattened as `a.b` down to a bounded depth.
fn query_parameters(
    message: &MessageDescriptor,
    binding: &Binding,
    body_field: Option<u32>,
    prefix: &mut Vec<FieldDescriptor>,
    out: &mut Vec<Value>,
    schemas: &mut Schemas,
    comments: &Comments,
) {
    for field in message.fields() {
        if out.len() >= MAX_QUERY_PARAMETERS {
            return;
        }
        if prefix.is_empty() && body_field == Some(field.number()) || field.is_map() {
            continue;
        }
        prefix.push(field.clone());
        let bound = binding.path_fields.iter().any(|p| same_path(p, prefix));
        let nested = match field.kind() {
            Kind::Message(m) if !field.is_list() && !wkt::has_text_form(&m) => Some(m),
            _ => None,
        };
        match nested {
            _ if bound => {}
            Some(m) if prefix.len() < MAX_QUERY_DEPTH => {
                query_parameters(&m, binding, None, prefix, out, schemas, comments)
            }
            Some(_) => {}
            None if field.is_list() && matches!(field.kind(), Kind::Message(_)) => {}
            None => {
                let name: Vec<&str> = prefix.iter().map(|f| f.json_name()).collect();
                let mut parameter =
                    json!({ "name": name.join("."), "in": "query", "schema": schemas.field_schema(&field, comments) });
                if field.is_list() {
                    parameter["explode"] = Value::Bool(true);
                }
                if let Some(text) = comments.get(field.parent_file().name(), field.path()) {
                    parameter["description"] = Value::String(text.to_string());
                }
                out.push(parameter);
            }
        }
        prefix.pop();
    }
}

fn same_path(a: &[FieldDescriptor], b: &[FieldDescriptor]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.number() == y.number())
}

fn unique_id(base: String, used: &mut HashSet<String>) -> String {
    let mut id = base.clone();
    let mut n = 1;
    while !used.insert(id.clone()) {
        n += 1;
        id = format!("{base}_{n}");
    }
    id
}

fn status_schema() -> Value {
    json!({
        "type": "object",
        "description": "The error model of gRPC and REST APIs (google.rpc.Status).",
        "properties": {
            "code": { "type": "integer", "format": "int32", "description": "A google.rpc.Code value." },
            "message": { "type": "string" },
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": { "@type": { "type": "string" } },
                    "additionalProperties": true,
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameter(name: &str, field: Option<&str>) -> Value {
        let mut value = json!({ "name": name, "in": "path" });
        if let Some(field) = field {
            value["x-protogate-field"] = field.into();
        }
        value
    }

    #[test]
    fn templates_differing_only_in_names_share_one_path_item() {
        let mut shapes = HashMap::new();
        let cases = [
            ("/v1/a/{x}", vec![parameter("x", Some("x"))], "/v1/a/{x}", vec![parameter("x", None)]),
            ("/v1/a/{y_z}", vec![parameter("y_z", Some("y.z"))], "/v1/a/{x}", vec![parameter("x", Some("y.z"))]),
            ("/v1/a/{x}:go", vec![parameter("x", Some("x"))], "/v1/a/{x}:go", vec![parameter("x", None)]),
            (
                "/v1/b/{p}/c/{q}",
                vec![parameter("p", None), parameter("q", Some("q"))],
                "/v1/b/{p}/c/{q}",
                vec![parameter("p", None), parameter("q", None)],
            ),
            (
                "/v1/b/{q}/c/{p}",
                vec![parameter("q", Some("q")), parameter("p", Some("p"))],
                "/v1/b/{p}/c/{q}",
                vec![parameter("p", Some("q")), parameter("q", Some("p"))],
            ),
        ];
        for (path, mut parameters, shared, expected) in cases {
            assert_eq!(share_path_item(path.into(), &mut parameters, &mut shapes), shared, "{path}");
            assert_eq!(parameters, expected, "{path}");
        }
    }
}
