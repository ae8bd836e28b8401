//! Model and adapter configuration files: Meta `params.json`, Hugging Face `config.json`,
//! and our `adapter_config.json`. Every value we do not implement is refused by name.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// Which naming and RoPE convention the base checkpoint uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `params.json`, `tok_embeddings.weight`, …; RoPE rotates interleaved pairs (2i, 2i+1).
    Meta,
    /// `config.json`, `model.embed_tokens.weight`, …; RoPE rotates halves (i, i + d/2).
    HuggingFace,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Meta => "meta",
            Layout::HuggingFace => "hugging-face",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub layout: Layout,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// 0 until resolved from the embedding shape (Meta files may say -1).
    pub vocab_size: usize,
    pub ffn_dim: usize,
    pub norm_eps: f32,
    pub rope_theta: f32,
    pub max_seq_len: usize,
    pub tie_embeddings: bool,
    pub bos_id: u32,
    pub eos_id: u32,
}

/// Default context for checkpoints that do not state one (LLaMA's training length).
pub const DEFAULT_MAX_SEQ_LEN: usize = 2048;

/// Largest value any one dimension of a configuration may take (widths, layer and head counts,
/// vocabulary, FFN width, image size): 2^24, far above any released model, small enough that
/// products of a few of them cannot overflow before the memory plan compares them with the
/// device. Contexts are bounded by the memory plan instead (see [`MAX_CONTEXT`]).
pub const MAX_DIMENSION: usize = 1 << 24;

/// Largest context a configuration or `LoadOptions::max_seq_len` may state (2^31 tokens);
/// whether it fits is decided by the memory plan when a session opens.
pub const MAX_CONTEXT: usize = 1 << 31;

/// Largest CLIP input side an adapter configuration may state (pixels).
pub const MAX_IMAGE_SIZE: usize = 4096;

fn field<'a>(obj: &'a Value, file: &Path, name: &str) -> Result<&'a Value> {
    obj.get(name)
        .filter(|v| !v.is_null())
        .with_context(|| format!("{}: missing field '{name}'", file.display()))
}

fn usize_field(obj: &Value, file: &Path, name: &str) -> Result<usize> {
    let v = field(obj, file, name)?;
    let limit = if is_context_field(name) {
        MAX_CONTEXT
    } else {
        MAX_DIMENSION
    };
    match v.as_u64() {
        Some(x) if x > 0 && x <= limit as u64 => Ok(x as usize),
        Some(x) if x > 0 => bail!(
            "{}: field '{name}' is {x}, more than lav2 accepts ({limit})",
            file.display()
        ),
        _ => bail!(
            "{}: field '{name}' must be a positive integer, found {v}",
            file.display()
        ),
    }
}

fn is_context_field(name: &str) -> bool {
    matches!(name, "max_seq_len" | "max_position_embeddings")
}

fn opt_usize(obj: &Value, file: &Path, name: &str) -> Result<Option<usize>> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => usize_field(obj, file, name).map(Some),
    }
}

fn opt_f32(obj: &Value, file: &Path, name: &str) -> Result<Option<f32>> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && x > 0.0 => Ok(Some(x as f32)),
            _ => bail!(
                "{}: field '{name}' must be a positive number, found {v}",
                file.display()
            ),
        },
    }
}

fn check_heads(file: &Path, dim: usize, n_heads: usize, n_kv_heads: usize) -> Result<()> {
    if !dim.is_multiple_of(n_heads) {
        bail!(
            "{}: dim {dim} is not a multiple of n_heads {n_heads}",
            file.display()
        );
    }
    if !n_heads.is_multiple_of(n_kv_heads) {
        bail!(
            "{}: n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}",
            file.display()
        );
    }
    if !(dim / n_heads).is_multiple_of(2) {
        bail!(
            "{}: head dimension {} is odd; RoPE needs an even head dimension",
            file.display(),
            dim / n_heads
        );
    }
    Ok(())
}

