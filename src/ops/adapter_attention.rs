//! Causal attention of `q` over the KV cache up to each query's position, plus the gated
//! separate-softmax attention over the prompt K/V (LLaMA-Adapter's zero-init attention):
//! tensor-core prefill for T > 1, split-K decode and a reduce for T = 1 (kernels/adapter_attention.cu).

use anyhow::{anyhow, bail, Result};

use super::case::{rnd, tensor, Case, Data, Sizes};
use super::kernels::geometry::adapter_attention as geo;
use super::linear::dot;
use super::lowering::{dim, Arg, Check, DevElem, DeviceLimits, Lowering, Step};
use super::rope_kv_write::{at, cache_states, AttnShape};
use super::shape::{check_heads, check_positions, per_sequence, Shapes};
use super::softmax::weighted_rows;
use super::{wrong_op, CpuTensors, OpEntry, Variant};
use crate::graph::{Elem, Graph, Op, PromptKv, StateDesc};
use crate::rng::Rng;

pub const ENTRY: OpEntry = OpEntry {
    name: "adapter_attention",
    kernel_files: &["adapter_attention"],
    check,
    cpu,
    lower,
    scratch_bytes,
    variants: &[
        Variant {
            name: "fused",
            about: "the prompt term inside the causal kernels (one pass over q)",
        },
        Variant {
            name: "unfused",
            about: "causal attention, then a separate pass over the prompt (the baseline)",
        },
    ],
    cases,
};

/// Largest head_dim the kernels take (`DC_MAX_HD`, the tensor-core prefill's padding).
const MAX_HEAD_DIM: usize = geo::DC_MAX_HD;

/// Tokens and cache rows of one sequence of the op's batch.
pub fn sequence(g: &Graph, op: &Op) -> Result<(usize, usize), String> {
    let Op::AdapterAttention {
        q,
        k_cache,
        n_heads,
        n_kv_heads,
        head_dim,
        batch,
        ..
    } = op
    else {
        return Err(wrong_op("adapter_attention", op).to_string());
    };
    per_sequence(
        g.desc(*q).numel() / (n_heads * head_dim).max(1),
        g.desc(*k_cache).numel() / (n_kv_heads * head_dim).max(1),
        *batch,
    )
}

fn check(g: &Graph, op: &Op) -> Result<(), String> {
    let Op::AdapterAttention {
        q,
        k_cache,
        v_cache,
        out,
        n_heads,
        n_kv_heads,
        head_dim,
        prompt,
        start_pos,
        ..
    } = op
    else {
        return Err(wrong_op("adapter_attention", op).to_string());
    };
    let s = Shapes(g);
    check_heads(*n_heads, *n_kv_heads, *head_dim, usize::MAX)?;
    s.same_size(*q, *out)?;
    s.same_size(*k_cache, *v_cache)?;
    let (_, qd) = s.rows_cols(*q)?;
    if qd != n_heads * head_dim {
        return Err("q width disagrees with the head count".into());
    }
    if let Some(p) = prompt {
        s.same_size(p.k, p.v)?;
        s.numel_is(p.gate, *n_heads, "one gate per head")?;
        s.elem_is(p.gate, Elem::F32)?;
    }
    s.elem_is(*start_pos, Elem::I32)?;
    sequence(g, op).map(|_| ())
}

pub struct AttentionArgs<'a> {
    pub start_pos: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Prompt keys, values (`[prompt_len, n_kv_heads, head_dim]`) and per-head gate.
    pub prompt: Option<(&'a [f32], &'a [f32], &'a [f32])>,
    /// Sequences: query rows and caches split into this many blocks; the prompt is shared.
    pub batch: usize,
}

