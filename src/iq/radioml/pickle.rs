//! A minimal Python pickle reader: enough of the pickle virtual machine to read RadioML 2016's
//! `{(modulation, snr): ndarray}` dictionaries, with no Python and no crate.
//!
//! Understood: protocols 0–5 opcodes for None/bools/ints/floats, byte and text strings (Python 2
//! `str` as `SHORT_BINSTRING`/`BINSTRING`, Python 3 `bytes`, `bytearray` and `str`), tuples,
//! lists, dicts, the memo (`PUT`/`BINPUT`/`MEMOIZE`/`GET`…), `FRAME`, `GLOBAL`/`STACK_GLOBAL`,
//! `REDUCE`, `BUILD` and `NEWOBJ`. Calls are *not* executed: the few callables RadioML pickles
//! use are recognised and modelled —
//! - `numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')` followed by `BUILD` with the state
//!   `(version, shape, dtype, is_fortran, raw_bytes)` (Python 2 cPickle and Python 3 protocols
//!   2–4; `numpy._core` spellings too);
//! - `numpy.core.numeric._frombuffer(buffer, dtype, shape, order)` (protocol 5, in-band buffers);
//! - `numpy.dtype(name, align, copy)` followed by `BUILD` with `(version, endian, …)`;
//! - `_codecs.encode(text, 'latin1')`, which is how Python 3 writes `bytes` at protocol 2.
//!
//! Any other call becomes an opaque object, reported by name if it turns up where an array is
//! expected. Out-of-band buffers (`NEXT_BUFFER`) are refused. Large byte strings are not read
//! into memory: they are recorded as (offset, length) in the file and read when needed, so a
//! 1.2 GB RadioML 2016.10b pickle is walked in a few megabytes.
//!
//! Containers are values: a memoized container that is changed after memoization and then
//! fetched from the memo is seen as it was when memoized. RadioML's pickles never do that.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Byte strings longer than this are left in the file and read on demand.
const INLINE_MAX: u64 = 1 << 16;

/// Bytes of a string: in memory, or a range of the pickle file.
#[derive(Debug, Clone, PartialEq)]
pub enum Blob {
    Inline(Vec<u8>),
    File { offset: u64, len: u64 },
}

impl Blob {
    pub fn len(&self) -> u64 {
        match self {
            Blob::Inline(v) => v.len() as u64,
            Blob::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, read from `file` when they were left there.
    pub fn read(&self, file: &mut File) -> std::io::Result<Vec<u8>> {
        match self {
            Blob::Inline(v) => Ok(v.clone()),
            Blob::File { offset, len } => {
                let mut out = vec![0u8; *len as usize];
                file.seek(SeekFrom::Start(*offset))?;
                file.read_exact(&mut out)?;
                Ok(out)
            }
        }
    }
}

/// A numpy dtype as pickled: its name (`f4`, `<f4`, …) and the byte order from its state.
#[derive(Debug, Clone, PartialEq)]
pub struct DtypeValue {
    pub name: String,
    pub endian: Option<String>,
}

impl DtypeValue {
    /// `<f4`-style description: the byte order (if any) and the name.
    pub fn describe(&self) -> String {
        match &self.endian {
            Some(e) if !self.name.starts_with(['<', '>', '=', '|']) => format!("{e}{}", self.name),
            _ => self.name.clone(),
        }
    }

    /// Whether this is a little-endian (or native, on the little-endian machines specwatch
    /// runs on) 32-bit float.
    pub fn is_f4_le(&self) -> bool {
        let name = self.name.trim_start_matches(['<', '=']);
        let name_ok = matches!(name, "f4" | "float32");
        let order_ok = !self.name.starts_with('>')
            && self
                .endian
                .as_deref()
                .is_none_or(|e| matches!(e, "<" | "=" | "|"));
        name_ok && order_ok
    }
}

/// A numpy array as pickled.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayValue {
    pub shape: Vec<usize>,
    pub dtype: Option<DtypeValue>,
    pub fortran: bool,
    pub data: Option<Rc<Blob>>,
}

/// A value of the pickle machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<Blob>),
    Tuple(Rc<Vec<Value>>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global {
        module: String,
        name: String,
    },
    Dtype(DtypeValue),
    Array(ArrayValue),
    /// The result of a call the reader does not model (named `module.name`).
    Opaque(String),
}

impl Value {
    /// A short description for error messages.
    pub fn kind(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "a bool".into(),
            Value::Int(_) => "an int".into(),
            Value::Float(_) => "a float".into(),
            Value::Str(_) => "a str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Tuple(t) => format!("a {}-tuple", t.len()),
            Value::List(_) => "a list".into(),
            Value::Dict(_) => "a dict".into(),
            Value::Global { module, name } => format!("the global {module}.{name}"),
            Value::Dtype(_) => "a numpy dtype".into(),
            Value::Array(_) => "a numpy array".into(),
            Value::Opaque(what) => format!("an object made by {what}"),
        }
    }

