//! Quantizing a loaded model's linear layers, and the `lav2 quantize` file that stores the
//! result so a later load skips the work.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use super::config::{ModelConfig, LINEARS};
use super::weights::{TensorFiles, WeightStore};
use crate::quant::{groups, quantize, QuantFormat, QuantizedMatrix};
use crate::tensor::{shape_str, DType, HostTensor};

/// The matrices that are quantized: every linear layer of the decoder and the LM head. The
/// embedding table (a lookup, not a matmul), norms, biases and the vision tower stay as loaded.
pub fn quantized_names(c: &ModelConfig) -> Vec<String> {
    let mut v: Vec<String> = (0..c.n_layers)
        .flat_map(|l| LINEARS.iter().map(move |w| format!("layers.{l}.{w}")))
        .collect();
    v.push("output".into());
    v
}

/// Identifies the unquantized weights a quantized file was made from: names, shapes and 64
/// sampled values per matrix (FNV-1a), so a file for another model or adapter is refused.
pub fn fingerprint(store: &WeightStore, names: &[String]) -> Result<u64> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for name in names {
        let t = store
            .get(name)
            .ok_or_else(|| anyhow!("internal error: no weight '{name}'"))?;
        eat(name.as_bytes());
        for d in &t.shape {
            eat(&(*d as u64).to_le_bytes());
        }
        let n = t.numel();
        for i in 0..64 {
            eat(&t.get_f32(i * n / 64).to_bits().to_le_bytes());
        }
    }
    Ok(h)
}

pub fn quantize_store(c: &ModelConfig, store: &mut WeightStore, format: QuantFormat) -> Result<()> {
    let names = quantized_names(c);
    let done = quantize_all(store, &names, format)?;
    for (name, q) in names.iter().zip(done) {
        store.insert_quantized(name, q);
    }
    Ok(())
}

/// Quantizes on every core: loading a 7B model must not wait on one thread.
fn quantize_all(
    store: &WeightStore,
    names: &[String],
    format: QuantFormat,
) -> Result<Vec<QuantizedMatrix>> {
    let threads = std::thread::available_parallelism()
        .map(|t| t.get())
        .unwrap_or(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<Result<QuantizedMatrix>>> =
        (0..names.len()).map(|_| None).collect();
    let slots = std::sync::Mutex::new(&mut results);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= names.len() {
                    break;
                }
                let r = (|| {
                    let t = store
                        .get(&names[i])
                        .ok_or_else(|| anyhow!("no weight '{}'", names[i]))?;
                    Ok(quantize(&t.to_f32()?, t.shape[0], t.shape[1], format))
                })();
                slots.lock().expect("no panics while holding the lock")[i] = Some(r);
            });
        }
    });
    results
        .into_iter()
        .map(|r| r.expect("every matrix visited"))
        .collect()
}

const META_FORMAT: &str = "lav2.quant";
const META_FINGERPRINT: &str = "lav2.fingerprint";

/// Quantizes and writes `path`; returns the number of bytes of quantized weights.
pub fn write_quantized(
    path: &Path,
    c: &ModelConfig,
    store: &WeightStore,
    format: QuantFormat,
) -> Result<usize> {
    if format == QuantFormat::None {
        bail!("a quantized file needs the int8 or int4 format, not f16");
    }
    let names = quantized_names(c);
    let print = fingerprint(store, &names)?;
    let done = quantize_all(store, &names, format)?;
    let mut tensors: Vec<(String, HostTensor)> = Vec::new();
    for (name, q) in names.iter().zip(done) {
        tensors.push((name.clone(), q.values));
        tensors.push((format!("{name}.scales"), q.scales));
        if let Some(z) = q.zeros {
            tensors.push((format!("{name}.zeros"), z));
        }
    }
    let bytes = tensors.iter().map(|(_, t)| t.bytes.as_slice().len()).sum();
    let raw: Vec<(&str, &str, &[usize], &[u8])> = tensors
        .iter()
        .map(|(n, t)| {
            let dtype = match t.dtype {
                DType::I8 => "I8",
                DType::U8 => "U8",
                DType::F16 => "F16",
                other => bail!("internal: quantized tensor '{n}' is {other}, not bytes or f16"),
            };
            Ok((n.as_str(), dtype, t.shape.as_slice(), t.bytes.as_slice()))
        })
        .collect::<Result<_>>()?;
    let meta = [
        (META_FORMAT, format.name().to_string()),
        (META_FINGERPRINT, format!("{print:016x}")),
    ];
    crate::io::st_writer::write_raw(path, &raw, &meta)?;
    Ok(bytes)
}

pub fn load_quantized(path: &Path, c: &ModelConfig, store: &mut WeightStore) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow!("{}: not a valid safetensors file: {e}", path.display()))?;
    let info = meta.metadata().clone().unwrap_or_default();
    let format = match info.get(META_FORMAT).map(|s| s.as_str()) {
        Some("int8") => QuantFormat::Int8,
        Some("int4") => QuantFormat::Int4 { zero_point: false },
        Some("int4-zp") => QuantFormat::Int4 { zero_point: true },
        Some(other) => bail!("{}: unknown quantization '{other}'", path.display()),
        None => bail!(
            "{}: not a lav2 quantized file (no '{META_FORMAT}' metadata)",
            path.display()
        ),
    };
    let names = quantized_names(c);
    let want = format!("{:016x}", fingerprint(store, &names)?);
    if info.get(META_FINGERPRINT) != Some(&want) {
        bail!(
            "{}: made from different weights than this model and adapter (fingerprint {}, expected {want})",
            path.display(),
            info.get(META_FINGERPRINT).map_or("none", |s| s.as_str())
        );
    }
    let files = TensorFiles::open(&[path.to_path_buf()])?;
    for name in &names {
        let t = store.get(name).expect("fingerprinted");
        let (out_f, in_f) = (t.shape[0], t.shape[1]);
        let ng = groups(in_f, format.group(in_f));
        let (vshape, vtype) = match format {
            QuantFormat::Int8 => (vec![out_f, in_f], DType::I8),
            _ => (vec![out_f, in_f.div_ceil(2)], DType::U8),
        };
        let values = files.get(name, &vshape)?;
        if values.dtype != vtype {
            bail!(
                "{}: tensor '{name}' is {}, expected {vtype}",
                path.display(),
                values.dtype
            );
        }
        let scales = files.get(&format!("{name}.scales"), &[out_f, ng])?;
        if scales.dtype != DType::F16 {
            bail!(
                "{}: tensor '{name}.scales' {} is {}, expected f16",
                path.display(),
                shape_str(&scales.shape),
                scales.dtype
            );
        }
        // Scales multiply every weight of their group: a NaN or infinite one poisons them all.
        if let Some((i, v)) = crate::limits::first_non_finite(DType::F16, scales.bytes.as_slice()) {
            bail!(
                "{}: tensor '{name}.scales' holds {v} at element {i}; quantization scales must be finite",
                path.display()
            );
        }
        let zeros = match format {
            QuantFormat::Int4 { zero_point: true } => {
                Some(files.get(&format!("{name}.zeros"), &[out_f, ng])?)
            }
            _ => None,
        };
        store.insert_quantized(
            name,
            QuantizedMatrix {
                format,
                out_features: out_f,
                in_features: in_f,
                values,
                scales,
                zeros,
            },
        );
    }
    Ok(())
}
