//! Embedding, the norms, activations, adds, row copies and the CLIP patch extraction.

use anyhow::{bail, Result};

use super::lower::{dim, stride_blocks, Arg, Check, DevElem, Lowerer, Step};
use crate::graph::Op;

/// Grid of a grid-stride kernel with 8-element vector paths (kernels/README.md).
fn vec_grid(n: usize) -> (u32, u32, u32) {
    (stride_blocks(n, 2048, 4096), 1, 1)
}

pub fn lower(lw: &mut Lowerer, op: &Op) -> Result<Vec<Step>> {
    let f16 = DevElem::F16;
    let step = match op {
        Op::Embedding { ids, table, out } => {
            let (vocab, d) = lw.rows_cols(*table);
            let t = lw.numel(*ids);
            lw.checks.push(Check::TokenIds { ids: *ids, vocab });
            let args = vec![
                Arg::Ptr(lw.ptr(*ids, DevElem::I32)?),
                Arg::Ptr(lw.ptr(*table, f16)?),
                Arg::Ptr(lw.ptr(*out, f16)?),
                Arg::I32(dim(t, "tokens")?),
                Arg::I32(dim(d, "dim")?),
                Arg::I32(dim(vocab, "vocab")?),
            ];
            lw.kernel(
                "embedding_f16",
                (t.max(1) as u32, 1, 1),
                (256, 1, 1),
                0,
                args,
            )?
        }
        Op::RmsNorm {
            x,
            residual,
            weight,
            bias,
            out,
            eps,
        } => {
            let (rows, d) = lw.rows_cols(*residual);
            let args = vec![
                Arg::Ptr(lw.opt_ptr(*x, f16)?),
                Arg::Ptr(lw.ptr(*residual, f16)?),
                Arg::Ptr(lw.ptr(*out, f16)?),
                Arg::Ptr(lw.ptr(*weight, f16)?),
                Arg::Ptr(lw.opt_ptr(*bias, f16)?),
                Arg::I32(dim(rows, "rows")?),
                Arg::I32(dim(d, "dim")?),
                Arg::F32(*eps),
            ];
            let block = if d <= 1024 { 128 } else { 256 };
            let name = if lw.variants.naive_rmsnorm {
                "rmsnorm_naive_f16"
            } else {
                "rmsnorm_fused_f16"
            };
            lw.kernel(name, (rows as u32, 1, 1), (block, 1, 1), 0, args)?
        }
        Op::SiluMul { gate, up, out } => {
            let n = lw.numel(*out);
            let args = vec![
                Arg::Ptr(lw.ptr(*gate, f16)?),
                Arg::Ptr(lw.ptr(*up, f16)?),
                Arg::Ptr(lw.ptr(*out, f16)?),
                Arg::I32(dim(n, "elements")?),
            ];
            lw.kernel("silu_mul_f16", vec_grid(n), (256, 1, 1), 0, args)?
        }
        Op::LayerNorm {
            x,
            weight,
            bias,
            out,
            eps,
        } => {
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
            lw.kernel("layernorm_f16", (rows as u32, 1, 1), (256, 1, 1), 0, args)?
        }
        Op::Gelu { x, out } | Op::QuickGelu { x, out } => {
            let n = lw.numel(*out);
            let name = if matches!(op, Op::Gelu { .. }) {
                "gelu_f16"
            } else {
                "quick_gelu_f16"
            };
            let args = vec![
                Arg::Ptr(lw.ptr(*x, f16)?),
                Arg::Ptr(lw.ptr(*out, f16)?),
                Arg::I32(dim(n, "elements")?),
            ];
            lw.kernel(name, vec_grid(n), (256, 1, 1), 0, args)?
        }
        Op::Add { a, b, out } => {
            let (na, nb) = (lw.numel(*a), lw.numel(*b));
            let (ap, bp, op_) = (lw.ptr(*a, f16)?, lw.ptr(*b, f16)?, lw.ptr(*out, f16)?);
            if na == nb {
                let args = vec![
                    Arg::Ptr(ap),
                    Arg::Ptr(bp),
                    Arg::Ptr(op_),
                    Arg::I32(dim(na, "elements")?),
                ];
                lw.kernel("add_f16", vec_grid(na), (256, 1, 1), 0, args)?
            } else {
                let (rows, d) = lw.rows_cols(*a);
                if nb != d {
                    bail!("add: b is neither a's size nor one row of it");
                }
                let args = vec![
                    Arg::Ptr(ap),
                    Arg::Ptr(bp),
                    Arg::Ptr(op_),
                    Arg::I32(dim(rows, "rows")?),
                    Arg::I32(dim(d, "dim")?),
                ];
                lw.kernel("add_broadcast_rows_f16", vec_grid(na), (256, 1, 1), 0, args)?
            }
        }
        Op::ConcatRows { a, b, out } => {
            let (ba, bb) = (
                lw.loc(*a)?.elem.size() * lw.numel(*a),
                lw.loc(*b)?.elem.size() * lw.numel(*b),
            );
            return Ok(vec![
                lw.copy(*out, 0, *a, 0, ba)?,
                lw.copy(*out, ba, *b, 0, bb)?,
            ]);
        }
        Op::SliceRows {
            x,
            start,
            step,
            out,
        } => {
            let (rows, cols) = lw.rows_cols(*out);
            let row_bytes = cols * lw.loc(*x)?.elem.size();
            if *step == 1 || rows == 1 {
                return Ok(vec![lw.copy(
                    *out,
                    0,
                    *x,
                    start * row_bytes,
                    rows * row_bytes,
                )?]);
            }
            // The last rows of a batch's sequences: one row copy per sequence.
            return (0..rows)
                .map(|j| {
                    lw.copy(
                        *out,
                        j * row_bytes,
                        *x,
                        (start + j * step) * row_bytes,
                        row_bytes,
                    )
                })
                .collect();
        }
        Op::Im2ColPatches { pixels, out, patch } => {
            let s = lw.shape(*pixels)[1];
            let g = s / patch;
            let total = g * g * 3 * patch * patch;
            let args = vec![
                Arg::Ptr(lw.ptr(*pixels, DevElem::F32)?),
                Arg::Ptr(lw.ptr(*out, f16)?),
                Arg::I32(dim(s, "image size")?),
                Arg::I32(dim(*patch, "patch")?),
            ];
            lw.kernel(
                "im2col_patches_f32_to_f16",
                (stride_blocks(total, 256, 65535), 1, 1),
                (256, 1, 1),
                0,
                args,
            )?
        }
        Op::Linear { .. }
        | Op::RopeKvWrite { .. }
        | Op::AdapterAttention { .. }
        | Op::VisionAttention { .. }
        | Op::SampleToken { .. } => {
            unreachable!("lowered elsewhere")
        }
    };
    Ok(vec![step])
}
