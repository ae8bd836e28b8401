//! RoPE with the KV-cache write, the gated adapter attention (tensor-core prefill for T > 1,
//! split-K decode + reduce for T = 1) and the vision tower's bidirectional attention.

use anyhow::{anyhow, bail, Result};

use super::lower::{dim, stride_blocks, Arg, Check, DevElem, Lowerer, Step};
use crate::graph::{Op, TensorId};

/// Largest head_dim the attention kernels take (`DC_MAX_HD`, tensor-core prefill padding).
const MAX_HEAD_DIM: usize = 256;
/// `VA_MAX_HD` of vision.cu.
const VISION_MAX_HEAD_DIM: usize = 128;

/// Splits of the decode attention over the sequence: about two blocks per SM over the
/// `heads` (query heads × sequences) blocks, at least 64 keys a split. A launch constant: a
/// captured decode graph keeps it for every context length.
pub fn decode_splits(sms: usize, heads: usize, max_seq: usize) -> usize {
    (2 * sms)
        .div_ceil(heads.max(1))
        .clamp(1, max_seq.div_ceil(64).max(1))
}

/// Bytes of the decode partials for one attention op over `heads` (query heads × sequences):
/// `partial_acc` f32 [heads, S, hd], then (at a 256-byte boundary) `partial_ml` f32 [heads, S, 2].
pub fn decode_scratch_layout(heads: usize, splits: usize, head_dim: usize) -> (usize, usize) {
    let acc = heads * splits * head_dim * 4;
    let ml_off = acc.div_ceil(256) * 256;
    (ml_off, ml_off + heads * splits * 2 * 4)
}

/// Scratch bytes the decode attention ops of `ops` need (they run one after another and share it).
pub fn scratch_bytes(graph: &crate::graph::Graph, sms: usize) -> usize {
    let mut need = 0;
    for op in &graph.ops {
        if let Op::AdapterAttention {
            q,
            k_cache,
            n_heads,
            n_kv_heads,
            head_dim,
            batch,
            ..
        } = op
        {
            let b = (*batch).max(1);
            let t = graph.desc(*q).numel() / (n_heads * head_dim * b).max(1);
            if t == 1 {
                let max_seq = graph.desc(*k_cache).numel() / (n_kv_heads * head_dim * b).max(1);
                let s = decode_splits(sms, n_heads * b, max_seq);
                need = need.max(decode_scratch_layout(n_heads * b, s, *head_dim).1);
            }
        }
    }
    need
}

fn check_heads(n_heads: usize, n_kv_heads: usize, head_dim: usize, max_hd: usize) -> Result<()> {
    if n_heads == 0 || n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
        bail!("{n_heads} query heads cannot share {n_kv_heads} kv heads");
    }
    if head_dim == 0 || !head_dim.is_multiple_of(2) || head_dim > max_hd {
        bail!("head_dim {head_dim} is not supported (even, at most {max_hd})");
    }
    Ok(())
}

/// Tokens and cache rows of one sequence of the op's batch (the graph's one definition).
fn per_sequence(lw: &Lowerer, op: &Op) -> Result<(usize, usize)> {
    lw.graph
        .per_sequence(op)
        .ok_or_else(|| anyhow!("internal error: {} has no sequences", op.name()))?
        .map_err(|e| anyhow!(e))
}

pub fn rope_kv_write(lw: &mut Lowerer, op: &Op) -> Result<Vec<Step>> {
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
        unreachable!()
    };
    let (h, kv, hd) = (*n_heads, *n_kv_heads, *head_dim);
    check_heads(h, kv, hd, usize::MAX)?;
    let rows = lw.numel(*k) / (kv * hd);
    let (t, cache_rows) = per_sequence(lw, op)?;
    lw.checks.push(Check::Positions {
        start_pos: *start_pos,
        rows: t,
        cache_rows,
    });
    let items = rows * (h + 2 * kv) * hd / 2;
    let args = vec![
        Arg::Ptr(lw.ptr(*q, DevElem::F16)?),
        Arg::Ptr(lw.ptr(*k, DevElem::F16)?),
        Arg::Ptr(lw.ptr(*v, DevElem::F16)?),
        Arg::Ptr(lw.ptr(*k_cache, DevElem::F16)?),
        Arg::Ptr(lw.ptr(*v_cache, DevElem::F16)?),
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
    let grid = (stride_blocks(items, 256, 65535), 1, 1);
    Ok(vec![lw.kernel(
        "rope_kv_write_f16",
        grid,
        (256, 1, 1),
        0,
        args,
    )?])
}

pub fn adapter_attention(lw: &mut Lowerer, op: &Op) -> Result<Vec<Step>> {
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
        unreachable!()
    };
    let (h, kv, hd, nb) = (*n_heads, *n_kv_heads, *head_dim, *batch);
    check_heads(h, kv, hd, MAX_HEAD_DIM)?;
    let (t, max_seq) = per_sequence(lw, op)?;
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
    let unfused = lw.variants.unfused_attention;
    let separate_prompt = unfused && plen > 0;
    let (pk_f, pv_f, gate_f, plen_f) = if unfused {
        (0, 0, 0, 0)
    } else {
        (pk, pv, gate, plen)
    };
    let mut steps = Vec::new();
    if t == 1 {
        let splits = decode_splits(lw.sms, h * nb, max_seq);
        let (ml_off, need) = decode_scratch_layout(h * nb, splits, hd);
        let Some((scratch, bytes)) = lw.scratch else {
            bail!("internal error: decode attention without its scratch buffer");
        };
        if bytes < need {
            bail!("internal error: decode scratch holds {bytes} bytes, {need} needed");
        }
        let (acc, ml) = (scratch, scratch + ml_off as u64);
        let s = dim(splits, "splits")?;
        let split = lw.kernel(
            "adapter_attention_decode_split_f16",
            (splits as u32, h as u32, nb as u32),
            (128, 1, 1),
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
            (128, 1, 1),
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
        let smem = 640 * (hd.div_ceil(16) * 16 + 8);
        let grid = (t.div_ceil(64) as u32, h as u32, nb as u32);
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
                "attention_causal_prefill_f16",
                grid,
                (128, 1, 1),
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
                (128, 1, 1),
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
            "adapter_prompt_attention_f16",
            (dim(rows, "rows")? as u32, h as u32, 1),
            (128, 1, 1),
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

pub fn vision_attention(
    lw: &mut Lowerer,
    qkv: TensorId,
    out: TensorId,
    n_heads: usize,
) -> Result<Vec<Step>> {
    let (n, width) = lw.rows_cols(out);
    let hd = width / n_heads.max(1);
    check_heads(n_heads, n_heads, hd, VISION_MAX_HEAD_DIM)?;
    let args = vec![
        Arg::Ptr(lw.ptr(qkv, DevElem::F16)?),
        Arg::Ptr(lw.ptr(out, DevElem::F16)?),
        Arg::I32(dim(n, "tokens")?),
        Arg::I32(dim(n_heads, "n_heads")?),
        Arg::I32(dim(hd, "head_dim")?),
        Arg::F32(1.0 / (hd as f32).sqrt()),
    ];
    Ok(vec![lw.kernel(
        "vision_attention_f16",
        (n.div_ceil(32) as u32, n_heads as u32, 1),
        (128, 1, 1),
        0,
        args,
    )?])
}
