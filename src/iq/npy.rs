//! The NumPy `.npy` format (versions 1.0, 2.0 and 3.0): header parsing, and streaming readers and
//! writers for the element types specwatch uses.
//!
//! Only little-endian data is accepted (`<c8`, `<c16`, `<f4`, `<f8`, `<i8`, `<i4`, `<i2`); a file
//! in another byte order or of another type is refused with an error that names the file and the
//! dtype it found. Readers seek to the elements they need, so a multi-gigabyte capture is never
//! loaded whole.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::C32;

/// Errors from reading or writing `.npy` files; every one names the file.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a .npy file: {what}")]
    Format { path: PathBuf, what: String },
    #[error("{path}: dtype is '{found}' but {expected} was expected")]
    Dtype {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{path}: shape is {found:?} but {expected} was expected")]
    Shape {
        path: PathBuf,
        found: Vec<usize>,
        expected: String,
    },
    #[error(
        "{path}: file is truncated: the header declares shape {shape:?} ({expected_bytes} data bytes) but only {actual_bytes} data bytes follow it"
    )]
    Truncated {
        path: PathBuf,
        shape: Vec<usize>,
        expected_bytes: u64,
        actual_bytes: u64,
    },
    #[error("{path}: wrote {written} elements but the header declared {declared}")]
    Count {
        path: PathBuf,
        written: u64,
        declared: u64,
    },
}

/// Element types specwatch reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// `<c8`: complex64 (two little-endian f32).
    Complex64,
    /// `<c16`: complex128 (two little-endian f64).
    Complex128,
    /// `<f4`
    Float32,
    /// `<f8`
    Float64,
    /// `<i8`
    Int64,
    /// `<i4`
    Int32,
    /// `<i2`
    Int16,
}

impl Dtype {
    /// The dtype string as NumPy writes it in a header.
    pub fn descr(self) -> &'static str {
        match self {
            Dtype::Complex64 => "<c8",
            Dtype::Complex128 => "<c16",
            Dtype::Float32 => "<f4",
            Dtype::Float64 => "<f8",
            Dtype::Int64 => "<i8",
            Dtype::Int32 => "<i4",
            Dtype::Int16 => "<i2",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::Complex64 | Dtype::Float64 | Dtype::Int64 => 8,
            Dtype::Complex128 => 16,
            Dtype::Float32 | Dtype::Int32 => 4,
            Dtype::Int16 => 2,
        }
    }

    fn parse(descr: &str) -> Option<Dtype> {
        // '|' (not applicable) never occurs for multi-byte types; '=' means native, which is
        // little-endian on every platform specwatch runs on.
        let d = descr.trim_start_matches(['<', '=']);
        if descr.starts_with('>') {
            return None;
        }
        Some(match d {
            "c8" => Dtype::Complex64,
            "c16" => Dtype::Complex128,
            "f4" => Dtype::Float32,
            "f8" => Dtype::Float64,
            "i8" => Dtype::Int64,
            "i4" => Dtype::Int32,
            "i2" => Dtype::Int16,
            _ => return None,
        })
    }
}

/// A parsed `.npy` header.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyHeader {
    /// The dtype string exactly as written in the file.
    pub descr: String,
    /// The parsed dtype, when it is one specwatch understands.
    pub dtype: Option<Dtype>,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Byte offset of the first data element.
    pub data_offset: u64,
}

