//! The `lav2` command line.

mod bench_cli;
mod convert_cli;
mod expert_flags;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use expert_flags::ExpertFlags;
use lav2::backend::{self, DeviceChoice, UploadProgress};
use lav2::experts::{self, ExpertContext, ExpertOutput};
use lav2::generate::{self, SamplingOptions, Template};
use lav2::io::image::load_image;
use lav2::io::tokenizer::{parse_token_ids, Tokenizer};
use lav2::model::config::{ChannelOrder, LINEARS};
use lav2::model::weights::TensorFiles;
use lav2::model::{LoadOptions, Model};
use lav2::notice::Notice;
use lav2::quant::QuantFormat;
use lav2::session::Session;
use lav2::tensor::shape_str;

#[derive(Parser)]
#[command(
    name = "lav2",
    version,
    about = "LLaMA-Adapter V2 runtime (CPU reference and CUDA)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt (and optionally an image), streaming tokens to stdout.
    Generate(Box<GenerateArgs>),
    /// Run one prefill and write the logits of every position to a safetensors file.
    Forward(ForwardArgs),
    /// Show what a model folder (and adapter) contains.
    Info(ModelArgs),
    /// Quantize the linear layers once and write them for `--quantized`.
    Quantize(QuantizeArgs),
    /// Benchmark a synthetic LLaMA-Adapter V2 model against this device's roofline.
    Bench(bench_cli::BenchArgs),
    /// List the compiled CUDA kernels with their register and spill report.
    Kernels,
    /// Convert the authors' PyTorch releases into lav2 folders.
    #[command(subcommand)]
    Convert(convert_cli::ConvertCommand),
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// Base model folder (params.json or config.json, *.safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// LLaMA-Adapter V2 folder (adapter_config.json + adapter.safetensors).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Context length (KV cache rows); defaults to the model's configuration.
    #[arg(long, allow_negative_numbers = true)]
    max_seq_len: Option<usize>,
    /// Weight format of the linear layers: f16 (as loaded), int8 (per channel), int4 (group 128).
    #[arg(long, default_value = "f16")]
    quant: String,
    /// Asymmetric int4 (a zero point per group).
    #[arg(long)]
    zero_point: bool,
    /// Quantized weights written by `lav2 quantize` (instead of --quant).
    #[arg(long)]
    quantized: Option<PathBuf>,
    /// Skip the load-time scan that refuses NaN / infinite weights (trusted files only).
    #[arg(long)]
    skip_finite_check: bool,
}

#[derive(Args, Clone)]
struct ImageArgs {
    /// Image file (JPEG or PNG), preprocessed as CLIP does.
    #[arg(long, conflicts_with = "pixels")]
    image: Option<PathBuf>,
    /// Safetensors file with tensor `pixels` [3, S, S] f32, already normalized.
    #[arg(long)]
    pixels: Option<PathBuf>,
    /// Channel order the image is fed in; defaults to the adapter's (bgr for the releases).
    #[arg(long)]
    channel_order: Option<String>,
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    image: ImageArgs,
    /// Prompt text (BOS is prepended).
    #[arg(
        long,
        conflicts_with = "prompt_ids",
        required_unless_present = "prompt_ids"
    )]
    prompt: Option<String>,
    /// Prompt as comma-separated token ids, used as given (no BOS added, no template).
    #[arg(long, allow_hyphen_values = true)]
    prompt_ids: Option<String>,
    /// none | alpaca; default alpaca with an adapter, else none.
    #[arg(long)]
    template: Option<String>,
    /// Text for the template's input slot.
    #[arg(long)]
    context: Option<String>,
    #[arg(long, default_value_t = 256, allow_negative_numbers = true)]
    max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    temperature: f32,
    #[arg(long, default_value_t = 0.75, allow_negative_numbers = true)]
    top_p: f32,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: u64,
    /// Keep generating past the end-of-sequence token.
    #[arg(long)]
    ignore_eos: bool,
    /// cpu | cuda | auto.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Tokenizer file; defaults to tokenizer.json in the model folder.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    experts: ExpertFlags,
}