impl ModelConfig {
    /// Reads `params.json` (Meta) or `config.json` (Hugging Face) from a model folder.
    /// A Meta `vocab_size: -1` stays 0 here; the loader takes it from the embedding shape.
    pub fn load(dir: &Path) -> Result<ModelConfig> {
        let meta = dir.join("params.json");
        let hf = dir.join("config.json");
        if meta.is_file() {
            Self::from_meta(&meta)
        } else if hf.is_file() {
            Self::from_hf(&hf)
        } else {
            bail!(
                "{}: neither params.json (Meta layout) nor config.json (Hugging Face layout) found",
                dir.display()
            )
        }
    }

    fn read_json(path: &Path) -> Result<Value> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))
    }

    pub fn from_meta(path: &Path) -> Result<ModelConfig> {
        let v = Self::read_json(path)?;
        let dim = usize_field(&v, path, "dim")?;
        let n_layers = usize_field(&v, path, "n_layers")?;
        let n_heads = usize_field(&v, path, "n_heads")?;
        let n_kv_heads = opt_usize(&v, path, "n_kv_heads")?.unwrap_or(n_heads);
        check_heads(path, dim, n_heads, n_kv_heads)?;
        // Meta's original params.json says -1 and lets the tokenizer decide.
        let vocab_size = match v.get("vocab_size").and_then(|x| x.as_i64()) {
            Some(x) if x > 0 && x <= MAX_DIMENSION as i64 => x as usize,
            Some(-1) | None => 0,
            Some(x) => bail!("{}: field 'vocab_size' is {x}", path.display()),
        };
        let multiple_of = opt_usize(&v, path, "multiple_of")?.unwrap_or(256);
        let ffn_multiplier = opt_f32(&v, path, "ffn_dim_multiplier")?;
        // LLaMA's FFN width: 2/3 of 4·dim, times an optional multiplier, rounded up.
        let mut hidden = 2 * (4 * dim) / 3;
        if let Some(m) = ffn_multiplier {
            let h = m as f64 * hidden as f64;
            if h > MAX_DIMENSION as f64 {
                bail!(
                    "{}: ffn_dim_multiplier {m} makes the FFN width {h}, more than lav2 accepts ({MAX_DIMENSION})",
                    path.display()
                );
            }
            hidden = h as usize;
        }
        let ffn_dim = multiple_of * hidden.div_ceil(multiple_of);
        if v.get("use_scaled_rope").and_then(|x| x.as_bool()) == Some(true) {
            bail!(
                "{}: 'use_scaled_rope: true' (LLaMA 3.1 RoPE scaling) is not supported",
                path.display()
            );
        }
        if v.get("moe").is_some() {
            bail!(
                "{}: field 'moe' (mixture of experts) is not supported",
                path.display()
            );
        }
        Ok(ModelConfig {
            layout: Layout::Meta,
            dim,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim: dim / n_heads,
            vocab_size,
            ffn_dim,
            norm_eps: opt_f32(&v, path, "norm_eps")?.unwrap_or(1e-5),
            rope_theta: opt_f32(&v, path, "rope_theta")?.unwrap_or(10000.0),
            max_seq_len: opt_usize(&v, path, "max_seq_len")?.unwrap_or(DEFAULT_MAX_SEQ_LEN),
            tie_embeddings: false,
            bos_id: 1,
            eos_id: 2,
        })
    }

    pub fn from_hf(path: &Path) -> Result<ModelConfig> {
        let v = Self::read_json(path)?;
        if let Some(t) = v.get("model_type").and_then(|x| x.as_str()) {
            if t != "llama" {
                bail!(
                    "{}: model_type '{t}' is not supported (only 'llama')",
                    path.display()
                );
            }
        }
        if let Some(act) = v.get("hidden_act").and_then(|x| x.as_str()) {
            if act != "silu" {
                bail!(
                    "{}: hidden_act '{act}' is not supported (only 'silu')",
                    path.display()
                );
            }
        }
        for flag in ["attention_bias", "mlp_bias"] {
            if v.get(flag).and_then(|x| x.as_bool()) == Some(true) {
                bail!("{}: '{flag}: true' is not supported", path.display());
            }
        }
        if v.get("rope_scaling").is_some_and(|x| !x.is_null()) {
            bail!(
                "{}: field 'rope_scaling' is set; only unscaled RoPE is supported",
                path.display()
            );
        }
        let dim = usize_field(&v, path, "hidden_size")?;
        let n_heads = usize_field(&v, path, "num_attention_heads")?;
        let n_kv_heads = opt_usize(&v, path, "num_key_value_heads")?.unwrap_or(n_heads);
        check_heads(path, dim, n_heads, n_kv_heads)?;
        if let Some(hd) = opt_usize(&v, path, "head_dim")? {
            if hd != dim / n_heads {
                bail!(
                    "{}: head_dim {hd} differs from hidden_size / num_attention_heads = {}",
                    path.display(),
                    dim / n_heads
                );
            }
        }
        let id = |name: &str, default: u32| -> u32 {
            v.get(name)
                .and_then(|x| x.as_u64())
                .map(|x| x as u32)
                .unwrap_or(default)
        };
        Ok(ModelConfig {
            layout: Layout::HuggingFace,
            dim,
            n_layers: usize_field(&v, path, "num_hidden_layers")?,
            n_heads,
            n_kv_heads,
            head_dim: dim / n_heads,
            vocab_size: usize_field(&v, path, "vocab_size")?,
            ffn_dim: usize_field(&v, path, "intermediate_size")?,
            norm_eps: opt_f32(&v, path, "rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta: opt_f32(&v, path, "rope_theta")?.unwrap_or(10000.0),
            max_seq_len: opt_usize(&v, path, "max_position_embeddings")?
                .unwrap_or(DEFAULT_MAX_SEQ_LEN),
            tie_embeddings: v
                .get("tie_word_embeddings")
                .and_then(|x| x.as_bool())
                .unwrap_or(false),
            bos_id: id("bos_token_id", 1),
            eos_id: id("eos_token_id", 2),
        })
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Shape `[out, in]` of a block's linear layer `name`, one of [`LINEARS`].
    pub fn linear_shape(&self, name: &str) -> (usize, usize) {
        let (d, h, kv, f) = (
            self.dim,
            self.n_heads * self.head_dim,
            self.kv_dim(),
            self.ffn_dim,
        );
        match name {
            "wq" => (h, d),
            "wk" | "wv" => (kv, d),
            "wo" => (d, h),
            "w1" | "w3" => (f, d),
            "w2" => (d, f),
            other => unreachable!("no linear layer {other}"),
        }
    }
}

/// The seven linear layers of a LLaMA block, by the authors' short names.
pub const LINEARS: [&str; 7] = ["wq", "wk", "wv", "wo", "w1", "w2", "w3"];

/// The module of a block that holds the linear layer `name` in the authors' checkpoints
/// (`layers.N.attention.wq`, `layers.N.feed_forward.w1`).
pub fn linear_group(name: &str) -> &'static str {
    match name {
        "w1" | "w2" | "w3" => "feed_forward",
        _ => "attention",
    }
}

