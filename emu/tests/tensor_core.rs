// Lane-by-lane comparisons read clearest as index loops.
#![allow(clippy::needless_range_loop)]
//! Tensor cores (tests/kernels/tensor_core.cu): `mma.sync.aligned.m16n8k16.row.col` with f32 and
//! f16 accumulators against a host matmul, `ldmatrix` .x1/.x2/.x4 (.trans) against the fragment
//! layout the PTX ISA states, and ldmatrix feeding mma.

mod common;
use common::*;

macro_rules! emu {
    () => {
        match Emu::new("tensor_core") {
            Some(e) => e,
            None => return,
        }
    };
}

fn rand_f16(rng: &mut Rng, lo: f32, hi: f32) -> u16 {
    f32_to_f16(rng.f32_in(lo, hi), Round::NearestTiesToEven)
}

/// D = A·B + C for one tile, in f64; also Σ|a·b| + |c| per element (the scale of its error).
fn reference(a: &[u16], b: &[u16], c: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut d = vec![0.0; 128];
    let mut s = vec![0.0; 128];
    for i in 0..16 {
        for j in 0..8 {
            let mut acc = c[i * 8 + j];
            let mut sc = acc.abs();
            for k in 0..16 {
                let p =
                    f16_bits_to_f32(a[i * 16 + k]) as f64 * f16_bits_to_f32(b[k * 8 + j]) as f64;
                acc += p;
                sc += p.abs();
            }
            d[i * 8 + j] = acc;
            s[i * 8 + j] = sc;
        }
    }
    (d, s)
}

#[test]
fn mma_m16n8k16_f32_accumulator() {
    let mut e = emu!();
    e.assert_ptx_has("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32");
    let mut rng = rng("mma_m16n8k16_f32_accumulator");
    let tiles = 6; // 3 blocks of 2 warps
    let a: Vec<u16> = (0..tiles * 256)
        .map(|_| rand_f16(&mut rng, -2.0, 2.0))
        .collect();
    let b: Vec<u16> = (0..tiles * 128)
        .map(|_| rand_f16(&mut rng, -2.0, 2.0))
        .collect();
    let c: Vec<f32> = (0..tiles * 128).map(|_| rng.f32_in(-8.0, 8.0)).collect();
    let (pa, pb, pc) = (e.upload(&a), e.upload(&b), e.upload(&c));
    let pd = e.alloc::<f32>(tiles * 128);
    e.run(
        "mma_f32_f16",
        &Launch::new(3, 64),
        &[Arg::P(pa), Arg::P(pb), Arg::P(pc), Arg::P(pd)],
    );
    let d = e.read::<f32>(pd, tiles * 128);
    for t in 0..tiles {
        let cc: Vec<f64> = c[t * 128..(t + 1) * 128]
            .iter()
            .map(|&x| x as f64)
            .collect();
        let (want, scale) = reference(&a[t * 256..(t + 1) * 256], &b[t * 128..(t + 1) * 128], &cc);
        for i in 0..128 {
            let got = d[t * 128 + i] as f64;
            // f32 accumulation: 1e-3 relative to the magnitude of the terms (cancellation-safe).
            let tol = 1e-3 * want[i].abs().max(1e-3 * scale[i]).max(1e-6);
            assert!(
                (got - want[i]).abs() <= tol,
                "tile {t} D[{}][{}] = {got}, want {} (tol {tol})",
                i / 8,
                i % 8,
                want[i]
            );
        }
    }
}

