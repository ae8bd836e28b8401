//! A restricted pickle reader for PyTorch checkpoints.
//!
//! It understands the opcodes of pickle protocols 0–5 that data needs, but it never imports or
//! calls anything: a `GLOBAL` / `STACK_GLOBAL` is checked against a short list of names whose
//! effect is known (build a tensor from a storage, an `OrderedDict`, a `torch.Size`, …) and those
//! are interpreted here, in Rust. Any other name (`os.system`, `builtins.eval`, a user class) is
//! refused with an error naming it. Storages come from `persistent_id`
//! `('storage', torch.XStorage, key, location, numel)` and are only described here; the archive
//! layer ([`super::pth`]) checks them against the bytes that exist.
//!
//! Every count and offset is checked; a truncated or hostile pickle gives an error, never a panic
//! or an allocation larger than the input.

use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use anyhow::{anyhow, bail, Result};

/// Element types a torch storage can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TorchDType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
    C64,
    C128,
}

impl TorchDType {
    pub fn size(self) -> usize {
        match self {
            TorchDType::F64 | TorchDType::I64 | TorchDType::C64 => 8,
            TorchDType::F32 | TorchDType::I32 => 4,
            TorchDType::F16 | TorchDType::BF16 | TorchDType::I16 => 2,
            TorchDType::I8 | TorchDType::U8 | TorchDType::Bool => 1,
            TorchDType::C128 => 16,
        }
    }

    /// The name torch prints (`torch.float16` → `float16`).
    pub fn name(self) -> &'static str {
        match self {
            TorchDType::F64 => "float64",
            TorchDType::F32 => "float32",
            TorchDType::F16 => "float16",
            TorchDType::BF16 => "bfloat16",
            TorchDType::I64 => "int64",
            TorchDType::I32 => "int32",
            TorchDType::I16 => "int16",
            TorchDType::I8 => "int8",
            TorchDType::U8 => "uint8",
            TorchDType::Bool => "bool",
            TorchDType::C64 => "complex64",
            TorchDType::C128 => "complex128",
        }
    }

    /// `torch.FloatStorage` and friends (the typed-storage class names `torch.save` writes).
    fn from_storage_class(name: &str) -> Option<TorchDType> {
        Some(match name {
            "DoubleStorage" => TorchDType::F64,
            "FloatStorage" => TorchDType::F32,
            "HalfStorage" => TorchDType::F16,
            "BFloat16Storage" => TorchDType::BF16,
            "LongStorage" => TorchDType::I64,
            "IntStorage" => TorchDType::I32,
            "ShortStorage" => TorchDType::I16,
            "CharStorage" => TorchDType::I8,
            "ByteStorage" => TorchDType::U8,
            "BoolStorage" => TorchDType::Bool,
            "ComplexFloatStorage" => TorchDType::C64,
            "ComplexDoubleStorage" => TorchDType::C128,
            _ => return None,
        })
    }

    /// `torch.float16` and the other dtype constants, as data.
    fn from_dtype_name(name: &str) -> Option<TorchDType> {
        Some(match name {
            "float64" | "double" => TorchDType::F64,
            "float32" | "float" => TorchDType::F32,
            "float16" | "half" => TorchDType::F16,
            "bfloat16" => TorchDType::BF16,
            "int64" | "long" => TorchDType::I64,
            "int32" | "int" => TorchDType::I32,
            "int16" | "short" => TorchDType::I16,
            "int8" => TorchDType::I8,
            "uint8" => TorchDType::U8,
            "bool" => TorchDType::Bool,
            "complex64" | "cfloat" => TorchDType::C64,
            "complex128" | "cdouble" => TorchDType::C128,
            _ => return None,
        })
    }
}

impl fmt::Display for TorchDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A storage as a persistent id describes it: the archive record `data/<key>` holding
/// `numel` elements of `dtype`.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    pub key: String,
    pub dtype: TorchDType,
    pub numel: usize,
    pub location: String,
}

/// A tensor: a strided view into a storage. The view was checked to lie inside the storage's
/// declared element count.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

impl TensorRef {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn dtype(&self) -> TorchDType {
        self.storage.dtype
    }

    /// True when the elements are laid out row-major without gaps.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for (&d, &s) in self.shape.iter().zip(&self.stride).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected = expected.saturating_mul(d);
        }
        true
    }
}

/// What a pickle held, as plain data.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Set(Vec<Value>),
    /// Insertion order kept (an `OrderedDict` or a plain dict).
    Dict(Vec<(Value, Value)>),
    Tensor(TensorRef),
    /// A TorchScript module object (`__torch__.…` class) with its attribute state. Only
    /// accepted in TorchScript archives; it is data here, no code of the class is involved.
    Object {
        class: String,
        state: Box<Value>,
    },
    /// An allowed global that appears as a value rather than being called (a dtype constant,
    /// a storage class, `torch.Tensor`).
    Global(String),
}

