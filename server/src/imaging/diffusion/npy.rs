//! NumPy `.npy` files (format 1.0/2.0/3.0), float32 or float64, C order: how initial latents
//! come in (`--latents`) and how reference outputs are stored for tests.

use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub fn read(path: &Path) -> Result<NpyArray, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn parse(bytes: &[u8]) -> Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = std::str::from_utf8(
        bytes
            .get(start..start + header_len)
            .ok_or("truncated header")?,
    )
    .map_err(|_| "header is not text")?;
    let descr = field(header, "descr").ok_or("header has no descr")?;
    if field(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(
            "Fortran-ordered arrays are not supported; save with np.ascontiguousarray".into(),
        );
    }
    let shape_text = field(header, "shape").ok_or("header has no shape")?;
    let inner = shape_text
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("");
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape {shape_text}"))
        })
        .collect::<Result<_, _>>()?;
    let count: usize = shape.iter().product();
    let body = &bytes[start + header_len..];
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let data: Vec<f32> = match descr {
        "<f4" => {
            let body = body
                .get(..count * 4)
                .ok_or("file shorter than its shape says")?;
            body.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        }
        "<f8" => {
            let body = body
                .get(..count * 8)
                .ok_or("file shorter than its shape says")?;
            body.chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect()
        }
        other => return Err(format!("dtype {other} is not supported (use float32)")),
    };
    Ok(NpyArray { shape, data })
}

/// Writes float32, version 1.0.
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> std::io::Result<()> {
    let shape_text = match shape {
        [one] => format!("({one},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so the data starts on a 64-byte boundary, newline-terminated, as NumPy does.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, out)
}

/// The value after `'key':` in the header dict, up to the next comma or `}` that is outside
/// quotes and brackets (`'<f4'`, `False`, `(1, 4, 8, 8)`).
fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))?;
    let rest = header[at + key.len() + 2..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let (mut quote, mut depth) = (None, 0usize);
    for (i, c) in rest.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[') => depth += 1,
            (None, ')' | ']') => depth = depth.saturating_sub(1),
            (None, ',' | '}') if depth == 0 => return Some(rest[..i].trim_end()),
            _ => {}
        }
    }
    Some(rest.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_float32() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write(&path, &[1, 2, 3, 4], &data).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.shape, vec![1, 2, 3, 4]);
        assert_eq!(back.data, data);
    }

    #[test]
    fn reads_files_numpy_wrote() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/assets/fixtures/reference/latents_1x4x8x8.npy"
        );
        let array = read(std::path::Path::new(path)).unwrap();
        assert_eq!(array.shape, vec![1, 4, 8, 8]);
        assert_eq!(array.data.len(), 256);
        assert!(array.data.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn rejects_other_files_clearly() {
        assert!(parse(b"hello world, not numpy")
            .unwrap_err()
            .contains("magic"));
    }
}