    /// Text of a `str`, or of a small (Python 2) byte string taken as Latin-1.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.to_string()),
            Value::Bytes(b) => match &**b {
                Blob::Inline(v) => Some(v.iter().map(|&c| char::from(c)).collect()),
                Blob::File { .. } => None,
            },
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }
}

/// Where and why a pickle could not be read.
#[derive(Debug)]
pub struct PickleError {
    pub offset: u64,
    pub problem: String,
}

type Result<T> = std::result::Result<T, PickleError>;

struct Machine {
    input: BufReader<File>,
    pos: u64,
    file_len: u64,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    /// Offset of the opcode being executed, for error messages.
    op_at: u64,
}

/// Reads the pickle in `path` and returns the object it describes.
pub fn load(path: &Path) -> std::result::Result<Value, (PathBuf, PickleError)> {
    let with_path = |e| (path.to_path_buf(), e);
    let file = File::open(path).map_err(|e| {
        with_path(PickleError {
            offset: 0,
            problem: format!("cannot open: {e}"),
        })
    })?;
    let file_len = file
        .metadata()
        .map_err(|e| {
            with_path(PickleError {
                offset: 0,
                problem: format!("cannot stat: {e}"),
            })
        })?
        .len();
    let mut m = Machine {
        input: BufReader::with_capacity(1 << 20, file),
        pos: 0,
        file_len,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        op_at: 0,
    };
    m.run().map_err(with_path)
}

impl Machine {
    fn fail<T>(&self, problem: impl Into<String>) -> Result<T> {
        Err(PickleError {
            offset: self.op_at,
            problem: problem.into(),
        })
    }

