//! `cvt` between every integer and float type, and `setp` on floats.

#[allow(unused_imports)]
use super::*;

// Conversions
// ---------------------------------------------------------------------------------------------

/// f16 bits to f32 (exact; NaN → the canonical f32 NaN).
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    if is_nan16(h) {
        f32::from_bits(NAN_F32)
    } else {
        half::f16::from_bits(h).to_f32()
    }
}

/// f32 to f16 bits, round to nearest even (overflow → inf, NaN → canonical 0x7FFF).
#[inline]
pub fn f32_to_f16_rn(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let a = b & 0x7FFF_FFFF;
    if a >= 0x4780_0000 {
        // |x| >= 65536 (or inf / NaN)
        return if a > 0x7F80_0000 {
            NAN_F16
        } else {
            sign | 0x7C00
        };
    }
    if a >= 0x3880_0000 {
        // normal f16 range: rebias the exponent (127 - 15), round off 13 bits to nearest even;
        // a carry rounds into the exponent (65520.. → inf).
        let v = a - (112 << 23);
        return sign | ((v + 0xFFF + ((v >> 13) & 1)) >> 13) as u16;
    }
    if a <= 0x3300_0000 {
        // |x| <= 2^-25: rounds to zero (2^-25 is a tie, to the even zero)
        return sign;
    }
    // f16 subnormal: units of 2^-24
    let e = a >> 23;
    let m = (a & 0x7F_FFFF) | 0x80_0000;
    let shift = 126 - e;
    sign | ((m + (1 << (shift - 1)) - 1 + ((m >> shift) & 1)) >> shift) as u16
}

/// bf16 bits to f32 (exact; NaN → the canonical f32 NaN).
#[inline]
pub fn bf16_to_f32(h: u16) -> f32 {
    if is_nan_bf16(h) {
        f32::from_bits(NAN_F32)
    } else {
        f32::from_bits((h as u32) << 16)
    }
}

/// f32 to bf16 bits, round to nearest even (NaN → canonical 0x7FFF).
#[inline]
pub fn f32_to_bf16_rn(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return NAN_BF16;
    }
    let lsb = (b >> 16) & 1;
    (b.wrapping_add(0x7FFF + lsb) >> 16) as u16
}

/// Kind of a cvt operand.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// unsigned / bit-size integer of this many bits
    U(u32),
    /// signed integer of this many bits
    S(u32),
    F16,
    Bf16,
    Tf32,
    F32,
    F64,
}

pub(crate) fn kind(t: Ty) -> Kind {
    match t {
        Ty::B8 | Ty::U8 => Kind::U(8),
        Ty::B16 | Ty::U16 => Kind::U(16),
        Ty::B32 | Ty::U32 => Kind::U(32),
        Ty::B64 | Ty::U64 | Ty::B128 => Kind::U(64),
        Ty::Pred => Kind::U(1),
        Ty::S8 => Kind::S(8),
        Ty::S16 => Kind::S(16),
        Ty::S32 => Kind::S(32),
        Ty::S64 => Kind::S(64),
        Ty::F16 | Ty::F16x2 => Kind::F16,
        Ty::Bf16 | Ty::Bf16x2 => Kind::Bf16,
        Ty::Tf32 => Kind::Tf32,
        Ty::F32 => Kind::F32,
        Ty::F64 => Kind::F64,
    }
}

#[inline]
pub(crate) fn mask(w: u32) -> u64 {
    if w >= 64 {
        u64::MAX
    } else {
        (1u64 << w) - 1
    }
}

/// The integer value of `bits` read as type `k`.
#[inline]
pub(crate) fn int_val(bits: u64, k: Kind) -> i128 {
    match k {
        Kind::U(w) => (bits & mask(w)) as i128,
        Kind::S(w) => (((bits << (64 - w)) as i64) >> (64 - w)) as i128,
        _ => unreachable!(),
    }
}

/// Writes integer `v` (already in range, or to be truncated) as type `k`: sign-extended to 64
/// bits for signed types, zero-extended for the others.
#[inline]
pub(crate) fn int_out(v: i128, k: Kind) -> u64 {
    match k {
        Kind::U(w) => (v as u64) & mask(w),
        Kind::S(w) => (((v as u64) << (64 - w)) as i64 >> (64 - w)) as u64,
        _ => unreachable!(),
    }
}

