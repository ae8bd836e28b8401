//! `x · sigmoid(1.702 x)`, CLIP's QuickGELU (kernels/quick_gelu.cu).

use anyhow::Result;

use super::case::{unary_cases, Case, Sizes};
use super::lowering::{unary, Lowering, Step};
use super::shape::Shapes;
use super::{no_scratch, wrong_op, CpuTensors, OpEntry};
use crate::graph::{Graph, Op};
use crate::rng::Rng;

pub const ENTRY: OpEntry = OpEntry {
    name: "quick_gelu",
    kernel_files: &["quick_gelu"],
    check,
    cpu,
    lower,
    scratch_bytes: no_scratch,
    variants: &[],
    cases,
};

fn check(g: &Graph, op: &Op) -> Result<(), String> {
    let Op::QuickGelu { x, out } = op else {
        return Err(wrong_op("quick_gelu", op).to_string());
    };
    Shapes(g).same_size(*x, *out)
}

pub fn reference(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v / (1.0 + (-1.702 * v).exp());
    }
}

fn cpu(op: &Op, t: &mut CpuTensors) -> Result<()> {
    let Op::QuickGelu { x, out } = op else {
        return Err(wrong_op("quick_gelu", op));
    };
    reference(t.get(*x)?, t.take_mut(*out)?);
    Ok(())
}

fn lower(lw: &mut Lowering, op: &Op) -> Result<Vec<Step>> {
    let Op::QuickGelu { x, out } = op else {
        return Err(wrong_op("quick_gelu", op));
    };
    Ok(vec![unary(lw, "quick_gelu_f16", *x, *out)?])
}

fn cases(rng: &mut Rng, sizes: Sizes) -> Vec<Case> {
    unary_cases("quick_gelu", rng, sizes, |x, out| Op::QuickGelu { x, out })
}
