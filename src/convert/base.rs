//! `lav2 convert base`: Meta's `params.json` + `consolidated.NN.pth` (+ `tokenizer.model`) to a
//! base folder (`params.json` + `consolidated.NN.safetensors` + `tokenizer.json`).
//!
//! Meta's model-parallel shards split each matrix the way fairscale's layers do: column-parallel
//! (`wq`, `wk`, `wv`, `w1`, `w3`, `output`) along the output axis 0, row-parallel (`wo`, `w2`)
//! and the parallel embedding along axis 1, and the norms are replicated in every shard.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::pth::Checkpoint;
use super::source::{state_dict_of, StateDict, TSrc};
use super::ConvertReport;
use crate::io::st_writer::{self, OutDType, Planned};
use crate::model::config::ModelConfig;
use crate::model::{linear_group, LINEARS};
use crate::notice::Notice;

/// How a tensor is spread over Meta's shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Replicated,
    Axis(usize),
}

/// The split of a Meta tensor name; `None` for names that are not part of the model.
pub fn meta_split(name: &str) -> Option<Split> {
    match name {
        "tok_embeddings.weight" => return Some(Split::Axis(1)),
        "output.weight" => return Some(Split::Axis(0)),
        "norm.weight" => return Some(Split::Replicated),
        _ => {}
    }
    let rest = name.strip_prefix("layers.")?;
    let (l, item) = rest.split_once('.')?;
    l.parse::<usize>().ok()?;
    match item {
        "attention_norm.weight" | "ffn_norm.weight" => Some(Split::Replicated),
        "attention.wq.weight"
        | "attention.wk.weight"
        | "attention.wv.weight"
        | "feed_forward.w1.weight"
        | "feed_forward.w3.weight" => Some(Split::Axis(0)),
        "attention.wo.weight" | "feed_forward.w2.weight" => Some(Split::Axis(1)),
        _ => None,
    }
}

/// The shards of a Meta folder: `consolidated.*.pth`, else every `*.pth`, sorted by name (as
/// Meta's and the authors' loaders do).
pub fn shard_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pth") && p.is_file())
        .collect();
    all.sort();
    let consolidated: Vec<PathBuf> = all
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("consolidated."))
        })
        .cloned()
        .collect();
    Ok(if consolidated.is_empty() {
        all
    } else {
        consolidated
    })
}

/// One output tensor of a Meta checkpoint: its shards and how to join them.
pub struct MergedTensor<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: String,
    pub split: Split,
    parts: Vec<TSrc<'a>>,
}

impl<'a> MergedTensor<'a> {
    fn planned(self) -> Planned<'a> {
        let MergedTensor {
            name,
            shape,
            split,
            parts,
            ..
        } = self;
        let out_name = name.clone();
        Planned::new(out_name, shape.clone(), move || {
            let mut datas = Vec::with_capacity(parts.len());
            for p in &parts {
                datas.push(p.read_f32(&name)?);
            }
            match split {
                Split::Replicated => {
                    let first = datas.swap_remove(0);
                    if let Some(i) = datas.iter().position(|d| {
                        d.iter()
                            .zip(&first)
                            .any(|(a, b)| a.to_bits() != b.to_bits())
                    }) {
                        bail!("'{name}' should be identical in every shard but shard {} differs from shard 0", i + 1);
                    }
                    Ok(first)
                }
                Split::Axis(axis) => Ok(concat(
                    &datas,
                    &parts.iter().map(|p| p.shape()).collect::<Vec<_>>(),
                    axis,
                )),
            }
        })
    }
}

/// Concatenates row-major tensors along `axis` (their other axes agree).
fn concat(datas: &[Vec<f32>], shapes: &[&[usize]], axis: usize) -> Vec<f32> {
    let outer: usize = shapes[0][..axis].iter().product();
    let inner: usize = shapes[0][axis + 1..].iter().product();
    let total: usize = datas.iter().map(|d| d.len()).sum();
    let mut out = Vec::with_capacity(total);
    for o in 0..outer {
        for (d, s) in datas.iter().zip(shapes) {
            let chunk = s[axis] * inner;
            out.extend_from_slice(&d[o * chunk..(o + 1) * chunk]);
        }
    }
    out
}

