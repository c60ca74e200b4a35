//! A dense row-major `f32` matrix on the host — item (or user) vectors, row `i` = id `i` — with
//! `.npy` and `.safetensors` import/export, so vectors computed elsewhere (sentence-T5, an LLM)
//! can replace ours and ours can leave.

use crate::TextError;
use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// Name of the tensor written to and preferred when reading `.safetensors` files.
pub const TENSOR_NAME: &str = "embeddings";

#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    /// Row-major, `rows * cols` values.
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix data must hold rows × cols values");
        Matrix { rows, cols, data }
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    pub fn row_norms(&self) -> Vec<f32> {
        (0..self.rows)
            .map(|i| self.row(i).iter().map(|v| v * v).sum::<f32>().sqrt())
            .collect()
    }

    /// Cosine similarity of rows `a` and `b` (0 when either is all zeros).
    pub fn cosine(&self, a: usize, b: usize) -> f32 {
        let (x, y) = (self.row(a), self.row(b));
        let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
        let n = x.iter().map(|v| v * v).sum::<f32>().sqrt() * y.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n == 0.0 {
            0.0
        } else {
            dot / n
        }
    }

    /// The `k` rows most cosine-similar to row `i` (excluding `i`), best first.
    pub fn nearest(&self, i: usize, k: usize) -> Vec<(usize, f32)> {
        let mut sims: Vec<(usize, f32)> = (0..self.rows)
            .filter(|&j| j != i)
            .map(|j| (j, self.cosine(i, j)))
            .collect();
        sims.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        sims.truncate(k);
        sims
    }

    /// Loads `.npy` (2-D, `<f4` or `<f8`, C order) or `.safetensors` (the tensor named
    /// [`TENSOR_NAME`], or the only 2-D tensor), chosen by extension.
    pub fn load(path: &Path) -> Result<Self, TextError> {
        let bytes = std::fs::read(path).map_err(|e| TextError::File(format!("{}: {e}", path.display())))?;
        let fail = |m: String| format!("{}: {m}", path.display());
        // The parsers' messages gain the file name.
        let named = |e: TextError| TextError::File(fail(e.to_string()));
        let m = match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => parse_npy(&bytes).map_err(named)?,
            Some("safetensors") => parse_safetensors(&bytes).map_err(named)?,
            _ => {
                return Err(TextError::File(fail(
                    "unknown format: expected a .npy or .safetensors file".into(),
                )))
            }
        };
        m.check_values().map_err(named)?;
        Ok(m)
    }

    /// Vectors are used as they are: a matrix without columns, or with a NaN / infinite value
    /// (or an f64 beyond f32's range, which became infinite), is refused with its row and column.
    pub fn check_values(&self) -> Result<(), TextError> {
        if self.cols == 0 && self.rows > 0 {
            return Err(TextError::File("the matrix has no columns".into()));
        }
        if let Some(at) = self.data.iter().position(|v| !v.is_finite()) {
            return Err(TextError::File(format!(
                "row {}, column {}: {} is not a finite f32 (NaN, infinite, or beyond f32's range)",
                at / self.cols,
                at % self.cols,
                self.data[at]
            )));
        }
        Ok(())
    }

    /// [`Matrix::load`], then checks the shape against what the caller needs: `rows` ids, and
    /// `cols` when given.
    pub fn load_checked(path: &Path, rows: usize, cols: Option<usize>) -> Result<Self, TextError> {
        let m = Self::load(path)?;
        if m.rows != rows {
            return Err(TextError::File(format!(
                "{}: {} rows, but the dataset has {rows} ids (row i must be id i)",
                path.display(),
                m.rows
            )));
        }
        if let Some(c) = cols.filter(|&c| c != m.cols) {
            return Err(TextError::File(format!(
                "{}: dimension {}, expected {c}",
                path.display(),
                m.cols
            )));
        }
        Ok(m)
    }

    /// Writes `.npy` or `.safetensors` (by extension) atomically.
    pub fn save(&self, path: &Path) -> Result<(), TextError> {
        let bytes = match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => self.npy_bytes(),
            Some("safetensors") => {
                let raw: Vec<u8> = self.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                let view = TensorView::new(Dtype::F32, vec![self.rows, self.cols], &raw)
                    .map_err(|e| TextError::File(e.to_string()))?;
                let tensors: HashMap<String, TensorView> = [(TENSOR_NAME.to_string(), view)].into();
                safetensors::serialize(tensors, None)
                    .map_err(|e| TextError::File(format!("{}: {e}", path.display())))?
            }
            _ => {
                return Err(TextError::File(format!(
                    "{}: expected a .npy or .safetensors file name",
                    path.display()
                )))
            }
        };
        genrec_data::assets::write_atomic(path, &bytes).map_err(|e| TextError::File(e.to_string()))
    }

    fn npy_bytes(&self) -> Vec<u8> {
        let mut header = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
            self.rows, self.cols
        );
        // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of
        // 64 and ended by a newline, as the format asks.
        let total = 10 + header.len() + 1;
        header.push_str(&" ".repeat(total.next_multiple_of(64) - total));
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(self.data.iter().flat_map(|v| v.to_le_bytes()));
        out
    }
}