impl NpyHeader {
    /// Number of elements the shape declares.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

const MAGIC: &[u8] = b"\x93NUMPY";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NpyError + '_ {
    move |source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn format_err(path: &Path, what: impl Into<String>) -> NpyError {
    NpyError::Format {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// Reads and parses the header of `path`, and checks that the file holds as many data bytes as
/// the header declares (a truncated file is refused here, not half-way through a read).
pub fn read_header(path: &Path) -> Result<NpyHeader, NpyError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let header = parse_header(path, &mut file)?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    if let Some(dtype) = header.dtype {
        let expected = header.len() as u64 * dtype.size() as u64;
        let actual = file_len.saturating_sub(header.data_offset);
        if actual < expected {
            return Err(NpyError::Truncated {
                path: path.to_path_buf(),
                shape: header.shape.clone(),
                expected_bytes: expected,
                actual_bytes: actual,
            });
        }
    }
    Ok(header)
}

fn parse_header(path: &Path, reader: &mut impl Read) -> Result<NpyHeader, NpyError> {
    let mut preamble = [0u8; 8];
    reader
        .read_exact(&mut preamble)
        .map_err(|_| format_err(path, "file is shorter than the 8-byte .npy preamble"))?;
    if &preamble[..6] != MAGIC {
        return Err(format_err(path, "missing the \\x93NUMPY magic bytes"));
    }
    let major = preamble[6];
    let (header_len, prefix_len) = match major {
        1 => {
            let mut b = [0u8; 2];
            reader
                .read_exact(&mut b)
                .map_err(|_| format_err(path, "header length is cut off"))?;
            (u16::from_le_bytes(b) as usize, 10)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            reader
                .read_exact(&mut b)
                .map_err(|_| format_err(path, "header length is cut off"))?;
            (u32::from_le_bytes(b) as usize, 12)
        }
        v => return Err(format_err(path, format!("unsupported format version {v}"))),
    };
    if header_len > 1 << 20 {
        return Err(format_err(
            path,
            format!("header length {header_len} is implausibly large"),
        ));
    }
    let mut text = vec![0u8; header_len];
    reader
        .read_exact(&mut text)
        .map_err(|_| format_err(path, "header is cut off"))?;
    let text = String::from_utf8(text).map_err(|_| format_err(path, "header is not text"))?;
    let (descr, fortran_order, shape) =
        parse_header_dict(&text).map_err(|what| format_err(path, what))?;
    Ok(NpyHeader {
        dtype: Dtype::parse(&descr),
        descr,
        fortran_order,
        shape,
        data_offset: (prefix_len + header_len) as u64,
    })
}

/// Parses the Python dict literal of a header, e.g.
/// `{'descr': '<c8', 'fortran_order': False, 'shape': (4, 1000), }`.
fn parse_header_dict(text: &str) -> Result<(String, bool, Vec<usize>), String> {
    let value_after = |key: &str| -> Result<&str, String> {
        let k = format!("'{key}'");
        let at = text
            .find(&k)
            .ok_or_else(|| format!("header has no '{key}' field"))?;
        let rest = &text[at + k.len()..];
        let colon = rest
            .find(':')
            .ok_or_else(|| format!("header field '{key}' has no value"))?;
        Ok(rest[colon + 1..].trim_start())
    };
    let descr_v = value_after("descr")?;
    let quote = descr_v
        .chars()
        .next()
        .filter(|c| *c == '\'' || *c == '"')
        .ok_or("header field 'descr' is not a plain dtype string (structured dtypes are not supported)")?;
    let end = descr_v[1..]
        .find(quote)
        .ok_or("header field 'descr' is not terminated")?;
    let descr = descr_v[1..1 + end].to_string();

    let fortran_v = value_after("fortran_order")?;
    let fortran_order = if fortran_v.starts_with("True") {
        true
    } else if fortran_v.starts_with("False") {
        false
    } else {
        return Err("header field 'fortran_order' is neither True nor False".into());
    };

    let shape_v = value_after("shape")?;
    if !shape_v.starts_with('(') {
        return Err("header field 'shape' is not a tuple".into());
    }
    let close = shape_v
        .find(')')
        .ok_or("header field 'shape' is not closed")?;
    let shape = shape_v[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("header field 'shape' has a non-integer dimension '{s}'"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((descr, fortran_order, shape))
}

/// Encodes a version-1.0 (or 2.0 when needed) header for a C-ordered array.
pub fn encode_header(dtype: Dtype, shape: &[usize]) -> Vec<u8> {
    let shape_text = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        dtype.descr(),
        shape_text
    );
    // Pad with spaces so that the data starts on a 64-byte boundary, ending in '\n'.
    let (version, prefix) = if dict.len() + 11 < 65536 {
        (1u8, 10usize)
    } else {
        (2u8, 12usize)
    };
    let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
    while prefix + dict.len() + 1 < total {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.push(version);
    out.push(0);
    if version == 1 {
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Element types that can be streamed to and from `.npy` files.
pub trait NpyElement: Copy + Default + Send + Sync + 'static {
    /// The dtype this element is written as.
    const DTYPE: Dtype;
    /// Decodes one element stored as `dtype` from `bytes` (`dtype.size()` bytes), or `None`
    /// when `dtype` cannot be converted to this element type without loss of meaning.
    fn decode(dtype: Dtype, bytes: &[u8]) -> Option<Self>;
    /// Appends this element's little-endian bytes.
    fn encode(&self, out: &mut Vec<u8>);
    /// Which stored dtypes this element can be read from, for error messages.
    fn accepts() -> &'static str;
}

fn f32_at(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn f64_at(b: &[u8], i: usize) -> f64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    f64::from_le_bytes(a)
}

impl NpyElement for C32 {
    const DTYPE: Dtype = Dtype::Complex64;
    fn decode(dtype: Dtype, b: &[u8]) -> Option<Self> {
        match dtype {
            Dtype::Complex64 => Some(C32::new(f32_at(b, 0), f32_at(b, 4))),
            Dtype::Complex128 => Some(C32::new(f64_at(b, 0) as f32, f64_at(b, 8) as f32)),
            _ => None,
        }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.re.to_le_bytes());
        out.extend_from_slice(&self.im.to_le_bytes());
    }
    fn accepts() -> &'static str {
        "complex64 ('<c8') or complex128 ('<c16')"
    }
}

impl NpyElement for f32 {
    const DTYPE: Dtype = Dtype::Float32;
    fn decode(dtype: Dtype, b: &[u8]) -> Option<Self> {
        match dtype {
            Dtype::Float32 => Some(f32_at(b, 0)),
            Dtype::Float64 => Some(f64_at(b, 0) as f32),
            _ => None,
        }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn accepts() -> &'static str {
        "float32 ('<f4') or float64 ('<f8')"
    }
}

impl NpyElement for i64 {
    const DTYPE: Dtype = Dtype::Int64;
    fn decode(dtype: Dtype, b: &[u8]) -> Option<Self> {
        match dtype {
            Dtype::Int64 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[..8]);
                Some(i64::from_le_bytes(a))
            }
            Dtype::Int32 => Some(i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64),
            Dtype::Int16 => Some(i16::from_le_bytes([b[0], b[1]]) as i64),
            _ => None,
        }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn accepts() -> &'static str {
        "int64 ('<i8'), int32 ('<i4') or int16 ('<i2')"
    }
}

/// A whole array read into memory, in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

/// Reads a whole `.npy` file of element type `T` (converting Fortran order to C order).
pub fn read_array<T: NpyElement>(path: &Path) -> Result<NpyArray<T>, NpyError> {
    let mut reader = NpyReader::<T>::open(path)?;
    let shape = reader.header.shape.clone();
    let n = reader.header.len();
    let flat = reader.read_elements(0, n)?;
    let data = if reader.header.fortran_order && shape.len() > 1 {
        fortran_to_c(&flat, &shape)
    } else {
        flat
    };
    Ok(NpyArray { shape, data })
}

fn fortran_to_c<T: Copy + Default>(flat: &[T], shape: &[usize]) -> Vec<T> {
    let n = flat.len();
    let mut out = vec![T::default(); n];
    // Strides of the Fortran layout.
    let mut f_strides = vec![1usize; shape.len()];
    for d in 1..shape.len() {
        f_strides[d] = f_strides[d - 1] * shape[d - 1];
    }
    let mut index = vec![0usize; shape.len()];
    for slot in out.iter_mut() {
        let f: usize = index.iter().zip(&f_strides).map(|(i, s)| i * s).sum();
        *slot = flat[f];
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

/// Reads elements of a `.npy` file by flat index (in the file's storage order), seeking to them.
pub struct NpyReader<T> {
    path: PathBuf,
    file: BufReader<File>,
    pub header: NpyHeader,
    dtype: Dtype,
    _marker: std::marker::PhantomData<T>,
}

impl<T: NpyElement> NpyReader<T> {
    /// Opens `path`, checks the header, the dtype against `T` and the data length.
    pub fn open(path: &Path) -> Result<Self, NpyError> {
        let header = read_header(path)?;
        let dtype = header
            .dtype
            .filter(|d| T::decode(*d, &[0u8; 16]).is_some())
            .ok_or_else(|| NpyError::Dtype {
                path: path.to_path_buf(),
                found: header.descr.clone(),
                expected: T::accepts().to_string(),
            })?;
        let file = File::open(path).map_err(io_err(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: BufReader::with_capacity(1 << 20, file),
            header,
            dtype,
            _marker: std::marker::PhantomData,
        })
    }

    /// The file this reader reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads `count` elements starting at flat storage index `start`.
    pub fn read_elements(&mut self, start: usize, count: usize) -> Result<Vec<T>, NpyError> {
        let mut out = Vec::with_capacity(count);
        self.read_into(start, count, &mut out)?;
        Ok(out)
    }

    /// Appends `count` elements starting at flat storage index `start` to `out`.
    pub fn read_into(
        &mut self,
        start: usize,
        count: usize,
        out: &mut Vec<T>,
    ) -> Result<(), NpyError> {
        let total = self.header.len();
        if start + count > total {
            return Err(format_err(
                &self.path,
                format!(
                    "read of elements {start}..{} past the end ({total} elements)",
                    start + count
                ),
            ));
        }
        let size = self.dtype.size();
        let offset = self.header.data_offset + (start * size) as u64;
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(io_err(&self.path))?;
        // A small read needs only a small buffer; large ones go through 64 Ki elements at a time.
        let mut buf = vec![0u8; count.min(1 << 16) * size];
        let mut left = count;
        while left > 0 {
            let n = left.min(1 << 16);
            let bytes = &mut buf[..n * size];
            self.file.read_exact(bytes).map_err(io_err(&self.path))?;
            out.extend(
                bytes
                    .chunks_exact(size)
                    .map(|c| T::decode(self.dtype, c).expect("dtype checked at open")),
            );
            left -= n;
        }
        Ok(())
    }
}

/// Writes a C-ordered `.npy` file element by element; the shape is declared up front and
/// [`NpyWriter::finish`] checks that exactly that many elements were written.
pub struct NpyWriter<T> {
    path: PathBuf,
    file: BufWriter<File>,
    declared: u64,
    written: u64,
    scratch: Vec<u8>,
    _marker: std::marker::PhantomData<T>,
}

impl<T: NpyElement> NpyWriter<T> {
    pub fn create(path: &Path, shape: &[usize]) -> Result<Self, NpyError> {
        let file = File::create(path).map_err(io_err(path))?;
        let mut file = BufWriter::with_capacity(1 << 20, file);
        file.write_all(&encode_header(T::DTYPE, shape))
            .map_err(io_err(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            declared: shape.iter().product::<usize>() as u64,
            written: 0,
            scratch: Vec::new(),
            _marker: std::marker::PhantomData,
        })
    }

    pub fn write(&mut self, elements: &[T]) -> Result<(), NpyError> {
        self.scratch.clear();
        self.scratch.reserve(elements.len() * T::DTYPE.size());
        for e in elements {
            e.encode(&mut self.scratch);
        }
        self.file
            .write_all(&self.scratch)
            .map_err(io_err(&self.path))?;
        self.written += elements.len() as u64;
        Ok(())
    }

    /// Flushes the file and checks the element count against the declared shape.
    pub fn finish(mut self) -> Result<(), NpyError> {
        if self.written != self.declared {
            return Err(NpyError::Count {
                path: self.path,
                written: self.written,
                declared: self.declared,
            });
        }
        self.file.flush().map_err(io_err(&self.path))?;
        self.file.get_ref().sync_all().map_err(io_err(&self.path))?;
        Ok(())
    }
}

/// Writes a whole C-ordered array in one call.
pub fn write_array<T: NpyElement>(
    path: &Path,
    shape: &[usize],
    data: &[T],
) -> Result<(), NpyError> {
    let mut w = NpyWriter::create(path, shape)?;
    w.write(data)?;
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let bytes = encode_header(Dtype::Complex64, &[3, 4, 128]);
        assert_eq!(bytes.len() % 64, 0);
        let h = parse_header(Path::new("x.npy"), &mut bytes.as_slice()).unwrap();
        assert_eq!(h.descr, "<c8");
        assert_eq!(h.shape, vec![3, 4, 128]);
        assert!(!h.fortran_order);
        assert_eq!(h.data_offset as usize, bytes.len());
    }

    #[test]
    fn one_dimensional_shape_has_trailing_comma() {
        let bytes = encode_header(Dtype::Int64, &[7]);
        let text = String::from_utf8_lossy(&bytes[10..]);
        assert!(text.contains("'shape': (7,)"), "{text}");
    }

    #[test]
    fn fortran_order_is_transposed_to_c() {
        // A (2, 3) array [[0,1,2],[3,4,5]] stored in Fortran order is 0,3,1,4,2,5.
        let f = [0i64, 3, 1, 4, 2, 5];
        assert_eq!(fortran_to_c(&f, &[2, 3]), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn big_endian_is_not_understood() {
        assert_eq!(Dtype::parse(">c8"), None);
        assert_eq!(Dtype::parse("<c16"), Some(Dtype::Complex128));
    }
}
