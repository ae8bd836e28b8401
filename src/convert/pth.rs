//! PyTorch checkpoint archives: the zip container of `torch.save` (since torch 1.6) and of
//! TorchScript (`torch.jit.save`), read without running any of their code.
//!
//! Layout: `<prefix>/data.pkl` (the object, a restricted pickle, see [`super::pickle`]),
//! `<prefix>/data/<key>` (raw little-endian storage bytes, stored uncompressed), and for
//! TorchScript `<prefix>/constants.pkl` and `<prefix>/code/…` (ignored: we want the weights,
//! not the program). Every storage a tensor uses is checked against the record that holds it
//! (declared size = record size), every view against its storage, before any data is read.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use half::{bf16, f16};
use memmap2::Mmap;

use super::pickle::{self, TensorRef, TorchDType, Value};

/// What kind of archive this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveKind {
    /// `torch.save` (a `.pth` / `.pt` / `.bin` state dict or any pickled object).
    TorchSave,
    /// `torch.jit.save` (a TorchScript module: its attributes hold the weights).
    TorchScript,
}

impl ArchiveKind {
    pub fn name(self) -> &'static str {
        match self {
            ArchiveKind::TorchSave => "torch.save zip archive",
            ArchiveKind::TorchScript => "TorchScript archive (torch.jit.save)",
        }
    }
}

enum Source {
    Mapped(Arc<Mmap>),
    Owned(Vec<u8>),
}

impl Source {
    fn bytes(&self) -> &[u8] {
        match self {
            Source::Mapped(m) => m,
            Source::Owned(v) => v,
        }
    }
}

/// An opened checkpoint: its object tree and where each storage's bytes are.
pub struct Checkpoint {
    /// For messages: the file name.
    pub name: String,
    pub kind: ArchiveKind,
    /// The top-level folder inside the zip (`archive`, or the file's stem).
    pub prefix: String,
    /// The unpickled object.
    pub root: Value,
    source: Source,
    /// Record name (without prefix) → (start, len) in the file.
    records: HashMap<String, (usize, usize)>,
}

/// `torch.save`'s legacy (pre-1.6) format starts with a pickled magic number.
const LEGACY_MAGIC: [u8; 12] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8,
];

