//! `out[j] = x[start + j·step]`: contiguous rows with `step` 1, the last token of every sequence
//! of a batch with `step` = tokens per sequence. Device copies, no kernel.

use anyhow::Result;

use super::case::{rnd, Case, Data, Sizes};
use super::lowering::{Lowering, Step};
use super::shape::Shapes;
use super::{no_scratch, wrong_op, CpuTensors, OpEntry};
use crate::graph::{Elem, Graph, Op};
use crate::rng::Rng;

pub const ENTRY: OpEntry = OpEntry {
    name: "slice_rows",
    kernel_files: &[],
    check,
    cpu,
    lower,
    scratch_bytes: no_scratch,
    variants: &[],
    cases,
};

fn check(g: &Graph, op: &Op) -> Result<(), String> {
    let Op::SliceRows {
        x,
        start,
        step,
        out,
    } = op
    else {
        return Err(wrong_op("slice_rows", op).to_string());
    };
    let s = Shapes(g);
    let (rx, cx) = s.rows_cols(*x)?;
    let (ro, co) = s.rows_cols(*out)?;
    if cx != co || *step == 0 || ro == 0 || start + (ro - 1) * step >= rx {
        return Err(format!(
            "{ro} rows from {start} by {step} are out of the {rx} rows of '{}'",
            s.name(*x)
        ));
    }
    if s.elem(*x) != s.elem(*out) {
        return Err("a slice keeps the element type".into());
    }
    Ok(())
}

pub fn reference(x: &[f32], start: usize, step: usize, cols: usize, out: &mut [f32]) {
    for (j, row) in out.chunks_exact_mut(cols).enumerate() {
        let r = start + j * step;
        row.copy_from_slice(&x[r * cols..(r + 1) * cols]);
    }
}

fn cpu(op: &Op, t: &mut CpuTensors) -> Result<()> {
    let Op::SliceRows {
        x,
        start,
        step,
        out,
    } = op
    else {
        return Err(wrong_op("slice_rows", op));
    };
    let cols = t.shape(*out).last().copied().unwrap_or(1);
    reference(t.get(*x)?, *start, *step, cols, t.take_mut(*out)?);
    Ok(())
}

fn lower(lw: &mut Lowering, op: &Op) -> Result<Vec<Step>> {
    let Op::SliceRows {
        x,
        start,
        step,
        out,
    } = op
    else {
        return Err(wrong_op("slice_rows", op));
    };
    let (rows, cols) = lw.rows_cols(*out);
    let row_bytes = cols * lw.loc(*x)?.elem.size();
    if *step == 1 || rows == 1 {
        let from = start * row_bytes;
        return Ok(vec![lw.copy(*out, 0, *x, from, rows * row_bytes)?]);
    }
    // The last rows of a batch's sequences: one row copy per sequence.
    (0..rows)
        .map(|j| {
            let from = (start + j * step) * row_bytes;
            lw.copy(*out, j * row_bytes, *x, from, row_bytes)
        })
        .collect()
}

fn cases(rng: &mut Rng, _sizes: Sizes) -> Vec<Case> {
    // (rows, cols, start, take, step); the last: the last row of each of 4 sequences of 4 tokens.
    [
        (4, 8, 1, 2, 1),
        (267, 768, 5, 10, 1),
        (257, 1024, 0, 257, 1),
        (7, 4096, 0, 7, 1),
        (16, 512, 3, 4, 4),
    ]
    .into_iter()
    .map(|(rows, d, start, take, step)| {
        let mut g = Graph::new("slice_rows");
        let x = g.input("x", &[rows, d], Elem::Act);
        let out = g.activation("out", &[take, d]);
        g.push(Op::SliceRows {
            x,
            start,
            step,
            out,
        });
        g.mark_output(out);
        Case::new(
            format!("slice_rows {take} of {rows} rows of {d} from {start} by {step}"),
            g,
        )
        .tolerance(0.0)
        .input("x", Data::F32(rnd(rng, rows * d, 1.0)))
    })
    .collect()
}
