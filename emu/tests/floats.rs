// Lane-by-lane comparisons read clearest as index loops.
#![allow(clippy::needless_range_loop)]
// Reference tables and predicates spell the IEEE / PTX rules out literally (every NaN branch,
// negated compares that are true on NaN, literal bit-exact constants).
#![allow(
    clippy::excessive_precision,
    clippy::if_same_then_else,
    clippy::neg_cmp_op_on_partial_ord,
    clippy::approx_constant
)]

//! Floating point (tests/kernels/floats.cu) against host references: rustc_apfloat for every
//! rounding mode (bit-exact), Rust's IEEE operations for the correctly rounded ones, the PTX ISA's
//! NaN rules, and stated tolerances for .approx.
//!
//! NaN results are compared as "both NaN" (PTX does not promise payloads).

mod common;
use common::*;

macro_rules! emu {
    () => {
        match Emu::new("floats") {
            Some(e) => e,
            None => return,
        }
    };
}

const BLOCK: u32 = 128;

fn grid(n: usize) -> u32 {
    (n as u32).div_ceil(BLOCK)
}

/// f32 inputs for conversions: random from everywhere plus a table of edge cases.
fn f32_inputs(rng: &mut Rng, n_random: usize) -> Vec<f32> {
    let mut v = vec![
        65504.0f32,
        65519.996,
        65520.0,
        65520.004,
        65536.0,
        1.0e10,
        -65504.0,
        -65520.0,
        -65536.0,
        // f16 subnormals and the underflow edges: 2^-24 (smallest), 2^-25 (tie), 3*2^-26, 2^-26
        5.960_464_5e-8,
        2.980_232_2e-8,
        4.470_348_4e-8,
        1.490_116_1e-8,
        -2.980_232_2e-8,
        6.097_555_2e-5,
        6.103_515_6e-5, // smallest f16 normal
        // ties in f16: 1 + 2^-11 (tie to even 1), 1 + 3*2^-11 (tie up)
        1.000_488_3,
        1.001_464_8,
        -1.000_488_3,
        2049.0,
        2051.0,
        0.5,
        1.5,
        2.5,
        -2.5,
        -0.5,
        0.49999997,
        // f32 subnormals
        1.0e-45,
        -1.0e-45,
        1.0e-40,
        f32::MIN_POSITIVE,
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::MAX,
        f32::MIN,
        // integer conversion edges
        2147483520.0,
        2147483648.0,
        4294967040.0,
        4294967296.0,
        -2147483648.0,
        -2147483904.0,
        -1.0,
        -0.7,
        0.7,
        1.0e19,
        9.2233715e18,
        9.223372e18,
        -9.223372e18,
        -1.0e19,
        8388608.5,
        16777216.0,
    ];
    for _ in 0..n_random {
        v.push(rng.f32_any());
    }
    v
}

#[test]
fn cvt_f32_to_f16_all_rounding_modes() {
    let mut e = emu!();
    let mut rng = rng("cvt_f32_to_f16_all_rounding_modes");
    let mut x = f32_inputs(&mut rng, 1500);
    // values near f16-representable ones, to hit ties and near-ties in every binade
    for _ in 0..500 {
        let h = (rng.next_u32() & 0x7bff) as u16 | if rng.bool() { 0x8000 } else { 0 };
        let f = f16_bits_to_f32(h);
        let delta = rng.pick(&[0i32, 1, -1, 4096, -4096, 8192, 8191, 8193]);
        x.push(f32::from_bits(
            (f.to_bits() as i32).wrapping_add(delta) as u32
        ));
    }
    let n = x.len();
    let px = e.upload(&x);
    let out = e.alloc::<u16>(4 * n);
    e.run(
        "cvt_f32_f16",
        &Launch::new(grid(n), BLOCK),
        &[Arg::P(px), Arg::P(out), Arg::I32(n as i32)],
    );
    let got = e.read::<u16>(out, 4 * n);
    for (m, r) in ROUNDS.iter().enumerate() {
        for i in 0..n {
            let want = f32_to_f16(x[i], *r);
            let g = got[m * n + i];
            assert!(
                same_f16(g, want),
                "cvt.{}.f16.f32({:e} = {:#010x}) = {g:#06x}, want {want:#06x}",
                ROUND_NAMES[m],
                x[i],
                x[i].to_bits()
            );
        }
    }
    // The table the brief names, explicitly.
    let idx = |v: f32| x.iter().position(|y| y.to_bits() == v.to_bits()).unwrap();
    let i = idx(65520.0);
    assert_eq!(
        [got[i], got[n + i], got[2 * n + i], got[3 * n + i]],
        [0x7c00, 0x7bff, 0x7bff, 0x7c00],
        "65520 rn/rz/rm/rp"
    );
    let i = idx(-65520.0);
    assert_eq!(
        [got[i], got[n + i], got[2 * n + i], got[3 * n + i]],
        [0xfc00, 0xfbff, 0xfc00, 0xfbff],
        "-65520"
    );
    let i = idx(2.980_232_2e-8); // 2^-25: half the smallest subnormal
    assert_eq!(
        [got[i], got[n + i], got[2 * n + i], got[3 * n + i]],
        [0x0000, 0x0000, 0x0000, 0x0001],
        "2^-25"
    );
    let i = idx(f32::NAN);
    assert!(f16_is_nan(got[i]), "NaN -> {:#06x}", got[i]);
}

