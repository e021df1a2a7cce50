//! The planner: a composite's configuration and a snapshot in, a checked
//! plan out — every method, field path, reference and dependency resolved,
//! or every problem listed. Pure: no I/O.

use std::collections::HashMap;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::Value;

use crate::config::{CompositeConfig, Shape};
use crate::registry::Snapshot;
use crate::route::Template;
use crate::transcode::JsonOptions;

/// Fan-outs over more elements than this fail rather than flood a backend.
pub const MAX_FAN_OUT: usize = 1000;

#[derive(Debug)]
pub struct Plan {
    /// `GET /v1/shelves/{shelf}:overview`.
    pub route: String,
    pub template: Template,
    /// `/v1/shelves/{shelf}:overview`: what policies select it by.
    pub template_text: String,
    pub description: String,
    /// The full names of the methods it calls, for policies.
    pub methods: Vec<String>,
    /// Route variable names, in template order.
    pub variables: Vec<String>,
    pub query: Vec<String>,
    pub max_concurrency: usize,
    pub calls: Vec<PlannedCall>,
    pub response: Part,
}

#[derive(Debug)]
pub struct PlannedCall {
    pub name: String,
    /// Index in `snapshot.methods`.
    pub method: usize,
    pub request: Piece,
    /// Calls whose answers this one needs, by index.
    pub needs: Vec<usize>,
    /// One call per element of this repeated field of an earlier answer.
    pub for_each: Option<Reference>,
    pub optional: bool,
    /// Whether a later call references its answer, and whether the answer
    /// shows it: each rendering is made only when something reads it.
    pub referenced: bool,
    pub shown: bool,
}

/// The request template, compiled.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Literal(Value),
    Object(Vec<(String, Piece)>),
    Array(Vec<Piece>),
    /// `"{ref}"`: the referenced value as it is (any JSON type).
    Whole(Reference),
    /// `"shelves/{shelf}"`: text with scalar values spliced in.
    Text(Vec<TextPart>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum TextPart {
    Literal(String),
    Ref(Reference),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub source: Source,
    /// Fields below the source.
    pub path: Vec<Step>,
}

/// One field of a reference's path, and the element of it when indexed
/// (`books[0]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub json: String,
    pub proto: String,
    pub index: Option<usize>,
}

impl Step {
    pub fn field(json: &str, proto: &str) -> Self {
        Self { json: json.into(), proto: proto.into(), index: None }
    }

    /// `books` or `books[0]`, in JSON names.
    pub fn text(&self) -> String {
        match self.index {
            Some(index) => format!("{}[{index}]", self.json),
            None => self.json.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Variable(usize),
    Query(usize),
    Call(usize),
    /// The element of the call's `for_each`.
    Item,
}

/// The answer's shape, resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Ref(Reference),
    Object(Vec<(String, Part)>),
}

impl Part {
    /// Whether any of it is (a field of) call `index`'s answer.
    fn shows(&self, index: usize) -> bool {
        match self {
            Part::Ref(reference) => reference.source == Source::Call(index),
            Part::Object(parts) => parts.iter().any(|(_, part)| part.shows(index)),
        }
    }
}

/// What a reference stands for, for type checks and probes.
#[derive(Debug, Clone)]
enum Typed {
    Text,
    Field { kind: Kind, list: bool },
    Message(MessageDescriptor),
}

struct Planner<'a> {
    composite: &'a CompositeConfig,
    snapshot: &'a Snapshot,
    json: &'a JsonOptions,
    variables: Vec<String>,
    call_index: HashMap<&'a str, usize>,
    methods: Vec<Option<usize>>,
    errors: Vec<String>,
}

