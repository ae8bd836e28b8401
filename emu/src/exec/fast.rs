//! Whole-warp forms of the most frequent instructions (moves, f16↔f32 conversions, f32
//! add/mul/fma with round-to-nearest, integer arithmetic and compares): each reads its operands
//! as 32-lane arrays and runs one tight loop, instead of dispatching on the opcode per lane.
//! Everything else, and every modifier these do not cover, takes the per-lane path in `alu`.

use super::{Exec, Warp};
use crate::float as fl;
use crate::ir::{Cmp, Instr, Op, Operand, Rnd, Space, Sub, Ty};

type Lanes = [u64; 32];

impl<'a> Exec<'a> {
    #[inline(always)]
    fn store(&self, w: &mut Warp, d: &Operand, mask: u32, out: &Lanes) -> bool {
        match d {
            Operand::Reg(r) => {
                let bits = self.kernel.reg_bits[*r as usize] as u32;
                let m = u64::MAX >> (64 - bits);
                let b = *r as usize * 32;
                let dst = &mut w.regs[b..b + 32];
                if mask == u32::MAX {
                    for l in 0..32 {
                        dst[l] = out[l] & m;
                    }
                } else {
                    super::for_lanes(mask, |l| dst[l] = out[l] & m);
                }
                true
            }
            Operand::Sink => true,
            _ => false,
        }
    }

