//! RoPE with the KV-cache write, the zero-init gated adapter attention, and the vision
//! encoders' bidirectional attention, f32.

use super::matmul::dot;

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
pub fn rope_kv_write(
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

/// Softmax-weighted sum of `values` rows (stride `stride`, offset `off`) for `scores`, in place.
fn softmax_weighted(
    scores: &mut [f32],
    values: &[f32],
    stride: usize,
    off: usize,
    acc: &mut [f32],
) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    acc.fill(0.0);
    for (j, s) in scores.iter().enumerate() {
        let p = s / sum;
        let row = &values[j * stride + off..j * stride + off + acc.len()];
        for (a, v) in acc.iter_mut().zip(row) {
            *a += p * v;
        }
    }
}

/// Query row t sits at position `start_pos + t` and sees cache rows `0..=start_pos + t`;
/// the prompt term is its own softmax over every prompt row, scaled by `gate[h]`. With a batch,
/// row `t` is token `t % seq` of sequence `t / seq` (`seq` = rows / batch), which sees only its
/// own block of the caches; the prompt is shared.
pub fn adapter_attention(
    a: &AttentionArgs,
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    out: &mut [f32],
) {
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
            softmax_weighted(&mut scores, v_cache, kv_width, kvh * hd, &mut acc);
            out[qo..qo + hd].copy_from_slice(&acc);
            if let Some((pk, pv, gate)) = a.prompt {
                let plen = pk.len() / kv_width;
                scores.clear();
                for j in 0..plen {
                    let ko = j * kv_width + kvh * hd;
                    scores.push(dot(qv, &pk[ko..ko + hd]) * scale);
                }
                softmax_weighted(&mut scores, pv, kv_width, kvh * hd, &mut acc);
                for (o, v) in out[qo..qo + hd].iter_mut().zip(&acc) {
                    *o += gate[h] * v;
                }
            }
        }
    }
}

/// Full (unmasked) multi-head attention over packed `[n, 3·width]` rows `q | k | v`.
pub fn vision_attention(qkv: &[f32], out: &mut [f32], n: usize, width: usize, n_heads: usize) {
    let hd = width / n_heads;
    let stride = 3 * width;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut scores = vec![0f32; n];
    let mut acc = vec![0f32; hd];
    for i in 0..n {
        for h in 0..n_heads {
            let qv = &qkv[i * stride + h * hd..i * stride + (h + 1) * hd];
            for (j, s) in scores.iter_mut().enumerate() {
                let ko = j * stride + width + h * hd;
                *s = dot(qv, &qkv[ko..ko + hd]) * scale;
            }
            softmax_weighted(&mut scores, qkv, stride, 2 * width + h * hd, &mut acc);
            out[i * width + h * hd..i * width + (h + 1) * hd].copy_from_slice(&acc);
        }
    }
}