impl Checkpoint {
    pub fn open(path: &Path) -> Result<Checkpoint> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: read-only mapping; like every mmap reader we rely on the file not being
        // truncated while it is being converted.
        let map = unsafe { Mmap::map(&file) }
            .with_context(|| format!("cannot memory-map {}", path.display()))?;
        Checkpoint::from_source(path.display().to_string(), Source::Mapped(Arc::new(map)))
    }

    /// Reads a checkpoint held in memory (tests and fuzzing).
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Checkpoint> {
        Checkpoint::from_source(name.to_string(), Source::Owned(bytes))
    }

    fn from_source(name: String, source: Source) -> Result<Checkpoint> {
        let bytes = source.bytes();
        if bytes.starts_with(&LEGACY_MAGIC) {
            bail!(
                "{name}: this is torch.save's legacy (pre-1.6) format, which lav2 does not read; \
                 re-save it with a current torch (torch.save(torch.load(f), f2))"
            );
        }
        if bytes.len() < 4 || &bytes[..2] != b"PK" {
            bail!(
                "{name}: not a PyTorch checkpoint (expected a zip archive as torch.save and \
                 torch.jit.save write; the file starts with {:02x?})",
                &bytes[..bytes.len().min(4)]
            );
        }
        let entries = zip_entries(bytes).with_context(|| {
            format!("{name}: not a readable PyTorch zip archive (truncated or corrupt)")
        })?;
        // The archive's top folder is the one holding data.pkl.
        let prefix = entries
            .iter()
            .filter_map(|e| e.name.strip_suffix("/data.pkl"))
            .find(|p| !p.is_empty() && !p.contains('/'))
            .map(|p| p.to_string())
            .ok_or_else(|| {
                anyhow!("{name}: zip archive has no <folder>/data.pkl; not a PyTorch checkpoint")
            })?;
        let mut records = HashMap::new();
        let lead = format!("{prefix}/");
        for e in &entries {
            let Some(rel) = e.name.strip_prefix(&lead) else {
                continue;
            };
            if records.contains_key(rel) {
                bail!("{name}: zip archive holds '{}' twice", e.name);
            }
            records.insert(rel.to_string(), (e.start, e.len, e.stored));
        }
        let is_script =
            records.contains_key("constants.pkl") || records.keys().any(|k| k.starts_with("code/"));
        let kind = if is_script {
            ArchiveKind::TorchScript
        } else {
            ArchiveKind::TorchSave
        };
        if let Some(&(s, l, stored)) = records.get("byteorder") {
            if stored && &bytes[s..s + l] == b"big" {
                bail!("{name}: big-endian checkpoint; lav2 reads little-endian data only");
            }
        }
        let record = |rel: &str| -> Result<&[u8]> {
            let &(s, l, stored) = records
                .get(rel)
                .ok_or_else(|| anyhow!("{name}: archive record '{prefix}/{rel}' is missing"))?;
            if !stored {
                bail!("{name}: archive record '{prefix}/{rel}' is compressed; torch writes them uncompressed and lav2 reads only those");
            }
            Ok(&bytes[s..s + l])
        };
        let pkl = record("data.pkl")?;
        let root = pickle::parse(
            pkl,
            pickle::Options {
                torchscript: kind == ArchiveKind::TorchScript,
            },
        )
        .with_context(|| format!("{name}: {prefix}/data.pkl"))?;
        let records: HashMap<String, (usize, usize)> = records
            .into_iter()
            .map(|(k, (s, l, stored))| (k, (s, if stored { l } else { usize::MAX })))
            .collect();
        let ckpt = Checkpoint {
            name,
            kind,
            prefix,
            root,
            source,
            records,
        };
        ckpt.validate()?;
        Ok(ckpt)
    }

    /// Checks every tensor's storage against the bytes the archive holds.
    fn validate(&self) -> Result<()> {
        let mut seen: HashMap<&str, (&pickle::StorageRef, String)> = HashMap::new();
        let mut result = Ok(());
        visit_tensors(&self.root, &mut String::new(), &mut |path, t| {
            if result.is_err() {
                return;
            }
            result = (|| {
                let s = &t.storage;
                if let Some((prev, prev_path)) = seen.get(s.key.as_str()) {
                    if prev.dtype != s.dtype || prev.numel != s.numel {
                        bail!(
                            "{}: storage '{}' is declared as {} x {} for '{prev_path}' but {} x {} for '{path}'",
                            self.name, s.key, prev.numel, prev.dtype, s.numel, s.dtype
                        );
                    }
                    return Ok(());
                }
                let (_, len) = self.storage_record(&s.key)?;
                let declared = s.numel.checked_mul(s.dtype.size());
                if declared != Some(len) {
                    bail!(
                        "{}: tensor '{path}': its storage '{}/data/{}' declares {} elements of {} ({} bytes) \
                         but the archive record holds {len} bytes",
                        self.name,
                        self.prefix,
                        s.key,
                        s.numel,
                        s.dtype,
                        s.numel as u128 * s.dtype.size() as u128
                    );
                }
                seen.insert(&s.key, (s, path.to_string()));
                Ok(())
            })();
        });
        result
    }

    fn storage_record(&self, key: &str) -> Result<(usize, usize)> {
        let rel = format!("data/{key}");
        let &(start, len) = self.records.get(&rel).ok_or_else(|| {
            anyhow!(
                "{}: storage '{}/{rel}' is referenced but not in the archive",
                self.name,
                self.prefix
            )
        })?;
        if len == usize::MAX {
            bail!(
                "{}: storage '{}/{rel}' is compressed; torch writes storages uncompressed and lav2 reads only those",
                self.name,
                self.prefix
            );
        }
        Ok((start, len))
    }

    /// Every tensor in the object, with a dotted path (`model.llama.norm.weight`).
    pub fn tensors(&self) -> Vec<(String, &TensorRef)> {
        tensors_of(&self.root)
    }

    /// The tensor's elements, row-major, as raw little-endian bytes of its own dtype.
    pub fn raw(&self, t: &TensorRef) -> Result<Vec<u8>> {
        let (start, len) = self.storage_record(&t.storage.key)?;
        let es = t.storage.dtype.size();
        let data = &self.source.bytes()[start..start + len];
        let numel = t.numel();
        if numel == 0 {
            return Ok(Vec::new());
        }
        // Bounds were checked at parse time against the declared count, and the declared
        // count against the record; check again here so that this function stands alone.
        let last = t
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |acc, (&d, &s)| {
                (d - 1).checked_mul(s).and_then(|x| x.checked_add(acc))
            })
            .ok_or_else(|| anyhow!("{}: tensor view overflows", self.name))?;
        if (last + 1)
            .checked_mul(es)
            .is_none_or(|end| end > data.len())
        {
            bail!("{}: tensor view reaches past its storage", self.name);
        }
        // The gathered copy is `numel` elements: never more than the storage holds.
        if numel.checked_mul(es).is_none_or(|n| n > data.len()) {
            bail!(
                "{}: tensor view has more elements than its storage (a broadcast view)",
                self.name
            );
        }
        if t.is_contiguous() {
            let s = t.offset * es;
            return Ok(data[s..s + numel * es].to_vec());
        }
        // A strided view: gather element by element in row-major order.
        let mut out = Vec::with_capacity(numel * es);
        let nd = t.shape.len();
        let mut idx = vec![0usize; nd];
        let mut pos = t.offset;
        loop {
            out.extend_from_slice(&data[pos * es..(pos + 1) * es]);
            // Advance the multi-index.
            let mut d = nd;
            loop {
                if d == 0 {
                    return Ok(out);
                }
                d -= 1;
                idx[d] += 1;
                pos += t.stride[d];
                if idx[d] < t.shape[d] {
                    break;
                }
                pos -= t.stride[d] * t.shape[d];
                idx[d] = 0;
            }
        }
    }

    /// The tensor's elements widened to f32; only float32, float16 and bfloat16 are accepted.
    pub fn read_f32(&self, path: &str, t: &TensorRef) -> Result<Vec<f32>> {
        check_float(&self.name, path, t.dtype())?;
        let raw = self.raw(t)?;
        Ok(bytes_to_f32(t.dtype(), &raw))
    }
}

