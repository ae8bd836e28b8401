//! `out = x · wᵀ + bias`, `w` being `[out_features, in_features]` f16 or int8 / int4 quantized
//! (kernels/linear.cu, kernels/linear_quant.cu). Rows ≤ 8 (decode) take the GEMV; more take the
//! tensor-core GEMM, with 64×64 tiles when the 128×128 grid would leave the GPU half idle.

mod cases;
pub mod reference;

use anyhow::{bail, Result};

use super::lowering::{dim, Arg, DevElem, Lowering, Step};
use super::shape::Shapes;
use super::{no_scratch, wrong_op, CpuTensors, OpEntry};
use crate::graph::{Graph, Op, QuantRef};
use crate::quant::{groups, QuantFormat, QuantView, INT4_GROUP};
pub use reference::{dot, LinearArgs, Weights};

pub const ENTRY: OpEntry = OpEntry {
    name: "linear",
    kernel_files: &["linear", "linear_quant"],
    check,
    cpu,
    lower,
    scratch_bytes: no_scratch,
    variants: &[],
    cases: cases::cases,
};

/// The quantized kernels assume this group size.
const _: () = assert!(INT4_GROUP == 128);

/// Rows up to which the GEMV kernels are used.
pub const GEMV_MAX_ROWS: usize = 8;

const GEMM128: usize = super::kernels::geometry::common::GEMM128_TILE;

fn check(g: &Graph, op: &Op) -> Result<(), String> {
    let Op::Linear {
        x,
        w,
        quant,
        bias,
        out,
    } = op
    else {
        return Err(wrong_op("linear", op).to_string());
    };
    let s = Shapes(g);
    if let Some(q) = quant {
        let scales = s.shape(q.scales);
        if scales.first() != s.shape(*w).first() {
            return Err("quantization scales need one row per output".into());
        }
        if q.zeros.is_some_and(|z| s.shape(z) != scales) {
            return Err("zero points must match the scales".into());
        }
    }
    let (m, k) = s.rows_cols(*x)?;
    let (n, k2) = s.rows_cols(*w)?;
    let (m2, n2) = s.rows_cols(*out)?;
    if k != k2 || m != m2 || n != n2 {
        return Err(format!(
            "x {:?} · w {:?}ᵀ cannot give out {:?}",
            s.shape(*x),
            s.shape(*w),
            s.shape(*out)
        ));
    }
    if let Some(b) = bias {
        s.numel_is(*b, n, "one per output feature")?;
    }
    Ok(())
}

fn cpu(op: &Op, t: &mut CpuTensors) -> Result<()> {
    let Op::Linear {
        x,
        w,
        quant,
        bias,
        out,
    } = op
    else {
        return Err(wrong_op("linear", op));
    };
    let ws = t.shape(*w);
    let (n, k) = (ws[0], ws[1]);
    let weights = match quant {
        None => Weights::Dense(t.get(*w)?),
        Some(q) => Weights::Quant(QuantView {
            format: q.format,
            in_features: k,
            values: t.bytes(*w)?,
            scales: t.get(q.scales)?,
            zeros: q.zeros.map(|z| t.bytes(z)).transpose()?,
        }),
    };
    let xs = t.get(*x)?;
    let args = LinearArgs {
        x: xs,
        w: weights,
        bias: t.get_opt(*bias)?,
        rows: xs.len() / k.max(1),
        in_features: k,
        out_features: n,
    };
    reference::linear(&args, t.take_mut(*out)?);
    Ok(())
}

/// The kernel family serving one product.
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
    } else if m.div_ceil(GEMM128) * n.div_ceil(GEMM128) < 2 * sms {
        Shape::Gemm64
    } else {
        Shape::Gemm128
    }
}

/// Grid and block of each shape, from the constants kernels/linear.cu, kernels/linear_quant.cu
/// and common.cuh declare: the GEMV gives each warp one output feature for `ROWS` rows, the
/// GEMMs one square tile per block.
pub fn grid_block(
    shape: Shape,
    quantized: bool,
    m: usize,
    n: usize,
) -> ((u32, u32, u32), (u32, u32, u32)) {
    use super::kernels::geometry::{common, linear, linear_quant};
    let (cols, rows, threads) = match (shape, quantized) {
        (Shape::Gemv, false) => (
            linear::GEMV_WARPS,
            linear::GEMV_ROWS,
            32 * linear::GEMV_WARPS,
        ),
        (Shape::Gemv, true) => (
            linear_quant::QV_WARPS,
            linear_quant::QV_ROWS,
            32 * linear_quant::QV_WARPS,
        ),
        (Shape::Gemm128, _) => (
            common::GEMM128_TILE,
            common::GEMM128_TILE,
            common::GEMM128_THREADS,
        ),
        (Shape::Gemm64, _) => (
            common::GEMM64_TILE,
            common::GEMM64_TILE,
            common::GEMM64_THREADS,
        ),
    };
    (
        (n.div_ceil(cols) as u32, m.div_ceil(rows) as u32, 1),
        (threads as u32, 1, 1),
    )
}

