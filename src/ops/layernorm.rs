//! `out = (x − mean) / sqrt(var + eps) ⊙ weight + bias` per row: CLIP's and the resampler's
//! norm (kernels/layernorm.cu).

use anyhow::Result;

use super::case::{rnd, tensor, Case, Data, Sizes};
use super::lowering::{dim, Arg, DevElem, Lowering, Step};
use super::shape::Shapes;
use super::{no_scratch, wrong_op, CpuTensors, OpEntry};
use crate::graph::{Elem, Graph, Op};
use crate::rng::Rng;

pub const ENTRY: OpEntry = OpEntry {
    name: "layernorm",
    kernel_files: &["layernorm"],
    check,
    cpu,
    lower,
    scratch_bytes: no_scratch,
    variants: &[],
    cases,
};

fn check(g: &Graph, op: &Op) -> Result<(), String> {
    let Op::LayerNorm {
        x,
        weight,
        bias,
        out,
        ..
    } = op
    else {
        return Err(wrong_op("layernorm", op).to_string());
    };
    let s = Shapes(g);
    s.same_size(*x, *out)?;
    let (_, d) = s.rows_cols(*x)?;
    s.numel_is(*weight, d, "one weight per channel")?;
    s.numel_is(*bias, d, "one bias per channel")
}

/// Biased variance, per row.
pub fn reference(x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32], eps: f32) {
    let d = weight.len();
    for (row, orow) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for i in 0..d {
            orow[i] = (row[i] - mean) * inv * weight[i] + bias[i];
        }
    }
}

fn cpu(op: &Op, t: &mut CpuTensors) -> Result<()> {
    let Op::LayerNorm {
        x,
        weight,
        bias,
        out,
        eps,
    } = op
    else {
        return Err(wrong_op("layernorm", op));
    };
    let (x, w, b) = (t.get(*x)?, t.get(*weight)?, t.get(*bias)?);
    reference(x, w, b, t.take_mut(*out)?, *eps);
    Ok(())
}

/// Threads per row (the kernel keeps `LN_REG_CHUNKS` 8-element chunks per thread in registers).
const THREADS: u32 = 256;

fn lower(lw: &mut Lowering, op: &Op) -> Result<Vec<Step>> {
    let Op::LayerNorm {
        x,
        weight,
        bias,
        out,
        eps,
    } = op
    else {
        return Err(wrong_op("layernorm", op));
    };
    let f16 = DevElem::F16;
    let (rows, d) = lw.rows_cols(*x);
    let args = vec![
        Arg::Ptr(lw.ptr(*x, f16)?),
        Arg::Ptr(lw.ptr(*weight, f16)?),
        Arg::Ptr(lw.ptr(*bias, f16)?),
        Arg::Ptr(lw.ptr(*out, f16)?),
        Arg::I32(dim(rows, "rows")?),
        Arg::I32(dim(d, "dim")?),
        Arg::F32(*eps),
    ];
    let grid = (dim(rows.max(1), "rows")? as u32, 1, 1);
    Ok(vec![lw.kernel(
        "layernorm_f16",
        grid,
        (THREADS, 1, 1),
        0,
        args,
    )?])
}

fn cases(rng: &mut Rng, _sizes: Sizes) -> Vec<Case> {
    [(1, 64), (5, 100), (257, 1024), (10, 4096)]
        .into_iter()
        .map(|(rows, d)| {
            let mut g = Graph::new("layernorm");
            let x = g.input("x", &[rows, d], Elem::Act);
            let weight = g.weight("w", &[d], Elem::Act, 0);
            let bias = g.weight("b", &[d], Elem::Act, 1);
            let out = g.activation("out", &[rows, d]);
            g.push(Op::LayerNorm {
                x,
                weight,
                bias,
                out,
                eps: 1e-5,
            });
            g.mark_output(out);
            let mut c = Case::new(format!("layernorm {rows}x{d}"), g);
            c.weights.push(tensor(&[d], rnd(rng, d, 2.0)));
            c.weights.push(tensor(&[d], rnd(rng, d, 1.0)));
            // An offset mean, as real activations have.
            let xv = rnd(rng, rows * d, 3.0)
                .iter()
                .map(|v| half::f16::from_f32(v + 4.0).to_f32())
                .collect();
            c.input("x", Data::F32(xv))
        })
        .collect()
}
