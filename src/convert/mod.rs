//! `lav2 convert`: the authors' PyTorch releases to our folders, without Python and without
//! running any code a checkpoint carries.
//!
//! - [`pickle`] + [`pth`]: a restricted reader for `torch.save` / TorchScript zip archives;
//! - [`base`]: Meta `consolidated.NN.pth` shards → base folder;
//! - [`adapter`] + [`clip`]: the authors' adapter `.pth` files (+ CLIP) → adapter folder;
//! - [`spm`]: sentencepiece `tokenizer.model` → Hugging Face `tokenizer.json`;
//! - [`describe`]: what `lav2 info` prints for such files.

pub mod adapter;
pub mod base;
pub mod clip;
pub mod describe;
pub mod pickle;
pub mod pth;
pub mod source;
pub mod spm;
pub mod st_writer;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};

pub use st_writer::OutDType;

#[derive(Subcommand, Debug)]
pub enum ConvertCommand {
    /// Meta LLaMA folder (params.json + consolidated.*.pth [+ tokenizer.model]) → base folder.
    Base(BaseArgs),
    /// An authors' LLaMA-Adapter checkpoint (.pth) [+ CLIP] → adapter folder.
    Adapter(AdapterArgs),
    /// sentencepiece tokenizer.model → Hugging Face tokenizer.json.
    Tokenizer(TokenizerArgs),
}

#[derive(Args, Debug)]
pub struct BaseArgs {
    /// Meta's checkpoint folder: params.json and consolidated.00.pth (… .NN.pth).
    #[arg(long)]
    pub from: PathBuf,
    /// Output folder (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Element type written; f32 keeps every value exactly.
    #[arg(long, value_enum, default_value = "f16")]
    pub dtype: OutDType,
    /// tokenizer.model to convert; default: the one in --from or its parent folder.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct AdapterArgs {
    /// The adapter checkpoint (.pth).
    #[arg(long)]
    pub from: PathBuf,
    /// CLIP vision tower: OpenAI's ViT-L-14.pt (TorchScript) or a Hugging Face CLIP folder.
    #[arg(long)]
    pub clip: Option<PathBuf>,
    /// Output folder (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Element type written; f32 keeps every value exactly.
    #[arg(long, value_enum, default_value = "f16")]
    pub dtype: OutDType,
    /// Base model folder (or its params.json), to take the model's dimensions from and check
    /// the adapter against; without it they are read off the adapter's tensors.
    #[arg(long)]
    pub base: Option<PathBuf>,
    /// Prompt length of a checkpoint without a visual path (V1); default: from a file name like
    /// `…len10_layer30…`, else 10.
    #[arg(long)]
    pub query_len: Option<usize>,
    /// tanh | identity (default: identity for V1 checkpoints, as the authors' V1 inference
    /// script; tanh otherwise).
    #[arg(long)]
    pub gate_activation: Option<String>,
    /// Attention heads of the visual resampler blocks (the authors use 16).
    #[arg(long)]
    pub v_num_heads: Option<usize>,
    /// Attention heads of the CLIP ViT (default: config.json, or width / 64 as OpenAI's).
    #[arg(long)]
    pub clip_heads: Option<usize>,
    /// Channel order the adapter was trained on: bgr (the releases) or rgb.
    #[arg(long)]
    pub channel_order: Option<String>,
    /// Drop the visual path (prompts without the image term; no CLIP needed).
    #[arg(long)]
    pub text_only: bool,
}

#[derive(Args, Debug)]
pub struct TokenizerArgs {
    /// sentencepiece model (LLaMA's tokenizer.model).
    #[arg(long)]
    pub from: PathBuf,
    /// tokenizer.json to write.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(cmd: ConvertCommand) -> Result<()> {
    use crate::io::paths::{require_dir, require_exists, require_file};
    match &cmd {
        ConvertCommand::Base(a) => require_dir("--from", &a.from)?,
        ConvertCommand::Adapter(a) => {
            require_file("--from", &a.from)?;
            if let Some(c) = &a.clip {
                require_exists("--clip", c)?;
            }
            if let Some(b) = &a.base {
                require_exists("--base", b)?;
            }
        }
        ConvertCommand::Tokenizer(a) => require_file("--from", &a.from)?,
    }
    match cmd {
        ConvertCommand::Base(a) => base::convert(&a.from, &a.out, a.dtype, a.tokenizer.as_deref()),
        ConvertCommand::Adapter(a) => {
            let opts = adapter::AdapterOptions {
                clip: a.clip,
                base: a.base,
                query_len: a.query_len,
                gate_activation: a.gate_activation,
                v_num_heads: a.v_num_heads,
                clip_heads: a.clip_heads,
                channel_order: a.channel_order,
                text_only: a.text_only,
            };
            adapter::convert(&a.from, &a.out, a.dtype, &opts)
        }
        ConvertCommand::Tokenizer(a) => {
            let m = convert_tokenizer(&a.from, &a.out)?;
            println!(
                "sentencepiece {} model, {} pieces → {}",
                m.model_type_name(),
                m.pieces.len(),
                a.out.display()
            );
            Ok(())
        }
    }
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
