//! The CLIP vision tower for an adapter, as `clip.visual.*` with OpenAI's names, from either
//! OpenAI's TorchScript release (`ViT-L-14.pt`, state dict `visual.*`) or a Hugging Face
//! `openai/clip-vit-large-patch14` folder (`vision_model.*`, `visual_projection.weight`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::pth::Checkpoint;
use super::source::{st_state_dict, state_dict_of, StFile, StateDict, TSrc};
use crate::io::st_writer::Planned;
use crate::model::config::ClipConfig;
use crate::model::transpose_f32;

/// An opened CLIP source.
pub enum ClipInput {
    /// A PyTorch archive (OpenAI's TorchScript `.pt`, or any checkpoint with `visual.*` names).
    Pt(Checkpoint),
    /// A Hugging Face folder: `config.json` and `model.safetensors` or `pytorch_model.bin`.
    Hf {
        dir: PathBuf,
        config: serde_json::Value,
        weights: HfWeights,
    },
}

pub enum HfWeights {
    St(StFile),
    Bin(Checkpoint),
}

/// The tensors to write and the configuration they imply.
pub struct ClipPlan<'a> {
    pub config: ClipConfig,
    pub tensors: Vec<Planned<'a>>,
    pub notes: Vec<String>,
}

/// The names, within `clip.visual.`, of every tensor the runtime's CLIP ViT uses.
pub fn expected_names(layers: usize) -> Vec<String> {
    let mut v: Vec<String> = [
        "conv1.weight",
        "class_embedding",
        "positional_embedding",
        "ln_pre.weight",
        "ln_pre.bias",
        "ln_post.weight",
        "ln_post.bias",
        "proj",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..layers {
        for n in BLOCK {
            v.push(format!("transformer.resblocks.{i}.{n}"));
        }
    }
    v
}

const BLOCK: [&str; 12] = [
    "ln_1.weight",
    "ln_1.bias",
    "attn.in_proj_weight",
    "attn.in_proj_bias",
    "attn.out_proj.weight",
    "attn.out_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
];

fn expected_shape(c: &ClipConfig, name: &str) -> Vec<usize> {
    let (w, p) = (c.width, c.patch_size);
    let grid = c.image_size / p;
    let tail = name
        .rsplit_once("resblocks.")
        .map(|(_, t)| t.split_once('.').map(|x| x.1).unwrap_or(t));
    match (name, tail) {
        ("conv1.weight", _) => vec![w, 3, p, p],
        ("class_embedding", _) => vec![w],
        ("positional_embedding", _) => vec![grid * grid + 1, w],
        ("proj", _) => vec![w, c.output_dim],
        (_, Some("attn.in_proj_weight")) => vec![3 * w, w],
        (_, Some("attn.in_proj_bias")) => vec![3 * w],
        (_, Some("attn.out_proj.weight")) => vec![w, w],
        (_, Some("mlp.c_fc.weight")) => vec![4 * w, w],
        (_, Some("mlp.c_fc.bias")) => vec![4 * w],
        (_, Some("mlp.c_proj.weight")) => vec![w, 4 * w],
        _ => vec![w],
    }
}

/// Opens `--clip PATH`: a folder is a Hugging Face CLIP, a file a PyTorch archive.
pub fn open(path: &Path) -> Result<ClipInput> {
    if path.is_dir() {
        let cfg_path = path.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).with_context(|| {
            format!(
                "{}: a CLIP folder must hold a Hugging Face config.json",
                path.display()
            )
        })?;
        let config: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid JSON", cfg_path.display()))?;
        let st = path.join("model.safetensors");
        let bin = path.join("pytorch_model.bin");
        let weights = if st.is_file() {
            HfWeights::St(StFile::open(&st)?)
        } else if bin.is_file() {
            HfWeights::Bin(Checkpoint::open(&bin)?)
        } else {
            bail!(
                "{}: no model.safetensors or pytorch_model.bin in this Hugging Face CLIP folder",
                path.display()
            );
        };
        Ok(ClipInput::Hf {
            dir: path.to_path_buf(),
            config,
            weights,
        })
    } else {
        Ok(ClipInput::Pt(Checkpoint::open(path)?))
    }
}

impl ClipInput {
    pub fn name(&self) -> String {
        match self {
            ClipInput::Pt(c) => c.name.clone(),
            ClipInput::Hf { dir, .. } => dir.display().to_string(),
        }
    }

