//! `lav2 bench`: part of the binary (declared by main.rs): its flags, checked, turned into the
//! library's `BenchOptions`.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use lav2::quant::QuantFormat;

#[derive(Args)]
pub struct BenchArgs {
    /// Model shape: 7b, 13b or tiny (default: 7b on a GPU, tiny on the CPU).
    #[arg(long)]
    preset: Option<String>,
    #[arg(long, default_value = "auto")]
    device: String,
    /// Weight formats to measure, comma-separated (f16, int8, int4).
    #[arg(long, default_value = "f16,int8,int4")]
    quant: String,
    /// with | without | both.
    #[arg(long, default_value = "both")]
    adapter: String,
    /// Prompt lengths for prefill, comma-separated.
    #[arg(long, default_value = "128,512", allow_hyphen_values = true)]
    prefill: String,
    /// Contexts for decode, comma-separated.
    #[arg(long, default_value = "128,2048", allow_hyphen_values = true)]
    contexts: String,
    /// Decode steps timed per context.
    #[arg(long, default_value_t = 32, allow_negative_numbers = true)]
    decode_tokens: usize,
    /// Timed runs of every step (at least 5 for the adapter's overhead to resolve from noise).
    #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
    repeats: usize,
    /// Sequences decoded side by side, each with its own KV cache (one shared image).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    batch: usize,
    /// Model width, replacing the preset's (with --layers, --heads, --kv-heads, --ffn, --vocab).
    #[arg(long, allow_negative_numbers = true)]
    dim: Option<usize>,
    #[arg(long, allow_negative_numbers = true)]
    layers: Option<usize>,
    #[arg(long, allow_negative_numbers = true)]
    heads: Option<usize>,
    /// Key/value heads (grouped-query attention); defaults to --heads when --heads is given.
    #[arg(long, allow_negative_numbers = true)]
    kv_heads: Option<usize>,
    /// Hidden size of the feed-forward layers.
    #[arg(long, allow_negative_numbers = true)]
    ffn: Option<usize>,
    #[arg(long, allow_negative_numbers = true)]
    vocab: Option<usize>,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: u64,
    /// Kernel variants to measure instead of the model's, comma-separated (CUDA only):
    /// rmsnorm=fused|naive, adapter_attention=fused|unfused.
    #[arg(long, default_value = "")]
    kernels: String,
    /// Print JSON instead of the markdown table.
    #[arg(long)]
    json: bool,
}

fn parse_list(flag: &str, s: &str) -> Result<Vec<usize>> {
    let v: Vec<usize> = s
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<usize>()
                .map_err(|_| anyhow!("--{flag}: '{p}' is not a positive integer"))
        })
        .collect::<Result<_>>()?;
    if v.is_empty() || v.contains(&0) {
        bail!("--{flag}: give positive integers, e.g. 128,512");
    }
    Ok(v)
}

/// Bounds on `lav2 bench`'s sizes, checked before anything is built: each dimension, context
/// and the batch within what lav2 accepts, so the products the memory plan forms cannot wrap
/// (the plan itself compares them with the device when the session opens).
fn check_bench_sizes(a: &BenchArgs, prefill: &[usize], contexts: &[usize]) -> Result<()> {
    use lav2::model::config::{MAX_CONTEXT, MAX_DIMENSION};
    for (flag, v) in [
        ("dim", a.dim),
        ("layers", a.layers),
        ("heads", a.heads),
        ("kv-heads", a.kv_heads),
        ("ffn", a.ffn),
        ("vocab", a.vocab),
    ] {
        if let Some(v) = v.filter(|&v| v > MAX_DIMENSION) {
            bail!("--{flag} {v} is more than lav2 accepts ({MAX_DIMENSION}); lower --{flag}");
        }
    }
    for (flag, list) in [("prefill", prefill), ("contexts", contexts)] {
        if let Some(v) = list.iter().find(|&&v| v > MAX_CONTEXT) {
            bail!("--{flag} {v} is more than lav2 accepts ({MAX_CONTEXT} tokens); lower --{flag}");
        }
    }
    const MAX_BATCH: usize = 1 << 16;
    if a.batch > MAX_BATCH {
        bail!(
            "--batch {} is more than lav2 accepts ({MAX_BATCH}); lower --batch",
            a.batch
        );
    }
    for (flag, v) in [("decode-tokens", a.decode_tokens), ("repeats", a.repeats)] {
        if v > MAX_CONTEXT {
            bail!("--{flag} {v} is more than lav2 accepts ({MAX_CONTEXT}); lower --{flag}");
        }
    }
    Ok(())
}

/// Runs the benchmark and prints its report, a markdown table or JSON.
pub fn run(a: BenchArgs) -> Result<()> {
    use lav2::bench::{AdapterChoice, BenchOptions};
    let prefill_lens = parse_list("prefill", &a.prefill)?;
    let decode_contexts = parse_list("contexts", &a.contexts)?;
    check_bench_sizes(&a, &prefill_lens, &decode_contexts)?;
    let formats = a
        .quant
        .split(',')
        .map(|q| QuantFormat::parse(q.trim(), false).context("--quant"))
        .collect::<Result<Vec<_>>>()?;
    let opts = BenchOptions {
        preset: a.preset,
        shape: lav2::model::synthetic::ShapeOverrides {
            dim: a.dim,
            layers: a.layers,
            heads: a.heads,
            kv_heads: a.kv_heads,
            ffn: a.ffn,
            vocab: a.vocab,
        },
        device: super::parse_device(&a.device)?,
        formats,
        prefill_lens,
        decode_contexts,
        decode_tokens: a.decode_tokens,
        repeats: a.repeats,
        batch: a.batch,
        seed: a.seed,
        adapter: match a.adapter.as_str() {
            "both" => AdapterChoice::Both,
            "with" => AdapterChoice::With,
            "without" => AdapterChoice::Without,
            other => bail!("--adapter: '{other}' is not with, without or both"),
        },
        kernels: a.kernels,
        progress: |msg| eprintln!("lav2 bench: {msg}"),
    };
    let report = lav2::bench::run(&opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.markdown());
    }
    Ok(())
}
