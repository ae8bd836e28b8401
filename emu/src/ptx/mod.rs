//! PTX text → [`crate::ir::Module`]: a focused parser for what nvcc and NVRTC emit (module
//! directives, variables with initializers, `.entry` kernels with scoped register declarations,
//! labels and instructions). Anything it does not know fails the load with the line it is on.

mod instr;

use std::collections::HashMap;
use std::sync::Arc;

use crate::ir::{AddrBase, GlobalVar, Instr, Kernel, Module, Operand, Param, Space, Ty};

pub use instr::decode_instr;

#[derive(Clone, Debug)]
pub struct ParseError {
    pub line: u32,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

pub type PResult<T> = Result<T, ParseError>;

pub fn err<T>(line: u32, message: impl Into<String>) -> PResult<T> {
    Err(ParseError {
        line,
        message: message.into(),
    })
}

/// A statement of the text: what lies between two `;` (or a brace / label), with its first line.
struct Cursor<'a> {
    text: &'a [u8],
    pos: usize,
    line: u32,
}

impl<'a> Cursor<'a> {
    fn skip_space(&mut self) {
        while self.pos < self.text.len() {
            let c = self.text[self.pos];
            if c == b'\n' {
                self.line += 1;
                self.pos += 1;
            } else if c.is_ascii_whitespace() {
                self.pos += 1;
            } else if c == b'/' && self.text.get(self.pos + 1) == Some(&b'/') {
                while self.pos < self.text.len() && self.text[self.pos] != b'\n' {
                    self.pos += 1;
                }
            } else if c == b'/' && self.text.get(self.pos + 1) == Some(&b'*') {
                self.pos += 2;
                while self.pos + 1 < self.text.len()
                    && !(self.text[self.pos] == b'*' && self.text[self.pos + 1] == b'/')
                {
                    if self.text[self.pos] == b'\n' {
                        self.line += 1;
                    }
                    self.pos += 1;
                }
                self.pos = (self.pos + 2).min(self.text.len());
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    /// Reads up to and excluding `end` (one of `;`, or a closing bracket at depth 0), keeping
    /// newlines counted and comments removed. Returns the text and its first line.
    fn until(&mut self, end: u8) -> PResult<(String, u32)> {
        let line = self.line;
        let mut out = Vec::new();
        let mut depth = 0i32;
        while self.pos < self.text.len() {
            let c = self.text[self.pos];
            if c == b'/' && matches!(self.text.get(self.pos + 1), Some(b'/') | Some(b'*')) {
                self.skip_space();
                out.push(b' ');
                continue;
            }
            if c == b'"' {
                out.push(c);
                self.pos += 1;
                while self.pos < self.text.len() && self.text[self.pos] != b'"' {
                    out.push(self.text[self.pos]);
                    self.pos += 1;
                }
            }
            if depth == 0 && c == end {
                self.pos += 1;
                return Ok((String::from_utf8_lossy(&out).into_owned(), line));
            }
            match c {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                b'\n' => self.line += 1,
                _ => {}
            }
            out.push(if c == b'\n' || c == b'\t' { b' ' } else { c });
            self.pos += 1;
        }
        err(
            line,
            format!("unterminated statement (expected '{}')", end as char),
        )
    }

    /// Whether the statement ahead (up to its first `;`, `(` or `{`) contains `word`.
    fn head_has(&self, word: &str) -> bool {
        let mut e = self.pos;
        while e < self.text.len() && !matches!(self.text[e], b';' | b'(' | b'{') {
            e += 1;
        }
        std::str::from_utf8(&self.text[self.pos..e])
            .unwrap_or("")
            .split_whitespace()
            .any(|w| w == word)
    }

    /// The next whitespace-delimited word (without consuming it).
    fn word(&self) -> &'a str {
        let mut e = self.pos;
        while e < self.text.len() {
            let c = self.text[e];
            if c.is_ascii_whitespace() || c == b';' || c == b'(' || c == b'{' || c == b',' {
                break;
            }
            e += 1;
        }
        std::str::from_utf8(&self.text[self.pos..e]).unwrap_or("")
    }
}

/// Module-level variable before layout.
pub struct ModVar {
    var: GlobalVar,
    extern_: bool,
}

/// Parses a whole module.
pub fn parse_module(text: &str) -> PResult<Module> {
    let mut c = Cursor {
        text: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let mut module = Module::default();
    let mut vars: Vec<ModVar> = Vec::new();
    let mut seen_version = false;
    loop {
        c.skip_space();
        let Some(ch) = c.peek() else { break };
        let line = c.line;
        if ch == b'{' || ch == b'}' {
            return err(line, format!("unexpected '{}' at module level", ch as char));
        }
        let w = c.word();
        match w {
            ".version" => {
                let (s, _) = c.until(b'\n')?;
                let v = s.trim().trim_start_matches(".version").trim();
                let (a, b) = v.split_once('.').unwrap_or((v, "0"));
                module.version = (
                    a.parse().map_err(|_| bad(line, "version", v))?,
                    b.trim().parse().map_err(|_| bad(line, "version", v))?,
                );
                if module.version.0 > 9 {
                    return err(line, format!(".version {v} is newer than PTX ISA 9.x"));
                }
                seen_version = true;
                c.line = line + 1;
            }
            ".target" | ".address_size" => {
                let (s, _) = c.until(b'\n')?;
                c.line = line + 1;
                let s = s.trim();
                if let Some(t) = s.strip_prefix(".target") {
                    module.target = t.trim().to_string();
                } else if s.trim_start_matches(".address_size").trim() != "64" {
                    return err(line, format!("'{s}': only 64-bit addressing is supported"));
                }
            }
            _ if w.starts_with(".visible") || w.starts_with(".entry") || w == ".weak" => {
                if c.head_has(".func") {
                    return err(line, "device functions (.func) are not supported");
                }
                if !c.head_has(".entry") {
                    let (s, l) = c.until(b';')?;
                    vars.push(parse_var(&s, l)?);
                    continue;
                }
                let (head, _) = c.until(b'(')?;
                let name = head.split_whitespace().last().unwrap_or("").to_string();
                let kernel = parse_kernel(&mut c, name, line, &vars)?;
                module
                    .kernel_index
                    .insert(kernel.name.clone(), module.kernels.len());
                module.kernels.push(Arc::new(kernel));
            }
            ".func" => return err(line, "device functions (.func) are not supported"),
            ".global" | ".const" | ".shared" | ".extern" | ".local" => {
                let (s, l) = c.until(b';')?;
                vars.push(parse_var(&s, l)?);
            }
            ".file" | ".section" | ".pragma" => {
                c.until(b'\n')?;
                c.line = line + 1;
            }
            _ => return err(line, format!("unsupported directive or statement '{w}'")),
        }
    }
    if !seen_version {
        return err(1, "no .version directive: not PTX text");
    }
    module.globals = vars
        .into_iter()
        .filter(|v| matches!(v.var.space, Space::Global | Space::Const) && !v.extern_)
        .map(|v| v.var)
        .collect();
    Ok(module)
}

fn bad(line: u32, what: &str, got: &str) -> ParseError {
    ParseError {
        line,
        message: format!("bad {what} '{got}'"),
    }
}

/// `[.visible|.extern] .global|.const|.shared|.local [.align N] .type name[N][N]… [= init]`.
fn parse_var(s: &str, line: u32) -> PResult<ModVar> {
    let (decl, init) = match s.split_once('=') {
        Some((d, i)) => (d, Some(i.trim())),
        None => (s, None),
    };
    let mut space = None;
    let mut align = 0u32;
    let mut ty = None;
    let mut extern_ = false;
    let mut name = String::new();
    let mut toks = decl.split_whitespace().peekable();
    while let Some(t) = toks.next() {
        match t {
            ".global" => space = Some(Space::Global),
            ".const" => space = Some(Space::Const),
            ".shared" => space = Some(Space::Shared),
            ".local" => space = Some(Space::Local),
            ".extern" => extern_ = true,
            ".visible" | ".weak" | ".common" => {}
            ".align" => {
                let n = toks.next().unwrap_or("");
                align = n.parse().map_err(|_| bad(line, "alignment", n))?;
            }
            ".ptr" => {}
            _ if t.starts_with('.') => {
                ty = Some(Ty::parse(&t[1..]).ok_or_else(|| bad(line, "variable type", t))?);
            }
            _ => {
                name = t.to_string();
                for rest in toks.by_ref() {
                    name.push_str(rest);
                }
            }
        }
    }
    let space = space.ok_or_else(|| bad(line, "variable declaration", s.trim()))?;
    let ty = ty.ok_or_else(|| bad(line, "variable type in", s.trim()))?;
    let (base, dims) = match name.find('[') {
        Some(i) => (name[..i].to_string(), &name[i..]),
        None => (name.clone(), ""),
    };
    let mut count: u64 = 1;
    let mut unsized_ = false;
    for d in dims.split('[').skip(1) {
        let d = d.trim_end_matches(']').trim();
        if d.is_empty() {
            unsized_ = true;
        } else {
            count *= d.parse::<u64>().map_err(|_| bad(line, "array size", d))?;
        }
    }
    let elem = ty.bytes().max(1);
    let size = if unsized_ { 0 } else { count * elem as u64 };
    if size > u32::MAX as u64 {
        return err(line, format!("variable {base} is too large"));
    }
    let mut bytes = vec![0u8; size as usize];
    if let Some(init) = init {
        let vals: Vec<&str> = init
            .trim_matches(|c| c == '{' || c == '}' || c == ' ')
            .split(',')
            .map(|v| v.trim().trim_matches(|c| c == '{' || c == '}').trim())
            .filter(|v| !v.is_empty())
            .collect();
        if vals.len() as u64 > count {
            return err(
                line,
                format!("{base}: {} initializers for {count} elements", vals.len()),
            );
        }
        for (i, v) in vals.iter().enumerate() {
            let bits = instr::literal(v, ty).ok_or_else(|| bad(line, "initializer", v))?;
            let at = i * elem as usize;
            bytes[at..at + elem as usize].copy_from_slice(&bits.to_le_bytes()[..elem as usize]);
        }
    }
    Ok(ModVar {
        var: GlobalVar {
            name: base,
            space,
            size: size as u32,
            align: align.max(elem),
            init: bytes,
        },
        extern_: extern_ || unsized_,
    })
}

/// Names visible in a kernel body: registers (scoped), parameters, variables, labels.
pub struct Names<'v> {
    /// Register prefix families from `.reg .b32 %r<N>`: prefix → (first index, count).
    families: Vec<HashMap<String, (u32, u32)>>,
    /// Plain register names (`.reg .f16 low, high;`, `%SP`), per scope.
    plain: Vec<HashMap<String, u32>>,
    pub reg_bits: Vec<u8>,
    pub reg_names: Vec<String>,
    /// Scoped registers are released at `}`: indices are reused by the next scope.
    next_reg: u32,
    scope_starts: Vec<u32>,
    pub params: HashMap<String, u32>,
    pub module_vars: &'v [ModVar],
    /// Kernel-level `.shared` and `.local` variables.
    pub kernel_shared: Vec<GlobalVar>,
    pub local_vars: HashMap<String, u32>,
    pub local_bytes: u32,
    pub labels: HashMap<String, u32>,
    /// Labels used before their definition: (instruction, operand path) fixed after the body.
    pub used_shared: Vec<SharedRef>,
}

/// A shared variable a kernel uses; offsets are given once the body is parsed.
#[derive(Clone, Debug, PartialEq)]
pub enum SharedRef {
    Module(usize),
    Kernel(usize),
}

impl<'v> Names<'v> {
    fn declare(&mut self, name: &str, bits: u8) {
        let idx = self.next_reg;
        self.next_reg += 1;
        if self.reg_bits.len() < self.next_reg as usize {
            self.reg_bits.push(bits);
            self.reg_names.push(name.to_string());
        } else {
            self.reg_bits[idx as usize] = bits;
            self.reg_names[idx as usize] = name.to_string();
        }
        self.plain.last_mut().unwrap().insert(name.to_string(), idx);
    }

    fn declare_family(&mut self, prefix: &str, n: u32, bits: u8) {
        let first = self.next_reg;
        self.next_reg += n;
        while self.reg_bits.len() < self.next_reg as usize {
            self.reg_bits.push(bits);
            self.reg_names.push(String::new());
        }
        for i in 0..n {
            self.reg_bits[(first + i) as usize] = bits;
            self.reg_names[(first + i) as usize] = format!("{prefix}{i}");
        }
        self.families
            .last_mut()
            .unwrap()
            .insert(prefix.to_string(), (first, n));
    }

    pub fn reg(&self, name: &str) -> Option<u32> {
        for scope in (0..self.plain.len()).rev() {
            if let Some(&i) = self.plain[scope].get(name) {
                return Some(i);
            }
            let digits = name.len()
                - name
                    .bytes()
                    .rev()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
            if digits < name.len() {
                if let Some(&(first, n)) = self.families[scope].get(&name[..digits]) {
                    let k: u32 = name[digits..].parse().ok()?;
                    if k < n {
                        return Some(first + k);
                    }
                    return None;
                }
            }
        }
        None
    }

    /// A symbol used as an address base.
    pub fn symbol(&mut self, name: &str) -> Option<AddrBase> {
        if let Some(&off) = self.params.get(name) {
            return Some(AddrBase::Param(off));
        }
        if let Some(&off) = self.local_vars.get(name) {
            return Some(AddrBase::Local(off));
        }
        if let Some(i) = self.kernel_shared.iter().position(|v| v.name == name) {
            return Some(self.shared_ref(SharedRef::Kernel(i)));
        }
        let i = self.module_vars.iter().position(|v| v.var.name == name)?;
        match self.module_vars[i].var.space {
            Space::Shared => Some(self.shared_ref(SharedRef::Module(i))),
            Space::Global | Space::Const => {
                let gi = self.module_vars[..i]
                    .iter()
                    .filter(|v| matches!(v.var.space, Space::Global | Space::Const) && !v.extern_)
                    .count();
                Some(AddrBase::Global(gi as u32))
            }
            _ => None,
        }
    }

    /// Shared bases are numbered by use order until layout replaces them with offsets.
    fn shared_ref(&mut self, r: SharedRef) -> AddrBase {
        let i = match self.used_shared.iter().position(|u| *u == r) {
            Some(i) => i,
            None => {
                self.used_shared.push(r);
                self.used_shared.len() - 1
            }
        };
        AddrBase::Shared(i as u32)
    }
}

fn parse_kernel(c: &mut Cursor, name: String, line: u32, vars: &[ModVar]) -> PResult<Kernel> {
    let (plist, pline) = c.until(b')')?;
    let mut params = Vec::new();
    let mut offset = 0u32;
    for p in plist.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut ty = None;
        let mut align = 0;
        let mut pname = "";
        let mut toks = p.split_whitespace();
        while let Some(t) = toks.next() {
            match t {
                ".param" | ".ptr" | ".global" | ".shared" | ".const" | ".local" => {}
                ".align" => {
                    let n = toks.next().unwrap_or("");
                    align = n
                        .parse()
                        .map_err(|_| bad(pline, "parameter alignment", n))?;
                }
                _ if t.starts_with('.') => {
                    ty = Some(Ty::parse(&t[1..]).ok_or_else(|| bad(pline, "parameter type", t))?)
                }
                _ => pname = t,
            }
        }
        let ty = ty.ok_or_else(|| bad(pline, "parameter", p))?;
        let (base, count) = match pname.split_once('[') {
            Some((b, n)) => {
                let n = n.trim_end_matches(']');
                (
                    b,
                    n.parse::<u32>()
                        .map_err(|_| bad(pline, "parameter array size", n))?,
                )
            }
            None => (pname, 1),
        };
        let size = ty.bytes() * count;
        let align = if align == 0 { ty.bytes() } else { align };
        offset = offset.div_ceil(align) * align;
        params.push(Param {
            name: base.to_string(),
            ty,
            size,
            align,
            offset,
        });
        offset += size;
    }
    let mut maxntid = None;
    let mut reqntid = None;
    loop {
        c.skip_space();
        match c.peek() {
            Some(b'{') => {
                c.pos += 1;
                break;
            }
            Some(_) => {
                let w = c.word().to_string();
                let l = c.line;
                let (s, _) = c.until(b'\n')?;
                c.line = l + 1;
                let dims = || -> PResult<[u32; 3]> {
                    let mut d = [1u32; 3];
                    let v: Vec<&str> = s
                        .trim_start_matches(w.as_str())
                        .split(',')
                        .map(str::trim)
                        .collect();
                    for (i, x) in v.iter().enumerate().take(3) {
                        d[i] = x.trim_end_matches(';').parse().map_err(|_| bad(l, &w, x))?;
                    }
                    Ok(d)
                };
                match w.as_str() {
                    ".maxntid" => maxntid = Some(dims()?),
                    ".reqntid" => reqntid = Some(dims()?),
                    ".minnctapersm" | ".maxnctapersm" | ".maxnreg" | ".pragma" | ".noreturn"
                    | ".maxclusterrank" | ".reqnctapercluster" | ".explicitcluster" => {}
                    _ => return err(l, format!("unsupported kernel directive '{w}'")),
                }
            }
            None => return err(line, format!("kernel {name} has no body")),
        }
    }
    let mut names = Names {
        families: vec![HashMap::new()],
        plain: vec![HashMap::new()],
        reg_bits: Vec::new(),
        reg_names: Vec::new(),
        next_reg: 0,
        scope_starts: Vec::new(),
        params: params.iter().map(|p| (p.name.clone(), p.offset)).collect(),
        module_vars: vars,
        kernel_shared: Vec::new(),
        local_vars: HashMap::new(),
        local_bytes: 0,
        labels: HashMap::new(),
        used_shared: Vec::new(),
    };
    let mut code: Vec<Instr> = Vec::new();
    // (instruction index, label name, line): branch targets resolved after the body.
    let mut pending: Vec<(usize, String, u32)> = Vec::new();
    parse_body(c, &mut names, &mut code, &mut pending)?;
    for (i, label, l) in pending {
        let target = *names
            .labels
            .get(&label)
            .ok_or_else(|| bad(l, "branch target (undefined label)", &label))?;
        for a in code[i].args.iter_mut() {
            if *a == Operand::Label(u32::MAX) {
                *a = Operand::Label(target);
            }
        }
    }
    let (static_shared, dynamic_shared_align, offsets) = layout_shared(&names);
    for ins in code.iter_mut() {
        for a in ins.args.iter_mut() {
            relocate_shared(a, &offsets);
        }
    }
    let reg_bits = names.reg_bits.clone();
    Ok(Kernel {
        name,
        params,
        param_bytes: offset,
        reg_bits,
        reg_names: names.reg_names.clone(),
        code,
        static_shared,
        dynamic_shared_align,
        local_bytes: names.local_bytes,
        maxntid,
        reqntid,
    })
}

fn relocate_shared(a: &mut Operand, offsets: &[u32]) {
    match a {
        Operand::Addr(AddrBase::Shared(i), _) | Operand::SymAddr(AddrBase::Shared(i)) => {
            *i = offsets[*i as usize];
        }
        Operand::Vec(v) => v.iter_mut().for_each(|x| relocate_shared(x, offsets)),
        _ => {}
    }
}

/// Static shared variables in first-use order at their alignment; `.extern` ones all start at
/// the dynamic offset. Returns (static bytes, dynamic alignment, offset of each used variable).
fn layout_shared(names: &Names) -> (u32, u32, Vec<u32>) {
    let mut offsets = vec![0u32; names.used_shared.len()];
    let mut top = 0u32;
    let mut dyn_align = 0u32;
    let mut dynamic = Vec::new();
    for (i, r) in names.used_shared.iter().enumerate() {
        let (var, extern_) = match r {
            SharedRef::Module(m) => (&names.module_vars[*m].var, names.module_vars[*m].extern_),
            SharedRef::Kernel(k) => (&names.kernel_shared[*k], false),
        };
        if extern_ {
            dyn_align = dyn_align.max(var.align.max(1));
            dynamic.push(i);
        } else {
            let a = var.align.max(1);
            top = top.div_ceil(a) * a;
            offsets[i] = top;
            top += var.size;
        }
    }
    let a = dyn_align.max(1);
    let dyn_off = top.div_ceil(a) * a;
    for i in dynamic {
        offsets[i] = dyn_off;
    }
    (top, dyn_align, offsets)
}

fn parse_body(
    c: &mut Cursor,
    names: &mut Names,
    code: &mut Vec<Instr>,
    pending: &mut Vec<(usize, String, u32)>,
) -> PResult<()> {
    let mut depth = 0usize;
    loop {
        c.skip_space();
        let line = c.line;
        match c.peek() {
            None => return err(line, "unterminated kernel body"),
            Some(b'{') => {
                c.pos += 1;
                depth += 1;
                names.families.push(HashMap::new());
                names.plain.push(HashMap::new());
                names.scope_starts.push(names.next_reg);
                continue;
            }
            Some(b'}') => {
                c.pos += 1;
                if depth == 0 {
                    return Ok(());
                }
                depth -= 1;
                names.families.pop();
                names.plain.pop();
                names.next_reg = names.scope_starts.pop().unwrap_or(names.next_reg);
                continue;
            }
            _ => {}
        }
        let w = c.word();
        if w.ends_with(':') && !w.ends_with("::") {
            c.pos += w.len();
            let label = w.trim_end_matches(':').to_string();
            names.labels.insert(label, code.len() as u32);
            continue;
        }
        let (stmt, line) = c.until(b';')?;
        let stmt = stmt.trim();
        if stmt.is_empty() {
            continue;
        }
        if stmt.starts_with('.') {
            declare(stmt, line, names)?;
            continue;
        }
        let (ins, label) = decode_instr(stmt, line, names)?;
        if let Some(label) = label {
            match names.labels.get(&label) {
                Some(&t) => {
                    let mut ins = ins;
                    for a in ins.args.iter_mut() {
                        if *a == Operand::Label(u32::MAX) {
                            *a = Operand::Label(t);
                        }
                    }
                    code.push(ins);
                }
                None => {
                    pending.push((code.len(), label, line));
                    code.push(ins);
                }
            }
        } else {
            code.push(ins);
        }
    }
}

/// `.reg`, `.local`, `.shared`, `.pragma` inside a body.
fn declare(stmt: &str, line: u32, names: &mut Names) -> PResult<()> {
    let mut toks = stmt.splitn(2, char::is_whitespace);
    let dir = toks.next().unwrap_or("");
    let rest = toks.next().unwrap_or("").trim();
    match dir {
        ".reg" => {
            let (ty, list) = rest
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad(line, "register declaration", stmt))?;
            let ty = ty.trim();
            let ty = Ty::parse(ty.trim_start_matches('.'))
                .ok_or_else(|| bad(line, "register type", ty))?;
            let bits = match ty {
                Ty::Pred => 1,
                t => t.bits().min(64) as u8,
            };
            if ty == Ty::B128 {
                return err(line, "128-bit registers are not supported");
            }
            for r in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                if let Some((prefix, n)) = r.split_once('<') {
                    let n = n.trim_end_matches('>');
                    let n: u32 = n.parse().map_err(|_| bad(line, "register count", n))?;
                    names.declare_family(prefix.trim(), n, bits);
                } else {
                    names.declare(r, bits);
                }
            }
            Ok(())
        }
        ".local" => {
            let v = parse_var(stmt, line)?.var;
            let a = v.align.max(1);
            let off = names.local_bytes.div_ceil(a) * a;
            names.local_vars.insert(v.name, off);
            names.local_bytes = off + v.size;
            Ok(())
        }
        ".shared" => {
            let v = parse_var(stmt, line)?.var;
            names.kernel_shared.push(v);
            Ok(())
        }
        ".pragma" => Ok(()),
        _ => err(
            line,
            format!("unsupported directive '{dir}' in a kernel body"),
        ),
    }
}
