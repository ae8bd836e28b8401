//! Tensors of the converter's inputs, whatever holds them: a PyTorch archive or a safetensors
//! file (any dtype listed; float32 / float16 / bfloat16 read).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use memmap2::Mmap;
use safetensors::tensor::Dtype as StDtype;
use safetensors::SafeTensors;

use super::pickle::{TensorRef, TorchDType};
use super::pth::{bytes_to_f32, check_float, Checkpoint};

/// One safetensors file, memory-mapped, with every tensor's dtype, shape and byte range.
pub struct StFile {
    pub name: String,
    map: Mmap,
    pub entries: BTreeMap<String, StEntry>,
}

pub struct StEntry {
    pub dtype: String,
    pub torch: Option<TorchDType>,
    pub shape: Vec<usize>,
    start: usize,
    end: usize,
}

impl StFile {
    pub fn open(path: &Path) -> Result<StFile> {
        let name = path.display().to_string();
        let file = File::open(path).with_context(|| format!("cannot open {name}"))?;
        // SAFETY: read-only mapping of an input file that is not modified while converting.
        let map =
            unsafe { Mmap::map(&file) }.with_context(|| format!("cannot memory-map {name}"))?;
        let (header_len, meta) = SafeTensors::read_metadata(&map).map_err(|e| {
            anyhow!("{name}: not a valid safetensors file (truncated or corrupt): {e}")
        })?;
        let data_start = 8 + header_len;
        let mut entries = BTreeMap::new();
        for (tname, info) in meta.tensors() {
            let (a, b) = info.data_offsets;
            let (start, end) = (data_start + a, data_start + b);
            if end > map.len() || a > b {
                bail!("{name}: tensor '{tname}' lies past the end of the file (truncated?)");
            }
            let torch = match info.dtype {
                StDtype::F64 => Some(TorchDType::F64),
                StDtype::F32 => Some(TorchDType::F32),
                StDtype::F16 => Some(TorchDType::F16),
                StDtype::BF16 => Some(TorchDType::BF16),
                StDtype::I64 => Some(TorchDType::I64),
                StDtype::I32 => Some(TorchDType::I32),
                StDtype::I16 => Some(TorchDType::I16),
                StDtype::I8 => Some(TorchDType::I8),
                StDtype::U8 => Some(TorchDType::U8),
                StDtype::BOOL => Some(TorchDType::Bool),
                _ => None,
            };
            let n: Option<usize> = info
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d));
            if let (Some(t), Some(n)) = (torch, n) {
                if n.checked_mul(t.size()) != Some(end - start) {
                    bail!(
                        "{name}: tensor '{tname}' has {} bytes for shape {:?} of {}",
                        end - start,
                        info.shape,
                        t
                    );
                }
            }
            entries.insert(
                tname.clone(),
                StEntry {
                    dtype: format!("{:?}", info.dtype),
                    torch,
                    shape: info.shape.clone(),
                    start,
                    end,
                },
            );
        }
        Ok(StFile { name, map, entries })
    }

    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| anyhow!("{}: no tensor '{name}'", self.name))?;
        let Some(d) = e.torch else {
            bail!("{}: tensor '{name}' has dtype {}; lav2 converts float32, float16 and bfloat16 weights only", self.name, e.dtype);
        };
        check_float(&self.name, name, d)?;
        Ok(bytes_to_f32(d, &self.map[e.start..e.end]))
    }
}

/// Where one input tensor lives.
#[derive(Clone, Copy)]
pub enum TSrc<'a> {
    Pth(&'a Checkpoint, &'a TensorRef),
    St(&'a StFile, &'a str),
}

impl<'a> TSrc<'a> {
    pub fn shape(&self) -> &'a [usize] {
        match self {
            TSrc::Pth(_, t) => &t.shape,
            TSrc::St(f, n) => &f.entries[*n].shape,
        }
    }

    pub fn dtype_name(&self) -> String {
        match self {
            TSrc::Pth(_, t) => t.dtype().name().to_string(),
            TSrc::St(f, n) => {
                let e = &f.entries[*n];
                e.torch
                    .map(|d| d.name().to_string())
                    .unwrap_or_else(|| e.dtype.clone())
            }
        }
    }

    pub fn file(&self) -> &'a str {
        match self {
            TSrc::Pth(c, _) => &c.name,
            TSrc::St(f, _) => &f.name,
        }
    }

    pub fn read_f32(&self, path: &str) -> Result<Vec<f32>> {
        match self {
            TSrc::Pth(c, t) => c.read_f32(path, t),
            TSrc::St(f, n) => f.read_f32(n),
        }
    }

    pub fn numel(&self) -> usize {
        self.shape().iter().product()
    }
}

/// Tensors by name (a state dict), from any input.
pub type StateDict<'a> = BTreeMap<String, TSrc<'a>>;

/// All tensors of a checkpoint, by dotted path.
pub fn state_dict_of(ckpt: &Checkpoint) -> StateDict<'_> {
    ckpt.tensors()
        .into_iter()
        .map(|(k, t)| (k, TSrc::Pth(ckpt, t)))
        .collect()
}

/// The tensors under one sub-dict of a checkpoint (e.g. `model`), by path within it.
pub fn sub_state_dict<'a>(ckpt: &'a Checkpoint, value: &'a super::pickle::Value) -> StateDict<'a> {
    super::pth::tensors_of(value)
        .into_iter()
        .map(|(k, t)| (k, TSrc::Pth(ckpt, t)))
        .collect()
}

pub fn st_state_dict(f: &StFile) -> StateDict<'_> {
    f.entries
        .keys()
        .map(|k| (k.clone(), TSrc::St(f, k.as_str())))
        .collect()
}