#[derive(Args)]
struct QuantizeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Output safetensors file.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct ForwardArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    image: ImageArgs,
    /// Comma-separated token ids, used as given.
    #[arg(long, allow_hyphen_values = true)]
    prompt_ids: String,
    /// Output safetensors file: `logits` [T, vocab] f32 (+ `visual_query` with an image).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(a) => cmd_generate(*a),
        Command::Forward(a) => cmd_forward(a),
        Command::Info(a) => cmd_info(a),
        Command::Quantize(a) => cmd_quantize(a),
        Command::Bench(a) => bench_cli::run(a),
        Command::Kernels => {
            print!("{}", lav2::backend::cuda::kernels::report());
            Ok(())
        }
        Command::Convert(c) => convert_cli::run(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lav2: error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The flag that sets a library option, by the option's Rust name.
fn flag(option: &str) -> String {
    match option {
        "quantized_file" => "--quantized".to_string(),
        "decode_contexts" => "--contexts".to_string(),
        "prefill_lens" => "--prefill".to_string(),
        o => format!("--{}", o.replace('_', "-")),
    }
}

/// An error and its causes as `{:#}` writes them, the options the library names called by
/// their flags.
fn error_text(e: &anyhow::Error) -> String {
    lav2::notice::render_error(e, flag)
}

fn print_notice(notice: &Notice) {
    eprintln!("lav2: {}", notice.render(flag));
}

/// The weights' way to the GPU: one line redrawn on a terminal, else a line every quarter.
fn print_upload_progress(p: UploadProgress) {
    let gib = |b: usize| b as f64 / (1u64 << 30) as f64;
    let msg = format!(
        "lav2: weights on the GPU: {:>3}% ({:.2} / {:.2} GiB, {:.1} s)",
        p.percent,
        gib(p.done_bytes),
        gib(p.total_bytes),
        p.elapsed.as_secs_f64()
    );
    if std::io::stderr().is_terminal() {
        eprint!("\r{msg}");
        if p.percent == 100 {
            eprintln!();
        }
    } else if p.percent.is_multiple_of(25) {
        eprintln!("{msg}");
    }
}

fn parse_prompt_ids(s: &str) -> Result<Vec<u32>> {
    parse_token_ids(s).context("--prompt-ids")
}

/// The paths of the model arguments exist and are what they should be (folder or file).
fn check_model_paths(a: &ModelArgs) -> Result<()> {
    use lav2::io::paths::{require_dir, require_file};
    require_dir("--model", &a.model)?;
    if let Some(d) = &a.adapter {
        require_dir("--adapter", d)?;
    }
    if let Some(f) = &a.quantized {
        require_file("--quantized", f)?;
    }
    Ok(())
}

fn check_image_paths(a: &ImageArgs) -> Result<()> {
    use lav2::io::paths::require_file;
    if let Some(f) = &a.image {
        require_file("--image", f)?;
    }
    if let Some(f) = &a.pixels {
        require_file("--pixels", f)?;
    }
    Ok(())
}

fn load_options(a: &ModelArgs) -> Result<LoadOptions> {
    check_model_paths(a)?;
    Ok(LoadOptions {
        max_seq_len: a.max_seq_len,
        quant: QuantFormat::parse(&a.quant, a.zero_point).context("--quant")?,
        quantized_file: a.quantized.clone(),
        skip_finite_check: a.skip_finite_check,
    })
}

fn load_model(a: &ModelArgs) -> Result<Model> {
    Model::load(&a.model, a.adapter.as_deref(), &load_options(a)?)
}

fn parse_device(device: &str) -> Result<DeviceChoice> {
    device.parse().map_err(|e: String| anyhow!("--device: {e}"))
}

/// A session on `device`, its notices (a CPU fallback, a lowered context) printed.
fn open_session(model: Model, device: &str) -> Result<Session> {
    let (mut backend, fallback) = backend::open_with_notice(parse_device(device)?)?;
    fallback.iter().for_each(print_notice);
    backend.set_upload_progress(Box::new(print_upload_progress));
    let mut session = Session::new(model, backend)?;
    session.take_notices().iter().for_each(print_notice);
    Ok(session)
}

fn read_pixels(path: &Path) -> Result<Vec<f32>> {
    let files = TensorFiles::open(&[path.to_path_buf()])?;
    let t = files.get_any("pixels")?;
    if t.shape.len() != 3 || t.shape[0] != 3 || t.shape[1] != t.shape[2] {
        bail!(
            "{}: tensor 'pixels' has shape {}, expected [3, S, S]",
            path.display(),
            shape_str(&t.shape)
        );
    }
    if let Some((i, v)) = lav2::limits::first_non_finite(t.dtype, t.bytes.as_slice()) {
        bail!(
            "{}: tensor 'pixels' holds {v} at element {i}; pixels must be finite numbers",
            path.display()
        );
    }
    t.to_f32()
}

fn parse_channel_order(a: &ImageArgs) -> Result<Option<ChannelOrder>> {
    match a.channel_order.as_deref() {
        None => Ok(None),
        Some("rgb") => Ok(Some(ChannelOrder::Rgb)),
        Some("bgr") => Ok(Some(ChannelOrder::Bgr)),
        Some(o) => bail!("--channel-order: '{o}' is not rgb or bgr"),
    }
}

/// Visual prompts for the image arguments, or None without an image. Returns (vq, ms).
fn visual_prompts(session: &mut Session, a: &ImageArgs) -> Result<Option<(Vec<f32>, f64)>> {
    if a.image.is_none() && a.pixels.is_none() {
        if a.channel_order.is_some() {
            bail!("--channel-order needs --image");
        }
        return Ok(None);
    }
    let Some(size) = session.image_size() else {
        bail!("an image was given but the model has no vision tower (pass an --adapter with a 'visual' section)");
    };
    let t0 = Instant::now();
    let pixels = if let Some(path) = &a.image {
        let default = session
            .model()
            .adapter
            .as_ref()
            .and_then(|ad| ad.config.visual.as_ref())
            .map(|v| v.channel_order)
            .unwrap_or(ChannelOrder::Bgr);
        let order = parse_channel_order(a)?.unwrap_or(default);
        load_image(path, size, order)?
    } else {
        let path = a.pixels.as_ref().unwrap();
        let p = read_pixels(path)?;
        if p.len() != 3 * size * size {
            bail!(
                "{}: pixels are {} values, the vision tower takes [3, {size}, {size}]",
                path.display(),
                p.len()
            );
        }
        p
    };
    let vq = session.visual_query(&pixels)?;
    session.set_visual_query(Some(&vq))?;
    Ok(Some((vq, t0.elapsed().as_secs_f64() * 1e3)))
}

/// Experts fill the template's input slot: refuses a prompt that has none.
fn check_expert_prompt(a: &GenerateArgs) -> Result<()> {
    if a.experts.any() && a.prompt_ids.is_some() {
        bail!("experts fill the template's input slot; give --prompt, not --prompt-ids");
    }
    if a.experts.any() && a.template.as_deref() == Some("none") {
        bail!("experts fill the template's input slot, which --template none does not have");
    }
    Ok(())
}

/// Runs the experts `a` asks for (before the answering model is loaded).
fn run_generate_experts(
    a: &GenerateArgs,
    opts: &LoadOptions,
    tok_path: &Path,
) -> Result<Vec<ExpertOutput>> {
    check_image_paths(&a.image)?;
    experts::run_experts(
        &a.experts.options(),
        a.image.image.as_deref(),
        &ExpertContext {
            model_dir: a.model.model.clone(),
            load: LoadOptions {
                quantized_file: None,
                ..opts.clone()
            },
            device: parse_device(&a.device)?,
            tokenizer: tok_path.to_path_buf(),
            channel_order: parse_channel_order(&a.image)?,
        },
    )
}

/// The prompt's token ids: `--prompt-ids` as given, or `--prompt` in its template (with
/// `context` in the input slot) after BOS.
fn prompt_of(
    a: &GenerateArgs,
    model: &Model,
    tokenizer: Option<&Tokenizer>,
    context: Option<&str>,
) -> Result<Vec<u32>> {
    let template = match &a.template {
        Some(t) => t
            .parse::<Template>()
            .map_err(|e| anyhow!("--template: {e}"))?,
        None => Template::default_for(model.adapter.is_some(), context.is_some()),
    };
    if template == Template::None && a.context.is_some() {
        bail!("--context needs a template with an input slot (use --template alpaca)");
    }
    let bos = model.config.bos_id;
    Ok(match (&a.prompt, &a.prompt_ids) {
        (_, Some(ids)) => {
            // `--template none` is what --prompt-ids means; a template with text is not.
            if a.template.as_deref().is_some_and(|t| t != "none") || a.context.is_some() {
                bail!(
                    "--prompt-ids is used as given; --template alpaca and --context need --prompt"
                );
            }
            parse_prompt_ids(ids)?
        }
        (Some(text), None) => {
            let formatted = generate::format_prompt(template, text, context)?;
            let mut ids = vec![bos];
            ids.extend(
                tokenizer
                    .context("--prompt needs a tokenizer")?
                    .encode(&formatted)?,
            );
            ids
        }
        (None, None) => bail!("give --prompt or --prompt-ids"),
    })
}

fn cmd_generate(a: GenerateArgs) -> Result<()> {
    let sampling = SamplingOptions {
        temperature: a.temperature,
        top_p: a.top_p,
        seed: a.seed,
        max_new_tokens: a.max_new_tokens,
        ignore_eos: a.ignore_eos,
    };
    sampling.validate()?;
    let tok_path = a
        .tokenizer
        .clone()
        .unwrap_or_else(|| a.model.model.join("tokenizer.json"));
    check_expert_prompt(&a)?;
    // Experts run first, so only one model is in memory at a time.
    let opts = load_options(&a.model)?;
    let expert_outputs = run_generate_experts(&a, &opts, &tok_path)?;
    let context = match (a.context.clone(), experts::combine(&expert_outputs)) {
        (Some(user), Some(found)) => Some(format!("{user}\n{found}")),
        (user, found) => user.or(found),
    };
    let t0 = Instant::now();
    let model = Model::load(&a.model.model, a.model.adapter.as_deref(), &opts)?;
    // Token ids in, token ids out: a model folder without a tokenizer can still generate.
    let ids_only = a.prompt_ids.is_some() && a.tokenizer.is_none() && !tok_path.exists();
    let tokenizer = if ids_only {
        None
    } else {
        Some(Tokenizer::load(&tok_path)?)
    };
    let prompt_ids = prompt_of(&a, &model, tokenizer.as_ref(), context.as_deref())?;
    let mut session = open_session(model, &a.device)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    // With a text-only model an image may still feed the experts.
    let vision = if a.experts.any() && session.image_size().is_none() {
        None
    } else {
        visual_prompts(&mut session, &a.image)?
    };
    // The streamed text is exactly the JSON `text`: what follows the prompt's own text.
    let mut stream = tokenizer.as_ref().map(|t| t.stream_after(&prompt_ids));
    let mut stdout = std::io::stdout().lock();
    let streaming = !a.json;
    let mut first = true;
    let gen = generate::generate(&mut session, &prompt_ids, &sampling, |id| {
        if streaming {
            // Without a tokenizer the ids are the answer, space-separated.
            let piece = match stream.as_mut() {
                Some(s) => s.step(id)?,
                None if first => format!("{id}"),
                None => format!(" {id}"),
            };
            first = false;
            stdout.write_all(piece.as_bytes())?;
            stdout.flush()?;
        }
        Ok(())
    })?;
    let text = match &tokenizer {
        Some(t) => Some(t.continuation(&prompt_ids, &gen.ids)?),
        None => None,
    };
    if streaming {
        let rest = match stream.as_mut() {
            Some(s) => s.finish()?,
            None => String::new(),
        };
        writeln!(stdout, "{rest}")?;
    } else {
        let decode_tokens = gen.ids.len().saturating_sub(1);
        let out = json!({
            "prompt_ids": prompt_ids,
            "ids": gen.ids,
            "text": text,
            "stop_reason": gen.stop.name(),
            "experts": expert_outputs,
            "device": session.backend().describe(),
            "timings": {
                "load_ms": load_ms,
                "vision_ms": vision.as_ref().map(|v| v.1),
                "prefill_ms": gen.prefill_ms,
                "decode_ms": gen.decode_ms,
                "prefill_tokens_per_s": prompt_ids.len() as f64 / (gen.prefill_ms / 1e3),
                "decode_tokens_per_s": if decode_tokens > 0 { Some(decode_tokens as f64 / (gen.decode_ms / 1e3)) } else { None },
            }
        });
        writeln!(stdout, "{out}")?;
    }
    session.take_notices().iter().for_each(print_notice);
    Ok(())
}

fn cmd_forward(a: ForwardArgs) -> Result<()> {
    let ids = parse_prompt_ids(&a.prompt_ids)?;
    if ids.is_empty() {
        bail!("--prompt-ids is empty");
    }
    check_image_paths(&a.image)?;
    let model = load_model(&a.model)?;
    let vocab = model.config.vocab_size;
    let mut session = open_session(model, &a.device)?;
    let vision = visual_prompts(&mut session, &a.image)?;
    let logits = session.forward(&ids, 0, true)?;
    let mut tensors = vec![("logits".to_string(), (vec![ids.len(), vocab], logits))];
    if let Some((vq, _)) = vision {
        let dim = session.model().config.dim;
        tensors.push(("visual_query".to_string(), (vec![vq.len() / dim, dim], vq)));
    }
    write_safetensors(&a.out, &tensors)
}

/// A named f32 tensor to write: (name, (shape, values)).
type NamedTensor = (String, (Vec<usize>, Vec<f32>));

fn write_safetensors(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
    let raw: Vec<(&str, &str, &[usize], &[u8])> = tensors
        .iter()
        .map(|(name, (shape, data))| {
            (
                name.as_str(),
                "F32",
                shape.as_slice(),
                bytemuck::cast_slice::<f32, u8>(data),
            )
        })
        .collect();
    lav2::io::st_writer::write_raw(path, &raw, &[])?;
    Ok(())
}

fn cmd_info(a: ModelArgs) -> Result<()> {
    // Anything that is not a model folder (a .pth, a .pt, a safetensors file, an adapter or
    // checkpoint folder) is described as it is, with what is missing for lav2 to load it.
    // An empty folder, or safetensors without a config, is a broken model folder instead.
    let describable = a.model.is_file()
        || a.model.join("adapter_config.json").is_file()
        || std::fs::read_dir(&a.model).is_ok_and(|entries| {
            entries.filter_map(|e| e.ok()).any(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                e.path().is_dir()
                    || [".pth", ".pt", ".bin", ".model"]
                        .iter()
                        .any(|x| name.ends_with(x))
            })
        });
    let is_model_dir =
        a.model.join("params.json").is_file() || a.model.join("config.json").is_file();
    if describable && !is_model_dir && a.adapter.is_none() {
        print!("{}", lav2::convert::describe(&a.model)?);
        return Ok(());
    }
    let model = load_model(&a)?;
    let c = &model.config;
    println!("model: {}", model.dir.display());
    println!("  layout: {}", c.layout.name());
    println!(
        "  dim {}, layers {}, heads {} (kv {}), head_dim {}, ffn {}, vocab {}, context {}",
        c.dim,
        c.n_layers,
        c.n_heads,
        c.n_kv_heads,
        c.head_dim,
        c.ffn_dim,
        c.vocab_size,
        c.max_seq_len
    );
    println!(
        "  norm_eps {}, rope_theta {}, rope {}",
        c.norm_eps,
        c.rope_theta,
        if c.layout == lav2::model::config::Layout::Meta {
            "interleaved pairs"
        } else {
            "rotate-half"
        }
    );
    let per_layer = |l: usize| {
        LINEARS
            .iter()
            .map(|w| {
                model
                    .weights
                    .get(&format!("layers.{l}.{w}"))
                    .map_or(0, |t| t.numel())
            })
            .sum::<usize>()
    };
    let base: usize = (0..c.n_layers).map(per_layer).sum::<usize>() + 2 * c.vocab_size * c.dim;
    println!("  parameters (linear layers + embeddings): {base}");
    match &model.adapter {
        None => println!("adapter: none"),
        Some(ad) => {
            println!("adapter: {}", ad.dir.display());
            for f in &ad.features {
                println!("  {f}");
            }
            println!(
                "  prompted layers: {}..{}",
                ad.first_prompt_layer,
                c.n_layers.saturating_sub(1)
            );
        }
    }
    println!(
        "weights held: {} tensors, {} parameters, {} bytes",
        model.weights.tensors.len(),
        model.weights.total_params(),
        model.weights.total_bytes()
    );
    // The planner's arenas: what one step needs beyond weights and KV cache.
    let planned = lav2::model::memory::planned_memory(&model);
    let kv = planned.state_elements;
    println!("planned memory (f32 on the CPU / f16 on CUDA):");
    println!(
        "  session state (KV cache, prompt K/V): {} / {} bytes",
        kv * 4,
        kv * 2
    );
    for g in &planned.graphs {
        println!(
            "  {} activations: {} / {} bytes (without reuse: {} / {})",
            g.name, g.f32.planned, g.f16.planned, g.f32.unplanned, g.f16.unplanned
        );
    }
    Ok(())
}

fn cmd_quantize(a: QuantizeArgs) -> Result<()> {
    let mut opts = load_options(&a.model)?;
    if a.model.quantized.is_some() {
        bail!("--quantized is an input for other commands; quantize starts from the model");
    }
    let format = std::mem::replace(&mut opts.quant, QuantFormat::None);
    if format == QuantFormat::None {
        bail!("--quant: give int8 or int4");
    }
    let model = Model::load(&a.model.model, a.model.adapter.as_deref(), &opts)?;
    let t0 = Instant::now();
    let bytes =
        lav2::model::quant_io::write_quantized(&a.out, &model.config, &model.weights, format)?;
    eprintln!(
        "lav2: wrote {} ({} quantized bytes, {:.1} s)",
        a.out.display(),
        bytes,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
