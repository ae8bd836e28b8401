//! The model as data: typed ops over tensor ids. A graph is built once per shape (prefill of
//! T tokens, single-token decode, vision, prompt K/V), planned once, and run by any backend.

pub mod exec;
pub mod plan;

use crate::quant::QuantFormat;
use crate::tensor::{numel, shape_str};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub usize);

/// The element type as the graph sees it: `Act` tensors take the backend's activation
/// precision (f32 on the CPU reference, f16 on CUDA); `F32` and `I32` are fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    Act,
    F32,
    I32,
    /// Quantized weight bytes, laid out as the op's [`QuantRef`] says.
    Quant,
}

/// Rows `start .. start + rows` of a sequence must fit its `cache_rows`.
pub fn check_positions(start: usize, rows: usize, cache_rows: usize) -> Result<(), String> {
    if start + rows > cache_rows {
        return Err(format!(
            "positions {start}..{} exceed the context of {cache_rows}",
            start + rows
        ));
    }
    Ok(())
}

/// Where a tensor lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// A planned slot in the activation arena, alive from its producer to its last reader.
    Activation,
    /// Written by the host before a run; kept in its own buffer so a replay sees new values.
    Input,
    /// An index into the model's weight store, uploaded once.
    Weight(usize),
    /// An index into the session's persistent state (KV cache, prompt K/V).
    State(usize),
}

#[derive(Clone, Debug)]
pub struct TensorDesc {
    pub name: String,
    pub shape: Vec<usize>,
    pub elem: Elem,
    pub storage: Storage,
}

impl TensorDesc {
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }
}

/// A persistent tensor that outlives one run: declared by the model, allocated once per session.
#[derive(Clone, Debug, PartialEq)]
pub struct StateDesc {
    pub name: String,
    pub shape: Vec<usize>,
    pub elem: Elem,
}

/// Prompt keys/values of one adapter layer and its per-head gate (already `tanh(gate)·new_gate`).
#[derive(Clone, Copy, Debug)]
pub struct PromptKv {
    pub k: TensorId,
    pub v: TensorId,
    pub gate: TensorId,
}

/// How a quantized linear weight is stored: values in `w`, and these.
#[derive(Clone, Copy, Debug)]
pub struct QuantRef {
    pub format: QuantFormat,
    /// `[out, groups]` scales.
    pub scales: TensorId,
    /// `[out, groups]` zero points (int4 with zero point).
    pub zeros: Option<TensorId>,
}

