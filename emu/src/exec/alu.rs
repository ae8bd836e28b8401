//! Arithmetic, logic, comparison and conversion instructions: integer results wrap in their
//! width, float results come from [`crate::float`] with the instruction's rounding modifiers.

use super::{Exec, Flow, Stop, Warp};
use crate::error::CuError;
use crate::float as fl;
use crate::ir::{Cmp, Instr, Op, Operand, Rnd, Sub, Ty};

#[inline]
fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

#[inline]
fn sx(v: u64, bits: u32) -> i64 {
    if bits >= 64 {
        v as i64
    } else {
        ((v << (64 - bits)) as i64) >> (64 - bits)
    }
}

impl<'a> Exec<'a> {
    pub(crate) fn alu(&mut self, w: &mut Warp, ins: &Instr, mask_: u32) -> Flow<()> {
        match ins.op {
            Op::Mov => {
                self.mov(w, ins, mask_);
                return Ok(());
            }
            Op::Setp => {
                self.setp(w, ins, mask_);
                return Ok(());
            }
            _ => {}
        }
        let nsrc = ins.args.len().saturating_sub(1);
        let d = &ins.args[0];
        let mut m = mask_;
        while m != 0 {
            let l = m.trailing_zeros() as usize;
            m &= m - 1;
            let a = if nsrc >= 1 {
                self.get(w, l, &ins.args[1])
            } else {
                0
            };
            let b = if nsrc >= 2 {
                self.get(w, l, &ins.args[2])
            } else {
                0
            };
            let c = if nsrc >= 3 {
                self.get(w, l, &ins.args[3])
            } else {
                0
            };
            let e = if nsrc >= 4 {
                self.get(w, l, &ins.args[4])
            } else {
                0
            };
            let v = match compute(ins, a, b, c, e) {
                Some(v) => v,
                None => {
                    self.finding(
                        "unsupported",
                        ins.line,
                        w,
                        l as u32,
                        None,
                        format!(
                            "instruction {:?} with type {:?} is not emulated",
                            ins.op, ins.ty
                        ),
                    );
                    return Err(Stop::Fault(CuError::LaunchFailed));
                }
            };
            self.set(w, l, d, v);
        }
        Ok(())
    }

    fn mov(&mut self, w: &mut Warp, ins: &Instr, mask_: u32) {
        let d = &ins.args[0];
        let s = &ins.args[1];
        let mut m = mask_;
        while m != 0 {
            let l = m.trailing_zeros() as usize;
            m &= m - 1;
            match (d, s) {
                (Operand::Vec(parts), src) => {
                    // unpack: {lo, hi} = wide
                    let v = self.get(w, l, src);
                    let width = ins.ty.bits() / parts.len() as u32;
                    for (i, p) in parts.iter().enumerate() {
                        self.set(w, l, p, (v >> (width * i as u32)) & mask(width));
                    }
                }
                (dst, Operand::Vec(parts)) => {
                    let width = ins.ty.bits() / parts.len() as u32;
                    let mut v = 0u64;
                    for (i, p) in parts.iter().enumerate() {
                        v |= (self.get(w, l, p) & mask(width)) << (width * i as u32);
                    }
                    self.set(w, l, dst, v);
                }
                (dst, src) => {
                    let v = self.get(w, l, src);
                    self.set(w, l, dst, v);
                }
            }
        }
    }

    fn setp(&mut self, w: &mut Warp, ins: &Instr, mask_: u32) {
        let cmp = ins.mods.cmp.unwrap_or(Cmp::Eq);
        let (p, q) = match &ins.args[0] {
            Operand::Vec(v) => (v[0].clone(), v.get(1).cloned()),
            o => (o.clone(), None),
        };
        let mut m = mask_;
        while m != 0 {
            let l = m.trailing_zeros() as usize;
            m &= m - 1;
            let a = self.get(w, l, &ins.args[1]);
            let b = self.get(w, l, &ins.args[2]);
            let r = compare(ins.ty, cmp, a, b, ins.mods.ftz);
            let (r, nr) = match ins.mods.sub {
                Sub::None => (r, !r),
                op => {
                    let c = self.get(w, l, &ins.args[3]) & 1 != 0;
                    match op {
                        Sub::And => (r && c, !r && c),
                        Sub::Or => (r || c, !r || c),
                        _ => (r ^ c, !r ^ c),
                    }
                }
            };
            self.set(w, l, &p, r as u64);
            if let Some(q) = &q {
                self.set(w, l, q, nr as u64);
            }
        }
    }
}