/// Query row t sits at position `start_pos + t` and sees cache rows `0..=start_pos + t`;
/// the prompt term is its own softmax over every prompt row, scaled by `gate[h]`. With a batch,
/// row `t` is token `t % seq` of sequence `t / seq` (`seq` = rows / batch), which sees only its
/// own block of the caches; the prompt is shared.
pub fn reference(a: &AttentionArgs, q: &[f32], k_cache: &[f32], v_cache: &[f32], out: &mut [f32]) {
    let hd = a.head_dim;
    let kv_width = a.n_kv_heads * hd;
    let group = a.n_heads / a.n_kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let rows = q.len() / (a.n_heads * hd);
    let (seq, block) = (rows / a.batch, k_cache.len() / a.batch);
    let mut scores = Vec::new();
    let mut acc = vec![0f32; hd];
    for t in 0..rows {
        let len = a.start_pos + t % seq + 1;
        let cache = (t / seq) * block..(t / seq + 1) * block;
        let (k_cache, v_cache) = (&k_cache[cache.clone()], &v_cache[cache]);
        for h in 0..a.n_heads {
            let kvh = h / group;
            let qo = (t * a.n_heads + h) * hd;
            let qv = &q[qo..qo + hd];
            scores.clear();
            for j in 0..len {
                let ko = j * kv_width + kvh * hd;
                scores.push(dot(qv, &k_cache[ko..ko + hd]) * scale);
            }
            weighted_rows(&mut scores, v_cache, kv_width, kvh * hd, &mut acc);
            out[qo..qo + hd].copy_from_slice(&acc);
            if let Some((pk, pv, gate)) = a.prompt {
                let plen = pk.len() / kv_width;
                scores.clear();
                for j in 0..plen {
                    let ko = j * kv_width + kvh * hd;
                    scores.push(dot(qv, &pk[ko..ko + hd]) * scale);
                }
                weighted_rows(&mut scores, pv, kv_width, kvh * hd, &mut acc);
                for (o, v) in out[qo..qo + hd].iter_mut().zip(&acc) {
                    *o += gate[h] * v;
                }
            }
        }
    }
}

fn cpu(op: &Op, t: &mut CpuTensors) -> Result<()> {
    let Op::AdapterAttention {
        q,
        k_cache,
        v_cache,
        prompt,
        start_pos,
        out,
        n_heads,
        n_kv_heads,
        head_dim,
        batch,
    } = op
    else {
        return Err(wrong_op("adapter_attention", op));
    };
    let start = t.position(*start_pos)?;
    let (rows, cache_rows) = sequence(t.graph(), op).map_err(|e| anyhow!(e))?;
    check_positions(start, rows, cache_rows).map_err(|e| anyhow!(e))?;
    let prompt = match prompt {
        Some(p) => Some((t.get(p.k)?, t.get(p.v)?, t.get(p.gate)?)),
        None => None,
    };
    let args = AttentionArgs {
        start_pos: start,
        batch: *batch,
        n_heads: *n_heads,
        n_kv_heads: *n_kv_heads,
        head_dim: *head_dim,
        prompt,
    };
    let (q, k, v) = (t.get(*q)?, t.get(*k_cache)?, t.get(*v_cache)?);
    reference(&args, q, k, v, t.take_mut(*out)?);
    Ok(())
}

/// Splits of the decode attention over the sequence: about two blocks per SM over the
/// `heads` (query heads × sequences) blocks, at least `DC_TK` keys a split. A launch constant: a
/// captured decode graph keeps it for every context length.
pub fn decode_splits(sms: usize, heads: usize, max_seq: usize) -> usize {
    (2 * sms)
        .div_ceil(heads.max(1))
        .clamp(1, max_seq.div_ceil(geo::DC_TK).max(1))
}

/// Bytes of the decode partials for one attention op over `heads` (query heads × sequences):
/// `partial_acc` f32 [heads, S, hd], then (at a 256-byte boundary) `partial_ml` f32 [heads, S, 2].
pub fn decode_scratch_layout(heads: usize, splits: usize, head_dim: usize) -> (usize, usize) {
    let acc = heads * splits * head_dim * 4;
    let ml_off = acc.div_ceil(256) * 256;
    (ml_off, ml_off + heads * splits * 2 * 4)
}

/// The decode partials (T = 1); prefill needs none.
fn scratch_bytes(g: &Graph, op: &Op, device: &DeviceLimits) -> usize {
    let Op::AdapterAttention {
        n_heads,
        head_dim,
        batch,
        ..
    } = op
    else {
        return 0;
    };
    match sequence(g, op) {
        Ok((1, max_seq)) => {
            let heads = n_heads * batch;
            let splits = decode_splits(device.sms, heads, max_seq);
            decode_scratch_layout(heads, splits, *head_dim).1
        }
        _ => 0,
    }
}

