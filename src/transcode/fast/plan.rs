//! Per-message plans compiled once per snapshot from the descriptors: each
//! field's number, wire form, JSON keys (pre-quoted for output) and nested
//! plan, with lookups by number and by either JSON name that allocate nothing.

use std::collections::HashMap;

// foldhash (hashbrown's default) instead of SipHash: keys are looked up per
// JSON field, and the bench showed SipHash at a sixth of the parse time.
type FastMap<K, V> = hashbrown::HashMap<K, V>;

use prost_reflect::{Cardinality, DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};

/// Every message and enum of a pool, compiled.
#[derive(Debug, Default)]
pub struct Plans {
    pub messages: Vec<MessagePlan>,
    pub enums: Vec<EnumPlan>,
    by_name: HashMap<Box<str>, usize>,
}

#[derive(Debug)]
pub struct MessagePlan {
    pub full_name: Box<str>,
    /// Sorted by field number.
    pub fields: Vec<FieldPlan>,
    /// Field number → index in `fields`, for numbers below 256.
    dense: Vec<u16>,
    /// JSON name and proto name → index in `fields`.
    by_key: FastMap<Box<str>, usize>,
    pub special: Special,
    /// proto3 without extensions: the mapping this module implements. Other
    /// messages are handed over.
    pub fast: bool,
}

/// Messages whose JSON form is not an object of their fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    None,
    Timestamp,
    Duration,
    FieldMask,
    Struct,
    Value,
    ListValue,
    Any,
    Empty,
    /// `google.protobuf.*Value`: the JSON form of field 1.
    Wrapper,
}

#[derive(Debug)]
pub struct FieldPlan {
    pub number: u32,
    pub name: Box<str>,
    pub json_name: Box<str>,
    /// `"jsonName":` and `"proto_name":`, ready to write.
    pub json_key: Box<str>,
    pub proto_key: Box<str>,
    pub kind: FieldKind,
    pub list: bool,
    /// Key and value kinds of a map field.
    pub map: Option<(FieldKind, FieldKind)>,
    /// Optional, oneof member, or message: a set default is still present.
    pub explicit_presence: bool,
    pub oneof: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Double,
    Float,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    String,
    Bytes,
    Enum(usize),
    Message(usize),
}

#[derive(Debug)]
pub struct EnumPlan {
    pub full_name: Box<str>,
    /// Sorted by number (first name of an aliased number).
    values: Vec<(i32, Box<str>)>,
    by_name: FastMap<Box<str>, i32>,
}

impl Plans {
    /// Compiles every message and enum of the pool.
    pub fn compile(pool: &DescriptorPool) -> Self {
        let mut plans = Self::default();
        let messages: Vec<MessageDescriptor> = pool.all_messages().collect();
        let enums: Vec<EnumDescriptor> = pool.all_enums().collect();
        let enum_index: HashMap<String, usize> =
            enums.iter().enumerate().map(|(i, e)| (e.full_name().to_string(), i)).collect();
        for (i, message) in messages.iter().enumerate() {
            plans.by_name.insert(message.full_name().into(), i);
        }
        plans.enums = enums.iter().map(EnumPlan::compile).collect();
        plans.messages = messages.iter().map(|m| MessagePlan::compile(m, &plans.by_name, &enum_index)).collect();
        plans
    }

    pub fn message_index(&self, full_name: &str) -> Option<usize> {
        self.by_name.get(full_name).copied()
    }
}

impl MessagePlan {
    fn compile(
        message: &MessageDescriptor,
        messages: &HashMap<Box<str>, usize>,
        enums: &HashMap<String, usize>,
    ) -> Self {
        let oneofs: Vec<String> = message.oneofs().map(|o| o.name().to_string()).collect();
        let mut fields: Vec<FieldPlan> =
            message.fields().map(|f| FieldPlan::compile(&f, &oneofs, messages, enums)).collect();
        fields.sort_by_key(|f| f.number);
        let size = fields.iter().map(|f| f.number as usize + 1).filter(|n| *n <= 256).max().unwrap_or(0);
        let mut dense = vec![u16::MAX; size];
        let mut by_key = FastMap::new();
        for (i, field) in fields.iter().enumerate() {
            if let Some(slot) = dense.get_mut(field.number as usize) {
                *slot = u16::try_from(i).unwrap_or(u16::MAX);
            }
            by_key.insert(field.json_name.clone(), i);
            by_key.insert(field.name.clone(), i);
        }
        Self {
            full_name: message.full_name().into(),
            fields,
            dense,
            by_key,
            special: special(message.full_name()),
            fast: message.parent_file().syntax() == prost_reflect::Syntax::Proto3
                && message.extension_ranges().next().is_none(),
        }
    }

    /// The index in `fields` of the field with this number.
    pub fn index_by_number(&self, number: u32) -> Option<usize> {
        match self.dense.get(number as usize) {
            Some(&u16::MAX) => None,
            Some(&i) => Some(usize::from(i)),
            None => self.fields.binary_search_by_key(&number, |f| f.number).ok(),
        }
    }