#[test]
fn cvt_f16_to_f32_f64_exact() {
    let mut e = emu!();
    let h: Vec<u16> = (0..=0xffffu32).map(|x| x as u16).collect();
    let n = h.len();
    let ph = e.upload(&h);
    let (o32, o64) = (e.alloc::<f32>(n), e.alloc::<f64>(n));
    e.run(
        "cvt_f16_up",
        &Launch::new(grid(n), BLOCK),
        &[Arg::P(ph), Arg::P(o32), Arg::P(o64), Arg::I32(n as i32)],
    );
    let g32 = e.read::<u32>(o32, n);
    let g64 = e.read::<f64>(o64, n);
    for i in 0..n {
        let want = f16_bits_to_f32(h[i]);
        assert!(
            same_f32(g32[i], want.to_bits()),
            "cvt.f32.f16({:#06x}) = {:#010x}, want {:#010x}",
            h[i],
            g32[i],
            want.to_bits()
        );
        let w64 = want as f64;
        assert!(
            g64[i].to_bits() == w64.to_bits() || (g64[i].is_nan() && w64.is_nan()),
            "cvt.f64.f16({:#06x}) = {}, want {w64}",
            h[i],
            g64[i]
        );
    }
}

#[test]
fn cvt_f64_to_f32_all_rounding_modes() {
    let mut e = emu!();
    let mut rng = rng("cvt_f64_to_f32_all_rounding_modes");
    let mut x: Vec<f64> = vec![
        3.4028235677973366e38, // f32::MAX + half an ulp: a tie, rn overflows
        3.4028235e38,
        3.5e38,
        -3.5e38,
        1.0e-45,
        7.006492321624085e-46,
        1.401298464324817e-45 / 2.0 * 3.0,
        1.0e-50,
        -1.0e-50,
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        1.0 + 2f64.powi(-24),
        1.0 + 3.0 * 2f64.powi(-24),
        f64::MIN_POSITIVE,
        1.1754942106924411e-38,
    ];
    for _ in 0..2000 {
        x.push(match rng.below(4) {
            0 => f64::from_bits(rng.next_u64()),
            1 => {
                // near an f32, to hit ties
                let f = f32::from_bits(rng.next_u32() & 0x7f7f_ffff) as f64;
                let d = rng.pick(&[
                    0i64,
                    1,
                    -1,
                    1 << 28,
                    -(1 << 28),
                    (1 << 28) + 1,
                    (1 << 28) - 1,
                ]);
                f64::from_bits((f.to_bits() as i64 + d) as u64)
            }
            _ => rng.f64_in(-1.0, 1.0) * 2f64.powi(rng.range_i64(-160, 135) as i32),
        });
    }
    let n = x.len();
    let px = e.upload(&x);
    let out = e.alloc::<u32>(4 * n);
    e.run(
        "cvt_f64_f32",
        &Launch::new(grid(n), BLOCK),
        &[Arg::P(px), Arg::P(out), Arg::I32(n as i32)],
    );
    let got = e.read::<u32>(out, 4 * n);
    for (m, r) in ROUNDS.iter().enumerate() {
        for i in 0..n {
            let mut li = false;
            let want: Single = Double::from_bits(x[i].to_bits() as u128)
                .convert_r(*r, &mut li)
                .value;
            let want = sbits(want);
            assert!(
                same_f32(got[m * n + i], want),
                "cvt.{}.f32.f64({:e}) = {:#010x}, want {want:#010x}",
                ROUND_NAMES[m],
                x[i],
                got[m * n + i]
            );
        }
    }
}

