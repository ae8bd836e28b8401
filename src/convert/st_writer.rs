//! Streaming safetensors writer: the header is computed from names and shapes first, then each
//! tensor's data is produced, converted and written one at a time, so that converting a large
//! checkpoint never holds more than one tensor in memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use half::f16;
use serde_json::json;

/// The element type written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
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

/// Writes `tensors` to `path` (through a temporary file renamed at the end). Returns the
/// number of data bytes written.
pub fn write(
    path: &Path,
    tensors: Vec<Planned<'_>>,
    dtype: OutDType,
    metadata: &[(&str, String)],
) -> Result<u64> {
    let mut header = serde_json::Map::new();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    for (k, v) in metadata {
        meta.insert(k.to_string(), v.clone());
    }
    header.insert("__metadata__".into(), json!(meta));
    let mut offset = 0u64;
    for t in &tensors {
        if header.contains_key(&t.name) {
            bail!("tensor '{}' would be written twice", t.name);
        }
        let bytes = (t.numel() as u64)
            .checked_mul(dtype.size() as u64)
            .ok_or_else(|| anyhow!("tensor '{}' is too large", t.name))?;
        header.insert(
            t.name.clone(),
            json!({"dtype": dtype.st_name(), "shape": t.shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut text = serde_json::to_string(&header)?;
    while (8 + text.len()) % 8 != 0 {
        text.push(' ');
    }
    let tmp = path.with_extension("safetensors.partial");
    let result = (|| -> Result<()> {
        let file =
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
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
        w.flush()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("cannot write {}", path.display())));
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    Ok(offset)
}
