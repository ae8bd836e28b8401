//! f32, f64, f16 and bf16 arithmetic.

#[allow(unused_imports)]
use super::*;

// f32 arithmetic
// ---------------------------------------------------------------------------------------------

/// Directed or flushed/saturated f32 `a + b` (a, b already flushed when `.ftz`).
pub(crate) fn add32_slow(a: u32, b: u32, rnd: Rnd, ftz: bool, sat: bool) -> u32 {
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
pub(crate) fn div32_ieee(a: u32, b: u32, d: Dir) -> u32 {
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
pub(crate) fn ap64(x: u64) -> Double {
    Double::from_bits(x as u128)
}
#[inline]
pub(crate) fn unap64(x: Double) -> u64 {
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
pub(crate) enum Half16 {
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