#[derive(Clone, Debug)]
pub enum Op {
    /// `out[t] = table[ids[t]]`.
    Embedding {
        ids: TensorId,
        table: TensorId,
        out: TensorId,
    },
    /// `residual += x` (when `x` is given), then `out = rmsnorm(residual) ⊙ weight (+ bias)`.
    RmsNorm {
        x: Option<TensorId>,
        residual: TensorId,
        weight: TensorId,
        bias: Option<TensorId>,
        out: TensorId,
        eps: f32,
    },
    /// `out = out_scale ⊙ (x · wᵀ + bias) + residual`, `w` being `[out_features, in_features]`
    /// (quantized when `quant` is given).
    Linear {
        x: TensorId,
        w: TensorId,
        quant: Option<QuantRef>,
        bias: Option<TensorId>,
        out_scale: Option<TensorId>,
        residual: Option<TensorId>,
        out: TensorId,
    },
    /// `out = silu(gate) ⊙ up`.
    SiluMul {
        gate: TensorId,
        up: TensorId,
        out: TensorId,
    },
    /// Rotates `q` in place and `k`, and writes `k`, `v` to cache rows `start_pos + t`.
    /// With `batch` sequences the rows of `q`, `k`, `v` are `batch` blocks of `t` tokens, and
    /// the caches `[batch, max_seq, n_kv_heads, head_dim]` hold one block per sequence.
    RopeKvWrite {
        q: TensorId,
        k: TensorId,
        v: TensorId,
        k_cache: TensorId,
        v_cache: TensorId,
        start_pos: TensorId,
        n_heads: usize,
        n_kv_heads: usize,
        head_dim: usize,
        theta: f32,
        interleaved: bool,
        batch: usize,
    },
    /// Causal attention of `q` over the cache up to each query's position, plus the gated
    /// separate-softmax attention over the prompt K/V when `prompt` is given. With `batch`
    /// sequences, row block `b` of `q` reads cache block `b`; the prompt K/V are shared.
    AdapterAttention {
        q: TensorId,
        k_cache: TensorId,
        v_cache: TensorId,
        prompt: Option<PromptKv>,
        start_pos: TensorId,
        out: TensorId,
        n_heads: usize,
        n_kv_heads: usize,
        head_dim: usize,
        batch: usize,
    },
    LayerNorm {
        x: TensorId,
        weight: TensorId,
        bias: TensorId,
        out: TensorId,
        eps: f32,
    },
    /// Exact (erf) GELU.
    Gelu { x: TensorId, out: TensorId },
    /// `x · sigmoid(1.702 x)`, CLIP's activation.
    QuickGelu { x: TensorId, out: TensorId },
    /// Elementwise `a + b`; `b` may also be a single row broadcast over the rows of `a`.
    Add {
        a: TensorId,
        b: TensorId,
        out: TensorId,
    },
    /// Rows of `a` then rows of `b`.
    ConcatRows {
        a: TensorId,
        b: TensorId,
        out: TensorId,
    },
    /// `out[j] = x[start + j·step]`: contiguous rows with `step` 1, the last token of every
    /// sequence of a batch with `step` = tokens per sequence.
    SliceRows {
        x: TensorId,
        start: usize,
        step: usize,
        out: TensorId,
    },
    /// `[3, S, S]` image → `[(S/p)², 3·p·p]` patches ordered (channel, row, column).
    Im2ColPatches {
        pixels: TensorId,
        out: TensorId,
        patch: usize,
    },
    /// Bidirectional multi-head attention over packed `[n, 3·width]` q|k|v rows.
    VisionAttention {
        qkv: TensorId,
        out: TensorId,
        n_heads: usize,
    },
    /// Picks the next token from each row of f32 logits on the device (one row per sequence),
    /// so a decode step copies back one id per sequence: argmax when `temperature` is 0, else
    /// the authors' top-p rule with that row's uniform number in `uniform`.
    SampleToken {
        logits: TensorId,
        uniform: TensorId,
        out: TensorId,
        temperature: f32,
        top_p: f32,
    },
}

impl Op {
    /// Tensors the op reads (including those it updates in place).
    pub fn reads(&self) -> Vec<TensorId> {
        use Op::*;
        let mut v = Vec::new();
        match self {
            Embedding { ids, table, .. } => v.extend([*ids, *table]),
            RmsNorm {
                x,
                residual,
                weight,
                bias,
                ..
            } => {
                v.extend(x.iter().copied());
                v.extend([*residual, *weight]);
                v.extend(bias.iter().copied());
            }
            Linear {
                x,
                w,
                quant,
                bias,
                out_scale,
                residual,
                ..
            } => {
                v.extend([*x, *w]);
                if let Some(q) = quant {
                    v.push(q.scales);
                    v.extend(q.zeros);
                }
                v.extend(bias.iter().chain(out_scale).chain(residual).copied());
            }
            SiluMul { gate, up, .. } => v.extend([*gate, *up]),
            RopeKvWrite {
                q,
                k,
                v: vv,
                start_pos,
                ..
            } => v.extend([*q, *k, *vv, *start_pos]),
            AdapterAttention {
                q,
                k_cache,
                v_cache,
                prompt,
                start_pos,
                ..
            } => {
                v.extend([*q, *k_cache, *v_cache, *start_pos]);
                if let Some(p) = prompt {
                    v.extend([p.k, p.v, p.gate]);
                }
            }
            LayerNorm {
                x, weight, bias, ..
            } => v.extend([*x, *weight, *bias]),
            Gelu { x, .. } | QuickGelu { x, .. } | SliceRows { x, .. } => v.push(*x),
            Add { a, b, .. } | ConcatRows { a, b, .. } => v.extend([*a, *b]),
            Im2ColPatches { pixels, .. } => v.push(*pixels),
            VisionAttention { qkv, .. } => v.push(*qkv),
            SampleToken {
                logits, uniform, ..
            } => v.extend([*logits, *uniform]),
        }
        v
    }

