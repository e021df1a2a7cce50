//! Protobuf wire primitives: varints, tags and length-delimited fields,
//! read from a slice and written with back-patched lengths.

/// The wire types of the encoding.
pub const VARINT: u8 = 0;
pub const FIXED64: u8 = 1;
pub const LEN: u8 = 2;
pub const FIXED32: u8 = 5;

/// A forward-only reader over one message's bytes.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.at >= self.bytes.len()
    }

    pub fn position(&self) -> usize {
        self.at
    }

    /// A varint of at most 10 bytes; `None` when truncated or overlong.
    #[inline]
    pub fn varint(&mut self) -> Option<u64> {
        // Tags, lengths and small numbers are one byte: the common case.
        let first = *self.bytes.get(self.at)?;
        if first < 0x80 {
            self.at += 1;
            return Some(u64::from(first));
        }
        self.varint_long()
    }

    fn varint_long(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            if i == 9 && byte > 1 {
                return None;
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }

    #[inline]
    pub fn fixed32(&mut self) -> Option<u32> {
        let bytes = self.bytes.get(self.at..self.at + 4)?;
        self.at += 4;
        Some(u32::from_le_bytes(bytes.try_into().ok()?))
    }

    #[inline]
    pub fn fixed64(&mut self) -> Option<u64> {
        let bytes = self.bytes.get(self.at..self.at + 8)?;
        self.at += 8;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }

    /// A length-delimited payload.
    #[inline]
    pub fn len_delimited(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let end = self.at.checked_add(len)?;
        let bytes = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(bytes)
    }

    /// A field's tag: (number, wire type). Number 0 is invalid.
    #[inline]
    pub fn tag(&mut self) -> Option<(u32, u8)> {
        let tag = self.varint()?;
        let number = u32::try_from(tag >> 3).ok().filter(|n| *n != 0 && *n < (1 << 29))?;
        Some((number, (tag & 7) as u8))
    }

    /// Skips a value of the wire type (groups are not supported).
    #[inline]
    pub fn skip(&mut self, wire_type: u8) -> Option<()> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed64().map(drop),
            LEN => self.len_delimited().map(drop),
            FIXED32 => self.fixed32().map(drop),
            _ => None,
        }
    }
}

#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    if value < 0x80 {
        out.push(value as u8);
        return;
    }
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[inline]
pub fn put_tag(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

pub fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Starts a length-delimited field whose length is written by `end_len`:
/// one byte is reserved, and the payload shifted if the length needs more.
#[inline]
pub fn begin_len(out: &mut Vec<u8>, number: u32) -> usize {
    put_tag(out, number, LEN);
    out.push(0);
    out.len()
}

#[inline]
pub fn end_len(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start;
    let width = varint_len(len as u64);
    if width > 1 {
        out.splice(start..start, std::iter::repeat_n(0, width - 1));
    }
    let mut at = start - 1;
    let mut value = len as u64;
    while value >= 0x80 {
        out[at] = (value as u8) | 0x80;
        value >>= 7;
        at += 1;
    }
    out[at] = value as u8;
}

pub fn zigzag32(value: i32) -> u64 {
    u64::from(((value << 1) ^ (value >> 31)) as u32)
}

pub fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

pub fn unzigzag32(value: u64) -> i32 {
    let value = value as u32;
    ((value >> 1) as i32) ^ -((value & 1) as i32)
}

pub fn unzigzag64(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_back_patched_at_every_width() {
        for len in [0usize, 1, 127, 128, 16_383, 16_384, 2_097_152] {
            let mut out = vec![9];
            let start = begin_len(&mut out, 1);
            out.extend(std::iter::repeat_n(7u8, len));
            end_len(&mut out, start);
            let mut reader = Reader::new(&out[1..]);
            assert_eq!(reader.tag(), Some((1, LEN)));
            assert_eq!(reader.len_delimited().map(<[u8]>::len), Some(len), "length {len}");
            assert!(reader.is_empty());
        }
    }

    #[test]
    fn varints_and_zigzag_round_trip() {
        for value in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value));
            assert_eq!(Reader::new(&out).varint(), Some(value));
        }
        for value in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag64(zigzag64(value)), value);
        }
        for value in [0i32, -1, 1, i32::MIN, i32::MAX] {
            assert_eq!(unzigzag32(zigzag32(value)), value);
        }
        assert_eq!(Reader::new(&[0x80; 11]).varint(), None, "overlong");
        assert_eq!(Reader::new(&[0x80]).varint(), None, "truncated");
    }
}
