//! Loading a base LLaMA and an optional LLaMA-Adapter V2 into one validated weight store.

pub mod adapter;
pub mod config;
pub mod llama;
pub mod memory;
pub mod quant_io;
pub mod synthetic;
pub mod vision;
pub mod weights;

pub use config::{linear_group, LINEARS};
pub use weights::WeightStore;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::notice::OptionError;
use crate::quant::QuantFormat;
use crate::tensor::{shape_str, Bytes, HostTensor};
use adapter::{fold_linear, meta_rows_to_hf, AdapterFile, LinearDelta};
use config::{AdapterConfig, GateActivation, Layout, ModelConfig, ScaleForm};
use weights::TensorFiles;

/// The adapter as loaded: its configuration and which of its features were found.
#[derive(Clone)]
pub struct AdapterInfo {
    pub dir: PathBuf,
    pub config: AdapterConfig,
    /// First layer that receives prompts (`n_layers - query_layer`).
    pub first_prompt_layer: usize,
    pub features: Vec<String>,
}

/// A loaded model; a clone shares the weights' bytes.
#[derive(Clone)]
pub struct Model {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub adapter: Option<AdapterInfo>,
    pub weights: WeightStore,
    /// The options the context was asked for with (`max_seq_len`, a benchmark's contexts): a
    /// session that cannot hold it is an error naming them. `None`: the model's own context, and
    /// a session that cannot hold it takes the largest that fits, with a notice.
    pub context_setting: Option<&'static [&'static str]>,
}

/// Base-checkpoint names of one layer's tensors in each layout.
fn base_name(layout: Layout, layer: usize, what: &str) -> String {
    match layout {
        Layout::Meta => match what {
            "attention_norm" | "ffn_norm" => format!("layers.{layer}.{what}.weight"),
            w => format!("layers.{layer}.{}.{w}.weight", linear_group(w)),
        },
        Layout::HuggingFace => {
            let hf = match what {
                "attention_norm" => "input_layernorm",
                "ffn_norm" => "post_attention_layernorm",
                "wq" => "self_attn.q_proj",
                "wk" => "self_attn.k_proj",
                "wv" => "self_attn.v_proj",
                "wo" => "self_attn.o_proj",
                "w1" => "mlp.gate_proj",
                "w2" => "mlp.down_proj",
                "w3" => "mlp.up_proj",
                other => unreachable!("no such layer tensor {other}"),
            };
            format!("model.layers.{layer}.{hf}.weight")
        }
    }
}

/// Rows `[row0, row0 + rows)` of a 2-D tensor without copying.
fn row_block(t: &HostTensor, row0: usize, rows: usize) -> HostTensor {
    let cols = t.shape[1];
    let es = t.dtype.size();
    let (lo, hi) = (row0 * cols * es, (row0 + rows) * cols * es);
    let bytes = match &t.bytes {
        Bytes::Mapped { map, start, .. } => Bytes::Mapped {
            map: map.clone(),
            start: start + lo,
            end: start + hi,
        },
        other => Bytes::Owned(Arc::new(other.as_slice()[lo..hi].to_vec())),
    };
    HostTensor {
        shape: vec![rows, cols],
        dtype: t.dtype,
        bytes,
    }
}

pub(crate) fn transpose_f32(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Overrides the context length the configuration states.
    pub max_seq_len: Option<usize>,
    /// Quantizes the linear layers (after the adapter's folds) at load.
    pub quant: QuantFormat,
    /// Loads quantized linear layers made by `lav2 quantize` instead of quantizing.
    pub quantized_file: Option<PathBuf>,
    /// Skips the scan that refuses NaN / infinite weights (for trusted files).
    pub skip_finite_check: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            max_seq_len: None,
            quant: QuantFormat::None,
            quantized_file: None,
            skip_finite_check: false,
        }
    }
}