impl Value {
    /// The entry of a dict with a string key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items.iter().find_map(|(k, v)| match k {
                Value::Str(s) if s == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }

    /// A short, human-readable rendering (for `lav2 info` and messages); long containers are
    /// elided.
    pub fn brief(&self) -> String {
        let mut s = String::new();
        self.brief_into(&mut s, 0);
        s
    }

    fn brief_into(&self, out: &mut String, depth: usize) {
        use std::fmt::Write;
        if out.len() > 400 {
            return;
        }
        match self {
            Value::None => out.push_str("None"),
            Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => {
                let _ = write!(out, "{f}");
            }
            Value::Str(s) => {
                let _ = write!(out, "{s:?}");
            }
            Value::Bytes(b) => {
                let _ = write!(out, "<{} bytes>", b.len());
            }
            Value::Tensor(t) => {
                let _ = write!(out, "tensor {} {:?}", t.dtype(), t.shape);
            }
            Value::Global(g) => out.push_str(g),
            Value::Object { class, .. } => {
                let _ = write!(out, "<{class}>");
            }
            Value::List(v) | Value::Tuple(v) | Value::Set(v) => {
                let (open, close) = match self {
                    Value::List(_) => ('[', ']'),
                    Value::Tuple(_) => ('(', ')'),
                    _ => ('{', '}'),
                };
                out.push(open);
                if depth > 3 {
                    let _ = write!(out, "…{} items", v.len());
                } else {
                    for (i, x) in v.iter().take(8).enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        x.brief_into(out, depth + 1);
                    }
                    if v.len() > 8 {
                        let _ = write!(out, ", … ({} items)", v.len());
                    }
                }
                out.push(close);
            }
            Value::Dict(items) => {
                out.push('{');
                if depth > 3 {
                    let _ = write!(out, "…{} entries", items.len());
                } else {
                    for (i, (k, v)) in items.iter().take(8).enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        k.brief_into(out, depth + 1);
                        out.push_str(": ");
                        v.brief_into(out, depth + 1);
                    }
                    if items.len() > 8 {
                        let _ = write!(out, ", … ({} entries)", items.len());
                    }
                }
                out.push('}');
            }
        }
    }
}

/// How strict to be about globals.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Accept TorchScript module classes (`__torch__.…`) as inert objects and the
    /// `torch.jit._pickle` list builders.
    pub torchscript: bool,
}

/// The most containers a result may expand to, and the deepest nesting: a pickle can share
/// one list many times over (memo references), which must not turn into an exponential copy.
const MAX_NODES: usize = 4_000_000;
const MAX_DEPTH: usize = 200;
/// The most the VM itself may hold while it runs: stack slots, memo entries and containers.
/// Each opcode adds at most one of each, so these bound the reader's memory to a fixed multiple
/// of the limits whatever the file's size (a 7B checkpoint needs a few thousand of each).
const MAX_VM_ENTRIES: usize = 1 << 20;

/// Globals this reader knows; everything else is refused.
#[derive(Clone, Debug, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    TorchSize,
    CodecsEncode,
    /// `torch.jit._pickle.build_intlist` and its siblings: return their one argument.
    JitIdentity,
    /// `torch.jit._pickle.restore_type_tag(value, type_str)`: returns `value`.
    RestoreTypeTag,
    StorageClass(TorchDType),
    DTypeConst(TorchDType),
    TensorClass(&'static str),
    ScriptClass(Rc<str>),
}

impl Global {
    fn describe(&self) -> String {
        match self {
            Global::OrderedDict => "collections.OrderedDict".into(),
            Global::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2".into(),
            Global::RebuildTensor => "torch._utils._rebuild_tensor".into(),
            Global::RebuildParameter => "torch._utils._rebuild_parameter".into(),
            Global::RebuildParameterWithState => {
                "torch._utils._rebuild_parameter_with_state".into()
            }
            Global::RebuildFromTypeV2 => "torch._tensor._rebuild_from_type_v2".into(),
            Global::TorchSize => "torch.Size".into(),
            Global::CodecsEncode => "_codecs.encode".into(),
            Global::JitIdentity => "torch.jit._pickle.build_*list".into(),
            Global::RestoreTypeTag => "torch.jit._pickle.restore_type_tag".into(),
            Global::StorageClass(d) => format!("torch storage class ({d})"),
            Global::DTypeConst(d) => format!("torch.{d}"),
            Global::TensorClass(n) => (*n).to_string(),
            Global::ScriptClass(c) => c.to_string(),
        }
    }
}

