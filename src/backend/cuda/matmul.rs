//! Linear layers: `matmul.cu` for f16 weights, `quant_matmul.cu` for int8 / int4 weights.
//! Rows ≤ 8 (decode) take the GEMV; more take the tensor-core GEMM, with 64×64 tiles when the
//! 128×128 grid would leave the GPU half idle.

use anyhow::{bail, Result};

use super::lower::{dim, Arg, DevElem, Lowerer, Step};
use crate::graph::{QuantRef, TensorId};
use crate::quant::{groups, QuantFormat, INT4_GROUP};

/// The kernels assume this group size.
const _: () = assert!(INT4_GROUP == 128);

/// Rows up to which the GEMV kernels are used.
pub const GEMV_MAX_ROWS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Gemv,
    Gemm128,
    Gemm64,
}

/// Which kernel shape serves an `m × k · (n × k)ᵀ` product on a GPU with `sms` SMs.
pub fn pick(m: usize, n: usize, sms: usize) -> Shape {
    if m <= GEMV_MAX_ROWS {
        Shape::Gemv
    } else if m.div_ceil(128) * n.div_ceil(128) < 2 * sms {
        Shape::Gemm64
    } else {
        Shape::Gemm128
    }
}

pub fn grid_block(shape: Shape, m: usize, n: usize) -> ((u32, u32, u32), (u32, u32, u32)) {
    match shape {
        Shape::Gemv => ((n.div_ceil(8) as u32, m.div_ceil(4) as u32, 1), (256, 1, 1)),
        Shape::Gemm128 => (
            (n.div_ceil(128) as u32, m.div_ceil(128) as u32, 1),
            (256, 1, 1),
        ),
        Shape::Gemm64 => (
            (n.div_ceil(64) as u32, m.div_ceil(64) as u32, 1),
            (128, 1, 1),
        ),
    }
}

/// The f16 matmul kernel name for a shape and output type.
pub fn dense_kernel(shape: Shape, f32_out: bool) -> &'static str {
    match (shape, f32_out) {
        (Shape::Gemv, false) => "matmul_gemv_f16",
        (Shape::Gemv, true) => "matmul_gemv_f16f32",
        (Shape::Gemm128, false) => "matmul_gemm_f16",
        (Shape::Gemm128, true) => "matmul_gemm_f16f32",
        (Shape::Gemm64, false) => "matmul_gemm64_f16",
        (Shape::Gemm64, true) => "matmul_gemm64_f16f32",
    }
}

fn quant_kernel(shape: Shape, int4: bool, f32_out: bool) -> &'static str {
    match (shape, int4, f32_out) {
        (Shape::Gemv, false, false) => "quant_gemv_int8_f16",
        (Shape::Gemv, false, true) => "quant_gemv_int8_f16f32",
        (Shape::Gemv, true, false) => "quant_gemv_int4_f16",
        (Shape::Gemv, true, true) => "quant_gemv_int4_f16f32",
        (Shape::Gemm128, false, false) => "quant_gemm_int8_f16",
        (Shape::Gemm128, false, true) => "quant_gemm_int8_f16f32",
        (Shape::Gemm128, true, false) => "quant_gemm_int4_f16",
        (Shape::Gemm128, true, true) => "quant_gemm_int4_f16f32",
        (Shape::Gemm64, false, false) => "quant_gemm64_int8_f16",
        (Shape::Gemm64, false, true) => "quant_gemm64_int8_f16f32",
        (Shape::Gemm64, true, false) => "quant_gemm64_int4_f16",
        (Shape::Gemm64, true, true) => "quant_gemm64_int4_f16f32",
    }
}

#[allow(clippy::too_many_arguments)]
pub fn linear(
    lw: &mut Lowerer,
    x: TensorId,
    w: TensorId,
    quant: Option<&QuantRef>,
    bias: Option<TensorId>,
    out_scale: Option<TensorId>,
    residual: Option<TensorId>,
    out: TensorId,
) -> Result<Vec<Step>> {
    let ws = lw.shape(w).to_vec();
    if ws.len() != 2 {
        bail!("linear weight must be 2-D");
    }
    let (n, k) = (ws[0], ws[1]);
    let m = lw.numel(x) / k.max(1);
    let out_elem = lw.loc(out)?.elem;
    let f32_out = match out_elem {
        DevElem::F16 => false,
        DevElem::F32 => true,
        other => bail!("linear output stored as {other:?}"),
    };
    let xp = lw.ptr(x, DevElem::F16)?;
    let yp = lw.ptr(out, out_elem)?;
    let rp = lw.opt_ptr(residual, out_elem)?;
    let bp = lw.opt_ptr(bias, DevElem::F16)?;
    let sp = lw.opt_ptr(out_scale, DevElem::F16)?;
    let shape = pick(m, n, lw.sms);
    let (grid, block) = grid_block(shape, m, n);
    let dims = [
        Arg::I32(dim(m, "rows")?),
        Arg::I32(dim(k, "in_features")?),
        Arg::I32(dim(n, "out_features")?),
    ];
    let step = match quant {
        None => {
            let wl = lw.loc(w)?;
            if wl.elem != DevElem::F16 || wl.bytes < n * k * 2 {
                bail!("linear weight is not an f16 [{n}, {k}] matrix on the device");
            }
            let mut args = vec![
                Arg::Ptr(xp),
                Arg::Ptr(wl.ptr),
                Arg::Ptr(bp),
                Arg::Ptr(sp),
                Arg::Ptr(rp),
                Arg::Ptr(yp),
            ];
            args.extend(dims);
            lw.kernel(dense_kernel(shape, f32_out), grid, block, 0, args)?
        }
        Some(q) => {
            let int4 = match q.format {
                QuantFormat::Int8 => false,
                QuantFormat::Int4 { .. } => true,
                QuantFormat::None => bail!("quantized linear without a format"),
            };
            let ng = groups(k, q.format.group(k));
            let wl = lw.loc(w)?;
            let need = if int4 { n * k.div_ceil(2) } else { n * k };
            if wl.elem != DevElem::U8 || wl.bytes < need {
                bail!(
                    "quantized values hold {} bytes, [{n}, {k}] {} needs {need}",
                    wl.bytes,
                    q.format.name()
                );
            }
            if lw.numel(q.scales) != n * ng || lw.loc(q.scales)?.bytes < n * ng * 2 {
                bail!("quantization scales must be [{n}, {ng}]");
            }
            let scales = lw.ptr(q.scales, DevElem::F16)?;
            let zeros = match q.zeros {
                Some(z) if !int4 => bail!(
                    "int8 has no zero points (tensor '{}')",
                    lw.graph.desc(z).name
                ),
                Some(z) => {
                    if lw.loc(z)?.bytes < n * ng {
                        bail!("zero points must be [{n}, {ng}] bytes");
                    }
                    lw.ptr(z, DevElem::U8)?
                }
                None => 0,
            };
            let mut args = vec![
                Arg::Ptr(xp),
                Arg::Ptr(wl.ptr),
                Arg::Ptr(scales),
                Arg::Ptr(zeros),
                Arg::Ptr(bp),
                Arg::Ptr(sp),
                Arg::Ptr(rp),
                Arg::Ptr(yp),
            ];
            args.extend(dims);
            lw.kernel(quant_kernel(shape, int4, f32_out), grid, block, 0, args)?
        }
    };
    Ok(vec![step])
}