impl Model {
    pub fn load(dir: &Path, adapter_dir: Option<&Path>, opts: &LoadOptions) -> Result<Model> {
        let mut config = ModelConfig::load(dir)?;
        if let Some(n) = opts.max_seq_len {
            if n == 0 || n > config::MAX_CONTEXT {
                return Err(OptionError::new(
                    &["max_seq_len"],
                    format!(
                        "{{max_seq_len}} must be between 1 and {}, got {n}",
                        config::MAX_CONTEXT
                    ),
                )
                .into());
            }
            config.max_seq_len = n;
        }
        let files = TensorFiles::open(&base_weight_files(dir, config.layout)?)?;
        let mut weights = WeightStore::default();
        load_base(&mut config, &files, &mut weights)?;
        files.check_weights(!opts.skip_finite_check)?;
        let adapter = match adapter_dir {
            Some(a) => Some(load_adapter(&config, a, &mut weights, opts)?),
            None => None,
        };
        match (&opts.quantized_file, opts.quant) {
            (Some(_), q) if q != QuantFormat::None => {
                return Err(OptionError::new(
                    &["quantized_file", "quant"],
                    "{quantized_file} holds weights quantized already: leave {quant} at f16 \
                     with it",
                )
                .into())
            }
            (Some(file), _) => quant_io::load_quantized(file, &config, &mut weights)?,
            (None, QuantFormat::None) => {}
            (None, q) => quant_io::quantize_store(&config, &mut weights, q)?,
        }
        Ok(Model {
            dir: dir.to_path_buf(),
            config,
            adapter,
            weights,
            context_setting: opts.max_seq_len.map(|_| &["max_seq_len"][..]),
        })
    }

    pub fn has_visual(&self) -> bool {
        self.adapter
            .as_ref()
            .is_some_and(|a| a.config.visual.is_some())
    }
}

/// The safetensors files of a base model folder: those named as the layout names its weights
/// (`model*.safetensors` for Hugging Face, `consolidated*.safetensors` for Meta) when there are
/// any, else every `*.safetensors`. Other tensor files kept beside the weights (reference
/// logits, say) are not read; every tensor of the files that are read must be used.
fn base_weight_files(dir: &Path, layout: Layout) -> Result<Vec<PathBuf>> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read model folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    all.sort();
    if all.is_empty() {
        bail!("{}: no *.safetensors file found", dir.display());
    }
    let prefix = match layout {
        Layout::HuggingFace => "model",
        Layout::Meta => "consolidated",
    };
    let named: Vec<PathBuf> = all
        .iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .cloned()
        .collect();
    Ok(if named.is_empty() { all } else { named })
}

fn load_base(config: &mut ModelConfig, files: &TensorFiles, store: &mut WeightStore) -> Result<()> {
    let (embed_name, out_name, norm_name) = match config.layout {
        Layout::Meta => ("tok_embeddings.weight", "output.weight", "norm.weight"),
        Layout::HuggingFace => (
            "model.embed_tokens.weight",
            "lm_head.weight",
            "model.norm.weight",
        ),
    };
    // Tied checkpoints may store either matrix; the vocabulary size comes from whichever exists.
    let present = [embed_name, out_name]
        .into_iter()
        .find(|n| files.contains(n))
        .with_context(|| {
            format!(
                "missing tensor '{embed_name}' (and '{out_name}') in {}",
                files.describe_source()
            )
        })?;
    let shape = files.shape(present).unwrap().to_vec();
    if shape.len() != 2 || shape[1] != config.dim {
        bail!(
            "tensor '{present}' in {} has shape {}, expected [vocab, {}]",
            files.describe_source(),
            shape_str(&shape),
            config.dim
        );
    }
    if config.vocab_size == 0 {
        config.vocab_size = shape[0];
    }
    let (v, d) = (config.vocab_size, config.dim);
    let embed = match files.get_opt(embed_name, &[v, d])? {
        Some(t) => t,
        None if config.tie_embeddings || config.layout == Layout::HuggingFace => {
            files.get(out_name, &[v, d])?
        }
        None => files.get(embed_name, &[v, d])?,
    };
    let output = match files.get_opt(out_name, &[v, d])? {
        Some(t) => t,
        None if config.tie_embeddings => embed.clone(),
        None => files.get(out_name, &[v, d])?,
    };
    if !files.contains(embed_name) && !config.tie_embeddings && config.layout == Layout::Meta {
        bail!(
            "missing tensor '{embed_name}' in {}",
            files.describe_source()
        );
    }
    store.insert("tok_embeddings", embed);
    store.insert("output", output);
    store.insert("norm", files.get(norm_name, &[d])?);
    let (h, kv, f) = (
        config.n_heads * config.head_dim,
        config.kv_dim(),
        config.ffn_dim,
    );
    let mut used: std::collections::HashSet<String> = [embed_name, out_name, norm_name]
        .into_iter()
        .map(String::from)
        .collect();
    for l in 0..config.n_layers {
        for (what, shape) in [
            ("attention_norm", vec![d]),
            ("ffn_norm", vec![d]),
            ("wq", vec![h, d]),
            ("wk", vec![kv, d]),
            ("wv", vec![kv, d]),
            ("wo", vec![d, h]),
            ("w1", vec![f, d]),
            ("w2", vec![d, f]),
            ("w3", vec![f, d]),
        ] {
            let name = base_name(config.layout, l, what);
            let t = files.get(&name, &shape)?;
            store.insert(&format!("layers.{l}.{what}"), t);
            used.insert(name);
        }
    }
    // A tensor the layout has no place for would be silently ignored: refuse it instead.
    let unused: Vec<&str> = files.names().filter(|n| !used.contains(*n)).collect();
    if let Some(first) = unused.first() {
        let why = if first.ends_with("bias") {
            format!(
                "the {} layout has no biases (adapter biases belong in the adapter folder, with \
                 'w_bias')",
                config.layout.name()
            )
        } else {
            format!(
                "it is not a tensor of the {} layout with {} layers",
                config.layout.name(),
                config.n_layers
            )
        };
        bail!(
            "base model {} has tensor '{first}' that the model does not use ({} unused in all): {why}",
            files.describe_source(),
            unused.len()
        );
    }
    Ok(())
}

