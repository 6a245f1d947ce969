//! Protocol Buffers' wire format, just enough to edit an ONNX file without a schema compiler:
//! a message is read as its list of fields, in order, and written back the same way, so every
//! field Easel does not touch (and every field newer ONNX versions add) survives byte for byte.
//! Sub-messages stay bytes until someone parses them.

use std::borrow::Cow;

/// One field's payload, by wire type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    /// Length-delimited: strings, bytes, sub-messages and packed repeated numbers.
    Bytes(Cow<'a, [u8]>),
    Fixed32([u8; 4]),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field<'a> {
    pub number: u32,
    pub value: Value<'a>,
}

/// A message as its fields, in the order they were read or added.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message<'a> {
    pub fields: Vec<Field<'a>>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("not a valid protobuf message: {0}")]
pub struct WireError(pub &'static str);

impl<'a> Message<'a> {
    pub fn parse(mut bytes: &'a [u8]) -> Result<Message<'a>, WireError> {
        let mut fields = Vec::new();
        while !bytes.is_empty() {
            let key = read_varint(&mut bytes)?;
            let number = u32::try_from(key >> 3).map_err(|_| WireError("field number"))?;
            if number == 0 {
                return Err(WireError("field number 0"));
            }
            let value = match key & 7 {
                0 => Value::Varint(read_varint(&mut bytes)?),
                1 => Value::Fixed64(take(&mut bytes, 8)?.try_into().expect("8 bytes")),
                2 => {
                    let len = usize::try_from(read_varint(&mut bytes)?)
                        .map_err(|_| WireError("length"))?;
                    Value::Bytes(Cow::Borrowed(take(&mut bytes, len)?))
                }
                5 => Value::Fixed32(take(&mut bytes, 4)?.try_into().expect("4 bytes")),
                // Groups (3, 4) were deprecated before ONNX existed.
                _ => return Err(WireError("unsupported wire type")),
            };
            fields.push(Field { number, value });
        }
        Ok(Message { fields })
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        for field in &self.fields {
            let wire = match field.value {
                Value::Varint(_) => 0,
                Value::Fixed64(_) => 1,
                Value::Bytes(_) => 2,
                Value::Fixed32(_) => 5,
            };
            write_varint(out, (u64::from(field.number) << 3) | wire);
            match &field.value {
                Value::Varint(v) => write_varint(out, *v),
                Value::Fixed64(b) => out.extend_from_slice(b),
                Value::Bytes(b) => {
                    write_varint(out, b.len() as u64);
                    out.extend_from_slice(b);
                }
                Value::Fixed32(b) => out.extend_from_slice(b),
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    /// The payloads of every length-delimited field `number`.
    pub fn bytes(&self, number: u32) -> impl Iterator<Item = &[u8]> {
        self.fields.iter().filter_map(move |f| match &f.value {
            Value::Bytes(b) if f.number == number => Some(b.as_ref()),
            _ => None,
        })
    }

    /// The last string field `number` (proto3: the last one wins), `""` when absent.
    pub fn str(&self, number: u32) -> &str {
        self.bytes(number)
            .last()
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    pub fn strings(&self, number: u32) -> Vec<&str> {
        self.bytes(number)
            .map(|b| std::str::from_utf8(b).unwrap_or(""))
            .collect()
    }

    /// The last varint field `number`.
    pub fn varint(&self, number: u32) -> Option<u64> {
        self.fields.iter().rev().find_map(|f| match f.value {
            Value::Varint(v) if f.number == number => Some(v),
            _ => None,
        })
    }

    /// A repeated integer field, packed or not (writers may use either).
    pub fn varints(&self, number: u32) -> Result<Vec<u64>, WireError> {
        let mut out = Vec::new();
        for field in self.fields.iter().filter(|f| f.number == number) {
            match &field.value {
                Value::Varint(v) => out.push(*v),
                Value::Bytes(packed) => {
                    let mut rest: &[u8] = packed;
                    while !rest.is_empty() {
                        out.push(read_varint(&mut rest)?);
                    }
                }
                _ => return Err(WireError("wrong wire type for a repeated integer")),
            }
        }
        Ok(out)
    }

    /// A repeated `float` field, packed or not.
    pub fn floats(&self, number: u32) -> Result<Vec<f32>, WireError> {
        let mut out = Vec::new();
        for field in self.fields.iter().filter(|f| f.number == number) {
            match &field.value {
                Value::Fixed32(b) => out.push(f32::from_le_bytes(*b)),
                Value::Bytes(packed) if packed.len() % 4 == 0 => out.extend(
                    packed
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))),
                ),
                _ => return Err(WireError("wrong wire type for a repeated float")),
            }
        }
        Ok(out)
    }

    pub fn remove(&mut self, number: u32) {
        self.fields.retain(|f| f.number != number);
    }

    pub fn push_varint(&mut self, number: u32, v: u64) {
        self.fields.push(Field {
            number,
            value: Value::Varint(v),
        });
    }

    pub fn push_bytes(&mut self, number: u32, bytes: impl Into<Cow<'a, [u8]>>) {
        self.fields.push(Field {
            number,
            value: Value::Bytes(bytes.into()),
        });
    }

    pub fn push_str(&mut self, number: u32, text: &str) {
        self.push_bytes(number, text.as_bytes().to_vec());
    }

    pub fn push_message(&mut self, number: u32, message: &Message<'_>) {
        self.push_bytes(number, message.to_bytes());
    }

    /// Packed repeated int64 (ONNX's `dims`, `ints`).
    pub fn push_packed(&mut self, number: u32, values: &[i64]) {
        let mut packed = Vec::new();
        for v in values {
            write_varint(&mut packed, *v as u64);
        }
        self.push_bytes(number, packed);
    }
}

fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Result<&'a [u8], WireError> {
    if bytes.len() < len {
        return Err(WireError("truncated"));
    }
    let (head, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(head)
}

fn read_varint(bytes: &mut &[u8]) -> Result<u64, WireError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let [byte, rest @ ..] = *bytes else {
            return Err(WireError("truncated varint"));
        };
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError("varint over 10 bytes"))
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_and_write_back_byte_for_byte() {
        let mut m = Message::default();
        m.push_varint(1, 300);
        m.push_str(2, "MatMul");
        m.push_packed(3, &[1, -1, 4096]);
        m.fields.push(Field {
            number: 4,
            value: Value::Fixed32(1.5f32.to_le_bytes()),
        });
        m.fields.push(Field {
            number: 5,
            value: Value::Fixed64([7; 8]),
        });
        let bytes = m.to_bytes();
        let back = Message::parse(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back.varint(1), Some(300));
        assert_eq!(back.str(2), "MatMul");
        assert_eq!(
            back.varints(3)
                .unwrap()
                .iter()
                .map(|&v| v as i64)
                .collect::<Vec<_>>(),
            [1, -1, 4096]
        );
        assert_eq!(back.floats(4).unwrap(), [1.5]);
    }

    #[test]
    fn damaged_bytes_are_errors_not_panics() {
        for bad in [
            &[0x0a, 0x05, 1, 2][..],
            &[0x08][..],
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ][..],
            &[0x0b][..],
            &[0x00, 0x01][..],
            &[0x0d, 1, 2][..],
        ] {
            assert!(Message::parse(bad).is_err(), "{bad:?}");
        }
    }
}