/// Dynamic shared memory of the tensor-core prefill: a query tile and two double-buffered key
/// and value tiles, rows padded to `roundup(hd, 16) + 8` halves (conflict-free ldmatrix).
pub fn prefill_smem(head_dim: usize) -> usize {
    (geo::PF_BQ + 4 * geo::PF_BKV) * (head_dim.div_ceil(16) * 16 + 8) * 2
}

fn lower(lw: &mut Lowering, op: &Op) -> Result<Vec<Step>> {
    let Op::AdapterAttention {
        q,
        k_cache,
        v_cache,
        prompt,
        start_pos,
        out,
        n_heads,
        n_kv_heads,
        head_dim,
        batch,
    } = op
    else {
        return Err(wrong_op("adapter_attention", op));
    };
    let (h, kv, hd, nb) = (*n_heads, *n_kv_heads, *head_dim, *batch);
    check_heads(h, kv, hd, MAX_HEAD_DIM).map_err(|e| anyhow!(e))?;
    let (t, max_seq) = sequence(lw.graph, op).map_err(|e| anyhow!(e))?;
    if lw.numel(*v_cache) != lw.numel(*k_cache) {
        bail!("k and v caches differ in size");
    }
    let cache_stride = i64::try_from(max_seq * kv * hd)?;
    lw.checks.push(Check::Positions {
        start_pos: *start_pos,
        rows: t,
        cache_rows: max_seq,
    });
    let (pk, pv, gate, plen) = match prompt {
        Some(p) => {
            if lw.numel(p.gate) != h {
                bail!("gate must have one value per head");
            }
            (
                lw.ptr(p.k, DevElem::F16)?,
                lw.ptr(p.v, DevElem::F16)?,
                lw.ptr(p.gate, DevElem::F32)?,
                lw.numel(p.k) / (kv * hd),
            )
        }
        None => (0, 0, 0, 0),
    };
    let scale = 1.0f32 / (hd as f32).sqrt();
    let qp = lw.ptr(*q, DevElem::F16)?;
    let kc = lw.ptr(*k_cache, DevElem::F16)?;
    let vc = lw.ptr(*v_cache, DevElem::F16)?;
    let sp = lw.ptr(*start_pos, DevElem::I32)?;
    let op_ = lw.ptr(*out, DevElem::F16)?;
    let (hi, kvi, hdi) = (
        dim(h, "n_heads")?,
        dim(kv, "n_kv_heads")?,
        dim(hd, "head_dim")?,
    );
    // The unfused variant runs the causal part alone, then the prompt pass over every row.
    let unfused = lw.variants.of("adapter_attention") == "unfused";
    let separate_prompt = unfused && plen > 0;
    let (pk_f, pv_f, gate_f, plen_f) = if unfused {
        (0, 0, 0, 0)
    } else {
        (pk, pv, gate, plen)
    };
    let mut steps = Vec::new();
    if t == 1 {
        let splits = decode_splits(lw.device.sms, h * nb, max_seq);
        let (ml_off, need) = decode_scratch_layout(h * nb, splits, hd);
        let scratch = lw.scratch(need)?;
        let (acc, ml) = (scratch, scratch + ml_off as u64);
        let s = dim(splits, "splits")?;
        let split = lw.kernel(
            "adapter_attention_decode_split_f16",
            (splits as u32, h as u32, nb as u32),
            (geo::DC_THREADS as u32, 1, 1),
            0,
            vec![
                Arg::Ptr(qp),
                Arg::Ptr(kc),
                Arg::Ptr(vc),
                Arg::Ptr(sp),
                Arg::I32(hi),
                Arg::I32(kvi),
                Arg::I32(hdi),
                Arg::I32(s),
                Arg::Ptr(acc),
                Arg::Ptr(ml),
                Arg::F32(scale),
                Arg::I64(cache_stride),
            ],
        )?;
        let reduce = lw.kernel(
            "adapter_attention_decode_reduce_f16",
            (h as u32, nb as u32, 1),
            (geo::DC_THREADS as u32, 1, 1),
            0,
            vec![
                Arg::Ptr(acc),
                Arg::Ptr(ml),
                Arg::Ptr(pk_f),
                Arg::Ptr(pv_f),
                Arg::Ptr(gate_f),
                Arg::Ptr(op_),
                Arg::I32(hi),
                Arg::I32(kvi),
                Arg::I32(hdi),
                Arg::I32(s),
                Arg::I32(dim(plen_f, "prompt_len")?),
                Arg::F32(scale),
                Arg::Ptr(qp),
            ],
        )?;
        steps.extend([split, reduce]);
    } else {
        let smem = prefill_smem(hd);
        let grid = (t.div_ceil(geo::PF_BQ) as u32, h as u32, nb as u32);
        let (tokens, stride) = (Arg::I32(dim(t, "tokens")?), Arg::I64(cache_stride));
        let step = if unfused {
            let args = vec![
                Arg::Ptr(qp),
                Arg::Ptr(kc),
                Arg::Ptr(vc),
                Arg::Ptr(op_),
                Arg::Ptr(sp),
                tokens,
                Arg::I32(hi),
                Arg::I32(kvi),
                Arg::I32(hdi),
                Arg::F32(scale),
                stride,
            ];
            lw.kernel(
                "adapter_attention_causal_prefill_f16",
                grid,
                (32 * geo::PF_WARPS as u32, 1, 1),
                smem,
                args,
            )?
        } else {
            let args = vec![
                Arg::Ptr(qp),
                Arg::Ptr(kc),
                Arg::Ptr(vc),
                Arg::Ptr(pk),
                Arg::Ptr(pv),
                Arg::Ptr(gate),
                Arg::Ptr(op_),
                Arg::Ptr(sp),
                tokens,
                Arg::I32(hi),
                Arg::I32(kvi),
                Arg::I32(hdi),
                Arg::I32(dim(plen, "prompt_len")?),
                Arg::F32(scale),
                stride,
            ];
            lw.kernel(
                "adapter_attention_prefill_f16",
                grid,
                (32 * geo::PF_WARPS as u32, 1, 1),
                smem,
                args,
            )?
        };
        steps.push(step);
    }
    if separate_prompt {
        // Every row of every sequence against the shared prompt, added to `out` in place.
        let rows = t * nb;
        steps.push(lw.kernel(
            "adapter_attention_prompt_f16",
            (dim(rows, "rows")? as u32, h as u32, 1),
            (geo::DC_THREADS as u32, 1, 1),
            0,
            vec![
                Arg::Ptr(qp),
                Arg::Ptr(pk),
                Arg::Ptr(pv),
                Arg::Ptr(gate),
                Arg::Ptr(op_),
                Arg::I32(dim(rows, "rows")?),
                Arg::I32(hi),
                Arg::I32(kvi),
                Arg::I32(hdi),
                Arg::I32(dim(plen, "prompt_len")?),
                Arg::F32(scale),
            ],
        )?);
    }
    Ok(steps)
}

