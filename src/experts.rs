//! Expert models at inference: text about the image from other programs or models (OCR, a
//! caption adapter, any command) put into the template's input slot, as the LLaMA-Adapter V2
//! paper does with its caption and OCR experts — whose code the authors never released.
//!
//! Every expert reads the picture file given with `--image`, so experts refuse to run without
//! one. They run in a fixed order (OCR, caption, then each `--expert-cmd` in the order given),
//! so that the same flags always build the same prompt whatever their order on the line.
//!
//! Call [`run_experts`] before loading the answering model: the caption expert loads a second
//! copy of the base model and frees it when done, so only one model is held at a time.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::backend::{self, DeviceChoice};
use crate::generate::{self, SamplingOptions, Template};
use crate::io::{image::load_image, tokenizer::Tokenizer};
use crate::model::config::ChannelOrder;
use crate::session::Session;
use crate::{LoadOptions, Model};

/// The instruction the authors trained the caption stage with (`PretrainDataset` in
/// `llama_adapter_v2_multimodal7b/data/dataset.py`), wrapped in the Alpaca template without
/// input as it was there: a caption adapter answers best the exact prompt it was trained on.
pub const CAPTION_INSTRUCTION: &str = "Generate caption of this image";

/// The program the OCR expert runs; the Debian/Ubuntu package that provides it, for the error.
const TESSERACT: &str = "tesseract";
const TESSERACT_PACKAGE: &str = "tesseract-ocr";
/// Where a command's image path goes.
const IMAGE_TOKEN: &str = "{image}";

/// The expert flags of `lav2 generate` (flattened into its arguments).
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct ExpertArgs {
    /// Read the text in the image with Tesseract OCR (`tesseract IMAGE -`) and give it to the
    /// model as context. Needs --image and the tesseract program (Debian: tesseract-ocr).
    #[arg(long)]
    pub ocr: bool,
    /// Tesseract language(s), e.g. eng or eng+deu (its `-l`); the default is Tesseract's own.
    #[arg(long, value_name = "LANG", requires = "ocr")]
    pub ocr_lang: Option<String>,
    /// Caption the image first with this caption adapter (e.g. the converted CAPTION-7B) on the
    /// same base model, and give the caption to the model as context. Needs --image.
    #[arg(long, value_name = "DIR")]
    pub caption_adapter: Option<PathBuf>,
    /// Most tokens the caption may have (the authors' generate default: 256).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 256,
        requires = "caption_adapter"
    )]
    pub caption_max_new_tokens: usize,
    /// Caption sampling temperature; 0 (the default) is greedy, so the same image always gives
    /// the same context. The authors' demos sample at 0.1 with top-p 0.75.
    #[arg(
        long,
        value_name = "T",
        default_value_t = 0.0,
        requires = "caption_adapter"
    )]
    pub caption_temperature: f32,
    /// Caption prompt as comma-separated token ids, used as given instead of the formatted
    /// "Generate caption of this image" (no BOS added): for models with their own vocabulary.
    #[arg(long, value_name = "IDS", requires = "caption_adapter")]
    pub caption_prompt_ids: Option<String>,
    /// Any other expert: a command run without a shell, its stdout the expert's text.
    /// `{image}` stands for the image path and must appear; quotes group words as in a shell.
    /// Repeat for several experts.
    #[arg(long = "expert-cmd", value_name = "CMD {image}")]
    pub expert_cmd: Vec<String>,
}

/// The command line's defaults, so that arguments built in code (a derived `Default` would
/// give a zero-token caption) behave as the same flags typed on the command line.
impl Default for ExpertArgs {
    fn default() -> Self {
        ExpertArgs {
            ocr: false,
            ocr_lang: None,
            caption_adapter: None,
            caption_max_new_tokens: 256,
            caption_temperature: 0.0,
            caption_prompt_ids: None,
            expert_cmd: Vec::new(),
        }
    }
}

impl ExpertArgs {
    /// Whether any expert was asked for.
    pub fn any(&self) -> bool {
        self.ocr || self.caption_adapter.is_some() || !self.expert_cmd.is_empty()
    }

    fn flags_given(&self) -> String {
        let mut f = Vec::new();
        if self.ocr {
            f.push("--ocr");
        }
        if self.caption_adapter.is_some() {
            f.push("--caption-adapter");
        }
        if !self.expert_cmd.is_empty() {
            f.push("--expert-cmd");
        }
        f.join(", ")
    }
}