    /// Tensors the op writes (including those it updates in place).
    pub fn writes(&self) -> Vec<TensorId> {
        use Op::*;
        match self {
            RmsNorm { residual, out, .. } => vec![*residual, *out],
            RopeKvWrite {
                q,
                k_cache,
                v_cache,
                ..
            } => vec![*q, *k_cache, *v_cache],
            Embedding { out, .. }
            | Linear { out, .. }
            | SiluMul { out, .. }
            | AdapterAttention { out, .. }
            | LayerNorm { out, .. }
            | Gelu { out, .. }
            | QuickGelu { out, .. }
            | Add { out, .. }
            | ConcatRows { out, .. }
            | SliceRows { out, .. }
            | Im2ColPatches { out, .. }
            | VisionAttention { out, .. }
            | SampleToken { out, .. } => vec![*out],
        }
    }

    pub fn name(&self) -> &'static str {
        use Op::*;
        match self {
            Embedding { .. } => "embedding",
            RmsNorm { .. } => "rmsnorm",
            Linear { .. } => "linear",
            SiluMul { .. } => "silu_mul",
            RopeKvWrite { .. } => "rope_kv_write",
            AdapterAttention { .. } => "adapter_attention",
            LayerNorm { .. } => "layernorm",
            Gelu { .. } => "gelu",
            QuickGelu { .. } => "quick_gelu",
            Add { .. } => "add",
            ConcatRows { .. } => "concat_rows",
            SliceRows { .. } => "slice_rows",
            Im2ColPatches { .. } => "im2col_patches",
            VisionAttention { .. } => "vision_attention",
            SampleToken { .. } => "sample_token",
        }
    }
}

/// A graph under construction and, once built, the program a backend runs.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    pub tensors: Vec<TensorDesc>,
    pub ops: Vec<Op>,
    pub outputs: Vec<TensorId>,
    /// Run once per generated token with only its inputs changing (decode): a backend may
    /// record it once and replay it.
    pub per_token: bool,
}

impl Graph {
    pub fn new(name: &str) -> Graph {
        Graph {
            name: name.to_string(),
            ..Default::default()
        }
    }

    fn add(&mut self, name: &str, shape: &[usize], elem: Elem, storage: Storage) -> TensorId {
        self.tensors.push(TensorDesc {
            name: name.to_string(),
            shape: shape.to_vec(),
            elem,
            storage,
        });
        TensorId(self.tensors.len() - 1)
    }

    pub fn input(&mut self, name: &str, shape: &[usize], elem: Elem) -> TensorId {
        self.add(name, shape, elem, Storage::Input)
    }

    pub fn weight(&mut self, name: &str, shape: &[usize], elem: Elem, index: usize) -> TensorId {
        self.add(name, shape, elem, Storage::Weight(index))
    }

    pub fn state(&mut self, desc: &StateDesc, index: usize) -> TensorId {
        self.add(&desc.name, &desc.shape, desc.elem, Storage::State(index))
    }

    pub fn activation(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.add(name, shape, Elem::Act, Storage::Activation)
    }

    pub fn activation_f32(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.add(name, shape, Elem::F32, Storage::Activation)
    }

    pub fn activation_i32(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.add(name, shape, Elem::I32, Storage::Activation)
    }

    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    pub fn mark_output(&mut self, id: TensorId) {
        self.outputs.push(id);
    }

    pub fn desc(&self, id: TensorId) -> &TensorDesc {
        &self.tensors[id.0]
    }

    pub fn find(&self, name: &str) -> Option<TensorId> {
        self.tensors
            .iter()
            .position(|t| t.name == name)
            .map(TensorId)
    }

    /// Checks every op's shapes; a model builder bug shows up here, not as a wrong answer.
    pub fn validate(&self) -> Result<(), String> {
        for (i, op) in self.ops.iter().enumerate() {
            self.check_op(op)
                .and_then(|()| self.per_sequence(op).map_or(Ok(()), |r| r.map(|_| ())))
                .map_err(|e| format!("graph '{}', op {i} ({}): {e}", self.name, op.name()))?;
        }
        Ok(())
    }