    /// Runs `ins` for the lanes of `mask` if it has a whole-warp form; false otherwise.
    pub(crate) fn alu_fast(&mut self, w: &mut Warp, ins: &Instr, mask: u32) -> bool {
        let m = &ins.mods;
        let plain = !m.ftz && !m.sat && matches!(m.rnd, Rnd::None | Rnd::Rn);
        let args = &ins.args;
        let d = &args[0];
        // Sources are borrowed from the register file (literals from a broadcast buffer).
        let mut imm = [[0u64; 32]; 4];
        for (i, o) in args.iter().enumerate().skip(1).take(3) {
            match o {
                Operand::Reg(_) => {}
                Operand::Imm(v) => imm[i] = [*v; 32],
                _ => return false,
            }
        }
        macro_rules! src {
            ($i:expr) => {
                match args.get($i) {
                    Some(Operand::Reg(r)) => {
                        let b = *r as usize * 32;
                        <&Lanes>::try_from(&w.regs[b..b + 32]).unwrap()
                    }
                    Some(Operand::Imm(_)) => &imm[$i],
                    _ => return false,
                }
            };
        }
        macro_rules! map1 {
            (|$a:ident| $e:expr) => {{
                let a = src!(1);
                let mut out = [0u64; 32];
                for l in 0..32 {
                    let $a = a[l];
                    out[l] = $e;
                }
                out
            }};
        }
        macro_rules! map2 {
            (|$a:ident, $b:ident| $e:expr) => {{
                let a = src!(1);
                let b = src!(2);
                let mut out = [0u64; 32];
                for l in 0..32 {
                    let ($a, $b) = (a[l], b[l]);
                    out[l] = $e;
                }
                out
            }};
        }
        let bits = ins.ty.bits();
        let out: Lanes = match (ins.op, ins.ty) {
            (Op::Mov, _) if !matches!(d, Operand::Vec(_)) => map1!(|a| a),
            (Op::Mov, Ty::B32 | Ty::B64) => {
                // unpack {lo, hi} = wide
                let Operand::Vec(parts) = d else { return false };
                let a: Lanes = *src!(1);
                let width = bits / parts.len() as u32;
                let em = u64::MAX >> (64 - width);
                for (i, p) in parts.iter().enumerate() {
                    let mut out = [0u64; 32];
                    for l in 0..32 {
                        out[l] = (a[l] >> (width * i as u32)) & em;
                    }
                    if !self.store(w, p, mask, &out) {
                        return false;
                    }
                }
                return true;
            }
            (Op::Cvt, Ty::F32) if ins.ty2 == Ty::F16 && !m.ftz && !m.sat => {
                map1!(|a| fl::f16_to_f32(a as u16).to_bits() as u64)
            }
            (Op::Cvt, Ty::F16) if ins.ty2 == Ty::F32 && plain => {
                map1!(|a| fl::cvt(a, Ty::F16, Ty::F32, Rnd::Rn, false, false))
            }
            (Op::Cvt, Ty::S64) if ins.ty2 == Ty::S32 && plain => {
                map1!(|a| a as u32 as i32 as i64 as u64)
            }
            (Op::Cvt, Ty::U64) if ins.ty2 == Ty::U32 && plain => map1!(|a| a & 0xffff_ffff),
            (Op::Cvt, Ty::U32 | Ty::S32) if matches!(ins.ty2, Ty::U64 | Ty::S64) && plain => {
                map1!(|a| a & 0xffff_ffff)
            }
            (Op::Cvta, _) if m.space == Space::Global => map1!(|a| a),
            (Op::Add, Ty::F32) if plain => map2!(|a, b| {
                let r = f32::from_bits(a as u32) + f32::from_bits(b as u32);
                canon(r)
            }),
            (Op::Sub, Ty::F32) if plain => map2!(|a, b| {
                let r = f32::from_bits(a as u32) - f32::from_bits(b as u32);
                canon(r)
            }),
            (Op::Mul, Ty::F32) if plain => map2!(|a, b| {
                let r = f32::from_bits(a as u32) * f32::from_bits(b as u32);
                canon(r)
            }),
            (Op::Fma, Ty::F32) if plain => {
                let a = src!(1);
                let b = src!(2);
                let c = src!(3);
                let mut out = [0u64; 32];
                for l in 0..32 {
                    let r = fl::fma32_rn(
                        f32::from_bits(a[l] as u32),
                        f32::from_bits(b[l] as u32),
                        f32::from_bits(c[l] as u32),
                    );
                    out[l] = canon(r);
                }
                out
            }
            (Op::Add, Ty::S32 | Ty::U32 | Ty::B32 | Ty::S64 | Ty::U64 | Ty::B64) if !m.sat => {
                map2!(|a, b| a.wrapping_add(b))
            }
            (Op::Sub, Ty::S32 | Ty::U32 | Ty::B32 | Ty::S64 | Ty::U64 | Ty::B64) if !m.sat => {
                map2!(|a, b| a.wrapping_sub(b))
            }
            (Op::Mul, Ty::S32 | Ty::U32 | Ty::S64 | Ty::U64) if !m.hi && !m.wide => {
                map2!(|a, b| a.wrapping_mul(b))
            }
            (Op::Mul, Ty::S32) if m.wide => {
                map2!(|a, b| (a as u32 as i32 as i64).wrapping_mul(b as u32 as i32 as i64) as u64)
            }
            (Op::Mul, Ty::U32) if m.wide => map2!(|a, b| (a & 0xffff_ffff) * (b & 0xffff_ffff)),
            (Op::Mad, Ty::S32 | Ty::U32 | Ty::S64 | Ty::U64) if !m.hi && !m.wide && !m.sat => {
                let a = src!(1);
                let b = src!(2);
                let c = src!(3);
                let mut out = [0u64; 32];
                for l in 0..32 {
                    out[l] = a[l].wrapping_mul(b[l]).wrapping_add(c[l]);
                }
                out
            }
            (Op::And, _) => map2!(|a, b| a & b),
            (Op::Or, _) => map2!(|a, b| a | b),
            (Op::Xor, _) => map2!(|a, b| a ^ b),
            (Op::Shl, Ty::B32 | Ty::B64) => map2!(|a, b| {
                let s = b & 0xffff_ffff;
                if s >= bits as u64 {
                    0
                } else {
                    a << s
                }
            }),
            (Op::Shr, Ty::U32 | Ty::B32 | Ty::U64 | Ty::B64) => map2!(|a, b| {
                let s = b & 0xffff_ffff;
                let a = a & (u64::MAX >> (64 - bits));
                if s >= bits as u64 {
                    0
                } else {
                    a >> s
                }
            }),
            (Op::Shr, Ty::S32) => {
                map2!(|a, b| ((a as u32 as i32) >> (b & 0xffff_ffff).min(31)) as u32 as u64)
            }
            (Op::Shr, Ty::S64) => map2!(|a, b| ((a as i64) >> (b & 0xffff_ffff).min(63)) as u64),
            (Op::Selp, _) => {
                let a = src!(1);
                let b = src!(2);
                let c = src!(3);
                let mut out = [0u64; 32];
                for l in 0..32 {
                    out[l] = if c[l] & 1 != 0 { a[l] } else { b[l] };
                }
                out
            }
            (Op::Setp, Ty::S32 | Ty::U32 | Ty::B32 | Ty::S64 | Ty::U64 | Ty::B64 | Ty::F32)
                if m.sub == Sub::None && !m.ftz && !matches!(d, Operand::Vec(_)) =>
            {
                let cmp = m.cmp.unwrap_or(Cmp::Eq);
                let ty = ins.ty;
                map2!(|a, b| super::alu::compare(ty, cmp, a, b, false) as u64)
            }
            _ => return false,
        };
        self.store(w, d, mask, &out)
    }
}

#[inline(always)]
fn canon(r: f32) -> u64 {
    if r.is_nan() {
        fl::NAN_F32 as u64
    } else {
        r.to_bits() as u64
    }
}
