//! Tensor files: memory-mapped safetensors, looked up by name, with shape checks that name
//! the tensor, the file and the expected shape.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use memmap2::Mmap;
use safetensors::tensor::Dtype as StDtype;
use safetensors::SafeTensors;

use crate::quant::{QuantFormat, QuantizedMatrix};
use crate::tensor::{shape_str, Bytes, DType, HostTensor};

struct Entry {
    file: usize,
    dtype: DType,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// Every tensor of one or several safetensors files, by name, without reading the data.
pub struct TensorFiles {
    files: Vec<(PathBuf, Arc<Mmap>)>,
    entries: BTreeMap<String, Entry>,
}

impl TensorFiles {
    /// Opens the given files; a name present in two files is an error.
    pub fn open(paths: &[PathBuf]) -> Result<TensorFiles> {
        let mut files = Vec::new();
        let mut entries = BTreeMap::new();
        for path in paths {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            // SAFETY: the file is opened read-only; like every mmap user we rely on nobody
            // truncating the model file while it is being served.
            let map = unsafe { Mmap::map(&file) }
                .with_context(|| format!("cannot memory-map {}", path.display()))?;
            let (header_len, meta) = SafeTensors::read_metadata(&map).map_err(|e| {
                anyhow!(
                    "{}: not a valid safetensors file (truncated or corrupt): {e}",
                    path.display()
                )
            })?;
            let data_start = 8 + header_len;
            if data_start + meta.data_len() > map.len() {
                bail!(
                    "{}: truncated: the header describes {} data bytes but the file holds {}",
                    path.display(),
                    meta.data_len(),
                    map.len().saturating_sub(data_start)
                );
            }
            let index = files.len();
            for (name, info) in meta.tensors() {
                let dtype = match info.dtype {
                    StDtype::F32 => DType::F32,
                    StDtype::F16 => DType::F16,
                    StDtype::BF16 => DType::BF16,
                    StDtype::I32 => DType::I32,
                    StDtype::I8 => DType::I8,
                    StDtype::U8 => DType::U8,
                    other => bail!(
                        "{}: tensor '{name}' has dtype {other:?}; lav2 reads F32, F16, BF16, I32, I8 and U8",
                        path.display()
                    ),
                };
                let (a, b) = info.data_offsets;
                let entry = Entry {
                    file: index,
                    dtype,
                    shape: info.shape.clone(),
                    start: data_start + a,
                    end: data_start + b,
                };
                if let Some(prev) = entries.insert(name.clone(), entry) {
                    bail!(
                        "tensor '{name}' appears in both {} and {}",
                        files_path(&files, prev.file, path).display(),
                        path.display()
                    );
                }
            }
            files.push((path.clone(), Arc::new(map)));
        }
        Ok(TensorFiles { files, entries })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|s| s.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    pub fn dtype(&self, name: &str) -> Option<DType> {
        self.entries.get(name).map(|e| e.dtype)
    }

    pub fn describe_source(&self) -> String {
        let names: Vec<String> = self
            .files
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        names.join(", ")
    }

    /// The tensor, which must exist with exactly this shape.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let t = self.get_any(name)?;
        if t.shape != shape {
            bail!(
                "tensor '{name}' in {} has shape {}, expected {}",
                self.describe_source(),
                shape_str(&t.shape),
                shape_str(shape)
            );
        }
        Ok(t)
    }

    /// The tensor if present (then with exactly this shape).
    pub fn get_opt(&self, name: &str, shape: &[usize]) -> Result<Option<HostTensor>> {
        if self.contains(name) {
            self.get(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The tensor with whatever shape it has.
    pub fn get_any(&self, name: &str) -> Result<HostTensor> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| anyhow!("missing tensor '{name}' in {}", self.describe_source()))?;
        let expected = e.shape.iter().product::<usize>() * e.dtype.size();
        if e.end - e.start != expected {
            bail!(
                "tensor '{name}' in {}: {} data bytes for shape {} of {}",
                self.describe_source(),
                e.end - e.start,
                shape_str(&e.shape),
                e.dtype
            );
        }
        Ok(HostTensor {
            shape: e.shape.clone(),
            dtype: e.dtype,
            bytes: Bytes::Mapped {
                map: self.files[e.file].1.clone(),
                start: e.start,
                end: e.end,
            },
        })
    }

    /// Refuses a tensor that weights cannot be read from (an integer dtype) and, with
    /// `check_finite`, one holding NaN or an infinity, naming the first such tensor (by name
    /// order) and its file.
    pub fn check_weights(&self, check_finite: bool) -> Result<()> {
        for (name, e) in &self.entries {
            let file = self.files[e.file].0.display();
            if !matches!(e.dtype, DType::F32 | DType::F16 | DType::BF16) {
                bail!(
                    "tensor '{name}' in {file} has dtype {}; weights must be f32, f16 or bf16",
                    e.dtype
                );
            }
            if !check_finite {
                continue;
            }
            let raw = &self.files[e.file].1[e.start..e.end];
            if let Some((i, v)) = crate::limits::first_non_finite_par(e.dtype, raw) {
                return Err(crate::notice::OptionError::new(
                    &["skip_finite_check"],
                    format!(
                        "tensor '{name}' in {file} holds {v} at element {i} (shape {}); NaN and \
                         infinite weights are refused ({{skip_finite_check}} skips this scan)",
                        shape_str(&e.shape)
                    ),
                )
                .into());
            }
        }
        Ok(())
    }

    pub fn total_bytes(&self) -> usize {
        self.entries.values().map(|e| e.end - e.start).sum()
    }
}

fn files_path<'a>(files: &'a [(PathBuf, Arc<Mmap>)], i: usize, fallback: &'a Path) -> &'a Path {
    files.get(i).map(|(p, _)| p.as_path()).unwrap_or(fallback)
}

/// Every tensor the graphs use, by our own canonical name, in upload order. A clone shares the
/// tensors' bytes.
#[derive(Clone, Default)]
pub struct WeightStore {
    pub tensors: Vec<HostTensor>,
    pub names: Vec<String>,
    index: HashMap<String, usize>,
    /// Quantized matrices: format and logical input width, by name.
    quant: HashMap<String, (QuantFormat, usize)>,
}

impl WeightStore {
    pub fn insert(&mut self, name: &str, t: HostTensor) -> usize {
        if let Some(&i) = self.index.get(name) {
            self.tensors[i] = t;
            return i;
        }
        self.tensors.push(t);
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), self.tensors.len() - 1);
        self.tensors.len() - 1
    }

    /// Replaces the matrix `name` by its quantized form (`name`, `name.scales`, `name.zeros`).
    pub fn insert_quantized(&mut self, name: &str, q: QuantizedMatrix) {
        self.insert(name, q.values);
        self.insert(&format!("{name}.scales"), q.scales);
        if let Some(z) = q.zeros {
            self.insert(&format!("{name}.zeros"), z);
        }
        self.quant
            .insert(name.to_string(), (q.format, q.in_features));
    }

    pub fn quant_info(&self, name: &str) -> Option<(QuantFormat, usize)> {
        self.quant.get(name).copied()
    }

    pub fn id(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn get(&self, name: &str) -> Option<&HostTensor> {
        self.id(name).map(|i| &self.tensors[i])
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn total_bytes(&self) -> usize {
        self.tensors.iter().map(|t| t.bytes.as_slice().len()).sum()
    }

    pub fn total_params(&self) -> usize {
        self.tensors.iter().map(|t| t.numel()).sum()
    }
}
