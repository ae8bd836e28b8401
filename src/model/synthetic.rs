//! Benchmark models with real shapes and generated weights: LLaMA-7B / 13B and a tiny one,
//! each with a LLaMA-Adapter V2 (prompts, biases, CLIP ViT + resampler). No download; a GPU
//! backend generates the weights on the device.

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::config::{
    AdapterConfig, ChannelOrder, ClipConfig, GateActivation, Layout, ModelConfig, VisualConfig,
};
use super::{AdapterInfo, Model, WeightStore, LINEARS};
use crate::notice::OptionError;
use crate::quant::{groups, QuantFormat};
use crate::tensor::{DType, HostTensor, Synthetic};

pub struct Preset {
    pub name: String,
    pub config: ModelConfig,
    pub adapter: AdapterConfig,
}

fn llama(
    dim: usize,
    n_layers: usize,
    n_heads: usize,
    n_kv_heads: usize,
    ffn_dim: usize,
    vocab: usize,
    ctx: usize,
) -> ModelConfig {
    ModelConfig {
        layout: Layout::Meta,
        dim,
        n_layers,
        n_heads,
        n_kv_heads,
        head_dim: dim / n_heads,
        vocab_size: vocab,
        ffn_dim,
        norm_eps: 1e-5,
        rope_theta: 10000.0,
        max_seq_len: ctx,
        tie_embeddings: false,
        bos_id: 1,
        eos_id: 2,
    }
}

fn adapter(
    query_len: usize,
    query_layer: usize,
    clip: ClipConfig,
    v_embed_dim: usize,
    v_depth: usize,
    v_num_heads: usize,
) -> AdapterConfig {
    AdapterConfig {
        format: super::config::ADAPTER_FORMAT.to_string(),
        query_len,
        query_layer,
        w_bias: true,
        w_lora: false,
        lora_rank: 16,
        w_new_gate: false,
        scale_form: None,
        gate_activation: GateActivation::Tanh,
        visual: Some(VisualConfig {
            clip,
            v_embed_dim,
            v_depth,
            v_num_heads,
            v_mlp_ratio: 4.0,
            ln_eps: 1e-5,
            channel_order: ChannelOrder::Bgr,
        }),
    }
}

/// CLIP ViT-L/14 at 224 px, as the released LLaMA-Adapter V2 uses.
fn vit_l14() -> ClipConfig {
    ClipConfig {
        image_size: 224,
        patch_size: 14,
        width: 1024,
        layers: 24,
        heads: 16,
        output_dim: 768,
        ln_eps: 1e-5,
    }
}

/// `7b`, `13b` (LLaMA shapes, 10 prompt tokens in all layers but the first, ViT-L/14, 8-block
/// resampler) or `tiny` (the same structure scaled down to run on a CPU in seconds).
pub fn preset(name: &str, ctx: usize) -> Result<Preset> {
    Ok(match name {
        "7b" => Preset {
            name: "7b".into(),
            config: llama(4096, 32, 32, 32, 11008, 32000, ctx),
            adapter: adapter(10, 31, vit_l14(), 768, 8, 16),
        },
        "13b" => Preset {
            name: "13b".into(),
            config: llama(5120, 40, 40, 40, 13824, 32000, ctx),
            adapter: adapter(10, 39, vit_l14(), 768, 8, 16),
        },
        "tiny" => Preset {
            name: "tiny".into(),
            config: llama(256, 4, 8, 4, 688, 4096, ctx),
            adapter: adapter(
                10,
                3,
                ClipConfig {
                    image_size: 56,
                    patch_size: 14,
                    width: 128,
                    layers: 2,
                    heads: 4,
                    output_dim: 96,
                    ln_eps: 1e-5,
                },
                96,
                2,
                4,
            ),
        },
        other => bail!("unknown preset '{other}' (expected 7b, 13b or tiny)"),
    })
}