/// What the caption expert needs to load its own model: the answering model's base folder and
/// options, because a caption adapter is trained on the same base.
#[derive(Clone, Debug)]
pub struct ExpertContext {
    pub model_dir: PathBuf,
    pub load: LoadOptions,
    /// cpu | cuda | auto, as `--device`.
    pub device: String,
    /// Tokenizer for the caption prompt and the caption.
    pub tokenizer: PathBuf,
    /// Overrides the caption adapter's channel order (`--channel-order`).
    pub channel_order: Option<ChannelOrder>,
}

/// One expert's contribution, listed in the JSON output so a user can see what the model was
/// told and what it cost.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExpertOutput {
    /// `ocr`, `caption`, or `cmd:PROGRAM` for `--expert-cmd`.
    pub name: String,
    /// Whitespace-normalized text (empty when the expert found nothing).
    pub text: String,
    /// Wall time, including the caption model's loading.
    pub ms: f64,
}

/// Runs every expert `args` asks for on `image`, in the order OCR, caption, commands.
pub fn run_experts(
    args: &ExpertArgs,
    image: Option<&Path>,
    ctx: &ExpertContext,
) -> Result<Vec<ExpertOutput>> {
    if !args.any() {
        return Ok(Vec::new());
    }
    let Some(image) = image else {
        bail!(
            "{} read(s) a picture file: give --image FILE (--pixels cannot be read by an expert)",
            args.flags_given()
        );
    };
    if !image.is_file() {
        bail!("image not found: {}", image.display());
    }
    // Commands are checked before anything slow runs, so a typo fails at once.
    let commands = args
        .expert_cmd
        .iter()
        .map(|c| command_argv(c, image).map(|argv| (c.as_str(), argv)))
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::new();
    if args.ocr {
        let t0 = Instant::now();
        let text = ocr(image, args.ocr_lang.as_deref())?;
        out.push(ExpertOutput {
            name: "ocr".into(),
            text,
            ms: ms_since(t0),
        });
    }
    if let Some(adapter) = &args.caption_adapter {
        let t0 = Instant::now();
        let text = caption(args, adapter, image, ctx)
            .with_context(|| format!("caption expert ({})", adapter.display()))?;
        out.push(ExpertOutput {
            name: "caption".into(),
            text,
            ms: ms_since(t0),
        });
    }
    for (cmd, argv) in commands {
        let t0 = Instant::now();
        let text = run_command(cmd, &argv)?;
        out.push(ExpertOutput {
            name: format!("cmd:{}", program_name(&argv[0])),
            text,
            ms: ms_since(t0),
        });
    }
    Ok(out)
}

/// The text for the template's input slot, or None when no expert said anything.
///
/// Every part is labelled, even when only one expert ran: the model cannot otherwise tell a
/// caption ("a red sign on a pole") from text read off the image ("STOP"), and the prompt for a
/// given expert stays the same whether or not others run beside it. Parts are one per line:
/// `OCR: …`, `Caption: …`, and `PROGRAM: …` for commands.
pub fn combine(outputs: &[ExpertOutput]) -> Option<String> {
    let parts: Vec<String> = outputs
        .iter()
        .filter(|o| !o.text.trim().is_empty())
        .map(|o| format!("{}: {}", label(&o.name), o.text.trim()))
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}

fn label(name: &str) -> &str {
    match name {
        "ocr" => "OCR",
        "caption" => "Caption",
        other => other.strip_prefix("cmd:").unwrap_or(other),
    }
}

fn ms_since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e3
}

/// One line of text: programs print line breaks, form feeds and padding that mean nothing in
/// a prompt and would break the one-line-per-expert layout of [`combine`].
pub fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn first_line(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(nothing on stderr)")
        .to_string()
}

fn program_name(program: &str) -> String {
    Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.to_string())
}

/// Runs `argv` with no stdin (an expert must not wait on the terminal) and captures its output.
/// `Err(None)` when the program does not exist, so each caller can say how to get it.
fn spawn(argv: &[String]) -> std::result::Result<Output, Option<std::io::Error>> {
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| (e.kind() != ErrorKind::NotFound).then_some(e))
}

