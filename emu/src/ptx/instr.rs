//! One PTX instruction statement → [`Instr`]: opcode, modifiers, types and operands.

use super::{bad, err, Names, PResult};
use crate::ir::{AddrBase, Cmp, Instr, Mods, Op, Operand, Rnd, Space, Special, Sub, Ty};

/// Decodes `[@[!]%p] opcode.mods operands`. Returns the instruction and, for a branch, the
/// label it names (its operand is `Label(u32::MAX)` until resolved).
pub fn decode_instr(stmt: &str, line: u32, names: &mut Names) -> PResult<(Instr, Option<String>)> {
    let mut s = stmt.trim();
    let mut guard = None;
    if let Some(rest) = s.strip_prefix('@') {
        let (g, r) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad(line, "guarded instruction", stmt))?;
        let (neg, g) = match g.strip_prefix('!') {
            Some(g) => (true, g),
            None => (false, g),
        };
        let reg = names
            .reg(g)
            .ok_or_else(|| bad(line, "guard predicate", g))?;
        guard = Some((reg, neg));
        s = r.trim();
    }
    let (opcode, rest) = match s.split_once(char::is_whitespace) {
        Some((o, r)) => (o, r.trim()),
        None => (s, ""),
    };
    let mut ins = opcode_of(opcode, line)?;
    ins.guard = guard;
    ins.line = line;
    let imm_ty = match ins.op {
        Op::Cvt => ins.ty2,
        _ => ins.ty,
    };
    let mut label = None;
    for text in split_top(rest) {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let o = if ins.op == Op::Bra {
            label = Some(text.to_string());
            Operand::Label(u32::MAX)
        } else {
            operand(text, imm_ty, line, names)?
        };
        ins.args.push(o);
    }
    Ok((ins, label))
}

/// Splits on commas outside brackets.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn operand(text: &str, ty: Ty, line: u32, names: &mut Names) -> PResult<Operand> {
    let t = text.trim();
    if let Some(inner) = t.strip_prefix('{') {
        let inner = inner.trim_end_matches('}');
        let v = split_top(inner)
            .into_iter()
            .map(|x| operand(x, ty, line, names))
            .collect::<PResult<Vec<_>>>()?;
        return Ok(Operand::Vec(v));
    }
    if let Some(inner) = t.strip_prefix('[') {
        let inner = inner.trim_end_matches(']').trim();
        return address(inner, line, names);
    }
    if t.contains('|') {
        let v = t
            .split('|')
            .map(|x| operand(x, ty, line, names))
            .collect::<PResult<Vec<_>>>()?;
        return Ok(Operand::Vec(v));
    }
    if t == "_" {
        return Ok(Operand::Sink);
    }
    if let Some(p) = t.strip_prefix('!') {
        let r = names.reg(p).ok_or_else(|| bad(line, "predicate", p))?;
        return Ok(Operand::PredNot(r));
    }
    if let Some(sp) = special(t) {
        return Ok(Operand::Special(sp));
    }
    if let Some(r) = names.reg(t) {
        return Ok(Operand::Reg(r));
    }
    let first = t.as_bytes()[0];
    if first.is_ascii_digit() || first == b'-' || first == b'+' {
        return literal(t, ty)
            .map(Operand::Imm)
            .ok_or_else(|| bad(line, "literal", t));
    }
    match names.symbol(t) {
        Some(b) => Ok(Operand::SymAddr(b)),
        None => err(line, format!("unknown name '{t}'")),
    }
}

fn address(inner: &str, line: u32, names: &mut Names) -> PResult<Operand> {
    // base, base+off, base+-off, base-off, or a bare number
    let (base, off) = match inner[1..].find(['+', '-']) {
        Some(i) => {
            let (b, o) = inner.split_at(i + 1);
            let o = o.trim();
            let (neg, digits) = match o.strip_prefix('+') {
                Some(d) => match d.trim().strip_prefix('-') {
                    Some(d) => (true, d),
                    None => (false, d),
                },
                None => (true, o.trim_start_matches('-')),
            };
            let v = literal(digits.trim(), Ty::S64).ok_or_else(|| bad(line, "address offset", o))?
                as i64;
            (b.trim(), if neg { -v } else { v })
        }
        None => (inner, 0),
    };
    if base.is_empty() {
        return err(line, "empty address");
    }
    if base.as_bytes()[0].is_ascii_digit() {
        let v = literal(base, Ty::U64).ok_or_else(|| bad(line, "address", base))?;
        return Ok(Operand::Addr(AddrBase::Absolute, v as i64 + off));
    }
    if let Some(r) = names.reg(base) {
        return Ok(Operand::Addr(AddrBase::Reg(r), off));
    }
    match names.symbol(base) {
        Some(b) => Ok(Operand::Addr(b, off)),
        None => err(line, format!("unknown address base '{base}'")),
    }
}

