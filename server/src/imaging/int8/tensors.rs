//! ONNX initializers (`TensorProto`): reading their float data wherever the export put it
//! (inline `raw_data`, typed `float_data`, or an external data file beside the graph), and
//! writing tensors to the quantised model's own external data file.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use super::wire::Message;
use super::Int8Error;

// TensorProto field numbers (onnx.proto).
const DIMS: u32 = 1;
const DATA_TYPE: u32 = 2;
const FLOAT_DATA: u32 = 4;
const NAME: u32 = 8;
const RAW_DATA: u32 = 9;
const EXTERNAL_DATA: u32 = 13;
const DATA_LOCATION: u32 = 14;
const LOCATION_EXTERNAL: u64 = 1;
// StringStringEntryProto.
const KEY: u32 = 1;
const VALUE: u32 = 2;

/// `TensorProto.DataType` values Easel writes or reads.
pub const FLOAT: u64 = 1;
pub const UINT8: u64 = 2;

/// Tensors this size or larger go to the external data file; smaller ones stay in the graph.
const EXTERNAL_MIN_BYTES: usize = 1024;
/// External tensors start on this boundary, so ONNX Runtime can map them in place.
const ALIGN: u64 = 4096;

/// An initializer as read from the graph, fields untouched.
pub struct Tensor<'a> {
    pub message: Message<'a>,
}

/// Where an external tensor's bytes are.
struct External {
    location: String,
    offset: u64,
    length: Option<u64>,
}

impl<'a> Tensor<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Tensor<'a>, Int8Error> {
        Ok(Tensor {
            message: Message::parse(bytes)?,
        })
    }

    pub fn name(&self) -> &str {
        self.message.str(NAME)
    }

    pub fn data_type(&self) -> u64 {
        self.message.varint(DATA_TYPE).unwrap_or(0)
    }

    pub fn dims(&self) -> Result<Vec<i64>, Int8Error> {
        Ok(self
            .message
            .varints(DIMS)?
            .into_iter()
            .map(|d| d as i64)
            .collect())
    }

    /// The element count, checked: no negative dimension, no overflow.
    pub fn len(&self) -> Result<usize, Int8Error> {
        self.dims()?.iter().try_fold(1usize, |n, &d| {
            usize::try_from(d)
                .ok()
                .and_then(|d| n.checked_mul(d))
                .ok_or_else(|| self.bad("has an impossible shape"))
        })
    }

    pub fn is_external(&self) -> bool {
        self.message.varint(DATA_LOCATION) == Some(LOCATION_EXTERNAL)
    }

    fn external(&self) -> Result<External, Int8Error> {
        let mut found = External {
            location: String::new(),
            offset: 0,
            length: None,
        };
        for entry in self.message.bytes(EXTERNAL_DATA) {
            let entry = Message::parse(entry)?;
            let value = entry.str(VALUE);
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| self.bad("has a bad external data entry"))
            };
            match entry.str(KEY) {
                "location" => found.location = value.to_string(),
                "offset" => found.offset = number()?,
                "length" => found.length = Some(number()?),
                _ => {}
            }
        }
        Ok(found)
    }

    /// The tensor's bytes as stored (little-endian elements), from wherever they are.
    /// `model_dir` is the folder external locations are relative to.
    pub fn raw_bytes(&self, model_dir: &Path, element_size: usize) -> Result<Vec<u8>, Int8Error> {
        let want = self
            .len()?
            .checked_mul(element_size)
            .ok_or_else(|| self.bad("is too large"))?;
        if self.is_external() {
            let external = self.external()?;
            if external.length.is_some_and(|l| l != want as u64) {
                return Err(self.bad("has an external length that does not match its shape"));
            }
            let path = inside(model_dir, &external.location)
                .ok_or_else(|| self.bad("points outside its model folder"))?;
            let mut file = File::open(&path).map_err(|e| Int8Error::io(&path, e))?;
            file.seek(SeekFrom::Start(external.offset))
                .map_err(|e| Int8Error::io(&path, e))?;
            let mut out = vec![0u8; want];
            file.read_exact(&mut out)
                .map_err(|e| Int8Error::io(&path, e))?;
            return Ok(out);
        }
        let raw = self.message.bytes(RAW_DATA).last();
        match raw {
            Some(raw) if raw.len() == want => Ok(raw.to_vec()),
            Some(_) => Err(self.bad("has raw data that does not match its shape")),
            None if self.data_type() == FLOAT => {
                let floats = self.message.floats(FLOAT_DATA)?;
                if floats.len() != self.len()? {
                    return Err(self.bad("has float data that does not match its shape"));
                }
                Ok(floats.iter().flat_map(|f| f.to_le_bytes()).collect())
            }
            None => Err(self.bad("stores its data in a way Easel does not read")),
        }
    }

    /// The float data of an fp32 tensor.
    pub fn floats(&self, model_dir: &Path) -> Result<Vec<f32>, Int8Error> {
        Ok(self
            .raw_bytes(model_dir, 4)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }

    fn bad(&self, what: &str) -> Int8Error {
        Int8Error::Model(format!("initializer `{}` {what}", self.name()))
    }
}

