//! Runs a plan: every call starts as soon as the answers it references are
//! in, independent calls run concurrently, a fan-out runs at most
//! `max_concurrency` calls at once and sends each distinct request once.
//! Every call takes the shared call path (`Call::unary`: balancing,
//! retries, metadata) under what is left of the composite's one deadline.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use prost_reflect::DynamicMessage;
use serde_json::{Map, Value};
use tokio::time::Instant;
use tonic::Code;
use tonic::metadata::MetadataMap;

use super::plan::{MAX_FAN_OUT, Part, Plan, Reference, Source, Step, fill};
use crate::config::PARTIAL_KEY;
use crate::error::Error;
use crate::registry::Snapshot;
use crate::transcode::JsonOptions;

/// What the client sent that references can name.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Path variables, aligned with `plan.variables`.
    pub variables: Vec<String>,
    /// Query values, aligned with `plan.query`.
    pub query: Vec<Option<String>>,
}

/// The composed answer, and the optional calls that failed (their parts
/// left out, their statuses under `partial`).
#[derive(Debug)]
pub struct Answer {
    pub body: Value,
    pub failed: Vec<String>,
}

/// One call's answer rendered twice: with every field (for references) and
/// as the client asked (for the answer); a fan-out's as arrays.
#[derive(Debug, Clone)]
struct Rendered {
    full: Value,
    shown: Value,
}

type Outcome = Result<Rendered, Error>;

/// Told of every backend call a composite makes, for its log line and
/// metrics (this module does no I/O of its own).
pub trait Observer: Sync {
    fn call_ended(&self, call: &str, code: Code, spent: Duration);
}

pub async fn run(
    plan: &Plan,
    snapshot: &Snapshot,
    inputs: &Inputs,
    metadata: &MetadataMap,
    deadline: Option<Instant>,
    json: &JsonOptions,
    observer: &dyn Observer,
) -> Result<Answer, Error> {
    let context = Run { plan, snapshot, inputs, metadata, deadline, json, observer };
    // Requests built from the client's input alone are checked before any
    // backend is called: a malformed one is the client's 400.
    for (index, call) in plan.calls.iter().enumerate() {
        if call.needs.is_empty() && call.for_each.is_none() {
            context.request(index, &[], None)?;
        }
    }
    let mut outcomes: Vec<Option<Outcome>> = vec![None; plan.calls.len()];
    let mut started = vec![false; plan.calls.len()];
    let mut running = FuturesUnordered::new();
    loop {
        for (index, call) in plan.calls.iter().enumerate() {
            if started[index] || !call.needs.iter().all(|&dep| outcomes[dep].is_some()) {
                continue;
            }
            started[index] = true;
            let failed_need = call.needs.iter().find(|&&dep| outcomes[dep].as_ref().is_some_and(Result::is_err));
            match failed_need {
                Some(&dep) => {
                    let message = format!("it needs call {:?}, which failed", plan.calls[dep].name);
                    outcomes[index] = Some(Err(Error::client(Code::FailedPrecondition, message)));
                }
                None => {
                    let answers: Vec<Option<&Rendered>> =
                        outcomes.iter().map(|o| o.as_ref().and_then(|r| r.as_ref().ok())).collect();
                    running.push(context.start(index, &answers));
                }
            }
        }
        // Dependents of a call settled without running may be ready now.
        if running.is_empty() {
            if started.iter().all(|s| *s) {
                break;
            }
            continue;
        }
        let Some((index, outcome)) = running.next().await else { break };
        if let Err(error) = &outcome
            && !plan.calls[index].optional
        {
            return Err(named(error.clone(), plan, snapshot, index));
        }
        outcomes[index] = Some(outcome);
    }
    Ok(answer(plan, snapshot, &outcomes, json))
}

struct Run<'a> {
    plan: &'a Plan,
    snapshot: &'a Snapshot,
    inputs: &'a Inputs,
    metadata: &'a MetadataMap,
    deadline: Option<Instant>,
    json: &'a JsonOptions,
    observer: &'a dyn Observer,
}