fn special(t: &str) -> Option<Special> {
    let dim = |s: &str| match s {
        "x" => Some(0u8),
        "y" => Some(1),
        "z" => Some(2),
        _ => None,
    };
    if let Some((name, d)) = t.split_once('.') {
        let d = dim(d)?;
        return Some(match name {
            "%tid" => Special::Tid(d),
            "%ntid" => Special::Ntid(d),
            "%ctaid" => Special::Ctaid(d),
            "%nctaid" => Special::Nctaid(d),
            _ => return None,
        });
    }
    Some(match t {
        "%laneid" => Special::LaneId,
        "%warpid" => Special::WarpId,
        "%nwarpid" => Special::NWarpId,
        "%smid" => Special::SmId,
        "%nsmid" => Special::NSmId,
        "%gridid" => Special::GridId,
        "%lanemask_eq" => Special::LaneMaskEq,
        "%lanemask_lt" => Special::LaneMaskLt,
        "%lanemask_le" => Special::LaneMaskLe,
        "%lanemask_gt" => Special::LaneMaskGt,
        "%lanemask_ge" => Special::LaneMaskGe,
        "%clock" => Special::Clock,
        "%clock64" => Special::Clock64,
        "%globaltimer" => Special::GlobalTimer,
        "%dynamic_smem_size" => Special::DynamicSmemSize,
        "%total_smem_size" => Special::TotalSmemSize,
        _ => return None,
    })
}

/// A literal's bits for an operand of type `ty`: integers sign-extended to 64 bits (converted
/// to the float format when `ty` is a float type), `0f`/`0d` float literals as f32/f64 bits
/// (converted when the other width is wanted).
pub fn literal(v: &str, ty: Ty) -> Option<u64> {
    let v = v.trim();
    let (neg, body) = match v.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    if let Some(h) = body.strip_prefix("0f").or_else(|| body.strip_prefix("0F")) {
        let bits = u32::from_str_radix(h, 16).ok()?;
        let bits = if neg { bits ^ 0x8000_0000 } else { bits };
        return Some(match ty {
            Ty::F64 => (f32::from_bits(bits) as f64).to_bits(),
            _ => bits as u64,
        });
    }
    if let Some(h) = body.strip_prefix("0d").or_else(|| body.strip_prefix("0D")) {
        let bits = u64::from_str_radix(h, 16).ok()?;
        let bits = if neg { bits ^ (1 << 63) } else { bits };
        return Some(match ty {
            Ty::F32 => (f64::from_bits(bits) as f32).to_bits() as u64,
            _ => bits,
        });
    }
    let body = body.trim_end_matches(['U', 'u']);
    let mag: u64 = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else if let Some(b) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
        u64::from_str_radix(b, 2).ok()?
    } else if body.len() > 1 && body.starts_with('0') && body.bytes().all(|c| c.is_ascii_digit()) {
        u64::from_str_radix(&body[1..], 8).ok()?
    } else if body.bytes().all(|c| c.is_ascii_digit()) && !body.is_empty() {
        body.parse().ok()?
    } else {
        let f: f64 = body.parse().ok()?;
        let f = if neg { -f } else { f };
        return Some(match ty {
            Ty::F32 => (f as f32).to_bits() as u64,
            Ty::F16 => half::f16::from_f64(f).to_bits() as u64,
            _ => f.to_bits(),
        });
    };
    let val = if neg { mag.wrapping_neg() } else { mag };
    Some(match ty {
        Ty::F32 => (val as i64 as f32).to_bits() as u64,
        Ty::F64 => (val as i64 as f64).to_bits(),
        Ty::F16 => half::f16::from_f64(val as i64 as f64).to_bits() as u64,
        _ => val,
    })
}

fn new_instr(op: Op) -> Instr {
    Instr {
        op,
        ty: Ty::B32,
        ty2: Ty::B32,
        ty3: Ty::B32,
        mods: Mods {
            vec: 1,
            ..Mods::default()
        },
        args: Vec::new(),
        guard: None,
        line: 0,
    }
}

