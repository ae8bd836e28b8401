//! `lav2 convert`: part of the binary (declared by main.rs): its flags, and what it prints of
//! the library's [`ConvertReport`].

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use lav2::convert::{self, ConvertReport, OutDType};

/// `--dtype`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DTypeFlag {
    F16,
    F32,
}

impl From<DTypeFlag> for OutDType {
    fn from(d: DTypeFlag) -> OutDType {
        match d {
            DTypeFlag::F16 => OutDType::F16,
            DTypeFlag::F32 => OutDType::F32,
        }
    }
}

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
    pub dtype: DTypeFlag,
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
    pub dtype: DTypeFlag,
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

/// Runs a conversion and prints what it reports: notes and warnings on stderr, what was
/// written on stdout.
pub fn run(cmd: ConvertCommand) -> Result<()> {
    use lav2::io::paths::{require_dir, require_exists, require_file};
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
    let report = match cmd {
        ConvertCommand::Base(a) => {
            convert::base::convert(&a.from, &a.out, a.dtype.into(), a.tokenizer.as_deref())?
        }
        ConvertCommand::Adapter(a) => {
            let opts = convert::adapter::AdapterOptions {
                clip: a.clip,
                base: a.base,
                query_len: a.query_len,
                gate_activation: a.gate_activation,
                v_num_heads: a.v_num_heads,
                clip_heads: a.clip_heads,
                channel_order: a.channel_order,
                text_only: a.text_only,
            };
            convert::adapter::convert(&a.from, &a.out, a.dtype.into(), &opts)?
        }
        ConvertCommand::Tokenizer(a) => {
            let m = convert::convert_tokenizer(&a.from, &a.out)?;
            ConvertReport {
                written: vec![format!(
                    "sentencepiece {} model, {} pieces → {}",
                    m.model_type_name(),
                    m.pieces.len(),
                    a.out.display()
                )],
                ..ConvertReport::default()
            }
        }
    };
    for w in &report.warnings {
        eprintln!("lav2: warning: {}", w.render(super::flag));
    }
    for n in &report.notes {
        eprintln!("lav2: note: {}", n.render(super::flag));
    }
    for line in &report.written {
        println!("{line}");
    }
    Ok(())
}