impl<'a> Run<'a> {
    /// The call's future: one call, or its fan-out.
    fn start(
        &self,
        index: usize,
        answers: &[Option<&Rendered>],
    ) -> futures_util::future::BoxFuture<'a, (usize, Outcome)> {
        let call = &self.plan.calls[index];
        let prepared = match &call.for_each {
            None => self.request(index, answers, None).map(|request| vec![request]),
            Some(each) => self.fan_out_requests(index, each, answers),
        };
        let (this, fan_out) = (self.clone_refs(), call.for_each.is_some());
        Box::pin(async move {
            let requests = match prepared {
                Ok(requests) => requests,
                Err(error) => return (index, Err(error)),
            };
            (index, this.send_all(index, requests, fan_out).await)
        })
    }

    fn clone_refs(&self) -> Run<'a> {
        Run { ..*self }
    }

    fn fan_out_requests(
        &self,
        index: usize,
        each: &Reference,
        answers: &[Option<&Rendered>],
    ) -> Result<Vec<DynamicMessage>, Error> {
        let items = match self.resolve(each, answers, None) {
            Value::Array(items) => items,
            Value::Null => Vec::new(),
            other => vec![other],
        };
        if items.len() > MAX_FAN_OUT {
            let name = &self.plan.calls[index].name;
            let message = format!("call {name:?} would fan out over {} elements, over {MAX_FAN_OUT}", items.len());
            return Err(Error::gateway(Code::ResourceExhausted, message));
        }
        items.iter().map(|item| self.request(index, answers, Some(item))).collect()
    }

    /// Builds one request message, naming the field that does not fit.
    fn request(
        &self,
        index: usize,
        answers: &[Option<&Rendered>],
        item: Option<&Value>,
    ) -> Result<DynamicMessage, Error> {
        let call = &self.plan.calls[index];
        let json = fill(&call.request, &|reference| self.resolve(reference, answers, item));
        let input = self.snapshot.methods[call.method].descriptor.input();
        let bytes = serde_json::to_vec(&json).unwrap_or_default();
        crate::transcode::request::message_from_json(input, &bytes, self.json)
    }

    fn resolve(&self, reference: &Reference, answers: &[Option<&Rendered>], item: Option<&Value>) -> Value {
        let start = match reference.source {
            Source::Variable(i) => return self.inputs.variables.get(i).cloned().map_or(Value::Null, Value::String),
            Source::Query(i) => {
                return self.inputs.query.get(i).cloned().flatten().map_or(Value::Null, Value::String);
            }
            Source::Item => item,
            Source::Call(dep) => answers.get(dep).copied().flatten().map(|r| &r.full),
        };
        start.and_then(|start| follow(start, &reference.path, false)).cloned().unwrap_or(Value::Null)
    }

    /// Sends each distinct request once (a fan-out in element order, at most
    /// `max_concurrency` at a time) and renders the answers.
    async fn send_all(&self, index: usize, requests: Vec<DynamicMessage>, fan_out: bool) -> Outcome {
        let (distinct, slots) = distinct(requests);
        let answers: Vec<Outcome> = futures_util::stream::iter(distinct)
            .map(|request| self.send(index, request))
            .buffered(self.plan.max_concurrency)
            .collect()
            .await;
        let mut rendered = Vec::with_capacity(answers.len());
        for answer in answers {
            rendered.push(answer?);
        }
        if !fan_out {
            return rendered.pop().ok_or_else(|| Error::gateway(Code::Internal, "a call without an answer"));
        }
        let pick = |slot: &usize, shown: bool| {
            rendered.get(*slot).map(|r| if shown { r.shown.clone() } else { r.full.clone() }).unwrap_or_default()
        };
        Ok(Rendered {
            full: Value::Array(slots.iter().map(|slot| pick(slot, false)).collect()),
            shown: Value::Array(slots.iter().map(|slot| pick(slot, true)).collect()),
        })
    }

    async fn send(&self, index: usize, message: DynamicMessage) -> Outcome {
        let started = Instant::now();
        let outcome = self.send_timed(index, message).await;
        let code = outcome.as_ref().map_or_else(|e| e.code, |_| Code::Ok);
        self.observer.call_ended(&self.plan.calls[index].name, code, started.elapsed());
        outcome
    }

    async fn send_timed(&self, index: usize, message: DynamicMessage) -> Outcome {
        let entry = &self.snapshot.methods[self.plan.calls[index].method];
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = self.metadata.clone();
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::client(Code::DeadlineExceeded, "no time left of the composite's deadline"));
            }
            request.set_timeout(left);
        }
        // In wire form: the fast transcoder renders most answers without
        // decoding them into a DynamicMessage first.
        let request = request.map(|message| bytes::Bytes::from(prost::Message::encode_to_vec(&message)));
        let call = entry.call.unary_raw(request);
        let reply = match self.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, call)
                .await
                .unwrap_or_else(|_| Err(Error::client(Code::DeadlineExceeded, "the composite's deadline passed"))),
            None => call.await,
        }?;
        let call = &self.plan.calls[index];
        let answer = Wire { snapshot: self.snapshot, entry, bytes: &reply.message };
        render(&answer, self.json, call.referenced, call.shown)
    }
}

