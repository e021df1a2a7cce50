//! Composite endpoints in the document: one operation per composite, its
//! path and declared query parameters, and an answer schema built from the
//! answer's shape and the schemas of the messages its calls return.

use prost_reflect::{FieldDescriptor, MessageDescriptor};
use serde_json::{Map, Value, json};

use super::enforced::Enforcement;
use super::schema::{Comments, Schemas};
use crate::route::Template;

/// The tag every composite operation carries.
pub const TAG: &str = "composites";

/// What the document says of one composite.
#[derive(Debug, Clone)]
pub struct CompositeOperation {
    pub template: Template,
    /// `/v1/shelves/{shelf}:overview`, as configured.
    pub template_text: String,
    pub description: String,
    /// The query parameters it declares (text, spliced into requests).
    pub query: Vec<String>,
    pub calls: Vec<CallSummary>,
    pub answer: AnswerShape,
    pub enforcement: Enforcement,
}

/// One of its calls, as `x-protogate-composite` lists them.
#[derive(Debug, Clone)]
pub struct CallSummary {
    pub name: String,
    pub method: String,
    /// The repeated field it fans out over, as configured.
    pub for_each: Option<String>,
    pub optional: bool,
}

/// The type of one part of the answer.
#[derive(Debug, Clone)]
pub enum AnswerShape {
    /// A call's whole answer.
    Message(MessageDescriptor),
    /// One field of a call's answer.
    Field(FieldDescriptor),
    /// One element of a repeated field (`books[0]`).
    Element(FieldDescriptor),
    /// A fan-out's answers (or one field of each), in element order.
    List(Box<AnswerShape>),
    Object(Vec<(String, AnswerShape)>),
}

/// The operation of `composite`, its path parameters already built.
pub(super) fn operation(
    composite: &CompositeOperation,
    mut parameters: Vec<Value>,
    schemas: &mut Schemas,
    comments: &Comments,
) -> Value {
    for name in &composite.query {
        parameters.push(json!({
            "name": name,
            "in": "query",
            "schema": { "type": "string" },
            "description": format!("Spliced into the requests of the calls that reference `{{{name}}}`."),
        }));
    }
    let mut answer = schema(&composite.answer, schemas, comments);
    let optional: Vec<&str> = composite.calls.iter().filter(|c| c.optional).map(|c| c.name.as_str()).collect();
    let mut ok = json!({ "description": "The composed answer." });
    if !optional.is_empty() {
        add_partial(&mut answer, &optional);
        ok["headers"] = json!({ "Protogate-Partial": {
            "description": "The optional calls that failed, comma-separated; their parts are left out.",
            "schema": { "type": "string" },
        } });
    }
    ok["content"] = json!({ "application/json": { "schema": answer } });
    let methods: Vec<String> = composite.calls.iter().map(|c| format!("`{}`", c.method)).collect();
    let mut description = composite.description.clone();
    if !description.is_empty() {
        description.push_str("\n\n");
    }
    description.push_str(&format!("A composite endpoint answered by calls to {}.", methods.join(", ")));
    json!({
        "tags": [TAG],
        "summary": format!("GET {}", composite.template_text),
        "description": description,
        "parameters": parameters,
        "responses": {
            "200": ok,
            "default": {
                "description": "A failed required call's google.rpc.Status (its message names the call), or the \
                                gateway's own refusal.",
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/google.rpc.Status" } } },
            },
        },
        "x-protogate-composite": { "calls": composite.calls.iter().map(call_summary).collect::<Vec<_>>() },
    })
}

fn schema(shape: &AnswerShape, schemas: &mut Schemas, comments: &Comments) -> Value {
    match shape {
        AnswerShape::Message(message) => schemas.reference(message, comments),
        AnswerShape::Field(field) => schemas.field_schema(field, comments),
        AnswerShape::Element(field) => {
            let list = schemas.field_schema(field, comments);
            list.get("items").cloned().unwrap_or(list)
        }
        AnswerShape::List(item) => json!({ "type": "array", "items": schema(item, schemas, comments) }),
        AnswerShape::Object(parts) => {
            let properties: Map<String, Value> =
                parts.iter().map(|(name, part)| (name.clone(), schema(part, schemas, comments))).collect();
            json!({ "type": "object", "properties": properties })
        }
    }
}

/// `partial`: the status of each optional call that failed, by its name.
fn add_partial(answer: &mut Value, optional: &[&str]) {
    let status = json!({ "$ref": "#/components/schemas/google.rpc.Status" });
    let calls: Map<String, Value> = optional.iter().map(|name| (name.to_string(), status.clone())).collect();
    let partial = json!({
        "type": "object",
        "description": "Present when an optional call failed: its status, by call name.",
        "properties": calls,
        "additionalProperties": false,
    });
    if let Some(Value::Object(properties)) = answer.get_mut("properties") {
        properties.insert(crate::config::PARTIAL_KEY.into(), partial);
    }
}

fn call_summary(call: &CallSummary) -> Value {
    let mut summary = json!({ "name": call.name, "method": call.method, "optional": call.optional });
    if let Some(each) = &call.for_each {
        summary["forEach"] = Value::String(each.clone());
    }
    summary
}

/// `composite_v1_shelves_shelf_overview`: the operation id's base.
pub(super) fn id_base(composite: &CompositeOperation) -> String {
    let words: Vec<&str> =
        composite.template_text.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    format!("composite_{}", words.join("_"))
}

#[cfg(test)]
mod tests {
    use prost_reflect::DescriptorPool;

    use super::*;

    #[test]
    fn each_part_of_an_answer_has_its_schema() {
        let pool = DescriptorPool::decode(crate::pb::LIBRARY_DESCRIPTOR_SET).unwrap();
        let list = pool.get_message_by_name("library.v1.ListBooksResponse").unwrap();
        let books = list.get_field_by_name("books").unwrap();
        let token = list.get_field_by_name("next_page_token").unwrap();
        let book = pool.get_message_by_name("library.v1.Book").unwrap();
        let book_ref = json!({ "$ref": "#/components/schemas/library.v1.Book" });
        let cases = [
            (AnswerShape::Message(book.clone()), book_ref.clone()),
            (AnswerShape::Field(books.clone()), json!({ "type": "array", "items": book_ref.clone() })),
            (AnswerShape::Element(books.clone()), book_ref.clone()),
            (AnswerShape::Field(token), json!({ "type": "string" })),
            (AnswerShape::List(Box::new(AnswerShape::Message(book))), json!({ "type": "array", "items": book_ref })),
        ];
        let (mut schemas, comments) = (Schemas::default(), Comments::default());
        for (shape, expected) in cases {
            assert_eq!(schema(&shape, &mut schemas, &comments), expected, "{shape:?}");
        }
    }
}
