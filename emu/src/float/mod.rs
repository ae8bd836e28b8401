//! Floating-point semantics of PTX instructions, bit-exact where the PTX ISA says so.
//! Values travel as raw bits (`u16` f16/bf16, `u32` f32, `u64` f64) so NaN payloads survive
//! where the ISA keeps them (`abs`, `neg`, `copysign`).
//!
//! How results are computed:
//! - `.rn` f32 arithmetic without `.ftz`/`.sat` is native Rust arithmetic (correctly rounded,
//!   ties to even), with a NaN result replaced by the canonical NaN the hardware writes.
//! - Directed roundings (`.rz .rm .rp`) of f32/f16/bf16 operations compute the exact result, or
//!   its round-to-odd approximation, in f64 (the sum error from TwoSum, the division / square
//!   root residual from an fma), then round that to the destination with [`round_f64`]. A value
//!   rounded to odd at 53 bits rounds correctly to any format of 51 bits or fewer, in any mode.
//! - f64 directed roundings use `rustc_apfloat` (LLVM's APFloat).
//! - `.approx` functions are computed in f64 and rounded, which is within every error bound
//!   the ISA states for them.
//!
//! NaN results: the canonical NaN, all exponent and mantissa bits set and the sign clear
//! (f32 `0x7FFFFFFF`, f16/bf16 `0x7FFF`, f64 `0x7FFFFFFFFFFFFFFF`). The CUDA programming guide
//! states the f32 one; the f64 pattern is this emulator's choice (the guide does not say).
//!
//! Choices where the ISA text is not explicit: `.ftz` flushes a result that is subnormal after
//! rounding; `.sat` turns -0.0 into +0.0; without `.ftz`, the approximate functions treat
//! subnormal inputs as their values (so `lg2`/`rsqrt` of a negative subnormal are NaN).

use crate::ir::{Cmp, Rnd, Ty};
use rustc_apfloat::ieee::Double;
use rustc_apfloat::{Float as ApFloat, Round};

/// The canonical NaNs the hardware writes for a NaN result.
pub const NAN_F32: u32 = 0x7FFF_FFFF;
pub const NAN_F16: u16 = 0x7FFF;
pub const NAN_BF16: u16 = 0x7FFF;
pub const NAN_F64: u64 = 0x7FFF_FFFF_FFFF_FFFF;

// ---------------------------------------------------------------------------------------------
// Formats and rounding helpers
// ---------------------------------------------------------------------------------------------

/// A binary interchange format: exponent bits and stored mantissa bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fmt {
    eb: u32,
    mb: u32,
}
pub(crate) const F16: Fmt = Fmt { eb: 5, mb: 10 };
pub(crate) const BF16: Fmt = Fmt { eb: 8, mb: 7 };
pub(crate) const F32: Fmt = Fmt { eb: 8, mb: 23 };
/// tf32: f32 layout with the low 13 mantissa bits zero; rounded as a 19-bit format, then
/// shifted into the f32 layout.
pub(crate) const TF32: Fmt = Fmt { eb: 8, mb: 10 };

/// The rounding direction of an arithmetic rounding modifier (`None` = `.rn`; the integer
/// forms map to their direction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    Rn,
    Rna,
    Rz,
    Rm,
    Rp,
}

#[inline]
pub(crate) fn dir(r: Rnd) -> Dir {
    match r {
        Rnd::None | Rnd::Rn | Rnd::Rni => Dir::Rn,
        Rnd::Rna => Dir::Rna,
        Rnd::Rz | Rnd::Rzi => Dir::Rz,
        Rnd::Rm | Rnd::Rmi => Dir::Rm,
        Rnd::Rp | Rnd::Rpi => Dir::Rp,
    }
}