/// A graph that copies host data into states (the caches and prompt K/V) before the op under test.
pub fn fill_states(states: &[StateDesc], rng: &mut Rng) -> (Graph, Vec<(String, Data)>) {
    let mut g = Graph::new("fill");
    let mut inputs = Vec::new();
    for (i, s) in states.iter().enumerate() {
        let rows = s.shape[0];
        let cols: usize = s.shape[1..].iter().product();
        let flat = StateDesc {
            name: s.name.clone(),
            shape: vec![rows, cols],
            elem: s.elem,
        };
        let name = format!("{}_in", s.name);
        let x = g.input(&name, &[rows, cols], Elem::Act);
        let out = g.state(&flat, i);
        g.push(Op::SliceRows {
            x,
            start: 0,
            step: 1,
            out,
        });
        inputs.push((name, Data::F32(rnd(rng, rows * cols, 2.0))));
    }
    (g, inputs)
}

fn attention_case(rng: &mut Rng, s: AttnShape) -> Case {
    let AttnShape {
        start,
        max_seq,
        heads,
        kv,
        hd,
        plen,
        batch,
        ..
    } = s;
    let t = s.t * batch;
    let desc = |name: &str, shape: &[usize]| StateDesc {
        name: name.into(),
        shape: shape.to_vec(),
        elem: Elem::Act,
    };
    let mut states = cache_states(batch, max_seq, kv, hd);
    if plen > 0 {
        states.push(desc("prompt_k", &[plen, kv, hd]));
        states.push(desc("prompt_v", &[plen, kv, hd]));
    }
    let mut g = Graph::new("adapter_attention");
    let q = g.input("q", &[t, heads * hd], Elem::Act);
    let start_pos = g.input("start_pos", &[1], Elem::I32);
    let k_cache = g.state(&states[0], 0);
    let v_cache = g.state(&states[1], 1);
    let mut weights = Vec::new();
    let prompt = (plen > 0).then(|| {
        weights.push(tensor(&[heads], rnd(rng, heads, 0.9)));
        PromptKv {
            k: g.state(&states[2], 2),
            v: g.state(&states[3], 3),
            gate: g.weight("gate", &[heads], Elem::F32, 0),
        }
    });
    let out = g.activation("out", &[t, heads * hd]);
    g.push(Op::AdapterAttention {
        q,
        k_cache,
        v_cache,
        prompt,
        start_pos,
        out,
        n_heads: heads,
        n_kv_heads: kv,
        head_dim: hd,
        batch,
    });
    g.mark_output(out);
    // Scores of a few units, as trained models have (q·k/√d with |q|, |k| ~ √d).
    let mut c = Case::new(format!("adapter_attention {s:?}"), g)
        .input("q", Data::F32(rnd(rng, t * heads * hd, 1.5)))
        .input("start_pos", Data::I32(vec![start as i32]));
    c.setup.push(fill_states(&states, rng));
    c.states = states;
    c.weights = weights;
    c
}

