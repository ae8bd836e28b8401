//! The fuzz entry points, shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and the
//! regression replay (`tests/fuzz_regressions.rs`), so that a committed crasher is replayed
//! through exactly the code the fuzzer ran. Every entry takes any bytes and must return without
//! a panic, an abort, a hang or an unbounded allocation; errors are expected and ignored.
//!
//! Targets that read files write the fuzzed bytes into a scratch folder per thread (under
//! `TMPDIR`; point it at `/dev/shm` for speed) next to fixed, valid companion files, so the
//! loader runs the same path a user's folder takes.
#![allow(dead_code)]

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use lav2::model::config::{AdapterConfig, ChannelOrder, ModelConfig};
use lav2::model::{LoadOptions, Model};

/// A fuzz entry: any bytes in, no panic out.
pub type Entry = fn(&[u8]);

/// Every target by name (the name of its folder under `fuzz/regressions/`).
pub const TARGETS: &[(&str, Entry)] = &[
    ("pth_reader", pth_reader),
    ("sentencepiece", sentencepiece),
    ("safetensors_load", safetensors_load),
    ("config_json", config_json),
    ("image_decode", image_decode),
];

/// PyTorch checkpoints: the pickle machine in both modes, the archive reader, every tensor of
/// a checkpoint that opened, and the adapter converter's plan.
pub fn pth_reader(data: &[u8]) {
    use lav2::convert::adapter::{self, AdapterOptions};
    use lav2::convert::pickle;
    use lav2::convert::pth::Checkpoint;
    let _ = pickle::parse(data, pickle::Options { torchscript: false });
    let _ = pickle::parse(data, pickle::Options { torchscript: true });
    if let Ok(c) = Checkpoint::from_bytes("fuzz", data.to_vec()) {
        for (path, t) in c.tensors() {
            let _ = c.raw(t);
            let _ = c.read_f32(&path, t);
        }
        let _ = adapter::plan(&c, None, &AdapterOptions::default());
        let _ = lav2::convert::describe::describe_checkpoint(&c);
    }
}

/// Sentencepiece model files.
pub fn sentencepiece(data: &[u8]) {
    use lav2::convert::spm::SpModel;
    if let Ok(m) = SpModel::parse(data) {
        let _ = m.to_hf_json();
        let _ = m.describe();
    }
}

/// A safetensors file with a fuzzed header and data, loaded as a model folder would be.
/// First byte: 0 → the base model's `model.safetensors` (next to a valid tiny `params.json`),
/// 1 → an adapter's `adapter.safetensors` (next to a valid chat-form `adapter_config.json`, on
/// a valid tiny base), 2 → the tensor reader alone, every tensor read as f32, 3 → a visual
/// adapter's `adapter.safetensors` (next to a valid tiny visual `adapter_config.json`).
pub fn safetensors_load(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    with_scratch(|s| match mode % 4 {
        0 => {
            write(&s.join("st_base/model.safetensors"), rest);
            let _ = Model::load(&s.join("st_base"), None, &LoadOptions::default());
        }
        1 | 3 => {
            let folder = if mode % 4 == 1 {
                "st_adapter"
            } else {
                "st_visual"
            };
            write(&s.join(folder).join("adapter.safetensors"), rest);
            let _ = Model::load(
                &s.join("base"),
                Some(&s.join(folder)),
                &LoadOptions::default(),
            );
        }
        _ => {
            let path = s.join("st_raw.safetensors");
            write(&path, rest);
            if let Ok(files) = lav2::model::weights::TensorFiles::open(&[path]) {
                let names: Vec<String> = files.names().map(str::to_string).collect();
                for name in names {
                    if let Ok(t) = files.get_any(&name) {
                        let _ = t.to_f32();
                    }
                }
                let _ = files.total_bytes();
            }
        }
    });
}

/// The JSON configurations, parsed, validated and then used to load a valid tiny model.
/// First byte: 0 → `params.json` (Meta), 1 → `config.json` (Hugging Face),
/// 2 → `adapter_config.json` (with a valid chat-form adapter file on a valid tiny base),
/// 3 → `adapter_config.json` (with a valid tiny visual adapter file on a valid tiny base).
pub fn config_json(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    with_scratch(|s| match mode % 4 {
        0 => {
            let path = s.join("cfg_meta/params.json");
            write(&path, rest);
            if ModelConfig::from_meta(&path).is_ok() {
                let _ = Model::load(&s.join("cfg_meta"), None, &LoadOptions::default());
            }
        }
        1 => {
            let path = s.join("cfg_hf/config.json");
            write(&path, rest);
            if ModelConfig::from_hf(&path).is_ok() {
                let _ = Model::load(&s.join("cfg_hf"), None, &LoadOptions::default());
            }
        }
        m => {
            let folder = if m == 2 { "cfg_adapter" } else { "cfg_visual" };
            let path = s.join(folder).join("adapter_config.json");
            write(&path, rest);
            if AdapterConfig::load(&path).is_ok() {
                let _ = Model::load(
                    &s.join("base"),
                    Some(&s.join(folder)),
                    &LoadOptions::default(),
                );
            }
        }
    });
}