fn base_op(name: &str) -> Option<Op> {
    Some(match name {
        "mov" => Op::Mov,
        "ld" => Op::Ld,
        "ldu" => Op::Ld,
        "st" => Op::St,
        "add" => Op::Add,
        "sub" => Op::Sub,
        "mul" => Op::Mul,
        "mad" => Op::Mad,
        "fma" => Op::Fma,
        "div" => Op::Div,
        "rem" => Op::Rem,
        "abs" => Op::Abs,
        "neg" => Op::Neg,
        "min" => Op::Min,
        "max" => Op::Max,
        "and" => Op::And,
        "or" => Op::Or,
        "xor" => Op::Xor,
        "not" => Op::Not,
        "cnot" => Op::Cnot,
        "shl" => Op::Shl,
        "shr" => Op::Shr,
        "shf" => Op::Shf,
        "setp" => Op::Setp,
        "selp" => Op::Selp,
        "slct" => Op::Slct,
        "cvt" => Op::Cvt,
        "cvta" => Op::Cvta,
        "bra" => Op::Bra,
        "ret" => Op::Ret,
        "exit" => Op::Exit,
        "trap" => Op::Trap,
        "membar" | "fence" => Op::Membar,
        "shfl" => Op::Shfl,
        "vote" => Op::Vote,
        "activemask" => Op::Activemask,
        "mma" => Op::Mma,
        "ldmatrix" => Op::Ldmatrix,
        "atom" => Op::Atom,
        "red" => Op::Red,
        "prmt" => Op::Prmt,
        "bfe" => Op::Bfe,
        "bfi" => Op::Bfi,
        "brev" => Op::Brev,
        "popc" => Op::Popc,
        "clz" => Op::Clz,
        "lop3" => Op::Lop3,
        "ex2" => Op::Ex2,
        "lg2" => Op::Lg2,
        "rsqrt" => Op::Rsqrt,
        "rcp" => Op::Rcp,
        "sqrt" => Op::Sqrt,
        "sin" => Op::Sin,
        "cos" => Op::Cos,
        "tanh" => Op::Tanh,
        "copysign" => Op::Copysign,
        "testp" => Op::Testp,
        "nanosleep" => Op::Nanosleep,
        "prefetch" | "prefetchu" => Op::Prefetch,
        "mad24" => Op::Mad24,
        "mul24" => Op::Mul24,
        "sad" => Op::Sad,
        "dp4a" => Op::Dp4a,
        "dp2a" => Op::Dp2a,
        _ => return None,
    })
}

fn cmp_of(s: &str) -> Option<Cmp> {
    Some(match s {
        "eq" => Cmp::Eq,
        "ne" => Cmp::Ne,
        "lt" => Cmp::Lt,
        "le" => Cmp::Le,
        "gt" => Cmp::Gt,
        "ge" => Cmp::Ge,
        "lo" => Cmp::Lo,
        "ls" => Cmp::Ls,
        "hi" => Cmp::Hi,
        "hs" => Cmp::Hs,
        "equ" => Cmp::Equ,
        "neu" => Cmp::Neu,
        "ltu" => Cmp::Ltu,
        "leu" => Cmp::Leu,
        "gtu" => Cmp::Gtu,
        "geu" => Cmp::Geu,
        "num" => Cmp::Num,
        "nan" => Cmp::Nan,
        _ => return None,
    })
}

fn space_of(s: &str) -> Option<Space> {
    Some(match s {
        "global" => Space::Global,
        "shared" | "shared::cta" | "shared::cluster" => Space::Shared,
        "local" => Space::Local,
        "param" | "param::entry" => Space::Param,
        "const" => Space::Const,
        _ => return None,
    })
}

