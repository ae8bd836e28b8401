//! The float32 reference of `linear`: `y = x · wᵀ + b`, split across threads by
//! output columns when large enough.

use crate::quant::QuantView;

/// Dot product with eight independent accumulators so the compiler vectorizes it.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        let (pa, pb) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for l in 0..8 {
            acc[l] += pa[l] * pb[l];
        }
    }
    let mut tail = 0f32;
    for i in chunks * 8..n {
        tail += a[i] * b[i];
    }
    let pairs = [
        acc[0] + acc[4],
        acc[1] + acc[5],
        acc[2] + acc[6],
        acc[3] + acc[7],
    ];
    (pairs[0] + pairs[2]) + (pairs[1] + pairs[3]) + tail
}

/// The weight matrix: dense f32 rows, or quantized rows dequantized one at a time.
pub enum Weights<'a> {
    Dense(&'a [f32]),
    Quant(QuantView<'a>),
}

pub struct LinearArgs<'a> {
    pub x: &'a [f32],
    pub w: Weights<'a>,
    pub bias: Option<&'a [f32]>,
    pub rows: usize,
    pub in_features: usize,
    pub out_features: usize,
}

/// Below this many multiply-adds a thread costs more than it saves.
const PARALLEL_WORK: usize = 1 << 18;

pub fn linear(a: &LinearArgs, out: &mut [f32]) {
    let (m, k, n) = (a.rows, a.in_features, a.out_features);
    let threads = std::thread::available_parallelism()
        .map(|t| t.get())
        .unwrap_or(1)
        .min(n);
    if m * n * k < PARALLEL_WORK || threads <= 1 {
        linear_cols(a, 0, n, out);
        return;
    }
    // Split output features so each thread streams a disjoint part of the weights.
    let per = n.div_ceil(threads);
    let mut parts: Vec<Vec<f32>> = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (lo, hi) = (t * per, ((t + 1) * per).min(n));
                s.spawn(move || {
                    let mut part = vec![0f32; m * (hi - lo)];
                    linear_cols_into(a, lo, hi, &mut part);
                    part
                })
            })
            .collect();
        parts = handles
            .into_iter()
            .map(|h| h.join().expect("matmul thread"))
            .collect();
    });
    for (t, part) in parts.iter().enumerate() {
        let (lo, hi) = (t * per, ((t + 1) * per).min(n));
        for r in 0..m {
            out[r * n + lo..r * n + hi].copy_from_slice(&part[r * (hi - lo)..(r + 1) * (hi - lo)]);
        }
    }
}

fn linear_cols(a: &LinearArgs, lo: usize, hi: usize, out: &mut [f32]) {
    let n = a.out_features;
    for_each_output(a, lo, hi, |r, o, v| out[r * n + o] = v);
}

fn linear_cols_into(a: &LinearArgs, lo: usize, hi: usize, part: &mut [f32]) {
    let w = hi - lo;
    for_each_output(a, lo, hi, |r, o, v| part[r * w + o - lo] = v);
}

/// Calls `put(row, output, value)` for outputs `lo..hi` of every row, reading each weight row once.
fn for_each_output(a: &LinearArgs, lo: usize, hi: usize, mut put: impl FnMut(usize, usize, f32)) {
    let k = a.in_features;
    let mut buf = vec![
        0f32;
        if matches!(a.w, Weights::Quant(_)) {
            k
        } else {
            0
        }
    ];
    for o in lo..hi {
        let wrow: &[f32] = match &a.w {
            Weights::Dense(w) => &w[o * k..(o + 1) * k],
            Weights::Quant(q) => {
                q.row(o, &mut buf);
                &buf
            }
        };
        let bias = a.bias.map_or(0.0, |b| b[o]);
        for r in 0..a.rows {
            put(r, o, dot(&a.x[r * k..(r + 1) * k], wrow) + bias);
        }
    }
}