pub(crate) fn ap_round(d: Dir) -> Round {
    match d {
        Dir::Rn => Round::NearestTiesToEven,
        Dir::Rna => Round::NearestTiesToAway,
        Dir::Rz => Round::TowardZero,
        Dir::Rm => Round::TowardNegative,
        Dir::Rp => Round::TowardPositive,
    }
}

/// Rounds an f64 value to the format `f` in direction `d`; returns the raw bits of the result.
/// Overflow gives infinity or the largest finite value as the direction says; subnormal
/// results are kept (callers apply `.ftz`); NaN gives the canonical NaN.
pub(crate) fn round_f64(x: f64, f: Fmt, d: Dir) -> u64 {
    let xb = x.to_bits();
    let neg = xb >> 63 != 0;
    let sign = (neg as u64) << (f.eb + f.mb);
    let inf = ((1u64 << f.eb) - 1) << f.mb;
    if x.is_nan() {
        return (1u64 << (f.eb + f.mb)) - 1;
    }
    if x.is_infinite() {
        return sign | inf;
    }
    if x == 0.0 {
        return sign;
    }
    let ef = ((xb >> 52) & 0x7ff) as i32;
    let frac = xb & ((1u64 << 52) - 1);
    let (m, e) = if ef == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), ef - 1075)
    };
    let top = 63 - m.leading_zeros() as i32;
    let big_e = e + top; // floor(log2 |x|)
    let bias = (1i32 << (f.eb - 1)) - 1;
    let emin = 1 - bias;
    let mb = f.mb as i32;
    let qmin = emin - mb;
    let q = big_e.max(emin) - mb; // exponent of the result's last place
    let shift = q - e;
    let keep = if shift <= 0 {
        m << (-shift) as u32
    } else {
        let (k, rem, half) = if shift >= 64 {
            (0u64, m, u64::MAX) // rem < half, rem != 0
        } else {
            let s = shift as u32;
            (m >> s, m & ((1u64 << s) - 1), 1u64 << (s - 1))
        };
        let inc = match d {
            Dir::Rn => rem > half || (rem == half && k & 1 == 1),
            Dir::Rna => rem >= half,
            Dir::Rz => false,
            Dir::Rp => !neg && rem != 0,
            Dir::Rm => neg && rem != 0,
        };
        k + inc as u64
    };
    let mag = (((q - qmin) as u64) << f.mb) + keep;
    if mag >= inf {
        let max = inf - 1;
        let r = match d {
            Dir::Rn | Dir::Rna => inf,
            Dir::Rz => max,
            Dir::Rp => {
                if neg {
                    max
                } else {
                    inf
                }
            }
            Dir::Rm => {
                if neg {
                    inf
                } else {
                    max
                }
            }
        };
        return sign | r;
    }
    sign | mag
}

/// TwoSum: `s = fl(a + b)` and the exact error `a + b - s` (no overflow assumed).
#[inline]
pub(crate) fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

/// Round-to-odd: `s` is the nearest f64 to a value `v`, `e` has the sign of `v - s` (0 when
/// exact). Returns `v` rounded to odd at 53 bits.
#[inline]
pub(crate) fn to_odd(s: f64, e: f64) -> f64 {
    if e == 0.0 || e.is_nan() || !s.is_finite() || s.to_bits() & 1 == 1 {
        s
    } else if (e > 0.0) == (s > 0.0) {
        f64::from_bits(s.to_bits() + 1)
    } else {
        f64::from_bits(s.to_bits() - 1)
    }
}

/// `a + b` (exact operands in f64) rounded to odd, with IEEE's sign of an exact zero sum
/// (`-0` under `.rm` unless both operands are `+0`).
#[inline]
pub(crate) fn sum_odd(a: f64, b: f64, d: Dir) -> f64 {
    let (s, e) = two_sum(a, b);
    if s == 0.0 {
        if d == Dir::Rm && !(a.to_bits() == 0 && b.to_bits() == 0) {
            return -0.0;
        }
        return s;
    }
    to_odd(s, e)
}