fn resolve_global(module: &str, name: &str, opts: Options) -> Result<Global> {
    let g = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
        ("torch", "Size") => Global::TorchSize,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("torch", "Tensor") => Global::TensorClass("torch.Tensor"),
        ("torch.nn.parameter", "Parameter") => Global::TensorClass("torch.nn.Parameter"),
        ("torch", n) if TorchDType::from_storage_class(n).is_some() => {
            Global::StorageClass(TorchDType::from_storage_class(n).unwrap())
        }
        ("torch", n) if TorchDType::from_dtype_name(n).is_some() => {
            Global::DTypeConst(TorchDType::from_dtype_name(n).unwrap())
        }
        (
            "torch.jit._pickle",
            "build_intlist" | "build_doublelist" | "build_boollist" | "build_tensorlist",
        ) if opts.torchscript => Global::JitIdentity,
        ("torch.jit._pickle", "restore_type_tag") if opts.torchscript => Global::RestoreTypeTag,
        (m, n) if opts.torchscript && (m == "__torch__" || m.starts_with("__torch__.")) => {
            Global::ScriptClass(format!("{m}.{n}").into())
        }
        (m, n) => bail!(
            "refusing pickle global '{m}.{n}': lav2 reads only tensors, dicts, lists, strings and \
             numbers from checkpoints and never imports or runs what a pickle names"
        ),
    };
    Ok(g)
}

/// Values on the VM stack and in the memo; containers live in `nodes` so that mutation after
/// memoization is seen through every reference, as in Python.
#[derive(Clone, Debug)]
enum V {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Node(usize),
    Global(Rc<Global>),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Str(Rc<str>),
    Int(i64),
}

#[derive(Debug)]
enum Node {
    List(Vec<V>),
    Tuple(Vec<V>),
    Set(Vec<V>),
    Dict {
        items: Vec<(V, V)>,
        index: HashMap<Key, usize>,
    },
    Object {
        class: Rc<str>,
        state: Option<V>,
    },
}

enum Slot {
    Mark,
    V(V),
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    memo: HashMap<u64, V>,
    nodes: Vec<Node>,
    opts: Options,
}

/// Parses one pickle and returns the object it builds.
pub fn parse(data: &[u8], opts: Options) -> Result<Value> {
    let mut vm = Vm {
        data,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        nodes: Vec::new(),
        opts,
    };
    let top = vm.run()?;
    let mut budget = MAX_NODES;
    vm.materialize(&top, 0, &mut budget)
}