/// An answer in wire form, with what renders it.
struct Wire<'a> {
    snapshot: &'a Snapshot,
    entry: &'a crate::registry::MethodEntry,
    bytes: &'a [u8],
}

impl Wire<'_> {
    /// The answer as a JSON value in `style`: by the fast transcoder when
    /// its plan takes the message, else decoded and serialized by
    /// prost-reflect (which also names an undecodable answer).
    fn value(&self, json: &JsonOptions, (emit_defaults, proto_field_names): (bool, bool)) -> Result<Value, Error> {
        let (plans, plan, style) = (&self.snapshot.plans, self.entry.output_plan, (emit_defaults, proto_field_names));
        let fast = crate::transcode::response::render_wire_as(plans, plan, self.bytes, json, style);
        if let Some(value) = fast.and_then(|text| serde_json::from_slice(&text).ok()) {
            return Ok(value);
        }
        let message = DynamicMessage::decode(self.entry.call.output.clone(), self.bytes).map_err(|e| {
            Error::gateway(
                Code::Internal,
                format!("backend sent an undecodable {}: {e}", self.entry.call.output.full_name()),
            )
        })?;
        let options =
            json.serialize_options().skip_default_fields(!emit_defaults).use_proto_field_name(proto_field_names);
        message
            .serialize_with_options(serde_json::value::Serializer, &options)
            .map_err(|e| Error::gateway(Code::Internal, format!("cannot render a composite's answer: {e}")))
    }
}

/// Renders what is read of an answer: every field for later calls'
/// references, the client's form for the answer (it was half a composite's
/// CPU when both were always made); null for what nothing reads.
fn render(answer: &Wire<'_>, json: &JsonOptions, referenced: bool, shown: bool) -> Outcome {
    let full = if referenced { answer.value(json, (true, false))? } else { Value::Null };
    // With `emit_defaults` and JSON names the two forms are one.
    if shown && referenced && json.emit_defaults && !json.proto_field_names {
        return Ok(Rendered { shown: full.clone(), full });
    }
    let shown = if shown { answer.value(json, (json.emit_defaults, json.proto_field_names))? } else { Value::Null };
    Ok(Rendered { full, shown })
}

/// A required call's failure as the composite's: its code, a message that
/// names the call.
fn named(mut error: Error, plan: &Plan, snapshot: &Snapshot, index: usize) -> Error {
    let call = &plan.calls[index];
    let method = snapshot.methods[call.method].descriptor.full_name();
    error.message = format!("call {:?} ({method}) failed: {}", call.name, error.message);
    error
}

fn answer(plan: &Plan, snapshot: &Snapshot, outcomes: &[Option<Outcome>], json: &JsonOptions) -> Answer {
    let shown: Vec<Option<&Value>> =
        outcomes.iter().map(|o| o.as_ref().and_then(|r| r.as_ref().ok()).map(|r| &r.shown)).collect();
    let mut body = shape(&plan.response, &shown, json).unwrap_or(Value::Object(Map::new()));
    let mut failed = Vec::new();
    let mut partial = Map::new();
    for (index, outcome) in outcomes.iter().enumerate() {
        if let Some(Err(error)) = outcome {
            let call = &plan.calls[index];
            let error = named(error.clone(), plan, snapshot, index);
            partial.insert(call.name.clone(), serde_json::json!({"code": error.code as i32, "message": error.message}));
            failed.push(call.name.clone());
        }
    }
    if let (false, Value::Object(fields)) = (partial.is_empty(), &mut body) {
        fields.insert(PARTIAL_KEY.into(), Value::Object(partial));
    }
    Answer { body, failed }
}