fn parse_npy(bytes: &[u8]) -> Result<Matrix, TextError> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(TextError::File("not a .npy file (bad magic)".into()));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(TextError::File(format!("unsupported .npy version {v}"))),
    };
    let header = std::str::from_utf8(
        bytes
            .get(start..start + header_len)
            .ok_or(TextError::File("truncated .npy header".into()))?,
    )
    .map_err(|_| TextError::File("the .npy header is not text".into()))?;
    let field = |name: &str| -> Option<&str> {
        let at = header.find(&format!("'{name}'"))? + name.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr").ok_or(TextError::File("the .npy header has no descr".into()))?;
    let width = if descr.starts_with("'<f4'") {
        4
    } else if descr.starts_with("'<f8'") {
        8
    } else {
        return Err(TextError::File(format!(
            "dtype {} is not supported (little-endian float32 or float64 only)",
            descr.split(',').next().unwrap_or(descr)
        )));
    };
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(TextError::File(
            "Fortran-ordered arrays are not supported: save with np.ascontiguousarray".into(),
        ));
    }
    let shape = field("shape").ok_or(TextError::File("the .npy header has no shape".into()))?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split_once(')'))
        .map(|(inner, _)| inner)
        .ok_or(TextError::File("bad shape in the .npy header".into()))?;
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| TextError::File(format!("bad shape ({inner})")))
        })
        .collect::<Result<_, _>>()?;
    let [rows, cols] = dims[..] else {
        return Err(TextError::File(format!("expected a 2-D array, found shape ({inner})")));
    };
    let body = &bytes[start + header_len..];
    // Checked: a header may claim any shape; the file's own length bounds what is allocated.
    let needed = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(width))
        .ok_or_else(|| TextError::File(format!("shape ({rows}, {cols}) is too large")))?;
    if body.len() != needed {
        return Err(TextError::File(format!(
            "shape ({rows}, {cols}) needs {} bytes of data, found {}",
            needed,
            body.len()
        )));
    }
    let data = if width == 4 {
        body.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    } else {
        body.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect()
    };
    Ok(Matrix::new(rows, cols, data))
}

