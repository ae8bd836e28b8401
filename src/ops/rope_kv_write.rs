//! Rotates `q` in place and `k`, and writes `k`, `v` to the KV cache rows `start_pos + t` of
//! each sequence (kernels/rope_kv_write.cu).

use anyhow::{anyhow, Result};

use super::case::{rnd, Case, Data, Sizes};
use super::lowering::{dim, stride_blocks, Arg, Check, DevElem, Lowering, Step};
use super::shape::{check_heads, check_positions, per_sequence, Shapes};
use super::{no_scratch, wrong_op, CpuTensors, OpEntry};
use crate::graph::{Elem, Graph, Op, StateDesc};
use crate::rng::Rng;

pub const ENTRY: OpEntry = OpEntry {
    name: "rope_kv_write",
    kernel_files: &["rope_kv_write"],
    check,
    cpu,
    lower,
    scratch_bytes: no_scratch,
    variants: &[],
    cases,
};

/// Tokens and cache rows of one sequence of the op's batch.
pub fn sequence(g: &Graph, op: &Op) -> Result<(usize, usize), String> {
    let Op::RopeKvWrite {
        k,
        k_cache,
        n_kv_heads,
        head_dim,
        batch,
        ..
    } = op
    else {
        return Err(wrong_op("rope_kv_write", op).to_string());
    };
    let width = (n_kv_heads * head_dim).max(1);
    per_sequence(
        g.desc(*k).numel() / width,
        g.desc(*k_cache).numel() / width,
        *batch,
    )
}

fn check(g: &Graph, op: &Op) -> Result<(), String> {
    let Op::RopeKvWrite {
        q,
        k,
        v,
        k_cache,
        v_cache,
        start_pos,
        n_heads,
        n_kv_heads,
        head_dim,
        ..
    } = op
    else {
        return Err(wrong_op("rope_kv_write", op).to_string());
    };
    let s = Shapes(g);
    check_heads(*n_heads, *n_kv_heads, *head_dim, usize::MAX)?;
    let (t, qd) = s.rows_cols(*q)?;
    let (t2, kd) = s.rows_cols(*k)?;
    if qd != n_heads * head_dim || kd != n_kv_heads * head_dim || t != t2 {
        return Err("q/k widths disagree with the head counts".into());
    }
    s.same_size(*k, *v)?;
    s.same_size(*k_cache, *v_cache)?;
    if s.shape(*k_cache).last() != Some(head_dim) {
        return Err("cache rows must end in head_dim".into());
    }
    s.elem_is(*start_pos, Elem::I32)?;
    sequence(g, op).map(|_| ())
}

pub struct RopeArgs {
    pub start_pos: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub theta: f32,
    pub interleaved: bool,
    /// Sequences: the rows and the caches split into this many equal blocks.
    pub batch: usize,
}

/// Rotates one head vector at position `pos`. Interleaved (Meta) pairs (2i, 2i+1);
/// rotate-half (Hugging Face) pairs (i, i + d/2). Frequencies are f32 as in both references.
fn rotate(v: &mut [f32], pos: usize, theta: f32, interleaved: bool) {
    let d = v.len();
    let half = d / 2;
    for i in 0..half {
        let inv_freq = 1.0f32 / theta.powf((2 * i) as f32 / d as f32);
        let angle = pos as f32 * inv_freq;
        let (sin, cos) = angle.sin_cos();
        let (a, b) = if interleaved {
            (2 * i, 2 * i + 1)
        } else {
            (i, i + half)
        };
        let (x0, x1) = (v[a], v[b]);
        v[a] = x0 * cos - x1 * sin;
        v[b] = x0 * sin + x1 * cos;
    }
}