/// How a linear layer's learned per-channel scale is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleForm {
    /// `W · (s ⊙ x)`: the LLaMA-Adapter V2 chat checkpoints.
    Input,
}

pub use crate::io::image::ChannelOrder;

/// What the per-head gate goes through before it scales the prompt attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GateActivation {
    /// `tanh(gate)`, as trained.
    #[default]
    Tanh,
    /// the raw gate, as the authors' V1 inference script applies it.
    Identity,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub output_dim: usize,
    #[serde(default = "default_ln_eps")]
    pub ln_eps: f32,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisualConfig {
    pub clip: ClipConfig,
    pub v_embed_dim: usize,
    pub v_depth: usize,
    pub v_num_heads: usize,
    pub v_mlp_ratio: f32,
    #[serde(default = "default_ln_eps")]
    pub ln_eps: f32,
    #[serde(default = "default_channel_order")]
    pub channel_order: ChannelOrder,
}

fn default_ln_eps() -> f32 {
    1e-5
}

fn default_channel_order() -> ChannelOrder {
    ChannelOrder::Bgr
}

/// `adapter_config.json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    pub format: String,
    pub query_len: usize,
    pub query_layer: usize,
    #[serde(default)]
    pub w_bias: bool,
    #[serde(default)]
    pub w_lora: bool,
    #[serde(default)]
    pub lora_rank: usize,
    #[serde(default)]
    pub w_new_gate: bool,
    #[serde(default)]
    pub scale_form: Option<ScaleForm>,
    #[serde(default)]
    pub gate_activation: GateActivation,
    #[serde(default)]
    pub visual: Option<VisualConfig>,
}