/// `location` resolved against `dir`, if it stays inside it (no absolute paths, no `..`).
fn inside(dir: &Path, location: &str) -> Option<PathBuf> {
    let relative = Path::new(location);
    relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        .then(|| dir.join(relative))
}

/// The quantised model's external data file, written front to back.
pub struct WeightsFile {
    path: PathBuf,
    name: String,
    out: BufWriter<File>,
    offset: u64,
}

impl WeightsFile {
    pub fn create(dir: &Path, name: &str) -> Result<WeightsFile, Int8Error> {
        let path = dir.join(name);
        let file = File::create(&path).map_err(|e| Int8Error::io(&path, e))?;
        Ok(WeightsFile {
            out: BufWriter::with_capacity(1 << 20, file),
            path,
            name: name.to_string(),
            offset: 0,
        })
    }

    /// A new initializer: inline when small, else in this file.
    pub fn tensor(
        &mut self,
        name: &str,
        dims: &[i64],
        data_type: u64,
        data: &[u8],
    ) -> Result<Message<'static>, Int8Error> {
        let mut t = Message::default();
        if !dims.is_empty() {
            t.push_packed(DIMS, dims);
        }
        t.push_varint(DATA_TYPE, data_type);
        t.push_str(NAME, name);
        if data.len() < EXTERNAL_MIN_BYTES {
            t.push_bytes(RAW_DATA, data.to_vec());
        } else {
            self.point_at(&mut t, data)?;
        }
        Ok(t)
    }

    /// An existing external initializer, its bytes copied here and its entries rewritten.
    pub fn copy<'a>(
        &mut self,
        tensor: &Tensor<'a>,
        model_dir: &Path,
        element_size: usize,
    ) -> Result<Message<'a>, Int8Error> {
        let data = tensor.raw_bytes(model_dir, element_size)?;
        let mut t = tensor.message.clone();
        t.remove(EXTERNAL_DATA);
        t.remove(DATA_LOCATION);
        self.point_at(&mut t, &data)?;
        Ok(t)
    }

    fn point_at(&mut self, t: &mut Message<'_>, data: &[u8]) -> Result<(), Int8Error> {
        let pad = (ALIGN - self.offset % ALIGN) % ALIGN;
        let io = |e| Int8Error::io(&self.path, e);
        self.out.write_all(&vec![0u8; pad as usize]).map_err(io)?;
        let offset = self.offset + pad;
        self.out.write_all(data).map_err(io)?;
        self.offset = offset + data.len() as u64;
        for (key, value) in [
            ("location", self.name.clone()),
            ("offset", offset.to_string()),
            ("length", data.len().to_string()),
        ] {
            let mut entry = Message::default();
            entry.push_str(KEY, key);
            entry.push_str(VALUE, &value);
            t.push_message(EXTERNAL_DATA, &entry);
        }
        t.push_varint(DATA_LOCATION, LOCATION_EXTERNAL);
        Ok(())
    }

    pub fn finish(mut self) -> Result<(), Int8Error> {
        self.out.flush().map_err(|e| Int8Error::io(&self.path, e))?;
        if self.offset == 0 {
            // Every tensor stayed inline: no data file.
            return std::fs::remove_file(&self.path).map_err(|e| Int8Error::io(&self.path, e));
        }
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| Int8Error::io(&self.path, e))
    }
}

/// Bytes per element of the types an initializer Easel copies may have, by `DataType`.
pub fn element_size(data_type: u64) -> Option<usize> {
    Some(match data_type {
        2 | 3 | 9 => 1,       // uint8, int8, bool
        4 | 5 | 10 | 16 => 2, // uint16, int16, float16, bfloat16
        1 | 6 | 12 => 4,      // float, int32, uint32
        7 | 11 | 13 => 8,     // int64, double, uint64
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_locations_stay_inside_the_model_folder() {
        let dir = Path::new("/models/unet");
        assert_eq!(
            inside(dir, "model.onnx_data"),
            Some(dir.join("model.onnx_data"))
        );
        assert_eq!(inside(dir, "./w/x.bin"), Some(dir.join("./w/x.bin")));
        assert_eq!(inside(dir, "../vae/model.onnx_data"), None);
        assert_eq!(inside(dir, "/etc/passwd"), None);
    }

    #[test]
    fn tensors_round_trip_inline_and_external() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = WeightsFile::create(dir.path(), "w.data").unwrap();
        let small: Vec<u8> = [1.0f32, -2.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        let big: Vec<u8> = (0..600).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let a = file.tensor("a", &[2], FLOAT, &small).unwrap();
        let b = file.tensor("b", &[20, 30], FLOAT, &big).unwrap();
        file.finish().unwrap();
        let (a, b) = (a.to_bytes(), b.to_bytes());
        let a = Tensor::parse(&a).unwrap();
        let b = Tensor::parse(&b).unwrap();
        assert!(!a.is_external() && b.is_external());
        assert_eq!(a.floats(dir.path()).unwrap(), [1.0, -2.0]);
        let floats = b.floats(dir.path()).unwrap();
        assert_eq!(floats.len(), 600);
        assert_eq!(floats[599], 599.0);
        assert_eq!(b.dims().unwrap(), [20, 30]);
    }
}