    /// Plans `clip.visual.*`; `heads` overrides the attention head count.
    pub fn plan(&self, heads: Option<usize>) -> Result<ClipPlan<'_>> {
        match self {
            ClipInput::Pt(c) => {
                let sd = state_dict_of(c);
                plan_openai(&c.name, &sd, "visual.", heads)
            }
            ClipInput::Hf {
                dir,
                config,
                weights,
            } => {
                let sd = match weights {
                    HfWeights::St(f) => st_state_dict(f),
                    HfWeights::Bin(c) => state_dict_of(c),
                };
                plan_hf(dir, config, sd, heads)
            }
        }
    }
}

fn heads_for(width: usize, heads: Option<usize>, rule: &str) -> Result<usize> {
    let h = match heads {
        Some(h) => h,
        None => width / 64,
    };
    if h == 0 || !width.is_multiple_of(h) {
        bail!(
            "CLIP width {width} cannot be split into {h} attention heads ({rule}); pass --clip-heads"
        );
    }
    Ok(h)
}

/// OpenAI names: `<prefix>conv1.weight`, `<prefix>transformer.resblocks.N.…`, `<prefix>proj`.
pub fn plan_openai<'a>(
    file: &str,
    sd: &StateDict<'a>,
    prefix: &str,
    heads: Option<usize>,
) -> Result<ClipPlan<'a>> {
    let get = |n: &str| -> Result<TSrc<'a>> {
        sd.get(&format!("{prefix}{n}"))
            .copied()
            .ok_or_else(|| anyhow!("{file}: the CLIP vision tower has no tensor '{prefix}{n}'"))
    };
    let conv = get("conv1.weight")?;
    let cs = conv.shape();
    if cs.len() != 4 || cs[1] != 3 || cs[2] != cs[3] || cs[2] == 0 {
        bail!("{file}: '{prefix}conv1.weight' has shape {cs:?}, expected [width, 3, patch, patch]");
    }
    let (width, patch) = (cs[0], cs[2]);
    let pos = get("positional_embedding")?.shape();
    let grid = if pos.len() == 2 && pos[0] >= 2 {
        let g = ((pos[0] - 1) as f64).sqrt().round() as usize;
        (g * g + 1 == pos[0]).then_some(g)
    } else {
        None
    }
    .ok_or_else(|| {
        anyhow!(
            "{file}: '{prefix}positional_embedding' has shape {pos:?}, expected [grid² + 1, width]"
        )
    })?;
    let proj = get("proj")?.shape();
    if proj.len() != 2 || proj[0] != width {
        bail!("{file}: '{prefix}proj' has shape {proj:?}, expected [{width}, output_dim]");
    }
    let block_prefix = format!("{prefix}transformer.resblocks.");
    let layers = sd
        .keys()
        .filter_map(|k| k.strip_prefix(&block_prefix))
        .filter_map(|r| r.split('.').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |m| m + 1);
    if layers == 0 {
        bail!("{file}: the CLIP vision tower has no transformer blocks ('{block_prefix}0.…')");
    }
    let config = ClipConfig {
        image_size: grid * patch,
        patch_size: patch,
        width,
        layers,
        heads: heads_for(width, heads, "OpenAI's rule is width / 64")?,
        output_dim: proj[1],
        ln_eps: 1e-5,
    };
    let mut tensors = Vec::new();
    let names = expected_names(layers);
    for n in &names {
        let src = get(n)?;
        let want = expected_shape(&config, n);
        if src.shape() != want.as_slice() {
            bail!(
                "{file}: '{prefix}{n}' has shape {:?}, expected {want:?}",
                src.shape()
            );
        }
        let path = format!("{prefix}{n}");
        tensors.push(Planned::new(format!("clip.visual.{n}"), want, move || {
            src.read_f32(&path)
        }));
    }
    let known: BTreeSet<&str> = names.iter().map(|s| s.as_str()).collect();
    let extra: Vec<&String> = sd
        .keys()
        .filter(|k| k.strip_prefix(prefix).is_some_and(|r| !known.contains(r)))
        .collect();
    let mut notes = Vec::new();
    if !extra.is_empty() {
        notes.push(format!(
            "{file}: {} vision tensors not used by the runtime were skipped (first: '{}')",
            extra.len(),
            extra[0]
        ));
    }
    Ok(ClipPlan {
        config,
        tensors,
        notes,
    })
}

