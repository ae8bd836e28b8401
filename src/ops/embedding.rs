//! `out[t] = table[ids[t]]`: the token embedding lookup (kernels/embedding.cu).

use anyhow::{bail, Result};

use super::case::{rnd, tensor, Case, Data, Sizes};
use super::lowering::{dim, Arg, Check, DevElem, Lowering, Step};
use super::shape::Shapes;
use super::{no_scratch, wrong_op, CpuTensors, OpEntry};
use crate::graph::{Elem, Graph, Op};
use crate::rng::Rng;

pub const ENTRY: OpEntry = OpEntry {
    name: "embedding",
    kernel_files: &["embedding"],
    check,
    cpu,
    lower,
    scratch_bytes: no_scratch,
    variants: &[],
    cases,
};

fn check(g: &Graph, op: &Op) -> Result<(), String> {
    let Op::Embedding { ids, table, out } = op else {
        return Err(wrong_op("embedding", op).to_string());
    };
    let s = Shapes(g);
    s.elem_is(*ids, Elem::I32)?;
    let (_, dim) = s.rows_cols(*table)?;
    let (t, d) = s.rows_cols(*out)?;
    if d != dim || t != s.numel(*ids) {
        return Err(format!(
            "{t} rows of {d} cannot hold the embeddings of {} ids of width {dim}",
            s.numel(*ids)
        ));
    }
    Ok(())
}

/// The reference: one row copy per id (ids already checked against the vocabulary).
pub fn reference(ids: &[i32], table: &[f32], dim: usize, out: &mut [f32]) {
    for (t, &id) in ids.iter().enumerate() {
        let row = id as usize * dim;
        out[t * dim..(t + 1) * dim].copy_from_slice(&table[row..row + dim]);
    }
}

/// The first id outside `0..vocab`, which both backends refuse before running.
pub fn bad_id(ids: &[i32], vocab: usize) -> Option<i32> {
    ids.iter().copied().find(|&i| i < 0 || i as usize >= vocab)
}

fn cpu(op: &Op, t: &mut CpuTensors) -> Result<()> {
    let Op::Embedding { ids, table, out } = op else {
        return Err(wrong_op("embedding", op));
    };
    let shape = t.shape(*table);
    let (vocab, dim) = (shape[0], shape[shape.len() - 1]);
    let ids = t.ints(*ids)?;
    if let Some(bad) = bad_id(ids, vocab) {
        bail!("token id {bad} is outside the vocabulary of {vocab}");
    }
    reference(ids, t.get(*table)?, dim, t.take_mut(*out)?);
    Ok(())
}

/// One block of `THREADS` per token, striding over the row.
const THREADS: u32 = 256;

fn lower(lw: &mut Lowering, op: &Op) -> Result<Vec<Step>> {
    let Op::Embedding { ids, table, out } = op else {
        return Err(wrong_op("embedding", op));
    };
    let (vocab, d) = lw.rows_cols(*table);
    let t = lw.numel(*ids);
    lw.checks.push(Check::TokenIds { ids: *ids, vocab });
    let args = vec![
        Arg::Ptr(lw.ptr(*ids, DevElem::I32)?),
        Arg::Ptr(lw.ptr(*table, DevElem::F16)?),
        Arg::Ptr(lw.ptr(*out, DevElem::F16)?),
        Arg::I32(dim(t, "tokens")?),
        Arg::I32(dim(d, "dim")?),
        Arg::I32(dim(vocab, "vocab")?),
    ];
    let grid = (t.max(1) as u32, 1, 1);
    Ok(vec![lw.kernel(
        "embedding_f16",
        grid,
        (THREADS, 1, 1),
        0,
        args,
    )?])
}

fn cases(rng: &mut Rng, sizes: Sizes) -> Vec<Case> {
    let shapes = sizes.pick(
        &[
            (50, 64, 3),
            (1000, 100, 7),
            (32000, 4096, 1),
            (300, 4096, 33),
        ],
        // The 32000 × 4096 table is 7B's: a GPU only.
        &[(50, 64, 3), (1000, 100, 7), (300, 4096, 33), (3001, 520, 5)],
    );
    shapes
        .into_iter()
        .map(|(vocab, d, t)| {
            let mut g = Graph::new("embedding");
            let ids = g.input("ids", &[t], Elem::I32);
            let table = g.weight("table", &[vocab, d], Elem::Act, 0);
            let out = g.activation("out", &[t, d]);
            g.push(Op::Embedding { ids, table, out });
            g.mark_output(out);
            let mut c = Case::new(format!("embedding vocab {vocab} dim {d} T {t}"), g);
            c.weights
                .push(tensor(&[vocab, d], rnd(rng, vocab * d, 1.0)));
            let idv = (0..t)
                .map(|_| (rng.next_u64() % vocab as u64) as i32)
                .collect();
            // A lookup is a copy: exact up to the f16 of the table.
            c.tolerance(1e-3).input("ids", Data::I32(idv))
        })
        .collect()
}