/// The merged view of a Meta checkpoint's shards, and names that were skipped.
pub struct MetaPlan<'a> {
    pub tensors: Vec<MergedTensor<'a>>,
    pub skipped: Vec<String>,
}

pub fn plan_meta<'a>(shards: &'a [Checkpoint]) -> Result<MetaPlan<'a>> {
    let sds: Vec<StateDict<'a>> = shards.iter().map(state_dict_of).collect();
    let first = &sds[0];
    if first.is_empty() {
        bail!("{}: no tensors", shards[0].name);
    }
    for (i, sd) in sds.iter().enumerate().skip(1) {
        if sd.keys().ne(first.keys()) {
            let missing = first
                .keys()
                .find(|k| !sd.contains_key(*k))
                .or_else(|| sd.keys().find(|k| !first.contains_key(*k)));
            bail!(
                "{} and {} hold different tensor names (e.g. '{}'); are they shards of one model?",
                shards[0].name,
                shards[i].name,
                missing.map(String::as_str).unwrap_or("?")
            );
        }
    }
    let mut tensors = Vec::new();
    let mut skipped = Vec::new();
    for (name, src0) in first {
        let Some(split) = meta_split(name) else {
            skipped.push(name.clone());
            continue;
        };
        if let TSrc::Pth(c, t) = src0 {
            super::pth::check_float(&c.name, name, t.dtype())?;
        }
        let parts: Vec<TSrc<'a>> = sds.iter().map(|sd| sd[name]).collect();
        let mut shape = src0.shape().to_vec();
        for (i, p) in parts.iter().enumerate() {
            let s = p.shape();
            let ok = s.len() == shape.len()
                && s.iter()
                    .zip(&shape)
                    .enumerate()
                    .all(|(ax, (a, b))| a == b || split == Split::Axis(ax));
            if !ok {
                bail!(
                    "'{name}' has shape {s:?} in {} but {:?} in {}; the shards do not fit together",
                    shards[i].name,
                    src0.shape(),
                    shards[0].name
                );
            }
        }
        if let Split::Axis(ax) = split {
            if ax >= shape.len() {
                bail!(
                    "'{name}' has shape {:?}; expected at least {} dimensions",
                    shape,
                    ax + 1
                );
            }
            shape[ax] = parts.iter().map(|p| p.shape()[ax]).sum();
        }
        tensors.push(MergedTensor {
            name: name.clone(),
            shape,
            dtype: src0.dtype_name(),
            split,
            parts,
        });
    }
    // Natural order: embeddings, layers by number, then the rest.
    tensors.sort_by_key(|t| natural_key(&t.name));
    Ok(MetaPlan { tensors, skipped })
}

fn natural_key(name: &str) -> (usize, usize, String) {
    match name.strip_prefix("layers.").and_then(|r| r.split_once('.')) {
        Some((l, rest)) => (1, l.parse().unwrap_or(usize::MAX), rest.to_string()),
        None if name.starts_with("tok_embeddings") => (0, 0, name.to_string()),
        None => (2, 0, name.to_string()),
    }
}

/// Bytes per output file before a new `consolidated.NN.safetensors` is started.
const SHARD_BYTES: u64 = 10 << 30;