#[inline]
pub(crate) fn int_range(k: Kind) -> (i128, i128) {
    match k {
        Kind::U(w) => (0, mask(w) as i128),
        Kind::S(w) => (-(1i128 << (w - 1)), (1i128 << (w - 1)) - 1),
        _ => unreachable!(),
    }
}

/// The value of float bits of kind `k` as f64 (exact), after `.ftz` where it applies (f32).
#[inline]
pub(crate) fn float_in(bits: u64, k: Kind, ftz: bool) -> f64 {
    match k {
        Kind::F16 => f16v(bits as u16),
        Kind::Bf16 => bf16v(bits as u16),
        Kind::Tf32 => f32v(bits as u32),
        Kind::F32 => {
            let b = bits as u32;
            f32v(if ftz { ftz_f32(b) } else { b })
        }
        Kind::F64 => f64::from_bits(bits),
        _ => unreachable!(),
    }
}

/// Rounds `v` (exact, or rounded to odd at 53 bits) to float kind `k`, then `.ftz` (f32
/// results) and `.sat`. For f64 the value must be exact.
pub(crate) fn float_out(v: f64, k: Kind, d: Dir, ftz: bool, sat: bool) -> u64 {
    match k {
        Kind::F16 => {
            let r = round_f64(v, F16, d) as u16;
            (if sat { sat_f16(r) } else { r }) as u64
        }
        Kind::Bf16 => {
            let r = round_f64(v, BF16, d) as u16;
            (if sat { sat_bf16(r) } else { r }) as u64
        }
        Kind::Tf32 => {
            let r = (round_f64(v, TF32, d) as u32) << 13;
            let r = if is_nan32(r) { NAN_F32 } else { r };
            (if sat { sat_f32(r) } else { r }) as u64
        }
        Kind::F32 => post32(round_f64(v, F32, d) as u32, ftz, sat) as u64,
        Kind::F64 => {
            let r = canon64(v);
            if sat {
                if v.is_nan() || v.is_sign_negative() {
                    0
                } else if v > 1.0 {
                    1.0f64.to_bits()
                } else {
                    r
                }
            } else {
                r
            }
        }
        _ => unreachable!(),
    }
}

/// Rounds a float value to an integral value in the direction of an integer rounding modifier.
#[inline]
pub(crate) fn round_integral(x: f64, rnd: Rnd) -> f64 {
    match rnd {
        Rnd::Rni | Rnd::Rn => x.round_ties_even(),
        Rnd::Rmi | Rnd::Rm => x.floor(),
        Rnd::Rpi | Rnd::Rp => x.ceil(),
        Rnd::Rna => x.round(),
        _ => x.trunc(),
    }
}

/// An integer rounded to odd at 53 bits, as f64 (exact when it fits in 53 bits).
pub(crate) fn int_to_odd(v: i128) -> f64 {
    let neg = v < 0;
    let m = v.unsigned_abs();
    let r = if m < (1u128 << 53) {
        m as f64
    } else {
        let s = 128 - m.leading_zeros() - 53;
        let sticky = (m & ((1u128 << s) - 1) != 0) as u128;
        let k = (m >> s) | sticky;
        (k as f64) * 2f64.powi(s as i32)
    };
    if neg {
        -r
    } else {
        r
    }
}