fn parse_safetensors(bytes: &[u8]) -> Result<Matrix, TextError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| TextError::File(format!("not a safetensors file: {e}")))?;
    let names = st.names();
    let name = if names.contains(&TENSOR_NAME) {
        TENSOR_NAME.to_string()
    } else {
        let two_d: Vec<&str> = names
            .iter()
            .filter(|n| st.tensor(n).is_ok_and(|t| t.shape().len() == 2))
            .copied()
            .collect();
        match two_d[..] {
            [one] => one.to_string(),
            _ => {
                return Err(TextError::File(format!(
                    "no tensor named `{TENSOR_NAME}` and {} 2-D tensors ({}): name the one to use `{TENSOR_NAME}`",
                    two_d.len(),
                    two_d.join(", ")
                )))
            }
        }
    };
    let t = st.tensor(&name).map_err(|e| TextError::File(e.to_string()))?;
    let [rows, cols] = t.shape()[..] else {
        return Err(TextError::File(format!(
            "tensor `{name}` has shape {:?}, expected 2-D",
            t.shape()
        )));
    };
    let data = match t.dtype() {
        Dtype::F32 => t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::F64 => t
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        other => {
            return Err(TextError::File(format!(
                "tensor `{name}` has dtype {other:?}; F32 or F64 expected"
            )))
        }
    };
    Ok(Matrix::new(rows, cols, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_and_safetensors_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let m = Matrix::new(3, 2, vec![1.0, 0.0, 0.5, -2.0, 0.0, 3.25]);
        for name in ["m.npy", "m.safetensors"] {
            let p = dir.path().join(name);
            m.save(&p).unwrap();
            assert_eq!(Matrix::load(&p).unwrap(), m);
        }
        // The .npy header is what numpy writes: 64-byte aligned, newline-terminated.
        let bytes = std::fs::read(dir.path().join("m.npy")).unwrap();
        let header_end = bytes.len() - 6 * 4;
        assert_eq!(header_end % 64, 0);
        assert_eq!(bytes[header_end - 1], b'\n');
        let err = Matrix::load_checked(&dir.path().join("m.npy"), 4, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("3 rows, but the dataset has 4 ids"), "{err}");
        let err = Matrix::load_checked(&dir.path().join("m.npy"), 3, Some(384))
            .unwrap_err()
            .to_string();
        assert!(err.contains("dimension 2, expected 384"), "{err}");
    }

    /// A version-1 .npy file as numpy writes it.
    fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        let total = 10 + header.len() + 1;
        header.push_str(&" ".repeat(total.next_multiple_of(64) - total));
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(body);
        bytes
    }

    #[test]
    fn reads_float64_npy_and_rejects_others() {
        let body: Vec<u8> = [1.5f64, -4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            parse_npy(&npy("<f8", "(2, 1)", &body)).unwrap(),
            Matrix::new(2, 1, vec![1.5, -4.0])
        );
        assert!(parse_npy(&npy("<i8", "(2, 1)", &body))
            .unwrap_err()
            .to_string()
            .contains("not supported"));
        assert!(parse_npy(&npy("<f8", "(2,)", &body))
            .unwrap_err()
            .to_string()
            .contains("expected a 2-D array"));
        assert!(parse_npy(&npy("<f8", "(2, 1)", &body[..15]))
            .unwrap_err()
            .to_string()
            .contains("needs 16 bytes"));
        assert!(parse_npy(b"hello world").unwrap_err().to_string().contains("bad magic"));
    }

    #[test]
    fn nearest_neighbours_by_cosine() {
        let m = Matrix::new(4, 2, vec![1.0, 0.0, 0.9, 0.1, 0.0, 1.0, -1.0, 0.0]);
        let nn = m.nearest(0, 2);
        assert_eq!(nn[0].0, 1);
        assert_eq!(nn[1].0, 2);
        assert!((m.cosine(0, 3) + 1.0).abs() < 1e-6);
    }

    /// Values and shapes a file may claim but not be: named errors, no panic, no allocation.
    #[test]
    fn bad_values_and_impossible_shapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nan.npy");
        Matrix::new(2, 3, vec![0.0, 1.0, 2.0, 3.0, f32::NAN, 5.0])
            .save(&path)
            .unwrap();
        let err = Matrix::load(&path).unwrap_err().to_string();
        assert!(err.contains("nan.npy") && err.contains("row 1, column 1"), "{err}");
        let path = dir.path().join("inf.safetensors");
        Matrix::new(1, 2, vec![f32::INFINITY, 0.0]).save(&path).unwrap();
        assert!(Matrix::load(&path).unwrap_err().to_string().contains("row 0, column 0"));
        // A header whose shape overflows the byte count.
        let huge = npy("<f4", &format!("({}, {})", usize::MAX / 2, 3), &[0u8; 8]);
        let err = parse_npy(&huge).unwrap_err().to_string();
        assert!(err.contains("too large"), "{err}");
    }
}