/// `lav2 convert base`.
pub fn convert(
    from: &Path,
    out: &Path,
    dtype: OutDType,
    tokenizer: Option<&Path>,
) -> Result<ConvertReport> {
    let mut report = ConvertReport::default();
    let params = from.join("params.json");
    if !params.is_file() {
        bail!("{}: no params.json; `lav2 convert base` reads Meta's checkpoint folder (params.json + consolidated.*.pth)", from.display());
    }
    let config = ModelConfig::from_meta(&params)?;
    let paths = shard_paths(from)?;
    if paths.is_empty() {
        bail!("{}: no consolidated.*.pth files", from.display());
    }
    let shards: Vec<Checkpoint> = paths
        .iter()
        .map(|p| Checkpoint::open(p))
        .collect::<Result<_>>()?;
    let plan = plan_meta(&shards)?;
    for s in &plan.skipped {
        if s == "rope.freqs" {
            report.notes.push(Notice::new(
                "'rope.freqs' skipped (a precomputed RoPE table; the runtime computes its own)",
            ));
        } else {
            let text = format!("'{s}' is not a LLaMA weight; skipped");
            report.warnings.push(Notice::new(text));
        }
    }
    // Check the essentials against params.json before writing anything.
    let find = |n: &str| plan.tensors.iter().find(|t| t.name == n);
    let emb = find("tok_embeddings.weight")
        .ok_or_else(|| anyhow!("{}: no tok_embeddings.weight", shards[0].name))?;
    if emb.shape.len() != 2 || emb.shape[1] != config.dim {
        bail!(
            "tok_embeddings.weight merges to {:?} but params.json says dim {}; wrong shard set?",
            emb.shape,
            config.dim
        );
    }
    for l in 0..config.n_layers {
        for w in LINEARS {
            let n = format!("layers.{l}.{}.{w}.weight", linear_group(w));
            if find(&n).is_none() {
                bail!(
                    "{}: missing '{n}' (params.json says {} layers)",
                    shards[0].name,
                    config.n_layers
                );
            }
        }
    }
    // Stale weights beside the new ones would be loaded with them; refuse rather than mix.
    if let Ok(entries) = std::fs::read_dir(out) {
        if let Some(e) = entries
            .filter_map(|e| e.ok())
            .find(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        {
            bail!(
                "{} already holds {}; remove it or choose another --out",
                out.display(),
                e.file_name().to_string_lossy()
            );
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let params_bytes =
        std::fs::read(&params).with_context(|| format!("cannot read {}", params.display()))?;
    crate::io::output::write_bytes(&out.join("params.json"), &params_bytes)?;
    // Group into output files of at most SHARD_BYTES.
    let mut groups: Vec<Vec<MergedTensor>> = vec![Vec::new()];
    let mut size = 0u64;
    for t in plan.tensors {
        let b = t.shape.iter().product::<usize>() as u64 * dtype.size() as u64;
        if size > 0 && size + b > SHARD_BYTES {
            groups.push(Vec::new());
            size = 0;
        }
        size += b;
        groups.last_mut().unwrap().push(t);
    }
    let sources = paths
        .iter()
        .map(|p| super::adapter::file_name(p))
        .collect::<Vec<_>>()
        .join(",");
    let mut total = 0u64;
    let mut count = 0;
    for (i, g) in groups.into_iter().enumerate() {
        count += g.len();
        let path = out.join(format!("consolidated.{i:02}.safetensors"));
        total += st_writer::write(
            &path,
            g.into_iter().map(MergedTensor::planned).collect(),
            dtype,
            &[("converted_from", sources.clone())],
        )?;
    }
    // Tokenizer: given, or next to the checkpoint (Meta ships it one folder up).
    let tok = match tokenizer {
        Some(t) => Some(t.to_path_buf()),
        None => [
            from.join("tokenizer.model"),
            from.join("../tokenizer.model"),
        ]
        .into_iter()
        .find(|p| p.is_file()),
    };
    match tok {
        Some(t) => {
            let m = super::convert_tokenizer(&t, &out.join("tokenizer.json"))?;
            let line = format!("{} ({} pieces) → tokenizer.json", t.display(), m.pieces.len());
            report.written.push(line);
        }
        None => report.notes.push(Notice::naming(
            &["tokenizer"],
            format!(
                "no tokenizer.model in {} or its parent; pass {{tokenizer}}, or put a tokenizer.json in {}",
                from.display(),
                out.display()
            ),
        )),
    }
    // What we wrote must load.
    crate::model::Model::load(out, None, &crate::model::LoadOptions::default()).with_context(
        || {
            format!(
                "internal: the converted folder {} does not load",
                out.display()
            )
        },
    )?;
    report.written.push(format!(
        "Meta LLaMA ({} shard{}) → {} ({count} tensors, {} {})",
        shards.len(),
        if shards.len() == 1 { "" } else { "s" },
        out.display(),
        super::size_str(total),
        dtype.name()
    ));
    Ok(report)
}