    fn check_op(&self, op: &Op) -> Result<(), String> {
        let sh = |id: TensorId| self.desc(id).shape.clone();
        let rows_cols = |id: TensorId| -> Result<(usize, usize), String> {
            let s = sh(id);
            match s.len() {
                2 => Ok((s[0], s[1])),
                1 => Ok((1, s[0])),
                _ => Err(format!(
                    "'{}' must be 1-D or 2-D, is {}",
                    self.desc(id).name,
                    shape_str(&s)
                )),
            }
        };
        let same = |a: TensorId, b: TensorId| -> Result<(), String> {
            if self.desc(a).numel() != self.desc(b).numel() {
                return Err(format!(
                    "'{}' {} and '{}' {} differ in size",
                    self.desc(a).name,
                    shape_str(&sh(a)),
                    self.desc(b).name,
                    shape_str(&sh(b))
                ));
            }
            Ok(())
        };
        match op {
            Op::Embedding { ids, table, out } => {
                let (_, dim) = rows_cols(*table)?;
                let (t, d) = rows_cols(*out)?;
                if d != dim || t != self.desc(*ids).numel() {
                    return Err("embedding shapes disagree".into());
                }
            }
            Op::RmsNorm {
                x,
                residual,
                weight,
                bias,
                out,
                ..
            } => {
                let (_, d) = rows_cols(*residual)?;
                if let Some(x) = x {
                    same(*x, *residual)?;
                }
                same(*out, *residual)?;
                if self.desc(*weight).numel() != d
                    || bias.is_some_and(|b| self.desc(b).numel() != d)
                {
                    return Err("norm weight size differs from the row size".into());
                }
            }
            Op::Linear {
                x,
                w,
                quant,
                bias,
                out_scale,
                residual,
                out,
            } => {
                if let Some(q) = quant {
                    let groups = sh(q.scales);
                    if groups.first() != sh(*w).first() {
                        return Err("quantization scales need one row per output".into());
                    }
                    if q.zeros.is_some_and(|z| sh(z) != groups) {
                        return Err("zero points must match the scales".into());
                    }
                }
                let (m, k) = rows_cols(*x)?;
                let (n, k2) = rows_cols(*w)?;
                let (m2, n2) = rows_cols(*out)?;
                if k != k2 || m != m2 || n != n2 {
                    return Err(format!(
                        "x {} · w {}ᵀ cannot give out {}",
                        shape_str(&sh(*x)),
                        shape_str(&sh(*w)),
                        shape_str(&sh(*out))
                    ));
                }
                for v in bias.iter().chain(out_scale) {
                    if self.desc(*v).numel() != n {
                        return Err(format!("'{}' must have {n} elements", self.desc(*v).name));
                    }
                }
                if let Some(r) = residual {
                    same(*r, *out)?;
                }
            }
            Op::SiluMul { gate, up, out } => {
                same(*gate, *up)?;
                same(*gate, *out)?;
            }
            Op::RopeKvWrite {
                q,
                k,
                v,
                k_cache,
                v_cache,
                n_heads,
                n_kv_heads,
                head_dim,
                ..
            } => {
                let (t, qd) = rows_cols(*q)?;
                let (t2, kd) = rows_cols(*k)?;
                if qd != n_heads * head_dim || kd != n_kv_heads * head_dim || t != t2 {
                    return Err("q/k widths disagree with the head counts".into());
                }
                same(*k, *v)?;
                same(*k_cache, *v_cache)?;
                if sh(*k_cache).last() != Some(head_dim) {
                    return Err("cache rows must end in head_dim".into());
                }
            }
            Op::AdapterAttention {
                q,
                k_cache,
                v_cache,
                out,
                n_heads,
                head_dim,
                prompt,
                ..
            } => {
                same(*q, *out)?;
                same(*k_cache, *v_cache)?;
                let (_, qd) = rows_cols(*q)?;
                if qd != n_heads * head_dim {
                    return Err("q width disagrees with the head count".into());
                }
                if let Some(p) = prompt {
                    same(p.k, p.v)?;
                    if self.desc(p.gate).numel() != *n_heads {
                        return Err("gate must have one value per head".into());
                    }
                }
            }
            Op::LayerNorm {
                x,
                weight,
                bias,
                out,
                ..
            } => {
                same(*x, *out)?;
                let (_, d) = rows_cols(*x)?;
                if self.desc(*weight).numel() != d || self.desc(*bias).numel() != d {
                    return Err("layernorm parameters differ from the row size".into());
                }
            }
            Op::Gelu { x, out } | Op::QuickGelu { x, out } => same(*x, *out)?,
            Op::Add { a, b, out } => {
                same(*a, *out)?;
                let (_, ca) = rows_cols(*a)?;
                let nb = self.desc(*b).numel();
                if nb != self.desc(*a).numel() && nb != ca {
                    return Err("b is neither a's size nor one row of it".into());
                }
            }
            Op::ConcatRows { a, b, out } => {
                let (ra, ca) = rows_cols(*a)?;
                let (rb, cb) = rows_cols(*b)?;
                let (ro, co) = rows_cols(*out)?;
                if ca != cb || ca != co || ra + rb != ro {
                    return Err("row concatenation shapes disagree".into());
                }
            }
            Op::SliceRows {
                x,
                start,
                step,
                out,
            } => {
                let (rx, cx) = rows_cols(*x)?;
                let (ro, co) = rows_cols(*out)?;
                if cx != co || *step == 0 || ro == 0 || start + (ro - 1) * step >= rx {
                    return Err("slice is out of range".into());
                }
            }
            Op::Im2ColPatches { pixels, out, patch } => {
                let s = sh(*pixels);
                if s.len() != 3 || s[0] != 3 || s[1] != s[2] || s[1] % patch != 0 {
                    return Err("pixels must be [3, S, S] with S a multiple of the patch".into());
                }
                let g = s[1] / patch;
                if sh(*out) != [g * g, 3 * patch * patch] {
                    return Err("patch matrix has the wrong shape".into());
                }
            }
            Op::VisionAttention { qkv, out, n_heads } => {
                let (n, w3) = rows_cols(*qkv)?;
                let (n2, w) = rows_cols(*out)?;
                if n != n2 || w3 != 3 * w || w % n_heads != 0 {
                    return Err("packed qkv does not match the output".into());
                }
            }
            Op::SampleToken {
                logits,
                uniform,
                out,
                temperature,
                top_p,
            } => {
                let (rows, _) = rows_cols(*logits)?;
                if self.desc(*logits).elem != Elem::F32 {
                    return Err("sampling takes rows of f32 logits".into());
                }
                if self.desc(*uniform).numel() != rows || self.desc(*out).numel() != rows {
                    return Err(
                        "sampling takes one uniform number and gives one token per row".into(),
                    );
                }
                if self.desc(*out).elem != Elem::I32 {
                    return Err("the sampled token is an i32".into());
                }
                if !(*temperature >= 0.0 && *top_p > 0.0 && *top_p <= 1.0) {
                    return Err(format!("bad sampling parameters T={temperature} p={top_p}"));
                }
            }
        }
        Ok(())
    }