/// Explicit LLaMA dimensions that replace a preset's (a benchmark of another shape).
#[derive(Clone, Copy, Debug, Default)]
pub struct ShapeOverrides {
    pub dim: Option<usize>,
    pub layers: Option<usize>,
    pub heads: Option<usize>,
    pub kv_heads: Option<usize>,
    pub ffn: Option<usize>,
    pub vocab: Option<usize>,
}

impl ShapeOverrides {
    pub fn is_empty(&self) -> bool {
        [
            self.dim,
            self.layers,
            self.heads,
            self.kv_heads,
            self.ffn,
            self.vocab,
        ]
        .iter()
        .all(Option::is_none)
    }
}

impl Preset {
    /// The preset with `o`'s dimensions; prompts stay in every layer but the first, as in the
    /// presets. Refuses shapes the model cannot have, naming the option.
    pub fn with_shape(mut self, o: &ShapeOverrides) -> Result<Preset> {
        if o.is_empty() {
            return Ok(self);
        }
        let c = &mut self.config;
        let heads_given = o.heads.is_some();
        c.dim = o.dim.unwrap_or(c.dim);
        c.n_layers = o.layers.unwrap_or(c.n_layers);
        c.n_heads = o.heads.unwrap_or(c.n_heads);
        // Without kv_heads, multi-head attention when the heads change, else the preset's.
        c.n_kv_heads = o
            .kv_heads
            .unwrap_or(if heads_given { c.n_heads } else { c.n_kv_heads });
        c.ffn_dim = o.ffn.unwrap_or(c.ffn_dim);
        c.vocab_size = o.vocab.unwrap_or(c.vocab_size);
        let refuse = |option: &str, text: String| Err(OptionError::new(&[option], text).into());
        for (option, v) in [
            ("dim", c.dim),
            ("layers", c.n_layers),
            ("heads", c.n_heads),
            ("kv_heads", c.n_kv_heads),
            ("ffn", c.ffn_dim),
            ("vocab", c.vocab_size),
        ] {
            if v == 0 {
                return refuse(option, format!("{{{option}}} must be positive"));
            }
        }
        if c.n_layers < 2 {
            return refuse(
                "layers",
                format!(
                    "{{layers}} {}: the adapter needs at least 2 layers (prompts skip the first)",
                    c.n_layers
                ),
            );
        }
        if !c.dim.is_multiple_of(c.n_heads) || !(c.dim / c.n_heads).is_multiple_of(2) {
            return refuse(
                "dim",
                format!(
                    "{{dim}} {} must split into {} heads of an even size",
                    c.dim, c.n_heads
                ),
            );
        }
        if !c.n_heads.is_multiple_of(c.n_kv_heads) {
            return refuse(
                "kv_heads",
                format!(
                    "{{kv_heads}} {} must divide the {} query heads",
                    c.n_kv_heads, c.n_heads
                ),
            );
        }
        if c.vocab_size < 3 {
            return refuse(
                "vocab",
                format!(
                    "{{vocab}} {} leaves no room beside BOS and EOS",
                    c.vocab_size
                ),
            );
        }
        c.head_dim = c.dim / c.n_heads;
        self.adapter.query_layer = c.n_layers - 1;
        self.name = format!("{} (custom)", self.name);
        Ok(self)
    }
}

struct Gen {
    store: WeightStore,
    seed: u64,
}

impl Gen {
    fn next_seed(&mut self) -> u64 {
        self.seed = crate::rng::nth(self.seed, 0x5EED);
        self.seed
    }

    /// Uniform with the variance of 1/in_features, so activations keep their scale layer to layer.
    fn matrix(&mut self, name: &str, out_f: usize, in_f: usize) {
        let amp = (3.0 / in_f as f32).sqrt();
        let seed = self.next_seed();
        self.store.insert(
            name,
            HostTensor::synthetic(
                vec![out_f, in_f],
                DType::F16,
                Synthetic::UniformF16 { seed, amp },
            ),
        );
    }

