//! Minimal NumPy `.npy` (format 1.0) reading and writing of little-endian f32 arrays, so
//! tensors can be exchanged with Python reference pipelines (`numpy.load` / `numpy.save`).

use std::path::Path;

use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Encodes a C-order f32 array of `shape` as `.npy` bytes.
pub fn encode_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "shape must match the data"
    );
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Magic(6) + version(2) + header length(2) + header + '\n' is a multiple of 64.
    while !(MAGIC.len() + 4 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    data.iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    out
}

/// Writes a C-order f32 array to `path`.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    std::fs::write(path, encode_f32(shape, data)).map_err(|cause| Error::Write {
        path: path.to_path_buf(),
        cause,
    })
}

/// Reads a C-order little-endian f32 `.npy` file: (shape, values).
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes =
        crate::config::read_limited(path, crate::config::limits::DATA_FILE_BYTES, "a .npy file")
            .map_err(|e| Error::io(path, e))?;
    let bad = |message: &str| Error::Config {
        path: path.to_path_buf(),
        message: format!("not a supported .npy file: {message}"),
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("missing the NUMPY magic"));
    }
    let (header_len, offset) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(bad("unknown format version")),
    };
    let header = bytes
        .get(offset..offset + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header"))?;
    if !header.contains("'descr': '<f4'") {
        return Err(bad("dtype is not little-endian float32 ('<f4')"));
    }
    if header.contains("'fortran_order': True") {
        return Err(bad("Fortran order is not supported"));
    }
    let shape_txt = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let shape: Vec<usize> = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad("unreadable shape"))?;
    let body = &bytes[offset + header_len..];
    let count: usize = shape.iter().product();
    if body.len() != count * 4 {
        return Err(bad("data length does not match the shape"));
    }
    Ok((
        shape,
        body.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("npy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.npy");
        let data: Vec<f32> = (0..24).map(|v| v as f32 * 0.5).collect();
        write_f32(&path, &[2, 3, 4], &data).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!((bytes.len() - data.len() * 4) % 64, 0);
        assert_eq!(read_f32(&path).unwrap(), (vec![2, 3, 4], data));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