/// An image file through `lav2::io::image::load_image` (decode, resize, crop, normalize).
/// First byte: bits 0-5 choose the crop size (1..=64), bit 6 the channel order.
pub fn image_decode(data: &[u8]) {
    let Some((&b, rest)) = data.split_first() else {
        return;
    };
    let size = 1 + (b & 63) as usize;
    let order = if b & 64 == 0 {
        ChannelOrder::Rgb
    } else {
        ChannelOrder::Bgr
    };
    with_scratch(|s| {
        let path = s.join("image.bin");
        write(&path, rest);
        let _ = lav2::io::image::load_image(&path, size, order);
    });
}

// ---------------------------------------------------------------------------------------------
// The tiny valid model the companion files describe: dim 8, 1 layer, 2 heads, vocab 4, FFN 24.

pub const TINY_PARAMS: &str = r#"{"dim": 8, "n_layers": 1, "n_heads": 2, "n_kv_heads": 2, "vocab_size": 4, "multiple_of": 4, "norm_eps": 1e-5, "rope_theta": 10000.0, "max_seq_len": 64}"#;

pub const TINY_HF_CONFIG: &str = r#"{"model_type": "llama", "hidden_act": "silu", "hidden_size": 8, "num_attention_heads": 2, "num_key_value_heads": 2, "num_hidden_layers": 1, "vocab_size": 4, "intermediate_size": 24, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": false}"#;

/// Chat form: biases on all seven linears, input scales, LoRA rank 2, prompts in the one layer.
pub const TINY_ADAPTER_CONFIG: &str = r#"{"format": "llama-adapter-v2", "query_len": 2, "query_layer": 1, "w_bias": true, "w_lora": true, "lora_rank": 2, "w_new_gate": true, "scale_form": "input", "gate_activation": "tanh"}"#;

/// A tiny CLIP (4 px, patches of 2, width 4, one layer) and a one-block resampler.
pub const TINY_VISUAL_ADAPTER_CONFIG: &str = r#"{"format": "llama-adapter-v2", "query_len": 2, "query_layer": 1, "visual": {"clip": {"image_size": 4, "patch_size": 2, "width": 4, "layers": 1, "heads": 2, "output_dim": 4, "ln_eps": 1e-5}, "v_embed_dim": 4, "v_depth": 1, "v_num_heads": 2, "v_mlp_ratio": 2.0, "ln_eps": 1e-5, "channel_order": "bgr"}}"#;

const LINEARS: [(&str, &str, usize, usize); 7] = [
    ("attention", "wq", 8, 8),
    ("attention", "wk", 8, 8),
    ("attention", "wv", 8, 8),
    ("attention", "wo", 8, 8),
    ("feed_forward", "w1", 24, 8),
    ("feed_forward", "w2", 8, 24),
    ("feed_forward", "w3", 24, 8),
];

pub fn tiny_meta_tensors() -> Vec<(String, Vec<usize>)> {
    let mut t = vec![
        ("tok_embeddings.weight".to_string(), vec![4, 8]),
        ("output.weight".to_string(), vec![4, 8]),
        ("norm.weight".to_string(), vec![8]),
        ("layers.0.attention_norm.weight".to_string(), vec![8]),
        ("layers.0.ffn_norm.weight".to_string(), vec![8]),
    ];
    for (group, name, out_f, in_f) in LINEARS {
        t.push((format!("layers.0.{group}.{name}.weight"), vec![out_f, in_f]));
    }
    t
}

pub fn tiny_hf_tensors() -> Vec<(String, Vec<usize>)> {
    let hf = |n: &str| match n {
        "wq" => "self_attn.q_proj",
        "wk" => "self_attn.k_proj",
        "wv" => "self_attn.v_proj",
        "wo" => "self_attn.o_proj",
        "w1" => "mlp.gate_proj",
        "w2" => "mlp.down_proj",
        _ => "mlp.up_proj",
    };
    let mut t = vec![
        ("model.embed_tokens.weight".to_string(), vec![4, 8]),
        ("lm_head.weight".to_string(), vec![4, 8]),
        ("model.norm.weight".to_string(), vec![8]),
        ("model.layers.0.input_layernorm.weight".to_string(), vec![8]),
        (
            "model.layers.0.post_attention_layernorm.weight".to_string(),
            vec![8],
        ),
    ];
    for (_, name, out_f, in_f) in LINEARS {
        t.push((
            format!("model.layers.0.{}.weight", hf(name)),
            vec![out_f, in_f],
        ));
    }
    t
}

/// The tensors `TINY_ADAPTER_CONFIG` asks for on the tiny base.
pub fn tiny_adapter_tensors() -> Vec<(String, Vec<usize>)> {
    let mut t = vec![
        ("adapter_query.weight".to_string(), vec![2, 8]),
        (
            "llama.layers.0.attention.gate".to_string(),
            vec![1, 2, 1, 1],
        ),
        ("llama.layers.0.attention.new_gate".to_string(), vec![1]),
    ];
    for (group, name, out_f, in_f) in LINEARS {
        let p = format!("llama.layers.0.{group}");
        t.push((format!("{p}.{name}_bias"), vec![out_f]));
        t.push((format!("{p}.{name}_scale"), vec![in_f]));
        t.push((format!("{p}.lora_{name}_l1.weight"), vec![2, in_f]));
        t.push((format!("{p}.lora_{name}_l2.weight"), vec![out_f, 2]));
    }
    t
}