#[test]
fn cvt_f32_to_int_all_rounding_modes() {
    let mut e = emu!();
    let mut rng = rng("cvt_f32_to_int_all_rounding_modes");
    let mut x = f32_inputs(&mut rng, 1000);
    for _ in 0..1000 {
        // halves and near-halves, where the rounding modes differ
        let k = rng.range_i64(-100000, 100000) as f32;
        x.push(k + rng.pick(&[0.5f32, -0.5, 0.25, 0.75, 0.0, 0.4999]));
    }
    let n = x.len();
    let px = e.upload(&x);
    let out = e.alloc::<i32>(16 * n);
    e.run(
        "cvt_f32_int",
        &Launch::new(grid(n), BLOCK),
        &[Arg::P(px), Arg::P(out), Arg::I32(n as i32)],
    );
    let got = e.read::<i32>(out, 16 * n);
    let names = ["rni", "rzi", "rmi", "rpi"];
    for i in 0..n {
        let v = x[i];
        let r = [v.round_ties_even(), v.trunc(), v.floor(), v.ceil()];
        for m in 0..4 {
            // Rust's `as` saturates and maps NaN to 0: exactly PTX's float-to-integer cvt.
            let s = r[m] as i32;
            let u = r[m] as u32;
            let l = r[m] as i64;
            assert_eq!(got[m * n + i], s, "cvt.{}.s32.f32({v:e})", names[m]);
            assert_eq!(
                got[(4 + m) * n + i] as u32,
                u,
                "cvt.{}.u32.f32({v:e})",
                names[m]
            );
            let gl = (got[(8 + m) * n + i] as u32 as u64
                | (got[(12 + m) * n + i] as u32 as u64) << 32) as i64;
            assert_eq!(gl, l, "cvt.{}.s64.f32({v:e})", names[m]);
        }
    }
}

#[test]
fn cvt_f32_to_integral_f32() {
    let mut e = emu!();
    let mut rng = rng("cvt_f32_to_integral_f32");
    let x = f32_inputs(&mut rng, 2000);
    let n = x.len();
    let px = e.upload(&x);
    let out = e.alloc::<u32>(4 * n);
    e.run(
        "cvt_f32_integral",
        &Launch::new(grid(n), BLOCK),
        &[Arg::P(px), Arg::P(out), Arg::I32(n as i32)],
    );
    let got = e.read::<u32>(out, 4 * n);
    let names = ["rni", "rzi", "rmi", "rpi"];
    for i in 0..n {
        let v = x[i];
        let r = [v.round_ties_even(), v.trunc(), v.floor(), v.ceil()];
        for m in 0..4 {
            assert!(
                same_f32(got[m * n + i], r[m].to_bits()),
                "cvt.{}.f32.f32({v:e}) = {:e}, want {:e}",
                names[m],
                f32::from_bits(got[m * n + i]),
                r[m]
            );
        }
    }
}

#[test]
fn cvt_int_to_f32_all_rounding_modes() {
    let mut e = emu!();
    let mut rng = rng("cvt_int_to_f32_all_rounding_modes");
    let n = 3000;
    let a: Vec<i32> = (0..n).map(|_| rng.int_u32() as i32).collect();
    let b: Vec<i64> = (0..n).map(|_| rng.int_u64() as i64).collect();
    let (pa, pb) = (e.upload(&a), e.upload(&b));
    let out = e.alloc::<u32>(12 * n);
    e.run(
        "cvt_int_f32",
        &Launch::new(grid(n), BLOCK),
        &[Arg::P(pa), Arg::P(pb), Arg::P(out), Arg::I32(n as i32)],
    );
    let got = e.read::<u32>(out, 12 * n);
    for (m, r) in ROUNDS.iter().enumerate() {
        for i in 0..n {
            let ws = sbits(Single::from_i128_r(a[i] as i128, *r).value);
            let wu = sbits(Single::from_u128_r(a[i] as u32 as u128, *r).value);
            let wl = sbits(Single::from_i128_r(b[i] as i128, *r).value);
            assert_eq!(
                got[m * n + i],
                ws,
                "cvt.{}.f32.s32({})",
                ROUND_NAMES[m],
                a[i]
            );
            assert_eq!(
                got[(4 + m) * n + i],
                wu,
                "cvt.{}.f32.u32({})",
                ROUND_NAMES[m],
                a[i] as u32
            );
            assert_eq!(
                got[(8 + m) * n + i],
                wl,
                "cvt.{}.f32.s64({})",
                ROUND_NAMES[m],
                b[i]
            );
        }
    }
}

/// Operand triples for arithmetic: random values of similar and wildly different magnitudes,
/// cancellations, specials, subnormals.
fn f32_operands(rng: &mut Rng, n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let x = rng.f32_any();
        let y = match rng.below(4) {
            0 => -x * rng.f32_in(0.999, 1.001), // cancellation
            1 => rng.f32_any(),
            _ => rng.f32_in(-4.0, 4.0),
        };
        let z = match rng.below(3) {
            0 => -(x * y), // fma cancellation: the exact residual shows
            1 => rng.f32_any(),
            _ => rng.f32_in(-1.0, 1.0),
        };
        a.push(x);
        b.push(y);
        c.push(z);
    }
    (a, b, c)
}