    pub fn field_by_key(&self, key: &str) -> Option<(usize, &FieldPlan)> {
        self.by_key.get(key).map(|&i| (i, &self.fields[i]))
    }
}

impl FieldPlan {
    fn compile(
        field: &FieldDescriptor,
        oneofs: &[String],
        messages: &HashMap<Box<str>, usize>,
        enums: &HashMap<String, usize>,
    ) -> Self {
        let kind = |kind: Kind| field_kind(&kind, messages, enums);
        let map = match field.kind() {
            Kind::Message(entry) if field.is_map() => {
                Some((kind(entry.map_entry_key_field().kind()), kind(entry.map_entry_value_field().kind())))
            }
            _ => None,
        };
        let explicit_presence = field.supports_presence();
        Self {
            number: field.number(),
            name: field.name().into(),
            json_name: field.json_name().into(),
            json_key: quoted_key(field.json_name()),
            proto_key: quoted_key(field.name()),
            kind: kind(field.kind()),
            list: field.cardinality() == Cardinality::Repeated && !field.is_map(),
            map,
            explicit_presence,
            oneof: field.containing_oneof().and_then(|o| oneofs.iter().position(|name| name == o.name())),
        }
    }
}

impl EnumPlan {
    fn compile(descriptor: &EnumDescriptor) -> Self {
        let mut values: Vec<(i32, Box<str>)> = Vec::new();
        let mut by_name = FastMap::new();
        for value in descriptor.values() {
            by_name.insert(value.name().into(), value.number());
            if !values.iter().any(|(n, _)| *n == value.number()) {
                values.push((value.number(), value.name().into()));
            }
        }
        values.sort_by_key(|(n, _)| *n);
        Self { full_name: descriptor.full_name().into(), values, by_name }
    }

    pub fn name_of(&self, number: i32) -> Option<&str> {
        self.values.binary_search_by_key(&number, |(n, _)| *n).ok().map(|i| &*self.values[i].1)
    }

    pub fn number_of(&self, name: &str) -> Option<i32> {
        self.by_name.get(name).copied()
    }

    pub fn is_null_value(&self) -> bool {
        &*self.full_name == "google.protobuf.NullValue"
    }
}

fn field_kind(kind: &Kind, messages: &HashMap<Box<str>, usize>, enums: &HashMap<String, usize>) -> FieldKind {
    match kind {
        Kind::Double => FieldKind::Double,
        Kind::Float => FieldKind::Float,
        Kind::Int32 => FieldKind::Int32,
        Kind::Int64 => FieldKind::Int64,
        Kind::Uint32 => FieldKind::Uint32,
        Kind::Uint64 => FieldKind::Uint64,
        Kind::Sint32 => FieldKind::Sint32,
        Kind::Sint64 => FieldKind::Sint64,
        Kind::Fixed32 => FieldKind::Fixed32,
        Kind::Fixed64 => FieldKind::Fixed64,
        Kind::Sfixed32 => FieldKind::Sfixed32,
        Kind::Sfixed64 => FieldKind::Sfixed64,
        Kind::Bool => FieldKind::Bool,
        Kind::String => FieldKind::String,
        Kind::Bytes => FieldKind::Bytes,
        Kind::Enum(e) => FieldKind::Enum(enums.get(e.full_name()).copied().unwrap_or(usize::MAX)),
        Kind::Message(m) => FieldKind::Message(messages.get(m.full_name()).copied().unwrap_or(usize::MAX)),
    }
}

fn quoted_key(name: &str) -> Box<str> {
    let mut key = String::with_capacity(name.len() + 3);
    key.push('"');
    key.push_str(name);
    key.push_str("\":");
    key.into()
}

fn special(full_name: &str) -> Special {
    match full_name {
        "google.protobuf.Timestamp" => Special::Timestamp,
        "google.protobuf.Duration" => Special::Duration,
        "google.protobuf.FieldMask" => Special::FieldMask,
        "google.protobuf.Struct" => Special::Struct,
        "google.protobuf.Value" => Special::Value,
        "google.protobuf.ListValue" => Special::ListValue,
        "google.protobuf.Any" => Special::Any,
        "google.protobuf.Empty" => Special::Empty,
        "google.protobuf.DoubleValue"
        | "google.protobuf.FloatValue"
        | "google.protobuf.Int64Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.Int32Value"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.BoolValue"
        | "google.protobuf.StringValue"
        | "google.protobuf.BytesValue" => Special::Wrapper,
        _ => Special::None,
    }
}

impl FieldKind {
    /// The wire type of one (unpacked) value.
    pub fn wire_type(self) -> u8 {
        use super::wire::{FIXED32, FIXED64, LEN, VARINT};
        match self {
            Self::Double | Self::Fixed64 | Self::Sfixed64 => FIXED64,
            Self::Float | Self::Fixed32 | Self::Sfixed32 => FIXED32,
            Self::String | Self::Bytes | Self::Message(_) => LEN,
            _ => VARINT,
        }
    }

    /// Whether a repeated field of this kind may be packed.
    pub fn packable(self) -> bool {
        self.wire_type() != super::wire::LEN
    }
}