impl<'a> Vm<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                anyhow!(
                    "pickle truncated: needs {n} more bytes at offset {}, {} left",
                    self.pos,
                    self.data.len() - self.pos
                )
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn len_prefixed(&mut self, n: u64) -> Result<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| anyhow!("pickle length {n} too large"))?;
        self.take(n)
    }

    /// A text line (protocol 0 opcodes), without its newline.
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos..];
        let nl = rest.iter().position(|&b| b == b'\n').ok_or_else(|| {
            anyhow!(
                "pickle truncated: unterminated text line at offset {}",
                self.pos
            )
        })?;
        let s = std::str::from_utf8(&rest[..nl])
            .map_err(|_| anyhow!("pickle text line at offset {} is not UTF-8", self.pos))?;
        self.pos += nl + 1;
        Ok(s)
    }

    fn push(&mut self, v: V) {
        self.stack.push(Slot::V(v));
    }

    fn pop(&mut self) -> Result<V> {
        match self.stack.pop() {
            Some(Slot::V(v)) => Ok(v),
            Some(Slot::Mark) => bail!("malformed pickle: unexpected MARK on the stack"),
            None => bail!("malformed pickle: stack underflow"),
        }
    }

    fn top(&self) -> Result<&V> {
        match self.stack.last() {
            Some(Slot::V(v)) => Ok(v),
            Some(Slot::Mark) => bail!("malformed pickle: unexpected MARK on the stack"),
            None => bail!("malformed pickle: stack underflow"),
        }
    }

    /// Items above the topmost MARK (which is removed).
    fn pop_mark(&mut self) -> Result<Vec<V>> {
        let m = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or_else(|| anyhow!("malformed pickle: no MARK on the stack"))?;
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(items
            .into_iter()
            .map(|s| match s {
                Slot::V(v) => v,
                Slot::Mark => unreachable!("rposition found the topmost mark"),
            })
            .collect())
    }

    fn new_node(&mut self, n: Node) -> V {
        self.nodes.push(n);
        V::Node(self.nodes.len() - 1)
    }

    fn new_dict(&mut self) -> V {
        self.new_node(Node::Dict {
            items: Vec::new(),
            index: HashMap::new(),
        })
    }

    fn tuple(&mut self, items: Vec<V>) -> V {
        self.new_node(Node::Tuple(items))
    }

    fn memo_get(&self, i: u64) -> Result<V> {
        self.memo
            .get(&i)
            .cloned()
            .ok_or_else(|| anyhow!("malformed pickle: memo entry {i} read before it was written"))
    }

    fn memo_put(&mut self, i: u64) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }

    fn node_items(&self, v: &V, what: &str) -> Result<Vec<V>> {
        match v {
            V::Node(i) => match &self.nodes[*i] {
                Node::Tuple(items) | Node::List(items) => Ok(items.clone()),
                _ => bail!("malformed pickle: {what} is not a tuple"),
            },
            _ => bail!("malformed pickle: {what} is not a tuple"),
        }
    }

    fn set_items(&mut self, target: &V, pairs: Vec<(V, V)>) -> Result<()> {
        let V::Node(i) = target else {
            bail!("malformed pickle: SETITEM(S) on something that is not a dict");
        };
        let Node::Dict { items, index } = &mut self.nodes[*i] else {
            bail!("malformed pickle: SETITEM(S) on something that is not a dict");
        };
        for (k, v) in pairs {
            let key = match &k {
                V::Str(s) => Some(Key::Str(s.clone())),
                V::Int(n) => Some(Key::Int(*n)),
                _ => None,
            };
            match key.as_ref().and_then(|k| index.get(k)) {
                Some(&pos) => items[pos].1 = v,
                None => {
                    if let Some(key) = key {
                        index.insert(key, items.len());
                    }
                    items.push((k, v));
                }
            }
        }
        Ok(())
    }

    fn append(&mut self, target: &V, values: Vec<V>) -> Result<()> {
        match target {
            V::Node(i) => match &mut self.nodes[*i] {
                Node::List(items) | Node::Set(items) => {
                    items.extend(values);
                    Ok(())
                }
                _ => bail!(
                    "malformed pickle: APPEND(S) / ADDITEMS on something that is not a list or set"
                ),
            },
            _ => bail!(
                "malformed pickle: APPEND(S) / ADDITEMS on something that is not a list or set"
            ),
        }
    }

    fn global(&mut self, module: &str, name: &str) -> Result<()> {
        let g = resolve_global(module, name, self.opts)?;
        self.push(V::Global(Rc::new(g)));
        Ok(())
    }

    fn run(&mut self) -> Result<V> {
        loop {
            for (what, n) in [
                ("stack entries", self.stack.len()),
                ("memo entries", self.memo.len()),
                ("containers", self.nodes.len()),
            ] {
                if n > MAX_VM_ENTRIES {
                    bail!(
                        "pickle holds more than {MAX_VM_ENTRIES} {what} at offset {}; \
                         refusing it (no checkpoint needs that many)",
                        self.pos
                    );
                }
            }
            let at = self.pos;
            let op = self
                .u8()
                .map_err(|_| anyhow!("pickle truncated: no STOP opcode"))?;
            match op {
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if p > 5 {
                        bail!("pickle protocol {p} is not supported (0–5 are)");
                    }
                }
                0x95 => {
                    // FRAME: a length hint only.
                    self.u64()?;
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.stack
                        .pop()
                        .ok_or_else(|| anyhow!("malformed pickle: POP on an empty stack"))?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v);
                }
                // Integers and floats.
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(V::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(V::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(V::Int(v as i64));
                }
                0x8a => {
                    let n = self.u8()? as u64;
                    let b = self.len_prefixed(n)?;
                    self.push(V::Int(long_from_le(b)?));
                }
                0x8b => {
                    let n = self.u32()? as u64;
                    let b = self.len_prefixed(n)?;
                    self.push(V::Int(long_from_le(b)?));
                }
                b'I' => {
                    let s = self.line()?;
                    let v = match s {
                        "00" => V::Bool(false),
                        "01" => V::Bool(true),
                        _ => V::Int(
                            s.parse::<i64>()
                                .map_err(|_| anyhow!("malformed pickle: INT '{s}'"))?,
                        ),
                    };
                    self.push(v);
                }
                b'L' => {
                    let s = self.line()?;
                    let s = s.strip_suffix('L').unwrap_or(s);
                    let v = s
                        .parse::<i64>()
                        .map_err(|_| anyhow!("pickle LONG '{s}' is not a 64-bit integer"))?;
                    self.push(V::Int(v));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(V::Float(f64::from_be_bytes(a)));
                }
                b'F' => {
                    let s = self.line()?;
                    let v = s
                        .parse::<f64>()
                        .map_err(|_| anyhow!("malformed pickle: FLOAT '{s}'"))?;
                    self.push(V::Float(v));
                }
                // Constants.
                b'N' => self.push(V::None),
                0x88 => self.push(V::Bool(true)),
                0x89 => self.push(V::Bool(false)),
                // Strings and bytes.
                b'X' => {
                    let n = self.u32()? as u64;
                    let b = self.len_prefixed(n)?;
                    self.push(V::Str(utf8(b)?));
                }
                0x8c => {
                    let n = self.u8()? as u64;
                    let b = self.len_prefixed(n)?;
                    self.push(V::Str(utf8(b)?));
                }
                0x8d => {
                    let n = self.u64()?;
                    let b = self.len_prefixed(n)?;
                    self.push(V::Str(utf8(b)?));
                }
                b'V' => {
                    let s = self.line()?;
                    if s.contains('\\') {
                        bail!("pickle UNICODE text with escapes is not supported");
                    }
                    self.push(V::Str(s.into()));
                }
                b'T' | b'B' => {
                    // BINSTRING (Python 2 str) / BINBYTES: kept as bytes.
                    let n = self.u32()? as u64;
                    let b = self.len_prefixed(n)?;
                    self.push(V::Bytes(b.into()));
                }
                b'U' | b'C' => {
                    let n = self.u8()? as u64;
                    let b = self.len_prefixed(n)?;
                    self.push(V::Bytes(b.into()));
                }
                0x8e | 0x96 => {
                    let n = self.u64()?;
                    let b = self.len_prefixed(n)?;
                    self.push(V::Bytes(b.into()));
                }
                // Containers.
                b']' => {
                    let v = self.new_node(Node::List(Vec::new()));
                    self.push(v);
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.new_node(Node::List(items));
                    self.push(v);
                }
                b'a' => {
                    let x = self.pop()?;
                    let list = self.top()?.clone();
                    self.append(&list, vec![x])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?.clone();
                    self.append(&list, items)?;
                }
                b')' => {
                    let v = self.tuple(Vec::new());
                    self.push(v);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.tuple(items);
                    self.push(v);
                }
                0x85 => {
                    let a = self.pop()?;
                    let v = self.tuple(vec![a]);
                    self.push(v);
                }
                0x86 => {
                    let b = self.pop()?;
                    let a = self.pop()?;
                    let v = self.tuple(vec![a, b]);
                    self.push(v);
                }
                0x87 => {
                    let c = self.pop()?;
                    let b = self.pop()?;
                    let a = self.pop()?;
                    let v = self.tuple(vec![a, b, c]);
                    self.push(v);
                }
                b'}' => {
                    let v = self.new_dict();
                    self.push(v);
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        bail!("malformed pickle: DICT with an odd number of items");
                    }
                    let d = self.new_dict();
                    let pairs = pairs(items);
                    self.set_items(&d, pairs)?;
                    self.push(d);
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?.clone();
                    self.set_items(&d, vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        bail!("malformed pickle: SETITEMS with an odd number of items");
                    }
                    let d = self.top()?.clone();
                    self.set_items(&d, pairs(items))?;
                }
                0x8f => {
                    let v = self.new_node(Node::Set(Vec::new()));
                    self.push(v);
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    let set = self.top()?.clone();
                    self.append(&set, items)?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    let v = self.new_node(Node::Set(items));
                    self.push(v);
                }
                // Memo.
                b'g' => {
                    let s = self.line()?;
                    let i = s
                        .parse::<u64>()
                        .map_err(|_| anyhow!("malformed pickle: GET '{s}'"))?;
                    let v = self.memo_get(i)?;
                    self.push(v);
                }
                b'h' => {
                    let i = self.u8()? as u64;
                    let v = self.memo_get(i)?;
                    self.push(v);
                }
                b'j' => {
                    let i = self.u32()? as u64;
                    let v = self.memo_get(i)?;
                    self.push(v);
                }
                b'p' => {
                    let s = self.line()?;
                    let i = s
                        .parse::<u64>()
                        .map_err(|_| anyhow!("malformed pickle: PUT '{s}'"))?;
                    self.memo_put(i)?;
                }
                b'q' => {
                    let i = self.u8()? as u64;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()? as u64;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u64;
                    self.memo_put(i)?;
                }
                // Names: checked, never imported.
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (V::Str(m), V::Str(n)) => self.global(&m, &n)?,
                        _ => bail!("malformed pickle: STACK_GLOBAL needs two strings"),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args)?;
                    self.push(v);
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.new_object(cls, args)?;
                    self.push(v);
                }
                0x92 => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    if !self.is_empty_container(&kwargs) {
                        bail!("pickle NEWOBJ_EX with keyword arguments is not supported");
                    }
                    let v = self.new_object(cls, args)?;
                    self.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?.clone();
                    self.build(&target, state)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v);
                }
                b'P' => bail!("pickle text persistent id (PERSID) is not a torch storage reference"),
                b'i' | b'o' => bail!(
                    "refusing pickle opcode {} at offset {at}: it instantiates a class by name",
                    if op == b'i' { "INST" } else { "OBJ" }
                ),
                0x82..=0x84 => bail!("refusing pickle opcode EXT{} at offset {at}: extension registry objects are not data", match op { 0x82 => 1, 0x83 => 2, _ => 4 }),
                0x97..=0x98 => bail!("pickle out-of-band buffers (protocol 5) are not supported"),
                b'S' => bail!("pickle protocol-0 STRING opcode is not supported"),
                other => bail!("unknown pickle opcode 0x{other:02x} at offset {at}"),
            }
        }
    }

    fn is_empty_container(&self, v: &V) -> bool {
        match v {
            V::Node(i) => match &self.nodes[*i] {
                Node::Tuple(x) | Node::List(x) | Node::Set(x) => x.is_empty(),
                Node::Dict { items, .. } => items.is_empty(),
                Node::Object { .. } => false,
            },
            V::None => true,
            _ => false,
        }
    }

    fn new_object(&mut self, cls: V, args: V) -> Result<V> {
        let V::Global(g) = &cls else {
            bail!("malformed pickle: NEWOBJ on something that is not a class");
        };
        match g.as_ref() {
            Global::ScriptClass(name) => {
                if !self.is_empty_container(&args) {
                    bail!("TorchScript object {name} created with constructor arguments; not supported");
                }
                let name = name.clone();
                Ok(self.new_node(Node::Object {
                    class: name,
                    state: None,
                }))
            }
            Global::OrderedDict => Ok(self.new_dict()),
            other => bail!(
                "refusing to instantiate '{}' from a pickle",
                other.describe()
            ),
        }
    }

    fn build(&mut self, target: &V, state: V) -> Result<()> {
        match target {
            V::Node(i) => match &mut self.nodes[*i] {
                Node::Object { state: s, .. } => {
                    *s = Some(state);
                    Ok(())
                }
                // An OrderedDict's instance attributes (`_metadata` of a state dict): not data.
                Node::Dict { .. } => Ok(()),
                _ => bail!("malformed pickle: BUILD on a list, tuple or set"),
            },
            // A Parameter's or tensor's Python attributes: not needed.
            V::Tensor(_) => Ok(()),
            _ => bail!("malformed pickle: BUILD on a value that has no state"),
        }
    }

    fn persistent_load(&mut self, pid: V) -> Result<V> {
        let items = self.node_items(&pid, "a persistent id")?;
        match items.first() {
            Some(V::Str(s)) if &**s == "storage" => {}
            Some(V::Str(s)) => bail!("persistent id of kind '{s}' is not a torch storage"),
            _ => bail!("malformed pickle: persistent id is not ('storage', …)"),
        }
        if items.len() != 5 {
            bail!(
                "malformed storage reference: {} fields, expected ('storage', type, key, location, numel)",
                items.len()
            );
        }
        let dtype = match &items[1] {
            V::Global(g) => match g.as_ref() {
                Global::StorageClass(d) | Global::DTypeConst(d) => *d,
                other => bail!("storage of type '{}' is not supported", other.describe()),
            },
            _ => bail!("malformed storage reference: its type is not a torch storage class"),
        };
        let key = match &items[2] {
            V::Str(s) => s.to_string(),
            V::Int(i) => i.to_string(),
            _ => bail!("malformed storage reference: its key is not a string"),
        };
        if key.is_empty() || key.contains('/') || key.contains('\\') || key.contains("..") {
            bail!("storage key '{key}' is not a plain record name");
        }
        let location = match &items[3] {
            V::Str(s) => s.to_string(),
            _ => bail!("malformed storage reference: its location is not a string"),
        };
        let numel = match &items[4] {
            V::Int(n) if *n >= 0 => *n as usize,
            _ => bail!("malformed storage reference for '{key}': element count is not a non-negative integer"),
        };
        Ok(V::Storage(Rc::new(StorageRef {
            key,
            dtype,
            numel,
            location,
        })))
    }

    fn ints(&self, v: &V, what: &str) -> Result<Vec<usize>> {
        let items = self.node_items(v, what)?;
        items
            .iter()
            .map(|x| match x {
                V::Int(n) if *n >= 0 => Ok(*n as usize),
                _ => bail!(
                    "malformed tensor: {what} holds something other than non-negative integers"
                ),
            })
            .collect()
    }

    fn rebuild_tensor(&self, args: &[V]) -> Result<V> {
        if args.len() < 4 {
            bail!(
                "malformed tensor: _rebuild_tensor needs at least 4 arguments, got {}",
                args.len()
            );
        }
        let V::Storage(storage) = &args[0] else {
            bail!("malformed tensor: its first argument is not a storage");
        };
        let offset = match &args[1] {
            V::Int(n) if *n >= 0 => *n as usize,
            _ => bail!("malformed tensor: storage offset is not a non-negative integer"),
        };
        let shape = self.ints(&args[2], "tensor size")?;
        let stride = self.ints(&args[3], "tensor stride")?;
        if shape.len() != stride.len() {
            bail!(
                "malformed tensor: size has {} dimensions but stride has {}",
                shape.len(),
                stride.len()
            );
        }
        let mut numel = 1usize;
        let mut last = offset;
        for (&d, &s) in shape.iter().zip(&stride) {
            numel = numel
                .checked_mul(d)
                .ok_or_else(|| anyhow!("malformed tensor: size {shape:?} overflows"))?;
            if d > 0 {
                last = (d - 1)
                    .checked_mul(s)
                    .and_then(|x| x.checked_add(last))
                    .ok_or_else(|| anyhow!("malformed tensor: stride {stride:?} overflows"))?;
            }
        }
        if numel > 0 && last >= storage.numel {
            bail!(
                "tensor of size {shape:?} (offset {offset}, stride {stride:?}) reaches element {last} \
                 but its storage '{}' declares only {} elements",
                storage.key,
                storage.numel
            );
        }
        // A view with repeated elements (a zero stride, as `expand` makes) would materialize
        // more than its storage holds: refused, so that reading a tensor never allocates more
        // than the file's own bytes.
        if numel > storage.numel {
            bail!(
                "tensor of size {shape:?} (stride {stride:?}) has {numel} elements but its storage \
                 '{}' holds only {}: broadcast views are not supported",
                storage.key,
                storage.numel
            );
        }
        Ok(V::Tensor(Rc::new(TensorRef {
            storage: (**storage).clone(),
            offset,
            shape,
            stride,
        })))
    }

    fn reduce(&mut self, callable: V, args: V) -> Result<V> {
        let V::Global(g) = &callable else {
            bail!("malformed pickle: REDUCE on something that is not an allowed global");
        };
        let args = self.node_items(&args, "REDUCE arguments")?;
        match g.as_ref() {
            Global::OrderedDict => {
                let d = self.new_dict();
                if let Some(first) = args.first() {
                    // OrderedDict([(k, v), …])
                    let entries = self.node_items(first, "OrderedDict items")?;
                    let mut pairs = Vec::with_capacity(entries.len());
                    for e in entries {
                        let kv = self.node_items(&e, "an OrderedDict item")?;
                        if kv.len() != 2 {
                            bail!("malformed pickle: OrderedDict item is not a pair");
                        }
                        pairs.push((kv[0].clone(), kv[1].clone()));
                    }
                    self.set_items(&d, pairs)?;
                }
                Ok(d)
            }
            Global::RebuildTensorV2 | Global::RebuildTensor => self.rebuild_tensor(&args),
            Global::RebuildParameter | Global::RebuildParameterWithState => match args.first() {
                Some(t @ V::Tensor(_)) => Ok(t.clone()),
                _ => bail!("malformed parameter: its data is not a tensor"),
            },
            Global::RebuildFromTypeV2 => {
                // (func, new_type, args, state): only plain tensors / parameters.
                if args.len() < 3 {
                    bail!("malformed tensor: _rebuild_from_type_v2 needs 3 arguments");
                }
                match &args[1] {
                    V::Global(t) if matches!(t.as_ref(), Global::TensorClass(_)) => {}
                    V::Global(t) => bail!("refusing tensor subclass '{}'", t.describe()),
                    _ => bail!("malformed tensor: _rebuild_from_type_v2 type is not a class"),
                }
                let inner = args[0].clone();
                let inner_args = args[2].clone();
                self.reduce(inner, inner_args)
            }
            Global::TorchSize => match args.first() {
                Some(t) => {
                    let items = self.node_items(t, "torch.Size argument")?;
                    Ok(self.tuple(items))
                }
                None => Ok(self.tuple(Vec::new())),
            },
            Global::CodecsEncode => match (args.first(), args.get(1)) {
                (Some(V::Str(s)), Some(V::Str(enc))) => {
                    let bytes: Vec<u8> = match enc.to_ascii_lowercase().as_str() {
                        "latin1" | "latin-1" | "iso-8859-1" => s
                            .chars()
                            .map(|c| {
                                u8::try_from(c as u32).map_err(|_| {
                                    anyhow!("malformed pickle: latin1 text out of range")
                                })
                            })
                            .collect::<Result<_>>()?,
                        "utf-8" | "utf8" => s.as_bytes().to_vec(),
                        e => bail!("_codecs.encode with encoding '{e}' is not supported"),
                    };
                    Ok(V::Bytes(bytes.into()))
                }
                _ => bail!("malformed pickle: _codecs.encode needs (str, encoding)"),
            },
            Global::JitIdentity | Global::RestoreTypeTag => args
                .first()
                .cloned()
                .ok_or_else(|| anyhow!("malformed pickle: {} without an argument", g.describe())),
            other => bail!("refusing to call '{}' from a pickle", other.describe()),
        }
    }

    fn materialize(&self, v: &V, depth: usize, budget: &mut usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            bail!("pickle nests deeper than {MAX_DEPTH} levels (or refers to itself)");
        }
        if *budget == 0 {
            bail!("pickle expands to more than {MAX_NODES} values");
        }
        *budget -= 1;
        Ok(match v {
            V::None => Value::None,
            V::Bool(b) => Value::Bool(*b),
            V::Int(i) => Value::Int(*i),
            V::Float(f) => Value::Float(*f),
            V::Str(s) => Value::Str(s.to_string()),
            V::Bytes(b) => Value::Bytes(b.to_vec()),
            V::Tensor(t) => Value::Tensor((**t).clone()),
            V::Storage(s) => bail!(
                "storage '{}' appears outside a tensor; not supported",
                s.key
            ),
            V::Global(g) => Value::Global(g.describe()),
            V::Node(i) => {
                let list = |items: &[V], budget: &mut usize| -> Result<Vec<Value>> {
                    items
                        .iter()
                        .map(|x| self.materialize(x, depth + 1, budget))
                        .collect()
                };
                match &self.nodes[*i] {
                    Node::List(items) => Value::List(list(items, budget)?),
                    Node::Tuple(items) => Value::Tuple(list(items, budget)?),
                    Node::Set(items) => Value::Set(list(items, budget)?),
                    Node::Dict { items, .. } => {
                        let mut out = Vec::with_capacity(items.len());
                        for (k, v) in items {
                            out.push((
                                self.materialize(k, depth + 1, budget)?,
                                self.materialize(v, depth + 1, budget)?,
                            ));
                        }
                        Value::Dict(out)
                    }
                    Node::Object { class, state } => Value::Object {
                        class: class.to_string(),
                        state: Box::new(match state {
                            Some(s) => self.materialize(s, depth + 1, budget)?,
                            None => Value::None,
                        }),
                    },
                }
            }
        })
    }
}