/// Plans `composite` against `snapshot`, or lists every problem.
pub fn plan(composite: &CompositeConfig, snapshot: &Snapshot, json: &JsonOptions) -> Result<Plan, Vec<String>> {
    let route = composite.route();
    let template = Template::parse(&composite.template)
        .map_err(|e| vec![format!("composite {route}: template: {} at byte {}", e.message, e.offset)])?;
    let variables: Vec<String> = template.variables.iter().map(|v| v.field_path.join(".")).collect();
    let mut planner = Planner {
        composite,
        snapshot,
        json,
        variables,
        call_index: composite.calls.iter().enumerate().map(|(i, c)| (c.name.as_str(), i)).collect(),
        methods: Vec::new(),
        errors: Vec::new(),
    };
    planner.check_route(&template);
    planner.methods = composite.calls.iter().map(|c| planner.method(&c.method, &c.name)).collect();
    let calls: Vec<PlannedCall> = (0..composite.calls.len()).filter_map(|i| planner.call(i)).collect();
    if calls.len() == composite.calls.len() {
        planner.check_cycles(&calls);
    }
    let response = planner.part(&composite.response, "response");
    let Planner { errors, variables, .. } = planner;
    if !errors.is_empty() {
        return Err(errors.into_iter().map(|e| format!("composite {route}: {e}")).collect());
    }
    let mut calls = calls;
    let response = response.unwrap_or(Part::Object(Vec::new()));
    for index in 0..calls.len() {
        calls[index].referenced = calls.iter().any(|c| c.needs.contains(&index));
        calls[index].shown = response.shows(index);
    }
    let methods = calls.iter().map(|c| snapshot.methods[c.method].descriptor.full_name().to_string()).collect();
    Ok(Plan {
        route,
        template,
        template_text: composite.template.clone(),
        description: composite.description.clone(),
        methods,
        variables,
        query: composite.query.clone(),
        max_concurrency: composite.max_concurrency,
        calls,
        response,
    })
}

