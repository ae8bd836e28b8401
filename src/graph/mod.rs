//! The model as data: typed ops over tensor ids. A graph is built once per shape (prefill of
//! T tokens, single-token decode, vision, prompt K/V), planned once, and run by any backend.

pub mod plan;

use crate::quant::QuantFormat;
use crate::tensor::numel;

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
    /// `residual += x` (when `x` is given), then `out = rmsnorm(residual) ⊙ weight`.
    RmsNorm {
        x: Option<TensorId>,
        residual: TensorId,
        weight: TensorId,
        out: TensorId,
        eps: f32,
    },
    /// `out = x · wᵀ + bias`, `w` being `[out_features, in_features]` (quantized when `quant`
    /// is given).
    Linear {
        x: TensorId,
        w: TensorId,
        quant: Option<QuantRef>,
        bias: Option<TensorId>,
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
    /// so a decode step copies back one id per sequence: argmax when the temperature in `params`
    /// (`[temperature, top_p]`, an input like `uniform`) is 0, else the authors' top-p rule with
    /// that row's uniform number in `uniform`.
    SampleToken {
        logits: TensorId,
        uniform: TensorId,
        params: TensorId,
        out: TensorId,
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
                ..
            } => {
                v.extend(x.iter().copied());
                v.extend([*residual, *weight]);
            }
            Linear {
                x, w, quant, bias, ..
            } => {
                v.extend([*x, *w]);
                if let Some(q) = quant {
                    v.push(q.scales);
                    v.extend(q.zeros);
                }
                v.extend(bias.iter().copied());
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
                logits,
                uniform,
                params,
                ..
            } => v.extend([*logits, *uniform, *params]),
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

    /// Every op's [`Op::name`], in declaration order: the names the op registry must cover.
    pub const NAMES: &'static [&'static str] = &[
        "embedding",
        "rmsnorm",
        "linear",
        "silu_mul",
        "rope_kv_write",
        "adapter_attention",
        "layernorm",
        "gelu",
        "quick_gelu",
        "add",
        "concat_rows",
        "slice_rows",
        "im2col_patches",
        "vision_attention",
        "sample_token",
    ];

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
}