/// Row `t` of `q`, `k`, `v` is token `t % seq` of sequence `t / seq` (`seq` = rows / batch), at
/// position `start_pos + t % seq` of that sequence's block of the caches.
pub fn reference(
    a: &RopeArgs,
    q: &mut [f32],
    k: &[f32],
    v: &[f32],
    k_cache: &mut [f32],
    v_cache: &mut [f32],
) {
    let hd = a.head_dim;
    let kv_width = a.n_kv_heads * hd;
    let rows = k.len() / kv_width;
    let (seq, cache_rows) = (rows / a.batch, k_cache.len() / kv_width / a.batch);
    for t in 0..rows {
        let pos = a.start_pos + t % seq;
        for h in 0..a.n_heads {
            let off = (t * a.n_heads + h) * hd;
            rotate(&mut q[off..off + hd], pos, a.theta, a.interleaved);
        }
        let dst = ((t / seq) * cache_rows + pos) * kv_width;
        k_cache[dst..dst + kv_width].copy_from_slice(&k[t * kv_width..(t + 1) * kv_width]);
        v_cache[dst..dst + kv_width].copy_from_slice(&v[t * kv_width..(t + 1) * kv_width]);
        for h in 0..a.n_kv_heads {
            let off = dst + h * hd;
            rotate(&mut k_cache[off..off + hd], pos, a.theta, a.interleaved);
        }
    }
}

fn cpu(op: &Op, t: &mut CpuTensors) -> Result<()> {
    let Op::RopeKvWrite {
        q,
        k,
        v,
        k_cache,
        v_cache,
        start_pos,
        n_heads,
        n_kv_heads,
        head_dim,
        theta,
        interleaved,
        batch,
    } = op
    else {
        return Err(wrong_op("rope_kv_write", op));
    };
    let start = t.position(*start_pos)?;
    let (rows, cache_rows) = sequence(t.graph(), op).map_err(|e| anyhow!(e))?;
    check_positions(start, rows, cache_rows).map_err(|e| anyhow!(e))?;
    let args = RopeArgs {
        start_pos: start,
        n_heads: *n_heads,
        n_kv_heads: *n_kv_heads,
        head_dim: *head_dim,
        theta: *theta,
        interleaved: *interleaved,
        batch: *batch,
    };
    let (k, v) = (t.get(*k)?, t.get(*v)?);
    let q = t.take_mut(*q)?;
    let k_cache = t.take_mut(*k_cache)?;
    reference(&args, q, k, v, k_cache, t.take_mut(*v_cache)?);
    Ok(())
}

/// Threads per block; each thread rotates one pair.
const THREADS: u32 = 256;

fn lower(lw: &mut Lowering, op: &Op) -> Result<Vec<Step>> {
    let Op::RopeKvWrite {
        q,
        k,
        v,
        k_cache,
        v_cache,
        start_pos,
        n_heads,
        n_kv_heads,
        head_dim,
        theta,
        interleaved,
        ..
    } = op
    else {
        return Err(wrong_op("rope_kv_write", op));
    };
    let (h, kv, hd) = (*n_heads, *n_kv_heads, *head_dim);
    let rows = lw.numel(*k) / (kv * hd);
    let (t, cache_rows) = sequence(lw.graph, op).map_err(|e| anyhow!(e))?;
    lw.checks.push(Check::Positions {
        start_pos: *start_pos,
        rows: t,
        cache_rows,
    });
    let items = rows * (h + 2 * kv) * hd / 2;
    let f16 = DevElem::F16;
    let args = vec![
        Arg::Ptr(lw.ptr(*q, f16)?),
        Arg::Ptr(lw.ptr(*k, f16)?),
        Arg::Ptr(lw.ptr(*v, f16)?),
        Arg::Ptr(lw.ptr(*k_cache, f16)?),
        Arg::Ptr(lw.ptr(*v_cache, f16)?),
        Arg::Ptr(lw.ptr(*start_pos, DevElem::I32)?),
        Arg::I32(dim(rows, "tokens")?),
        Arg::I32(dim(h, "n_heads")?),
        Arg::I32(dim(kv, "n_kv_heads")?),
        Arg::I32(dim(hd, "head_dim")?),
        Arg::F32(*theta),
        Arg::I32(i32::from(*interleaved)),
        Arg::I32(dim(t, "tokens per sequence")?),
        Arg::I32(dim(cache_rows, "context")?),
    ];
    let grid = (stride_blocks(items, THREADS as usize, 65535), 1, 1);
    Ok(vec![lw.kernel(
        "rope_kv_write_f16",
        grid,
        (THREADS, 1, 1),
        0,
        args,
    )?])
}

