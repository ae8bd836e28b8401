//! Cases of `linear`: GEMV and GEMM (both tile sizes) with their edges, vector and scalar loads,
//! f16 and f32 outputs, with and without a bias, in every weight format.

use super::super::case::{rnd, tensor, Case, Data, Sizes};
use crate::graph::{Elem, Graph, Op, QuantRef};
use crate::quant::{quantize, QuantFormat};
use crate::rng::Rng;

#[derive(Clone, Copy, Debug)]
pub struct LinearShape {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub bias: bool,
    pub f32_out: bool,
}

const fn ls(m: usize, k: usize, n: usize, bias: bool, f32_out: bool) -> LinearShape {
    LinearShape {
        m,
        k,
        n,
        bias,
        f32_out,
    }
}

const LINEAR_SHAPES: &[LinearShape] = &[
    ls(1, 64, 96, true, false),
    ls(1, 4096, 4096, true, false),
    ls(3, 100, 37, true, false),
    ls(8, 256, 300, false, false),
    ls(9, 256, 300, true, false),
    ls(17, 250, 130, true, false),
    ls(64, 1024, 1024, true, false),
    ls(200, 1000, 130, false, false),
    ls(300, 4096, 1024, true, false),
    ls(1, 4096, 32000, false, true),
    ls(7, 512, 1000, false, true),
    ls(130, 512, 999, true, true),
    // The 128 × 128 tiles: taken when the 128-tile grid fills two blocks per SM (≥ 264 tiles on
    // a 132-SM H100; 7B's FFN and LM head at 512 tokens), vector (K % 8 = 0) and scalar loads.
    ls(129, 72, 16900, true, false),
    ls(200, 33, 16901, false, true),
];

/// LINEAR_SHAPES for the emulator: GEMV vector and scalar loads, 8 rows (the GEMV's last) and 9
/// (the GEMM's first), 64-tile edges (M, N not multiples of 64) with K % 8 ≠ 0 (scalar) and
/// K % 8 = 0 (vector), exact tiles, the 128-tile GEMM, f32 outputs; no 4096-wide 7B shape.
const EMU_LINEAR_SHAPES: &[LinearShape] = &[
    ls(1, 64, 96, true, false),
    ls(1, 1024, 1000, true, false),
    ls(3, 100, 37, true, false),
    ls(8, 256, 300, false, false),
    ls(9, 256, 300, true, false),
    ls(17, 250, 130, true, false),
    ls(64, 512, 192, true, false),
    ls(200, 1000, 130, false, false),
    ls(130, 257, 70, true, true),
    ls(1, 520, 4099, false, true),
    ls(7, 512, 1000, false, true),
    ls(130, 512, 999, true, true),
    ls(129, 72, 16900, true, false),
    ls(200, 33, 16901, false, true),
];

/// A one-linear graph; `quant` holds the format and the weights come in the order the graph
/// numbers them (values, scales, zeros) — or one dense matrix.
pub fn linear_case(rng: &mut Rng, s: LinearShape, format: QuantFormat) -> Case {
    let LinearShape {
        m,
        k,
        n,
        bias,
        f32_out,
    } = s;
    let mut g = Graph::new("linear");
    let x = g.input("x", &[m, k], Elem::Act);
    let amp = (3.0 / k as f32).sqrt();
    let w_f32 = rnd(rng, n * k, amp);
    let mut weights = Vec::new();
    let (w, quant) = if format == QuantFormat::None {
        weights.push(tensor(&[n, k], w_f32));
        (g.weight("w", &[n, k], Elem::Act, 0), None)
    } else {
        let q = quantize(&w_f32, n, k, format);
        let ng = q.scales.shape[1];
        weights.push(q.values.clone());
        weights.push(q.scales.clone());
        let w = g.weight("w", &[n, k], Elem::Quant, 0);
        let scales = g.weight("w.scales", &[n, ng], Elem::Act, 1);
        let zeros = q.zeros.as_ref().map(|z| {
            weights.push(z.clone());
            g.weight("w.zeros", &[n, ng], Elem::Quant, 2)
        });
        (
            w,
            Some(QuantRef {
                format,
                scales,
                zeros,
            }),
        )
    };
    let bias_id = bias.then(|| {
        weights.push(tensor(&[n], rnd(rng, n, 0.5)));
        g.weight("bias", &[n], Elem::Act, weights.len() - 1)
    });
    let out = if f32_out {
        g.activation_f32("out", &[m, n])
    } else {
        g.activation("out", &[m, n])
    };
    g.push(Op::Linear {
        x,
        w,
        quant,
        bias: bias_id,
        out,
    });
    g.mark_output(out);
    let mut c = Case::new(format!("linear {} {s:?}", format.name()), g);
    c.weights = weights;
    c.input("x", Data::F32(rnd(rng, m * k, 2.0)))
}

const QUANT_SHAPES: &[LinearShape] = &[
    ls(1, 256, 64, true, false),
    ls(1, 4096, 1000, true, false),
    ls(4, 100, 37, true, false),
    ls(1, 257, 40, false, false),
    ls(8, 384, 130, true, false),
    ls(9, 256, 64, true, false),
    ls(37, 300, 130, false, false),
    ls(128, 4096, 512, true, false),
    ls(300, 1024, 1000, true, false),
    ls(1, 4096, 32000, false, true),
    ls(20, 520, 333, false, true),
    // The 128 × 128 tiles (see LINEAR_SHAPES): one group and a partial one, f16 and f32 out.
    ls(129, 136, 16900, true, false),
    ls(129, 136, 16901, false, true),
];

/// QUANT_SHAPES for the emulator: int4 groups of 128 — one partial group (K < 128), exactly 3,
/// 2 and a partial one (K = 257, 300), 4 and 8 plus a partial one (K = 520, 1032) — in the GEMV
/// (rows ≤ 8) and the GEMM (64 tiles with edges, 128 tiles), scalar (K % 8 ≠ 0) and vector.
const EMU_QUANT_SHAPES: &[LinearShape] = &[
    ls(1, 256, 64, true, false),
    ls(1, 1032, 1000, true, false),
    ls(4, 100, 37, true, false),
    ls(1, 257, 40, false, false),
    ls(8, 384, 130, true, false),
    ls(9, 256, 64, true, false),
    ls(37, 300, 130, false, false),
    ls(128, 640, 192, true, false),
    ls(200, 520, 333, true, false),
    ls(1, 1032, 4097, false, true),
    ls(20, 520, 333, false, true),
    ls(129, 136, 16900, true, false),
    ls(129, 136, 16901, false, true),
];

/// Every format's cases: f16 on the dense lists, int8, int4 and int4 with zero points on the
/// quantized ones.
pub fn cases(rng: &mut Rng, sizes: Sizes) -> Vec<Case> {
    let mut out: Vec<Case> = sizes
        .pick(LINEAR_SHAPES, EMU_LINEAR_SHAPES)
        .into_iter()
        .map(|s| linear_case(rng, s, QuantFormat::None))
        .collect();
    for format in [
        QuantFormat::Int8,
        QuantFormat::Int4 { zero_point: false },
        QuantFormat::Int4 { zero_point: true },
    ] {
        for s in sizes.pick(QUANT_SHAPES, EMU_QUANT_SHAPES) {
            out.push(linear_case(rng, s, format));
        }
    }
    out
}