    fn bytes(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut b = vec![0u8; n];
        if self.input.read_exact(&mut b).is_err() {
            return self.fail(format!(
                "the stream ends inside an opcode's argument ({n} bytes wanted at byte {}, file has {}): the file is truncated",
                self.pos, self.file_len
            ));
        }
        self.pos += n as u64;
        Ok(b)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u64> {
        let b = self.bytes(2)?;
        Ok(u64::from(u16::from_le_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Result<u64> {
        let b = self.bytes(4)?;
        Ok(u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    }

    fn i32(&mut self) -> Result<i64> {
        let b = self.bytes(4)?;
        Ok(i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(u64::from_le_bytes(a))
    }

    /// A newline-terminated argument (text protocols), without the newline.
    fn line(&mut self) -> Result<String> {
        let mut out = Vec::new();
        loop {
            let c = self.u8()?;
            if c == b'\n' {
                break;
            }
            out.push(c);
            if out.len() > 1 << 16 {
                return self.fail("a text argument runs past 64 KiB without a newline");
            }
        }
        Ok(out.iter().map(|&c| char::from(c)).collect())
    }

    /// A byte string of `len` bytes: kept in memory when small, else left in the file.
    fn blob(&mut self, len: u64) -> Result<Rc<Blob>> {
        if len <= INLINE_MAX {
            return Ok(Rc::new(Blob::Inline(self.bytes(len as usize)?)));
        }
        let offset = self.pos;
        if offset + len > self.file_len {
            return self.fail(format!(
                "a {len}-byte string starts at byte {offset} but the file has only {} bytes: the file is truncated",
                self.file_len
            ));
        }
        let skip = i64::try_from(len).map_err(|_| PickleError {
            offset: self.op_at,
            problem: format!("a string length of {len} bytes is implausible"),
        })?;
        if let Err(e) = self.input.seek_relative(skip) {
            return self.fail(format!("cannot skip over a {len}-byte string: {e}"));
        }
        self.pos += len;
        Ok(Rc::new(Blob::File { offset, len }))
    }

    fn text(&mut self, len: u64) -> Result<Value> {
        if len > self.file_len {
            return self.fail(format!(
                "a {len}-byte string is longer than the whole file: the file is truncated or corrupt"
            ));
        }
        let b = self.bytes(len as usize)?;
        match String::from_utf8(b) {
            Ok(s) => Ok(Value::Str(s.into())),
            Err(_) => self.fail("a text string is not valid UTF-8"),
        }
    }

    fn pop(&mut self) -> Result<Value> {
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => self.fail("an opcode needs a value but the stack is empty"),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let Some(at) = self.marks.pop() else {
            return self.fail("an opcode needs a MARK but none is set");
        };
        if at > self.stack.len() {
            return self.fail("the stack is shorter than its MARK");
        }
        Ok(self.stack.split_off(at))
    }

    fn top(&mut self) -> Result<&mut Value> {
        if self.stack.is_empty() {
            return self.fail("an opcode needs a value but the stack is empty");
        }
        Ok(self.stack.last_mut().expect("checked non-empty"))
    }

    fn memo_get(&mut self, key: u64) -> Result<()> {
        match self.memo.get(&key) {
            Some(v) => {
                let v = v.clone();
                self.stack.push(v);
                Ok(())
            }
            None => self.fail(format!("memo entry {key} is fetched before it is stored")),
        }
    }

    fn memo_put(&mut self, key: u64) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return self.fail("SETITEMS has an odd number of keys and values");
        }
        let target = self.top()?;
        let Value::Dict(d) = target else {
            let kind = target.kind();
            return self.fail(format!("SETITEM(S) on {kind}, not a dict"));
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> Result<()> {
        let target = self.top()?;
        match target {
            Value::List(l) => {
                l.extend(items);
                Ok(())
            }
            other => {
                let kind = other.kind();
                self.fail(format!("APPEND(S) on {kind}, not a list"))
            }
        }
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            self.op_at = self.pos;
            let op = match self.bytes(1) {
                Ok(b) => b[0],
                Err(_) => {
                    return self
                        .fail("the stream ends before its STOP opcode: the file is truncated");
                }
            };
            match op {
                b'.' => return self.pop(),
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return self.fail(format!("pickle protocol {proto} is newer than 5"));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: only groups opcodes; nothing to do.
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'I' => {
                    let l = self.line()?;
                    let v = match l.as_str() {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        s => match s.parse::<i64>() {
                            Ok(i) => Value::Int(i),
                            Err(_) => {
                                return self.fail(format!("INT argument '{s}' is not an integer"));
                            }
                        },
                    };
                    self.stack.push(v);
                }
                b'L' => {
                    let l = self.line()?;
                    match l.trim_end_matches('L').parse::<i64>() {
                        Ok(i) => self.stack.push(Value::Int(i)),
                        Err(_) => {
                            return self.fail(format!("LONG argument '{l}' does not fit 64 bits"));
                        }
                    }
                }
                b'J' => {
                    let v = self.i32()?;
                    self.stack.push(Value::Int(v));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        u64::from(self.u8()?)
                    } else {
                        self.u32()?
                    };
                    if n > 8 {
                        return self.fail(format!("a {n}-byte integer does not fit 64 bits"));
                    }
                    let b = self.bytes(n as usize)?;
                    let mut a = if b.last().is_some_and(|&x| x & 0x80 != 0) {
                        [0xffu8; 8]
                    } else {
                        [0u8; 8]
                    };
                    a[..b.len()].copy_from_slice(&b);
                    self.stack.push(Value::Int(i64::from_le_bytes(a)));
                }
                b'F' => {
                    let l = self.line()?;
                    match l.parse::<f64>() {
                        Ok(f) => self.stack.push(Value::Float(f)),
                        Err(_) => {
                            return self.fail(format!("FLOAT argument '{l}' is not a number"));
                        }
                    }
                }
                b'G' => {
                    let b = self.bytes(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)));
                }
                b'S' => {
                    let l = self.line()?;
                    let inner = l
                        .strip_prefix('\'')
                        .and_then(|s| s.strip_suffix('\''))
                        .or_else(|| l.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
                    let Some(inner) = inner else {
                        return self.fail("STRING argument is not quoted");
                    };
                    let bytes = unescape_py_literal(inner);
                    self.stack.push(Value::Bytes(Rc::new(Blob::Inline(bytes))));
                }
                b'V' => {
                    let l = self.line()?;
                    self.stack.push(Value::Str(l.into()));
                }
                b'U' | b'C' => {
                    let n = u64::from(self.u8()?);
                    let b = self.blob(n)?;
                    self.stack.push(Value::Bytes(b));
                }
                b'T' | b'B' => {
                    let n = self.u32()?;
                    let b = self.blob(n)?;
                    self.stack.push(Value::Bytes(b));
                }
                0x8e | 0x96 => {
                    let n = self.u64()?;
                    let b = self.blob(n)?;
                    self.stack.push(Value::Bytes(b));
                }
                0x97 => {
                    return self.fail(
                        "NEXT_BUFFER: the pickle uses out-of-band buffers, which a file cannot carry; pickle it with buffers in-band",
                    );
                }
                0x98 | 0x99 => {
                    self.top()?; // READONLY_BUFFER / MUTABLE_BUFFER: no change for a reader.
                }
                0x8c => {
                    let n = u64::from(self.u8()?);
                    let v = self.text(n)?;
                    self.stack.push(v);
                }
                b'X' => {
                    let n = self.u32()?;
                    let v = self.text(n)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = self.u64()?;
                    let v = self.text(n)?;
                    self.stack.push(v);
                }
                b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return self.fail(format!("TUPLE{n} needs {n} values on the stack"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b']' => self.stack.push(Value::List(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items));
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Dict(Vec::new()));
                    self.set_items(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                0x8f => self.stack.push(Value::Opaque("set".into())),
                0x90 => {
                    self.pop_mark()?;
                }
                0x91 => {
                    self.pop_mark()?;
                    self.stack.push(Value::Opaque("frozenset".into()));
                }
                b'p' => {
                    let l = self.line()?;
                    match l.parse::<u64>() {
                        Ok(k) => self.memo_put(k)?,
                        Err(_) => return self.fail(format!("PUT argument '{l}' is not an index")),
                    }
                }
                b'q' => {
                    let k = u64::from(self.u8()?);
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'g' => {
                    let l = self.line()?;
                    match l.parse::<u64>() {
                        Ok(k) => self.memo_get(k)?,
                        Err(_) => return self.fail(format!("GET argument '{l}' is not an index")),
                    }
                }
                b'h' => {
                    let k = u64::from(self.u8()?);
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global { module, name });
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global {
                            module: m.to_string(),
                            name: n.to_string(),
                        }),
                        _ => return self.fail("STACK_GLOBAL needs two strings"),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.call(callable, args)?;
                    self.stack.push(v);
                }
                0x81 => {
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    self.stack.push(Value::Opaque(callable_name(&cls)));
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    self.stack.push(Value::Opaque(callable_name(&cls)));
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.pop()?;
                    let v = self.build(obj, state)?;
                    self.stack.push(v);
                }
                other => {
                    return self.fail(format!(
                        "opcode 0x{other:02x} is not one this reader understands (is this a pickle?)"
                    ));
                }
            }
        }
    }

    /// Models the calls RadioML pickles make (see the module documentation).
    fn call(&mut self, callable: Value, args: Value) -> Result<Value> {
        let Value::Global { module, name } = &callable else {
            return Ok(Value::Opaque(callable_name(&callable)));
        };
        let args: &[Value] = match &args {
            Value::Tuple(t) => t,
            _ => return self.fail(format!("REDUCE arguments are {}, not a tuple", args.kind())),
        };
        let numpy = module == "numpy" || module.starts_with("numpy.");
        match (numpy, name.as_str()) {
            (true, "_reconstruct") => Ok(Value::Array(ArrayValue {
                shape: Vec::new(),
                dtype: None,
                fortran: false,
                data: None,
            })),
            (true, "dtype") => match args.first().and_then(Value::as_text) {
                Some(name) => Ok(Value::Dtype(DtypeValue { name, endian: None })),
                None => self.fail("numpy.dtype is called without a type name"),
            },
            (true, "_frombuffer") => {
                let [buf, dtype, shape, order] = args else {
                    return self.fail(format!(
                        "numpy _frombuffer takes (buffer, dtype, shape, order) but got {} arguments",
                        args.len()
                    ));
                };
                let Value::Bytes(data) = buf else {
                    return self.fail(format!("numpy _frombuffer's buffer is {}", buf.kind()));
                };
                let Value::Dtype(dtype) = dtype else {
                    return self.fail(format!("numpy _frombuffer's dtype is {}", dtype.kind()));
                };
                let shape = self.shape(shape)?;
                let fortran = order.as_text().as_deref() == Some("F");
                Ok(Value::Array(ArrayValue {
                    shape,
                    dtype: Some(dtype.clone()),
                    fortran,
                    data: Some(data.clone()),
                }))
            }
            _ if module == "_codecs" && name == "encode" => match args {
                [Value::Str(s)] | [Value::Str(s), _] => {
                    let mut out = Vec::with_capacity(s.len());
                    for c in s.chars() {
                        match u8::try_from(u32::from(c)) {
                            Ok(b) => out.push(b),
                            Err(_) => {
                                return self.fail(
                                    "a _codecs.encode(…, 'latin1') string holds a character above U+00FF",
                                );
                            }
                        }
                    }
                    Ok(Value::Bytes(Rc::new(Blob::Inline(out))))
                }
                _ => self.fail("_codecs.encode is called without a string"),
            },
            _ => Ok(Value::Opaque(format!("{module}.{name}"))),
        }
    }

    fn shape(&self, v: &Value) -> Result<Vec<usize>> {
        let Value::Tuple(t) = v else {
            return self.fail(format!("an array shape is {}, not a tuple", v.kind()));
        };
        t.iter()
            .map(|d| match d.as_int().map(usize::try_from) {
                Some(Ok(n)) => Ok(n),
                _ => self.fail(format!("an array dimension is {}, not a size", d.kind())),
            })
            .collect()
    }

    fn build(&mut self, obj: Value, state: Value) -> Result<Value> {
        match obj {
            Value::Dtype(mut d) => {
                if let Value::Tuple(t) = &state {
                    d.endian = t.get(1).and_then(Value::as_text);
                }
                Ok(Value::Dtype(d))
            }
            Value::Array(_) => {
                let Value::Tuple(t) = &state else {
                    return self.fail(format!(
                        "an ndarray's state is {}, not a tuple",
                        state.kind()
                    ));
                };
                // (version, shape, dtype, is_fortran, raw) or, from old numpy, without version.
                let s: &[Value] = match t.len() {
                    5 => &t[1..],
                    4 => &t[..],
                    n => {
                        return self
                            .fail(format!("an ndarray's state has {n} items; expected 4 or 5"));
                    }
                };
                let shape = self.shape(&s[0])?;
                let Value::Dtype(dtype) = &s[1] else {
                    return self.fail(format!("an ndarray's dtype is {}", s[1].kind()));
                };
                let fortran = matches!(s[2], Value::Bool(true) | Value::Int(1));
                let data = match &s[3] {
                    Value::Bytes(b) => b.clone(),
                    Value::Str(text) => {
                        // Python 2 `unicode` data would be odd, but take it as Latin-1.
                        let bytes: Option<Vec<u8>> = text
                            .chars()
                            .map(|c| u8::try_from(u32::from(c)).ok())
                            .collect();
                        match bytes {
                            Some(b) => Rc::new(Blob::Inline(b)),
                            None => {
                                return self.fail("an ndarray's data is text that is not Latin-1");
                            }
                        }
                    }
                    Value::List(_) => {
                        return self.fail(
                            "an ndarray's data is a list of objects (an object array); expected raw float32 bytes",
                        );
                    }
                    other => return self.fail(format!("an ndarray's data is {}", other.kind())),
                };
                Ok(Value::Array(ArrayValue {
                    shape,
                    dtype: Some(dtype.clone()),
                    fortran,
                    data: Some(data),
                }))
            }
            other => Ok(other),
        }
    }
}

fn callable_name(v: &Value) -> String {
    match v {
        Value::Global { module, name } => format!("{module}.{name}"),
        other => other.kind(),
    }
}

/// Undoes the escapes of a Python 2 `repr` string literal (protocol 0's STRING argument).
fn unescape_py_literal(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = b[i + 1];
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                let mut k = 0;
                while k < 2 && i < b.len() && (b'0'..=b'7').contains(&b[i]) {
                    v = v * 8 + u32::from(b[i] - b'0');
                    i += 1;
                    k += 1;
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if i + 2 <= b.len() => {
                let hex = std::str::from_utf8(&b[i..i + 2]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.extend_from_slice(b"\\x"),
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_bytes(bytes: &[u8]) -> std::result::Result<Value, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.pkl");
        std::fs::write(&p, bytes).unwrap();
        load(&p).map_err(|(_, e)| format!("at {}: {}", e.offset, e.problem))
    }

    #[test]
    fn protocol_two_dict_of_tuples() {
        // pickle.dumps({('a', -3): 1.5, ('b', 300): None}, protocol=2) from Python 3.
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01J\xfd\xff\xff\xff\x86q\x02G?\xf8\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00bq\x03M,\x01\x86q\x04Nu.";
        let v = load_bytes(bytes).unwrap();
        let Value::Dict(items) = v else {
            panic!("{v:?}")
        };
        assert_eq!(items.len(), 2);
        let Value::Tuple(k) = &items[0].0 else {
            panic!()
        };
        assert_eq!(k[0].as_text().as_deref(), Some("a"));
        assert_eq!(k[1], Value::Int(-3));
        assert_eq!(items[0].1, Value::Float(1.5));
        assert_eq!(items[1].1, Value::None);
    }

    #[test]
    fn truncated_stream_is_reported() {
        let e = load_bytes(b"\x80\x02}q\x00(X\x01\x00\x00").unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        let e = load_bytes(b"\x80\x02}").unwrap_err();
        assert!(e.contains("before its STOP"), "{e}");
    }

    #[test]
    fn garbage_is_not_a_pickle() {
        let e = load_bytes(b"\x89HDF\r\n").unwrap_err();
        assert!(e.contains("not one this reader understands"), "{e}");
    }

    #[test]
    fn python2_string_literals_unescape() {
        assert_eq!(unescape_py_literal(r"a\x00\n\\\'b\101"), b"a\x00\n\\'bA");
    }
}