#[inline]
pub(crate) fn is_nan32(x: u32) -> bool {
    x & 0x7FFF_FFFF > 0x7F80_0000
}
#[inline]
pub(crate) fn is_nan16(x: u16) -> bool {
    x & 0x7FFF > 0x7C00
}
#[inline]
pub(crate) fn is_nan_bf16(x: u16) -> bool {
    x & 0x7FFF > 0x7F80
}
#[inline]
pub(crate) fn is_nan64(x: u64) -> bool {
    x & 0x7FFF_FFFF_FFFF_FFFF > 0x7FF0_0000_0000_0000
}

/// `.ftz` on an f32: a subnormal becomes the zero of its sign.
#[inline]
pub fn ftz_f32(x: u32) -> u32 {
    if x & 0x7F80_0000 == 0 {
        x & 0x8000_0000
    } else {
        x
    }
}
/// `.ftz` on an f16.
#[inline]
pub fn ftz_f16(x: u16) -> u16 {
    if x & 0x7C00 == 0 {
        x & 0x8000
    } else {
        x
    }
}
/// `.ftz` on a bf16.
#[inline]
pub(crate) fn ftz_bf16(x: u16) -> u16 {
    if x & 0x7F80 == 0 {
        x & 0x8000
    } else {
        x
    }
}
/// `.ftz` on an f64 (only the instructions that flush f64: `rcp.approx.ftz.f64`).
#[inline]
pub(crate) fn ftz_f64(x: u64) -> u64 {
    if x & 0x7FF0_0000_0000_0000 == 0 {
        x & 0x8000_0000_0000_0000
    } else {
        x
    }
}

/// `.sat` on an f32 result: clamp to [0.0, 1.0]; NaN and -0.0 give +0.0.
#[inline]
pub(crate) fn sat_f32(x: u32) -> u32 {
    if is_nan32(x) || x & 0x8000_0000 != 0 {
        0
    } else if x > 0x3F80_0000 {
        0x3F80_0000
    } else {
        x
    }
}
/// `.sat` on an f16 result.
#[inline]
pub(crate) fn sat_f16(x: u16) -> u16 {
    if is_nan16(x) || x & 0x8000 != 0 {
        0
    } else if x > 0x3C00 {
        0x3C00
    } else {
        x
    }
}
/// `.sat` on a bf16 result.
#[inline]
pub(crate) fn sat_bf16(x: u16) -> u16 {
    if is_nan_bf16(x) || x & 0x8000 != 0 {
        0
    } else if x > 0x3F80 {
        0x3F80
    } else {
        x
    }
}

#[inline]
pub(crate) fn canon32(x: f32) -> u32 {
    if x.is_nan() {
        NAN_F32
    } else {
        x.to_bits()
    }
}
#[inline]
pub(crate) fn canon64(x: f64) -> u64 {
    if x.is_nan() {
        NAN_F64
    } else {
        x.to_bits()
    }
}

#[inline]
pub(crate) fn post32(r: u32, ftz: bool, sat: bool) -> u32 {
    let r = if is_nan32(r) { NAN_F32 } else { r };
    let r = if ftz { ftz_f32(r) } else { r };
    if sat {
        sat_f32(r)
    } else {
        r
    }
}

#[inline]
pub(crate) fn f32v(x: u32) -> f64 {
    f32::from_bits(x) as f64
}

/// f16 bits to f64 (exact).
#[inline]
pub(crate) fn f16v(x: u16) -> f64 {
    half::f16::from_bits(x).to_f64()
}
/// bf16 bits to f64 (exact).
#[inline]
pub(crate) fn bf16v(x: u16) -> f64 {
    f32::from_bits((x as u32) << 16) as f64
}

// ---------------------------------------------------------------------------------------------

mod arith;
mod cvt;
mod special;
#[cfg(test)]
mod tests;

pub use arith::*;
pub use cvt::*;
pub use special::*;
