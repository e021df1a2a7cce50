//! Wire → JSON for the messages whose JSON form is not an object of their
//! fields: map fields, wrappers, Empty, Timestamp, Duration, Struct, Value
//! and ListValue.

use super::Handover;
use super::plan::{FieldKind, MessagePlan, Special};
use super::to_json::{Located, Writer, write_str};
use super::wire::Reader;

impl Writer<'_> {
    /// A map field: one JSON object, keys in wire order; a repeated key is
    /// handed over (prost-reflect keeps the last).
    pub(super) fn map(
        &mut self,
        range: (usize, usize),
        bytes: &[u8],
        key_kind: FieldKind,
        value_kind: FieldKind,
        depth: usize,
    ) -> Result<(), Handover> {
        self.out.push(b'{');
        let mut keys: smallvec::SmallVec<[(usize, usize); 8]> = smallvec::SmallVec::new();
        for i in range.0..range.1 {
            let located = self.scratch[i];
            let entry =
                Reader::new(&bytes[located.start as usize..located.end as usize]).len_delimited().ok_or(Handover)?;
            let (mut key, mut value) = (None, None);
            let mut reader = Reader::new(entry);
            while !reader.is_empty() {
                let (number, wire_type) = reader.tag().ok_or(Handover)?;
                let start = reader.position();
                reader.skip(wire_type).ok_or(Handover)?;
                let payload = &entry[start..reader.position()];
                match number {
                    1 if wire_type == key_kind.wire_type() => key = Some(payload),
                    2 if wire_type == value_kind.wire_type() => value = Some(payload),
                    1 | 2 => return Err(Handover),
                    _ => {}
                }
            }
            if !keys.is_empty() {
                self.out.push(b',');
            }
            let key_start = self.out.len();
            self.map_key(key_kind, key)?;
            keys.push((key_start, self.out.len()));
            self.out.push(b':');
            match value {
                Some(payload) => self.value(value_kind, value_kind.wire_type(), payload, depth)?,
                None => self.absent_value(value_kind, depth)?,
            }
        }
        self.out.push(b'}');
        let out = &*self.out;
        keys.sort_by(|a, b| out[a.0..a.1].cmp(&out[b.0..b.1]));
        if keys.windows(2).any(|w| out[w[0].0..w[0].1] == out[w[1].0..w[1].1]) {
            return Err(Handover);
        }
        Ok(())
    }

    /// A map key as a JSON string.
    fn map_key(&mut self, kind: FieldKind, payload: Option<&[u8]>) -> Result<(), Handover> {
        let mut reader = Reader::new(payload.unwrap_or(&[]));
        let absent = payload.is_none();
        let out = &mut *self.out;
        match kind {
            FieldKind::String => {
                let text = if absent {
                    ""
                } else {
                    std::str::from_utf8(reader.len_delimited().ok_or(Handover)?).map_err(|_| Handover)?
                };
                write_str(out, text);
            }
            FieldKind::Bool => {
                let value = !absent && reader.varint().ok_or(Handover)? != 0;
                out.extend_from_slice(if value { b"\"true\"" } else { b"\"false\"" });
            }
            FieldKind::Int32
            | FieldKind::Uint32
            | FieldKind::Sint32
            | FieldKind::Int64
            | FieldKind::Uint64
            | FieldKind::Sint64
            | FieldKind::Fixed32
            | FieldKind::Fixed64
            | FieldKind::Sfixed32
            | FieldKind::Sfixed64 => {
                if absent {
                    out.extend_from_slice(b"\"0\"");
                } else {
                    let quoted = matches!(
                        kind,
                        FieldKind::Int64
                            | FieldKind::Uint64
                            | FieldKind::Sint64
                            | FieldKind::Fixed64
                            | FieldKind::Sfixed64
                    );
                    if !quoted {
                        out.push(b'"');
                    }
                    self.packed_scalar(kind, &mut reader)?;
                    if !quoted {
                        self.out.push(b'"');
                    }
                }
            }
            _ => return Err(Handover),
        }
        Ok(())
    }

    /// The JSON of a map value missing from its entry: the default.
    pub(super) fn absent_value(&mut self, kind: FieldKind, depth: usize) -> Result<(), Handover> {
        match kind {
            FieldKind::Message(plan) => self.message(plan, &[], depth + 1),
            FieldKind::String | FieldKind::Bytes => {
                self.out.extend_from_slice(b"\"\"");
                Ok(())
            }
            FieldKind::Enum(plan) => self.enum_value(plan, 0),
            kind => self.packed_scalar(kind, &mut Reader::new(&[0; 8])),
        }
    }

    pub(super) fn empty(&mut self, plan: &MessagePlan, bytes: &[u8]) -> Result<(), Handover> {
        let mark = self.locate(plan, bytes)?;
        self.scratch.truncate(mark);
        self.out.extend_from_slice(b"{}");
        Ok(())
    }

    /// A wrapper: the JSON of its `value` field, or of the default.
    pub(super) fn wrapper(&mut self, plan: &MessagePlan, bytes: &[u8], depth: usize) -> Result<(), Handover> {
        let mark = self.locate(plan, bytes)?;
        let field = plan.fields.first().ok_or(Handover)?;
        let present = self.scratch.len() > mark;
        let result = if present {
            self.check_overwritten(field, (mark, self.scratch.len() - 1), bytes).and_then(|()| {
                let last = self.scratch[self.scratch.len() - 1];
                self.value(field.kind, last.wire_type, &bytes[last.start as usize..last.end as usize], depth)
            })
        } else {
            self.absent_value(field.kind, depth)
        };
        self.scratch.truncate(mark);
        result
    }

    /// Timestamp and Duration through prost-types' own formatting, the one
    /// prost-reflect uses.
    pub(super) fn time(&mut self, plan: &MessagePlan, bytes: &[u8]) -> Result<(), Handover> {
        let mark = self.locate(plan, bytes)?;
        let (mut seconds, mut nanos) = (0i64, 0i32);
        for located in &self.scratch[mark..] {
            let mut reader = Reader::new(&bytes[located.start as usize..located.end as usize]);
            match plan.fields[located.field as usize].number {
                1 => seconds = reader.varint().ok_or(Handover)? as i64,
                2 => nanos = reader.varint().ok_or(Handover)? as i32,
                _ => {}
            }
        }
        self.scratch.truncate(mark);
        // Both forms are plain ASCII: written in place, no escaping needed.
        use std::io::Write;
        let written = if plan.special == Special::Timestamp {
            if !(-62_135_596_800..=253_402_300_799).contains(&seconds) {
                return Err(Handover);
            }
            write!(self.out, "\"{}\"", prost_types::Timestamp { seconds, nanos })
        } else {
            if seconds.unsigned_abs() > 315_576_000_000 || nanos.unsigned_abs() > 999_999_999 {
                return Err(Handover);
            }
            write!(self.out, "\"{}\"", prost_types::Duration { seconds, nanos })
        };
        written.map_err(|_| Handover)
    }

    /// Struct, Value and ListValue: plain JSON.
    pub(super) fn dynamic(&mut self, plan: &MessagePlan, bytes: &[u8], depth: usize) -> Result<(), Handover> {
        match plan.special {
            Special::Struct | Special::ListValue => {
                let mark = self.locate(plan, bytes)?;
                let end = self.scratch.len();
                let field = plan.fields.first().ok_or(Handover)?;
                let mut first = true;
                let result = if mark == end {
                    self.out.extend_from_slice(if plan.special == Special::Struct { b"{}" } else { b"[]" });
                    Ok(())
                } else {
                    // The field's own rendering, without its key.
                    let before = self.out.len();
                    let rendered = self.field(field, (mark, end), bytes, &mut first, depth);
                    let key_len =
                        if self.style.proto_field_names { field.proto_key.len() } else { field.json_key.len() };
                    self.out.drain(before..before + key_len);
                    rendered
                };
                self.scratch.truncate(mark);
                result
            }
            _ => self.value_message(plan, bytes, depth),
        }
    }

    /// google.protobuf.Value: its one kind as JSON; no kind is null.
    fn value_message(&mut self, plan: &MessagePlan, bytes: &[u8], depth: usize) -> Result<(), Handover> {
        let mark = self.locate(plan, bytes)?;
        let winner = self.scratch[mark..].iter().copied().max_by_key(|l| l.start);
        let result = match winner {
            None => {
                self.out.extend_from_slice(b"null");
                Ok(())
            }
            Some(last) => {
                let field = &plan.fields[last.field as usize];
                let others = (mark, self.scratch.len());
                self.check_kinds(plan, others, last, bytes).and_then(|()| {
                    let payload = &bytes[last.start as usize..last.end as usize];
                    if field.number == 2 {
                        let number = f64::from_bits(Reader::new(payload).fixed64().ok_or(Handover)?);
                        if !number.is_finite() {
                            return Err(Handover);
                        }
                    }
                    self.value(field.kind, last.wire_type, payload, depth)
                })
            }
        };
        self.scratch.truncate(mark);
        result
    }

    /// The replaced kinds of a Value still had to decode.
    fn check_kinds(
        &self,
        plan: &MessagePlan,
        range: (usize, usize),
        last: Located,
        bytes: &[u8],
    ) -> Result<(), Handover> {
        for i in range.0..range.1 {
            let located = self.scratch[i];
            if located.start != last.start {
                self.check_overwritten(&plan.fields[located.field as usize], (i, i + 1), bytes)?;
            }
        }
        Ok(())
    }
}