    fn quant_matrix(&mut self, name: &str, out_f: usize, in_f: usize, format: QuantFormat) {
        let amp = (3.0 / in_f as f32).sqrt();
        let ng = groups(in_f, format.group(in_f));
        let seed = self.next_seed();
        let (vshape, dtype, int8, step) = match format {
            QuantFormat::Int8 => (vec![out_f, in_f], DType::I8, true, amp / 127.0),
            _ => (vec![out_f, in_f.div_ceil(2)], DType::U8, false, amp / 7.0),
        };
        let values = HostTensor::synthetic(vshape, dtype, Synthetic::Bytes { seed, int8 });
        let scales = HostTensor::synthetic(
            vec![out_f, ng],
            DType::F16,
            Synthetic::ConstF16 { value: step },
        );
        let zeros = matches!(format, QuantFormat::Int4 { zero_point: true }).then(|| {
            HostTensor::synthetic(vec![out_f, ng], DType::U8, Synthetic::FillByte { value: 8 })
        });
        self.store.insert_quantized(
            name,
            crate::quant::QuantizedMatrix {
                format,
                out_features: out_f,
                in_features: in_f,
                values,
                scales,
                zeros,
            },
        );
    }

    fn vector(&mut self, name: &str, n: usize, amp: f32) {
        let seed = self.next_seed();
        self.store.insert(
            name,
            HostTensor::synthetic(vec![n], DType::F16, Synthetic::UniformF16 { seed, amp }),
        );
    }

    fn ones(&mut self, name: &str, n: usize) {
        self.store.insert(
            name,
            HostTensor::synthetic(vec![n], DType::F16, Synthetic::ConstF16 { value: 1.0 }),
        );
    }

    fn layernorm(&mut self, prefix: &str, n: usize) {
        self.ones(&format!("{prefix}.weight"), n);
        self.store.insert(
            &format!("{prefix}.bias"),
            HostTensor::synthetic(vec![n], DType::F16, Synthetic::ConstF16 { value: 0.0 }),
        );
    }

    fn linear(&mut self, prefix: &str, out_f: usize, in_f: usize) {
        self.matrix(&format!("{prefix}.weight"), out_f, in_f);
        self.vector(&format!("{prefix}.bias"), out_f, 0.02);
    }

    fn encoder_block(&mut self, p: &str, w: usize, hidden: usize, clip: bool) {
        let (ln1, ln2, qkv, out, fc1, fc2) = if clip {
            (
                "ln_1",
                "ln_2",
                "attn.in_proj",
                "attn.out_proj",
                "mlp.c_fc",
                "mlp.c_proj",
            )
        } else {
            (
                "norm1",
                "norm2",
                "attn.qkv",
                "attn.proj",
                "mlp.fc1",
                "mlp.fc2",
            )
        };
        self.layernorm(&format!("{p}.{ln1}"), w);
        self.layernorm(&format!("{p}.{ln2}"), w);
        if clip {
            self.matrix(&format!("{p}.{qkv}_weight"), 3 * w, w);
            self.vector(&format!("{p}.{qkv}_bias"), 3 * w, 0.02);
        } else {
            self.linear(&format!("{p}.{qkv}"), 3 * w, w);
        }
        self.linear(&format!("{p}.{out}"), w, w);
        self.linear(&format!("{p}.{fc1}"), hidden, w);
        self.linear(&format!("{p}.{fc2}"), w, hidden);
    }
}

