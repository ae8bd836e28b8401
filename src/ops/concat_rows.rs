//! Rows of `a` then rows of `b` (the prompt K/V after the visual query, the class token before
//! the patches): two device copies, no kernel.

use anyhow::Result;

use super::case::{rnd, tensor, Case, Data, Sizes};
use super::lowering::{Lowering, Step};
use super::shape::Shapes;
use super::{no_scratch, wrong_op, CpuTensors, OpEntry};
use crate::graph::{Elem, Graph, Op};
use crate::rng::Rng;

pub const ENTRY: OpEntry = OpEntry {
    name: "concat_rows",
    kernel_files: &[],
    check,
    cpu,
    lower,
    scratch_bytes: no_scratch,
    variants: &[],
    cases,
};

fn check(g: &Graph, op: &Op) -> Result<(), String> {
    let Op::ConcatRows { a, b, out } = op else {
        return Err(wrong_op("concat_rows", op).to_string());
    };
    let s = Shapes(g);
    let (ra, ca) = s.rows_cols(*a)?;
    let (rb, cb) = s.rows_cols(*b)?;
    let (ro, co) = s.rows_cols(*out)?;
    if ca != cb || ca != co || ra + rb != ro {
        return Err(format!(
            "{ra}×{ca} and {rb}×{cb} rows do not concatenate to {ro}×{co}"
        ));
    }
    if s.elem(*a) != s.elem(*out) || s.elem(*b) != s.elem(*out) {
        return Err("concatenated tensors must share the element type".into());
    }
    Ok(())
}

pub fn reference(a: &[f32], b: &[f32], out: &mut [f32]) {
    out[..a.len()].copy_from_slice(a);
    out[a.len()..].copy_from_slice(b);
}

fn cpu(op: &Op, t: &mut CpuTensors) -> Result<()> {
    let Op::ConcatRows { a, b, out } = op else {
        return Err(wrong_op("concat_rows", op));
    };
    reference(t.get(*a)?, t.get(*b)?, t.take_mut(*out)?);
    Ok(())
}

fn lower(lw: &mut Lowering, op: &Op) -> Result<Vec<Step>> {
    let Op::ConcatRows { a, b, out } = op else {
        return Err(wrong_op("concat_rows", op));
    };
    let bytes_a = lw.loc(*a)?.elem.size() * lw.numel(*a);
    let bytes_b = lw.loc(*b)?.elem.size() * lw.numel(*b);
    Ok(vec![
        lw.copy(*out, 0, *a, 0, bytes_a)?,
        lw.copy(*out, bytes_a, *b, 0, bytes_b)?,
    ])
}

fn cases(rng: &mut Rng, _sizes: Sizes) -> Vec<Case> {
    [(1, 3, 8), (10, 257, 768), (1, 256, 1024), (3, 4, 4096)]
        .into_iter()
        .map(|(ra, rb, d)| {
            let mut g = Graph::new("concat_rows");
            let a = g.weight("a", &[ra, d], Elem::Act, 0);
            let b = g.input("b", &[rb, d], Elem::Act);
            let out = g.activation("out", &[ra + rb, d]);
            g.push(Op::ConcatRows { a, b, out });
            g.mark_output(out);
            let mut c = Case::new(format!("concat_rows {ra}+{rb} rows of {d}"), g);
            c.weights.push(tensor(&[ra, d], rnd(rng, ra * d, 1.0)));
            // Copies are exact.
            c.tolerance(0.0)
                .input("b", Data::F32(rnd(rng, rb * d, 1.0)))
        })
        .collect()
}
