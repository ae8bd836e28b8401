//! The CPU reference ops checked against direct float64 formulas on fresh random inputs.

use lav2::ops::linear::reference as matmul;
use lav2::ops::{adapter_attention, rmsnorm, rope_kv_write};
use lav2::quant::{quantize, QuantFormat, QuantView};
use lav2::rng::Rng;

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn random(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| (rng.uniform() as f32 - 0.5) * 2.0).collect()
}

fn close(a: &[f32], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (*x as f64 - y).abs() <= tol * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

#[test]
fn linear_with_bias_matches_f64() {
    let s = seed();
    let mut rng = Rng::new(s);
    // Odd sizes, and one large enough to take the threaded path.
    for (m, k, n) in [(1, 7, 5), (3, 33, 17), (5, 300, 401)] {
        let x = random(&mut rng, m * k);
        let w = random(&mut rng, n * k);
        let b = random(&mut rng, n);
        let args = matmul::LinearArgs {
            x: &x,
            w: matmul::Weights::Dense(&w),
            bias: Some(&b),
            rows: m,
            in_features: k,
            out_features: n,
        };
        let mut out = vec![f32::NAN; m * n];
        matmul::linear(&args, &mut out);
        let want: Vec<f64> = (0..m * n)
            .map(|i| {
                let (row, o) = (i / n, i % n);
                let acc: f64 = (0..k)
                    .map(|j| x[row * k + j] as f64 * w[o * k + j] as f64)
                    .sum();
                acc + b[o] as f64
            })
            .collect();
        close(&out, &want, 1e-5, &format!("linear {m}x{k}x{n} seed {s}"));
    }
}

#[test]
fn quantized_linear_equals_dense_linear_on_dequantized_weights() {
    let s = seed();
    let mut rng = Rng::new(s);
    for format in [
        QuantFormat::Int8,
        QuantFormat::Int4 { zero_point: false },
        QuantFormat::Int4 { zero_point: true },
    ] {
        let (m, k, n) = (3, 259, 130);
        let x = random(&mut rng, m * k);
        let w = random(&mut rng, n * k);
        let q = quantize(&w, n, k, format);
        let deq = q.dequantize();
        let scales = q.scales.to_f32().unwrap();
        let view = QuantView {
            format,
            in_features: k,
            values: q.values.bytes.as_slice(),
            scales: &scales,
            zeros: q.zeros.as_ref().map(|z| z.bytes.as_slice()),
        };
        let mut got = vec![f32::NAN; m * n];
        let args = |w| matmul::LinearArgs {
            x: &x,
            w,
            bias: None,
            rows: m,
            in_features: k,
            out_features: n,
        };
        matmul::linear(&args(matmul::Weights::Quant(view)), &mut got);
        let mut want = vec![f32::NAN; m * n];
        matmul::linear(&args(matmul::Weights::Dense(&deq)), &mut want);
        assert_eq!(got, want, "{format:?} seed {s}");
        // And the quantized product stays near the unquantized one (relative L2).
        let mut exact = vec![0f32; m * n];
        matmul::linear(&args(matmul::Weights::Dense(&w)), &mut exact);
        let num: f32 = got.iter().zip(&exact).map(|(a, b)| (a - b) * (a - b)).sum();
        let den: f32 = exact.iter().map(|b| b * b).sum();
        let bound = if format == QuantFormat::Int8 {
            0.01
        } else {
            0.15
        };
        assert!(
            (num / den).sqrt() < bound,
            "{format:?} seed {s}: rel L2 {}",
            (num / den).sqrt()
        );
    }
}

#[test]
fn fused_rmsnorm_matches_f64() {
    let s = seed();
    let mut rng = Rng::new(s);
    let (rows, d) = (3, 37);
    let x = random(&mut rng, rows * d);
    let mut residual = random(&mut rng, rows * d);
    let before = residual.clone();
    let w = random(&mut rng, d);
    let mut out = vec![f32::NAN; rows * d];
    rmsnorm::reference(Some(&x), &mut residual, &w, &mut out, 1e-5);
    let mut want_res = vec![0f64; rows * d];
    let mut want = vec![0f64; rows * d];
    for r in 0..rows {
        let h: Vec<f64> = (0..d)
            .map(|i| before[r * d + i] as f64 + x[r * d + i] as f64)
            .collect();
        let rms = (h.iter().map(|v| v * v).sum::<f64>() / d as f64 + 1e-5).sqrt();
        for i in 0..d {
            want_res[r * d + i] = h[i];
            want[r * d + i] = h[i] / rms * w[i] as f64;
        }
    }
    close(&residual, &want_res, 1e-6, &format!("residual seed {s}"));
    close(&out, &want, 1e-5, &format!("rmsnorm seed {s}"));
}

/// Gated adapter attention against the formula, with GQA and a decode position past 0.
#[test]
fn adapter_attention_matches_f64() {
    let s = seed();
    let mut rng = Rng::new(s);
    let (heads, kv_heads, hd, start, t, plen, max_seq) = (4, 2, 6, 3, 2, 3, 8);
    let q = random(&mut rng, t * heads * hd);
    let kc = random(&mut rng, max_seq * kv_heads * hd);
    let vc = random(&mut rng, max_seq * kv_heads * hd);
    let pk = random(&mut rng, plen * kv_heads * hd);
    let pv = random(&mut rng, plen * kv_heads * hd);
    let gate = random(&mut rng, heads);
    let args = adapter_attention::AttentionArgs {
        start_pos: start,
        n_heads: heads,
        n_kv_heads: kv_heads,
        head_dim: hd,
        prompt: Some((&pk, &pv, &gate)),
        batch: 1,
    };
    let mut out = vec![f32::NAN; t * heads * hd];
    adapter_attention::reference(&args, &q, &kc, &vc, &mut out);
    let scale = 1.0 / (hd as f64).sqrt();
    let attend = |qv: &[f32], keys: &[f32], vals: &[f32], n: usize, kvh: usize| -> Vec<f64> {
        let sc: Vec<f64> = (0..n)
            .map(|j| {
                (0..hd)
                    .map(|i| qv[i] as f64 * keys[(j * kv_heads + kvh) * hd + i] as f64)
                    .sum::<f64>()
                    * scale
            })
            .collect();
        let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = sc.iter().map(|v| (v - m).exp()).collect();
        let z: f64 = e.iter().sum();
        (0..hd)
            .map(|i| {
                (0..n)
                    .map(|j| e[j] / z * vals[(j * kv_heads + kvh) * hd + i] as f64)
                    .sum()
            })
            .collect()
    };
    let mut want = Vec::new();
    for row in 0..t {
        for h in 0..heads {
            let kvh = h / (heads / kv_heads);
            let qv = &q[(row * heads + h) * hd..(row * heads + h + 1) * hd];
            let causal = attend(qv, &kc, &vc, start + row + 1, kvh);
            let prompt = attend(qv, &pk, &pv, plen, kvh);
            want.extend((0..hd).map(|i| causal[i] + gate[h] as f64 * prompt[i]));
        }
    }
    close(&out, &want, 1e-5, &format!("adapter attention seed {s}"));
}

/// Interleaved RoPE on Meta-ordered rows equals rotate-half RoPE on HF-ordered rows.
#[test]
fn rope_layouts_agree_up_to_the_row_permutation() {
    let s = seed();
    let mut rng = Rng::new(s);
    let (heads, hd, t, start) = (2, 8, 3, 5);
    let q = random(&mut rng, t * heads * hd);
    let to_hf = |v: &[f32]| -> Vec<f32> {
        let mut o = vec![0f32; v.len()];
        for blk in 0..v.len() / hd {
            for i in 0..hd / 2 {
                o[blk * hd + i] = v[blk * hd + 2 * i];
                o[blk * hd + hd / 2 + i] = v[blk * hd + 2 * i + 1];
            }
        }
        o
    };
    let run = |q: &[f32], interleaved: bool| -> Vec<f32> {
        let mut q = q.to_vec();
        let kv = vec![0f32; t * hd];
        let mut kc = vec![0f32; 16 * hd];
        let mut vc = kc.clone();
        let a = rope_kv_write::RopeArgs {
            start_pos: start,
            n_heads: heads,
            n_kv_heads: 1,
            head_dim: hd,
            theta: 10000.0,
            interleaved,
            batch: 1,
        };
        rope_kv_write::reference(&a, &mut q, &kv, &kv, &mut kc, &mut vc);
        q
    };
    let meta = run(&q, true);
    let hf = run(&to_hf(&q), false);
    let diff = to_hf(&meta)
        .iter()
        .zip(&hf)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-6, "seed {s}: {diff}");
    // And position 0 is the identity.
    let mut q0 = q[..heads * hd].to_vec();
    let kv = vec![0f32; hd];
    let (mut kc, mut vc) = (vec![0f32; hd], vec![0f32; hd]);
    let a = rope_kv_write::RopeArgs {
        start_pos: 0,
        n_heads: heads,
        n_kv_heads: 1,
        head_dim: hd,
        theta: 10000.0,
        interleaved: true,
        batch: 1,
    };
    rope_kv_write::reference(&a, &mut q0, &kv, &kv, &mut kc, &mut vc);
    assert_eq!(q0, q[..heads * hd]);
}