/// The tensors `TINY_VISUAL_ADAPTER_CONFIG` asks for on the tiny base.
pub fn tiny_visual_adapter_tensors() -> Vec<(String, Vec<usize>)> {
    let mut t: Vec<(String, Vec<usize>)> = [
        ("adapter_query.weight", vec![2, 8]),
        ("llama.layers.0.attention.gate", vec![1, 2, 1, 1]),
        ("clip.visual.conv1.weight", vec![4, 3, 2, 2]),
        ("clip.visual.class_embedding", vec![4]),
        ("clip.visual.positional_embedding", vec![5, 4]),
        ("clip.visual.ln_pre.weight", vec![4]),
        ("clip.visual.ln_pre.bias", vec![4]),
        ("clip.visual.ln_post.weight", vec![4]),
        ("clip.visual.ln_post.bias", vec![4]),
        ("clip.visual.proj", vec![4, 4]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect();
    for (n, s) in [
        ("ln_1.weight", vec![4]),
        ("ln_1.bias", vec![4]),
        ("attn.in_proj_weight", vec![12, 4]),
        ("attn.in_proj_bias", vec![12]),
        ("attn.out_proj.weight", vec![4, 4]),
        ("attn.out_proj.bias", vec![4]),
        ("ln_2.weight", vec![4]),
        ("ln_2.bias", vec![4]),
        ("mlp.c_fc.weight", vec![16, 4]),
        ("mlp.c_fc.bias", vec![16]),
        ("mlp.c_proj.weight", vec![4, 16]),
        ("mlp.c_proj.bias", vec![4]),
    ] {
        t.push((format!("clip.visual.transformer.resblocks.0.{n}"), s));
    }
    t.extend(lav2::model::vision::resampler_tensors(4, 8, 1, 2, 4, 8));
    t
}

/// A safetensors file of f32 tensors with small finite values.
pub fn safetensors_bytes(tensors: &[(String, Vec<usize>)]) -> Vec<u8> {
    let mut header = String::from("{");
    let mut data = Vec::new();
    for (i, (name, shape)) in tensors.iter().enumerate() {
        let n: usize = shape.iter().product();
        let start = data.len();
        for k in 0..n {
            data.extend_from_slice(&(0.01 * ((k % 7) as f32 - 3.0)).to_le_bytes());
        }
        if i > 0 {
            header.push(',');
        }
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        header.push_str(&format!(
            "\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{start},{}]}}",
            dims.join(","),
            data.len()
        ));
    }
    header.push('}');
    while !(8 + header.len()).is_multiple_of(8) {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

// ---------------------------------------------------------------------------------------------
// Scratch folders.

static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SCRATCH: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("scratch write {}: {e}", path.display()));
}

/// This thread's scratch folder, made on first use with every fixed companion file.
fn with_scratch(f: impl FnOnce(&Path)) {
    SCRATCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let dir = std::env::temp_dir().join(format!(
                "lav2-fuzz-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            make_scratch(&dir);
            *slot = Some(dir);
        }
        f(slot.as_ref().unwrap());
    });
}

fn make_scratch(dir: &Path) {
    for sub in [
        "base",
        "st_base",
        "st_adapter",
        "cfg_meta",
        "cfg_hf",
        "cfg_adapter",
        "st_visual",
        "cfg_visual",
    ] {
        std::fs::create_dir_all(dir.join(sub)).expect("scratch folder");
    }
    let meta = safetensors_bytes(&tiny_meta_tensors());
    let adapter = safetensors_bytes(&tiny_adapter_tensors());
    write(&dir.join("base/params.json"), TINY_PARAMS.as_bytes());
    write(&dir.join("base/model.safetensors"), &meta);
    write(&dir.join("st_base/params.json"), TINY_PARAMS.as_bytes());
    write(
        &dir.join("st_adapter/adapter_config.json"),
        TINY_ADAPTER_CONFIG.as_bytes(),
    );
    write(&dir.join("cfg_meta/model.safetensors"), &meta);
    write(
        &dir.join("cfg_hf/model.safetensors"),
        &safetensors_bytes(&tiny_hf_tensors()),
    );
    write(&dir.join("cfg_adapter/adapter.safetensors"), &adapter);
    let visual = safetensors_bytes(&tiny_visual_adapter_tensors());
    write(
        &dir.join("st_visual/adapter_config.json"),
        TINY_VISUAL_ADAPTER_CONFIG.as_bytes(),
    );
    write(&dir.join("cfg_visual/adapter.safetensors"), &visual);
}

/// Removes this thread's scratch folder (the regression test calls it when done).
pub fn remove_scratch() {
    SCRATCH.with(|cell| {
        if let Some(dir) = cell.borrow_mut().take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    });
}