#[test]
fn f32_add_sub_mul_fma_rounding_modes() {
    let mut e = emu!();
    let mut rng = rng("f32_add_sub_mul_fma_rounding_modes");
    let n = 4000;
    let (a, b, c) = f32_operands(&mut rng, n);
    let (pa, pb, pc) = (e.upload(&a), e.upload(&b), e.upload(&c));
    let out = e.alloc::<u32>(16 * n);
    e.run(
        "f32_arith",
        &Launch::new(grid(n), BLOCK),
        &[
            Arg::P(pa),
            Arg::P(pb),
            Arg::P(pc),
            Arg::P(out),
            Arg::I32(n as i32),
        ],
    );
    let got = e.read::<u32>(out, 16 * n);
    for i in 0..n {
        let (x, y, z) = (
            sgl(a[i].to_bits()),
            sgl(b[i].to_bits()),
            sgl(c[i].to_bits()),
        );
        for (m, r) in ROUNDS.iter().enumerate() {
            let want = [
                ("add", sbits(x.add_r(y, *r).value)),
                ("sub", sbits(x.sub_r(y, *r).value)),
                ("mul", sbits(x.mul_r(y, *r).value)),
                ("fma", sbits(x.mul_add_r(y, z, *r).value)),
            ];
            for (k, (op, w)) in want.iter().enumerate() {
                let g = got[(k * 4 + m) * n + i];
                assert!(
                    same_f32(g, *w),
                    "{op}.{}.f32({:e}, {:e}{}) = {:e} ({g:#010x}), want {:e} ({w:#010x})",
                    ROUND_NAMES[m],
                    a[i],
                    b[i],
                    if *op == "fma" {
                        format!(", {:e}", c[i])
                    } else {
                        String::new()
                    },
                    f32::from_bits(g),
                    f32::from_bits(*w)
                );
            }
        }
    }
}

#[test]
fn f64_add_mul_fma_rounding_modes() {
    let mut e = emu!();
    let mut rng = rng("f64_add_mul_fma_rounding_modes");
    let n = 2000;
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut c = Vec::new();
    for _ in 0..n {
        let x = if rng.below(5) == 0 {
            f64::from_bits(rng.next_u64())
        } else {
            rng.f64_in(-1.0, 1.0) * 2f64.powi(rng.range_i64(-30, 30) as i32)
        };
        let y = if rng.bool() {
            -x * rng.f64_in(0.999, 1.001)
        } else {
            rng.f64_in(-3.0, 3.0)
        };
        let z = if rng.bool() {
            -(x * y)
        } else {
            rng.f64_in(-1.0, 1.0)
        };
        a.push(x);
        b.push(y);
        c.push(z);
    }
    let (pa, pb, pc) = (e.upload(&a), e.upload(&b), e.upload(&c));
    let out = e.alloc::<f64>(12 * n);
    e.run(
        "f64_arith",
        &Launch::new(grid(n), BLOCK),
        &[
            Arg::P(pa),
            Arg::P(pb),
            Arg::P(pc),
            Arg::P(out),
            Arg::I32(n as i32),
        ],
    );
    let got = e.read::<u64>(out, 12 * n);
    for i in 0..n {
        let d = |v: f64| Double::from_bits(v.to_bits() as u128);
        let (x, y, z) = (d(a[i]), d(b[i]), d(c[i]));
        for (m, r) in ROUNDS.iter().enumerate() {
            let want = [
                ("add", x.add_r(y, *r).value.to_bits() as u64),
                ("mul", x.mul_r(y, *r).value.to_bits() as u64),
                ("fma", x.mul_add_r(y, z, *r).value.to_bits() as u64),
            ];
            for (k, (op, w)) in want.iter().enumerate() {
                let g = got[(k * 4 + m) * n + i];
                let ok = g == *w || (f64::from_bits(g).is_nan() && f64::from_bits(*w).is_nan());
                assert!(
                    ok,
                    "{op}.{}.f64({:e}, {:e}, {:e}) = {:e}, want {:e}",
                    ROUND_NAMES[m],
                    a[i],
                    b[i],
                    c[i],
                    f64::from_bits(g),
                    f64::from_bits(*w)
                );
            }
        }
    }
}

fn ulp_f32(x: f32) -> f32 {
    let x = x.abs();
    if x == 0.0 || !x.is_finite() {
        return f32::MIN_POSITIVE * f32::EPSILON;
    }
    f32::from_bits(x.to_bits() + 1) - x
}