#[test]
fn mma_m16n8k16_f16_accumulator() {
    let mut e = emu!();
    e.assert_ptx_has("mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16");
    let mut rng = rng("mma_m16n8k16_f16_accumulator");
    let tiles = 4;
    let a: Vec<u16> = (0..tiles * 256)
        .map(|_| rand_f16(&mut rng, -1.0, 1.0))
        .collect();
    let b: Vec<u16> = (0..tiles * 128)
        .map(|_| rand_f16(&mut rng, -1.0, 1.0))
        .collect();
    let c: Vec<u16> = (0..tiles * 128)
        .map(|_| rand_f16(&mut rng, -4.0, 4.0))
        .collect();
    let (pa, pb, pc) = (e.upload(&a), e.upload(&b), e.upload(&c));
    let pd = e.alloc::<u16>(tiles * 128);
    e.run(
        "mma_f16_f16",
        &Launch::new(2, 64),
        &[Arg::P(pa), Arg::P(pb), Arg::P(pc), Arg::P(pd)],
    );
    let d = e.read::<u16>(pd, tiles * 128);
    for t in 0..tiles {
        let cc: Vec<f64> = c[t * 128..(t + 1) * 128]
            .iter()
            .map(|&x| f16_bits_to_f32(x) as f64)
            .collect();
        let (want, scale) = reference(&a[t * 256..(t + 1) * 256], &b[t * 128..(t + 1) * 128], &cc);
        for i in 0..128 {
            assert!(
                !f16_is_nan(d[t * 128 + i]),
                "tile {t} D[{i}] is NaN (poison left?)"
            );
            let got = f16_bits_to_f32(d[t * 128 + i]) as f64;
            // f16 result: half an f16 ulp of rounding (2^-11 relative) plus accumulation error.
            let tol = 2f64.powi(-10) * want[i].abs() + 2e-3 * scale[i].max(1.0) * 2f64.powi(-3);
            assert!(
                (got - want[i]).abs() <= tol,
                "tile {t} D[{}][{}] = {got}, want {} (tol {tol})",
                i / 8,
                i % 8,
                want[i]
            );
        }
    }
}

#[test]
fn ldmatrix_layouts() {
    let mut e = emu!();
    let mut rng = rng("ldmatrix_layouts");
    // Distinct, random 16-bit values so every misplaced element shows.
    let src: Vec<u16> = (0..512).map(|_| rng.next_u32() as u16).collect();
    let psrc = e.upload(&src);
    let out = e.alloc::<u32>(6 * 128);
    e.run(
        "ldmatrix_all",
        &Launch::new(1, 32),
        &[Arg::P(psrc), Arg::P(out)],
    );
    let got = e.read::<u32>(out, 6 * 128);
    // Matrix m, row r (as the lanes address them): elements at sm[(m*8 + perm(r))*16 + 8 + c].
    let elem = |m: usize, r: usize, c: usize| src[(m * 8 + (3 * r + 1) % 8) * 16 + 8 + c] as u32;
    for (v, (num, trans)) in [
        (1, false),
        (2, false),
        (4, false),
        (1, true),
        (2, true),
        (4, true),
    ]
    .into_iter()
    .enumerate()
    {
        for lane in 0..32 {
            for j in 0..num {
                let (lo, hi) = if trans {
                    // Transposed: lane holds column lane/4, rows 2*(lane%4) and +1.
                    (
                        elem(j, 2 * (lane % 4), lane / 4),
                        elem(j, 2 * (lane % 4) + 1, lane / 4),
                    )
                } else {
                    // Lane holds row lane/4, columns 2*(lane%4) and +1.
                    (
                        elem(j, lane / 4, 2 * (lane % 4)),
                        elem(j, lane / 4, 2 * (lane % 4) + 1),
                    )
                };
                let want = lo | hi << 16;
                let g = got[v * 128 + lane * 4 + j];
                assert_eq!(
                    g,
                    want,
                    "ldmatrix .x{num}{} lane {lane} reg {j}: got {g:#010x}, want {want:#010x}",
                    if trans { ".trans" } else { "" }
                );
            }
        }
    }
}

#[test]
fn ldmatrix_feeds_mma() {
    let mut e = emu!();
    let mut rng = rng("ldmatrix_feeds_mma");
    let a: Vec<u16> = (0..256).map(|_| rand_f16(&mut rng, -1.0, 1.0)).collect();
    // B (16x8, k-major) and its n-major copy Bt[n][k] for the kernel.
    let b: Vec<u16> = (0..128).map(|_| rand_f16(&mut rng, -1.0, 1.0)).collect();
    let mut bt = vec![0u16; 128];
    for k in 0..16 {
        for n in 0..8 {
            bt[n * 16 + k] = b[k * 8 + n];
        }
    }
    let (pa, pbt) = (e.upload(&a), e.upload(&bt));
    let pd = e.alloc::<f32>(128);
    e.run(
        "ldmatrix_mma",
        &Launch::new(1, 32),
        &[Arg::P(pa), Arg::P(pbt), Arg::P(pd)],
    );
    let d = e.read::<f32>(pd, 128);
    let (want, scale) = reference(&a, &b, &[0.0; 128]);
    for i in 0..128 {
        let tol = 1e-3 * want[i].abs().max(1e-3 * scale[i]).max(1e-6);
        assert!(
            (d[i] as f64 - want[i]).abs() <= tol,
            "D[{}][{}] = {}, want {}",
            i / 8,
            i % 8,
            d[i],
            want[i]
        );
    }
}