fn plan_hf<'a>(
    dir: &Path,
    config: &serde_json::Value,
    sd: StateDict<'a>,
    heads: Option<usize>,
) -> Result<ClipPlan<'a>> {
    let file = dir.display().to_string();
    let vc = config.get("vision_config").unwrap_or(config);
    let num = |k: &str| vc.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
    if let Some(act) = vc.get("hidden_act").and_then(|v| v.as_str()) {
        if act != "quick_gelu" {
            bail!("{file}: vision hidden_act is '{act}'; the runtime's CLIP uses quick_gelu (OpenAI CLIP)");
        }
    }
    if let Some(eps) = vc.get("layer_norm_eps").and_then(|v| v.as_f64()) {
        if (eps - 1e-5).abs() > 1e-9 {
            bail!("{file}: vision layer_norm_eps is {eps}; the runtime's CLIP uses 1e-5");
        }
    }
    // Names are `vision_model.…` in CLIPModel / CLIPVisionModel(WithProjection).
    let get = |n: &str| -> Result<TSrc<'a>> {
        sd.get(n)
            .copied()
            .ok_or_else(|| anyhow!("{file}: the Hugging Face CLIP has no tensor '{n}'"))
    };
    let vm = "vision_model.";
    let patch_w = get(&format!("{vm}embeddings.patch_embedding.weight"))?;
    let cs = patch_w.shape();
    if cs.len() != 4 || cs[1] != 3 || cs[2] != cs[3] || cs[2] == 0 {
        bail!("{file}: patch_embedding.weight has shape {cs:?}, expected [width, 3, patch, patch]");
    }
    let (width, patch) = (cs[0], cs[2]);
    let pos = get(&format!("{vm}embeddings.position_embedding.weight"))?.shape();
    let grid = ((pos.first().copied().unwrap_or(0).max(1) - 1) as f64)
        .sqrt()
        .round() as usize;
    if pos.len() != 2 || grid * grid + 1 != pos[0] {
        bail!("{file}: position_embedding.weight has shape {pos:?}, expected [grid² + 1, width]");
    }
    let proj = get("visual_projection.weight")?;
    let ps = proj.shape();
    if ps.len() != 2 || ps[1] != width {
        bail!(
            "{file}: visual_projection.weight has shape {ps:?}, expected [projection_dim, {width}]"
        );
    }
    let layers = sd
        .keys()
        .filter_map(|k| k.strip_prefix(&format!("{vm}encoder.layers.")))
        .filter_map(|r| r.split('.').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |m| m + 1);
    for (key, have) in [
        ("hidden_size", width),
        ("patch_size", patch),
        ("num_hidden_layers", layers),
    ] {
        if let Some(v) = num(key) {
            if v != have {
                bail!("{file}: config.json says {key} {v} but the weights have {have}");
            }
        }
    }
    if let Some(i) = num("intermediate_size") {
        if i != 4 * width {
            bail!("{file}: intermediate_size {i} is not 4 x hidden_size; the runtime's CLIP MLP is 4 x width");
        }
    }
    let heads = match heads.or(num("num_attention_heads")) {
        Some(h) => heads_for(width, Some(h), "from config.json")?,
        None => heads_for(width, None, "OpenAI's rule is width / 64")?,
    };
    let config = ClipConfig {
        image_size: grid * patch,
        patch_size: patch,
        width,
        layers,
        heads,
        output_dim: ps[0],
        ln_eps: 1e-5,
    };
    let mut used = BTreeSet::new();
    let mut tensors = Vec::new();
    let mut plan = |ours: &str, srcs: Vec<&str>, how: Combine| -> Result<()> {
        let want = expected_shape(&config, ours);
        let mut parts = Vec::new();
        for s in &srcs {
            let src = get(s)?;
            used.insert(s.to_string());
            parts.push((s.to_string(), src));
        }
        let got: Vec<usize> = match how {
            Combine::Same => parts[0].1.shape().to_vec(),
            Combine::Rows => {
                let mut s = parts[0].1.shape().to_vec();
                if let Some(first) = s.first_mut() {
                    *first = parts
                        .iter()
                        .map(|p| p.1.shape().first().copied().unwrap_or(0))
                        .sum();
                }
                if parts
                    .iter()
                    .any(|p| p.1.shape().get(1..) != parts[0].1.shape().get(1..))
                {
                    bail!(
                        "{file}: '{}' and its siblings have different shapes",
                        parts[0].0
                    );
                }
                s
            }
            Combine::Transpose => parts[0].1.shape().iter().rev().copied().collect(),
        };
        if got != want {
            bail!(
                "{file}: '{}' gives shape {got:?} for '{ours}', expected {want:?}",
                srcs.join("', '")
            );
        }
        let shape = want.clone();
        tensors.push(Planned::new(
            format!("clip.visual.{ours}"),
            want,
            move || {
                let mut out = Vec::new();
                for (path, src) in &parts {
                    out.extend(src.read_f32(path)?);
                }
                Ok(match how {
                    Combine::Transpose => transpose_f32(&out, shape[1], shape[0]),
                    _ => out,
                })
            },
        ));
        Ok(())
    };
    plan(
        "conv1.weight",
        vec!["vision_model.embeddings.patch_embedding.weight"],
        Combine::Same,
    )?;
    // Tensors that keep their values and only change names (OpenAI name, HF name).
    let renamed = |ours: &str, hf: &str| (ours.to_string(), hf.to_string());
    let mut same = vec![
        renamed("class_embedding", "vision_model.embeddings.class_embedding"),
        renamed(
            "positional_embedding",
            "vision_model.embeddings.position_embedding.weight",
        ),
        renamed("ln_pre.weight", "vision_model.pre_layrnorm.weight"),
        renamed("ln_pre.bias", "vision_model.pre_layrnorm.bias"),
        renamed("ln_post.weight", "vision_model.post_layernorm.weight"),
        renamed("ln_post.bias", "vision_model.post_layernorm.bias"),
    ];
    for i in 0..layers {
        let h = format!("vision_model.encoder.layers.{i}");
        let o = format!("transformer.resblocks.{i}");
        for (ours, hf) in [
            ("ln_1.weight", "layer_norm1.weight"),
            ("ln_1.bias", "layer_norm1.bias"),
            ("attn.out_proj.weight", "self_attn.out_proj.weight"),
            ("attn.out_proj.bias", "self_attn.out_proj.bias"),
            ("ln_2.weight", "layer_norm2.weight"),
            ("ln_2.bias", "layer_norm2.bias"),
            ("mlp.c_fc.weight", "mlp.fc1.weight"),
            ("mlp.c_fc.bias", "mlp.fc1.bias"),
            ("mlp.c_proj.weight", "mlp.fc2.weight"),
            ("mlp.c_proj.bias", "mlp.fc2.bias"),
        ] {
            same.push((format!("{o}.{ours}"), format!("{h}.{hf}")));
        }
        // OpenAI packs q, k, v into one in_proj; HF keeps three projections.
        let qkv = |w: &str| ["q", "k", "v"].map(|x| format!("{h}.self_attn.{x}_proj.{w}"));
        let (qw, qb) = (qkv("weight"), qkv("bias"));
        plan(
            &format!("{o}.attn.in_proj_weight"),
            qw.iter().map(|s| s.as_str()).collect(),
            Combine::Rows,
        )?;
        plan(
            &format!("{o}.attn.in_proj_bias"),
            qb.iter().map(|s| s.as_str()).collect(),
            Combine::Rows,
        )?;
    }
    for (ours, hf) in &same {
        plan(ours, vec![hf.as_str()], Combine::Same)?;
    }
    plan("proj", vec!["visual_projection.weight"], Combine::Transpose)?;
    let extra: Vec<&String> = sd
        .keys()
        .filter(|k| k.starts_with(vm) && !used.contains(*k) && !k.ends_with("position_ids"))
        .collect();
    let mut notes = Vec::new();
    if !extra.is_empty() {
        notes.push(format!(
            "{file}: {} vision tensors not used by the runtime were skipped (first: '{}')",
            extra.len(),
            extra[0]
        ));
    }
    Ok(ClipPlan {
        config,
        tensors,
        notes,
    })
}

#[derive(Clone, Copy)]
enum Combine {
    Same,
    /// Concatenate along the first axis (q, k, v → in_proj).
    Rows,
    /// A 2-D transpose (`visual_projection.weight` is `proj`ᵀ).
    Transpose,
}
