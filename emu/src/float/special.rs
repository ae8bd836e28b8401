//! min / max / abs / neg / copysign and the approximate transcendentals.

#[allow(unused_imports)]
use super::*;

// min / max / abs / neg / copysign
// ---------------------------------------------------------------------------------------------

/// Shared min/max on values as f64 (exact), with the raw bits to return.
/// NaN rules: one NaN → the other; both NaN, or `.NaN` with any NaN → canonical NaN.
/// -0.0 is less than +0.0.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn minmax<T: Copy>(
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
pub(crate) fn out32(v: f64, ftz: bool) -> u32 {
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
