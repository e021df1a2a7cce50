//! Protobuf wire bytes → proto3 JSON text, driven by the plans, without a
//! `DynamicMessage`. A message's fields are first located (one pass over its
//! bytes into a reused scratch list), then written in field-number order so
//! repeated fields split across the wire come out as one array. Anything
//! this path is not certain to render exactly as prost-reflect would — an
//! `Any`, a singular message sent twice (a merge), a duplicate map key,
//! invalid input — is handed over.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serializer as _;

use super::Handover;
use super::plan::{FieldKind, FieldPlan, MessagePlan, Plans, Special};
use super::wire::{LEN, Reader, unzigzag32, unzigzag64};

/// How the JSON is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    pub emit_defaults: bool,
    pub proto_field_names: bool,
    pub enums_as_numbers: bool,
}

/// One located field value: plan field index, wire type, payload bounds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Located {
    pub(super) field: u32,
    pub(super) wire_type: u8,
    pub(super) start: u32,
    pub(super) end: u32,
}

/// Reusable state for rendering; keep one per task to avoid allocations.
#[derive(Debug, Default)]
pub struct Renderer {
    scratch: Vec<Located>,
}

const MAX_DEPTH: usize = 64;

impl Renderer {
    /// Appends the JSON form of the message `plan` encoded in `bytes`.
    pub fn render(
        &mut self,
        plans: &Plans,
        plan: usize,
        bytes: &[u8],
        style: Style,
        out: &mut Vec<u8>,
    ) -> Result<(), Handover> {
        Writer { plans, style, scratch: &mut self.scratch, out }.message(plan, bytes, 0)
    }
}

