//! `out = silu(gate) ⊙ up`: the SwiGLU of the feed-forward block (kernels/silu_mul.cu).

use anyhow::Result;

use super::case::{rnd, Case, Data, Sizes};
use super::lowering::{dim, elementwise, Arg, DevElem, Lowering, Step};
use super::shape::Shapes;
use super::{no_scratch, wrong_op, CpuTensors, OpEntry};
use crate::graph::{Elem, Graph, Op};
use crate::rng::Rng;

pub const ENTRY: OpEntry = OpEntry {
    name: "silu_mul",
    kernel_files: &["silu_mul"],
    check,
    cpu,
    lower,
    scratch_bytes: no_scratch,
    variants: &[],
    cases,
};

fn check(g: &Graph, op: &Op) -> Result<(), String> {
    let Op::SiluMul { gate, up, out } = op else {
        return Err(wrong_op("silu_mul", op).to_string());
    };
    let s = Shapes(g);
    s.same_size(*gate, *up)?;
    s.same_size(*gate, *out)
}

pub fn reference(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + (-g).exp()) * u;
    }
}

fn cpu(op: &Op, t: &mut CpuTensors) -> Result<()> {
    let Op::SiluMul { gate, up, out } = op else {
        return Err(wrong_op("silu_mul", op));
    };
    reference(t.get(*gate)?, t.get(*up)?, t.take_mut(*out)?);
    Ok(())
}

fn lower(lw: &mut Lowering, op: &Op) -> Result<Vec<Step>> {
    let Op::SiluMul { gate, up, out } = op else {
        return Err(wrong_op("silu_mul", op));
    };
    let n = lw.numel(*out);
    let args = vec![
        Arg::Ptr(lw.ptr(*gate, DevElem::F16)?),
        Arg::Ptr(lw.ptr(*up, DevElem::F16)?),
        Arg::Ptr(lw.ptr(*out, DevElem::F16)?),
        Arg::I32(dim(n, "elements")?),
    ];
    Ok(vec![elementwise(lw, "silu_mul_f16", n, args)?])
}

fn cases(rng: &mut Rng, _sizes: Sizes) -> Vec<Case> {
    [(1, 64), (3, 1001), (17, 11008)]
        .into_iter()
        .map(|(rows, d)| {
            let mut g = Graph::new("silu_mul");
            let gate = g.input("gate", &[rows, d], Elem::Act);
            let up = g.input("up", &[rows, d], Elem::Act);
            let out = g.activation("out", &[rows, d]);
            g.push(Op::SiluMul { gate, up, out });
            g.mark_output(out);
            Case::new(format!("silu_mul {rows}x{d}"), g)
                .input("gate", Data::F32(rnd(rng, rows * d, 6.0)))
                .input("up", Data::F32(rnd(rng, rows * d, 2.0)))
        })
        .collect()
}