/// Refuses tensors that are not float32 / float16 / bfloat16, naming them.
pub fn check_float(file: &str, path: &str, d: TorchDType) -> Result<()> {
    match d {
        TorchDType::F32 | TorchDType::F16 | TorchDType::BF16 => Ok(()),
        other => bail!(
            "{file}: tensor '{path}' has dtype {other}; lav2 converts float32, float16 and bfloat16 weights only"
        ),
    }
}

pub fn bytes_to_f32(d: TorchDType, raw: &[u8]) -> Vec<f32> {
    match d {
        TorchDType::F32 => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        TorchDType::F16 => raw
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        TorchDType::BF16 => raw
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => Vec::new(),
    }
}

/// All tensors under a value, with dotted paths; dict keys that are strings or integers form
/// the path, list items their index, TorchScript objects their attribute names.
pub fn tensors_of(v: &Value) -> Vec<(String, &TensorRef)> {
    let mut out = Vec::new();
    let mut path = String::new();
    collect(v, &mut path, &mut out);
    out
}

fn collect<'a>(v: &'a Value, path: &mut String, out: &mut Vec<(String, &'a TensorRef)>) {
    visit_tensors(v, path, &mut |p, t| out.push((p.to_string(), t)));
}

fn visit_tensors<'a>(v: &'a Value, path: &mut String, f: &mut dyn FnMut(&str, &'a TensorRef)) {
    let child =
        |key: &str, x: &'a Value, path: &mut String, f: &mut dyn FnMut(&str, &'a TensorRef)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            visit_tensors(x, path, f);
            path.truncate(len);
        };
    match v {
        Value::Tensor(t) => f(path, t),
        Value::Dict(items) => {
            for (k, x) in items {
                let key = match k {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                child(&key, x, path, f);
            }
        }
        Value::List(items) | Value::Tuple(items) => {
            for (i, x) in items.iter().enumerate() {
                child(&i.to_string(), x, path, f);
            }
        }
        Value::Object { state, .. } => visit_tensors(state, path, f),
        _ => {}
    }
}

struct ZipEntry {
    name: String,
    start: usize,
    len: usize,
    stored: bool,
}

/// Names and data ranges of every entry, checked to lie inside the file.
fn zip_entries(bytes: &[u8]) -> Result<Vec<ZipEntry>> {
    // torch archives start with their first entry at offset 0 (no self-extractor stub); saying
    // so also avoids the zip crate's offset detection, which misreads some torch files.
    let config = zip::read::Config {
        archive_offset: zip::read::ArchiveOffset::Known(0),
    };
    let mut archive = zip::ZipArchive::with_config(config, std::io::Cursor::new(bytes))
        .map_err(|e| anyhow!("{e}"))?;
    let mut out = Vec::with_capacity(archive.len().min(1 << 16));
    for i in 0..archive.len() {
        let f = archive
            .by_index_raw(i)
            .map_err(|e| anyhow!("entry {i}: {e}"))?;
        let name = String::from_utf8_lossy(f.name_raw()).into_owned();
        let stored = f.compression() == zip::CompressionMethod::Stored;
        let start = f
            .data_start()
            .ok_or_else(|| anyhow!("entry '{name}': data offset unknown"))?;
        let len = f.compressed_size();
        if stored && f.size() != len {
            bail!("entry '{name}': stored entry with differing sizes");
        }
        let end = start
            .checked_add(len)
            .filter(|&e| e <= bytes.len() as u64)
            .ok_or_else(|| {
                anyhow!(
                    "entry '{name}' claims {len} bytes at offset {start} but the file has {} bytes (truncated?)",
                    bytes.len()
                )
            })?;
        out.push(ZipEntry {
            name,
            start: start as usize,
            len: (end - start) as usize,
            stored,
        });
    }
    Ok(out)
}