#[test]
fn f32_div_sqrt_rcp_correctly_rounded() {
    let mut e = emu!();
    let mut rng = rng("f32_div_sqrt_rcp_correctly_rounded");
    let n = 4000;
    let a: Vec<f32> = (0..n)
        .map(|_| {
            if rng.bool() {
                rng.f32_any()
            } else {
                rng.f32_any().abs()
            }
        })
        .collect();
    let b: Vec<f32> = (0..n).map(|_| rng.f32_any()).collect();
    let (pa, pb) = (e.upload(&a), e.upload(&b));
    let out = e.alloc::<u32>(6 * n);
    e.run(
        "f32_div_sqrt",
        &Launch::new(grid(n), BLOCK),
        &[Arg::P(pa), Arg::P(pb), Arg::P(out), Arg::I32(n as i32)],
    );
    let got = e.read::<u32>(out, 6 * n);
    for i in 0..n {
        let (x, y) = (a[i], b[i]);
        let want = [
            ("div.rn", x / y),
            ("sqrt.rn", x.sqrt()),
            ("rcp.rn", 1.0 / x),
            ("x / y", x / y),
            ("sqrtf", x.sqrt()),
        ];
        for (k, (op, w)) in want.iter().enumerate() {
            let g = got[k * n + i];
            assert!(
                same_f32(g, w.to_bits()),
                "{op}({x:e}, {y:e}) = {:e} ({g:#010x}), want {w:e} ({:#010x})",
                f32::from_bits(g),
                w.to_bits()
            );
        }
        // div.full.f32: 2 ulp where the quotient and the divisor are normal.
        let q = x / y;
        let g = f32::from_bits(got[5 * n + i]);
        if q.is_nan() {
            assert!(g.is_nan(), "div.full({x:e}, {y:e}) = {g:e}, want NaN");
        } else if q.is_finite()
            && q.abs() >= f32::MIN_POSITIVE
            && y.abs() >= f32::MIN_POSITIVE
            && y.abs() <= 2f32.powi(126)
        {
            assert!(
                (g - q).abs() <= 2.0 * ulp_f32(q),
                "div.full({x:e}, {y:e}) = {g:e}, want {q:e} within 2 ulp"
            );
        }
    }
}

#[test]
fn f16_and_f16x2_arithmetic() {
    let mut e = emu!();
    let mut rng = rng("f16_and_f16x2_arithmetic");
    let n = 3000;
    let mut gen16 = |rng: &mut Rng| -> u16 {
        match rng.below(6) {
            0 => rng.pick(&[
                0x0000u16, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x7bff, 0xfbff, 0x0001, 0x8001, 0x03ff,
                0x3c00,
            ]),
            1 => rng.next_u32() as u16,
            _ => f32_to_f16(
                rng.f32_in(-1.0, 1.0) * 2f32.powi(rng.range_i64(-14, 15) as i32),
                Round::NearestTiesToEven,
            ),
        }
    };
    let mk = |rng: &mut Rng, g: &mut dyn FnMut(&mut Rng) -> u16| -> Vec<u32> {
        (0..n)
            .map(|_| g(rng) as u32 | (g(rng) as u32) << 16)
            .collect()
    };
    let a = mk(&mut rng, &mut gen16);
    let b = mk(&mut rng, &mut gen16);
    let c = mk(&mut rng, &mut gen16);
    let (pa, pb, pc) = (e.upload(&a), e.upload(&b), e.upload(&c));
    let out = e.alloc::<u32>(10 * n);
    e.run(
        "half_ops",
        &Launch::new(grid(n), BLOCK),
        &[
            Arg::P(pa),
            Arg::P(pb),
            Arg::P(pc),
            Arg::P(out),
            Arg::I32(n as i32),
        ],
    );
    let got = e.read::<u32>(out, 10 * n);
    let h = |v: u32, hi: bool| Half::from_bits(if hi { v >> 16 } else { v & 0xffff } as u128);
    let hb = |x: Half| x.to_bits() as u16;
    let rn = Round::NearestTiesToEven;
    // min/max: a NaN operand yields the other; both NaN: NaN. Zeros of opposite sign: either.
    let minmax = |x: Half, y: Half, max: bool| -> Option<u16> {
        let (xb, yb) = (hb(x), hb(y));
        if x.is_nan() {
            return Some(yb);
        }
        if y.is_nan() {
            return Some(xb);
        }
        if x.is_zero() && y.is_zero() && xb != yb {
            return None;
        }
        let lt = x < y;
        Some(if lt != max { xb } else { yb })
    };
    for i in 0..n {
        for hi in [false, true] {
            let (x, y, z) = (h(a[i], hi), h(b[i], hi), h(c[i], hi));
            let lane = if hi { ".y" } else { ".x" };
            let want = [
                ("__hadd2", Some(hb(x.add_r(y, rn).value))),
                ("__hsub2", Some(hb(x.sub_r(y, rn).value))),
                ("__hmul2", Some(hb(x.mul_r(y, rn).value))),
                ("__hfma2", Some(hb(x.mul_add_r(y, z, rn).value))),
                ("__hmin2", minmax(x, y, false)),
                ("__hmax2", minmax(x, y, true)),
            ];
            for (k, (op, w)) in want.iter().enumerate() {
                let g = got[k * n + i];
                let g = if hi { (g >> 16) as u16 } else { g as u16 };
                if let Some(w) = w {
                    assert!(
                        same_f16(g, *w),
                        "{op}{lane}({:#06x}, {:#06x}, {:#06x}) = {g:#06x}, want {w:#06x}",
                        hb(x),
                        hb(y),
                        hb(z)
                    );
                }
            }
        }
        // Scalars (low halves), packed with +0 in the high half; and __hadd2_rn.
        let (x, y, z) = (h(a[i], false), h(b[i], false), h(c[i], false));
        let want = [
            ("__hadd", hb(x.add_r(y, rn).value)),
            ("__hmul", hb(x.mul_r(y, rn).value)),
            ("__hfma", hb(x.mul_add_r(y, z, rn).value)),
        ];
        for (k, (op, w)) in want.iter().enumerate() {
            let g = got[(6 + k) * n + i];
            assert!(
                same_f16(g as u16, *w) && g >> 16 == 0,
                "{op}({:#06x}, {:#06x}, {:#06x}) = {g:#010x}, want {w:#06x}",
                hb(x),
                hb(y),
                hb(z)
            );
        }
        let g = got[9 * n + i];
        for hi in [false, true] {
            let w = hb(h(a[i], hi).add_r(h(b[i], hi), rn).value);
            let gg = if hi { (g >> 16) as u16 } else { g as u16 };
            assert!(same_f16(gg, w), "__hadd2_rn: {gg:#06x}, want {w:#06x}");
        }
    }
}