/// The preset's model with generated weights; `quant` picks the linear layers' format.
pub fn build(p: &Preset, seed: u64, quant: QuantFormat, with_adapter: bool) -> Model {
    let c = &p.config;
    let mut g = Gen {
        store: WeightStore::default(),
        seed,
    };
    let d = c.dim;
    g.matrix("tok_embeddings", c.vocab_size, d);
    g.ones("norm", d);
    for l in 0..c.n_layers {
        g.ones(&format!("layers.{l}.attention_norm"), d);
        g.ones(&format!("layers.{l}.ffn_norm"), d);
        for name in LINEARS {
            let (o, i) = c.linear_shape(name);
            let full = format!("layers.{l}.{name}");
            if quant == QuantFormat::None {
                g.matrix(&full, o, i);
            } else {
                g.quant_matrix(&full, o, i, quant);
            }
            if with_adapter && !matches!(name, "wk" | "wv") {
                g.vector(&format!("{full}.bias"), o, 0.02);
            }
        }
    }
    if quant == QuantFormat::None {
        g.matrix("output", c.vocab_size, d);
    } else {
        g.quant_matrix("output", c.vocab_size, d, quant);
    }
    let adapter = with_adapter.then(|| {
        let a = &p.adapter;
        let first = c.n_layers - a.query_layer;
        for l in first..c.n_layers {
            g.matrix(&format!("adapter_query.{l}"), a.query_len, d);
            // Trained gates are small; 0.1 keeps the prompt term visible but not dominant.
            g.store.insert(
                &format!("layers.{l}.gate"),
                HostTensor::from_f32(vec![c.n_heads], vec![0.1f32.tanh(); c.n_heads]),
            );
        }
        let vis = a.visual.as_ref().expect("presets have vision");
        let clip = &vis.clip;
        let (w, pp) = (clip.width, clip.patch_size);
        let grid = clip.image_size / pp;
        g.matrix("clip.visual.conv1.weight", w, 3 * pp * pp);
        g.matrix("clip.visual.class_embedding", 1, w);
        g.matrix("clip.visual.positional_embedding", grid * grid + 1, w);
        g.layernorm("clip.visual.ln_pre", w);
        g.layernorm("clip.visual.ln_post", w);
        for i in 0..clip.layers {
            g.encoder_block(
                &format!("clip.visual.transformer.resblocks.{i}"),
                w,
                4 * w,
                true,
            );
        }
        g.matrix("clip.visual.proj_t", clip.output_dim, w);
        let v = vis.v_embed_dim;
        g.linear("clip_proj", v, clip.output_dim);
        g.layernorm("clip_proj_norm", v);
        g.matrix("visual_query.weight", a.query_len, v);
        for i in 0..vis.v_depth {
            g.encoder_block(
                &format!("visual_blocks.{i}"),
                v,
                (v as f32 * vis.v_mlp_ratio) as usize,
                false,
            );
        }
        g.linear("visual_proj", d, v);
        g.layernorm("visual_proj_norm", d);
        AdapterInfo {
            dir: PathBuf::from(format!("<synthetic {} adapter>", p.name)),
            config: a.clone(),
            first_prompt_layer: first,
            features: vec![
                format!(
                    "prompts: {} tokens in the last {} layers",
                    a.query_len, a.query_layer
                ),
                "biases".into(),
                "vision".into(),
            ],
        }
    });
    Model {
        dir: PathBuf::from(format!("<synthetic {}>", p.name)),
        config: c.clone(),
        adapter,
        weights: g.store,
        // The benchmark options that set the context (`crate::bench::BenchOptions`).
        context_setting: Some(&["decode_contexts", "prefill_lens", "decode_tokens"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_tiny_runs_on_the_cpu_and_is_deterministic() {
        let p = preset("tiny", 64).unwrap();
        let run = |quant| {
            let m = build(&p, 1, quant, true);
            let mut s =
                crate::session::Session::new(m, Box::new(crate::backend::cpu::CpuBackend::new()))
                    .unwrap();
            let size = s.image_size().unwrap();
            let vq = s.visual_query(&vec![0.5; 3 * size * size]).unwrap();
            s.set_visual_query(Some(&vq)).unwrap();
            s.forward(&[1, 2, 3, 4], 0, false).unwrap()
        };
        for quant in [
            QuantFormat::None,
            QuantFormat::Int8,
            QuantFormat::Int4 { zero_point: true },
        ] {
            let a = run(quant);
            assert!(a.iter().all(|v| v.is_finite()), "{quant:?}");
            assert_eq!(a, run(quant), "{quant:?}");
        }
        assert!(preset("70b", 64).is_err());
    }
}
