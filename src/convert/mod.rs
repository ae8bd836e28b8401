//! `lav2 convert`: the authors' PyTorch releases to our folders, without Python and without
//! running any code a checkpoint carries.
//!
//! - [`pickle`] + [`pth`]: a restricted reader for `torch.save` / TorchScript zip archives;
//! - [`base`]: Meta `consolidated.NN.pth` shards → base folder;
//! - [`adapter`] + [`clip`]: the authors' adapter `.pth` files (+ CLIP) → adapter folder;
//! - [`spm`]: sentencepiece `tokenizer.model` → Hugging Face `tokenizer.json`;
//! - `describe`: what `lav2 info` prints for such files.

pub mod adapter;
pub mod base;
pub mod clip;
pub mod describe;
pub mod pickle;
pub mod pth;
pub mod source;
pub mod spm;

use std::path::Path;

use anyhow::{anyhow, Context, Result};

pub use crate::io::st_writer::OutDType;
use crate::notice::Notice;

/// What a conversion has to say besides its error: about its input, and what it wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConvertReport {
    /// What the input lacked or held beyond what was expected, and how it was made up for.
    pub warnings: Vec<Notice>,
    /// Choices made where the input did not say (assumed values, skipped tables).
    pub notes: Vec<Notice>,
    /// One line per thing written: what it was made from, where it went, its size.
    pub written: Vec<String>,
}

/// Converts a sentencepiece model file to `tokenizer.json`, checking that the result loads.
pub fn convert_tokenizer(from: &Path, to: &Path) -> Result<spm::SpModel> {
    let bytes = std::fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    let m = spm::SpModel::parse(&bytes)
        .with_context(|| format!("{}: not a sentencepiece model", from.display()))?;
    let json = m.to_hf_json().with_context(|| from.display().to_string())?;
    <tokenizers::Tokenizer as std::str::FromStr>::from_str(&json).map_err(|e| {
        anyhow!(
            "internal: the tokenizer.json made from {} does not load: {e}",
            from.display()
        )
    })?;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::io::output::write_bytes(to, json.as_bytes())?;
    Ok(m)
}

fn size_str(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GB", b as f64 / 1e9),
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / 1e6),
        b => format!("{:.1} KB", b as f64 / 1e3),
    }
}

/// Describes any file or folder `lav2 info` is pointed at.
pub fn describe(path: &Path) -> Result<String> {
    describe::describe(path)
}