pub(super) struct Writer<'a> {
    pub(super) plans: &'a Plans,
    pub(super) style: Style,
    pub(super) scratch: &'a mut Vec<Located>,
    pub(super) out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    pub(super) fn message(&mut self, plan: usize, bytes: &[u8], depth: usize) -> Result<(), Handover> {
        let plans = self.plans;
        let plan = plans.messages.get(plan).ok_or(Handover)?;
        if depth > MAX_DEPTH || !plan.fast {
            return Err(Handover);
        }
        match plan.special {
            Special::None => self.fields(plan, bytes, depth),
            Special::Empty => self.empty(plan, bytes),
            Special::Wrapper => self.wrapper(plan, bytes, depth),
            Special::Timestamp | Special::Duration => self.time(plan, bytes),
            Special::Struct | Special::Value | Special::ListValue => self.dynamic(plan, bytes, depth),
            Special::FieldMask | Special::Any => Err(Handover),
        }
    }

    /// Locates the fields of one message; returns the scratch range.
    pub(super) fn locate(&mut self, plan: &MessagePlan, bytes: &[u8]) -> Result<usize, Handover> {
        let mark = self.scratch.len();
        let mut reader = Reader::new(bytes);
        let mut sorted = true;
        let mut last = 0u32;
        while !reader.is_empty() {
            let (number, wire_type) = reader.tag().ok_or(Handover)?;
            let start = reader.position();
            reader.skip(wire_type).ok_or(Handover)?;
            let Some(index) = plan.index_by_number(number) else {
                continue;
            };
            let field = &plan.fields[index];
            let packed = wire_type == LEN && field.list && field.kind.packable();
            if wire_type != field.kind.wire_type() && !packed {
                return Err(Handover);
            }
            let index = index as u32;
            sorted &= index >= last;
            last = index;
            let (start, end) = (start as u32, reader.position() as u32);
            self.scratch.push(Located { field: index, wire_type, start, end });
        }
        if !sorted {
            self.scratch[mark..].sort_by_key(|l| l.field);
        }
        Ok(mark)
    }

    fn fields(&mut self, plan: &MessagePlan, bytes: &[u8], depth: usize) -> Result<(), Handover> {
        let mark = self.locate(plan, bytes)?;
        self.out.push(b'{');
        let mut first = true;
        let mut next_absent = 0usize;
        let mut i = mark;
        while i < self.scratch.len() {
            let index = self.scratch[i].field as usize;
            let mut end = i + 1;
            while end < self.scratch.len() && self.scratch[end].field as usize == index {
                end += 1;
            }
            if self.style.emit_defaults {
                for absent in next_absent..index {
                    self.default_field(&plan.fields[absent], &mut first)?;
                }
            }
            next_absent = index + 1;
            let field = &plan.fields[index];
            if field.oneof.is_none() || self.oneof_winner(plan, field, mark, end - 1) {
                self.field(field, (i, end), bytes, &mut first, depth)?;
            } else {
                self.check_overwritten(field, (i, end), bytes)?;
            }
            i = end;
        }
        if self.style.emit_defaults {
            for absent in next_absent..plan.fields.len() {
                self.default_field(&plan.fields[absent], &mut first)?;
            }
        }
        self.scratch.truncate(mark);
        self.out.push(b'}');
        Ok(())
    }

    /// Whether no other member of the field's oneof came later on the wire.
    fn oneof_winner(&self, plan: &MessagePlan, field: &FieldPlan, mark: usize, last: usize) -> bool {
        let last = self.scratch[last];
        !self.scratch[mark..].iter().any(|other| {
            other.start > last.start
                && other.field != last.field
                && plan.fields[other.field as usize].oneof == field.oneof
        })
    }

    fn key(&mut self, field: &FieldPlan, first: &mut bool) {
        if !*first {
            self.out.push(b',');
        }
        *first = false;
        let key = if self.style.proto_field_names { &field.proto_key } else { &field.json_key };
        self.out.extend_from_slice(key.as_bytes());
    }

    /// One present field: its located values are `scratch[range]`.
    pub(super) fn field(
        &mut self,
        field: &FieldPlan,
        range: (usize, usize),
        bytes: &[u8],
        first: &mut bool,
        depth: usize,
    ) -> Result<(), Handover> {
        if let Some((key_kind, value_kind)) = field.map {
            self.key(field, first);
            return self.map(range, bytes, key_kind, value_kind, depth);
        }
        if field.list {
            // A packed list may be present on the wire yet empty: like an
            // absent one, it is written only with emit_defaults.
            let empty = self.scratch[range.0..range.1]
                .iter()
                .all(|l| l.wire_type == LEN && field.kind.packable() && bytes[l.start as usize..l.end as usize] == [0]);
            if empty && !self.style.emit_defaults {
                return Ok(());
            }
            self.key(field, first);
            self.out.push(b'[');
            let mut first_item = true;
            for i in range.0..range.1 {
                let located = self.scratch[i];
                let payload = &bytes[located.start as usize..located.end as usize];
                if located.wire_type == LEN && field.kind.packable() {
                    let mut reader = Reader::new(Reader::new(payload).len_delimited().ok_or(Handover)?);
                    while !reader.is_empty() {
                        self.comma(&mut first_item);
                        self.packed_scalar(field.kind, &mut reader)?;
                    }
                } else {
                    self.comma(&mut first_item);
                    self.value(field.kind, located.wire_type, payload, depth)?;
                }
            }
            self.out.push(b']');
            return Ok(());
        }
        self.check_overwritten(field, (range.0, range.1 - 1), bytes)?;
        let last = self.scratch[range.1 - 1];
        let payload = &bytes[last.start as usize..last.end as usize];
        // A default sent on the wire is skipped like an absent field, unless
        // defaults are written anyway.
        if !field.explicit_presence && !self.style.emit_defaults && is_default(field.kind, payload)? {
            return Ok(());
        }
        self.key(field, first);
        self.value(field.kind, last.wire_type, payload, depth)
    }

    /// Values decoded and then replaced still had to decode: strings must
    /// be UTF-8; messages would merge, which prost-reflect decides.
    pub(super) fn check_overwritten(
        &self,
        field: &FieldPlan,
        range: (usize, usize),
        bytes: &[u8],
    ) -> Result<(), Handover> {
        for located in &self.scratch[range.0..range.1] {
            match field.kind {
                FieldKind::Message(_) => return Err(Handover),
                FieldKind::String => {
                    let payload = &bytes[located.start as usize..located.end as usize];
                    let text = Reader::new(payload).len_delimited().ok_or(Handover)?;
                    std::str::from_utf8(text).map_err(|_| Handover)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn comma(&mut self, first: &mut bool) {
        if !*first {
            self.out.push(b',');
        }
        *first = false;
    }
}

/// Whether a singular implicit-presence value is its default (then it is
/// not written), compared as prost-reflect compares values.
fn is_default(kind: FieldKind, payload: &[u8]) -> Result<bool, Handover> {
    let mut reader = Reader::new(payload);
    Ok(match kind {
        FieldKind::Double => f64::from_bits(reader.fixed64().ok_or(Handover)?) == 0.0,
        FieldKind::Float => f32::from_bits(reader.fixed32().ok_or(Handover)?) == 0.0,
        FieldKind::Fixed64 | FieldKind::Sfixed64 => reader.fixed64().ok_or(Handover)? == 0,
        FieldKind::Fixed32 | FieldKind::Sfixed32 => reader.fixed32().ok_or(Handover)? == 0,
        FieldKind::Int64 | FieldKind::Uint64 | FieldKind::Sint64 | FieldKind::Bool => {
            reader.varint().ok_or(Handover)? == 0
        }
        FieldKind::Int32 | FieldKind::Uint32 | FieldKind::Sint32 | FieldKind::Enum(_) => {
            reader.varint().ok_or(Handover)? as u32 == 0
        }
        FieldKind::String | FieldKind::Bytes => reader.len_delimited().ok_or(Handover)?.is_empty(),
        FieldKind::Message(_) => false,
    })
}

pub(super) fn write_str(out: &mut Vec<u8>, text: &str) {
    // serde_json's own escaping, so both paths escape alike.
    let _ = serde_json::Serializer::new(&mut *out).serialize_str(text);
}

fn write_f64(out: &mut Vec<u8>, value: f64) {
    if value.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 { b"\"Infinity\"" } else { b"\"-Infinity\"" });
    } else {
        let _ = serde_json::Serializer::new(&mut *out).serialize_f64(value);
    }
}

fn write_f32(out: &mut Vec<u8>, value: f32) {
    if value.is_finite() {
        let _ = serde_json::Serializer::new(&mut *out).serialize_f32(value);
    } else {
        write_f64(out, f64::from(value));
    }
}

fn write_quoted(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.push(b'"');
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    out.push(b'"');
}

fn write_int(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

impl Writer<'_> {
    /// One value of `kind` from its payload (the bytes after the tag).
    pub(super) fn value(
        &mut self,
        kind: FieldKind,
        wire_type: u8,
        payload: &[u8],
        depth: usize,
    ) -> Result<(), Handover> {
        let mut reader = Reader::new(payload);
        match (kind, wire_type) {
            (FieldKind::String, LEN) => {
                let text = std::str::from_utf8(reader.len_delimited().ok_or(Handover)?).map_err(|_| Handover)?;
                write_str(self.out, text);
            }
            (FieldKind::Bytes, LEN) => {
                let data = reader.len_delimited().ok_or(Handover)?;
                self.out.push(b'"');
                let start = self.out.len();
                self.out.resize(start + data.len().div_ceil(3) * 4, 0);
                let written = STANDARD.encode_slice(data, &mut self.out[start..]).map_err(|_| Handover)?;
                self.out.truncate(start + written);
                self.out.push(b'"');
            }
            (FieldKind::Message(plan), LEN) => {
                let inner = reader.len_delimited().ok_or(Handover)?;
                self.message(plan, inner, depth + 1)?;
            }
            (kind, _) => self.packed_scalar(kind, &mut reader)?,
        }
        Ok(())
    }

    /// A scalar read from `reader` (also the elements of a packed list).
    pub(super) fn packed_scalar(&mut self, kind: FieldKind, reader: &mut Reader<'_>) -> Result<(), Handover> {
        let out = &mut *self.out;
        match kind {
            FieldKind::Double => write_f64(out, f64::from_bits(reader.fixed64().ok_or(Handover)?)),
            FieldKind::Float => write_f32(out, f32::from_bits(reader.fixed32().ok_or(Handover)?)),
            FieldKind::Int32 => write_int(out, reader.varint().ok_or(Handover)? as i32),
            FieldKind::Int64 => write_quoted(out, reader.varint().ok_or(Handover)? as i64),
            FieldKind::Uint32 => write_int(out, reader.varint().ok_or(Handover)? as u32),
            FieldKind::Uint64 => write_quoted(out, reader.varint().ok_or(Handover)?),
            FieldKind::Sint32 => write_int(out, unzigzag32(reader.varint().ok_or(Handover)?)),
            FieldKind::Sint64 => write_quoted(out, unzigzag64(reader.varint().ok_or(Handover)?)),
            FieldKind::Fixed32 => write_int(out, reader.fixed32().ok_or(Handover)?),
            FieldKind::Fixed64 => write_quoted(out, reader.fixed64().ok_or(Handover)?),
            FieldKind::Sfixed32 => write_int(out, reader.fixed32().ok_or(Handover)? as i32),
            FieldKind::Sfixed64 => write_quoted(out, reader.fixed64().ok_or(Handover)? as i64),
            FieldKind::Bool => {
                out.extend_from_slice(if reader.varint().ok_or(Handover)? != 0 { b"true" } else { b"false" })
            }
            FieldKind::Enum(plan) => {
                let number = reader.varint().ok_or(Handover)? as i32;
                self.enum_value(plan, number)?;
            }
            FieldKind::String | FieldKind::Bytes | FieldKind::Message(_) => return Err(Handover),
        }
        Ok(())
    }

    pub(super) fn enum_value(&mut self, plan: usize, number: i32) -> Result<(), Handover> {
        let plan = self.plans.enums.get(plan).ok_or(Handover)?;
        if plan.is_null_value() {
            self.out.extend_from_slice(b"null");
        } else if let (false, Some(name)) = (self.style.enums_as_numbers, plan.name_of(number)) {
            self.out.push(b'"');
            self.out.extend_from_slice(name.as_bytes());
            self.out.push(b'"');
        } else {
            write_int(self.out, number);
        }
        Ok(())
    }

    /// The default JSON of an absent field, for `emit_defaults`.
    fn default_field(&mut self, field: &FieldPlan, first: &mut bool) -> Result<(), Handover> {
        if field.explicit_presence {
            return Ok(());
        }
        self.key(field, first);
        if field.map.is_some() {
            self.out.extend_from_slice(b"{}");
            return Ok(());
        }
        if field.list {
            self.out.extend_from_slice(b"[]");
            return Ok(());
        }
        match field.kind {
            FieldKind::Double | FieldKind::Float => self.out.extend_from_slice(b"0.0"),
            FieldKind::Int64 | FieldKind::Uint64 | FieldKind::Sint64 | FieldKind::Fixed64 | FieldKind::Sfixed64 => {
                self.out.extend_from_slice(b"\"0\"")
            }
            FieldKind::Bool => self.out.extend_from_slice(b"false"),
            FieldKind::String | FieldKind::Bytes => self.out.extend_from_slice(b"\"\""),
            FieldKind::Enum(plan) => self.enum_value(plan, 0)?,
            FieldKind::Message(_) => return Err(Handover),
            _ => self.out.push(b'0'),
        }
        Ok(())
    }
}