#[test]
fn f32_min_max_nan_rules() {
    let mut e = emu!();
    let mut rng = rng("f32_min_max_nan_rules");
    let n = 2000;
    let mut a: Vec<f32> = (0..n).map(|_| rng.f32_any()).collect();
    let mut b: Vec<f32> = (0..n).map(|_| rng.f32_any()).collect();
    // Fixed NaN cases: one NaN either side, both NaN.
    a[0] = f32::NAN;
    b[0] = 1.5;
    a[1] = -2.5;
    b[1] = f32::NAN;
    a[2] = f32::NAN;
    b[2] = -f32::NAN;
    a[3] = f32::NEG_INFINITY;
    b[3] = f32::NAN;
    let (pa, pb) = (e.upload(&a), e.upload(&b));
    let out = e.alloc::<u32>(7 * n);
    e.run(
        "f32_minmax",
        &Launch::new(grid(n), BLOCK),
        &[Arg::P(pa), Arg::P(pb), Arg::P(out), Arg::I32(n as i32)],
    );
    let got = e.read::<u32>(out, 7 * n);
    for i in 0..n {
        let (x, y) = (a[i], b[i]);
        let zeros = x == 0.0 && y == 0.0 && x.to_bits() != y.to_bits();
        let mn = if x.is_nan() {
            y
        } else if y.is_nan() {
            x
        } else if x < y {
            x
        } else {
            y
        };
        let mx = if x.is_nan() {
            y
        } else if y.is_nan() {
            x
        } else if x > y {
            x
        } else {
            y
        };
        let checks: [(&str, f32, bool); 7] = [
            ("min.f32", mn, !zeros),
            ("max.f32", mx, !zeros),
            ("min.f32 (b, a)", mn, !zeros),
            ("max.f32 (b, a)", mx, !zeros),
            ("abs.f32", x.abs(), true),
            ("neg.f32", -x, true),
            ("copysign.f32", x.copysign(y), true),
        ];
        for (k, (op, w, check)) in checks.iter().enumerate() {
            let g = got[k * n + i];
            if *check {
                assert!(
                    same_f32(g, w.to_bits()),
                    "{op}({x:e} [{:#010x}], {y:e} [{:#010x}]) = {:#010x}, want {:#010x}",
                    x.to_bits(),
                    y.to_bits(),
                    g,
                    w.to_bits()
                );
            } else {
                assert!(
                    f32::from_bits(g) == 0.0,
                    "{op}(+0, -0) = {:#010x}, want a zero",
                    g
                );
            }
        }
    }
}