fn load_adapter(
    c: &ModelConfig,
    dir: &Path,
    store: &mut WeightStore,
    opts: &LoadOptions,
) -> Result<AdapterInfo> {
    let cfg = AdapterConfig::load(&dir.join("adapter_config.json"))?;
    let path = dir.join("adapter.safetensors");
    if !path.is_file() {
        bail!("{}: adapter.safetensors not found", dir.display());
    }
    let tensors = TensorFiles::open(&[path])?;
    // Gates, scales and prompts with NaN would silently turn every answer into garbage.
    tensors.check_weights(!opts.skip_finite_check)?;
    let mut file = AdapterFile::new(tensors);
    if cfg.query_layer > c.n_layers {
        bail!(
            "adapter_config.json: query_layer {} exceeds the base model's {} layers",
            cfg.query_layer,
            c.n_layers
        );
    }
    if cfg.query_layer > 0 && cfg.query_len == 0 {
        bail!("adapter_config.json: query_len must be positive when query_layer is");
    }
    let first_prompt_layer = c.n_layers - cfg.query_layer;
    let mut features = Vec::new();
    let chat_form = cfg.scale_form == Some(ScaleForm::Input);

    for l in 0..c.n_layers {
        let prompted = l >= first_prompt_layer;
        let mut deltas: HashMap<&str, LinearDelta> = HashMap::new();
        for name in LINEARS {
            let (out_f, in_f) = c.linear_shape(name);
            let group = linear_group(name);
            let mut delta = LinearDelta::default();
            if cfg.w_bias {
                let dotted = format!("layers.{l}.{group}.{name}.bias");
                let under = format!("layers.{l}.{group}.{name}_bias");
                let b = match file.get_opt(&dotted, &[out_f])? {
                    Some(t) => Some(t),
                    None => file.get_opt(&under, &[out_f])?,
                };
                // The multimodal checkpoints have no bias on wk / wv; the chat form has all seven.
                let required = chat_form || !matches!(name, "wk" | "wv");
                if b.is_none() && required {
                    file.get(&dotted, &[out_f], " ('w_bias' is true)")?;
                }
                delta.bias = b.map(|t| t.to_f32()).transpose()?;
            }
            if chat_form {
                let s = file.get(
                    &format!("layers.{l}.{group}.{name}_scale"),
                    &[in_f],
                    " ('scale_form' is \"input\")",
                )?;
                delta.input_scale = Some(s.to_f32()?);
            }
            if cfg.w_lora {
                let r = cfg.lora_rank;
                let why = " ('w_lora' is true)";
                let l1 = file.get(
                    &format!("layers.{l}.{group}.lora_{name}_l1.weight"),
                    &[r, in_f],
                    why,
                )?;
                let l2 = file.get(
                    &format!("layers.{l}.{group}.lora_{name}_l2.weight"),
                    &[out_f, r],
                    why,
                )?;
                delta.lora = Some((l1.to_f32()?, l2.to_f32()?));
            }
            deltas.insert(name, delta);
        }
        for (name, delta) in deltas.iter_mut() {
            apply_linear_delta(c, store, l, name, delta, prompted)?;
        }
        for norm in ["attention_norm", "ffn_norm"] {
            if let Some(t) = file.get_opt(&format!("layers.{l}.{norm}.weight"), &[c.dim])? {
                store.insert(&format!("layers.{l}.{norm}"), t);
            }
        }
        let gate_name = format!("layers.{l}.attention.gate");
        let new_gate_name = format!("layers.{l}.attention.new_gate");
        if prompted {
            let why = format!(" (layer {l} receives adapter prompts)");
            let gate = file.get(&gate_name, &[c.n_heads], &why)?.to_f32()?;
            let new_gate = if cfg.w_new_gate {
                file.get(&new_gate_name, &[1], " ('w_new_gate' is true)")?
                    .to_f32()?[0]
            } else {
                1.0
            };
            let scale: Vec<f32> = gate
                .iter()
                .map(|&g| match cfg.gate_activation {
                    GateActivation::Tanh => g.tanh() * new_gate,
                    GateActivation::Identity => g * new_gate,
                })
                .collect();
            store.insert(
                &format!("layers.{l}.gate"),
                HostTensor::from_f32(vec![c.n_heads], scale),
            );
        } else {
            // Every layer of the authors' model owns a gate; only prompted layers use it.
            file.skip(&gate_name);
            file.skip(&new_gate_name);
        }
    }
    if let Some(t) = file.get_opt("norm.weight", &[c.dim])? {
        store.insert("norm", t);
    }
    if cfg.query_layer > 0 {
        let q = file.get_exact(
            "adapter_query.weight",
            &[cfg.query_layer * cfg.query_len, c.dim],
        )?;
        for j in 0..cfg.query_layer {
            store.insert(
                &format!("adapter_query.{}", first_prompt_layer + j),
                row_block(&q, j * cfg.query_len, cfg.query_len),
            );
        }
        features.push(format!(
            "prompts: {} tokens in the last {} layers",
            cfg.query_len, cfg.query_layer
        ));
    }
    if cfg.w_bias {
        features.push("biases".into());
    }
    if chat_form {
        features.push("input scales".into());
    }
    if cfg.w_lora {
        features.push(format!("LoRA rank {}", cfg.lora_rank));
    }
    if cfg.w_new_gate {
        features.push("new_gate".into());
    }
    if (0..c.n_layers).any(|l| {
        file.resolve(&format!("layers.{l}.attention_norm.weight"))
            .is_some()
    }) {
        features.push("tuned norms".into());
    }
    if let Some(vis) = &cfg.visual {
        vision::load_visual(vis, &cfg, c, &mut file, store)?;
        features.push(format!(
            "vision: CLIP ViT {}px/{} width {} x{} layers, resampler {} blocks",
            vis.clip.image_size, vis.clip.patch_size, vis.clip.width, vis.clip.layers, vis.v_depth
        ));
    }
    let unused = file.unused();
    if let Some(first) = unused.first() {
        bail!(
            "adapter {} has tensor '{first}' that this configuration does not use ({} unused in all); \
             check adapter_config.json (w_bias, w_lora, scale_form, visual)",
            file.files.describe_source(),
            unused.len()
        );
    }
    Ok(AdapterInfo {
        dir: dir.to_path_buf(),
        config: cfg,
        first_prompt_layer,
        features,
    })
}