impl Planner<'_> {
    /// A transcoded route of the same method and shape would be shadowed.
    fn check_route(&mut self, template: &Template) {
        for name in &self.variables {
            if name.contains('.') || name == "item" {
                self.errors.push(format!("path variable {{{name}}} must be a plain name other than `item`"));
            }
        }
        let shape = template.shape();
        let taken = self
            .snapshot
            .routes
            .bindings()
            .iter()
            .find(|b| b.http_method == self.composite.http_method && b.template.shape() == shape && !b.auto_mapped);
        if let Some(binding) = taken {
            self.errors.push(format!(
                "the route conflicts with {} {} of {}",
                binding.http_method, binding.template_text, binding.rpc_name
            ));
        }
    }

    fn method(&mut self, name: &str, call: &str) -> Option<usize> {
        let index = self.snapshot.methods.iter().position(|m| m.descriptor.full_name() == name);
        let Some(index) = index else {
            self.errors.push(format!("call {call:?}: unknown method {name}"));
            return None;
        };
        let descriptor = &self.snapshot.methods[index].descriptor;
        if descriptor.is_client_streaming() || descriptor.is_server_streaming() {
            self.errors.push(format!("call {call:?}: {name} streams; a composite needs one answer per call"));
            return None;
        }
        Some(index)
    }

    fn call(&mut self, index: usize) -> Option<PlannedCall> {
        let config = &self.composite.calls[index];
        let method = self.methods[index]?;
        let input = self.snapshot.methods[method].descriptor.input();
        let at = format!("call {:?}", config.name);
        let for_each = config.for_each.as_deref().and_then(|text| self.for_each(index, text, &at));
        let item = for_each.as_ref().map(|(_, item)| item.clone());
        let mut needs = Vec::new();
        let request = self.piece(&config.request, index, item.as_ref(), &mut needs, &format!("{at}: request"))?;
        let for_each = for_each.map(|(reference, _)| reference);
        if let Some(Reference { source: Source::Call(call), .. }) = &for_each
            && !needs.contains(call)
        {
            needs.push(*call);
        }
        self.probe(&request, &input, item.as_ref(), &at);
        Some(PlannedCall {
            name: config.name.clone(),
            method,
            request,
            needs,
            for_each,
            optional: config.optional,
            referenced: false,
            shown: false,
        })
    }

    fn for_each(&mut self, index: usize, text: &str, at: &str) -> Option<(Reference, Typed)> {
        let (reference, value) = self.reference(text, index, None, &format!("{at}: for_each"))?;
        match (&reference.source, value) {
            (Source::Call(_), Typed::Field { kind, list: true }) => {
                let item = match kind {
                    Kind::Message(message) => Typed::Message(message),
                    kind => Typed::Field { kind, list: false },
                };
                Some((reference, item))
            }
            _ => {
                self.errors.push(format!("{at}: for_each {text:?} is not a repeated field of an earlier call"));
                None
            }
        }
    }

    fn piece(
        &mut self,
        value: &Value,
        call: usize,
        item: Option<&Typed>,
        needs: &mut Vec<usize>,
        at: &str,
    ) -> Option<Piece> {
        Some(match value {
            Value::String(text) if text.contains('{') => {
                let parts = split_references(text).map_err(|e| self.errors.push(format!("{at}: {e}"))).ok()?;
                let mut compiled = Vec::new();
                for part in &parts {
                    match part {
                        Split::Literal(literal) => compiled.push(TextPart::Literal(literal.clone())),
                        Split::Ref(text) => {
                            let (reference, value) = self.reference(text, call, item, at)?;
                            if let Source::Call(dep) = reference.source
                                && !needs.contains(&dep)
                            {
                                needs.push(dep);
                            }
                            if parts.len() > 1 && !is_scalar(&value) {
                                self.errors.push(format!("{at}: {{{text}}} is not a single scalar to put in text"));
                            }
                            compiled.push(TextPart::Ref(reference));
                        }
                    }
                }
                match compiled.as_slice() {
                    [TextPart::Ref(reference)] => Piece::Whole(reference.clone()),
                    _ => Piece::Text(compiled),
                }
            }
            Value::Object(fields) => {
                let mut compiled = Vec::with_capacity(fields.len());
                for (name, value) in fields {
                    compiled.push((name.clone(), self.piece(value, call, item, needs, &format!("{at}.{name}"))?));
                }
                Piece::Object(compiled)
            }
            Value::Array(items) => {
                let mut compiled = Vec::with_capacity(items.len());
                for (i, value) in items.iter().enumerate() {
                    compiled.push(self.piece(value, call, item, needs, &format!("{at}[{i}]"))?);
                }
                Piece::Array(compiled)
            }
            literal => Piece::Literal(literal.clone()),
        })
    }

    /// Resolves `shelf`, `query_param`, `call.field.path` or `item.field`.
    fn reference(&mut self, text: &str, call: usize, item: Option<&Typed>, at: &str) -> Option<(Reference, Typed)> {
        let mut segments = text.split('.');
        let head = segments.next().unwrap_or_default();
        let rest: Vec<&str> = segments.collect();
        // `{shelf.name}` is a field of call `shelf`; a bare `{shelf}` is the
        // path variable or query parameter of that name when there is one.
        let call_field = !rest.is_empty() && self.call_index.contains_key(head);
        let (source, start) = if call_field {
            self.call_source(head, call, text, at)?
        } else if let Some(i) = self.variables.iter().position(|v| v == head) {
            (Source::Variable(i), Typed::Text)
        } else if let Some(i) = self.composite.query.iter().position(|q| q == head) {
            (Source::Query(i), Typed::Text)
        } else if head == "item" {
            let Some(item) = item else {
                self.errors.push(format!("{at}: {{{text}}}: `item` exists only in a for_each call"));
                return None;
            };
            (Source::Item, item.clone())
        } else if self.call_index.contains_key(head) {
            self.call_source(head, call, text, at)?
        } else {
            self.errors
                .push(format!("{at}: {{{text}}}: {head:?} is no path variable, declared query parameter or call"));
            return None;
        };
        let (path, value) = walk(start, &rest).map_err(|e| self.errors.push(format!("{at}: {{{text}}}: {e}"))).ok()?;
        Some((Reference { source, path }, value))
    }

    fn call_source(&mut self, head: &str, call: usize, text: &str, at: &str) -> Option<(Source, Typed)> {
        let dep = *self.call_index.get(head)?;
        if dep == call {
            self.errors.push(format!("{at}: {{{text}}} refers to its own call"));
            return None;
        }
        let method = self.methods[dep]?;
        Some((Source::Call(dep), Typed::Message(self.snapshot.methods[method].descriptor.output())))
    }

    /// Builds the request with a stand-in for every reference and decodes
    /// it as the backend's input message would be: unknown fields and
    /// mistyped literals or references fail here, naming the field.
    fn probe(&mut self, request: &Piece, input: &MessageDescriptor, item: Option<&Typed>, at: &str) {
        let stand_in = |reference: &Reference| self.stand_in(reference, item);
        let json = fill(request, &stand_in);
        let bytes = serde_json::to_vec(&json).unwrap_or_default();
        if let Err(e) = crate::transcode::request::message_from_json(input.clone(), &bytes, self.json) {
            self.errors.push(format!("{at}: request: {}", e.message));
        }
    }

    fn stand_in(&self, reference: &Reference, item: Option<&Typed>) -> Value {
        let start = match reference.source {
            // The client's text: whether it fits the field is known only per
            // request (a 400 then); null stands for any field's default.
            Source::Variable(_) | Source::Query(_) => return Value::Null,
            Source::Item => item.cloned(),
            Source::Call(dep) => {
                self.methods[dep].map(|m| Typed::Message(self.snapshot.methods[m].descriptor.output()))
            }
        };
        let segments: Vec<String> = reference.path.iter().map(Step::text).collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match start.and_then(|start| walk(start, &segments).ok()) {
            Some((_, value)) => example(&value),
            None => Value::Null,
        }
    }

    fn part(&mut self, shape: &Shape, at: &str) -> Option<Part> {
        match shape {
            Shape::Ref(text) => {
                let mut segments = text.split('.');
                let head = segments.next().unwrap_or_default();
                let rest: Vec<&str> = segments.collect();
                if !self.call_index.contains_key(head) {
                    self.errors.push(format!("{at}: {text:?} names no call"));
                    return None;
                }
                let (source, start) = self.call_source(head, usize::MAX, text, at)?;
                let (path, _) =
                    walk(start, &rest).map_err(|e| self.errors.push(format!("{at}: {text:?}: {e}"))).ok()?;
                Some(Part::Ref(Reference { source, path }))
            }
            Shape::Object(parts) => {
                let resolved: Vec<Option<(String, Part)>> = parts
                    .iter()
                    .map(|(name, shape)| Some((name.clone(), self.part(shape, &format!("{at}.{name}"))?)))
                    .collect();
                resolved.into_iter().collect::<Option<Vec<_>>>().map(Part::Object)
            }
        }
    }

    fn check_cycles(&mut self, calls: &[PlannedCall]) {
        // 0 unvisited, 1 on the current path, 2 done.
        let mut state = vec![0u8; calls.len()];
        let mut path = Vec::new();
        for start in 0..calls.len() {
            if let Some(cycle) = visit(calls, start, &mut state, &mut path) {
                self.errors.push(format!("calls {cycle} depend on each other in a cycle"));
                return;
            }
        }
    }
}