/// `cvt{.rnd}{.ftz}{.sat}.to.from`: every conversion between integers of 8..64 bits, f16,
/// bf16, tf32, f32 and f64. `bits` holds the source in its low bits; the result is zero-extended
/// raw bits, except signed integer results, which are sign-extended to 64 bits.
///
/// - float → float: `.rn` (default) `.rz .rm .rp .rna`; widening is exact; `.rni .rzi .rmi
///   .rpi` round to an integral value first. `.ftz` flushes f32 subnormal inputs and results;
///   `.sat` clamps to [0.0, 1.0] (NaN → +0.0). NaN → the destination's canonical NaN.
/// - float → int: `.rni .rzi .rmi .rpi` (none given = `.rzi`); always saturating; NaN → 0.
/// - int → float: `.rn` (default) `.rz .rm .rp`.
/// - int → int: truncation, or sign/zero extension per the source type; `.sat` clamps.
pub fn cvt(bits: u64, to: Ty, from: Ty, rnd: Rnd, ftz: bool, sat: bool) -> u64 {
    let (kt, kf) = (kind(to), kind(from));
    let t_int = matches!(kt, Kind::U(_) | Kind::S(_));
    let f_int = matches!(kf, Kind::U(_) | Kind::S(_));
    match (f_int, t_int) {
        (true, true) => {
            let v = int_val(bits, kf);
            let v = if sat {
                let (lo, hi) = int_range(kt);
                v.clamp(lo, hi)
            } else {
                v
            };
            int_out(v, kt)
        }
        (false, true) => {
            let x = float_in(bits, kf, ftz);
            let r = round_integral(x, if rnd == Rnd::None { Rnd::Rzi } else { rnd });
            if r.is_nan() {
                return 0;
            }
            let (lo, hi) = int_range(kt);
            // r is integral; compare as f64 (the bounds 2^k - 1 may round up to 2^k, which is
            // still the right saturation point since r is integral).
            let v: i128 = if r <= lo as f64 {
                lo
            } else if r >= hi as f64 {
                hi
            } else {
                r as i128
            };
            int_out(v, kt)
        }
        (true, false) => {
            let v = int_val(bits, kf);
            let d = dir(rnd);
            if kt == Kind::F64 {
                let r = if d == Dir::Rn {
                    if v < 0 {
                        (v as i64) as f64
                    } else {
                        (v as u64) as f64
                    }
                } else {
                    f64::from_bits(Double::from_i128_r(v, ap_round(d)).value.to_bits() as u64)
                };
                return float_out(r, kt, Dir::Rn, false, sat);
            }
            if kt == Kind::F32 && d == Dir::Rn && !sat {
                let r = if v < 0 {
                    (v as i64) as f32
                } else {
                    (v as u64) as f32
                };
                return r.to_bits() as u64;
            }
            float_out(int_to_odd(v), kt, d, ftz, sat)
        }
        (false, false) => {
            let x = float_in(bits, kf, ftz);
            let irnd = matches!(rnd, Rnd::Rni | Rnd::Rzi | Rnd::Rmi | Rnd::Rpi);
            let x = if irnd { round_integral(x, rnd) } else { x };
            let d = if irnd { Dir::Rn } else { dir(rnd) };
            // Hot paths.
            if !sat {
                if kt == Kind::F16 && kf == Kind::F32 && d == Dir::Rn {
                    return f32_to_f16_rn(x as f32) as u64;
                }
                if kt == Kind::F32 && kf == Kind::F16 && !ftz {
                    return f16_to_f32(bits as u16).to_bits() as u64;
                }
            }
            float_out(x, kt, d, ftz, sat)
        }
    }
}

/// `setp.cmp{.ftz}.type` on floats: ordered comparisons are false when either operand is NaN;
/// `equ neu ltu leu gtu geu` are true then; `num` = neither NaN, `nan` = either NaN.
/// `.ftz` flushes f32 and f16 subnormal inputs.
pub fn setp_float(a: u64, b: u64, ty: Ty, cmp: Cmp, ftz: bool) -> bool {
    let (x, y) = match ty {
        Ty::F16 | Ty::F16x2 => {
            let (a, b) = (a as u16, b as u16);
            if ftz {
                (f16v(ftz_f16(a)), f16v(ftz_f16(b)))
            } else {
                (f16v(a), f16v(b))
            }
        }
        Ty::Bf16 | Ty::Bf16x2 => (bf16v(a as u16), bf16v(b as u16)),
        Ty::F64 => (f64::from_bits(a), f64::from_bits(b)),
        _ => {
            let (a, b) = (a as u32, b as u32);
            if ftz {
                (f32v(ftz_f32(a)), f32v(ftz_f32(b)))
            } else {
                (f32v(a), f32v(b))
            }
        }
    };
    let unord = x.is_nan() || y.is_nan();
    match cmp {
        Cmp::Eq => x == y,
        Cmp::Ne => !unord && x != y,
        Cmp::Lt | Cmp::Lo => x < y,
        Cmp::Le | Cmp::Ls => x <= y,
        Cmp::Gt | Cmp::Hi => x > y,
        Cmp::Ge | Cmp::Hs => x >= y,
        Cmp::Equ => unord || x == y,
        Cmp::Neu => x != y,
        Cmp::Ltu => unord || x < y,
        Cmp::Leu => unord || x <= y,
        Cmp::Gtu => unord || x > y,
        Cmp::Geu => unord || x >= y,
        Cmp::Num => !unord,
        Cmp::Nan => unord,
    }
}