/// Folds one adapter delta into layer `l`'s linear `name`, and keeps the plain weight the
/// prompt K/V need when the token path's differs from it (LoRA is not applied to prompts).
fn apply_linear_delta(
    c: &ModelConfig,
    store: &mut WeightStore,
    l: usize,
    name: &str,
    delta: &mut LinearDelta,
    prompted: bool,
) -> Result<()> {
    let key = format!("layers.{l}.{name}");
    let (out_f, in_f) = c.linear_shape(name);
    // Authors' checkpoints are in Meta row order; an HF base has wq / wk rows permuted.
    let heads = match name {
        "wq" => c.n_heads,
        "wk" => c.n_kv_heads,
        _ => 0,
    };
    if c.layout == Layout::HuggingFace && heads > 0 {
        if let Some(b) = &delta.bias {
            delta.bias = Some(meta_rows_to_hf(b, heads, c.head_dim, 1));
        }
        if let Some((l1, l2)) = &delta.lora {
            let rank = l1.len() / in_f;
            delta.lora = Some((l1.clone(), meta_rows_to_hf(l2, heads, c.head_dim, rank)));
        }
    }
    if let Some(b) = &delta.bias {
        store.insert(
            &format!("{key}.bias"),
            HostTensor::from_f32(vec![out_f], b.clone()),
        );
    }
    let needs_prompt_copy = prompted && matches!(name, "wk" | "wv") && delta.lora.is_some();
    if delta.input_scale.is_none() && delta.lora.is_none() {
        return Ok(());
    }
    let w = store.get(&key).expect("base weight loaded").to_f32()?;
    if needs_prompt_copy {
        let plain = fold_linear(&w, out_f, in_f, delta.input_scale.as_deref(), None);
        store.insert(
            &format!("{key}.prompt"),
            HostTensor::from_f32(vec![out_f, in_f], plain),
        );
    }
    let folded = fold_linear(
        &w,
        out_f,
        in_f,
        delta.input_scale.as_deref(),
        delta.lora.as_ref(),
    );
    store.insert(&key, HostTensor::from_f32(vec![out_f, in_f], folded));
    Ok(())
}