/// `tesseract IMAGE -` (the real program: we do not reimplement OCR).
fn ocr(image: &Path, lang: Option<&str>) -> Result<String> {
    let mut argv = vec![
        TESSERACT.to_string(),
        image.to_string_lossy().into_owned(),
        "-".into(),
    ];
    if let Some(l) = lang {
        argv.extend(["-l".to_string(), l.to_string()]);
    }
    let out = match spawn(&argv) {
        Ok(o) => o,
        Err(None) => bail!(
            "--ocr: the '{TESSERACT}' program is not installed or not on PATH \
             (Debian/Ubuntu: apt-get install {TESSERACT_PACKAGE})"
        ),
        Err(Some(e)) => bail!("--ocr: cannot run {TESSERACT}: {e}"),
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if let (Some(l), true) = (lang, err.contains("Failed loading language")) {
            bail!(
                "--ocr: tesseract has no data for language '{l}' (Debian/Ubuntu: apt-get install \
                 {TESSERACT_PACKAGE}-LANG, e.g. {TESSERACT_PACKAGE}-deu; `tesseract --list-langs` shows what is installed)"
            );
        }
        bail!(
            "--ocr: tesseract failed on {} ({}): {}",
            image.display(),
            out.status,
            first_line(&out.stderr)
        );
    }
    Ok(normalize(&String::from_utf8_lossy(&out.stdout)))
}

/// The caption prompt as the authors trained it: Alpaca without input around
/// [`CAPTION_INSTRUCTION`] (BOS is added by the caller).
pub fn caption_prompt() -> String {
    generate::format_prompt(Template::Alpaca, CAPTION_INSTRUCTION, None)
        .expect("the Alpaca template takes an instruction without input")
}

fn caption(args: &ExpertArgs, adapter: &Path, image: &Path, ctx: &ExpertContext) -> Result<String> {
    let sampling = SamplingOptions {
        temperature: args.caption_temperature,
        max_new_tokens: args.caption_max_new_tokens,
        ..SamplingOptions::default()
    };
    if !(sampling.temperature >= 0.0 && sampling.temperature.is_finite()) {
        bail!(
            "--caption-temperature must be a finite number ≥ 0, got {}",
            sampling.temperature
        );
    }
    let model = Model::load(&ctx.model_dir, Some(adapter), &ctx.load)?;
    let Some(visual) = model
        .adapter
        .as_ref()
        .and_then(|a| a.config.visual.as_ref())
    else {
        bail!("the adapter has no vision tower ('visual' section), so it cannot caption an image");
    };
    let (size, order) = (
        visual.clip.image_size,
        ctx.channel_order.unwrap_or(visual.channel_order),
    );
    let tokenizer = Tokenizer::load(&ctx.tokenizer)?;
    let prompt_ids = match &args.caption_prompt_ids {
        Some(s) => parse_ids(s)?,
        None => {
            let mut ids = vec![model.config.bos_id];
            ids.extend(tokenizer.encode(&caption_prompt())?);
            ids
        }
    };
    let pixels = load_image(image, size, order)?;
    let choice: DeviceChoice = ctx
        .device
        .parse()
        .map_err(|e: String| anyhow!("--device: {e}"))?;
    let mut session = Session::new(model, backend::open(choice)?)?;
    let ids = caption_pixels(&mut session, &pixels, &prompt_ids, &sampling)?;
    Ok(normalize(&tokenizer.decode(&ids)?))
}

/// The caption expert's core on an open session: visual prompts from `pixels` (already
/// preprocessed for the adapter), then generation after `prompt_ids`. Returns the new ids,
/// without EOS. Separate so it can be checked against reference tokens from given pixels.
pub fn caption_pixels(
    session: &mut Session,
    pixels: &[f32],
    prompt_ids: &[u32],
    sampling: &SamplingOptions,
) -> Result<Vec<u32>> {
    let vq = session.visual_query(pixels)?;
    session.set_visual_query(Some(&vq))?;
    Ok(generate::generate(session, prompt_ids, sampling, |_| Ok(()))?.ids)
}

fn parse_ids(s: &str) -> Result<Vec<u32>> {
    let ids: Vec<u32> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u32>().map_err(|_| {
                anyhow!("--caption-prompt-ids: '{p}' is not a token id (expected e.g. 1,2,3)")
            })
        })
        .collect::<Result<_>>()?;
    if ids.is_empty() {
        bail!("--caption-prompt-ids is empty");
    }
    Ok(ids)
}

