// Lane-by-lane comparisons read clearest as index loops.
#![allow(clippy::needless_range_loop)]
//! What lav2's kernels compile to beyond the per-family tests (tests/kernels/lav2_ops.cu): the
//! CUDA math library (within the CUDA Programming Guide's maximum ulp errors), block votes
//! (bar.red), f16x2 packing, cvt.sat, __ldg vector loads, 16-bit integers, 64-bit conversions.

mod common;
use common::*;

const BLOCK: u32 = 128;

/// Distance in f32 ulps of `got` from the exact `want` (ulp of `want` rounded to f32).
fn ulps(got: f32, want: f64) -> f64 {
    let w = want as f32;
    if w.is_infinite() || got.is_infinite() {
        return if got == w { 0.0 } else { f64::INFINITY };
    }
    let a = w.abs();
    let ulp = if a < f32::MIN_POSITIVE {
        2f64.powi(-149)
    } else {
        (f32::from_bits(a.to_bits() + 1) - a) as f64
    };
    (got as f64 - want).abs() / ulp
}

#[test]
fn cuda_math_library_within_documented_ulps() {
    let Some(mut e) = Emu::new("lav2_ops") else {
        return;
    };
    let mut rng = rng("cuda_math_library_within_documented_ulps");
    let n = 3000;
    let mut x: Vec<f32> = (0..n).map(|_| rng.f32_in(-20.0, 20.0)).collect();
    x[0] = 0.0;
    x[1] = -0.0;
    x[2] = 1.0;
    x[3] = 87.0;
    x[4] = -87.0;
    x[5] = 1.0e-30;
    let y: Vec<f32> = (0..n)
        .map(|i| match i % 3 {
            0 => rng.f32_in(-3.2, 3.2),
            1 => rng.f32_in(-1.0e5, 1.0e5),
            _ => {
                rng.f32_in(1.0, 2.0)
                    * 2f32.powi(rng.range_i64(0, 100) as i32)
                    * if rng.bool() { -1.0 } else { 1.0 }
            }
        })
        .collect();
    let (px, py) = (e.upload(&x), e.upload(&y));
    let out = e.alloc::<f32>(10 * n);
    e.run(
        "mathlib",
        &Launch::new((n as u32).div_ceil(BLOCK), BLOCK),
        &[Arg::P(px), Arg::P(py), Arg::P(out), Arg::I32(n as i32)],
    );
    let got = e.read::<f32>(out, 10 * n);
    // CUDA Programming Guide, "Mathematical Functions", single precision maximum ulp errors.
    let mut worst = vec![0.0f64; 9];
    for i in 0..n {
        let (a, b) = (x[i] as f64, y[i] as f64);
        let pw = (y[i] * 0.01) as f64; // the kernel computes y * 0.01f in f32
        let cases: [(&str, f64, f64); 9] = [
            ("expf", a.exp(), 2.0),
            ("exp2f", a.exp2(), 2.0),
            ("logf", a.abs().ln(), 1.0),
            ("erff", erf(a), 2.0),
            ("tanhf", a.tanh(), 2.0),
            ("sinf", b.sin(), 2.0),
            ("cosf", b.cos(), 2.0),
            ("rsqrtf", 1.0 / a.abs().sqrt(), 2.0),
            ("powf", a.abs().powf(pw), 4.0),
        ];
        for (k, (name, want, tol)) in cases.iter().enumerate() {
            let g = got[k * n + i];
            let arg = if k == 5 || k == 6 { y[i] } else { x[i] };
            if want.is_nan() {
                assert!(g.is_nan(), "{name}({arg:e}) = {g:e}, want NaN");
                continue;
            }
            let u = ulps(g, *want);
            worst[k] = worst[k].max(u);
            assert!(
                u <= *tol,
                "{name}({arg:e}{}) = {g:e}, want {want:e}: {u:.2} ulp > {tol}",
                if k == 8 {
                    format!(", {pw:e}")
                } else {
                    String::new()
                }
            );
        }
        // cvt.sat.f32.f32: clamp to [0, 1], NaN -> +0; -0 may come out as either zero.
        let sat = if x[i].is_nan() {
            0.0
        } else {
            x[i].clamp(0.0, 1.0)
        };
        let g = got[9 * n + i].to_bits();
        assert!(
            g == sat.to_bits() || (sat == 0.0 && f32::from_bits(g) == 0.0),
            "__saturatef({:e}) = {:e}",
            x[i],
            f32::from_bits(g)
        );
    }
    println!("worst ulps: {worst:?}");
}

