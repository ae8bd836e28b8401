//! Bidirectional multi-head attention over packed `[n, 3·width]` q|k|v rows: CLIP's and the
//! resampler's self-attention (kernels/vision_attention.cu).

use anyhow::{anyhow, Result};

use super::case::{rnd, Case, Data, Sizes};
use super::kernels::geometry::vision_attention as geo;
use super::linear::dot;
use super::lowering::{dim, Arg, DevElem, Lowering, Step};
use super::shape::{check_heads, Shapes};
use super::softmax::weighted_rows;
use super::{no_scratch, wrong_op, CpuTensors, OpEntry};
use crate::graph::{Elem, Graph, Op};
use crate::rng::Rng;

pub const ENTRY: OpEntry = OpEntry {
    name: "vision_attention",
    kernel_files: &["vision_attention"],
    check,
    cpu,
    lower,
    scratch_bytes: no_scratch,
    variants: &[],
    cases,
};

fn check(g: &Graph, op: &Op) -> Result<(), String> {
    let Op::VisionAttention { qkv, out, n_heads } = op else {
        return Err(wrong_op("vision_attention", op).to_string());
    };
    let s = Shapes(g);
    let (n, w3) = s.rows_cols(*qkv)?;
    let (n2, w) = s.rows_cols(*out)?;
    if n != n2 || w3 != 3 * w || *n_heads == 0 || w % n_heads != 0 {
        return Err("packed qkv does not match the output".into());
    }
    Ok(())
}

/// Full (unmasked) multi-head attention over packed `[n, 3·width]` rows `q | k | v`.
pub fn reference(qkv: &[f32], out: &mut [f32], n: usize, width: usize, n_heads: usize) {
    let hd = width / n_heads;
    let stride = 3 * width;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut scores = vec![0f32; n];
    let mut acc = vec![0f32; hd];
    for i in 0..n {
        for h in 0..n_heads {
            let qv = &qkv[i * stride + h * hd..i * stride + (h + 1) * hd];
            for (j, s) in scores.iter_mut().enumerate() {
                let ko = j * stride + width + h * hd;
                *s = dot(qv, &qkv[ko..ko + hd]) * scale;
            }
            weighted_rows(&mut scores, qkv, stride, 2 * width + h * hd, &mut acc);
            out[i * width + h * hd..i * width + (h + 1) * hd].copy_from_slice(&acc);
        }
    }
}

fn cpu(op: &Op, t: &mut CpuTensors) -> Result<()> {
    let Op::VisionAttention { qkv, out, n_heads } = op else {
        return Err(wrong_op("vision_attention", op));
    };
    let s = t.shape(*out);
    let (n, width) = (s[0], s[1]);
    reference(t.get(*qkv)?, t.take_mut(*out)?, n, width, *n_heads);
    Ok(())
}

fn lower(lw: &mut Lowering, op: &Op) -> Result<Vec<Step>> {
    let Op::VisionAttention { qkv, out, n_heads } = op else {
        return Err(wrong_op("vision_attention", op));
    };
    let (n, width) = lw.rows_cols(*out);
    let hd = width / (*n_heads).max(1);
    check_heads(*n_heads, *n_heads, hd, geo::VA_MAX_HD).map_err(|e| anyhow!(e))?;
    let args = vec![
        Arg::Ptr(lw.ptr(*qkv, DevElem::F16)?),
        Arg::Ptr(lw.ptr(*out, DevElem::F16)?),
        Arg::I32(dim(n, "tokens")?),
        Arg::I32(dim(*n_heads, "n_heads")?),
        Arg::I32(dim(hd, "head_dim")?),
        Arg::F32(1.0 / (hd as f32).sqrt()),
    ];
    let grid = (n.div_ceil(geo::VA_BQ) as u32, *n_heads as u32, 1);
    let block = (32 * geo::VA_WARPS as u32, 1, 1);
    Ok(vec![lw.kernel(
        "vision_attention_f16",
        grid,
        block,
        0,
        args,
    )?])
}

fn cases(rng: &mut Rng, sizes: Sizes) -> Vec<Case> {
    let shapes = sizes.pick(
        &[
            (11, 2, 32),
            (257, 16, 64),
            (33, 4, 128),
            (257, 12, 64),
            (11, 4, 24),
        ],
        // ViT-L's 257 tokens with 2 heads, not 16: the key tiles' edge (257 = 8·32 + 1) the same.
        &[
            (11, 2, 32),
            (257, 2, 64),
            (33, 4, 128),
            (65, 3, 64),
            (11, 4, 24),
        ],
    );
    shapes
        .into_iter()
        .map(|(n, heads, hd)| {
            let w = heads * hd;
            let mut g = Graph::new("vision_attention");
            let qkv = g.input("qkv", &[n, 3 * w], Elem::Act);
            let out = g.activation("out", &[n, w]);
            g.push(Op::VisionAttention {
                qkv,
                out,
                n_heads: heads,
            });
            g.mark_output(out);
            Case::new(format!("vision_attention n {n} heads {heads} hd {hd}"), g)
                .input("qkv", Data::F32(rnd(rng, n * 3 * w, 2.0)))
        })
        .collect()
}