#[test]
fn f32_setp_ordered_and_unordered() {
    let mut e = emu!();
    let mut rng = rng("f32_setp_ordered_and_unordered");
    let n = 2000;
    let a: Vec<f32> = (0..n).map(|_| rng.f32_any()).collect();
    let b: Vec<f32> = (0..n)
        .map(|i| match rng.below(4) {
            0 => a[i],
            1 => -a[i],
            _ => rng.f32_any(),
        })
        .collect();
    let (pa, pb) = (e.upload(&a), e.upload(&b));
    let out = e.alloc::<u32>(n);
    e.run(
        "f32_setp",
        &Launch::new(grid(n), BLOCK),
        &[Arg::P(pa), Arg::P(pb), Arg::P(out), Arg::I32(n as i32)],
    );
    let got = e.read::<u32>(out, n);
    let names = [
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "equ",
        "neu",
        "ltu",
        "leu",
        "gtu",
        "geu",
        "num",
        "nan",
        "isnan(a)",
        "!(a >= b)",
    ];
    for i in 0..n {
        let (x, y) = (a[i], b[i]);
        let un = x.is_nan() || y.is_nan();
        let bits = [
            x == y,
            !un && x != y,
            x < y,
            x <= y,
            x > y,
            x >= y,
            un || x == y,
            un || x != y,
            un || x < y,
            un || x <= y,
            un || x > y,
            un || x >= y,
            !un,
            un,
            x.is_nan(),
            !(x >= y),
        ];
        for (k, w) in bits.iter().enumerate() {
            let g = (got[i] >> k) & 1 == 1;
            assert_eq!(g, *w, "setp.{}.f32({x:e}, {y:e})", names[k]);
        }
    }
}

#[test]
fn f32_approx_within_stated_error() {
    // Bounds (PTX ISA, "Floating Point Instructions", per instruction, for .approx.f32 without
    // .ftz on normal inputs/results):
    //   ex2:   max relative error 2^-22 (2 ulp)            lg2: max absolute error 2^-22 in [0.5, 2],
    //   rsqrt: max relative error 2^-22.9                       relative 2^-22 elsewhere
    //   rcp:   max 1 ulp                                    sqrt: max relative error 2^-23
    //   sin/cos: max absolute error 2^-20.9 in [-pi, pi], 2^-20.5 in [-100pi, 100pi]
    //   tanh:  max relative error 2^-10.987
    let mut e = emu!();
    let mut rng = rng("f32_approx_within_stated_error");
    let n = 2000;
    let out = e.alloc::<f32>(8 * n);
    let names = ["ex2", "lg2", "rsqrt", "rcp", "sqrt", "sin", "cos", "tanh"];
    let run = |e: &mut Emu, x: &[f32]| -> Vec<f32> {
        let px = e.upload(x);
        e.poison(out, 8 * n * 4);
        e.run(
            "f32_approx",
            &Launch::new(grid(x.len()), BLOCK),
            &[Arg::P(px), Arg::P(out), Arg::I32(x.len() as i32)],
        );
        e.read::<f32>(out, 8 * n)
    };
    let check_rel = |name: &str, x: f32, g: f32, want: f64, rel: f64| {
        let err = (g as f64 - want).abs();
        assert!(
            err <= rel * want.abs(),
            "{name}.approx({x:e}) = {g:e}, want {want:e} (rel err {:e} > {rel:e})",
            err / want.abs()
        );
    };
    let check_abs = |name: &str, x: f32, g: f32, want: f64, abs: f64| {
        let err = (g as f64 - want).abs();
        assert!(
            err <= abs,
            "{name}.approx({x:e}) = {g:e}, want {want:e} (abs err {err:e} > {abs:e})"
        );
    };
    // ex2 on [-125, 127]
    let x: Vec<f32> = (0..n).map(|_| rng.f32_in(-125.0, 127.0)).collect();
    let g = run(&mut e, &x);
    for i in 0..n {
        check_rel("ex2", x[i], g[i], (x[i] as f64).exp2(), 2f64.powi(-22));
    }
    // lg2, rsqrt, rcp, sqrt on positive normal numbers of every magnitude
    let x: Vec<f32> = (0..n)
        .map(|i| {
            if i % 4 == 0 {
                rng.f32_in(0.5, 2.0)
            } else {
                rng.f32_in(1.0, 2.0) * 2f32.powi(rng.range_i64(-125, 125) as i32)
            }
        })
        .collect();
    let g = run(&mut e, &x);
    for i in 0..n {
        let v = x[i] as f64;
        if (0.5..=2.0).contains(&v) {
            check_abs("lg2", x[i], g[n + i], v.log2(), 2f64.powi(-22));
        } else {
            check_rel("lg2", x[i], g[n + i], v.log2(), 2f64.powi(-22));
        }
        check_rel(
            "rsqrt",
            x[i],
            g[2 * n + i],
            1.0 / v.sqrt(),
            2f64.powf(-22.9),
        );
        let r = 1.0 / x[i];
        if r.abs() >= f32::MIN_POSITIVE {
            assert!(
                (g[3 * n + i] as f64 - 1.0 / v).abs() <= ulp_f32(r) as f64,
                "rcp.approx({:e}) = {:e}, want {:e} within 1 ulp",
                x[i],
                g[3 * n + i],
                1.0 / v
            );
        }
        check_rel("sqrt", x[i], g[4 * n + i], v.sqrt(), 2f64.powi(-23));
    }
    // sin, cos on [-pi, pi]; tanh on [-10, 10]
    let x: Vec<f32> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                rng.f32_in(-3.14159, 3.14159)
            } else {
                rng.f32_in(-10.0, 10.0)
            }
        })
        .collect();
    let g = run(&mut e, &x);
    for i in 0..n {
        let v = x[i] as f64;
        if i % 2 == 0 {
            check_abs("sin", x[i], g[5 * n + i], v.sin(), 2f64.powf(-20.9));
            check_abs("cos", x[i], g[6 * n + i], v.cos(), 2f64.powf(-20.9));
        }
        if v.abs() > 2f64.powi(-60) {
            check_rel("tanh", x[i], g[7 * n + i], v.tanh(), 2f64.powf(-10.987));
        }
    }
    // sin, cos on [-100pi, 100pi]
    let x: Vec<f32> = (0..n).map(|_| rng.f32_in(-314.159, 314.159)).collect();
    let g = run(&mut e, &x);
    for i in 0..n {
        let v = x[i] as f64;
        check_abs("sin", x[i], g[5 * n + i], v.sin(), 2f64.powf(-20.5));
        check_abs("cos", x[i], g[6 * n + i], v.cos(), 2f64.powf(-20.5));
    }
    // Special values, exact.
    let inf = f32::INFINITY;
    let nan = f32::NAN;
    let x = [0.0f32, -0.0, inf, -inf, nan, -1.0];
    let g = run(&mut e, &x);
    let m = x.len();
    #[rustfmt::skip]
    let want: [[f32; 6]; 8] = [
        // 0     -0     inf    -inf   nan  -1
        [1.0,   1.0,   inf,   0.0,   nan, 0.5],    // ex2
        [-inf,  -inf,  inf,   nan,   nan, nan],    // lg2
        [inf,   -inf,  0.0,   nan,   nan, nan],    // rsqrt
        [inf,   -inf,  0.0,   -0.0,  nan, -1.0],   // rcp
        [0.0,   -0.0,  inf,   nan,   nan, nan],    // sqrt
        [0.0,   -0.0,  nan,   nan,   nan, f32::NAN], // sin (-1 checked by tolerance above)
        [1.0,   1.0,   nan,   nan,   nan, f32::NAN], // cos
        [0.0,   -0.0,  1.0,   -1.0,  nan, f32::NAN], // tanh
    ];
    let mut bad = Vec::new();
    for (k, row) in want.iter().enumerate() {
        for (j, w) in row.iter().enumerate() {
            // -1: only the NaN results are exact requirements.
            if j == 5 && !matches!(names[k], "lg2" | "rsqrt" | "sqrt") {
                continue;
            }
            let gv = g[k * m + j];
            let ok = if w.is_nan() {
                gv.is_nan()
            } else {
                gv.to_bits() == w.to_bits()
            };
            if !ok {
                bad.push(format!(
                    "{}.approx.f32({:e}) = {gv:e}, want {w:e}",
                    names[k], x[j]
                ));
            }
        }
    }
    assert!(bad.is_empty(), "special values:\n  {}", bad.join("\n  "));
}