    /// Tokens and cache rows of one sequence of a RoPE or attention op: its rows split evenly
    /// over `batch` sequences, each with its own block of the cache. `None` for other ops.
    pub fn per_sequence(&self, op: &Op) -> Option<Result<(usize, usize), String>> {
        let (rows, cache_rows, batch) = match op {
            Op::RopeKvWrite {
                k,
                k_cache,
                n_kv_heads,
                head_dim,
                batch,
                ..
            } => {
                let width = (n_kv_heads * head_dim).max(1);
                (
                    self.desc(*k).numel() / width,
                    self.desc(*k_cache).numel() / width,
                    *batch,
                )
            }
            Op::AdapterAttention {
                q,
                k_cache,
                n_heads,
                n_kv_heads,
                head_dim,
                batch,
                ..
            } => (
                self.desc(*q).numel() / (n_heads * head_dim).max(1),
                self.desc(*k_cache).numel() / (n_kv_heads * head_dim).max(1),
                *batch,
            ),
            _ => return None,
        };
        Some(
            if batch == 0 || !rows.is_multiple_of(batch) || !cache_rows.is_multiple_of(batch) {
                Err(format!(
                    "{rows} rows and {cache_rows} cache rows do not split over {batch} sequences"
                ))
            } else {
                Ok((rows / batch, cache_rows / batch))
            },
        )
    }
}
