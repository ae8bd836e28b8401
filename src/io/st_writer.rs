//! Streaming safetensors writer: the header is computed from names and shapes first, then each
//! tensor's data is produced, converted and written one at a time, so that converting a large
//! checkpoint never holds more than one tensor in memory.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use half::f16;
use serde_json::json;

/// The element type written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutDType {
    F16,
    F32,
}

impl OutDType {
    pub fn size(self) -> usize {
        match self {
            OutDType::F16 => 2,
            OutDType::F32 => 4,
        }
    }

    pub fn st_name(self) -> &'static str {
        match self {
            OutDType::F16 => "F16",
            OutDType::F32 => "F32",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OutDType::F16 => "f16",
            OutDType::F32 => "f32",
        }
    }
}

pub type Producer<'a> = Box<dyn FnOnce() -> Result<Vec<f32>> + 'a>;

/// One tensor to write: its name, shape, and a function giving its values.
pub struct Planned<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub produce: Producer<'a>,
}

impl<'a> Planned<'a> {
    pub fn new(
        name: impl Into<String>,
        shape: Vec<usize>,
        produce: impl FnOnce() -> Result<Vec<f32>> + 'a,
    ) -> Self {
        Planned {
            name: name.into(),
            shape,
            produce: Box::new(produce),
        }
    }

    pub fn constant(name: impl Into<String>, shape: Vec<usize>, value: f32) -> Planned<'a> {
        let n: usize = shape.iter().product();
        Planned::new(name, shape, move || Ok(vec![value; n]))
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Converts f32 values to the output type; f16 overflow (a finite value becoming infinite) is
/// an error naming the tensor.
pub fn encode(name: &str, values: &[f32], dtype: OutDType) -> Result<Vec<u8>> {
    match dtype {
        OutDType::F32 => Ok(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        OutDType::F16 => {
            let mut out = Vec::with_capacity(values.len() * 2);
            for &v in values {
                let h = f16::from_f32(v);
                if h.is_infinite() && v.is_finite() {
                    bail!(
                        "tensor '{name}' has the value {v}, beyond float16's range; convert with --dtype f32"
                    );
                }
                out.extend_from_slice(&h.to_le_bytes());
            }
            Ok(out)
        }
    }
}

/// The safetensors header for tensors given as (name, safetensors dtype, shape, data bytes),
/// padded so the data starts 8-byte aligned.
fn header(tensors: &[(&str, &str, &[usize], u64)], metadata: &[(&str, String)]) -> Result<String> {
    let mut header = serde_json::Map::new();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    for (k, v) in metadata {
        meta.insert(k.to_string(), v.clone());
    }
    header.insert("__metadata__".into(), json!(meta));
    let mut offset = 0u64;
    for &(name, dtype, shape, bytes) in tensors {
        if header.contains_key(name) {
            bail!("tensor '{name}' would be written twice");
        }
        let end = offset
            .checked_add(bytes)
            .ok_or_else(|| anyhow!("tensor '{name}' is too large"))?;
        header.insert(
            name.to_string(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut text = serde_json::to_string(&header)?;
    while (8 + text.len()) % 8 != 0 {
        text.push(' ');
    }
    Ok(text)
}

/// Writes tensors already in memory: (name, safetensors dtype such as "F32", shape, bytes),
/// through [`crate::io::output::write_file`]. Returns the number of data bytes written.
pub fn write_raw(
    path: &Path,
    tensors: &[(&str, &str, &[usize], &[u8])],
    metadata: &[(&str, String)],
) -> Result<u64> {
    let sizes: Vec<(&str, &str, &[usize], u64)> = tensors
        .iter()
        .map(|&(n, d, s, b)| (n, d, s, b.len() as u64))
        .collect();
    let text = header(&sizes, metadata)?;
    crate::io::output::write_file(path, |w| {
        w.write_all(&(text.len() as u64).to_le_bytes())?;
        w.write_all(text.as_bytes())?;
        for &(_, _, _, bytes) in tensors {
            w.write_all(bytes)?;
        }
        Ok(())
    })?;
    Ok(sizes.iter().map(|t| t.3).sum())
}

/// Writes `tensors` to `path` (through [`crate::io::output::write_file`]: atomically for a
/// regular file). Returns the number of data bytes written.
pub fn write(
    path: &Path,
    tensors: Vec<Planned<'_>>,
    dtype: OutDType,
    metadata: &[(&str, String)],
) -> Result<u64> {
    let mut sizes = Vec::with_capacity(tensors.len());
    for t in &tensors {
        let bytes = (t.numel() as u64)
            .checked_mul(dtype.size() as u64)
            .ok_or_else(|| anyhow!("tensor '{}' is too large", t.name))?;
        sizes.push((t.name.as_str(), dtype.st_name(), t.shape.as_slice(), bytes));
    }
    let text = header(&sizes, metadata)?;
    let total = sizes.iter().map(|t| t.3).sum();
    crate::io::output::write_file(path, |w| {
        w.write_all(&(text.len() as u64).to_le_bytes())?;
        w.write_all(text.as_bytes())?;
        for t in tensors {
            let n = t.numel();
            let name = t.name;
            let values = (t.produce)().with_context(|| format!("tensor '{name}'"))?;
            if values.len() != n {
                bail!(
                    "internal: tensor '{name}' produced {} values for {n} elements",
                    values.len()
                );
            }
            w.write_all(&encode(&name, &values, dtype)?)?;
        }
        Ok(())
    })?;
    Ok(total)
}