/// The answer's parts; a part whose call failed, or whose field has its
/// default value, is left out.
fn shape(part: &Part, shown: &[Option<&Value>], json: &JsonOptions) -> Option<Value> {
    match part {
        Part::Ref(reference) => {
            let Source::Call(call) = reference.source else { return None };
            // A missing field is left out, as the JSON mapping leaves out a
            // default value, rather than a `null` the schema does not allow.
            follow(shown.get(call).copied().flatten()?, &reference.path, json.proto_field_names).cloned()
        }
        Part::Object(parts) => Some(Value::Object(
            parts.iter().filter_map(|(name, part)| Some((name.clone(), shape(part, shown, json)?))).collect(),
        )),
    }
}

/// Each distinct request once, and for every request the index of its
/// distinct one. One request is its own: no key to encode.
fn distinct(requests: Vec<DynamicMessage>) -> (Vec<DynamicMessage>, Vec<usize>) {
    if requests.len() == 1 {
        return (requests, vec![0]);
    }
    let mut distinct: Vec<DynamicMessage> = Vec::new();
    let mut slots = Vec::with_capacity(requests.len());
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    for request in requests {
        let key = prost::Message::encode_to_vec(&request);
        let slot = *seen.entry(key).or_insert_with(|| {
            distinct.push(request);
            distinct.len() - 1
        });
        slots.push(slot);
    }
    (distinct, slots)
}

/// The value `path` leads to below `value`, by JSON or proto field names;
/// none where a field or element is missing.
fn follow<'v>(mut value: &'v Value, path: &[Step], proto_names: bool) -> Option<&'v Value> {
    for step in path {
        value = value.get(if proto_names { &step.proto } else { &step.json })?;
        if let Some(index) = step.index {
            value = value.get(index)?;
        }
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field(call: usize, path: &[&str]) -> Part {
        let path = path.iter().map(|name| Step::field(name, name)).collect();
        Part::Ref(Reference { source: Source::Call(call), path })
    }

    #[test]
    fn parts_of_failed_calls_and_default_fields_are_left_out() {
        let shape_of = Part::Object(vec![
            ("shelf".into(), field(0, &[])),
            ("books".into(), field(1, &["books"])),
            ("theme".into(), field(0, &["theme"])),
            ("authors".into(), field(2, &[])),
        ]);
        let shelf = json!({ "name": "shelves/1" });
        let no_books = json!({});
        let cases = [
            (vec![Some(&shelf), Some(&no_books), None], json!({ "shelf": { "name": "shelves/1" } })),
            (vec![None, None, None], json!({})),
        ];
        for (shown, expected) in cases {
            assert_eq!(shape(&shape_of, &shown, &JsonOptions::default()), Some(expected.clone()), "{expected}");
        }
        let indexed = Part::Object(vec![(
            "first".into(),
            Part::Ref(Reference {
                source: Source::Call(1),
                path: vec![Step { index: Some(1), ..Step::field("books", "books") }, Step::field("title", "title")],
            }),
        )]);
        let two = json!({ "books": [{ "title": "Dune" }, { "title": "Emma" }] });
        let options = JsonOptions::default();
        assert_eq!(shape(&indexed, &[None, Some(&two)], &options), Some(json!({ "first": "Emma" })));
        let one = json!({ "books": [{ "title": "Dune" }] });
        assert_eq!(shape(&indexed, &[None, Some(&one)], &options), Some(json!({})), "past the end: left out");
        let books = json!({ "books": [{ "title": "Dune" }] });
        let whole = shape(&shape_of, &[Some(&shelf), Some(&books), None], &JsonOptions::default());
        assert_eq!(whole, Some(json!({ "shelf": shelf, "books": [{ "title": "Dune" }] })));
    }
}