#[inline(always)]
pub(crate) fn compare(ty: Ty, cmp: Cmp, a: u64, b: u64, ftz: bool) -> bool {
    if ty.is_float() {
        return fl::setp_float(a, b, ty, cmp, ftz);
    }
    let bits = ty.bits();
    let (ua, ub) = (a & mask(bits), b & mask(bits));
    let (sa, sb) = (sx(a, bits), sx(b, bits));
    let signed = ty.is_signed();
    match cmp {
        Cmp::Eq => ua == ub,
        Cmp::Ne => ua != ub,
        Cmp::Lt => {
            if signed {
                sa < sb
            } else {
                ua < ub
            }
        }
        Cmp::Le => {
            if signed {
                sa <= sb
            } else {
                ua <= ub
            }
        }
        Cmp::Gt => {
            if signed {
                sa > sb
            } else {
                ua > ub
            }
        }
        Cmp::Ge => {
            if signed {
                sa >= sb
            } else {
                ua >= ub
            }
        }
        Cmp::Lo => ua < ub,
        Cmp::Ls => ua <= ub,
        Cmp::Hi => ua > ub,
        Cmp::Hs => ua >= ub,
        _ => false,
    }
}

fn rnd_or(r: Rnd) -> Rnd {
    if r == Rnd::None {
        Rnd::Rn
    } else {
        r
    }
}