fn visit(calls: &[PlannedCall], at: usize, state: &mut [u8], path: &mut Vec<usize>) -> Option<String> {
    match state[at] {
        2 => return None,
        1 => {
            let from = path.iter().position(|&c| c == at).unwrap_or(0);
            let names: Vec<&str> = path[from..].iter().chain([&at]).map(|&c| calls[c].name.as_str()).collect();
            return Some(names.join(" → "));
        }
        _ => {}
    }
    state[at] = 1;
    path.push(at);
    for &next in &calls[at].needs {
        if let Some(cycle) = visit(calls, next, state, path) {
            return Some(cycle);
        }
    }
    path.pop();
    state[at] = 2;
    None
}

/// Follows field names (proto or JSON form), each optionally indexed
/// (`books[0]`: one element of a repeated field), from `start`.
fn walk(start: Typed, segments: &[&str]) -> Result<(Vec<Step>, Typed), String> {
    let mut path = Vec::with_capacity(segments.len());
    let mut value = start;
    for segment in segments {
        let message = match &value {
            Typed::Message(message) => message.clone(),
            Typed::Field { list: true, .. } => {
                return Err(format!("goes through a repeated field before {segment:?} (index it: `field[0]`)"));
            }
            _ => return Err(format!("{segment:?} is below a field that is not a message")),
        };
        let (name, index) = split_index(segment)?;
        let field = field(&message, name).ok_or_else(|| format!("{} has no field {name:?}", message.full_name()))?;
        value = match index {
            None => field_value(&field),
            Some(_) if !field.is_list() => return Err(format!("{segment:?} indexes {name:?}, which is not repeated")),
            Some(_) => match field.kind() {
                Kind::Message(message) => Typed::Message(message),
                kind => Typed::Field { kind, list: false },
            },
        };
        path.push(Step { json: field.json_name().to_string(), proto: field.name().to_string(), index });
    }
    Ok((path, value))
}