/// The argv of an `--expert-cmd`, with `{image}` replaced by the image path inside any word
/// (so `--file={image}` works, and a path with spaces stays one argument).
pub fn command_argv(cmd: &str, image: &Path) -> Result<Vec<String>> {
    let words = split_command(cmd).with_context(|| format!("--expert-cmd '{cmd}'"))?;
    if words.is_empty() {
        bail!("--expert-cmd is empty (expected e.g. \"my-detector {IMAGE_TOKEN}\")");
    }
    if !words.iter().any(|w| w.contains(IMAGE_TOKEN)) {
        bail!("--expert-cmd '{cmd}' has no {IMAGE_TOKEN}: write where the image path goes, e.g. \"{} {IMAGE_TOKEN}\"", words[0]);
    }
    let path = image.to_string_lossy();
    Ok(words
        .into_iter()
        .map(|w| w.replace(IMAGE_TOKEN, &path))
        .collect())
}

fn run_command(cmd: &str, argv: &[String]) -> Result<String> {
    let out = match spawn(argv) {
        Ok(o) => o,
        Err(None) => bail!("--expert-cmd '{cmd}': program '{}' not found", argv[0]),
        Err(Some(e)) => bail!("--expert-cmd '{cmd}': cannot run '{}': {e}", argv[0]),
    };
    if !out.status.success() {
        bail!(
            "--expert-cmd '{cmd}' failed ({}): {}",
            out.status,
            first_line(&out.stderr)
        );
    }
    Ok(normalize(&String::from_utf8_lossy(&out.stdout)))
}

/// Splits a command line into words as a POSIX shell would, without expanding anything: blanks
/// separate words, `'…'` is literal, `"…"` is literal except `\"`, `\\`, `\$` and `` \` ``,
/// and a backslash outside quotes takes the next character literally. There is no shell, so
/// `|`, `>`, `$VAR` and `*` are plain characters.
pub fn split_command(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word has started even if it is still empty (`''` is an empty argument).
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => bail!("unterminated single quote"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => bail!("unterminated double quote"),
                        },
                        Some(c) => word.push(c),
                        None => bail!("unterminated double quote"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => bail!("a backslash ends the command (nothing to escape)"),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        let s = |l: &str| split_command(l).unwrap();
        assert_eq!(s("a b  c"), ["a", "b", "c"]);
        assert_eq!(
            s("  echo 'hello world' \"x y\" "),
            ["echo", "hello world", "x y"]
        );
        assert_eq!(
            s(r#"a\ b "q\"uote" 'it''s' """#),
            ["a b", "q\"uote", "its", ""]
        );
        assert_eq!(s(r#""a\nb" 'c\d'"#), [r"a\nb", r"c\d"]);
        assert_eq!(s("x=$HOME|y>z *"), ["x=$HOME|y>z", "*"]);
        assert_eq!(s("pre'fix'\"ed\""), ["prefixed"]);
        assert!(s("").is_empty());
        assert!(split_command("echo 'open").is_err());
        assert!(split_command("echo \"open").is_err());
        assert!(split_command("echo \\").is_err());
    }

    #[test]
    fn image_goes_inside_words() {
        let argv = command_argv("tool --file={image} '{image}'", Path::new("/a b/c.png")).unwrap();
        assert_eq!(argv, ["tool", "--file=/a b/c.png", "/a b/c.png"]);
        let e = command_argv("tool x", Path::new("c.png"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("{image}"), "{e}");
        assert!(command_argv("  ", Path::new("c.png")).is_err());
    }

    #[test]
    fn combine_labels_and_skips_empty() {
        let o = |name: &str, text: &str| ExpertOutput {
            name: name.into(),
            text: text.into(),
            ms: 0.0,
        };
        assert_eq!(combine(&[]), None);
        assert_eq!(combine(&[o("ocr", " ")]), None);
        assert_eq!(combine(&[o("ocr", "STOP")]).unwrap(), "OCR: STOP");
        assert_eq!(
            combine(&[
                o("ocr", "STOP"),
                o("caption", ""),
                o("caption", "a red sign"),
                o("cmd:det", "sign")
            ])
            .unwrap(),
            "OCR: STOP\nCaption: a red sign\ndet: sign"
        );
    }

    #[test]
    fn caption_prompt_is_alpaca_without_input() {
        let p = caption_prompt();
        assert!(p.starts_with("Below is an instruction that describes a task. Write"));
        assert!(p.ends_with("### Instruction:\nGenerate caption of this image\n\n### Response:"));
    }
}