/// One lane's result, or None for a type the instruction does not have.
fn compute(ins: &Instr, a: u64, b: u64, c: u64, e: u64) -> Option<u64> {
    let ty = ins.ty;
    let bits = ty.bits();
    let mm = &ins.mods;
    let r = mm.rnd;
    let (ftz, sat) = (mm.ftz, mm.sat);
    Some(match ins.op {
        Op::Add | Op::Sub => {
            let neg = ins.op == Op::Sub;
            match ty {
                Ty::F32 => {
                    (if neg {
                        fl::sub_f32(a as u32, b as u32, r, ftz, sat)
                    } else {
                        fl::add_f32(a as u32, b as u32, r, ftz, sat)
                    }) as u64
                }
                Ty::F64 => {
                    if neg {
                        fl::sub_f64(a, b, rnd_or(r))
                    } else {
                        fl::add_f64(a, b, rnd_or(r))
                    }
                }
                Ty::F16 => {
                    (if neg {
                        fl::sub_f16(a as u16, b as u16, r, ftz, sat)
                    } else {
                        fl::add_f16(a as u16, b as u16, r, ftz, sat)
                    }) as u64
                }
                Ty::Bf16 => {
                    (if neg {
                        fl::sub_bf16(a as u16, b as u16, r, ftz, sat)
                    } else {
                        fl::add_bf16(a as u16, b as u16, r, ftz, sat)
                    }) as u64
                }
                Ty::F16x2 => fl::f16x2(a as u32, b as u32, |x, y| {
                    if neg {
                        fl::sub_f16(x, y, r, ftz, sat)
                    } else {
                        fl::add_f16(x, y, r, ftz, sat)
                    }
                }) as u64,
                Ty::Bf16x2 => fl::f16x2(a as u32, b as u32, |x, y| {
                    if neg {
                        fl::sub_bf16(x, y, r, ftz, sat)
                    } else {
                        fl::add_bf16(x, y, r, ftz, sat)
                    }
                }) as u64,
                _ if sat && ty == Ty::S32 => {
                    let (x, y) = (a as u32 as i32 as i64, b as u32 as i32 as i64);
                    let v = if neg { x - y } else { x + y };
                    v.clamp(i32::MIN as i64, i32::MAX as i64) as u64 & mask(32)
                }
                _ => {
                    (if neg {
                        a.wrapping_sub(b)
                    } else {
                        a.wrapping_add(b)
                    }) & mask(bits)
                }
            }
        }
        Op::Mul => match ty {
            Ty::F32 => fl::mul_f32(a as u32, b as u32, r, ftz, sat) as u64,
            Ty::F64 => fl::mul_f64(a, b, rnd_or(r)),
            Ty::F16 => fl::mul_f16(a as u16, b as u16, r, ftz, sat) as u64,
            Ty::Bf16 => fl::mul_bf16(a as u16, b as u16, r, ftz, sat) as u64,
            Ty::F16x2 => {
                fl::f16x2(a as u32, b as u32, |x, y| fl::mul_f16(x, y, r, ftz, sat)) as u64
            }
            Ty::Bf16x2 => {
                fl::f16x2(a as u32, b as u32, |x, y| fl::mul_bf16(x, y, r, ftz, sat)) as u64
            }
            _ => int_mul(ty, mm.hi, mm.wide, a, b),
        },
        Op::Mad => match ty {
            Ty::F32 => fl::fma_f32(a as u32, b as u32, c as u32, r, ftz, sat) as u64,
            Ty::F64 => fl::fma_f64(a, b, c, rnd_or(r)),
            _ => {
                let p = int_mul(ty, mm.hi, mm.wide, a, b);
                let width = if mm.wide { bits * 2 } else { bits };
                if sat && ty == Ty::S32 && mm.hi {
                    let v = p as u32 as i32 as i64 + c as u32 as i32 as i64;
                    v.clamp(i32::MIN as i64, i32::MAX as i64) as u64 & mask(32)
                } else {
                    p.wrapping_add(c) & mask(width)
                }
            }
        },
        Op::Fma => match ty {
            Ty::F32 => fl::fma_f32(a as u32, b as u32, c as u32, r, ftz, sat) as u64,
            Ty::F64 => fl::fma_f64(a, b, c, rnd_or(r)),
            Ty::F16 => fl::fma_f16(a as u16, b as u16, c as u16, r, ftz, sat) as u64,
            Ty::Bf16 => fl::fma_bf16(a as u16, b as u16, c as u16, r, ftz, sat) as u64,
            Ty::F16x2 => fl::f16x2_3(a as u32, b as u32, c as u32, |x, y, z| {
                fl::fma_f16(x, y, z, r, ftz, sat)
            }) as u64,
            Ty::Bf16x2 => fl::f16x2_3(a as u32, b as u32, c as u32, |x, y, z| {
                fl::fma_bf16(x, y, z, r, ftz, sat)
            }) as u64,
            _ => return None,
        },
        Op::Mul24 | Op::Mad24 => {
            let (x, y) = if ty.is_signed() {
                (sx(a, 24), sx(b, 24))
            } else {
                ((a & mask(24)) as i64, (b & mask(24)) as i64)
            };
            let p = (x as i128 * y as i128) as u64;
            let p = if mm.hi { p >> 16 } else { p };
            let p = if ins.op == Op::Mad24 {
                p.wrapping_add(c)
            } else {
                p
            };
            p & mask(32)
        }
        Op::Div => match ty {
            Ty::F32 => fl::div_f32(a as u32, b as u32, r, mm.approx, mm.full, ftz) as u64,
            Ty::F64 => fl::div_f64(a, b, rnd_or(r)),
            _ if ty.is_signed() => {
                let (x, y) = (sx(a, bits), sx(b, bits));
                if y == 0 {
                    mask(bits)
                } else {
                    x.wrapping_div(y) as u64 & mask(bits)
                }
            }
            _ => {
                let (x, y) = (a & mask(bits), b & mask(bits));
                x.checked_div(y).unwrap_or(mask(bits))
            }
        },
        Op::Rem => {
            if ty.is_signed() {
                let (x, y) = (sx(a, bits), sx(b, bits));
                if y == 0 {
                    a & mask(bits)
                } else {
                    x.wrapping_rem(y) as u64 & mask(bits)
                }
            } else {
                let (x, y) = (a & mask(bits), b & mask(bits));
                if y == 0 {
                    x
                } else {
                    x % y
                }
            }
        }
        Op::Abs => match ty {
            Ty::F32 => fl::abs_f32(a as u32, ftz) as u64,
            Ty::F64 => a & !(1 << 63),
            Ty::F16 | Ty::Bf16 => a & 0x7fff,
            Ty::F16x2 | Ty::Bf16x2 => a & 0x7fff_7fff,
            _ => (sx(a, bits).wrapping_abs() as u64) & mask(bits),
        },
        Op::Neg => match ty {
            Ty::F32 => fl::neg_f32(a as u32, ftz) as u64,
            Ty::F64 => a ^ (1 << 63),
            Ty::F16 | Ty::Bf16 => (a ^ 0x8000) & 0xffff,
            Ty::F16x2 | Ty::Bf16x2 => (a ^ 0x8000_8000) & mask(32),
            _ => (a.wrapping_neg()) & mask(bits),
        },
        Op::Min | Op::Max => {
            let max = ins.op == Op::Max;
            match ty {
                Ty::F32 => {
                    (if max {
                        fl::max_f32(a as u32, b as u32, ftz, mm.nan)
                    } else {
                        fl::min_f32(a as u32, b as u32, ftz, mm.nan)
                    }) as u64
                }
                Ty::F64 => {
                    if max {
                        fl::max_f64(a, b)
                    } else {
                        fl::min_f64(a, b)
                    }
                }
                Ty::F16 => {
                    (if max {
                        fl::max_f16(a as u16, b as u16, ftz, mm.nan)
                    } else {
                        fl::min_f16(a as u16, b as u16, ftz, mm.nan)
                    }) as u64
                }
                Ty::Bf16 => {
                    (if max {
                        fl::max_bf16(a as u16, b as u16, mm.nan)
                    } else {
                        fl::min_bf16(a as u16, b as u16, mm.nan)
                    }) as u64
                }
                Ty::F16x2 => fl::f16x2(a as u32, b as u32, |x, y| {
                    if max {
                        fl::max_f16(x, y, ftz, mm.nan)
                    } else {
                        fl::min_f16(x, y, ftz, mm.nan)
                    }
                }) as u64,
                _ if ty.is_signed() => {
                    let (x, y) = (sx(a, bits), sx(b, bits));
                    (if max { x.max(y) } else { x.min(y) }) as u64 & mask(bits)
                }
                _ => {
                    let (x, y) = (a & mask(bits), b & mask(bits));
                    if max {
                        x.max(y)
                    } else {
                        x.min(y)
                    }
                }
            }
        }
        Op::And => a & b & mask(bits),
        Op::Or => (a | b) & mask(bits),
        Op::Xor => (a ^ b) & mask(bits),
        Op::Not => !a & mask(bits),
        Op::Cnot => ((a & mask(bits)) == 0) as u64,
        Op::Shl => {
            let s = b & 0xffff_ffff;
            if s >= bits as u64 {
                0
            } else {
                (a << s) & mask(bits)
            }
        }
        Op::Shr => {
            let s = (b & 0xffff_ffff).min(bits as u64);
            if ty.is_signed() {
                let v = sx(a, bits);
                (v >> s.min(63)) as u64 & mask(bits)
            } else if s >= bits as u64 {
                0
            } else {
                (a & mask(bits)) >> s
            }
        }
        Op::Shf => {
            let n = if mm.sat {
                (c as u32).min(32)
            } else {
                c as u32 & 31
            } as u64;
            let wide = ((b & mask(32)) << 32) | (a & mask(32));
            if mm.kind == 0 {
                ((wide << n) >> 32) & mask(32)
            } else {
                (wide >> n) & mask(32)
            }
        }
        Op::Selp => {
            if c & 1 != 0 {
                a
            } else {
                b
            }
        }
        Op::Slct => {
            let take_a = if ins.ty2 == Ty::F32 {
                let f = f32::from_bits(c as u32);
                let f = if ftz && f.is_subnormal() { 0.0 } else { f };
                f >= 0.0 || (f == 0.0)
            } else {
                (c as u32 as i32) >= 0
            };
            if take_a {
                a
            } else {
                b
            }
        }
        Op::Cvt => cvt(ins, a, b),
        Op::Cvta => {
            use crate::ir::Space;
            let window = match mm.space {
                Space::Shared => super::SHARED_WINDOW,
                Space::Local => super::LOCAL_WINDOW,
                _ => 0,
            };
            let v = if mm.to {
                a.wrapping_sub(window)
            } else {
                a.wrapping_add(window)
            };
            v & mask(bits)
        }
        Op::Prmt => prmt(a as u32, b as u32, c as u32, mm.prmt_mode) as u64,
        Op::Bfe => bfe(ty, a, b, c),
        Op::Bfi => bfi(bits, a, b, c, e),
        Op::Brev => match bits {
            32 => (a as u32).reverse_bits() as u64,
            _ => a.reverse_bits(),
        },
        Op::Popc => (a & mask(bits)).count_ones() as u64,
        Op::Clz => match bits {
            32 => (a as u32).leading_zeros() as u64,
            _ => a.leading_zeros() as u64,
        },
        Op::Lop3 => {
            let lut = e as u32;
            let mut v = 0u64;
            for i in 0..bits {
                let idx = (((a >> i) & 1) << 2) | (((b >> i) & 1) << 1) | ((c >> i) & 1);
                v |= (((lut >> idx) & 1) as u64) << i;
            }
            v
        }
        Op::Ex2 => match ty {
            Ty::F32 => fl::ex2_approx_f32(a as u32, ftz) as u64,
            Ty::F16 => fl::ex2_approx_f16(a as u16) as u64,
            Ty::F16x2 => fl::f16x2(a as u32, 0, |x, _| fl::ex2_approx_f16(x)) as u64,
            Ty::Bf16 => fl::ex2_approx_bf16(a as u16) as u64,
            _ => return None,
        },
        Op::Lg2 => fl::lg2_approx_f32(a as u32, ftz) as u64,
        Op::Rsqrt => match ty {
            Ty::F64 => fl::rsqrt_approx_f64(a),
            _ => fl::rsqrt_approx_f32(a as u32, ftz) as u64,
        },
        Op::Rcp => match ty {
            Ty::F64 => fl::rcp_f64(a, rnd_or(r), mm.approx),
            _ => fl::rcp_f32(a as u32, r, mm.approx, ftz) as u64,
        },
        Op::Sqrt => match ty {
            Ty::F64 => fl::sqrt_f64(a, rnd_or(r)),
            _ => fl::sqrt_f32(a as u32, r, mm.approx, ftz) as u64,
        },
        Op::Sin => fl::sin_approx_f32(a as u32, ftz) as u64,
        Op::Cos => fl::cos_approx_f32(a as u32, ftz) as u64,
        Op::Tanh => match ty {
            Ty::F16 => fl::tanh_approx_f16(a as u16) as u64,
            Ty::F16x2 => fl::f16x2(a as u32, 0, |x, _| fl::tanh_approx_f16(x)) as u64,
            Ty::Bf16 => fl::tanh_approx_bf16(a as u16) as u64,
            _ => fl::tanh_approx_f32(a as u32) as u64,
        },
        Op::Copysign => match ty {
            Ty::F64 => fl::copysign_f64(a, b),
            _ => fl::copysign_f32(a as u32, b as u32) as u64,
        },
        Op::Testp => {
            let (f, sub) = match ty {
                Ty::F64 => (f64::from_bits(a), f64::from_bits(a).is_subnormal()),
                _ => (
                    f32::from_bits(a as u32) as f64,
                    f32::from_bits(a as u32).is_subnormal(),
                ),
            };
            (match mm.kind {
                0 => f.is_finite(),
                1 => f.is_infinite(),
                2 => !f.is_nan(),
                3 => f.is_nan(),
                4 => f.is_finite() && f != 0.0 && !sub,
                _ => sub,
            }) as u64
        }
        Op::Sad => {
            let d = if ty.is_signed() {
                (sx(a, bits) - sx(b, bits)).unsigned_abs()
            } else {
                (a & mask(bits)).abs_diff(b & mask(bits))
            };
            d.wrapping_add(c) & mask(bits)
        }
        Op::Dp4a | Op::Dp2a => {
            let signed_a = ins.ty.is_signed();
            let signed_b = ins.ty2.is_signed();
            let byte = |v: u64, i: u32, s: bool| -> i64 {
                let x = (v >> (8 * i)) & 0xff;
                if s {
                    x as u8 as i8 as i64
                } else {
                    x as i64
                }
            };
            let mut acc = c as u32 as i32 as i64;
            if ins.op == Op::Dp4a {
                for i in 0..4 {
                    acc += byte(a, i, signed_a) * byte(b, i, signed_b);
                }
            } else {
                return None;
            }
            acc as u64 & mask(32)
        }
        _ => return None,
    })
}

