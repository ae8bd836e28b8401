//! `lav2 info` on anything that is not a loadable model folder: PyTorch archives, safetensors
//! files, sentencepiece models, Meta checkpoint folders, adapter folders, CLIP folders.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::adapter;
use super::base::{plan_meta, shard_paths, Split};
use super::pth::{ArchiveKind, Checkpoint};
use super::source::{st_state_dict, state_dict_of, StFile, StateDict};
use super::spm::SpModel;
use crate::model::config::{AdapterConfig, ModelConfig};

/// At most this many tensors are listed one per line; the rest are counted.
const LIST_LIMIT: usize = 2000;

pub fn describe(path: &Path) -> Result<String> {
    if path.is_dir() {
        return describe_dir(path);
    }
    if !path.is_file() {
        bail!("{}: no such file or folder", path.display());
    }
    let mut head = [0u8; 8];
    {
        use std::io::Read;
        let mut f =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let n = f.read(&mut head)?;
        if n < 2 {
            bail!("{}: empty or too short to be a checkpoint", path.display());
        }
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if &head[..2] == b"PK" || matches!(ext.as_str(), "pth" | "pt" | "bin" | "ckpt") {
        let c = Checkpoint::open(path)?;
        return Ok(describe_checkpoint(&c));
    }
    if ext == "safetensors" {
        let f = StFile::open(path)?;
        return Ok(describe_state_dict(
            &f.name,
            "safetensors file",
            &st_state_dict(&f),
            None,
        ));
    }
    if ext == "model" {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let m = SpModel::parse(&bytes)
            .with_context(|| format!("{}: not a sentencepiece model", path.display()))?;
        return Ok(format!("{}: {}\n", path.display(), m.describe()));
    }
    if ext == "json" {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid JSON", path.display()))?;
        let what = if v.get("model").and_then(|m| m.get("vocab")).is_some() {
            "a Hugging Face tokenizer.json"
        } else if v.get("format").and_then(|f| f.as_str())
            == Some(crate::model::config::ADAPTER_FORMAT)
        {
            "an adapter_config.json"
        } else if v.get("dim").is_some() && v.get("n_layers").is_some() {
            "a Meta params.json"
        } else {
            "JSON"
        };
        return Ok(format!("{}: {what}\n", path.display()));
    }
    bail!(
        "{}: not a file lav2 knows (PyTorch .pth/.pt/.bin, .safetensors, sentencepiece .model, or a model folder)",
        path.display()
    )
}

fn human(n: usize) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// The kind of weights a set of tensor names suggests.
fn guess_kind(sd: &StateDict) -> Option<String> {
    let has = |n: &str| sd.contains_key(n);
    if has("tok_embeddings.weight") || has("layers.0.attention.wq.weight") {
        let layers = sd
            .keys()
            .filter_map(|k| {
                k.strip_prefix("layers.")?
                    .split('.')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .map_or(0, |m| m + 1);
        let mut missing: Vec<String> = ["tok_embeddings.weight", "norm.weight", "output.weight"]
            .iter()
            .filter(|n| !has(n))
            .map(|n| n.to_string())
            .collect();
        for l in 0..layers {
            for item in [
                "attention.wq.weight",
                "attention.wk.weight",
                "attention.wv.weight",
                "attention.wo.weight",
                "feed_forward.w1.weight",
                "feed_forward.w2.weight",
                "feed_forward.w3.weight",
                "attention_norm.weight",
                "ffn_norm.weight",
            ] {
                let n = format!("layers.{l}.{item}");
                if !has(&n) {
                    missing.push(n);
                }
            }
        }
        let mut s = format!("Meta LLaMA weights ({layers} layers)");
        if !missing.is_empty() {
            s.push_str(&format!(
                "\nmissing: {} tensor(s): {}{}",
                missing.len(),
                missing[..missing.len().min(5)].join(", "),
                if missing.len() > 5 { ", …" } else { "" }
            ));
        }
        return Some(s);
    }
    if has("model.embed_tokens.weight") {
        return Some("Hugging Face LLaMA weights".into());
    }
    if has("visual.conv1.weight") {
        return Some(
            "OpenAI CLIP (vision tower under visual.*): usable as `lav2 convert adapter --clip`"
                .into(),
        );
    }
    if has("vision_model.embeddings.patch_embedding.weight") {
        return Some(
            "Hugging Face CLIP: its folder is usable as `lav2 convert adapter --clip DIR`".into(),
        );
    }
    None
}

fn describe_state_dict(name: &str, what: &str, sd: &StateDict, extra: Option<String>) -> String {
    let mut s = String::new();
    let params: usize = sd.values().map(|t| t.numel()).sum();
    let mut dtypes: BTreeMap<String, usize> = BTreeMap::new();
    for t in sd.values() {
        *dtypes.entry(t.dtype_name()).or_default() += 1;
    }
    let dt: Vec<String> = dtypes.iter().map(|(d, n)| format!("{n} {d}")).collect();
    let _ = writeln!(
        s,
        "{name}: {what}, {} tensors, {} parameters ({})",
        sd.len(),
        human(params),
        dt.join(", ")
    );
    if let Some(k) = guess_kind(sd) {
        let _ = writeln!(s, "looks like: {k}");
    }
    if let Some(e) = extra {
        s.push_str(&e);
    }
    list(
        &mut s,
        sd.iter()
            .map(|(n, t)| (n.as_str(), t.dtype_name(), t.shape().to_vec())),
    );
    s
}

fn list<'a>(s: &mut String, items: impl Iterator<Item = (&'a str, String, Vec<usize>)>) {
    let items: Vec<_> = items.collect();
    let width = items.iter().map(|i| i.0.len()).max().unwrap_or(0).min(72);
    let _ = writeln!(s, "tensors:");
    for (n, d, shape) in items.iter().take(LIST_LIMIT) {
        let _ = writeln!(s, "  {n:<width$}  {d:<8} {shape:?}");
    }
    if items.len() > LIST_LIMIT {
        let _ = writeln!(s, "  … and {} more", items.len() - LIST_LIMIT);
    }
}

pub fn describe_checkpoint(c: &Checkpoint) -> String {
    let what = c.kind.name();
    let mut extra = String::new();
    // Non-tensor entries at the top (e.g. the authors' `config`).
    if let super::pickle::Value::Dict(items) = &c.root {
        for (k, v) in items {
            if super::pth::tensors_of(v).is_empty() {
                let _ = writeln!(extra, "entry {}: {}", k.brief(), v.brief());
            }
        }
    }
    if c.kind == ArchiveKind::TorchScript {
        if let super::pickle::Value::Object { class, .. } = &c.root {
            let _ = writeln!(extra, "TorchScript module: {class}");
        }
    }
    if let Some(a) = adapter::summarize(c) {
        extra.push_str(&a);
    }
    let sd = state_dict_of(c);
    describe_state_dict(&c.name, what, &sd, Some(extra))
}

fn describe_dir(dir: &Path) -> Result<String> {
    let mut s = String::new();
    let params = dir.join("params.json");
    let config = dir.join("config.json");
    let adapter_cfg = dir.join("adapter_config.json");
    let shards = shard_paths(dir).unwrap_or_default();
    let has_st = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .any(|e| e.path().extension().is_some_and(|x| x == "safetensors"));
    if adapter_cfg.is_file() {
        let _ = writeln!(s, "{}: LLaMA-Adapter folder", dir.display());
        match AdapterConfig::load(&adapter_cfg) {
            Ok(c) => {
                let _ = writeln!(
                    s,
                    "config: prompts {} x {} layers, bias {}, LoRA {}, new_gate {}, scales {:?}, gate {:?}, vision {}",
                    c.query_len,
                    c.query_layer,
                    c.w_bias,
                    if c.w_lora { format!("rank {}", c.lora_rank) } else { "no".into() },
                    c.w_new_gate,
                    c.scale_form,
                    c.gate_activation,
                    c.visual.as_ref().map_or("no".to_string(), |v| format!("CLIP {}px width {} x{}", v.clip.image_size, v.clip.width, v.clip.layers))
                );
            }
            Err(e) => {
                let _ = writeln!(s, "problem: {e:#}");
            }
        }
        let st = dir.join("adapter.safetensors");
        if st.is_file() {
            let f = StFile::open(&st)?;
            s.push_str(&describe_state_dict(
                &f.name,
                "adapter weights",
                &st_state_dict(&f),
                None,
            ));
        } else {
            let _ = writeln!(s, "missing: adapter.safetensors");
        }
        let _ = writeln!(
            s,
            "(load it with a base model: lav2 info --model BASE --adapter {})",
            dir.display()
        );
        return Ok(s);
    }
    if params.is_file() && !shards.is_empty() {
        let _ = writeln!(s, "{}: Meta LLaMA checkpoint folder ({} shard(s); convert with `lav2 convert base --from {} --out DIR`)", dir.display(), shards.len(), dir.display());
        match ModelConfig::from_meta(&params) {
            Ok(c) => {
                let _ = writeln!(
                    s,
                    "params: dim {}, layers {}, heads {} (kv {}), ffn {}",
                    c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.ffn_dim
                );
            }
            Err(e) => {
                let _ = writeln!(s, "problem: {e:#}");
            }
        }
        let tok = [dir.join("tokenizer.model"), dir.join("../tokenizer.model")]
            .into_iter()
            .find(|p| p.is_file());
        let _ = writeln!(
            s,
            "tokenizer.model: {}",
            tok.map_or("not found (here or in the parent folder)".into(), |p| p
                .display()
                .to_string())
        );
        let cks: Vec<Checkpoint> = shards
            .iter()
            .map(|p| Checkpoint::open(p))
            .collect::<Result<_>>()?;
        let plan = match plan_meta(&cks) {
            Ok(p) => p,
            Err(e) => {
                let _ = writeln!(s, "problem: {e:#}");
                return Ok(s);
            }
        };
        for sk in &plan.skipped {
            let _ = writeln!(s, "skipped on conversion: {sk}");
        }
        let _ = writeln!(s, "merged tensors (shapes after joining the shards):");
        for t in &plan.tensors {
            let how = match t.split {
                Split::Replicated => "replicated".to_string(),
                Split::Axis(a) => format!("joined on axis {a}"),
            };
            let _ = writeln!(s, "  {:<40} {:<8} {:?} {how}", t.name, t.dtype, t.shape);
        }
        return Ok(s);
    }
    if params.is_file() || config.is_file() {
        // A model folder `lav2 info --model` could not load: say why.
        let _ = writeln!(s, "{}: model folder", dir.display());
        if config.is_file() && !params.is_file() {
            let text = std::fs::read_to_string(&config).unwrap_or_default();
            if text.contains("vision_config") || text.contains("\"clip") {
                let _ = writeln!(s, "looks like: a Hugging Face CLIP folder (use it as `lav2 convert adapter --clip {}`)", dir.display());
            }
        }
        if !has_st {
            let _ = writeln!(s, "missing: *.safetensors weights");
        } else {
            match crate::model::Model::load(dir, None, &crate::model::LoadOptions::default()) {
                Ok(m) => {
                    let _ = writeln!(
                        s,
                        "loads: {} tensors, {} parameters",
                        m.weights.tensors.len(),
                        human(m.weights.total_params())
                    );
                }
                Err(e) => {
                    let _ = writeln!(s, "problem: {e:#}");
                }
            }
        }
        if !dir.join("tokenizer.json").is_file() {
            let _ = writeln!(
                s,
                "missing: tokenizer.json (convert one with `lav2 convert tokenizer`)"
            );
        }
        return Ok(s);
    }
    let _ = writeln!(s, "{}: not a model folder; files:", dir.display());
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let md = e.metadata().ok();
        let _ = writeln!(
            s,
            "  {}{}",
            e.file_name().to_string_lossy(),
            md.filter(|m| m.is_file())
                .map(|m| format!("  ({} bytes)", m.len()))
                .unwrap_or_else(|| "/".into())
        );
    }
    Ok(s)
}