#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub t: usize,
    pub start: usize,
    pub max_seq: usize,
    pub heads: usize,
    pub kv: usize,
    pub hd: usize,
    /// 0: no prompt.
    pub plen: usize,
    /// Sequences side by side, each `t` tokens at `start` with its own `max_seq` cache rows.
    pub batch: usize,
}

impl AttnShape {
    pub const fn x(self, batch: usize) -> AttnShape {
        AttnShape { batch, ..self }
    }
}

pub const fn at(
    t: usize,
    start: usize,
    max_seq: usize,
    heads: usize,
    kv: usize,
    hd: usize,
    plen: usize,
) -> AttnShape {
    AttnShape {
        t,
        start,
        max_seq,
        heads,
        kv,
        hd,
        plen,
        batch: 1,
    }
}

const ROPE_SHAPES: &[AttnShape] = &[
    at(1, 0, 8, 2, 2, 8, 0),
    at(5, 3, 64, 8, 2, 64, 0),
    at(70, 0, 128, 4, 4, 128, 0),
    at(1, 2047, 2048, 32, 32, 128, 0),
    at(3, 4000, 4096, 8, 8, 64, 0),
    at(2, 10, 64, 4, 2, 6, 0),
    at(5, 3, 64, 8, 2, 64, 0).x(3),
    at(1, 100, 128, 4, 4, 128, 0).x(8),
];

/// The two KV-cache states of a `[batch, max_seq, kv, hd]` cache.
pub fn cache_states(batch: usize, max_seq: usize, kv: usize, hd: usize) -> Vec<StateDesc> {
    ["k_cache", "v_cache"]
        .into_iter()
        .map(|name| StateDesc {
            name: name.into(),
            shape: vec![batch, max_seq, kv, hd],
            elem: Elem::Act,
        })
        .collect()
}

fn rope_case(rng: &mut Rng, s: AttnShape, interleaved: bool, theta: f32) -> Case {
    let AttnShape {
        start,
        max_seq,
        heads,
        kv,
        hd,
        batch,
        ..
    } = s;
    let t = s.t * batch;
    let states = cache_states(batch, max_seq, kv, hd);
    let mut g = Graph::new("rope_kv_write");
    let q = g.input("q", &[t, heads * hd], Elem::Act);
    let k = g.input("k", &[t, kv * hd], Elem::Act);
    let v = g.input("v", &[t, kv * hd], Elem::Act);
    let start_pos = g.input("start_pos", &[1], Elem::I32);
    let k_cache = g.state(&states[0], 0);
    let v_cache = g.state(&states[1], 1);
    g.push(Op::RopeKvWrite {
        q,
        k,
        v,
        k_cache,
        v_cache,
        start_pos,
        n_heads: heads,
        n_kv_heads: kv,
        head_dim: hd,
        theta,
        interleaved,
        batch,
    });
    g.mark_output(q);
    g.mark_output(k_cache);
    g.mark_output(v_cache);
    let mut c = Case::new(format!("rope_kv_write {s:?} interleaved {interleaved}"), g)
        .input("q", Data::F32(rnd(rng, t * heads * hd, 2.0)))
        .input("k", Data::F32(rnd(rng, t * kv * hd, 2.0)))
        .input("v", Data::F32(rnd(rng, t * kv * hd, 2.0)))
        .input("start_pos", Data::I32(vec![start as i32]));
    c.states = states;
    c
}

fn cases(rng: &mut Rng, _sizes: Sizes) -> Vec<Case> {
    // A few cache rows written: the same list on the emulator.
    let mut out = Vec::new();
    for &s in ROPE_SHAPES {
        for (interleaved, theta) in [(true, 10000.0f32), (false, 500000.0f32)] {
            out.push(rope_case(rng, s, interleaved, theta));
        }
    }
    out
}
