//! `out = a + b`, `b` as large as `a` or one row broadcast over its rows (kernels/add.cu).

use anyhow::{bail, Result};

use super::case::{rnd, tensor, Case, Data, Sizes};
use super::lowering::{dim, elementwise, Arg, DevElem, Lowering, Step};
use super::shape::Shapes;
use super::{no_scratch, wrong_op, CpuTensors, OpEntry};
use crate::graph::{Elem, Graph, Op};
use crate::rng::Rng;

pub const ENTRY: OpEntry = OpEntry {
    name: "add",
    kernel_files: &["add"],
    check,
    cpu,
    lower,
    scratch_bytes: no_scratch,
    variants: &[],
    cases,
};

fn check(g: &Graph, op: &Op) -> Result<(), String> {
    let Op::Add { a, b, out } = op else {
        return Err(wrong_op("add", op).to_string());
    };
    let s = Shapes(g);
    s.same_size(*a, *out)?;
    let (_, cols) = s.rows_cols(*a)?;
    let nb = s.numel(*b);
    if nb != s.numel(*a) && nb != cols {
        return Err(format!(
            "'{}' is neither the size of '{}' nor one row of it",
            s.name(*b),
            s.name(*a)
        ));
    }
    Ok(())
}

/// `a + b`, where `b` is either as long as `a` or one row repeated over `a`'s rows.
pub fn reference(a: &[f32], b: &[f32], out: &mut [f32]) {
    for (i, (o, x)) in out.iter_mut().zip(a).enumerate() {
        *o = x + b[i % b.len()];
    }
}

fn cpu(op: &Op, t: &mut CpuTensors) -> Result<()> {
    let Op::Add { a, b, out } = op else {
        return Err(wrong_op("add", op));
    };
    reference(t.get(*a)?, t.get(*b)?, t.take_mut(*out)?);
    Ok(())
}

fn lower(lw: &mut Lowering, op: &Op) -> Result<Vec<Step>> {
    let Op::Add { a, b, out } = op else {
        return Err(wrong_op("add", op));
    };
    let (na, nb) = (lw.numel(*a), lw.numel(*b));
    let f16 = DevElem::F16;
    let ptrs = [
        Arg::Ptr(lw.ptr(*a, f16)?),
        Arg::Ptr(lw.ptr(*b, f16)?),
        Arg::Ptr(lw.ptr(*out, f16)?),
    ];
    let step = if na == nb {
        let mut args = ptrs.to_vec();
        args.push(Arg::I32(dim(na, "elements")?));
        elementwise(lw, "add_f16", na, args)?
    } else {
        let (rows, d) = lw.rows_cols(*a);
        if nb != d {
            bail!("add: b is neither a's size nor one row of it");
        }
        let mut args = ptrs.to_vec();
        args.extend([Arg::I32(dim(rows, "rows")?), Arg::I32(dim(d, "dim")?)]);
        elementwise(lw, "add_broadcast_rows_f16", na, args)?
    };
    Ok(vec![step])
}

fn cases(rng: &mut Rng, _sizes: Sizes) -> Vec<Case> {
    let mut out = Vec::new();
    for (rows, d) in [(1, 8), (7, 100), (257, 1024)] {
        for broadcast in [false, true] {
            let mut g = Graph::new("add");
            let a = g.input("a", &[rows, d], Elem::Act);
            let bshape = if broadcast { vec![d] } else { vec![rows, d] };
            let b = g.weight("b", &bshape, Elem::Act, 0);
            let sum = g.activation("out", &[rows, d]);
            g.push(Op::Add { a, b, out: sum });
            g.mark_output(sum);
            let mut c = Case::new(format!("add {rows}x{d} broadcast {broadcast}"), g);
            let nb = bshape.iter().product();
            c.weights.push(tensor(&bshape, rnd(rng, nb, 3.0)));
            out.push(c.input("a", Data::F32(rnd(rng, rows * d, 3.0))));
        }
    }
    out
}