const ATTN_SHAPES: &[AttnShape] = &[
    at(1, 0, 64, 4, 4, 64, 10),
    at(1, 5, 64, 8, 2, 64, 0),
    at(2, 0, 64, 4, 4, 64, 10),
    at(64, 0, 128, 4, 2, 64, 10),
    at(65, 0, 128, 4, 4, 128, 1),
    at(130, 7, 256, 8, 8, 64, 70),
    at(1, 2047, 2048, 32, 32, 128, 10),
    at(1, 4090, 4096, 8, 2, 128, 10),
    at(1, 1000, 4096, 40, 40, 128, 0),
    at(128, 2000, 2200, 8, 8, 128, 10),
    at(2048, 0, 2048, 4, 4, 64, 10),
    at(17, 300, 512, 6, 3, 96, 5),
    at(1, 33, 64, 4, 4, 256, 3),
    at(40, 3, 64, 2, 1, 256, 3),
    // Batches: decode (split count shrinks with the batch) and prefill, with and without prompts.
    at(1, 100, 256, 8, 2, 64, 10).x(3),
    at(1, 2047, 2048, 32, 32, 128, 10).x(4),
    at(1, 0, 64, 4, 4, 64, 0).x(2),
    at(33, 5, 128, 4, 4, 64, 10).x(3),
    at(70, 0, 128, 8, 2, 128, 0).x(2),
];

/// ATTN_SHAPES for the emulator: the same kinds — decode (split over the cache, splits shrinking
/// with the batch), prefill tiles with edges (T = 2, 64, 65, 130), GQA, head dims 64/96/128/256,
/// 40 heads, prompts of 1–70 rows or none, batches — at contexts of a few hundred.
const EMU_ATTN_SHAPES: &[AttnShape] = &[
    at(1, 0, 64, 4, 4, 64, 10),
    at(1, 5, 64, 8, 2, 64, 0),
    at(2, 0, 64, 4, 4, 64, 10),
    at(64, 0, 128, 4, 2, 64, 10),
    at(65, 0, 128, 4, 4, 128, 1),
    at(130, 7, 256, 8, 8, 64, 70),
    at(1, 300, 320, 8, 8, 128, 10),
    at(1, 450, 512, 8, 2, 128, 10),
    at(1, 200, 256, 40, 40, 128, 0),
    at(70, 250, 330, 8, 8, 128, 10),
    at(300, 0, 320, 4, 4, 64, 10),
    at(17, 300, 512, 6, 3, 96, 5),
    at(1, 33, 64, 4, 4, 256, 3),
    at(40, 3, 64, 2, 1, 256, 3),
    at(1, 100, 256, 8, 2, 64, 10).x(3),
    at(1, 300, 320, 32, 32, 128, 10).x(4),
    at(1, 0, 64, 4, 4, 64, 0).x(2),
    at(33, 5, 128, 4, 4, 64, 10).x(3),
    at(70, 0, 128, 8, 2, 128, 0).x(2),
];

fn cases(rng: &mut Rng, sizes: Sizes) -> Vec<Case> {
    sizes
        .pick(ATTN_SHAPES, EMU_ATTN_SHAPES)
        .into_iter()
        .map(|s| attention_case(rng, s))
        .collect()
}
