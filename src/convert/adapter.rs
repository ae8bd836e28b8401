//! `lav2 convert adapter`: the authors' adapter checkpoints to `adapter_config.json` +
//! `adapter.safetensors`.
//!
//! Kinds handled (all recognised from their tensor names, none by file name alone):
//! - V2 multimodal (BIAS-7B, LORA-BIAS-7B, CAPTION-7B, LORA-BIAS-7B-v21): `{'config': …,
//!   'model': {…}}` with `llama.layers.N.attention.wq.bias`, LoRA `lora_wq_l1.weight`,
//!   `new_gate`, tuned norms, gates, `adapter_query.weight`, `visual_query.weight`,
//!   `visual_blocks.*`, `clip_proj*`, `visual_proj*`;
//! - V2 chat 65B: `layers.N.attention.wq_bias` / `…_scale` (input scales), norms, no prompts;
//! - V1 (`llama_adapter_len10_layer30_release.pth`): flat `adapter_query.weight` and
//!   `layers.N.attention.gate` (per head, or one scalar per layer in the first release).
//!
//! Output names always carry the `llama.` prefix for the LLaMA part. A feature the checkpoint's
//! config switches on but whose tensors are partly absent is filled with the authors' initial
//! values (zero bias, unit scale, zero LoRA, `new_gate` 1), said on stderr; prompts without their
//! gates are refused (the authors' loader would silently use zero and switch the adapter off).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use super::clip::{self, ClipInput};
use super::pickle::Value;
use super::pth::Checkpoint;
use super::source::{state_dict_of, sub_state_dict, StateDict, TSrc};
use super::ConvertReport;
use crate::io::st_writer::{self, OutDType, Planned};
use crate::model::config::{AdapterConfig, ClipConfig, ModelConfig, ADAPTER_FORMAT};
use crate::model::{linear_group, LINEARS};
use crate::notice::Notice;

/// Options beyond the input file.
#[derive(Clone, Debug, Default)]
pub struct AdapterOptions {
    pub clip: Option<PathBuf>,
    pub base: Option<PathBuf>,
    pub query_len: Option<usize>,
    /// "tanh" | "identity"; default: identity for V1 checkpoints, tanh otherwise.
    pub gate_activation: Option<String>,
    pub v_num_heads: Option<usize>,
    pub clip_heads: Option<usize>,
    pub channel_order: Option<String>,
    pub text_only: bool,
}

/// The authors' visual resampler head count (`llama_adapter.load`: `v_num_heads=16`).
pub const DEFAULT_V_NUM_HEADS: usize = 16;
/// The V1 code's `ModelArgs.adapter_len` default, used when nothing else says the prompt length.
pub const V1_DEFAULT_QUERY_LEN: usize = 10;

fn linear(w: &str) -> Option<&'static str> {
    LINEARS.iter().copied().find(|x| *x == w)
}