/// Parses `opcode.mod.mod.type…` into an instruction with no operands.
fn opcode_of(opcode: &str, line: u32) -> PResult<Instr> {
    let mut pieces = opcode.split('.');
    let head = pieces.next().unwrap_or("");
    let mut rest: Vec<&str> = pieces.collect();
    let op = match head {
        "cp" => {
            if rest.first() != Some(&"async") {
                return err(line, format!("unsupported instruction '{opcode}'"));
            }
            rest.remove(0);
            match rest.first().copied() {
                Some("commit_group") => Op::CpAsyncCommit,
                Some("wait_group") => Op::CpAsyncWait,
                Some("wait_all") => Op::CpAsyncWaitAll,
                _ => Op::CpAsync,
            }
        }
        "bar" | "barrier" => match rest.first().copied() {
            Some("sync") => Op::BarSync,
            Some("red") => Op::BarRed,
            Some("arrive") => Op::BarArrive,
            Some("warp") => Op::BarWarpSync,
            Some("cta") => {
                rest.remove(0);
                match rest.first().copied() {
                    Some("sync") => Op::BarSync,
                    Some("red") => Op::BarRed,
                    Some("arrive") => Op::BarArrive,
                    _ => return err(line, format!("unsupported instruction '{opcode}'")),
                }
            }
            None if head == "bar" => return err(line, "bar without .sync/.red/.arrive"),
            _ => return err(line, format!("unsupported instruction '{opcode}'")),
        },
        _ => base_op(head).ok_or_else(|| bad(line, "instruction (unsupported)", opcode))?,
    };
    let mut ins = new_instr(op);
    let mut types = Vec::new();
    let mut layouts = Vec::new();
    let m = &mut ins.mods;
    for p in rest {
        if let Some(t) = Ty::parse(p) {
            types.push(t);
            continue;
        }
        if p.contains("::") && (p.starts_with("L1") || p.starts_with("L2")) {
            continue; // cache eviction / prefetch hints: no semantics here
        }
        if let Some(sp) = space_of(p) {
            if m.space == Space::Generic || op == Op::Cvta {
                m.space = sp;
            }
            continue;
        }
        if op == Op::Setp && m.cmp.is_none() {
            if let Some(c) = cmp_of(p) {
                m.cmp = Some(c);
                continue;
            }
        }
        if op == Op::Shf {
            match p {
                "l" | "r" => {
                    m.kind = (p == "r") as u8;
                    continue;
                }
                "clamp" | "wrap" => {
                    m.sat = p == "clamp";
                    continue;
                }
                _ => {}
            }
        }
        if matches!(op, Op::BarSync | Op::BarRed) && head == "bar" {
            m.aligned = true;
        }
        let ok = match p {
            "rn" => set_rnd(m, Rnd::Rn),
            "rz" => set_rnd(m, Rnd::Rz),
            "rm" => set_rnd(m, Rnd::Rm),
            "rp" => set_rnd(m, Rnd::Rp),
            "rna" => set_rnd(m, Rnd::Rna),
            "rni" => set_rnd(m, Rnd::Rni),
            "rzi" => set_rnd(m, Rnd::Rzi),
            "rmi" => set_rnd(m, Rnd::Rmi),
            "rpi" => set_rnd(m, Rnd::Rpi),
            "ftz" => {
                m.ftz = true;
                true
            }
            "sat" | "satfinite" => {
                m.sat = true;
                true
            }
            "approx" => {
                m.approx = true;
                true
            }
            "full" => {
                m.full = true;
                true
            }
            "uni" if op == Op::Bra => {
                m.uni = true;
                true
            }
            "uni" if op == Op::Vote => {
                m.sub = Sub::Uni;
                true
            }
            "v2" => {
                m.vec = 2;
                true
            }
            "v4" => {
                m.vec = 4;
                true
            }
            "v8" => {
                m.vec = 8;
                true
            }
            "lo" => true,
            "hi" => {
                m.hi = true;
                true
            }
            "wide" => {
                m.wide = true;
                true
            }
            "nc" => {
                m.nc = true;
                true
            }
            "volatile" => {
                m.volatile = true;
                true
            }
            "to" if op == Op::Cvta => {
                m.to = true;
                true
            }
            "NaN" => {
                m.nan = true;
                true
            }
            "relu" => {
                m.relu = true;
                true
            }
            "aligned" => {
                m.aligned = true;
                true
            }
            "sync" | "warp" | "cta" | "gpu" | "sys" | "cluster" | "relaxed" | "acquire"
            | "release" | "acq_rel" | "sc" | "weak" | "mmio" | "ca" | "cg" | "cs" | "lu" | "cv"
            | "wb" | "wt" | "shiftamt" | "clamp" | "wrap" | "cc" | "async" | "commit_group"
            | "wait_group" | "wait_all" | "red" | "arrive" | "noinc" => {
                match (op, p) {
                    (Op::CpAsync, "cg") => m.cg = true,
                    (Op::Ld | Op::St, "cc") => {}
                    (Op::Add | Op::Sub | Op::Mad, "cc") => {
                        return err(line, format!("'{opcode}': carry (.cc) is not supported"))
                    }
                    _ => {}
                }
                true
            }
            "row" | "col" => {
                layouts.push(p == "row");
                true
            }
            "x1" | "x2" | "x4" => {
                m.num = p[1..].parse().unwrap_or(1);
                true
            }
            "trans" => {
                m.trans = true;
                true
            }
            "finite" | "infinite" | "number" | "notanumber" | "normal" | "subnormal" => {
                m.kind = match p {
                    "finite" => 0,
                    "infinite" => 1,
                    "number" => 2,
                    "notanumber" => 3,
                    "normal" => 4,
                    _ => 5,
                };
                true
            }
            "f4e" | "b4e" | "rc8" | "ecl" | "ecr" | "rc16" => {
                m.prmt_mode = Some(match p {
                    "f4e" => 1,
                    "b4e" => 2,
                    "rc8" => 3,
                    "ecl" => 4,
                    "ecr" => 5,
                    _ => 6,
                });
                true
            }
            _ => sub_of(op, p, m) || shape_of(p, m),
        };
        if !ok {
            return err(
                line,
                format!("unsupported modifier '.{p}' in instruction '{opcode}'"),
            );
        }
    }
    if op == Op::Mma {
        m.a_row = layouts.first().copied().unwrap_or(true);
        m.b_col = !layouts.get(1).copied().unwrap_or(false);
    }
    match types.len() {
        0 => {}
        1 => {
            ins.ty = types[0];
            ins.ty2 = types[0];
            ins.ty3 = types[0];
        }
        2 => {
            ins.ty = types[0];
            ins.ty2 = types[1];
            ins.ty3 = types[1];
        }
        _ => {
            // mma: .dtype.atype.btype.ctype
            ins.ty = types[0];
            ins.ty2 = types[1];
            ins.ty3 = *types.last().unwrap();
        }
    }
    if op == Op::Setp && ins.mods.cmp.is_none() {
        return err(line, format!("'{opcode}': setp without a comparison"));
    }
    Ok(ins)
}