fn int_mul(ty: Ty, hi: bool, wide: bool, a: u64, b: u64) -> u64 {
    let bits = ty.bits();
    let p: u128 = if ty.is_signed() {
        (sx(a, bits) as i128).wrapping_mul(sx(b, bits) as i128) as u128
    } else {
        ((a & mask(bits)) as u128) * ((b & mask(bits)) as u128)
    };
    if wide {
        (p as u64) & mask(bits * 2)
    } else if hi {
        ((p >> bits) as u64) & mask(bits)
    } else {
        (p as u64) & mask(bits)
    }
}

fn cvt(ins: &Instr, a: u64, b: u64) -> u64 {
    let m = &ins.mods;
    if ins.ty == Ty::F16x2 || ins.ty == Ty::Bf16x2 {
        // cvt.rn.f16x2.f32 d, a, b: a goes to the upper half, b to the lower.
        let el = if ins.ty == Ty::F16x2 {
            Ty::F16
        } else {
            Ty::Bf16
        };
        let hi = fl::cvt(a, el, ins.ty2, m.rnd, m.ftz, m.sat) & 0xffff;
        let lo = fl::cvt(b, el, ins.ty2, m.rnd, m.ftz, m.sat) & 0xffff;
        return (hi << 16) | lo;
    }
    fl::cvt(a, ins.ty, ins.ty2, m.rnd, m.ftz, m.sat) & mask(ins.ty.bits())
}