/// What one checkpoint key means.
#[derive(Clone, Debug, PartialEq)]
enum Key {
    Gate(usize),
    NewGate(usize),
    Bias(usize, &'static str, bool /* underscore form */),
    Scale(usize, &'static str),
    Lora(usize, &'static str, u8),
    Norm(usize, &'static str),
    FinalNorm,
    AdapterQuery,
    Visual(String),
    Clip(String),
    BaseWeight,
    ClipOther,
    Unknown,
}

fn classify(name: &str) -> Key {
    if name == "adapter_query.weight" {
        return Key::AdapterQuery;
    }
    if let Some(rest) = name.strip_prefix("clip.visual.") {
        return Key::Clip(rest.to_string());
    }
    if name.starts_with("clip.") {
        return Key::ClipOther;
    }
    for v in [
        "visual_query.",
        "visual_blocks.",
        "clip_proj.",
        "clip_proj_norm.",
        "visual_proj.",
        "visual_proj_norm.",
    ] {
        if name.starts_with(v) {
            return Key::Visual(name.to_string());
        }
    }
    if name == "norm.weight" {
        return Key::FinalNorm;
    }
    if matches!(
        name,
        "tok_embeddings.weight" | "output.weight" | "rope.freqs"
    ) {
        return Key::BaseWeight;
    }
    let Some(rest) = name.strip_prefix("layers.") else {
        return Key::Unknown;
    };
    let Some((l, rest)) = rest.split_once('.') else {
        return Key::Unknown;
    };
    let Ok(l) = l.parse::<usize>() else {
        return Key::Unknown;
    };
    match rest {
        "attention.gate" => return Key::Gate(l),
        "attention.new_gate" => return Key::NewGate(l),
        "attention_norm.weight" => return Key::Norm(l, "attention_norm"),
        "ffn_norm.weight" => return Key::Norm(l, "ffn_norm"),
        _ => {}
    }
    let Some((grp, item)) = rest.split_once('.') else {
        return Key::Unknown;
    };
    if grp != "attention" && grp != "feed_forward" {
        return Key::Unknown;
    }
    let in_group = |w: &str| linear(w).filter(|w| linear_group(w) == grp);
    if let Some((w, what)) = item.split_once('.') {
        if let Some(w) = in_group(w) {
            return match what {
                "bias" => Key::Bias(l, w, false),
                "weight" => Key::BaseWeight,
                _ => Key::Unknown,
            };
        }
    }
    if let Some(x) = item
        .strip_prefix("lora_")
        .and_then(|x| x.strip_suffix(".weight"))
    {
        if let Some((w, side)) = x.rsplit_once('_') {
            if let (Some(w), Some(k)) = (
                in_group(w),
                side.strip_prefix('l').and_then(|k| k.parse::<u8>().ok()),
            ) {
                if k == 1 || k == 2 {
                    return Key::Lora(l, w, k);
                }
            }
        }
        return Key::Unknown;
    }
    if let Some(w) = item.strip_suffix("_bias").and_then(in_group) {
        return Key::Bias(l, w, true);
    }
    if let Some(w) = item.strip_suffix("_scale").and_then(in_group) {
        return Key::Scale(l, w);
    }
    Key::Unknown
}

/// A checkpoint's adapter tensors sorted by meaning.
#[derive(Default)]
struct Parsed<'a> {
    gates: BTreeMap<usize, (String, TSrc<'a>)>,
    new_gates: BTreeMap<usize, (String, TSrc<'a>)>,
    biases: BTreeMap<(usize, &'static str), (String, TSrc<'a>, bool)>,
    scales: BTreeMap<(usize, &'static str), (String, TSrc<'a>)>,
    lora: BTreeMap<(usize, &'static str, u8), (String, TSrc<'a>)>,
    norms: BTreeMap<(usize, &'static str), (String, TSrc<'a>)>,
    final_norm: Option<(String, TSrc<'a>)>,
    adapter_query: Option<(String, TSrc<'a>)>,
    visual: BTreeMap<String, (String, TSrc<'a>)>,
    clip: StateDict<'a>,
    base_weights: Vec<String>,
    clip_other: Vec<String>,
    unknown: Vec<String>,
    had_llama_prefix: bool,
    max_layer: Option<usize>,
}

impl<'a> Parsed<'a> {
    fn new(sd: &StateDict<'a>) -> Parsed<'a> {
        let mut p = Parsed::default();
        for (orig, src) in sd {
            let mut name = orig.as_str();
            if let Some(r) = name.strip_prefix("module.") {
                name = r;
            }
            if let Some(r) = name.strip_prefix("llama.") {
                p.had_llama_prefix = true;
                name = r;
            }
            let entry = (orig.clone(), *src);
            let key = classify(name);
            let layer = match &key {
                Key::Gate(l)
                | Key::NewGate(l)
                | Key::Bias(l, ..)
                | Key::Scale(l, _)
                | Key::Lora(l, ..)
                | Key::Norm(l, _) => Some(*l),
                _ => None,
            };
            if let Some(l) = layer {
                p.max_layer = Some(p.max_layer.map_or(l, |m: usize| m.max(l)));
            }
            match key {
                Key::Gate(l) => {
                    p.gates.insert(l, entry);
                }
                Key::NewGate(l) => {
                    p.new_gates.insert(l, entry);
                }
                Key::Bias(l, w, u) => {
                    p.biases.insert((l, w), (entry.0, entry.1, u));
                }
                Key::Scale(l, w) => {
                    p.scales.insert((l, w), entry);
                }
                Key::Lora(l, w, k) => {
                    p.lora.insert((l, w, k), entry);
                }
                Key::Norm(l, n) => {
                    p.norms.insert((l, n), entry);
                }
                Key::FinalNorm => p.final_norm = Some(entry),
                Key::AdapterQuery => p.adapter_query = Some(entry),
                Key::Visual(n) => {
                    p.visual.insert(n, entry);
                }
                Key::Clip(n) => {
                    p.clip.insert(format!("clip.visual.{n}"), *src);
                }
                Key::BaseWeight => p.base_weights.push(orig.clone()),
                Key::ClipOther => p.clip_other.push(orig.clone()),
                Key::Unknown => p.unknown.push(orig.clone()),
            }
        }
        p
    }

    fn has_visual(&self) -> bool {
        !self.visual.is_empty()
    }
}

/// Dimensions of the LLaMA the adapter belongs to, from `--base` or from the tensors.
#[derive(Clone, Debug)]
struct Dims {
    dim: usize,
    n_layers: usize,
    n_heads: usize,
    kv_dim: usize,
    ffn: Option<usize>,
    /// How the numbers were found, for messages.
    source: String,
}

impl Dims {
    fn shape(&self, w: &str) -> Result<(usize, usize)> {
        let ffn = || {
            self.ffn.ok_or_else(|| {
                anyhow!("the feed-forward width is not recorded in this checkpoint; pass --base BASE_DIR (its params.json)")
            })
        };
        Ok(match w {
            "wq" | "wo" => (self.dim, self.dim),
            "wk" | "wv" => (self.kv_dim, self.dim),
            "w1" | "w3" => (ffn()?, self.dim),
            "w2" => (self.dim, ffn()?),
            other => bail!("internal: no linear {other}"),
        })
    }
}

/// The analysis of a checkpoint: configuration, tensors to write, and what was noticed.
pub struct AdapterPlan<'a> {
    pub config: serde_json::Value,
    pub tensors: Vec<Planned<'a>>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
    pub kind: String,
}

fn squeeze(s: &[usize]) -> Vec<usize> {
    s.iter().copied().filter(|&d| d != 1).collect()
}

/// Parses `len10_layer30`-style numbers from the file name (the V1 release's naming).
fn name_number(file: &str, tag: &str) -> Option<usize> {
    let stem = Path::new(file).file_name()?.to_str()?;
    stem.match_indices(tag).find_map(|(i, _)| {
        let digits: String = stem[i + tag.len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().ok()
    })
}

/// Finds the state dict (and the authors' `config` dict) in a checkpoint's object.
pub fn locate(ckpt: &Checkpoint) -> Result<(StateDict<'_>, Option<&Value>)> {
    let root = &ckpt.root;
    if !matches!(root, Value::Dict(_)) {
        bail!(
            "{}: the checkpoint holds {} at the top, not a dict of tensors",
            ckpt.name,
            root.brief()
        );
    }
    for key in ["model", "state_dict"] {
        if let Some(v @ Value::Dict(_)) = root.get(key) {
            return Ok((sub_state_dict(ckpt, v), root.get("config")));
        }
    }
    Ok((state_dict_of(ckpt), root.get("config")))
}

/// Plans the conversion of one adapter checkpoint.
pub fn plan<'a>(
    ckpt: &'a Checkpoint,
    clip_input: Option<&'a ClipInput>,
    opts: &AdapterOptions,
) -> Result<AdapterPlan<'a>> {
    let file = ckpt.name.clone();
    let (sd, cfg) = locate(ckpt)?;
    if sd.is_empty() {
        bail!("{file}: the checkpoint holds no tensors");
    }
    let p = Parsed::new(&sd);
    // Every tensor that will be read must be a float type; say which one is not, first.
    for (name, src) in &sd {
        let ignored = p.base_weights.contains(name)
            || p.clip_other.contains(name)
            || p.unknown.contains(name);
        if let (false, TSrc::Pth(c, t)) = (ignored, src) {
            super::pth::check_float(&c.name, name, t.dtype())?;
        }
    }
    let cfg_flag = |k: &str| cfg.and_then(|c| c.get(k)).and_then(|v| v.as_bool());
    let mut warnings = Vec::new();
    let mut notes = Vec::new();

    // Which family is this?
    let chat = !p.scales.is_empty() || p.biases.values().any(|b| b.2);
    let v1 = !p.had_llama_prefix
        && !p.has_visual()
        && p.adapter_query.is_some()
        && p.biases.is_empty()
        && p.lora.is_empty()
        && !chat;
    let kind = if p.has_visual() {
        "LLaMA-Adapter V2 multimodal"
    } else if chat {
        "LLaMA-Adapter V2 chat (bias, scale, norm tuning)"
    } else if v1 {
        "LLaMA-Adapter V1"
    } else if p.adapter_query.is_some() {
        "LLaMA-Adapter V2 (text prompts)"
    } else {
        "LLaMA-Adapter V2 (bias / norm tuning)"
    };
    if p.gates.is_empty()
        && p.adapter_query.is_none()
        && p.biases.is_empty()
        && p.scales.is_empty()
        && p.lora.is_empty()
        && p.norms.is_empty()
        && !p.has_visual()
    {
        bail!(
            "{file}: no LLaMA-Adapter tensors found (no adapter_query, gates, biases, scales, LoRA or norms); \
             is this a base model? ({} tensors, first '{}')",
            sd.len(),
            sd.keys().next().map(String::as_str).unwrap_or("")
        );
    }

    // Dimensions.
    let base = match &opts.base {
        Some(dir) => Some(if dir.is_file() {
            ModelConfig::from_meta(dir)?
        } else {
            ModelConfig::load(dir)?
        }),
        None => None,
    };
    let dim_from_tensors = p
        .adapter_query
        .as_ref()
        .and_then(|(_, s)| s.shape().get(1).copied())
        .or_else(|| p.final_norm.as_ref().map(|(_, s)| s.numel()))
        .or_else(|| p.norms.values().next().map(|(_, s)| s.numel()))
        .or_else(|| {
            p.biases
                .iter()
                .find(|((_, w), _)| matches!(*w, "wq" | "wo" | "w2"))
                .map(|(_, b)| b.1.numel())
        })
        .or_else(|| {
            p.scales
                .iter()
                .find(|((_, w), _)| matches!(*w, "wq" | "w1"))
                .map(|(_, s)| s.1.numel())
        });
    let ffn_from_tensors = p
        .biases
        .iter()
        .find(|((_, w), _)| matches!(*w, "w1" | "w3"))
        .map(|(_, b)| b.1.numel())
        .or_else(|| {
            p.scales
                .iter()
                .find(|((_, w), _)| *w == "w2")
                .map(|(_, s)| s.1.numel())
        })
        .or_else(|| {
            p.lora
                .iter()
                .find(|((_, w, k), _)| matches!(*w, "w1" | "w3") && *k == 2)
                .and_then(|(_, s)| s.1.shape().first().copied())
        });
    let gate_heads = p.gates.values().map(|(_, s)| s.numel()).find(|&n| n > 1);
    let dims = match &base {
        Some(c) => {
            if let Some(d) = dim_from_tensors {
                if d != c.dim {
                    bail!("{file}: the adapter's tensors have width {d} but the base model's dim is {}", c.dim);
                }
            }
            if let Some(m) = p.max_layer {
                if m >= c.n_layers {
                    bail!("{file}: the adapter has tensors for layer {m} but the base model has {} layers", c.n_layers);
                }
            }
            if let Some(h) = gate_heads {
                if h != c.n_heads {
                    bail!(
                        "{file}: the adapter's gates have {h} heads but the base model has {}",
                        c.n_heads
                    );
                }
            }
            if let Some(f) = ffn_from_tensors {
                if f != c.ffn_dim {
                    bail!("{file}: the adapter's feed-forward tensors have width {f} but the base model's is {}", c.ffn_dim);
                }
            }
            Dims {
                dim: c.dim,
                n_layers: c.n_layers,
                n_heads: c.n_heads,
                kv_dim: c.kv_dim(),
                ffn: Some(c.ffn_dim),
                source: "the base model".into(),
            }
        }
        None => {
            let dim = dim_from_tensors.ok_or_else(|| anyhow!("{file}: cannot tell the model width from this checkpoint; pass --base BASE_DIR"))?;
            let n_layers = p
                .max_layer
                .map(|m| m + 1)
                .ok_or_else(|| anyhow!("{file}: no per-layer tensors, so the layer count is unknown; pass --base BASE_DIR"))?;
            let n_heads = match gate_heads {
                Some(h) => h,
                None if dim % 128 == 0 => dim / 128,
                None if p.gates.is_empty() => 1,
                None => bail!(
                    "{file}: the gates are one scalar per layer and the head count is unknown; pass --base BASE_DIR"
                ),
            };
            notes.push(format!(
                "dimensions from the checkpoint itself: dim {dim}, {n_layers} layers{} (pass --base to check them against the base model)",
                if gate_heads.is_none() && !p.gates.is_empty() { format!(", {n_heads} heads (LLaMA's head size 128)") } else { String::new() }
            ));
            Dims {
                dim,
                n_layers,
                n_heads,
                kv_dim: dim,
                ffn: ffn_from_tensors,
                source: "the checkpoint".into(),
            }
        }
    };
    if dims.n_heads == 0 || dims.dim % dims.n_heads != 0 {
        bail!(
            "{file}: width {} is not a multiple of {} heads",
            dims.dim,
            dims.n_heads
        );
    }

    let mut tensors: Vec<Planned<'a>> = Vec::new();
    let pre = |s: String| format!("llama.{s}");
    let check = |name: &str, src: &TSrc, want: &[usize]| -> Result<()> {
        if squeeze(src.shape()) != squeeze(want) {
            bail!(
                "{file}: tensor '{name}' has shape {:?}, expected {want:?} (from {})",
                src.shape(),
                dims.source
            );
        }
        Ok(())
    };
    let copy = |tensors: &mut Vec<Planned<'a>>,
                out: String,
                shape: Vec<usize>,
                (path, src): (String, TSrc<'a>)| {
        tensors.push(Planned::new(out, shape, move || src.read_f32(&path)));
    };

    // Prompts.
    let (query_len, query_layer) = match &p.adapter_query {
        None => (0, 0),
        Some((name, src)) => {
            let s = src.shape();
            if s.len() != 2 || s[1] != dims.dim || s[0] == 0 {
                bail!(
                    "{file}: '{name}' has shape {s:?}, expected [query_layer x query_len, {}]",
                    dims.dim
                );
            }
            let rows = s[0];
            let from_name = name_number(&file, "len");
            let ql = if let Some((_, vq)) = p.visual.get("visual_query.weight") {
                let q = vq.shape().first().copied().unwrap_or(0);
                if let Some(user) = opts.query_len {
                    if user != q {
                        bail!("--query-len {user} differs from visual_query.weight's {q} rows");
                    }
                }
                q
            } else if let Some(q) = opts.query_len {
                q
            } else if let Some(q) = from_name {
                notes.push(format!("prompt length {q} from the file name"));
                q
            } else {
                notes.push(format!(
                    "prompt length {V1_DEFAULT_QUERY_LEN} assumed (the authors' V1 default adapter_len); pass --query-len if it differs"
                ));
                V1_DEFAULT_QUERY_LEN
            };
            if ql == 0 || rows % ql != 0 {
                bail!("{file}: adapter_query.weight has {rows} rows, not a multiple of the prompt length {ql}");
            }
            let layers = rows / ql;
            if let Some(n) = name_number(&file, "layer") {
                if n != layers && p.visual.is_empty() {
                    bail!(
                        "{file}: the file name says {n} prompted layers but adapter_query.weight has {rows} rows = {layers} x {ql}; \
                         pass --query-len {}",
                        rows / n.max(1)
                    );
                }
            }
            if layers > dims.n_layers {
                bail!(
                    "{file}: adapter_query.weight holds prompts for {layers} layers but the model has {} layers",
                    dims.n_layers
                );
            }
            (ql, layers)
        }
    };
    let first_prompted = dims.n_layers - query_layer;

    // Gates: required where prompts go.
    for l in first_prompted..dims.n_layers {
        if !p.gates.contains_key(&l) {
            bail!(
                "{file}: the checkpoint has prompts (adapter_query.weight) for layers {first_prompted}..{} but no gate \
                 'llama.layers.{l}.attention.gate'; the authors' loader would silently use 0 and switch the adapter off, \
                 so lav2 refuses it",
                dims.n_layers - 1
            );
        }
    }
    let h = dims.n_heads;
    for (l, (name, src)) in &p.gates {
        let n = src.numel();
        if n != h && n != 1 {
            bail!("{file}: gate '{name}' has {n} values; expected {h} (one per head) or 1");
        }
        let (path, src) = (name.clone(), *src);
        if n == 1 && h > 1 && *l >= first_prompted {
            notes.push(
                "gates are one scalar per layer (the first V1 release); applied to every head"
                    .into(),
            );
        }
        tensors.push(Planned::new(
            pre(format!("layers.{l}.attention.gate")),
            vec![1, h, 1, 1],
            move || {
                let v = src.read_f32(&path)?;
                Ok(if v.len() == 1 { vec![v[0]; h] } else { v })
            },
        ));
    }
    notes.dedup();
    if query_layer == 0 && !p.gates.is_empty() {
        notes.push(format!(
            "{} gates kept though the checkpoint has no prompts (they are unused)",
            p.gates.len()
        ));
    }

    // new_gate: on when present, or when the authors' loader would create it (w_new_gate = w_lora).
    let w_new_gate =
        query_layer > 0 && (!p.new_gates.is_empty() || cfg_flag("w_lora") == Some(true));
    if !p.new_gates.is_empty() && query_layer == 0 {
        warnings.push(format!(
            "{} new_gate tensors ignored: the checkpoint has no prompts",
            p.new_gates.len()
        ));
    }
    if w_new_gate {
        let mut filled = 0;
        for l in 0..dims.n_layers {
            let out = pre(format!("layers.{l}.attention.new_gate"));
            match p.new_gates.get(&l) {
                Some((name, src)) => {
                    if src.numel() != 1 {
                        bail!(
                            "{file}: '{name}' has shape {:?}, expected one value",
                            src.shape()
                        );
                    }
                    copy(&mut tensors, out, vec![1, 1, 1, 1], (name.clone(), *src));
                }
                None => {
                    filled += 1;
                    tensors.push(Planned::constant(out, vec![1, 1, 1, 1], 1.0));
                }
            }
        }
        if filled > 0 {
            warnings.push(format!(
                "{filled} of {} layers have no new_gate (the authors' model creates one when w_lora is set); filled with 1, its initial value",
                dims.n_layers
            ));
        }
    }

    // Biases and input scales.
    let scale_form = !p.scales.is_empty();
    let w_bias = !p.biases.is_empty() || cfg_flag("w_bias") == Some(true);
    let underscore = p.biases.values().any(|b| b.2) || scale_form;
    if w_bias {
        let required: &[&str] = if underscore {
            &LINEARS
        } else {
            &["wq", "wo", "w1", "w2", "w3"]
        };
        let mut filled = 0;
        for l in 0..dims.n_layers {
            for &w in LINEARS.iter() {
                let out_name = |u: bool| {
                    if u {
                        pre(format!("layers.{l}.{}.{w}_bias", linear_group(w)))
                    } else {
                        pre(format!("layers.{l}.{}.{w}.bias", linear_group(w)))
                    }
                };
                match p.biases.get(&(l, w)) {
                    Some((name, src, u)) => {
                        let (out_f, _) = dims.shape(w)?;
                        check(name, src, &[out_f])?;
                        copy(
                            &mut tensors,
                            out_name(*u),
                            vec![out_f],
                            (name.clone(), *src),
                        );
                    }
                    None if required.contains(&w) => {
                        let (out_f, _) = dims.shape(w)?;
                        filled += 1;
                        tensors.push(Planned::constant(out_name(underscore), vec![out_f], 0.0));
                    }
                    None => {}
                }
            }
        }
        if filled > 0 {
            warnings.push(format!(
                "{filled} bias vectors are missing although the checkpoint uses biases; filled with 0, the authors' initial value"
            ));
        }
    }
    if scale_form {
        let mut filled = 0;
        for l in 0..dims.n_layers {
            for &w in LINEARS.iter() {
                let (_, in_f) = dims.shape(w)?;
                let out = pre(format!("layers.{l}.{}.{w}_scale", linear_group(w)));
                match p.scales.get(&(l, w)) {
                    Some((name, src)) => {
                        check(name, src, &[in_f])?;
                        copy(&mut tensors, out, vec![in_f], (name.clone(), *src));
                    }
                    None => {
                        filled += 1;
                        tensors.push(Planned::constant(out, vec![in_f], 1.0));
                    }
                }
            }
        }
        if filled > 0 {
            warnings.push(format!(
                "{filled} input scales are missing; filled with 1, the authors' initial value"
            ));
        }
    }

    // LoRA.
    let w_lora = !p.lora.is_empty();
    if !w_lora && cfg_flag("w_lora") == Some(true) {
        notes.push("the checkpoint's config says w_lora but it holds no LoRA weights; written without LoRA (the authors' zero-initialised l2 makes it a no-op)".into());
    }
    let mut lora_rank = 0;
    if w_lora {
        let ((_, _, _), (first_name, first)) = p
            .lora
            .iter()
            .find(|((_, _, k), _)| *k == 1)
            .ok_or_else(|| anyhow!("{file}: LoRA l2 weights without any l1"))?;
        lora_rank = first.shape().first().copied().unwrap_or(0);
        if lora_rank == 0 {
            bail!(
                "{file}: '{first_name}' has shape {:?}; cannot read the LoRA rank",
                first.shape()
            );
        }
        let mut filled = 0;
        for l in 0..dims.n_layers {
            for &w in LINEARS.iter() {
                let (out_f, in_f) = dims.shape(w)?;
                for (k, shape) in [(1u8, vec![lora_rank, in_f]), (2u8, vec![out_f, lora_rank])] {
                    let out = pre(format!(
                        "layers.{l}.{}.lora_{w}_l{k}.weight",
                        linear_group(w)
                    ));
                    match p.lora.get(&(l, w, k)) {
                        Some((name, src)) => {
                            if src.shape() != shape.as_slice() {
                                bail!(
                                    "{file}: tensor '{name}' has shape {:?}, expected {shape:?}",
                                    src.shape()
                                );
                            }
                            copy(&mut tensors, out, shape, (name.clone(), *src));
                        }
                        None => {
                            filled += 1;
                            tensors.push(Planned::constant(out, shape, 0.0));
                        }
                    }
                }
            }
        }
        if filled > 0 {
            warnings.push(format!("{filled} LoRA matrices are missing; filled with 0 (no change to the layer, as the authors' zero-initialised l2)"));
        }
    }

    // Tuned norms.
    for ((l, n), (name, src)) in &p.norms {
        check(name, src, &[dims.dim])?;
        copy(
            &mut tensors,
            pre(format!("layers.{l}.{n}.weight")),
            vec![dims.dim],
            (name.clone(), *src),
        );
    }
    if let Some((name, src)) = &p.final_norm {
        check(name, src, &[dims.dim])?;
        copy(
            &mut tensors,
            pre("norm.weight".into()),
            vec![dims.dim],
            (name.clone(), *src),
        );
    }
    if let Some((name, src)) = &p.adapter_query {
        copy(
            &mut tensors,
            "adapter_query.weight".into(),
            src.shape().to_vec(),
            (name.clone(), *src),
        );
    }

    // The visual path.
    let mut visual_json = serde_json::Value::Null;
    if p.has_visual() && opts.text_only {
        notes.push(format!(
            "--text-only: {} visual tensors dropped; prompts get no image term",
            p.visual.len()
        ));
    } else if p.has_visual() {
        let get = |n: &str| -> Result<(String, TSrc<'a>)> {
            p.visual.get(n).cloned().ok_or_else(|| {
                anyhow!("{file}: the visual path is incomplete: tensor '{n}' is missing")
            })
        };
        let (cp_name, cp) = get("clip_proj.weight")?;
        let cps = cp.shape();
        if cps.len() != 2 {
            bail!("{file}: '{cp_name}' has shape {cps:?}, expected [v_embed_dim, clip_output_dim]");
        }
        let (v, clip_out) = (cps[0], cps[1]);
        let v_depth = p
            .visual
            .keys()
            .filter_map(|k| k.strip_prefix("visual_blocks."))
            .filter_map(|r| r.split('.').next()?.parse::<usize>().ok())
            .max()
            .map_or(0, |m| m + 1);
        let hidden = if v_depth > 0 {
            get("visual_blocks.0.mlp.fc1.weight")?
                .1
                .shape()
                .first()
                .copied()
                .unwrap_or(0)
        } else {
            4 * v
        };
        let v_mlp_ratio = hidden as f32 / v as f32;
        if (v as f32 * v_mlp_ratio) as usize != hidden {
            bail!(
                "{file}: visual MLP width {hidden} is not representable as v_embed_dim {v} x ratio"
            );
        }
        let v_num_heads = opts.v_num_heads.unwrap_or(DEFAULT_V_NUM_HEADS);
        if v_num_heads == 0 || v % v_num_heads != 0 {
            bail!("{file}: v_embed_dim {v} is not a multiple of {v_num_heads} resampler heads; pass --v-num-heads");
        }
        let want = crate::model::vision::resampler_tensors(
            v, hidden, v_depth, query_len, clip_out, dims.dim,
        );
        if query_layer == 0 {
            bail!(
                "{file}: the checkpoint has a visual path but no adapter_query.weight to add it to"
            );
        }
        let known: BTreeSet<&str> = want.iter().map(|(n, _)| n.as_str()).collect();
        let extra: Vec<&String> = p
            .visual
            .keys()
            .filter(|k| !known.contains(k.as_str()))
            .collect();
        if let Some(first) = extra.first() {
            warnings.push(format!(
                "{} unexpected visual tensors ignored (first: '{first}')",
                extra.len()
            ));
        }
        for (n, shape) in want {
            let (name, src) = get(&n)?;
            if src.shape() != shape.as_slice() {
                bail!(
                    "{file}: tensor '{name}' has shape {:?}, expected {shape:?}",
                    src.shape()
                );
            }
            copy(&mut tensors, n, shape, (name, src));
        }
        // CLIP: from --clip, else from the checkpoint itself.
        let clip_plan = match clip_input {
            Some(c) => {
                if !p.clip.is_empty() {
                    warnings.push(format!(
                        "the checkpoint's own clip.visual.* tensors are replaced by {}",
                        c.name()
                    ));
                }
                c.plan(opts.clip_heads)?
            }
            None if !p.clip.is_empty() => clip::plan_openai(&file, &p.clip, "clip.visual.", opts.clip_heads)?,
            None => bail!(
                "{file}: this adapter has a visual path ({} tensors: visual_query, clip_proj, …) but no CLIP vision tower; \
                 pass --clip ViT-L-14.pt (OpenAI's TorchScript file) or --clip a Hugging Face openai/clip-vit-large-patch14 \
                 folder, or --text-only to drop the visual path",
                p.visual.len()
            ),
        };
        let ClipConfig { output_dim, .. } = clip_plan.config;
        if output_dim != clip_out {
            bail!(
                "{file}: clip_proj.weight takes {clip_out}-wide CLIP features but the CLIP model gives {output_dim}"
            );
        }
        let c = &clip_plan.config;
        let channel_order = match opts.channel_order.as_deref() {
            None | Some("bgr") => "bgr",
            Some("rgb") => "rgb",
            Some(o) => bail!("--channel-order: '{o}' is not rgb or bgr"),
        };
        visual_json = json!({
            "clip": {
                "image_size": c.image_size,
                "patch_size": c.patch_size,
                "width": c.width,
                "layers": c.layers,
                "heads": c.heads,
                "output_dim": c.output_dim,
                "ln_eps": c.ln_eps.to_string().parse::<f64>().unwrap_or(1e-5),
            },
            "v_embed_dim": v,
            "v_depth": v_depth,
            "v_num_heads": v_num_heads,
            "v_mlp_ratio": v_mlp_ratio,
            "ln_eps": 1e-5,
            "channel_order": channel_order,
        });
        notes.extend(clip_plan.notes);
        tensors.extend(clip_plan.tensors);
    } else if !p.clip.is_empty() {
        warnings.push(format!(
            "{} clip.visual.* tensors ignored: the checkpoint has no visual path to use them",
            p.clip.len()
        ));
    }
    if clip_input.is_some() && (!p.has_visual() || opts.text_only) {
        warnings.push("--clip ignored: the adapter has no visual path".into());
    }

    if !p.base_weights.is_empty() {
        warnings.push(format!(
            "{} base-model tensors in the adapter file ignored (first: '{}'); convert the base with `lav2 convert base`",
            p.base_weights.len(),
            p.base_weights[0]
        ));
    }
    if !p.clip_other.is_empty() {
        notes.push(format!(
            "{} CLIP text-tower tensors skipped (only the vision tower is used)",
            p.clip_other.len()
        ));
    }
    for u in &p.unknown {
        warnings.push(format!("unexpected tensor '{u}' ignored"));
    }

    let gate_activation = match opts.gate_activation.as_deref() {
        Some("tanh") => "tanh",
        Some("identity") => "identity",
        Some(o) => bail!("--gate-activation: '{o}' is not tanh or identity"),
        None if v1 => {
            notes.push(
                "V1 checkpoint: gate_activation \"identity\" (the raw gate, as the authors' V1 inference script applies it; \
                 their training code used tanh, see their issue #39); pass --gate-activation tanh for the trained form"
                    .into(),
            );
            "identity"
        }
        None => "tanh",
    };
    let config = json!({
        "format": ADAPTER_FORMAT,
        "query_len": query_len,
        "query_layer": query_layer,
        "w_bias": w_bias,
        "w_lora": w_lora,
        "lora_rank": lora_rank,
        "w_new_gate": w_new_gate,
        "scale_form": if scale_form { json!("input") } else { serde_json::Value::Null },
        "gate_activation": gate_activation,
        "visual": visual_json,
    });
    Ok(AdapterPlan {
        config,
        tensors,
        warnings,
        notes,
        kind: kind.to_string(),
    })
}

/// `lav2 convert adapter`.
pub fn convert(
    from: &Path,
    out: &Path,
    dtype: OutDType,
    opts: &AdapterOptions,
) -> Result<ConvertReport> {
    let ckpt = Checkpoint::open(from)?;
    let clip_input = match &opts.clip {
        Some(c) => Some(clip::open(c).with_context(|| format!("--clip {}", c.display()))?),
        None => None,
    };
    let plan = plan(&ckpt, clip_input.as_ref(), opts)?;
    let mut report = ConvertReport {
        warnings: plan.warnings.iter().map(Notice::new).collect(),
        notes: plan.notes.iter().map(Notice::new).collect(),
        written: Vec::new(),
    };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let count = plan.tensors.len();
    let bytes = st_writer::write(
        &out.join("adapter.safetensors"),
        plan.tensors,
        dtype,
        &[("converted_from", file_name(from))],
    )?;
    let cfg_path = out.join("adapter_config.json");
    let cfg_text = serde_json::to_string_pretty(&plan.config)? + "\n";
    crate::io::output::write_bytes(&cfg_path, cfg_text.as_bytes())?;
    // What we wrote must be what the loader accepts.
    AdapterConfig::load(&cfg_path)
        .context("internal: the written adapter_config.json does not load")?;
    report.written.push(format!(
        "{}: {} → {} ({count} tensors, {} {})",
        plan.kind,
        from.display(),
        out.display(),
        super::size_str(bytes),
        dtype.name()
    ));
    Ok(report)
}

pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// For `lav2 info`: what kind of adapter this looks like and what a conversion would say.
pub fn summarize(ckpt: &Checkpoint) -> Option<String> {
    let (sd, _) = locate(ckpt).ok()?;
    let p = Parsed::new(&sd);
    let adapterish = !p.gates.is_empty()
        || p.adapter_query.is_some()
        || !p.biases.is_empty()
        || !p.scales.is_empty()
        || !p.lora.is_empty()
        || p.has_visual();
    if !adapterish {
        return None;
    }
    let mut s = String::new();
    match plan(ckpt, None, &AdapterOptions::default()) {
        Ok(plan) => {
            s.push_str(&format!("looks like: {}\n", plan.kind));
            s.push_str(&format!("adapter_config it converts to: {}\n", plan.config));
            for w in plan.warnings.iter().chain(&plan.notes) {
                s.push_str(&format!("  note: {w}\n"));
            }
        }
        Err(e) => {
            let kind = if p.has_visual() {
                "LLaMA-Adapter V2 multimodal"
            } else {
                "LLaMA-Adapter checkpoint"
            };
            s.push_str(&format!("looks like: {kind}\n"));
            s.push_str(&format!("missing / not convertible as is: {e:#}\n"));
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_numbers() {
        let f = "/x/challenge_llama_adapter_len10_layer30_release.pth";
        assert_eq!(name_number(f, "len"), Some(10));
        assert_eq!(name_number(f, "layer"), Some(30));
        assert_eq!(name_number("BIAS-7B.pth", "len"), None);
    }

    #[test]
    fn key_meanings() {
        assert_eq!(
            classify("layers.3.attention.wq.bias"),
            Key::Bias(3, "wq", false)
        );
        assert_eq!(
            classify("layers.3.feed_forward.w2_bias"),
            Key::Bias(3, "w2", true)
        );
        assert_eq!(
            classify("layers.3.feed_forward.w2_scale"),
            Key::Scale(3, "w2")
        );
        assert_eq!(
            classify("layers.0.attention.lora_wo_l2.weight"),
            Key::Lora(0, "wo", 2)
        );
        assert_eq!(classify("layers.0.feed_forward.wq.bias"), Key::Unknown);
        assert_eq!(classify("layers.1.attention.wk.weight"), Key::BaseWeight);
        assert_eq!(classify("layers.7.attention.gate"), Key::Gate(7));
        assert_eq!(classify("clip.visual.proj"), Key::Clip("proj".into()));
        assert_eq!(classify("clip.token_embedding.weight"), Key::ClipOther);
        assert_eq!(
            classify("visual_blocks.0.attn.qkv.weight"),
            Key::Visual("visual_blocks.0.attn.qkv.weight".into())
        );
    }
}