fn set_rnd(m: &mut Mods, r: Rnd) -> bool {
    m.rnd = r;
    true
}

fn sub_of(op: Op, p: &str, m: &mut Mods) -> bool {
    let sub = match (op, p) {
        (Op::Setp, _) if cmp_of(p).is_some() && m.cmp.is_none() => {
            m.cmp = cmp_of(p);
            return true;
        }
        (Op::Setp | Op::BarRed, "and") => Sub::And,
        (Op::Setp | Op::BarRed, "or") => Sub::Or,
        (Op::Setp, "xor") => Sub::Xor,
        (Op::BarRed, "popc") => Sub::Popc,
        (Op::Vote, "all") => Sub::All,
        (Op::Vote, "any") => Sub::Any,
        (Op::Vote, "ballot") => Sub::Ballot,
        (Op::Shfl, "up") => Sub::Up,
        (Op::Shfl, "down") => Sub::Down,
        (Op::Shfl, "bfly") => Sub::Bfly,
        (Op::Shfl, "idx") => Sub::Idx,
        (Op::Atom | Op::Red, "add") => Sub::AtomAdd,
        (Op::Atom | Op::Red, "min") => Sub::AtomMin,
        (Op::Atom | Op::Red, "max") => Sub::AtomMax,
        (Op::Atom | Op::Red, "exch") => Sub::AtomExch,
        (Op::Atom | Op::Red, "cas") => Sub::AtomCas,
        (Op::Atom | Op::Red, "and") => Sub::AtomAnd,
        (Op::Atom | Op::Red, "or") => Sub::AtomOr,
        (Op::Atom | Op::Red, "xor") => Sub::AtomXor,
        (Op::Atom | Op::Red, "inc") => Sub::AtomInc,
        (Op::Atom | Op::Red, "dec") => Sub::AtomDec,
        _ => return false,
    };
    m.sub = sub;
    true
}

/// `m16n8k16`, `m8n8`.
fn shape_of(p: &str, m: &mut Mods) -> bool {
    let Some(r) = p.strip_prefix('m') else {
        return false;
    };
    let Some((mm, r)) = r.split_once('n') else {
        return false;
    };
    let (nn, kk) = match r.split_once('k') {
        Some((n, k)) => (n, k),
        None => (r, "0"),
    };
    match (mm.parse(), nn.parse(), kk.parse()) {
        (Ok(a), Ok(b), Ok(c)) => {
            m.shape = (a, b, c);
            true
        }
        _ => false,
    }
}