fn pairs(items: Vec<V>) -> Vec<(V, V)> {
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

fn utf8(b: &[u8]) -> Result<Rc<str>> {
    std::str::from_utf8(b)
        .map(Rc::from)
        .map_err(|_| anyhow!("pickle string is not valid UTF-8"))
}

/// A little-endian two's-complement integer of up to 8 bytes (LONG1 / LONG4).
fn long_from_le(b: &[u8]) -> Result<i64> {
    if b.is_empty() {
        return Ok(0);
    }
    if b.len() > 8 {
        // Larger encodings are accepted when they are sign extensions of a 64-bit value.
        let (low, high) = b.split_at(8);
        let v = long_from_le(low)?;
        let fill = if v < 0 { 0xff } else { 0 };
        if high.iter().all(|&x| x == fill) {
            return Ok(v);
        }
        bail!("pickle integer of {} bytes does not fit 64 bits", b.len());
    }
    let mut a = [0u8; 8];
    a[..b.len()].copy_from_slice(b);
    if b[b.len() - 1] & 0x80 != 0 {
        for x in a.iter_mut().skip(b.len()) {
            *x = 0xff;
        }
    }
    Ok(i64::from_le_bytes(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_os_system_by_name() {
        // cos\nsystem\n(S'echo hi'\ntR.
        let p = b"cos\nsystem\n(X\x07\x00\x00\x00echo hitR.";
        let e = parse(p, Options::default()).unwrap_err().to_string();
        assert!(e.contains("os.system"), "{e}");
    }

    #[test]
    fn reads_an_ordered_dict_of_scalars() {
        // OrderedDict(); {'a': 1, 'b': [True, None, 2.5]}
        let mut p = Vec::new();
        p.extend_from_slice(b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(");
        p.extend_from_slice(b"X\x01\x00\x00\x00aK\x01");
        p.extend_from_slice(b"X\x01\x00\x00\x00b](\x88NG");
        p.extend_from_slice(&2.5f64.to_be_bytes());
        p.extend_from_slice(b"eu.");
        let v = parse(&p, Options::default()).unwrap();
        assert_eq!(v.get("a"), Some(&Value::Int(1)));
        assert_eq!(
            v.get("b"),
            Some(&Value::List(vec![
                Value::Bool(true),
                Value::None,
                Value::Float(2.5)
            ]))
        );
    }

    #[test]
    fn stack_memo_and_container_growth_is_bounded() {
        let n = MAX_VM_ENTRIES + 10;
        // MARK after MARK, then NONE + LONG_BINPUT with fresh indices, then EMPTY_LIST + POP.
        let mut marks = b"\x80\x02".to_vec();
        marks.extend(std::iter::repeat_n(b'(', n));
        let mut memo = b"\x80\x02N".to_vec();
        for i in 0..n as u32 {
            memo.push(b'r');
            memo.extend_from_slice(&i.to_le_bytes());
        }
        let mut lists = b"\x80\x02".to_vec();
        for _ in 0..n {
            lists.extend_from_slice(b"]0");
        }
        for (p, what) in [
            (marks, "stack entries"),
            (memo, "memo entries"),
            (lists, "containers"),
        ] {
            let e = parse(&p, Options::default()).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
    }

    #[test]
    fn shared_lists_do_not_expand_exponentially() {
        // l0 = []; then 40 times: t = (prev, prev)
        let mut p = b"\x80\x02]q\x00".to_vec();
        for i in 0..40u8 {
            p.extend_from_slice(&[b'h', i, b'h', i, 0x86, b'q', i + 1]);
        }
        p.push(b'.');
        let e = parse(&p, Options::default()).unwrap_err().to_string();
        assert!(e.contains("expands to more than"), "{e}");
    }

    #[test]
    fn long1_decodes_negative_numbers() {
        assert_eq!(long_from_le(&[0xff]).unwrap(), -1);
        assert_eq!(long_from_le(&[0x00, 0x80]).unwrap(), -32768);
        assert_eq!(long_from_le(&[0x10, 0x27]).unwrap(), 10000);
    }
}