/// erf in f64 (Abramowitz-Stegun 7.1.26 is too coarse; use the series / continued fraction).
fn erf(x: f64) -> f64 {
    if x.abs() > 6.0 {
        return x.signum();
    }
    if x.abs() < 2.5 {
        // Maclaurin series: converges fast enough here in f64.
        let mut sum = 0.0;
        let mut term = x;
        let x2 = x * x;
        let mut k = 0.0;
        loop {
            let t = term / (2.0 * k + 1.0);
            sum += t;
            if t.abs() <= 1e-17 * sum.abs() || k > 300.0 {
                break;
            }
            k += 1.0;
            term *= -x2 / k;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc continued fraction (Lentz), then 1 - erfc.
        let ax = x.abs();
        let mut f = ax;
        let mut c = ax;
        let mut d = 0.0;
        for k in 1..200 {
            let a = k as f64 / 2.0;
            d = ax + a * d;
            d = 1.0 / d;
            c = ax + a / c;
            let delta = c * d;
            f *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        let erfc = (-ax * ax).exp() / (f * std::f64::consts::PI.sqrt());
        (1.0 - erfc) * x.signum()
    }
}

#[test]
fn block_votes_and_half2_packing() {
    let Some(mut e) = Emu::new("lav2_ops") else {
        return;
    };
    e.assert_ptx_has("bar.red.popc.u32");
    e.assert_ptx_has("cvt.rn.f16x2.f32");
    let mut rng = rng("block_votes_and_half2_packing");
    let (blocks, bs) = (4usize, 256usize);
    let n = blocks * bs;
    let mut v = Vec::new();
    for b in 0..blocks {
        for _ in 0..bs {
            let mut x = rng.next_u32() as i32 & 0x7fff_ffff;
            if b == 1 {
                x |= 3; // all true
            }
            if b == 2 {
                x &= !4; // any false
            }
            v.push(x);
        }
    }
    let a: Vec<f32> = (0..n).map(|_| rng.f32_any()).collect();
    let bb: Vec<f32> = (0..n).map(|_| rng.f32_any()).collect();
    let (pv, pa, pb) = (e.upload(&v), e.upload(&a), e.upload(&bb));
    let out = e.alloc::<i32>(3 * n);
    let outh = e.alloc::<u32>(n);
    e.run(
        "block_votes_and_halves",
        &Launch::new(blocks as u32, bs as u32),
        &[
            Arg::P(pv),
            Arg::P(pa),
            Arg::P(pb),
            Arg::P(out),
            Arg::P(outh),
        ],
    );
    let got = e.read::<i32>(out, 3 * n);
    let goth = e.read::<u32>(outh, n);
    for b in 0..blocks {
        let vals = &v[b * bs..(b + 1) * bs];
        let cnt = vals.iter().filter(|&&x| x & 1 != 0).count() as i32;
        let all = vals.iter().all(|&x| (x & 1) | (x & 2) != 0) as i32;
        let any = vals.iter().any(|&x| (x & 1) & (x >> 2) != 0) as i32;
        for t in 0..bs {
            let i = b * bs + t;
            assert_eq!(
                &got[3 * i..3 * i + 3],
                &[cnt, all, any],
                "block {b} thread {t}: __syncthreads_count/and/or"
            );
        }
    }
    for i in 0..n {
        let lo = f32_to_f16(a[i], Round::NearestTiesToEven);
        let hi = f32_to_f16(bb[i], Round::NearestTiesToEven);
        let g = goth[i];
        assert!(
            same_f16(g as u16, lo) && same_f16((g >> 16) as u16, hi),
            "__floats2half2_rn({:e}, {:e}) = {g:#010x}, want {:#06x}|{:#06x}",
            a[i],
            bb[i],
            hi,
            lo
        );
    }
}

#[test]
fn vector_loads_narrow_ints_and_64bit_conversions() {
    let Some(mut e) = Emu::new("lav2_ops") else {
        return;
    };
    e.assert_ptx_has("ld.global.nc.v4.f32");
    let mut rng = rng("vector_loads_narrow_ints_and_64bit_conversions");
    let n = 1000;
    let in4: Vec<f32> = (0..4 * n).map(|_| rng.f32_in(-100.0, 100.0)).collect();
    let s16: Vec<i16> = (0..2 * n)
        .map(|i| {
            if i % 7 == 0 {
                0x7fff
            } else {
                rng.next_u32() as i16
            }
        })
        .collect();
    let u64s: Vec<u64> = (0..n).map(|_| rng.int_u64()).collect();
    let (p4, p16, p64) = (e.upload(&in4), e.upload(&s16), e.upload(&u64s));
    let (o4, o16, o64) = (
        e.alloc::<f32>(4 * n),
        e.alloc::<u16>(4 * n),
        e.alloc::<u64>(6 * n),
    );
    e.run(
        "vec_and_narrow",
        &Launch::new((n as u32).div_ceil(BLOCK), BLOCK),
        &[
            Arg::P(p4),
            Arg::P(p16),
            Arg::P(p64),
            Arg::P(o4),
            Arg::P(o16),
            Arg::P(o64),
            Arg::I32(n as i32),
        ],
    );
    let g4 = e.read::<f32>(o4, 4 * n);
    let g16 = e.read::<u16>(o16, 4 * n);
    let g64 = e.read::<u64>(o64, 6 * n);
    for i in 0..n {
        let v = &in4[4 * i..4 * i + 4];
        assert_eq!(
            &g4[4 * i..4 * i + 4],
            &[v[3] * 2.0, v[2] * 2.0, v[1] * 2.0, v[0] * 2.0],
            "float4 {i}"
        );
        let (a, b) = (s16[2 * i], s16[2 * i + 1]);
        let want16 = [
            a.wrapping_add(b) as u16,
            (a & b) as u16,
            (a as u16) >> (b & 15),
            if a == b {
                a as u16
            } else {
                a.wrapping_mul(3) as u16
            },
        ];
        assert_eq!(&g16[4 * i..4 * i + 4], &want16, "16-bit ops on ({a}, {b})");
        let u = u64s[i];
        let f = f32::from_bits((u >> 32) as u32 & 0x5fff_ffff);
        let want64 = [
            (u as f32).to_bits() as u64,
            (u as f64).to_bits(),
            (u as i64 as f64).to_bits(),
            f as u64,
            (f as f64) as u64,
            (f as f64).to_bits(),
        ];
        let names = [
            "(float)u64",
            "(double)u64",
            "(double)s64",
            "(u64)float",
            "(u64)(double)float",
            "(double)float",
        ];
        for k in 0..6 {
            assert_eq!(g64[6 * i + k], want64[k], "{} of {u:#x} / {f:e}", names[k]);
        }
    }
}
