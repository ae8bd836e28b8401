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
struct Fmt {
    eb: u32,
    mb: u32,
}
const F16: Fmt = Fmt { eb: 5, mb: 10 };
const BF16: Fmt = Fmt { eb: 8, mb: 7 };
const F32: Fmt = Fmt { eb: 8, mb: 23 };
/// tf32: f32 layout with the low 13 mantissa bits zero; rounded as a 19-bit format, then
/// shifted into the f32 layout.
const TF32: Fmt = Fmt { eb: 8, mb: 10 };

/// The rounding direction of an arithmetic rounding modifier (`None` = `.rn`; the integer
/// forms map to their direction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Rn,
    Rna,
    Rz,
    Rm,
    Rp,
}

#[inline]
fn dir(r: Rnd) -> Dir {
    match r {
        Rnd::None | Rnd::Rn | Rnd::Rni => Dir::Rn,
        Rnd::Rna => Dir::Rna,
        Rnd::Rz | Rnd::Rzi => Dir::Rz,
        Rnd::Rm | Rnd::Rmi => Dir::Rm,
        Rnd::Rp | Rnd::Rpi => Dir::Rp,
    }
}

fn ap_round(d: Dir) -> Round {
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
fn round_f64(x: f64, f: Fmt, d: Dir) -> u64 {
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
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

/// Round-to-odd: `s` is the nearest f64 to a value `v`, `e` has the sign of `v - s` (0 when
/// exact). Returns `v` rounded to odd at 53 bits.
#[inline]
fn to_odd(s: f64, e: f64) -> f64 {
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
fn sum_odd(a: f64, b: f64, d: Dir) -> f64 {
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
fn is_nan32(x: u32) -> bool {
    x & 0x7FFF_FFFF > 0x7F80_0000
}
#[inline]
fn is_nan16(x: u16) -> bool {
    x & 0x7FFF > 0x7C00
}
#[inline]
fn is_nan_bf16(x: u16) -> bool {
    x & 0x7FFF > 0x7F80
}
#[inline]
fn is_nan64(x: u64) -> bool {
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
fn ftz_bf16(x: u16) -> u16 {
    if x & 0x7F80 == 0 {
        x & 0x8000
    } else {
        x
    }
}
/// `.ftz` on an f64 (only the instructions that flush f64: `rcp.approx.ftz.f64`).
#[inline]
fn ftz_f64(x: u64) -> u64 {
    if x & 0x7FF0_0000_0000_0000 == 0 {
        x & 0x8000_0000_0000_0000
    } else {
        x
    }
}

/// `.sat` on an f32 result: clamp to [0.0, 1.0]; NaN and -0.0 give +0.0.
#[inline]
fn sat_f32(x: u32) -> u32 {
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
fn sat_f16(x: u16) -> u16 {
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
fn sat_bf16(x: u16) -> u16 {
    if is_nan_bf16(x) || x & 0x8000 != 0 {
        0
    } else if x > 0x3F80 {
        0x3F80
    } else {
        x
    }
}

#[inline]
fn canon32(x: f32) -> u32 {
    if x.is_nan() {
        NAN_F32
    } else {
        x.to_bits()
    }
}
#[inline]
fn canon64(x: f64) -> u64 {
    if x.is_nan() {
        NAN_F64
    } else {
        x.to_bits()
    }
}

#[inline]
fn post32(r: u32, ftz: bool, sat: bool) -> u32 {
    let r = if is_nan32(r) { NAN_F32 } else { r };
    let r = if ftz { ftz_f32(r) } else { r };
    if sat {
        sat_f32(r)
    } else {
        r
    }
}

#[inline]
fn f32v(x: u32) -> f64 {
    f32::from_bits(x) as f64
}

/// f16 bits to f64 (exact).
#[inline]
fn f16v(x: u16) -> f64 {
    half::f16::from_bits(x).to_f64()
}
/// bf16 bits to f64 (exact).
#[inline]
fn bf16v(x: u16) -> f64 {
    f32::from_bits((x as u32) << 16) as f64
}

// ---------------------------------------------------------------------------------------------
// f32 arithmetic
// ---------------------------------------------------------------------------------------------

/// Directed or flushed/saturated f32 `a + b` (a, b already flushed when `.ftz`).
fn add32_slow(a: u32, b: u32, rnd: Rnd, ftz: bool, sat: bool) -> u32 {
    let (a, b) = if ftz {
        (ftz_f32(a), ftz_f32(b))
    } else {
        (a, b)
    };
    let d = dir(rnd);
    let r = if d == Dir::Rn {
        canon32(f32::from_bits(a) + f32::from_bits(b))
    } else {
        round_f64(sum_odd(f32v(a), f32v(b), d), F32, d) as u32
    };
    post32(r, ftz, sat)
}

/// `add{.rnd}{.ftz}{.sat}.f32`.
#[inline]
pub fn add_f32(a: u32, b: u32, rnd: Rnd, ftz: bool, sat: bool) -> u32 {
    if !ftz && !sat && matches!(rnd, Rnd::None | Rnd::Rn) {
        return canon32(f32::from_bits(a) + f32::from_bits(b));
    }
    add32_slow(a, b, rnd, ftz, sat)
}

/// `sub{.rnd}{.ftz}{.sat}.f32`.
#[inline]
pub fn sub_f32(a: u32, b: u32, rnd: Rnd, ftz: bool, sat: bool) -> u32 {
    if !ftz && !sat && matches!(rnd, Rnd::None | Rnd::Rn) {
        return canon32(f32::from_bits(a) - f32::from_bits(b));
    }
    // a - b == a + (-b) exactly, including the sign of zero results, in every mode.
    if is_nan32(b) {
        return post32(NAN_F32, ftz, sat);
    }
    add32_slow(a, b ^ 0x8000_0000, rnd, ftz, sat)
}

/// `mul{.rnd}{.ftz}{.sat}.f32`.
#[inline]
pub fn mul_f32(a: u32, b: u32, rnd: Rnd, ftz: bool, sat: bool) -> u32 {
    if !ftz && !sat && matches!(rnd, Rnd::None | Rnd::Rn) {
        return canon32(f32::from_bits(a) * f32::from_bits(b));
    }
    let (a, b) = if ftz {
        (ftz_f32(a), ftz_f32(b))
    } else {
        (a, b)
    };
    let d = dir(rnd);
    let r = if d == Dir::Rn {
        canon32(f32::from_bits(a) * f32::from_bits(b))
    } else {
        // The product of two f32s is exact in f64.
        round_f64(f32v(a) * f32v(b), F32, d) as u32
    };
    post32(r, ftz, sat)
}

/// `a * b + c` of f32 values with one rounding to nearest even.
#[inline]
pub(crate) fn fma32_rn(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(target_feature = "fma") {
        a.mul_add(b, c)
    } else {
        // exact product in f64, exact error of the sum, round to odd, round to f32.
        let p = a as f64 * b as f64;
        if !p.is_finite() || !c.is_finite() {
            return (p + c as f64) as f32;
        }
        sum_odd(p, c as f64, Dir::Rn) as f32
    }
}

/// `fma.rnd{.ftz}{.sat}.f32` (and `mad.f32`): `a * b + c` with a single rounding.
#[inline]
pub fn fma_f32(a: u32, b: u32, c: u32, rnd: Rnd, ftz: bool, sat: bool) -> u32 {
    if !ftz && !sat && matches!(rnd, Rnd::None | Rnd::Rn) {
        return canon32(fma32_rn(
            f32::from_bits(a),
            f32::from_bits(b),
            f32::from_bits(c),
        ));
    }
    let (a, b, c) = if ftz {
        (ftz_f32(a), ftz_f32(b), ftz_f32(c))
    } else {
        (a, b, c)
    };
    let d = dir(rnd);
    let r = if d == Dir::Rn {
        canon32(fma32_rn(
            f32::from_bits(a),
            f32::from_bits(b),
            f32::from_bits(c),
        ))
    } else {
        let p = f32v(a) * f32v(b);
        let cv = f32v(c);
        if !p.is_finite() || !cv.is_finite() {
            canon32((p + cv) as f32)
        } else {
            round_f64(sum_odd(p, cv, d), F32, d) as u32
        }
    };
    post32(r, ftz, sat)
}

/// IEEE f32 division `a / b` rounded in direction `d` (inputs already flushed if needed).
fn div32_ieee(a: u32, b: u32, d: Dir) -> u32 {
    let (x, y) = (f32v(a), f32v(b));
    if d == Dir::Rn {
        return canon32((x / y) as f32);
    }
    let q = x / y;
    if !q.is_finite() || q == 0.0 {
        return round_f64(q, F32, d) as u32;
    }
    // f32 operands: q is normal in f64 and the residual a - q*b is exact.
    let r = (-q).mul_add(y, x);
    let e = if r == 0.0 {
        0.0
    } else if (r > 0.0) == (y > 0.0) {
        1.0
    } else {
        -1.0
    };
    round_f64(to_odd(q, e), F32, d) as u32
}

/// `div.rnd{.ftz}.f32` (IEEE), `div.approx{.ftz}.f32`, `div.full{.ftz}.f32`.
///
/// `.approx` is defined as `a * (1/b)`: for 2^126 < |b| < 2^128 the ISA gives 0 (NaN when `a`
/// is infinite); elsewhere the correctly rounded quotient is used (within its 2 ulp).
/// `.full` is the correctly rounded quotient (within its stated 2 ulp on the full range).
pub fn div_f32(a: u32, b: u32, rnd: Rnd, approx: bool, full: bool, ftz: bool) -> u32 {
    let (a, b) = if ftz {
        (ftz_f32(a), ftz_f32(b))
    } else {
        (a, b)
    };
    let r = if approx {
        let bm = b & 0x7FFF_FFFF;
        if (0x7E80_0000..0x7F80_0000).contains(&bm) && bm != 0x7E80_0000 {
            // 1/b underflows to zero: a * (+-0).
            canon32(f32::from_bits(a) * if b >> 31 != 0 { -0.0 } else { 0.0 })
        } else {
            div32_ieee(a, b, Dir::Rn)
        }
    } else if full {
        div32_ieee(a, b, Dir::Rn)
    } else {
        div32_ieee(a, b, dir(rnd))
    };
    post32(r, ftz, false)
}

/// `rcp.approx{.ftz}.f32`, `rcp.rnd{.ftz}.f32`.
pub fn rcp_f32(a: u32, rnd: Rnd, approx: bool, ftz: bool) -> u32 {
    let a = if ftz { ftz_f32(a) } else { a };
    let d = if approx { Dir::Rn } else { dir(rnd) };
    post32(div32_ieee(0x3F80_0000, a, d), ftz, false)
}

/// `sqrt.approx{.ftz}.f32`, `sqrt.rnd{.ftz}.f32`. sqrt(-0) = -0, sqrt(x < 0) = NaN.
pub fn sqrt_f32(a: u32, rnd: Rnd, approx: bool, ftz: bool) -> u32 {
    let a = if ftz { ftz_f32(a) } else { a };
    let d = if approx { Dir::Rn } else { dir(rnd) };
    let x = f32v(a);
    let s = x.sqrt();
    let r = if d == Dir::Rn || !s.is_finite() || s == 0.0 {
        // sqrt in f64 then f32: innocuous double rounding (53 >= 2*24 + 2).
        canon32(s as f32)
    } else {
        let res = (-s).mul_add(s, x);
        round_f64(to_odd(s, res), F32, d) as u32
    };
    post32(r, ftz, false)
}

// ---------------------------------------------------------------------------------------------
// f64 arithmetic
// ---------------------------------------------------------------------------------------------

#[inline]
fn ap64(x: u64) -> Double {
    Double::from_bits(x as u128)
}
#[inline]
fn unap64(x: Double) -> u64 {
    let b = x.to_bits() as u64;
    if is_nan64(b) {
        NAN_F64
    } else {
        b
    }
}

/// `add{.rnd}.f64`.
#[inline]
pub fn add_f64(a: u64, b: u64, rnd: Rnd) -> u64 {
    match dir(rnd) {
        Dir::Rn => canon64(f64::from_bits(a) + f64::from_bits(b)),
        d => unap64(ap64(a).add_r(ap64(b), ap_round(d)).value),
    }
}
/// `sub{.rnd}.f64`.
#[inline]
pub fn sub_f64(a: u64, b: u64, rnd: Rnd) -> u64 {
    match dir(rnd) {
        Dir::Rn => canon64(f64::from_bits(a) - f64::from_bits(b)),
        d => unap64(ap64(a).sub_r(ap64(b), ap_round(d)).value),
    }
}
/// `mul{.rnd}.f64`.
#[inline]
pub fn mul_f64(a: u64, b: u64, rnd: Rnd) -> u64 {
    match dir(rnd) {
        Dir::Rn => canon64(f64::from_bits(a) * f64::from_bits(b)),
        d => unap64(ap64(a).mul_r(ap64(b), ap_round(d)).value),
    }
}
/// `fma.rnd.f64` / `mad.rnd.f64`.
#[inline]
pub fn fma_f64(a: u64, b: u64, c: u64, rnd: Rnd) -> u64 {
    match dir(rnd) {
        Dir::Rn => canon64(f64::from_bits(a).mul_add(f64::from_bits(b), f64::from_bits(c))),
        d => unap64(ap64(a).mul_add_r(ap64(b), ap64(c), ap_round(d)).value),
    }
}
/// `div.rnd.f64`.
pub fn div_f64(a: u64, b: u64, rnd: Rnd) -> u64 {
    match dir(rnd) {
        Dir::Rn => canon64(f64::from_bits(a) / f64::from_bits(b)),
        d => unap64(ap64(a).div_r(ap64(b), ap_round(d)).value),
    }
}
/// `rcp.rnd.f64`, `rcp.approx.ftz.f64` (the approximate form flushes subnormals).
pub fn rcp_f64(a: u64, rnd: Rnd, approx: bool) -> u64 {
    if approx {
        let a = ftz_f64(a);
        return ftz_f64(canon64(1.0 / f64::from_bits(a)));
    }
    div_f64(0x3FF0_0000_0000_0000, a, rnd)
}
/// `sqrt.rnd.f64`.
pub fn sqrt_f64(a: u64, rnd: Rnd) -> u64 {
    let x = f64::from_bits(a);
    let s = x.sqrt();
    let d = dir(rnd);
    if d == Dir::Rn || !s.is_finite() || s == 0.0 || s.is_nan() {
        return canon64(s);
    }
    // The residual x - s*s is exact unless x is tiny: scale by an even power of two.
    let (xs, ss, scale) = if x < f64::from_bits(0x0C00_0000_0000_0000) {
        let xs = x * f64::from_bits(0x4C70_0000_0000_0000); // 2^200
        (xs, xs.sqrt(), true)
    } else {
        (x, s, false)
    };
    let res = (-ss).mul_add(ss, xs);
    let mut r = ss;
    let up = |v: f64| f64::from_bits(v.to_bits() + 1);
    let down = |v: f64| f64::from_bits(v.to_bits() - 1);
    match d {
        Dir::Rz | Dir::Rm if res < 0.0 => r = down(r),
        Dir::Rp if res > 0.0 => r = up(r),
        _ => {}
    }
    if scale {
        // exact: result/2^100 only loses bits if subnormal, impossible for sqrt of f64 >= 2^-1074.
        r *= f64::from_bits(0x39B0_0000_0000_0000); // 2^-100
    }
    canon64(r)
}

// ---------------------------------------------------------------------------------------------
// f16 / bf16 arithmetic
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Half16 {
    F16,
    Bf16,
}

impl Half16 {
    #[inline]
    fn val(self, x: u16) -> f64 {
        match self {
            Half16::F16 => f16v(x),
            Half16::Bf16 => bf16v(x),
        }
    }
    #[inline]
    fn fmt(self) -> Fmt {
        match self {
            Half16::F16 => F16,
            Half16::Bf16 => BF16,
        }
    }
    #[inline]
    fn ftz(self, x: u16) -> u16 {
        match self {
            Half16::F16 => ftz_f16(x),
            Half16::Bf16 => ftz_bf16(x),
        }
    }
    #[inline]
    fn sat(self, x: u16) -> u16 {
        match self {
            Half16::F16 => sat_f16(x),
            Half16::Bf16 => sat_bf16(x),
        }
    }
    /// Rounds `v` (exact, or rounded to odd at 53 bits) to this format, then `.ftz`/`.sat`.
    #[inline]
    fn fin(self, v: f64, d: Dir, ftz: bool, sat: bool) -> u16 {
        let r = round_f64(v, self.fmt(), d) as u16;
        let r = if ftz { self.ftz(r) } else { r };
        if sat {
            self.sat(r)
        } else {
            r
        }
    }
    fn add(self, a: u16, b: u16, rnd: Rnd, ftz: bool, sat: bool) -> u16 {
        let (a, b) = if ftz {
            (self.ftz(a), self.ftz(b))
        } else {
            (a, b)
        };
        let d = dir(rnd);
        let (x, y) = (self.val(a), self.val(b));
        let v = if x.is_finite() && y.is_finite() {
            sum_odd(x, y, d)
        } else {
            x + y
        };
        self.fin(v, d, ftz, sat)
    }
    fn mul(self, a: u16, b: u16, rnd: Rnd, ftz: bool, sat: bool) -> u16 {
        let (a, b) = if ftz {
            (self.ftz(a), self.ftz(b))
        } else {
            (a, b)
        };
        let d = dir(rnd);
        self.fin(self.val(a) * self.val(b), d, ftz, sat) // exact product
    }
    fn fma(self, a: u16, b: u16, c: u16, rnd: Rnd, ftz: bool, sat: bool) -> u16 {
        let (a, b, c) = if ftz {
            (self.ftz(a), self.ftz(b), self.ftz(c))
        } else {
            (a, b, c)
        };
        let d = dir(rnd);
        let p = self.val(a) * self.val(b);
        let z = self.val(c);
        let v = if p.is_finite() && z.is_finite() {
            sum_odd(p, z, d)
        } else {
            p + z
        };
        self.fin(v, d, ftz, sat)
    }
}

/// `add{.rnd}{.ftz}{.sat}.f16`.
pub fn add_f16(a: u16, b: u16, rnd: Rnd, ftz: bool, sat: bool) -> u16 {
    Half16::F16.add(a, b, rnd, ftz, sat)
}
/// `sub{.rnd}{.ftz}{.sat}.f16`.
pub fn sub_f16(a: u16, b: u16, rnd: Rnd, ftz: bool, sat: bool) -> u16 {
    let b = if is_nan16(b) { b } else { b ^ 0x8000 };
    Half16::F16.add(a, b, rnd, ftz, sat)
}
/// `mul{.rnd}{.ftz}{.sat}.f16`.
pub fn mul_f16(a: u16, b: u16, rnd: Rnd, ftz: bool, sat: bool) -> u16 {
    Half16::F16.mul(a, b, rnd, ftz, sat)
}
/// `fma.rnd{.ftz}{.sat}.f16`.
pub fn fma_f16(a: u16, b: u16, c: u16, rnd: Rnd, ftz: bool, sat: bool) -> u16 {
    Half16::F16.fma(a, b, c, rnd, ftz, sat)
}
/// `add{.rnd}.bf16` (ftz/sat honoured if given).
pub fn add_bf16(a: u16, b: u16, rnd: Rnd, ftz: bool, sat: bool) -> u16 {
    Half16::Bf16.add(a, b, rnd, ftz, sat)
}
/// `sub{.rnd}.bf16`.
pub fn sub_bf16(a: u16, b: u16, rnd: Rnd, ftz: bool, sat: bool) -> u16 {
    let b = if is_nan_bf16(b) { b } else { b ^ 0x8000 };
    Half16::Bf16.add(a, b, rnd, ftz, sat)
}
/// `mul{.rnd}.bf16`.
pub fn mul_bf16(a: u16, b: u16, rnd: Rnd, ftz: bool, sat: bool) -> u16 {
    Half16::Bf16.mul(a, b, rnd, ftz, sat)
}
/// `fma.rnd{.relu}.bf16`.
pub fn fma_bf16(a: u16, b: u16, c: u16, rnd: Rnd, ftz: bool, sat: bool) -> u16 {
    Half16::Bf16.fma(a, b, c, rnd, ftz, sat)
}

/// Applies `f` to the two 16-bit lanes of packed `a`, `b` (lane 0 in the low half).
#[inline]
pub fn f16x2<F: Fn(u16, u16) -> u16>(a: u32, b: u32, f: F) -> u32 {
    let lo = f(a as u16, b as u16);
    let hi = f((a >> 16) as u16, (b >> 16) as u16);
    (lo as u32) | ((hi as u32) << 16)
}

/// Applies `f` to the two 16-bit lanes of packed `a`, `b`, `c`.
#[inline]
pub fn f16x2_3<F: Fn(u16, u16, u16) -> u16>(a: u32, b: u32, c: u32, f: F) -> u32 {
    let lo = f(a as u16, b as u16, c as u16);
    let hi = f((a >> 16) as u16, (b >> 16) as u16, (c >> 16) as u16);
    (lo as u32) | ((hi as u32) << 16)
}

// ---------------------------------------------------------------------------------------------
// min / max / abs / neg / copysign
// ---------------------------------------------------------------------------------------------

/// Shared min/max on values as f64 (exact), with the raw bits to return.
/// NaN rules: one NaN → the other; both NaN, or `.NaN` with any NaN → canonical NaN.
/// -0.0 is less than +0.0.
#[allow(clippy::too_many_arguments)]
#[inline]
fn minmax<T: Copy>(
    a: T,
    b: T,
    x: f64,
    y: f64,
    nan: bool,
    is_max: bool,
    canon: T,
    a_neg: bool,
) -> T {
    let (xn, yn) = (x.is_nan(), y.is_nan());
    if xn || yn {
        if nan || (xn && yn) {
            return canon;
        }
        return if xn { b } else { a };
    }
    if x == y {
        // equal values: only the zeros differ (by sign)
        return if is_max != a_neg { a } else { b };
    }
    if (x < y) != is_max {
        a
    } else {
        b
    }
}

/// `min{.ftz}{.NaN}.f32`.
pub fn min_f32(a: u32, b: u32, ftz: bool, nan: bool) -> u32 {
    let (a, b) = if ftz {
        (ftz_f32(a), ftz_f32(b))
    } else {
        (a, b)
    };
    minmax(a, b, f32v(a), f32v(b), nan, false, NAN_F32, a >> 31 != 0)
}
/// `max{.ftz}{.NaN}.f32`.
pub fn max_f32(a: u32, b: u32, ftz: bool, nan: bool) -> u32 {
    let (a, b) = if ftz {
        (ftz_f32(a), ftz_f32(b))
    } else {
        (a, b)
    };
    minmax(a, b, f32v(a), f32v(b), nan, true, NAN_F32, a >> 31 != 0)
}
/// `min.f64`.
pub fn min_f64(a: u64, b: u64) -> u64 {
    minmax(
        a,
        b,
        f64::from_bits(a),
        f64::from_bits(b),
        false,
        false,
        NAN_F64,
        a >> 63 != 0,
    )
}
/// `max.f64`.
pub fn max_f64(a: u64, b: u64) -> u64 {
    minmax(
        a,
        b,
        f64::from_bits(a),
        f64::from_bits(b),
        false,
        true,
        NAN_F64,
        a >> 63 != 0,
    )
}
/// `min{.ftz}{.NaN}.f16`.
pub fn min_f16(a: u16, b: u16, ftz: bool, nan: bool) -> u16 {
    let (a, b) = if ftz {
        (ftz_f16(a), ftz_f16(b))
    } else {
        (a, b)
    };
    minmax(a, b, f16v(a), f16v(b), nan, false, NAN_F16, a >> 15 != 0)
}
/// `max{.ftz}{.NaN}.f16`.
pub fn max_f16(a: u16, b: u16, ftz: bool, nan: bool) -> u16 {
    let (a, b) = if ftz {
        (ftz_f16(a), ftz_f16(b))
    } else {
        (a, b)
    };
    minmax(a, b, f16v(a), f16v(b), nan, true, NAN_F16, a >> 15 != 0)
}
/// `min{.NaN}.bf16`.
pub fn min_bf16(a: u16, b: u16, nan: bool) -> u16 {
    minmax(a, b, bf16v(a), bf16v(b), nan, false, NAN_BF16, a >> 15 != 0)
}
/// `max{.NaN}.bf16`.
pub fn max_bf16(a: u16, b: u16, nan: bool) -> u16 {
    minmax(a, b, bf16v(a), bf16v(b), nan, true, NAN_BF16, a >> 15 != 0)
}

/// `abs{.ftz}.f32`: clears the sign bit (NaN payload kept).
#[inline]
pub fn abs_f32(a: u32, ftz: bool) -> u32 {
    let a = if ftz { ftz_f32(a) } else { a };
    a & 0x7FFF_FFFF
}
/// `neg{.ftz}.f32`: flips the sign bit (NaN payload kept).
#[inline]
pub fn neg_f32(a: u32, ftz: bool) -> u32 {
    let a = if ftz { ftz_f32(a) } else { a };
    a ^ 0x8000_0000
}
/// `copysign.f32 d, a, b`: `d` is `b` with the sign of `a` (note: the reverse of C's order).
#[inline]
pub fn copysign_f32(a: u32, b: u32) -> u32 {
    (b & 0x7FFF_FFFF) | (a & 0x8000_0000)
}
/// `copysign.f64 d, a, b`: `d` is `b` with the sign of `a`.
#[inline]
pub fn copysign_f64(a: u64, b: u64) -> u64 {
    (b & 0x7FFF_FFFF_FFFF_FFFF) | (a & 0x8000_0000_0000_0000)
}

// ---------------------------------------------------------------------------------------------
// Approximate transcendentals
// ---------------------------------------------------------------------------------------------

/// Rounds an f64 to f32 (nearest even) with `.ftz` on the result; NaN → canonical NaN.
#[inline]
fn out32(v: f64, ftz: bool) -> u32 {
    let r = canon32(v as f32);
    if ftz {
        ftz_f32(r)
    } else {
        r
    }
}

/// `ex2.approx{.ftz}.f32`: 2^a. ex2(-inf) = +0, ex2(+inf) = +inf, ex2(+-0) = 1.
pub fn ex2_approx_f32(a: u32, ftz: bool) -> u32 {
    let a = if ftz { ftz_f32(a) } else { a };
    out32(f32v(a).exp2(), ftz)
}
/// `lg2.approx{.ftz}.f32`: log2(a). lg2(+-0) = -inf, lg2(a < 0) = NaN, lg2(+inf) = +inf.
pub fn lg2_approx_f32(a: u32, ftz: bool) -> u32 {
    let a = if ftz { ftz_f32(a) } else { a };
    let x = f32v(a);
    if x == 0.0 {
        return 0xFF80_0000;
    }
    if x < 0.0 {
        return NAN_F32;
    }
    out32(x.log2(), ftz)
}
/// `rsqrt.approx{.ftz}.f32`: 1/sqrt(a). rsqrt(+0) = +inf, rsqrt(-0) = -inf, rsqrt(+inf) = +0,
/// rsqrt(a < 0) = NaN.
pub fn rsqrt_approx_f32(a: u32, ftz: bool) -> u32 {
    let a = if ftz { ftz_f32(a) } else { a };
    let x = f32v(a);
    if x == 0.0 {
        return (a & 0x8000_0000) | 0x7F80_0000;
    }
    out32(1.0 / x.sqrt(), ftz)
}
/// `rsqrt.approx.f64`.
pub fn rsqrt_approx_f64(a: u64) -> u64 {
    let x = f64::from_bits(a);
    if x == 0.0 {
        return (a & 0x8000_0000_0000_0000) | 0x7FF0_0000_0000_0000;
    }
    canon64(1.0 / x.sqrt())
}
/// `sin.approx{.ftz}.f32`: sin(+-inf) = NaN, sin(+-0) = +-0.
pub fn sin_approx_f32(a: u32, ftz: bool) -> u32 {
    let a = if ftz { ftz_f32(a) } else { a };
    out32(f32v(a).sin(), ftz)
}
/// `cos.approx{.ftz}.f32`: cos(+-inf) = NaN, cos(+-0) = 1.
pub fn cos_approx_f32(a: u32, ftz: bool) -> u32 {
    let a = if ftz { ftz_f32(a) } else { a };
    out32(f32v(a).cos(), ftz)
}
/// `tanh.approx.f32`: tanh(+-inf) = +-1, tanh(+-0) = +-0.
pub fn tanh_approx_f32(a: u32) -> u32 {
    out32(f32v(a).tanh(), false)
}
/// `ex2.approx.f16`.
pub fn ex2_approx_f16(a: u16) -> u16 {
    round_f64(f16v(a).exp2(), F16, Dir::Rn) as u16
}
/// `tanh.approx.f16`.
pub fn tanh_approx_f16(a: u16) -> u16 {
    round_f64(f16v(a).tanh(), F16, Dir::Rn) as u16
}
/// `ex2.approx.ftz.bf16`.
pub fn ex2_approx_bf16(a: u16) -> u16 {
    ftz_bf16(round_f64(bf16v(ftz_bf16(a)).exp2(), BF16, Dir::Rn) as u16)
}
/// `tanh.approx.bf16`.
pub fn tanh_approx_bf16(a: u16) -> u16 {
    round_f64(bf16v(a).tanh(), BF16, Dir::Rn) as u16
}

// ---------------------------------------------------------------------------------------------
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
enum Kind {
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

fn kind(t: Ty) -> Kind {
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
fn mask(w: u32) -> u64 {
    if w >= 64 {
        u64::MAX
    } else {
        (1u64 << w) - 1
    }
}

/// The integer value of `bits` read as type `k`.
#[inline]
fn int_val(bits: u64, k: Kind) -> i128 {
    match k {
        Kind::U(w) => (bits & mask(w)) as i128,
        Kind::S(w) => (((bits << (64 - w)) as i64) >> (64 - w)) as i128,
        _ => unreachable!(),
    }
}

/// Writes integer `v` (already in range, or to be truncated) as type `k`: sign-extended to 64
/// bits for signed types, zero-extended for the others.
#[inline]
fn int_out(v: i128, k: Kind) -> u64 {
    match k {
        Kind::U(w) => (v as u64) & mask(w),
        Kind::S(w) => (((v as u64) << (64 - w)) as i64 >> (64 - w)) as u64,
        _ => unreachable!(),
    }
}

#[inline]
fn int_range(k: Kind) -> (i128, i128) {
    match k {
        Kind::U(w) => (0, mask(w) as i128),
        Kind::S(w) => (-(1i128 << (w - 1)), (1i128 << (w - 1)) - 1),
        _ => unreachable!(),
    }
}

/// The value of float bits of kind `k` as f64 (exact), after `.ftz` where it applies (f32).
#[inline]
fn float_in(bits: u64, k: Kind, ftz: bool) -> f64 {
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
fn float_out(v: f64, k: Kind, d: Dir, ftz: bool, sat: bool) -> u64 {
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
fn round_integral(x: f64, rnd: Rnd) -> f64 {
    match rnd {
        Rnd::Rni | Rnd::Rn => x.round_ties_even(),
        Rnd::Rmi | Rnd::Rm => x.floor(),
        Rnd::Rpi | Rnd::Rp => x.ceil(),
        Rnd::Rna => x.round(),
        _ => x.trunc(),
    }
}

/// An integer rounded to odd at 53 bits, as f64 (exact when it fits in 53 bits).
fn int_to_odd(v: i128) -> f64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustc_apfloat::ieee::{BFloat, Half, Single};
    use rustc_apfloat::FloatConvert;

    const MODES: [Rnd; 5] = [Rnd::None, Rnd::Rn, Rnd::Rz, Rnd::Rm, Rnd::Rp];

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        /// An f32 from a mix of categories: any bits, subnormals, specials, small integers,
        /// and (with `near`) an exponent close to or far from another value's.
        fn f32(&mut self, near: Option<u32>) -> u32 {
            let r = self.next();
            let sign = ((r >> 63) as u32) << 31;
            let mant = (r >> 8) as u32 & 0x7F_FFFF;
            match self.below(10) {
                0 => r as u32,
                1 => sign | mant, // subnormal
                2 => {
                    const SP: [u32; 10] = [
                        0,
                        0x8000_0000,
                        0x7F80_0000,
                        0xFF80_0000,
                        0x7FC0_0000,
                        0x7F7F_FFFF,
                        0x0080_0000,
                        0x0000_0001,
                        0x3F80_0000,
                        0x7FA0_0001,
                    ];
                    SP[self.below(10) as usize] ^ sign
                }
                3 => ((self.below(2000) as i32 - 1000) as f32).to_bits(),
                4..=6 => match near {
                    Some(n) => {
                        let e = ((n >> 23) & 0xFF) as i32;
                        let e2 = (e + self.below(5) as i32 - 2).clamp(0, 254) as u32;
                        let m = if self.below(2) == 0 {
                            (n & 0x7F_FFFF) ^ (mant & 0x3F)
                        } else {
                            mant
                        };
                        sign | (e2 << 23) | m
                    }
                    None => sign | (((self.below(60) as u32) + 97) << 23) | mant,
                },
                7 => match near {
                    Some(n) => {
                        let e = ((n >> 23) & 0xFF) as i32;
                        let e2 = (e + self.below(80) as i32 - 40).clamp(0, 254) as u32;
                        sign | (e2 << 23) | mant
                    }
                    None => sign | (((self.below(254) as u32) + 1) << 23) | mant,
                },
                8 => sign | ((self.below(30) as u32 + 1) << 23) | mant, // tiny normals
                _ => sign | ((self.below(30) as u32 + 224) << 23) | mant, // huge
            }
        }
        fn f16(&mut self) -> u16 {
            match self.below(4) {
                0 => self.next() as u16 & 0x83FF, // subnormal
                1 => {
                    const SP: [u16; 8] =
                        [0, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0x7BFF, 0x0400, 0x3C00];
                    SP[self.below(8) as usize]
                }
                _ => self.next() as u16,
            }
        }
    }

    fn rd(r: Rnd) -> Round {
        ap_round(dir(r))
    }
    fn canon_ref32(x: Single) -> u32 {
        let b = x.to_bits() as u32;
        if is_nan32(b) {
            NAN_F32
        } else {
            b
        }
    }
    fn s(x: u32) -> Single {
        Single::from_bits(x as u128)
    }
    fn ref_post(r: u32, ftz: bool, sat: bool) -> u32 {
        let r = if ftz && r & 0x7F80_0000 == 0 {
            r & 0x8000_0000
        } else {
            r
        };
        if sat {
            let v = f32::from_bits(r);
            if v.is_nan() || v <= 0.0 {
                0
            } else if v >= 1.0 {
                0x3F80_0000
            } else {
                r
            }
        } else {
            r
        }
    }
    fn fl(x: u32, ftz: bool) -> u32 {
        if ftz {
            ftz_f32(x)
        } else {
            x
        }
    }

    // ---- f32 arithmetic against APFloat ----

    #[test]
    fn f32_arith_vs_apfloat_random() {
        let mut g = Rng(0x1234_5678_9ABC_DEF1);
        for i in 0..300_000u32 {
            let a = g.f32(None);
            let b = g.f32(Some(a));
            let c = g.f32(Some(if i % 2 == 0 { a } else { b }));
            let rnd = MODES[(i % 5) as usize];
            let ftz = i % 7 == 0;
            let sat = i % 11 == 0;
            let r = rd(rnd);
            let (fa, fb, fc) = (fl(a, ftz), fl(b, ftz), fl(c, ftz));
            let want_add = ref_post(canon_ref32(s(fa).add_r(s(fb), r).value), ftz, sat);
            let want_sub = ref_post(canon_ref32(s(fa).sub_r(s(fb), r).value), ftz, sat);
            let want_mul = ref_post(canon_ref32(s(fa).mul_r(s(fb), r).value), ftz, sat);
            let want_fma = ref_post(
                canon_ref32(s(fa).mul_add_r(s(fb), s(fc), r).value),
                ftz,
                sat,
            );
            assert_eq!(
                add_f32(a, b, rnd, ftz, sat),
                want_add,
                "add {a:#x} {b:#x} {rnd:?} ftz={ftz} sat={sat}"
            );
            assert_eq!(
                sub_f32(a, b, rnd, ftz, sat),
                want_sub,
                "sub {a:#x} {b:#x} {rnd:?} ftz={ftz} sat={sat}"
            );
            assert_eq!(
                mul_f32(a, b, rnd, ftz, sat),
                want_mul,
                "mul {a:#x} {b:#x} {rnd:?} ftz={ftz} sat={sat}"
            );
            assert_eq!(
                fma_f32(a, b, c, rnd, ftz, sat),
                want_fma,
                "fma {a:#x} {b:#x} {c:#x} {rnd:?} ftz={ftz} sat={sat}"
            );
            if !sat {
                let want_div = ref_post(canon_ref32(s(fa).div_r(s(fb), r).value), ftz, false);
                assert_eq!(
                    div_f32(a, b, rnd, false, false, ftz),
                    want_div,
                    "div {a:#x} {b:#x} {rnd:?} ftz={ftz}"
                );
                let want_rcp = ref_post(
                    canon_ref32(s(0x3F80_0000).div_r(s(fa), r).value),
                    ftz,
                    false,
                );
                assert_eq!(
                    rcp_f32(a, rnd, false, ftz),
                    want_rcp,
                    "rcp {a:#x} {rnd:?} ftz={ftz}"
                );
            }
        }
    }

    #[test]
    fn f32_fma_rn_double_rounding_cases() {
        // a*b = 1 + 2^-11 + 2^-24 is a midpoint of f32; a tiny c decides the direction.
        let a = (1.0f32 + 2f32.powi(-12)).to_bits();
        let up = 2f32.powi(-70).to_bits();
        let dn = (-2f32.powi(-70)).to_bits();
        assert_eq!(
            fma_f32(a, a, up, Rnd::Rn, false, false),
            (1.0f32 + 2f32.powi(-11) + 2f32.powi(-23)).to_bits()
        );
        assert_eq!(
            fma_f32(a, a, dn, Rnd::Rn, false, false),
            (1.0f32 + 2f32.powi(-11)).to_bits()
        );
        assert_eq!(
            fma_f32(a, a, 0, Rnd::Rn, false, false),
            (1.0f32 + 2f32.powi(-11)).to_bits()
        ); // tie → even
        assert_eq!(
            fma_f32(a, a, 0, Rnd::Rp, false, false),
            (1.0f32 + 2f32.powi(-11) + 2f32.powi(-23)).to_bits()
        );
        assert_eq!(
            fma_f32(a, a, up, Rnd::Rz, false, false),
            (1.0f32 + 2f32.powi(-11)).to_bits()
        );
        // 1*1 + 2^-60
        let one = 1.0f32.to_bits();
        let t = 2f32.powi(-60).to_bits();
        assert_eq!(fma_f32(one, one, t, Rnd::Rp, false, false), 0x3F80_0001);
        assert_eq!(fma_f32(one, one, t, Rnd::Rn, false, false), one);
        assert_eq!(
            fma_f32(one, one, t ^ 0x8000_0000, Rnd::Rm, false, false),
            0x3F7F_FFFF
        );
        assert_eq!(
            fma_f32(one, one, t ^ 0x8000_0000, Rnd::Rz, false, false),
            0x3F7F_FFFF
        );
    }

    #[test]
    fn f32_directed_hand_cases() {
        let one = 1.0f32.to_bits();
        let t = 2f32.powi(-30).to_bits();
        assert_eq!(add_f32(one, t, Rnd::Rn, false, false), one);
        assert_eq!(add_f32(one, t, Rnd::Rz, false, false), one);
        assert_eq!(add_f32(one, t, Rnd::Rm, false, false), one);
        assert_eq!(add_f32(one, t, Rnd::Rp, false, false), 0x3F80_0001);
        assert_eq!(
            add_f32(one | 1 << 31, t | 1 << 31, Rnd::Rm, false, false),
            0xBF80_0001
        );
        assert_eq!(
            add_f32(one | 1 << 31, t | 1 << 31, Rnd::Rp, false, false),
            0xBF80_0000
        );
        // exact zero sums: -0 only under .rm
        let x = 3.5f32.to_bits();
        assert_eq!(sub_f32(x, x, Rnd::Rn, false, false), 0);
        assert_eq!(sub_f32(x, x, Rnd::Rz, false, false), 0);
        assert_eq!(sub_f32(x, x, Rnd::Rp, false, false), 0);
        assert_eq!(sub_f32(x, x, Rnd::Rm, false, false), 0x8000_0000);
        assert_eq!(add_f32(0, 0x8000_0000, Rnd::Rm, false, false), 0x8000_0000);
        assert_eq!(add_f32(0, 0x8000_0000, Rnd::Rn, false, false), 0);
        assert_eq!(add_f32(0, 0, Rnd::Rm, false, false), 0);
        // overflow by mode
        let max = 0x7F7F_FFFF;
        let two = 2.0f32.to_bits();
        assert_eq!(mul_f32(max, two, Rnd::Rn, false, false), 0x7F80_0000);
        assert_eq!(mul_f32(max, two, Rnd::Rz, false, false), max);
        assert_eq!(mul_f32(max, two, Rnd::Rm, false, false), max);
        assert_eq!(mul_f32(max, two, Rnd::Rp, false, false), 0x7F80_0000);
        assert_eq!(
            mul_f32(max | 1 << 31, two, Rnd::Rm, false, false),
            0xFF80_0000
        );
        assert_eq!(
            mul_f32(max | 1 << 31, two, Rnd::Rp, false, false),
            max | 1 << 31
        );
        // underflow to the smallest subnormal / zero
        let tiny = 0x0000_0001;
        let half = 0.5f32.to_bits();
        assert_eq!(mul_f32(tiny, half, Rnd::Rn, false, false), 0);
        assert_eq!(mul_f32(tiny, half, Rnd::Rp, false, false), 1);
        assert_eq!(
            mul_f32(tiny | 1 << 31, half, Rnd::Rm, false, false),
            0x8000_0001
        );
        // ftz: subnormal inputs and results flush to signed zero
        assert_eq!(add_f32(tiny, tiny, Rnd::Rn, true, false), 0);
        assert_eq!(add_f32(tiny, 0, Rnd::Rn, false, false), tiny);
        assert_eq!(mul_f32(0x0080_0000, half, Rnd::Rn, true, false), 0);
        assert_eq!(
            mul_f32(0x8080_0000, half, Rnd::Rn, true, false),
            0x8000_0000
        );
        assert_eq!(
            mul_f32(0x0080_0000, half, Rnd::Rn, false, false),
            0x0040_0000
        );
        // sat
        assert_eq!(add_f32(one, one, Rnd::Rn, false, true), one);
        assert_eq!(sub_f32(0, one, Rnd::Rn, false, true), 0);
        assert_eq!(add_f32(0x7F80_0000, 0xFF80_0000, Rnd::Rn, false, true), 0);
        assert_eq!(mul_f32(half, half, Rnd::Rn, false, true), 0.25f32.to_bits());
        // NaN results are canonical
        assert_eq!(
            add_f32(0x7F80_0000, 0xFF80_0000, Rnd::Rn, false, false),
            NAN_F32
        );
        assert_eq!(mul_f32(0xFFC0_1234, one, Rnd::Rn, false, false), NAN_F32);
        assert_eq!(fma_f32(0, 0x7F80_0000, one, Rnd::Rz, false, false), NAN_F32);
    }

    #[test]
    fn f32_div_sqrt_special() {
        let one = 1.0f32.to_bits();
        // div.approx: 2^126 < |b| < 2^128 → 0 (NaN for infinite a)
        let big = 2f32.powi(127).to_bits();
        assert_eq!(div_f32(one, big, Rnd::None, true, false, false), 0);
        assert_eq!(
            div_f32(one | 1 << 31, big, Rnd::None, true, false, false),
            0x8000_0000
        );
        assert_eq!(
            div_f32(0x7F80_0000, big, Rnd::None, true, false, false),
            NAN_F32
        );
        assert_eq!(
            div_f32(one, big, Rnd::None, false, true, false),
            2f32.powi(-127).to_bits()
        );
        assert_eq!(
            div_f32(one, 4.0f32.to_bits(), Rnd::None, true, false, false),
            0.25f32.to_bits()
        );
        assert_eq!(div_f32(one, 0, Rnd::Rn, false, false, false), 0x7F80_0000);
        assert_eq!(div_f32(0, 0, Rnd::Rn, false, false, false), NAN_F32);
        assert_eq!(
            div_f32(one, 3.0f32.to_bits(), Rnd::Rz, false, false, false),
            0x3EAA_AAAA
        );
        assert_eq!(
            div_f32(one, 3.0f32.to_bits(), Rnd::Rp, false, false, false),
            0x3EAA_AAAB
        );
        assert_eq!(rcp_f32(0x8000_0000, Rnd::Rn, true, false), 0xFF80_0000);
        assert_eq!(rcp_f32(0x7F80_0000, Rnd::Rn, true, false), 0);
        assert_eq!(sqrt_f32(0x8000_0000, Rnd::Rn, false, false), 0x8000_0000);
        assert_eq!(sqrt_f32((-4.0f32).to_bits(), Rnd::Rn, true, false), NAN_F32);
        assert_eq!(sqrt_f32(0x7F80_0000, Rnd::Rz, false, false), 0x7F80_0000);
        assert_eq!(
            sqrt_f32(4.0f32.to_bits(), Rnd::Rm, false, false),
            2.0f32.to_bits()
        );
        assert_eq!(
            sqrt_f32(2.0f32.to_bits(), Rnd::Rz, false, false),
            0x3FB5_04F3
        );
        assert_eq!(
            sqrt_f32(2.0f32.to_bits(), Rnd::Rp, false, false),
            0x3FB5_04F4
        );
        assert_eq!(sqrt_f32(1, Rnd::Rn, false, true), 0);
        assert_eq!(sqrt_f32(1, Rnd::Rn, true, true), 0);
        assert_eq!(
            sqrt_f32(1, Rnd::Rn, true, false),
            (f32v(1).sqrt() as f32).to_bits()
        );
    }

    #[test]
    fn f32_sqrt_directed_random() {
        let mut g = Rng(77);
        for i in 0..200_000u32 {
            let a = g.f32(None) & 0x7FFF_FFFF;
            if is_nan32(a) || a == 0x7F80_0000 {
                continue;
            }
            let rnd = MODES[(i % 5) as usize];
            let r = sqrt_f32(a, rnd, false, false);
            let x = f32v(a);
            let v = f32v(r);
            let nx = f32::from_bits(r + 1) as f64;
            let pv = if r == 0 {
                -1.0
            } else {
                f32::from_bits(r - 1) as f64
            };
            // r*r, next*next, prev*prev are exact in f64
            match dir(rnd) {
                Dir::Rz | Dir::Rm => assert!(v * v <= x && nx * nx > x, "sqrt {a:#x} {rnd:?}"),
                Dir::Rp => assert!(
                    v * v >= x && (pv < 0.0 || pv * pv < x),
                    "sqrt {a:#x} {rnd:?}"
                ),
                _ => {
                    assert_eq!(r, (x.sqrt() as f32).to_bits());
                    // nearest: |v - sqrt x| <= half ulp ⇔ compare with midpoints
                    let mid_hi = (v + nx) / 2.0;
                    assert!(mid_hi * mid_hi >= x);
                }
            }
        }
    }

    // ---- f64 ----

    #[test]
    fn f64_arith() {
        let one = 1.0f64.to_bits();
        let t = 2f64.powi(-60).to_bits();
        assert_eq!(add_f64(one, t, Rnd::Rp), one + 1);
        assert_eq!(add_f64(one, t, Rnd::Rn), one);
        assert_eq!(sub_f64(one, t, Rnd::Rz), 0x3FEF_FFFF_FFFF_FFFF);
        assert_eq!(sub_f64(one, t, Rnd::Rn), one);
        assert_eq!(
            mul_f64(f64::MAX.to_bits(), 2.0f64.to_bits(), Rnd::Rz),
            f64::MAX.to_bits()
        );
        assert_eq!(fma_f64(one, one, t, Rnd::Rp), one + 1);
        assert_eq!(
            div_f64(one, 3.0f64.to_bits(), Rnd::Rz),
            0x3FD5_5555_5555_5555
        );
        assert_eq!(
            div_f64(one, 3.0f64.to_bits(), Rnd::Rp),
            0x3FD5_5555_5555_5556
        );
        assert_eq!(
            rcp_f64(3.0f64.to_bits(), Rnd::Rm, false),
            0x3FD5_5555_5555_5555
        );
        assert_eq!(
            add_f64(0x7FF0_0000_0000_0000, 0xFFF0_0000_0000_0000, Rnd::Rn),
            NAN_F64
        );
        assert_eq!(rcp_f64(1, Rnd::None, true), 0x7FF0_0000_0000_0000); // ftz: 1/+0
        let mut g = Rng(99);
        for i in 0..100_000u32 {
            let a = g.next() >> (g.below(3) * 2);
            let x = f64::from_bits(a).abs();
            if x.is_nan() || x.is_infinite() {
                continue;
            }
            let rnd = MODES[(i % 5) as usize];
            let r = f64::from_bits(sqrt_f64(x.to_bits(), rnd));
            let n = f64::from_bits(r.to_bits() + 1);
            // exact check with APFloat products (x is f64, so compare r*r with x exactly)
            let rr = ap64(r.to_bits()).mul_r(ap64(r.to_bits()), Round::TowardZero);
            let nn = ap64(n.to_bits()).mul_r(ap64(n.to_bits()), Round::TowardZero);
            let le = |p: rustc_apfloat::StatusAnd<Double>| {
                p.value.partial_cmp(&ap64(x.to_bits())).unwrap()
            };
            use std::cmp::Ordering::*;
            match dir(rnd) {
                Dir::Rz | Dir::Rm => {
                    assert!(
                        le(rr) != Greater
                            || rr.status.contains(rustc_apfloat::Status::INEXACT)
                                && le(rr) == Equal,
                        "sqrt {x:e} {rnd:?}"
                    );
                    assert!(le(nn) != Less, "sqrt next {x:e} {rnd:?}");
                }
                Dir::Rp => {
                    assert!(le(rr) != Less, "sqrt {x:e} {rnd:?}");
                }
                _ => assert_eq!(r, x.sqrt()),
            }
        }
    }

    // ---- f16 / bf16 arithmetic against APFloat ----

    fn h(x: u16) -> Half {
        Half::from_bits(x as u128)
    }
    fn bf(x: u16) -> BFloat {
        BFloat::from_bits(x as u128)
    }

    #[test]
    fn f16_bf16_arith_vs_apfloat() {
        let mut g = Rng(4242);
        for i in 0..400_000u32 {
            let (a, b, c) = (g.f16(), g.f16(), g.f16());
            let rnd = MODES[(i % 5) as usize];
            let r = rd(rnd);
            let c16 = |x: Half| {
                let b = x.to_bits() as u16;
                if is_nan16(b) {
                    NAN_F16
                } else {
                    b
                }
            };
            assert_eq!(
                add_f16(a, b, rnd, false, false),
                c16(h(a).add_r(h(b), r).value),
                "add16 {a:#x} {b:#x} {rnd:?}"
            );
            assert_eq!(
                sub_f16(a, b, rnd, false, false),
                c16(h(a).sub_r(h(b), r).value),
                "sub16 {a:#x} {b:#x} {rnd:?}"
            );
            assert_eq!(
                mul_f16(a, b, rnd, false, false),
                c16(h(a).mul_r(h(b), r).value),
                "mul16 {a:#x} {b:#x} {rnd:?}"
            );
            assert_eq!(
                fma_f16(a, b, c, rnd, false, false),
                c16(h(a).mul_add_r(h(b), h(c), r).value),
                "fma16 {a:#x} {b:#x} {c:#x} {rnd:?}"
            );
            let cb = |x: BFloat| {
                let b = x.to_bits() as u16;
                if is_nan_bf16(b) {
                    NAN_BF16
                } else {
                    b
                }
            };
            assert_eq!(
                add_bf16(a, b, rnd, false, false),
                cb(bf(a).add_r(bf(b), r).value),
                "addbf {a:#x} {b:#x} {rnd:?}"
            );
            assert_eq!(
                sub_bf16(a, b, rnd, false, false),
                cb(bf(a).sub_r(bf(b), r).value),
                "subbf {a:#x} {b:#x} {rnd:?}"
            );
            assert_eq!(
                mul_bf16(a, b, rnd, false, false),
                cb(bf(a).mul_r(bf(b), r).value),
                "mulbf {a:#x} {b:#x} {rnd:?}"
            );
            assert_eq!(
                fma_bf16(a, b, c, rnd, false, false),
                cb(bf(a).mul_add_r(bf(b), bf(c), r).value),
                "fmabf {a:#x} {b:#x} {c:#x} {rnd:?}"
            );
        }
    }

    #[test]
    fn f16_bf16_fma_wide_exponent_gaps() {
        // bf16: product exactly on a midpoint plus a far-smaller addend (double-rounding trap).
        let mut g = Rng(5);
        for i in 0..200_000u32 {
            let a = (g.next() as u16) & 0x7FFF;
            let b = (g.next() as u16) & 0x7FFF;
            let c = (g.next() as u16 & 0x807F) | (((g.below(40) as u16) + 1) << 7);
            let rnd = MODES[(i % 5) as usize];
            let want = bf(a).mul_add_r(bf(b), bf(c), rd(rnd)).value.to_bits() as u16;
            let want = if is_nan_bf16(want) { NAN_BF16 } else { want };
            assert_eq!(
                fma_bf16(a, b, c, rnd, false, false),
                want,
                "fmabf {a:#x} {b:#x} {c:#x} {rnd:?}"
            );
        }
        // 1.0078125 (1 + 2^-7) * (1 + 2^-8 ...) style hand case: (1+2^-4)^2 = 1 + 2^-3 + 2^-8,
        // a bf16 midpoint; + tiny decides.
        let a = 0x3F88; // 1 + 2^-4
        let tiny = 0x0080; // 2^-126
        assert_eq!(fma_bf16(a, a, tiny, Rnd::Rn, false, false), 0x3F91);
        assert_eq!(fma_bf16(a, a, tiny | 0x8000, Rnd::Rn, false, false), 0x3F90);
        assert_eq!(fma_bf16(a, a, 0, Rnd::Rn, false, false), 0x3F90);
    }

    #[test]
    fn f16_ftz_sat_and_lanes() {
        let sub = 0x0001u16; // 2^-24
        assert_eq!(add_f16(sub, sub, Rnd::Rn, false, false), 0x0002);
        assert_eq!(add_f16(sub, sub, Rnd::Rn, true, false), 0);
        assert_eq!(mul_f16(0x8400, 0x3800, Rnd::Rn, true, false), 0x8000); // -2^-14 * 0.5 → -0
        assert_eq!(add_f16(0x3C00, 0x3C00, Rnd::Rn, false, true), 0x3C00);
        assert_eq!(sub_f16(0x3C00, 0x4000, Rnd::Rn, false, true), 0);
        assert_eq!(add_f16(0x7C00, 0xFC00, Rnd::Rn, false, true), 0);
        assert_eq!(add_f16(0x7C00, 0xFC00, Rnd::Rn, false, false), NAN_F16);
        assert_eq!(
            fma_f16(0x3800, 0x3800, 0x3400, Rnd::Rn, false, true),
            0x3800
        );
        // 65504 + 16 = 65520 ties to even → inf; .rz keeps max
        assert_eq!(add_f16(0x7BFF, 0x4C00, Rnd::Rn, false, false), 0x7C00);
        assert_eq!(add_f16(0x7BFF, 0x4C00, Rnd::Rz, false, false), 0x7BFF);
        // lanes: element 0 in the low half
        let a = 0x4000_3C00u32; // [1.0, 2.0]
        let b = 0x4200_3C00u32; // [1.0, 3.0]
        assert_eq!(
            f16x2(a, b, |x, y| add_f16(x, y, Rnd::Rn, false, false)),
            0x4500_4000
        );
        assert_eq!(
            f16x2_3(a, b, a, |x, y, z| fma_f16(x, y, z, Rnd::Rn, false, false)),
            0x4800_4000
        );
        assert_eq!(
            f16x2(0x0000_3C00, 0x0000_0000, |x, y| min_f16(x, y, false, false)),
            0
        );
    }

    // ---- min / max / abs / neg / copysign ----

    #[test]
    fn min_max_nan_and_zero() {
        let one = 1.0f32.to_bits();
        let qn = 0x7FC0_0001;
        assert_eq!(min_f32(qn, one, false, false), one);
        assert_eq!(min_f32(one, qn, false, false), one);
        assert_eq!(max_f32(qn, one, false, false), one);
        assert_eq!(max_f32(qn, 0xFFC0_0000, false, false), NAN_F32);
        assert_eq!(min_f32(qn, one, false, true), NAN_F32);
        assert_eq!(max_f32(one, qn, false, true), NAN_F32);
        assert_eq!(min_f32(0, 0x8000_0000, false, false), 0x8000_0000);
        assert_eq!(min_f32(0x8000_0000, 0, false, false), 0x8000_0000);
        assert_eq!(max_f32(0, 0x8000_0000, false, false), 0);
        assert_eq!(max_f32(0x8000_0000, 0, false, false), 0);
        assert_eq!(min_f32(one, 2.0f32.to_bits(), false, false), one);
        assert_eq!(
            max_f32(one, 2.0f32.to_bits(), false, false),
            2.0f32.to_bits()
        );
        assert_eq!(min_f32(0xFF80_0000, one, false, false), 0xFF80_0000);
        // ftz: subnormals are zeros
        assert_eq!(min_f32(0x0000_0001, 0, false, false), 0);
        assert_eq!(min_f32(0x8000_0001, 0, true, false), 0x8000_0000);
        assert_eq!(max_f32(0x0000_0005, 0x0000_0003, true, false), 0);
        assert_eq!(max_f32(0x0000_0005, 0x0000_0003, false, false), 5);
        // f64
        assert_eq!(min_f64(NAN_F64 ^ 5, 2.0f64.to_bits()), 2.0f64.to_bits());
        assert_eq!(max_f64(NAN_F64 ^ 5, 0xFFF8_0000_0000_0000), NAN_F64);
        assert_eq!(min_f64(0, 1 << 63), 1 << 63);
        assert_eq!(max_f64(1 << 63, 0), 0);
        assert_eq!(
            max_f64(1.5f64.to_bits(), (-3.0f64).to_bits()),
            1.5f64.to_bits()
        );
        // f16
        assert_eq!(min_f16(0x7E00, 0x3C00, false, false), 0x3C00);
        assert_eq!(max_f16(0x7E00, 0x7E01, false, false), NAN_F16);
        assert_eq!(max_f16(0x7E00, 0x3C00, false, true), NAN_F16);
        assert_eq!(min_f16(0x8000, 0x0000, false, false), 0x8000);
        assert_eq!(max_f16(0x8000, 0x0000, false, false), 0x0000);
        assert_eq!(min_f16(0x8001, 0x0000, true, false), 0x8000);
        assert_eq!(min_f16(0xBC00, 0x3C00, false, false), 0xBC00);
        assert_eq!(min_bf16(0x7FC1, 0x3F80, false), 0x3F80);
        assert_eq!(max_bf16(0x7FC1, 0x3F80, true), NAN_BF16);
    }

    #[test]
    fn abs_neg_copysign() {
        assert_eq!(abs_f32(0xFFC0_1234, false), 0x7FC0_1234);
        assert_eq!(neg_f32(0x7FC0_1234, false), 0xFFC0_1234);
        assert_eq!(abs_f32(0x8000_0001, true), 0);
        assert_eq!(neg_f32(0x0000_0001, true), 0x8000_0000);
        assert_eq!(neg_f32(0x0000_0001, false), 0x8000_0001);
        // copysign.f32 d, a, b: |b| with a's sign
        let m2 = (-2.0f32).to_bits();
        let p3 = 3.0f32.to_bits();
        assert_eq!(copysign_f32(m2, p3), (-3.0f32).to_bits());
        assert_eq!(copysign_f32(p3, m2), 2.0f32.to_bits());
        assert_eq!(
            copysign_f64((-1.0f64).to_bits(), 5.0f64.to_bits()),
            (-5.0f64).to_bits()
        );
        assert_eq!(copysign_f64(1.0f64.to_bits(), NAN_F64 | 1 << 63), NAN_F64);
    }

    // ---- setp ----

    #[test]
    fn setp_ordered_unordered() {
        let one = 1.0f32.to_bits() as u64;
        let two = 2.0f32.to_bits() as u64;
        let nan = NAN_F32 as u64;
        use Cmp::*;
        let all = [
            Eq, Ne, Lt, Le, Gt, Ge, Equ, Neu, Ltu, Leu, Gtu, Geu, Num, Nan,
        ];
        for &c in &all {
            let unord = matches!(c, Equ | Neu | Ltu | Leu | Gtu | Geu | Nan);
            assert_eq!(
                setp_float(nan, one, Ty::F32, c, false),
                unord,
                "{c:?} nan,1"
            );
            assert_eq!(
                setp_float(one, nan, Ty::F32, c, false),
                unord,
                "{c:?} 1,nan"
            );
            assert_eq!(
                setp_float(0x7E00, 0x3C00, Ty::F16, c, false),
                unord,
                "{c:?} f16"
            );
            assert_eq!(
                setp_float(0x7FC0, 0x3F80, Ty::Bf16, c, false),
                unord,
                "{c:?} bf16"
            );
            assert_eq!(
                setp_float(NAN_F64, 0, Ty::F64, c, false),
                unord,
                "{c:?} f64"
            );
        }
        let t = |c, a, b| setp_float(a, b, Ty::F32, c, false);
        assert!(t(Lt, one, two) && t(Le, one, two) && !t(Gt, one, two) && !t(Ge, one, two));
        assert!(t(Ne, one, two) && t(Neu, one, two) && !t(Eq, one, two) && !t(Equ, one, two));
        assert!(t(Eq, 0, 0x8000_0000) && t(Le, 0x8000_0000, 0) && !t(Lt, 0x8000_0000, 0));
        assert!(t(Ltu, one, two) && !t(Gtu, one, two) && t(Num, one, two) && !t(Nan, one, two));
        // ftz: a subnormal equals zero
        assert!(!setp_float(1, 0, Ty::F32, Eq, false));
        assert!(setp_float(1, 0, Ty::F32, Eq, true));
        assert!(setp_float(0x8001, 0, Ty::F16, Eq, true));
        assert!(setp_float(
            1.0f64.to_bits(),
            0.5f64.to_bits(),
            Ty::F64,
            Gt,
            false
        ));
    }

    // ---- cvt ----

    fn f32b(x: f32) -> u64 {
        x.to_bits() as u64
    }

    #[test]
    fn cvt_f32_to_f16_table() {
        use Rnd::*;
        let c = |x: f32, r: Rnd| cvt(f32b(x), Ty::F16, Ty::F32, r, false, false);
        // (input, Rn, Rz, Rm, Rp)
        let table: &[(f32, u64, u64, u64, u64)] = &[
            (1.0, 0x3C00, 0x3C00, 0x3C00, 0x3C00),
            (65504.0, 0x7BFF, 0x7BFF, 0x7BFF, 0x7BFF),
            (65519.0, 0x7BFF, 0x7BFF, 0x7BFF, 0x7C00),
            (65520.0, 0x7C00, 0x7BFF, 0x7BFF, 0x7C00), // the overflow midpoint: ties to even → inf
            (1.0e6, 0x7C00, 0x7BFF, 0x7BFF, 0x7C00),
            (-1.0e6, 0xFC00, 0xFBFF, 0xFC00, 0xFBFF),
            (f32::INFINITY, 0x7C00, 0x7C00, 0x7C00, 0x7C00),
            (f32::NEG_INFINITY, 0xFC00, 0xFC00, 0xFC00, 0xFC00),
            (1.0 + 1.0 / 2048.0, 0x3C00, 0x3C00, 0x3C00, 0x3C01), // tie → even
            (1.0 + 3.0 / 2048.0, 0x3C02, 0x3C01, 0x3C01, 0x3C02), // tie → even
            (-(1.0 + 1.0 / 4096.0), 0xBC00, 0xBC00, 0xBC01, 0xBC00),
            // subnormals
            (2f32.powi(-14), 0x0400, 0x0400, 0x0400, 0x0400),
            (2f32.powi(-24), 0x0001, 0x0001, 0x0001, 0x0001),
            (1023.0 * 2f32.powi(-24), 0x03FF, 0x03FF, 0x03FF, 0x03FF),
            (2f32.powi(-25), 0x0000, 0x0000, 0x0000, 0x0001), // tie → even (0)
            (3.0 * 2f32.powi(-26), 0x0001, 0x0000, 0x0000, 0x0001),
            (3.0 * 2f32.powi(-25), 0x0002, 0x0001, 0x0001, 0x0002), // 1.5 ulp tie → 2
            (-(2f32.powi(-30)), 0x8000, 0x8000, 0x8001, 0x8000),
            (2f32.powi(-30), 0x0000, 0x0000, 0x0000, 0x0001),
            (-0.0, 0x8000, 0x8000, 0x8000, 0x8000),
            (
                2f32.powi(-14) - 2f32.powi(-26),
                0x0400,
                0x03FF,
                0x03FF,
                0x0400,
            ), // rounds up into normal
        ];
        for &(x, rn, rz, rm, rp) in table {
            assert_eq!(c(x, None), rn, "{x:e} default");
            assert_eq!(c(x, Rn), rn, "{x:e} rn");
            assert_eq!(c(x, Rz), rz, "{x:e} rz");
            assert_eq!(c(x, Rm), rm, "{x:e} rm");
            assert_eq!(c(x, Rp), rp, "{x:e} rp");
        }
        assert_eq!(c(1.0 + 1.0 / 2048.0, Rna), 0x3C01);
        // NaN → canonical
        for n in [0x7FC0_0000u32, 0xFFC0_0000, 0x7F80_0001, 0x7FFF_FFFF] {
            for r in [None, Rn, Rz, Rm, Rp] {
                assert_eq!(
                    cvt(n as u64, Ty::F16, Ty::F32, r, false, false),
                    NAN_F16 as u64
                );
            }
            assert_eq!(
                cvt(n as u64, Ty::Bf16, Ty::F32, Rn, false, false),
                NAN_BF16 as u64
            );
        }
        // ftz flushes the f32 input; sat clamps
        assert_eq!(cvt(1, Ty::F16, Ty::F32, Rp, false, false), 1);
        assert_eq!(cvt(1, Ty::F16, Ty::F32, Rp, true, false), 0);
        assert_eq!(cvt(f32b(2.0), Ty::F16, Ty::F32, Rn, false, true), 0x3C00);
        assert_eq!(cvt(f32b(-2.0), Ty::F16, Ty::F32, Rn, false, true), 0);
        assert_eq!(cvt(NAN_F32 as u64, Ty::F16, Ty::F32, Rn, false, true), 0);
        assert_eq!(cvt(f32b(0.5), Ty::F16, Ty::F32, Rn, false, true), 0x3800);
    }

    #[test]
    fn cvt_float_float_vs_apfloat() {
        let mut g = Rng(31337);
        for i in 0..300_000u32 {
            let a = g.f32(None);
            let rnd = MODES[(i % 5) as usize];
            let r = rd(rnd);
            if !is_nan32(a) {
                let want: Half = s(a).convert_r(r, &mut false).value;
                assert_eq!(
                    cvt(a as u64, Ty::F16, Ty::F32, rnd, false, false),
                    want.to_bits() as u64,
                    "f16<-f32 {a:#x} {rnd:?}"
                );
                if matches!(rnd, Rnd::None | Rnd::Rn) {
                    assert_eq!(
                        f32_to_f16_rn(f32::from_bits(a)) as u64,
                        want.to_bits() as u64
                    );
                    let wb: BFloat = s(a).convert_r(r, &mut false).value;
                    assert_eq!(
                        f32_to_bf16_rn(f32::from_bits(a)) as u64,
                        wb.to_bits() as u64,
                        "bf16 rn {a:#x}"
                    );
                }
                let wb: BFloat = s(a).convert_r(r, &mut false).value;
                assert_eq!(
                    cvt(a as u64, Ty::Bf16, Ty::F32, rnd, false, false),
                    wb.to_bits() as u64,
                    "bf16<-f32 {a:#x} {rnd:?}"
                );
                let wd: Double = s(a).convert_r(r, &mut false).value;
                assert_eq!(
                    cvt(a as u64, Ty::F64, Ty::F32, rnd, false, false),
                    wd.to_bits() as u64
                );
            }
            let d = g.next();
            if !is_nan64(d) {
                let want: Single = ap64(d).convert_r(r, &mut false).value;
                assert_eq!(
                    cvt(d, Ty::F32, Ty::F64, rnd, false, false),
                    want.to_bits() as u64,
                    "f32<-f64 {d:#x} {rnd:?}"
                );
                let wh: Half = ap64(d).convert_r(r, &mut false).value;
                assert_eq!(
                    cvt(d, Ty::F16, Ty::F64, rnd, false, false),
                    wh.to_bits() as u64,
                    "f16<-f64 {d:#x} {rnd:?}"
                );
                let wb: BFloat = ap64(d).convert_r(r, &mut false).value;
                assert_eq!(
                    cvt(d, Ty::Bf16, Ty::F64, rnd, false, false),
                    wb.to_bits() as u64,
                    "bf16<-f64 {d:#x} {rnd:?}"
                );
                // narrow exponents too
                let d2 = (d & 0x800F_FFFF_FFFF_FFFF) | ((0x3FF - 160 + g.below(320)) << 52);
                let want: Single = ap64(d2).convert_r(r, &mut false).value;
                assert_eq!(
                    cvt(d2, Ty::F32, Ty::F64, rnd, false, false),
                    want.to_bits() as u64,
                    "f32<-f64 {d2:#x} {rnd:?}"
                );
                let wh: Half = ap64(d2).convert_r(r, &mut false).value;
                assert_eq!(
                    cvt(d2, Ty::F16, Ty::F64, rnd, false, false),
                    wh.to_bits() as u64,
                    "f16<-f64 {d2:#x} {rnd:?}"
                );
            }
        }
    }

    #[test]
    fn f32_to_f16_fast_path_sweep() {
        let mut x = 0u32;
        loop {
            let want = round_f64(f32::from_bits(x) as f64, F16, Dir::Rn) as u16;
            assert_eq!(f32_to_f16_rn(f32::from_bits(x)), want, "{x:#x}");
            match x.checked_add(997) {
                Some(n) => x = n,
                None => break,
            }
        }
        // every f16 value, midpoint and neighbours of midpoints
        for h in 0..0x7C00u32 {
            let v = half::f16::from_bits(h as u16).to_f32();
            let n = half::f16::from_bits(h as u16 + 1).to_f32();
            let mid = ((v as f64 + n as f64) / 2.0) as f32; // exact in f32
            for m in [
                mid.to_bits() - 1,
                mid.to_bits(),
                mid.to_bits() + 1,
                v.to_bits(),
            ] {
                for sgn in [0, 0x8000_0000] {
                    let f = f32::from_bits(m | sgn);
                    assert_eq!(
                        f32_to_f16_rn(f),
                        round_f64(f as f64, F16, Dir::Rn) as u16,
                        "{:#x}",
                        m | sgn
                    );
                }
            }
        }
    }

    #[test]
    fn cvt_widening_exact() {
        for h in 0..=u16::MAX {
            let w = cvt(h as u64, Ty::F32, Ty::F16, Rnd::None, false, false) as u32;
            if is_nan16(h) {
                assert_eq!(w, NAN_F32);
                assert_eq!(f16_to_f32(h).to_bits(), NAN_F32);
                assert_eq!(
                    cvt(h as u64, Ty::F64, Ty::F16, Rnd::None, false, false),
                    NAN_F64
                );
            } else {
                assert_eq!(w, half::f16::from_bits(h).to_f32().to_bits(), "{h:#x}");
                assert_eq!(f16_to_f32(h).to_bits(), w);
                assert_eq!(
                    cvt(h as u64, Ty::F64, Ty::F16, Rnd::None, false, false),
                    half::f16::from_bits(h).to_f64().to_bits()
                );
                // round trip
                assert_eq!(
                    cvt(w as u64, Ty::F16, Ty::F32, Rnd::Rn, false, false),
                    h as u64
                );
            }
            let wb = cvt(h as u64, Ty::F32, Ty::Bf16, Rnd::None, false, false) as u32;
            if is_nan_bf16(h) {
                assert_eq!(wb, NAN_F32);
            } else {
                assert_eq!(wb, (h as u32) << 16);
                assert_eq!(
                    cvt(wb as u64, Ty::Bf16, Ty::F32, Rnd::Rn, false, false),
                    h as u64
                );
            }
        }
        assert_eq!(
            cvt(1, Ty::F64, Ty::F32, Rnd::None, false, false),
            f64::from(f32::from_bits(1)).to_bits()
        );
        assert_eq!(cvt(1, Ty::F64, Ty::F32, Rnd::None, true, false), 0);
        // f32.f32 with ftz flushes; same type with integer rounding
        assert_eq!(
            cvt(0x8000_0001, Ty::F32, Ty::F32, Rnd::None, true, false),
            0x8000_0000
        );
        assert_eq!(
            cvt(f32b(2.5), Ty::F32, Ty::F32, Rnd::Rni, false, false),
            f32b(2.0)
        );
        assert_eq!(
            cvt(f32b(3.5), Ty::F32, Ty::F32, Rnd::Rni, false, false),
            f32b(4.0)
        );
        assert_eq!(
            cvt(f32b(-2.5), Ty::F32, Ty::F32, Rnd::Rzi, false, false),
            f32b(-2.0)
        );
        assert_eq!(
            cvt(f32b(-2.5), Ty::F32, Ty::F32, Rnd::Rmi, false, false),
            f32b(-3.0)
        );
        assert_eq!(
            cvt(f32b(2.1), Ty::F32, Ty::F32, Rnd::Rpi, false, false),
            f32b(3.0)
        );
        assert_eq!(
            cvt(f32b(-0.5), Ty::F32, Ty::F32, Rnd::Rpi, false, false),
            f32b(-0.0)
        );
        assert_eq!(
            cvt(2.5f64.to_bits(), Ty::F64, Ty::F64, Rnd::Rni, false, false),
            2.0f64.to_bits()
        );
        assert_eq!(
            cvt(0x3E00, Ty::F16, Ty::F16, Rnd::Rni, false, false),
            0x4000
        ); // 1.5 → 2
        assert_eq!(
            cvt(NAN_F32 as u64 ^ 7, Ty::F32, Ty::F32, Rnd::Rni, false, false),
            NAN_F32 as u64
        );
        // tf32: cvt.rna.tf32.f32 keeps 10 mantissa bits, ties away
        let x = 0x3F80_1000u32; // 1 + 2^-11: a tie for tf32
        assert_eq!(
            cvt(x as u64, Ty::Tf32, Ty::F32, Rnd::Rna, false, false),
            0x3F80_2000
        );
        assert_eq!(
            cvt(x as u64, Ty::Tf32, Ty::F32, Rnd::Rn, false, false),
            0x3F80_0000
        );
        assert_eq!(
            cvt(0x3F80_0FFF, Ty::Tf32, Ty::F32, Rnd::Rna, false, false),
            0x3F80_0000
        );
        assert_eq!(
            cvt(0x7F7F_FFFF, Ty::Tf32, Ty::F32, Rnd::Rna, false, false),
            0x7F80_0000
        );
        assert_eq!(
            cvt(0x7F7F_FFFF, Ty::Tf32, Ty::F32, Rnd::Rz, false, false),
            0x7F7F_E000
        );
    }

    #[test]
    fn cvt_float_to_int() {
        use Rnd::*;
        let c = |x: f32, to: Ty, r: Rnd| cvt(f32b(x), to, Ty::F32, r, false, false);
        assert_eq!(c(3.7, Ty::S32, Rzi), 3);
        assert_eq!(c(3.7, Ty::S32, None), 3); // no modifier: truncation
        assert_eq!(c(-3.7, Ty::S32, Rzi), (-3i64) as u64);
        assert_eq!(c(-3.7, Ty::S32, Rmi), (-4i64) as u64);
        assert_eq!(c(3.2, Ty::S32, Rpi), 4);
        assert_eq!(c(2.5, Ty::S32, Rni), 2);
        assert_eq!(c(3.5, Ty::S32, Rni), 4);
        assert_eq!(c(-2.5, Ty::S32, Rni), (-2i64) as u64);
        assert_eq!(c(-0.5, Ty::S32, Rmi), u64::MAX);
        assert_eq!(c(-0.5, Ty::U32, Rmi), 0);
        assert_eq!(c(0.1, Ty::U32, Rpi), 1);
        // saturation, always
        assert_eq!(c(1e10, Ty::S32, Rzi), i32::MAX as u64);
        assert_eq!(c(-1e10, Ty::S32, Rzi), i32::MIN as i64 as u64);
        assert_eq!(c(1e10, Ty::U32, Rzi), u32::MAX as u64);
        assert_eq!(c(-5.0, Ty::U32, Rzi), 0);
        assert_eq!(c(300.0, Ty::U8, Rni), 255);
        assert_eq!(c(-300.0, Ty::S8, Rni), (-128i64) as u64);
        assert_eq!(c(200.0, Ty::S8, Rni), 127);
        assert_eq!(c(-1.0, Ty::S16, Rni), u64::MAX);
        assert_eq!(c(70000.0, Ty::U16, Rni), 0xFFFF);
        assert_eq!(c(f32::INFINITY, Ty::U64, Rni), u64::MAX);
        assert_eq!(c(f32::NEG_INFINITY, Ty::S64, Rni), i64::MIN as u64);
        assert_eq!(c(f32::INFINITY, Ty::S64, Rni), i64::MAX as u64);
        assert_eq!(c(2f32.powi(63), Ty::S64, Rni), i64::MAX as u64);
        assert_eq!(c(-(2f32.powi(63)), Ty::S64, Rni), i64::MIN as u64);
        assert_eq!(c(2f32.powi(64), Ty::U64, Rni), u64::MAX);
        assert_eq!(c(2f32.powi(63), Ty::U64, Rni), 1u64 << 63);
        assert_eq!(c(2147483520.0, Ty::S32, Rni), 2147483520);
        // NaN → 0
        for t in [Ty::S32, Ty::U32, Ty::S64, Ty::U64, Ty::S8, Ty::U16] {
            assert_eq!(cvt(NAN_F32 as u64, t, Ty::F32, Rni, false, false), 0);
            assert_eq!(cvt(NAN_F64, t, Ty::F64, Rzi, false, false), 0);
            assert_eq!(cvt(0x7E00, t, Ty::F16, Rzi, false, false), 0);
        }
        // ftz on the f32 source
        assert_eq!(cvt(1, Ty::S32, Ty::F32, Rpi, false, false), 1);
        assert_eq!(cvt(1, Ty::S32, Ty::F32, Rpi, true, false), 0);
        // other sources
        assert_eq!(
            cvt(2.5e9f64.to_bits(), Ty::U32, Ty::F64, Rzi, false, false),
            2_500_000_000
        );
        assert_eq!(
            cvt(2.5e9f64.to_bits(), Ty::S32, Ty::F64, Rzi, false, false),
            i32::MAX as u64
        );
        assert_eq!(
            cvt((-1.5f64).to_bits(), Ty::S64, Ty::F64, Rni, false, false),
            (-2i64) as u64
        );
        assert_eq!(cvt(0x7BFF, Ty::U16, Ty::F16, Rzi, false, false), 65504);
        assert_eq!(
            cvt(0xFC00, Ty::S16, Ty::F16, Rzi, false, false),
            (-32768i64) as u64
        );
        assert_eq!(cvt(0x3FC0, Ty::S32, Ty::Bf16, Rni, false, false), 2); // 1.5 → 2
                                                                          // random f64 → i64/u64 against APFloat (saturating, NaN → 0)
        let mut g = Rng(8);
        for i in 0..100_000u32 {
            let d = (g.next() & 0x800F_FFFF_FFFF_FFFF) | ((0x3FF + g.below(70)) << 52);
            let rnd = [Rni, Rzi, Rmi, Rpi][(i % 4) as usize];
            let got = cvt(d, Ty::S64, Ty::F64, rnd, false, false) as i64;
            let want = ap64(d).to_i128_r(64, rd(rnd), &mut false).value as i64;
            assert_eq!(got, want, "{d:#x} {rnd:?}");
            let got = cvt(d, Ty::U32, Ty::F64, rnd, false, false);
            let v = f64::from_bits(d);
            let want = if v < 0.0 {
                ap64(d).to_i128_r(64, rd(rnd), &mut false).value.max(0) as u64
            } else {
                ap64(d).to_u128_r(32, rd(rnd), &mut false).value as u64
            };
            assert_eq!(got, want, "u32 {d:#x} {rnd:?}");
        }
    }

    #[test]
    fn cvt_int_to_float() {
        use Rnd::*;
        let c = |v: i64, to: Ty, from: Ty, r: Rnd| cvt(v as u64, to, from, r, false, false);
        let p = (1i64 << 24) + 1;
        assert_eq!(c(p, Ty::F32, Ty::S32, None), f32b(16777216.0));
        assert_eq!(c(p, Ty::F32, Ty::S32, Rn), f32b(16777216.0));
        assert_eq!(c(p, Ty::F32, Ty::S32, Rz), f32b(16777216.0));
        assert_eq!(c(p, Ty::F32, Ty::S32, Rm), f32b(16777216.0));
        assert_eq!(c(p, Ty::F32, Ty::S32, Rp), f32b(16777218.0));
        assert_eq!(c(-p, Ty::F32, Ty::S32, Rm), f32b(-16777218.0));
        assert_eq!(c(-p, Ty::F32, Ty::S32, Rp), f32b(-16777216.0));
        assert_eq!(c(-p, Ty::F32, Ty::S32, Rz), f32b(-16777216.0));
        assert_eq!(c(p + 2, Ty::F32, Ty::S32, Rn), f32b(16777220.0)); // tie → even
        assert_eq!(c(p, Ty::F32, Ty::U32, Rn), f32b(16777216.0));
        assert_eq!(c(-1, Ty::F32, Ty::U64, Rn), f32b(18446744073709551616.0));
        assert_eq!(c(-1, Ty::F32, Ty::U64, Rz), 0x5F7F_FFFF);
        assert_eq!(c(-1, Ty::F32, Ty::U32, Rn), f32b(4294967296.0));
        assert_eq!(c(-1, Ty::F32, Ty::S32, Rn), f32b(-1.0));
        assert_eq!(c(0xFF, Ty::F32, Ty::S8, Rn), f32b(-1.0)); // the source width decides
        assert_eq!(c(0xFF, Ty::F32, Ty::U8, Rn), f32b(255.0));
        assert_eq!(c(0x1_0000_0005, Ty::F32, Ty::U32, Rn), f32b(5.0));
        assert_eq!(
            c(i64::MIN, Ty::F64, Ty::S64, Rn),
            (-(2f64.powi(63))).to_bits()
        );
        assert_eq!(
            c((1i64 << 53) + 1, Ty::F64, Ty::S64, Rn),
            2f64.powi(53).to_bits()
        );
        assert_eq!(
            c((1i64 << 53) + 1, Ty::F64, Ty::S64, Rp),
            (2f64.powi(53) + 2.0).to_bits()
        );
        assert_eq!(c(65504, Ty::F16, Ty::S32, Rn), 0x7BFF);
        assert_eq!(c(65520, Ty::F16, Ty::S32, Rn), 0x7C00);
        assert_eq!(c(65520, Ty::F16, Ty::S32, Rz), 0x7BFF);
        assert_eq!(c(70000, Ty::F16, Ty::U32, Rp), 0x7C00);
        assert_eq!(c(-70000, Ty::F16, Ty::S32, Rp), 0xFBFF);
        assert_eq!(c(2049, Ty::F16, Ty::S32, Rn), 0x6800); // 2048
        assert_eq!(c(2049, Ty::F16, Ty::S32, Rp), 0x6801);
        assert_eq!(c(257, Ty::Bf16, Ty::S32, Rn), 0x4380);
        assert_eq!(c(3, Ty::F32, Ty::S32, Rn), f32b(3.0));
        assert_eq!(cvt(3, Ty::F32, Ty::S32, Rn, false, true), f32b(1.0));
        assert_eq!(cvt((-3i64) as u64, Ty::F32, Ty::S32, Rn, false, true), 0);
        let mut g = Rng(2024);
        for i in 0..200_000u32 {
            let v = (g.next() as i64) >> g.below(64);
            let rnd = MODES[(i % 5) as usize];
            let r = rd(rnd);
            let bits = |x: u128| x as u64;
            assert_eq!(
                c(v, Ty::F32, Ty::S64, rnd),
                bits(Single::from_i128_r(v as i128, r).value.to_bits()),
                "f32<-s64 {v} {rnd:?}"
            );
            assert_eq!(
                c(v, Ty::F32, Ty::U64, rnd),
                bits(Single::from_u128_r(v as u64 as u128, r).value.to_bits()),
                "f32<-u64 {v} {rnd:?}"
            );
            assert_eq!(
                c(v, Ty::F64, Ty::S64, rnd),
                bits(Double::from_i128_r(v as i128, r).value.to_bits()),
                "f64<-s64 {v} {rnd:?}"
            );
            assert_eq!(
                c(v, Ty::F64, Ty::U64, rnd),
                bits(Double::from_u128_r(v as u64 as u128, r).value.to_bits()),
                "f64<-u64 {v} {rnd:?}"
            );
            assert_eq!(
                c(v, Ty::F16, Ty::S64, rnd),
                bits(Half::from_i128_r(v as i128, r).value.to_bits()),
                "f16<-s64 {v} {rnd:?}"
            );
            assert_eq!(
                c(v, Ty::Bf16, Ty::U64, rnd),
                bits(BFloat::from_u128_r(v as u64 as u128, r).value.to_bits()),
                "bf16<-u64 {v} {rnd:?}"
            );
            let w = v as i32;
            assert_eq!(
                c(v, Ty::F32, Ty::S32, rnd),
                bits(Single::from_i128_r(w as i128, r).value.to_bits()),
                "f32<-s32 {w} {rnd:?}"
            );
            assert_eq!(
                c(v, Ty::F16, Ty::S16, rnd),
                bits(Half::from_i128_r((v as i16) as i128, r).value.to_bits()),
                "f16<-s16 {rnd:?}"
            );
        }
    }

    #[test]
    fn cvt_int_to_int() {
        let c = |v: u64, to: Ty, from: Ty, sat: bool| cvt(v, to, from, Rnd::None, false, sat);
        assert_eq!(c(0x80, Ty::S32, Ty::S8, false), (-128i64) as u64);
        assert_eq!(c(0x80, Ty::U32, Ty::S8, false), 0xFFFF_FF80);
        assert_eq!(c(0x80, Ty::U32, Ty::U8, false), 0x80);
        assert_eq!(c(0xFFFF_FFFF, Ty::U64, Ty::S32, false), u64::MAX);
        assert_eq!(c(0xFFFF_FFFF, Ty::U64, Ty::U32, false), 0xFFFF_FFFF);
        assert_eq!(c(0x1_2345, Ty::U16, Ty::U32, false), 0x2345);
        assert_eq!(c(0x8000, Ty::S16, Ty::U32, false), 0xFFFF_FFFF_FFFF_8000);
        assert_eq!(c(0x1_8000, Ty::S32, Ty::S16, false), 0xFFFF_FFFF_FFFF_8000); // source is 16 bits
        assert_eq!(c(0xDEAD_BEEF_0000_0001, Ty::S32, Ty::S64, false), 1);
        // .sat clamps to the destination range
        assert_eq!(c(300, Ty::U8, Ty::S32, true), 255);
        assert_eq!(c((-5i64) as u64, Ty::U8, Ty::S32, true), 0);
        assert_eq!(c(200, Ty::S8, Ty::U32, true), 127);
        assert_eq!(c((-200i64) as u64, Ty::S8, Ty::S32, true), (-128i64) as u64);
        assert_eq!(c(u64::MAX, Ty::S32, Ty::U64, true), i32::MAX as u64);
        assert_eq!(c(u64::MAX, Ty::S64, Ty::U64, true), i64::MAX as u64);
        assert_eq!(c((-1i64) as u64, Ty::U64, Ty::S64, true), 0);
        assert_eq!(c((-1i64) as u64, Ty::U32, Ty::S64, true), 0);
        assert_eq!(c(0xFFFF_FFFF, Ty::U32, Ty::S32, true), 0);
        assert_eq!(c(0x7FFF_FFFF, Ty::S16, Ty::S32, true), 0x7FFF);
    }

    // ---- approximate functions ----

    fn ulp_err32(got: u32, exact: f64) -> f64 {
        let g = f32::from_bits(got) as f64;
        let e32 = exact as f32;
        let ulp = if e32 == 0.0 {
            f32::from_bits(1) as f64
        } else {
            ((f32::from_bits(e32.abs().to_bits() + 1) as f64) - (e32.abs() as f64)).abs()
        };
        (g - exact).abs() / ulp
    }

    #[test]
    fn approx_within_error() {
        let mut g = Rng(11);
        for _ in 0..100_000 {
            // ex2 over [-126, 127]
            let x = ((g.next() >> 11) as f64 / (1u64 << 53) as f64) * 253.0 - 126.0;
            let xb = (x as f32).to_bits();
            let xf = f32::from_bits(xb) as f64;
            assert!(
                ulp_err32(ex2_approx_f32(xb, false), xf.exp2()) <= 2.0,
                "ex2 {xf}"
            );
            // lg2 over positive normals
            let y = g.f32(None) & 0x7FFF_FFFF;
            if !is_nan32(y) && y != 0x7F80_0000 && y != 0 {
                let yf = f32v(y);
                let got = f32v(lg2_approx_f32(y, false));
                assert!(
                    (got - yf.log2()).abs() <= 2f64.powi(-22).max(yf.log2().abs() * 2f64.powi(-22)),
                    "lg2 {yf:e}"
                );
                assert!(
                    ulp_err32(rsqrt_approx_f32(y, false), 1.0 / yf.sqrt()) <= 2.0,
                    "rsqrt {yf:e}"
                );
                assert!(
                    ulp_err32(sqrt_f32(y, Rnd::None, true, false), yf.sqrt()) <= 1.0,
                    "sqrt {yf:e}"
                );
                if 1.0 / yf < f32::MAX as f64 {
                    assert!(
                        ulp_err32(rcp_f32(y, Rnd::None, true, false), 1.0 / yf) <= 1.0,
                        "rcp {yf:e}"
                    );
                } else {
                    assert_eq!(rcp_f32(y, Rnd::None, true, false), 0x7F80_0000);
                }
            }
            // sin/cos on [-pi, pi]: absolute error 2^-20.9 stated
            let t = ((g.next() >> 11) as f64 / (1u64 << 53) as f64) * 2.0 * std::f64::consts::PI
                - std::f64::consts::PI;
            let tb = (t as f32).to_bits();
            let tf = f32v(tb);
            assert!(
                (f32v(sin_approx_f32(tb, false)) - tf.sin()).abs() <= 2f64.powi(-20),
                "sin {tf}"
            );
            assert!(
                (f32v(cos_approx_f32(tb, false)) - tf.cos()).abs() <= 2f64.powi(-20),
                "cos {tf}"
            );
            // tanh: relative error 2^-11 stated
            let u = t * 3.0;
            let ub = (u as f32).to_bits();
            let uf = f32v(ub);
            let th = f32v(tanh_approx_f32(ub));
            assert!(
                (th - uf.tanh()).abs() <= uf.tanh().abs() * 2f64.powi(-11) + 1e-30,
                "tanh {uf}"
            );
            // f16 variants against f64, within 1 f16 ulp
            let hb = g.f16();
            if !is_nan16(hb) {
                let hx = f16v(hb);
                let e = hx.exp2();
                let got = f16v(ex2_approx_f16(hb));
                if e.is_finite() && e < 65504.0 {
                    assert!(
                        (got - e).abs() <= (e * 2f64.powi(-10)).max(2f64.powi(-24)),
                        "ex2.f16 {hx}"
                    );
                }
                let th = f16v(tanh_approx_f16(hb));
                assert!(
                    (th - hx.tanh()).abs()
                        <= (hx.tanh().abs() * 2f64.powi(-10)).max(2f64.powi(-24)),
                    "tanh.f16 {hx}"
                );
            }
        }
    }

    #[test]
    fn approx_special_cases() {
        let (pinf, ninf, pz, nz) = (0x7F80_0000u32, 0xFF80_0000u32, 0u32, 0x8000_0000u32);
        let one = 0x3F80_0000;
        // ex2
        assert_eq!(ex2_approx_f32(ninf, false), 0);
        assert_eq!(ex2_approx_f32(pinf, false), pinf);
        assert_eq!(ex2_approx_f32(pz, false), one);
        assert_eq!(ex2_approx_f32(nz, false), one);
        assert_eq!(ex2_approx_f32(0x8000_0001, false), one);
        assert_eq!(ex2_approx_f32(0x7FC0_1234, false), NAN_F32);
        assert_eq!(ex2_approx_f32((-140.0f32).to_bits(), false), 1 << 9); // 2^-140, subnormal
        assert_eq!(ex2_approx_f32((-140.0f32).to_bits(), true), 0);
        assert_eq!(ex2_approx_f32(3.0f32.to_bits(), false), 8.0f32.to_bits());
        // lg2
        assert_eq!(lg2_approx_f32(pz, false), ninf);
        assert_eq!(lg2_approx_f32(nz, false), ninf);
        assert_eq!(lg2_approx_f32(ninf, false), NAN_F32);
        assert_eq!(lg2_approx_f32((-1.0f32).to_bits(), false), NAN_F32);
        assert_eq!(lg2_approx_f32(pinf, false), pinf);
        assert_eq!(lg2_approx_f32(one, false), 0);
        assert_eq!(lg2_approx_f32(1, false), (-149.0f32).to_bits());
        assert_eq!(lg2_approx_f32(1, true), ninf);
        assert_eq!(lg2_approx_f32(0x8000_0001, true), ninf);
        // rsqrt
        assert_eq!(rsqrt_approx_f32(pz, false), pinf);
        assert_eq!(rsqrt_approx_f32(nz, false), ninf);
        assert_eq!(rsqrt_approx_f32(pinf, false), 0);
        assert_eq!(rsqrt_approx_f32(ninf, false), NAN_F32);
        assert_eq!(rsqrt_approx_f32((-4.0f32).to_bits(), false), NAN_F32);
        assert_eq!(rsqrt_approx_f32(4.0f32.to_bits(), false), 0.5f32.to_bits());
        assert_eq!(rsqrt_approx_f32(1, true), pinf);
        assert_eq!(rsqrt_approx_f64(0), 0x7FF0_0000_0000_0000);
        assert_eq!(rsqrt_approx_f64(1 << 63), 0xFFF0_0000_0000_0000);
        assert_eq!(rsqrt_approx_f64(4.0f64.to_bits()), 0.5f64.to_bits());
        assert_eq!(rsqrt_approx_f64((-1.0f64).to_bits()), NAN_F64);
        // sin / cos
        assert_eq!(sin_approx_f32(pinf, false), NAN_F32);
        assert_eq!(cos_approx_f32(ninf, false), NAN_F32);
        assert_eq!(sin_approx_f32(nz, false), nz);
        assert_eq!(cos_approx_f32(nz, false), one);
        assert_eq!(sin_approx_f32(0x8000_0001, true), nz);
        // tanh
        assert_eq!(tanh_approx_f32(pinf), one);
        assert_eq!(tanh_approx_f32(ninf), one | 1 << 31);
        assert_eq!(tanh_approx_f32(100.0f32.to_bits()), one);
        assert_eq!(tanh_approx_f32(nz), nz);
        assert_eq!(tanh_approx_f32(NAN_F32), NAN_F32);
        assert_eq!(tanh_approx_f16(0x7C00), 0x3C00);
        assert_eq!(tanh_approx_f16(0xFC00), 0xBC00);
        assert_eq!(ex2_approx_f16(0xFC00), 0);
        assert_eq!(ex2_approx_f16(0x4000), 0x4400); // 2^2 = 4
        assert_eq!(ex2_approx_f16(0x7E00), NAN_F16);
    }
}
