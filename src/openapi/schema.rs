//! JSON Schemas for messages under the proto3 JSON mapping, and proto
//! comments as descriptions.

use std::collections::{HashMap, HashSet};

use prost_reflect::{DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

/// Leading comments of every element, keyed by file and source path.
#[derive(Debug, Default)]
pub struct Comments(HashMap<(String, Vec<i32>), String>);

/// The messages referenced so far, each queued once for its component
/// schema. A worklist rather than recursion: a chain of 2 000 messages each
/// naming the next overflowed the stack.
#[derive(Debug, Default)]
pub struct Schemas {
    seen: HashSet<String>,
    pending: Vec<MessageDescriptor>,
}

impl Comments {
    pub fn from_pool(pool: &DescriptorPool) -> Self {
        let mut comments = HashMap::new();
        for file in pool.files() {
            let Some(info) = &file.file_descriptor_proto().source_code_info else {
                continue;
            };
            for location in &info.location {
                // protoc keeps the space after `//` on every line.
                let lines: Vec<&str> =
                    location.leading_comments().trim().lines().map(|l| l.strip_prefix(' ').unwrap_or(l)).collect();
                if !lines.is_empty() {
                    comments.insert((file.name().to_string(), location.path.clone()), lines.join("\n"));
                }
            }
        }
        Self(comments)
    }

    pub fn get(&self, file: &str, path: &[i32]) -> Option<&str> {
        self.0.get(&(file.to_string(), path.to_vec())).map(String::as_str)
    }
}

impl Schemas {
    /// A reference to the schema of `message`, queueing the schema on first
    /// use.
    pub fn reference(&mut self, message: &MessageDescriptor, _comments: &Comments) -> Value {
        if let Some(inline) = well_known(message) {
            return inline;
        }
        let name = message.full_name();
        if self.seen.insert(name.to_string()) {
            self.pending.push(message.clone());
        }
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    /// The next referenced message whose schema is not written yet.
    pub fn next_pending(&mut self) -> Option<MessageDescriptor> {
        self.pending.pop()
    }

    /// A message's component schema (queueing what it references).
    pub fn message_schema(&mut self, message: &MessageDescriptor, comments: &Comments) -> Value {
        let mut properties = Map::new();
        for field in message.fields() {
            let mut schema = self.field_schema(&field, comments);
            let file = message.parent_file();
            let mut notes = Vec::new();
            if let Some(text) = comments.get(file.name(), field.path()) {
                notes.push(text.to_string());
            }
            if let Some(oneof) = field.containing_oneof().filter(|o| !o.is_synthetic()) {
                notes.push(format!("Only one field of the `{}` group may be set.", oneof.name()));
            }
            if !notes.is_empty() && schema.get("$ref").is_none() {
                schema["description"] = Value::String(notes.join("\n\n"));
            }
            properties.insert(field.json_name().to_string(), schema);
        }
        let mut schema = json!({ "type": "object", "properties": properties });
        if let Some(text) = comments.get(message.parent_file().name(), message.path()) {
            schema["description"] = Value::String(text.to_string());
        }
        schema
    }

    /// The schema of one field: repeated as arrays, maps as objects.
    pub fn field_schema(&mut self, field: &FieldDescriptor, comments: &Comments) -> Value {
        if field.is_map() {
            let value = match field.kind() {
                Kind::Message(entry) => entry.map_entry_value_field(),
                _ => return json!({ "type": "object" }),
            };
            return json!({ "type": "object", "additionalProperties": self.single_schema(&value.kind(), comments) });
        }
        let single = self.single_schema(&field.kind(), comments);
        if field.is_list() { json!({ "type": "array", "items": single }) } else { single }
    }

    fn single_schema(&mut self, kind: &Kind, comments: &Comments) -> Value {
        match kind {
            Kind::Double => json!({ "type": "number", "format": "double" }),
            Kind::Float => json!({ "type": "number", "format": "float" }),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({ "type": "integer", "format": "int32" })
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({ "type": "integer", "format": "int64", "minimum": 0 })
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({ "type": "string", "format": "int64" })
            }
            Kind::Uint64 | Kind::Fixed64 => json!({ "type": "string", "format": "uint64" }),
            Kind::Bool => json!({ "type": "boolean" }),
            Kind::String => json!({ "type": "string" }),
            Kind::Bytes => json!({ "type": "string", "format": "byte" }),
            Kind::Enum(e) => enum_schema(e),
            Kind::Message(m) => self.reference(m, comments),
        }
    }
}

fn enum_schema(descriptor: &EnumDescriptor) -> Value {
    if descriptor.full_name() == "google.protobuf.NullValue" {
        return json!({ "type": "null" });
    }
    let names: Vec<String> = descriptor.values().map(|v| v.name().to_string()).collect();
    json!({ "type": "string", "enum": names })
}

/// Well-known types have their own JSON forms and are inlined.
fn well_known(message: &MessageDescriptor) -> Option<Value> {
    let wrapper = |inner: Value| {
        let mut schema = inner;
        let ty = schema["type"].clone();
        schema["type"] = json!([ty, "null"]);
        schema
    };
    Some(match message.full_name() {
        "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
        "google.protobuf.Duration" => {
            json!({ "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$" })
        }
        "google.protobuf.FieldMask" => {
            json!({ "type": "string", "description": "Comma-separated field paths." })
        }
        "google.protobuf.Struct" => json!({ "type": "object", "additionalProperties": true }),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({ "type": "array", "items": {} }),
        "google.protobuf.Empty" => json!({ "type": "object" }),
        "google.protobuf.Any" => json!({
            "type": "object",
            "properties": { "@type": { "type": "string" } },
            "required": ["@type"],
            "additionalProperties": true,
        }),
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => wrapper(json!({ "type": "number" })),
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => {
            wrapper(json!({ "type": "string", "format": "int64" }))
        }
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => wrapper(json!({ "type": "integer" })),
        "google.protobuf.BoolValue" => wrapper(json!({ "type": "boolean" })),
        "google.protobuf.StringValue" => wrapper(json!({ "type": "string" })),
        "google.protobuf.BytesValue" => wrapper(json!({ "type": "string", "format": "byte" })),
        _ => return None,
    })
}
