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
                const SP: [u16; 8] = [0, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0x7BFF, 0x0400, 0x3C00];
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
        let le =
            |p: rustc_apfloat::StatusAnd<Double>| p.value.partial_cmp(&ap64(x.to_bits())).unwrap();
        use std::cmp::Ordering::*;
        match dir(rnd) {
            Dir::Rz | Dir::Rm => {
                assert!(
                    le(rr) != Greater
                        || rr.status.contains(rustc_apfloat::Status::INEXACT) && le(rr) == Equal,
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
                (th - hx.tanh()).abs() <= (hx.tanh().abs() * 2f64.powi(-10)).max(2f64.powi(-24)),
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
