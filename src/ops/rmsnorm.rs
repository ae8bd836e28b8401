//! `residual += x` (when `x` is given), then `out = rmsnorm(residual) ⊙ weight`: the
//! pre-norm of every block, fused with the residual add (kernels/rmsnorm.cu).

use anyhow::Result;

use super::case::{rnd, tensor, Case, Data, Sizes};
use super::lowering::{dim, Arg, DevElem, Lowering, Step};
use super::shape::Shapes;
use super::{no_scratch, wrong_op, CpuTensors, OpEntry, Variant};
use crate::graph::{Elem, Graph, Op};
use crate::rng::Rng;

pub const ENTRY: OpEntry = OpEntry {
    name: "rmsnorm",
    kernel_files: &["rmsnorm"],
    check,
    cpu,
    lower,
    scratch_bytes: no_scratch,
    variants: &[
        Variant {
            name: "fused",
            about: "16-byte loads, the row kept in registers between the two passes",
        },
        Variant {
            name: "naive",
            about: "scalar loads, two passes over global memory (the baseline)",
        },
    ],
    cases,
};

fn check(g: &Graph, op: &Op) -> Result<(), String> {
    let Op::RmsNorm {
        x,
        residual,
        weight,
        out,
        ..
    } = op
    else {
        return Err(wrong_op("rmsnorm", op).to_string());
    };
    let s = Shapes(g);
    let (_, d) = s.rows_cols(*residual)?;
    if let Some(x) = x {
        s.same_size(*x, *residual)?;
    }
    s.same_size(*out, *residual)?;
    s.numel_is(*weight, d, "one weight per channel")?;
    Ok(())
}

/// `residual += x` (if given), then `out = residual / rms(residual) ⊙ weight`, per row.
pub fn reference(
    x: Option<&[f32]>,
    residual: &mut [f32],
    weight: &[f32],
    out: &mut [f32],
    eps: f32,
) {
    let d = weight.len();
    if let Some(x) = x {
        for (r, v) in residual.iter_mut().zip(x) {
            *r += v;
        }
    }
    for (row, orow) in residual.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ss: f32 = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ss + eps).sqrt();
        for i in 0..d {
            orow[i] = row[i] * inv * weight[i];
        }
    }
}

fn cpu(op: &Op, t: &mut CpuTensors) -> Result<()> {
    let Op::RmsNorm {
        x,
        residual,
        weight,
        out,
        eps,
    } = op
    else {
        return Err(wrong_op("rmsnorm", op));
    };
    let (x, weight) = (t.get_opt(*x)?, t.get(*weight)?);
    let residual = t.take_mut(*residual)?;
    reference(x, residual, weight, t.take_mut(*out)?, *eps);
    Ok(())
}

/// Threads per row: 128 up to 1024 channels (the row fits in registers either way), else 256.
fn threads(d: usize) -> u32 {
    if d <= 1024 {
        128
    } else {
        256
    }
}

fn lower(lw: &mut Lowering, op: &Op) -> Result<Vec<Step>> {
    let Op::RmsNorm {
        x,
        residual,
        weight,
        out,
        eps,
    } = op
    else {
        return Err(wrong_op("rmsnorm", op));
    };
    let f16 = DevElem::F16;
    let (rows, d) = lw.rows_cols(*residual);
    let args = vec![
        Arg::Ptr(lw.opt_ptr(*x, f16)?),
        Arg::Ptr(lw.ptr(*residual, f16)?),
        Arg::Ptr(lw.ptr(*out, f16)?),
        Arg::Ptr(lw.ptr(*weight, f16)?),
        Arg::I32(dim(rows, "rows")?),
        Arg::I32(dim(d, "dim")?),
        Arg::F32(*eps),
    ];
    let name = match lw.variants.of("rmsnorm") {
        "naive" => "rmsnorm_naive_f16",
        _ => "rmsnorm_fused_f16",
    };
    let grid = (dim(rows.max(1), "rows")? as u32, 1, 1);
    Ok(vec![lw.kernel(name, grid, (threads(d), 1, 1), 0, args)?])
}

fn cases(rng: &mut Rng, _sizes: Sizes) -> Vec<Case> {
    // A few blocks each: the same list on the emulator.
    const SHAPES: &[(usize, usize, bool)] = &[
        (1, 64, true),
        (3, 100, true),
        (17, 4096, true),
        (1, 5120, false),
        (5, 1000, false),
        (2, 11008, true),
    ];
    SHAPES
        .iter()
        .map(|&(rows, d, with_x)| {
            let mut g = Graph::new("rmsnorm");
            let x = with_x.then(|| g.input("x", &[rows, d], Elem::Act));
            let residual = g.input("residual", &[rows, d], Elem::Act);
            let weight = g.weight("w", &[d], Elem::Act, 0);
            let out = g.activation("out", &[rows, d]);
            g.push(Op::RmsNorm {
                x,
                residual,
                weight,
                out,
                eps: 1e-5,
            });
            g.mark_output(out);
            g.mark_output(residual);
            let mut c = Case::new(format!("rmsnorm rows {rows} dim {d} x {with_x}"), g);
            c.weights.push(tensor(&[d], rnd(rng, d, 2.0)));
            if with_x {
                c = c.input("x", Data::F32(rnd(rng, rows * d, 3.0)));
            }
            c.input("residual", Data::F32(rnd(rng, rows * d, 3.0)))
        })
        .collect()
}
