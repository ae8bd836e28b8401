//! The visual prompt path: CLIP ViT (OpenAI layout) → clip_proj → resampler blocks →
//! visual_proj, as a graph from normalized pixels `[3, S, S]` to `visual_query [query_len, dim]`.

use anyhow::Result;

use super::adapter::AdapterFile;
use super::config::{AdapterConfig, ModelConfig, VisualConfig};
use super::{transpose_f32, WeightStore};
use crate::graph::{Elem, Graph, Op, QuantRef, TensorId};
use crate::tensor::HostTensor;

pub(super) fn load_visual(
    vis: &VisualConfig,
    cfg: &AdapterConfig,
    c: &ModelConfig,
    file: &mut AdapterFile,
    store: &mut WeightStore,
) -> Result<()> {
    let clip = &vis.clip;
    let (w, p) = (clip.width, clip.patch_size);
    let grid = clip.image_size / p;
    fn put(
        file: &mut AdapterFile,
        store: &mut WeightStore,
        name: &str,
        shape: &[usize],
    ) -> Result<()> {
        let t = file.get_exact(name, shape)?;
        store.insert(name, t);
        Ok(())
    }
    let conv = file.get_exact("clip.visual.conv1.weight", &[w, 3, p, p])?;
    store.insert(
        "clip.visual.conv1.weight",
        conv.reshaped(vec![w, 3 * p * p]),
    );
    let class = file.get_exact("clip.visual.class_embedding", &[w])?;
    store.insert("clip.visual.class_embedding", class.reshaped(vec![1, w]));
    put(
        file,
        store,
        "clip.visual.positional_embedding",
        &[grid * grid + 1, w],
    )?;
    for ln in ["ln_pre", "ln_post"] {
        put(file, store, &format!("clip.visual.{ln}.weight"), &[w])?;
        put(file, store, &format!("clip.visual.{ln}.bias"), &[w])?;
    }
    for i in 0..clip.layers {
        let b = format!("clip.visual.transformer.resblocks.{i}");
        for (name, shape) in [
            ("ln_1.weight", vec![w]),
            ("ln_1.bias", vec![w]),
            ("attn.in_proj_weight", vec![3 * w, w]),
            ("attn.in_proj_bias", vec![3 * w]),
            ("attn.out_proj.weight", vec![w, w]),
            ("attn.out_proj.bias", vec![w]),
            ("ln_2.weight", vec![w]),
            ("ln_2.bias", vec![w]),
            ("mlp.c_fc.weight", vec![4 * w, w]),
            ("mlp.c_fc.bias", vec![4 * w]),
            ("mlp.c_proj.weight", vec![w, 4 * w]),
            ("mlp.c_proj.bias", vec![w]),
        ] {
            put(file, store, &format!("{b}.{name}"), &shape)?;
        }
    }
    // CLIP multiplies `x @ proj`; as a linear weight that is projᵀ.
    let proj = file.get_exact("clip.visual.proj", &[w, clip.output_dim])?;
    store.insert(
        "clip.visual.proj_t",
        HostTensor::from_f32(
            vec![clip.output_dim, w],
            transpose_f32(&proj.to_f32()?, w, clip.output_dim),
        ),
    );
    let hidden = (vis.v_embed_dim as f32 * vis.v_mlp_ratio) as usize;
    let shapes = resampler_tensors(
        vis.v_embed_dim,
        hidden,
        vis.v_depth,
        cfg.query_len,
        clip.output_dim,
        c.dim,
    );
    for (name, shape) in shapes {
        put(file, store, &name, &shape)?;
    }
    Ok(())
}