/// `books[0]` → (`books`, 0); `books` → (`books`, none).
fn split_index(segment: &str) -> Result<(&str, Option<usize>), String> {
    let Some((name, rest)) = segment.split_once('[') else { return Ok((segment, None)) };
    let index = rest
        .strip_suffix(']')
        .and_then(|digits| digits.parse::<usize>().ok())
        .ok_or_else(|| format!("{segment:?}: an index is `[N]`, N a whole number from 0"))?;
    Ok((name, Some(index)))
}

fn field(message: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    message.get_field_by_name(name).or_else(|| message.get_field_by_json_name(name))
}

fn field_value(field: &FieldDescriptor) -> Typed {
    match field.kind() {
        Kind::Message(message) if !field.is_list() && !field.is_map() => Typed::Message(message),
        kind => Typed::Field { kind, list: field.is_list() || field.is_map() },
    }
}

fn is_scalar(value: &Typed) -> bool {
    match value {
        Typed::Text => true,
        Typed::Field { kind, list } => !list && !matches!(kind, Kind::Message(_)),
        Typed::Message(_) => false,
    }
}

/// A value of the right JSON type for probing a request.
fn example(value: &Typed) -> Value {
    match value {
        Typed::Text => Value::String("x".into()),
        Typed::Message(_) => Value::Object(Default::default()),
        Typed::Field { list: true, .. } => Value::Array(Vec::new()),
        Typed::Field { kind, .. } => match kind {
            Kind::String => Value::String("x".into()),
            Kind::Bytes => Value::String(String::new()),
            Kind::Bool => Value::Bool(false),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => Value::String("0".into()),
            Kind::Enum(e) => e.values().next().map_or(Value::Null, |v| Value::String(v.name().to_string())),
            Kind::Message(_) => Value::Object(Default::default()),
            _ => Value::from(0),
        },
    }
}

/// The request with every reference replaced by `resolve`'s value; text
/// parts are spliced as strings.
pub fn fill(piece: &Piece, resolve: &dyn Fn(&Reference) -> Value) -> Value {
    match piece {
        Piece::Literal(value) => value.clone(),
        Piece::Whole(reference) => resolve(reference),
        Piece::Object(fields) => Value::Object(fields.iter().map(|(k, p)| (k.clone(), fill(p, resolve))).collect()),
        Piece::Array(items) => Value::Array(items.iter().map(|p| fill(p, resolve)).collect()),
        Piece::Text(parts) => {
            let mut text = String::new();
            for part in parts {
                match part {
                    TextPart::Literal(literal) => text.push_str(literal),
                    TextPart::Ref(reference) => match resolve(reference) {
                        Value::String(s) => text.push_str(&s),
                        Value::Null => {}
                        other => text.push_str(&other.to_string()),
                    },
                }
            }
            Value::String(text)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Split {
    Literal(String),
    Ref(String),
}

/// `shelves/{shelf}/x` → literal, reference, literal.
fn split_references(text: &str) -> Result<Vec<Split>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Split::Literal(rest[..open].to_string()));
        }
        let close = rest[open..].find('}').ok_or_else(|| format!("{text:?} has a `{{` without its `}}`"))? + open;
        let name = &rest[open + 1..close];
        if name.is_empty() || name.contains('{') {
            return Err(format!("{text:?} has an empty or nested reference"));
        }
        parts.push(Split::Ref(name.to_string()));
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("{text:?} has a `}}` without its `{{`"));
    }
    if !rest.is_empty() {
        parts.push(Split::Literal(rest.to_string()));
    }
    Ok(parts)
}