#[test]
fn f32_min_max_nan_modifier() {
    let Some(mut e) = Emu::new("float_extra") else {
        return;
    };
    let mut rng = rng("f32_min_max_nan_modifier");
    let n = 1000;
    let mut a: Vec<f32> = (0..n).map(|_| rng.f32_any()).collect();
    let b: Vec<f32> = (0..n).map(|_| rng.f32_any()).collect();
    a[0] = f32::NAN;
    let (pa, pb) = (e.upload(&a), e.upload(&b));
    let out = e.alloc::<u32>(2 * n);
    e.run(
        "minmax_nan",
        &Launch::new(grid(n), BLOCK),
        &[Arg::P(pa), Arg::P(pb), Arg::P(out), Arg::I32(n as i32)],
    );
    let got = e.read::<u32>(out, 2 * n);
    for i in 0..n {
        let (x, y) = (a[i], b[i]);
        if x == 0.0 && y == 0.0 && x.to_bits() != y.to_bits() {
            continue;
        }
        let nan = x.is_nan() || y.is_nan();
        let mn = if nan { f32::NAN } else { x.min(y) };
        let mx = if nan { f32::NAN } else { x.max(y) };
        assert!(
            same_f32(got[i], mn.to_bits()),
            "min.NaN.f32({x:e}, {y:e}) = {:e}, want {mn:e}",
            f32::from_bits(got[i])
        );
        assert!(
            same_f32(got[n + i], mx.to_bits()),
            "max.NaN.f32({x:e}, {y:e}) = {:e}, want {mx:e}",
            f32::from_bits(got[n + i])
        );
    }
}