fn prmt(a: u32, b: u32, c: u32, mode: Option<u8>) -> u32 {
    let bytes = ((b as u64) << 32) | a as u64;
    let byte = |i: u32| ((bytes >> (8 * (i & 7))) & 0xff) as u32;
    let mut out = 0u32;
    match mode {
        None => {
            for k in 0..4 {
                let sel = (c >> (4 * k)) & 0xf;
                let mut v = byte(sel & 7);
                if sel & 8 != 0 {
                    v = if v & 0x80 != 0 { 0xff } else { 0 };
                }
                out |= v << (8 * k);
            }
        }
        Some(md) => {
            let s = c & 3;
            let sel: [u32; 4] = match md {
                1 => [s, s + 1, s + 2, s + 3],   // f4e
                2 => [s, s + 7, s + 6, s + 5],   // b4e
                3 => [s, s, s, s],               // rc8
                4 => [s, s.max(1), s.max(2), 3], // ecl
                5 => [0, s.min(1), s.min(2), s], // ecr
                _ => [(s & 1) * 2, (s & 1) * 2 + 1, (s & 1) * 2, (s & 1) * 2 + 1], // rc16
            };
            for (k, &i) in sel.iter().enumerate() {
                out |= byte(i) << (8 * k);
            }
        }
    }
    out
}

fn bfe(ty: Ty, a: u64, b: u64, c: u64) -> u64 {
    let bits = ty.bits();
    let msb = bits - 1;
    let pos = (b & 0xff) as u32;
    let len = (c & 0xff) as u32;
    let sbit = if !ty.is_signed() || len == 0 {
        0
    } else {
        let i = (pos + len - 1).min(msb);
        (a >> i) & 1
    };
    let mut d = 0u64;
    for i in 0..=msb {
        let bit = if i < len && pos + i <= msb {
            (a >> (pos + i)) & 1
        } else {
            sbit
        };
        d |= bit << i;
    }
    d
}

fn bfi(bits: u32, a: u64, b: u64, c: u64, e: u64) -> u64 {
    let msb = bits - 1;
    let pos = (c & 0xff) as u32;
    let len = (e & 0xff) as u32;
    let mut d = b & mask(bits);
    let mut i = 0;
    while i < len && pos + i <= msb {
        d = (d & !(1 << (pos + i))) | (((a >> i) & 1) << (pos + i));
        i += 1;
    }
    d
}