/// The f16 kernel for a shape and output type.
pub fn dense_kernel(shape: Shape, f32_out: bool) -> &'static str {
    match (shape, f32_out) {
        (Shape::Gemv, false) => "linear_gemv_f16",
        (Shape::Gemv, true) => "linear_gemv_f16f32",
        (Shape::Gemm128, false) => "linear_gemm128_f16",
        (Shape::Gemm128, true) => "linear_gemm128_f16f32",
        (Shape::Gemm64, false) => "linear_gemm64_f16",
        (Shape::Gemm64, true) => "linear_gemm64_f16f32",
    }
}

fn quant_kernel(shape: Shape, int4: bool, f32_out: bool) -> &'static str {
    match (shape, int4, f32_out) {
        (Shape::Gemv, false, false) => "linear_quant_gemv_int8_f16",
        (Shape::Gemv, false, true) => "linear_quant_gemv_int8_f16f32",
        (Shape::Gemv, true, false) => "linear_quant_gemv_int4_f16",
        (Shape::Gemv, true, true) => "linear_quant_gemv_int4_f16f32",
        (Shape::Gemm128, false, false) => "linear_quant_gemm128_int8_f16",
        (Shape::Gemm128, false, true) => "linear_quant_gemm128_int8_f16f32",
        (Shape::Gemm128, true, false) => "linear_quant_gemm128_int4_f16",
        (Shape::Gemm128, true, true) => "linear_quant_gemm128_int4_f16f32",
        (Shape::Gemm64, false, false) => "linear_quant_gemm64_int8_f16",
        (Shape::Gemm64, false, true) => "linear_quant_gemm64_int8_f16f32",
        (Shape::Gemm64, true, false) => "linear_quant_gemm64_int4_f16",
        (Shape::Gemm64, true, true) => "linear_quant_gemm64_int4_f16f32",
    }
}

fn lower(lw: &mut Lowering, op: &Op) -> Result<Vec<Step>> {
    let Op::Linear {
        x,
        w,
        quant,
        bias,
        out,
    } = op
    else {
        return Err(wrong_op("linear", op));
    };
    let ws = lw.shape(*w).to_vec();
    if ws.len() != 2 {
        bail!("linear weight must be 2-D");
    }
    let (n, k) = (ws[0], ws[1]);
    let m = lw.numel(*x) / k.max(1);
    let out_elem = lw.loc(*out)?.elem;
    let f32_out = match out_elem {
        DevElem::F16 => false,
        DevElem::F32 => true,
        other => bail!("linear output stored as {other:?}"),
    };
    let shape = pick(m, n, lw.device.sms);
    let (grid, block) = grid_block(shape, quant.is_some(), m, n);
    let mut args = vec![Arg::Ptr(lw.ptr(*x, DevElem::F16)?)];
    let kernel = match quant {
        None => {
            let wl = lw.loc(*w)?;
            if wl.elem != DevElem::F16 || wl.bytes < n * k * 2 {
                bail!("linear weight is not an f16 [{n}, {k}] matrix on the device");
            }
            args.push(Arg::Ptr(wl.ptr));
            dense_kernel(shape, f32_out)
        }
        Some(q) => {
            let (values, scales, zeros, int4) = quant_operands(lw, *w, q, n, k)?;
            args.extend([Arg::Ptr(values), Arg::Ptr(scales), Arg::Ptr(zeros)]);
            quant_kernel(shape, int4, f32_out)
        }
    };
    args.extend([
        Arg::Ptr(lw.opt_ptr(*bias, DevElem::F16)?),
        Arg::Ptr(lw.ptr(*out, out_elem)?),
        Arg::I32(dim(m, "rows")?),
        Arg::I32(dim(k, "in_features")?),
        Arg::I32(dim(n, "out_features")?),
    ]);
    Ok(vec![lw.kernel(kernel, grid, block, 0, args)?])
}

/// Values, scales and zero points (null without) of a quantized weight, each checked for size.
fn quant_operands(
    lw: &Lowering,
    w: crate::graph::TensorId,
    q: &QuantRef,
    n: usize,
    k: usize,
) -> Result<(u64, u64, u64, bool)> {
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
    Ok((wl.ptr, scales, zeros, int4))
}