pub const ADAPTER_FORMAT: &str = "llama-adapter-v2";

impl AdapterConfig {
    pub fn load(path: &Path) -> Result<AdapterConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let cfg: AdapterConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            anyhow::anyhow!("{}: field '{field}': {}", path.display(), e.into_inner())
        })?;
        if cfg.format != ADAPTER_FORMAT {
            bail!(
                "{}: field 'format' is '{}', expected '{ADAPTER_FORMAT}'",
                path.display(),
                cfg.format
            );
        }
        let dims = [
            ("query_len", cfg.query_len),
            ("query_layer", cfg.query_layer),
            ("lora_rank", cfg.lora_rank),
        ];
        let vis_dims = cfg.visual.iter().flat_map(|v| {
            [
                ("visual.clip.image_size", v.clip.image_size),
                ("visual.clip.patch_size", v.clip.patch_size),
                ("visual.clip.width", v.clip.width),
                ("visual.clip.layers", v.clip.layers),
                ("visual.clip.heads", v.clip.heads),
                ("visual.clip.output_dim", v.clip.output_dim),
                ("visual.v_embed_dim", v.v_embed_dim),
                ("visual.v_depth", v.v_depth),
                ("visual.v_num_heads", v.v_num_heads),
            ]
        });
        for (name, x) in dims.into_iter().chain(vis_dims) {
            // The image is S×S pixels: its side gets a tighter bound than a width.
            let limit = if name == "visual.clip.image_size" {
                MAX_IMAGE_SIZE
            } else {
                MAX_DIMENSION
            };
            if x > limit {
                bail!(
                    "{}: field '{name}' is {x}, more than lav2 accepts ({limit})",
                    path.display()
                );
            }
        }
        if let Some(vis) = &cfg.visual {
            for (name, eps) in [
                ("visual.clip.ln_eps", vis.clip.ln_eps),
                ("visual.ln_eps", vis.ln_eps),
            ] {
                if !(eps.is_finite() && eps > 0.0) {
                    bail!(
                        "{}: field '{name}' must be a positive number, found {eps}",
                        path.display()
                    );
                }
            }
            if !(vis.v_mlp_ratio.is_finite() && vis.v_mlp_ratio > 0.0)
                || vis.v_mlp_ratio * vis.v_embed_dim as f32 > MAX_DIMENSION as f32
            {
                bail!(
                    "{}: field 'visual.v_mlp_ratio' must be a positive number with \
                     v_mlp_ratio · v_embed_dim ≤ {MAX_DIMENSION}, found {}",
                    path.display(),
                    vis.v_mlp_ratio
                );
            }
        }
        if cfg.w_lora && cfg.lora_rank == 0 {
            bail!("{}: 'w_lora' is true but 'lora_rank' is 0", path.display());
        }
        if let Some(vis) = &cfg.visual {
            let c = &vis.clip;
            if c.patch_size == 0 || c.image_size % c.patch_size != 0 {
                bail!(
                    "{}: visual.clip.image_size {} is not a multiple of patch_size {}",
                    path.display(),
                    c.image_size,
                    c.patch_size
                );
            }
            if c.heads == 0 || c.width % c.heads != 0 {
                bail!(
                    "{}: visual.clip.width {} is not a multiple of heads {}",
                    path.display(),
                    c.width,
                    c.heads
                );
            }
            if vis.v_num_heads == 0 || vis.v_embed_dim % vis.v_num_heads != 0 {
                bail!(
                    "{}: visual.v_embed_dim {} is not a multiple of v_num_heads {}",
                    path.display(),
                    vis.v_embed_dim,
                    vis.v_num_heads
                );
            }
        }
        Ok(cfg)
    }
}
