//! `[3, S, S]` image → `[(S/p)², 3·p·p]` patches ordered (channel, row, column), so CLIP's patch
//! convolution is one linear (kernels/im2col_patches.cu).

use anyhow::Result;

use super::case::{rnd, Case, Data, Sizes};
use super::lowering::{dim, stride_blocks, Arg, DevElem, Lowering, Step};
use super::shape::Shapes;
use super::{no_scratch, wrong_op, CpuTensors, OpEntry};
use crate::graph::{Elem, Graph, Op};
use crate::rng::Rng;

pub const ENTRY: OpEntry = OpEntry {
    name: "im2col_patches",
    kernel_files: &["im2col_patches"],
    check,
    cpu,
    lower,
    scratch_bytes: no_scratch,
    variants: &[],
    cases,
};

fn check(g: &Graph, op: &Op) -> Result<(), String> {
    let Op::Im2ColPatches { pixels, out, patch } = op else {
        return Err(wrong_op("im2col_patches", op).to_string());
    };
    let s = Shapes(g);
    s.elem_is(*pixels, Elem::F32)?;
    let p = s.shape(*pixels);
    if p.len() != 3 || p[0] != 3 || p[1] != p[2] || *patch == 0 || p[1] % patch != 0 {
        return Err("pixels must be [3, S, S] with S a multiple of the patch".into());
    }
    let grid = p[1] / patch;
    if s.shape(*out) != [grid * grid, 3 * patch * patch] {
        return Err("patch matrix has the wrong shape".into());
    }
    Ok(())
}

/// Each output row is one patch ordered like the flattened convolution weight.
pub fn reference(pixels: &[f32], size: usize, patch: usize, out: &mut [f32]) {
    let grid = size / patch;
    let row_len = 3 * patch * patch;
    for gy in 0..grid {
        for gx in 0..grid {
            let dst = &mut out[(gy * grid + gx) * row_len..(gy * grid + gx + 1) * row_len];
            for c in 0..3 {
                for ky in 0..patch {
                    let src = c * size * size + (gy * patch + ky) * size + gx * patch;
                    let d = c * patch * patch + ky * patch;
                    dst[d..d + patch].copy_from_slice(&pixels[src..src + patch]);
                }
            }
        }
    }
}

fn cpu(op: &Op, t: &mut CpuTensors) -> Result<()> {
    let Op::Im2ColPatches { pixels, out, patch } = op else {
        return Err(wrong_op("im2col_patches", op));
    };
    let size = t.shape(*pixels)[1];
    reference(t.get(*pixels)?, size, *patch, t.take_mut(*out)?);
    Ok(())
}

const THREADS: u32 = 256;

fn lower(lw: &mut Lowering, op: &Op) -> Result<Vec<Step>> {
    let Op::Im2ColPatches { pixels, out, patch } = op else {
        return Err(wrong_op("im2col_patches", op));
    };
    let s = lw.shape(*pixels)[1];
    let total = lw.numel(*out);
    let args = vec![
        Arg::Ptr(lw.ptr(*pixels, DevElem::F32)?),
        Arg::Ptr(lw.ptr(*out, DevElem::F16)?),
        Arg::I32(dim(s, "image size")?),
        Arg::I32(dim(*patch, "patch")?),
    ];
    let grid = (stride_blocks(total, THREADS as usize, 65535), 1, 1);
    Ok(vec![lw.kernel(
        "im2col_patches_f32_to_f16",
        grid,
        (THREADS, 1, 1),
        0,
        args,
    )?])
}

fn cases(rng: &mut Rng, _sizes: Sizes) -> Vec<Case> {
    [(28, 14), (56, 14), (224, 14), (32, 16)]
        .into_iter()
        .map(|(s, p)| {
            let grid = s / p;
            let mut g = Graph::new("im2col_patches");
            let pixels = g.input("pixels", &[3, s, s], Elem::F32);
            let out = g.activation("out", &[grid * grid, 3 * p * p]);
            g.push(Op::Im2ColPatches {
                pixels,
                out,
                patch: p,
            });
            g.mark_output(out);
            Case::new(format!("im2col_patches S {s} p {p}"), g)
                .input("pixels", Data::F32(rnd(rng, 3 * s * s, 2.0)))
        })
        .collect()
}