/// Names and shapes of the resampler's tensors (`clip_proj*`, `visual_query`, the
/// `visual_blocks`, `visual_proj*`) for embedding width `v`, MLP width `hidden`, `depth` blocks,
/// `query_len` queries, CLIP output `clip_out` and LLaMA width `dim`.
pub fn resampler_tensors(
    v: usize,
    hidden: usize,
    depth: usize,
    query_len: usize,
    clip_out: usize,
    dim: usize,
) -> Vec<(String, Vec<usize>)> {
    let mut want: Vec<(String, Vec<usize>)> = [
        ("clip_proj.weight", vec![v, clip_out]),
        ("clip_proj.bias", vec![v]),
        ("clip_proj_norm.weight", vec![v]),
        ("clip_proj_norm.bias", vec![v]),
        ("visual_query.weight", vec![query_len, v]),
        ("visual_proj.weight", vec![dim, v]),
        ("visual_proj.bias", vec![dim]),
        ("visual_proj_norm.weight", vec![dim]),
        ("visual_proj_norm.bias", vec![dim]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect();
    for i in 0..depth {
        for (n, s) in [
            ("norm1.weight", vec![v]),
            ("norm1.bias", vec![v]),
            ("attn.qkv.weight", vec![3 * v, v]),
            ("attn.qkv.bias", vec![3 * v]),
            ("attn.proj.weight", vec![v, v]),
            ("attn.proj.bias", vec![v]),
            ("norm2.weight", vec![v]),
            ("norm2.bias", vec![v]),
            ("mlp.fc1.weight", vec![hidden, v]),
            ("mlp.fc1.bias", vec![hidden]),
            ("mlp.fc2.weight", vec![v, hidden]),
            ("mlp.fc2.bias", vec![v]),
        ] {
            want.push((format!("visual_blocks.{i}.{n}"), s));
        }
    }
    want
}

/// Adds weights to a graph by canonical name.
pub(crate) struct Builder<'a> {
    pub g: Graph,
    pub store: &'a WeightStore,
}

impl<'a> Builder<'a> {
    pub fn new(name: &str, store: &'a WeightStore) -> Builder<'a> {
        Builder {
            g: Graph::new(name),
            store,
        }
    }

    pub fn w(&mut self, name: &str) -> TensorId {
        self.w_elem(name, Elem::Act)
    }

    pub fn w_elem(&mut self, name: &str, elem: Elem) -> TensorId {
        let i = self
            .store
            .id(name)
            .unwrap_or_else(|| panic!("weight '{name}' was validated at load but is absent"));
        let shape = self.store.tensors[i].shape.clone();
        self.g.weight(name, &shape, elem, i)
    }

    pub fn w_opt(&mut self, name: &str) -> Option<TensorId> {
        self.store.contains(name).then(|| self.w(name))
    }

    /// A linear layer's weight: plain, or quantized values with their scales and zero points.
    pub fn matrix(&mut self, name: &str) -> (TensorId, Option<QuantRef>) {
        match self.store.quant_info(name) {
            None => (self.w(name), None),
            Some((format, in_features)) => {
                let i = self.store.id(name).expect("quantized values present");
                let out_features = self.store.tensors[i].shape[0];
                let w = self
                    .g
                    .weight(name, &[out_features, in_features], Elem::Quant, i);
                let scales = self.w(&format!("{name}.scales"));
                let zeros_name = format!("{name}.zeros");
                let zeros = self
                    .store
                    .contains(&zeros_name)
                    .then(|| self.w_elem(&zeros_name, Elem::Quant));
                (
                    w,
                    Some(QuantRef {
                        format,
                        scales,
                        zeros,
                    }),
                )
            }
        }
    }

    pub fn linear(&mut self, x: TensorId, w: &str, bias: Option<&str>, out_name: &str) -> TensorId {
        let (wt, quant) = self.matrix(w);
        let bias = bias.and_then(|b| self.w_opt(b));
        let rows = self.g.desc(x).shape[0];
        let out_f = self.g.desc(wt).shape[0];
        let out = self.g.activation(out_name, &[rows, out_f]);
        self.g.push(Op::Linear {
            x,
            w: wt,
            quant,
            bias,
            out,
        });
        out
    }

    pub fn layernorm(&mut self, x: TensorId, prefix: &str, eps: f32) -> TensorId {
        let weight = self.w(&format!("{prefix}.weight"));
        let bias = self.w(&format!("{prefix}.bias"));
        let shape = self.g.desc(x).shape.clone();
        let out = self.g.activation(&format!("{prefix}.out"), &shape);
        self.g.push(Op::LayerNorm {
            x,
            weight,
            bias,
            out,
            eps,
        });
        out
    }

    fn add(&mut self, a: TensorId, b: TensorId, name: &str) -> TensorId {
        let shape = self.g.desc(a).shape.clone();
        let out = self.g.activation(name, &shape);
        self.g.push(Op::Add { a, b, out });
        out
    }

    fn concat(&mut self, a: TensorId, b: TensorId, name: &str) -> TensorId {
        let (ra, rb) = (self.g.desc(a).shape[0], self.g.desc(b).shape[0]);
        let cols = self.g.desc(a).shape[1];
        let out = self.g.activation(name, &[ra + rb, cols]);
        self.g.push(Op::ConcatRows { a, b, out });
        out
    }

    /// A pre-LN transformer block: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
    #[allow(clippy::too_many_arguments)]
    fn encoder_block(
        &mut self,
        x: TensorId,
        names: &BlockNames,
        prefix: &str,
        n_heads: usize,
        eps: f32,
        quick_gelu: bool,
    ) -> TensorId {
        let p = |s: &str| format!("{prefix}.{s}");
        let h = self.layernorm(x, &p(names.ln1), eps);
        let qkv = self.linear(h, &p(names.qkv_w), Some(&p(names.qkv_b)), &p("qkv"));
        let shape = self.g.desc(x).shape.clone();
        let att = self.g.activation(&p("attn.out"), &shape);
        self.g.push(Op::VisionAttention {
            qkv,
            out: att,
            n_heads,
        });
        let o = self.linear(
            att,
            &p(names.out_w),
            Some(&p(names.out_b)),
            &p("attn.proj.out"),
        );
        let x = self.add(x, o, &p("resid1"));
        let h = self.layernorm(x, &p(names.ln2), eps);
        let f = self.linear(h, &p(names.fc1_w), Some(&p(names.fc1_b)), &p("fc1.out"));
        let fshape = self.g.desc(f).shape.clone();
        let a = self.g.activation(&p("act"), &fshape);
        self.g.push(if quick_gelu {
            Op::QuickGelu { x: f, out: a }
        } else {
            Op::Gelu { x: f, out: a }
        });
        let f2 = self.linear(a, &p(names.fc2_w), Some(&p(names.fc2_b)), &p("fc2.out"));
        self.add(x, f2, &p("resid2"))
    }
}

struct BlockNames {
    ln1: &'static str,
    qkv_w: &'static str,
    qkv_b: &'static str,
    out_w: &'static str,
    out_b: &'static str,
    ln2: &'static str,
    fc1_w: &'static str,
    fc1_b: &'static str,
    fc2_w: &'static str,
    fc2_b: &'static str,
}

const CLIP_BLOCK: BlockNames = BlockNames {
    ln1: "ln_1",
    qkv_w: "attn.in_proj_weight",
    qkv_b: "attn.in_proj_bias",
    out_w: "attn.out_proj.weight",
    out_b: "attn.out_proj.bias",
    ln2: "ln_2",
    fc1_w: "mlp.c_fc.weight",
    fc1_b: "mlp.c_fc.bias",
    fc2_w: "mlp.c_proj.weight",
    fc2_b: "mlp.c_proj.bias",
};

const RESAMPLER_BLOCK: BlockNames = BlockNames {
    ln1: "norm1",
    qkv_w: "attn.qkv.weight",
    qkv_b: "attn.qkv.bias",
    out_w: "attn.proj.weight",
    out_b: "attn.proj.bias",
    ln2: "norm2",
    fc1_w: "mlp.fc1.weight",
    fc1_b: "mlp.fc1.bias",
    fc2_w: "mlp.fc2.weight",
    fc2_b: "mlp.fc2.bias",
};

/// Name of the vision graph's input: normalized pixels `[3, S, S]`, f32.
pub const PIXELS: &str = "pixels";

/// pixels → visual_query `[query_len, dim]` (the graph's only output).
pub fn build_vision_graph(store: &WeightStore, vis: &VisualConfig, query_len: usize) -> Graph {
    let clip = &vis.clip;
    let s = clip.image_size;
    let p = clip.patch_size;
    let grid = s / p;
    let mut b = Builder::new("vision", store);
    let pixels = b.g.input(PIXELS, &[3, s, s], Elem::F32);
    let patches = b.g.activation("patches", &[grid * grid, 3 * p * p]);
    b.g.push(Op::Im2ColPatches {
        pixels,
        out: patches,
        patch: p,
    });
    let emb = b.linear(patches, "clip.visual.conv1.weight", None, "patch_embed");
    let class = b.w("clip.visual.class_embedding");
    let tokens = b.concat(class, emb, "tokens");
    let pos = b.w("clip.visual.positional_embedding");
    let x = b.add(tokens, pos, "tokens_pos");
    let mut x = b.layernorm(x, "clip.visual.ln_pre", clip.ln_eps);
    for i in 0..clip.layers {
        let prefix = format!("clip.visual.transformer.resblocks.{i}");
        x = b.encoder_block(x, &CLIP_BLOCK, &prefix, clip.heads, clip.ln_eps, true);
    }
    let x = b.layernorm(x, "clip.visual.ln_post", clip.ln_eps);
    let feats = b.linear(x, "clip.visual.proj_t", None, "clip_features");
    let feats = b.linear(
        feats,
        "clip_proj.weight",
        Some("clip_proj.bias"),
        "clip_proj.out",
    );
    let feats = b.layernorm(feats, "clip_proj_norm", vis.ln_eps);
    let query = b.w("visual_query.weight");
    let mut x = b.concat(query, feats, "resampler_in");
    for i in 0..vis.v_depth {
        x = b.encoder_block(
            x,
            &RESAMPLER_BLOCK,
            &format!("visual_blocks.{i}"),
            vis.v_num_heads,
            vis.ln_eps,
            false,
        );
    }
    let v = vis.v_embed_dim;
    let first = b.g.activation("resampler_queries", &[query_len, v]);
    b.g.push(Op::SliceRows {
        x,
        start: 0,
        step: 1,
        out: first,
    });
    let out = b.linear(
        first,
        "visual_proj.weight",
        Some("visual_proj.bias"),
        "visual_proj.out",
    );
    let out = b.layernorm(out, "visual_proj_norm", vis.ln_eps);
    b.g.mark_output(out);
    b.g
}
