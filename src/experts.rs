//! Expert models at inference: text about the image from other programs or models (OCR, a
//! caption adapter, any command) put into the template's input slot, as the LLaMA-Adapter V2
//! paper does with its caption and OCR experts — whose code the authors never released.
//!
//! Every expert reads a picture file, so experts refuse to run without one. They run in a fixed
//! order (OCR, caption, then each `expert_cmd` in the order given), so that the same options
//! always build the same prompt whatever the order they were given in.
//!
//! Call [`run_experts`] before loading the answering model: the caption expert loads a second
//! copy of the base model and frees it when done, so only one model is held at a time.

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::backend::{self, DeviceChoice};
use crate::generate::{self, SamplingOptions, Template};
use crate::io::{
    image::{check_image, load_image},
    tokenizer::{parse_token_ids, Tokenizer},
};
use crate::model::config::ChannelOrder;
use crate::model::{LoadOptions, Model};
use crate::notice::OptionError;
use crate::session::Session;

/// The instruction the authors trained the caption stage with (`PretrainDataset` in
/// `llama_adapter_v2_multimodal7b/data/dataset.py`), wrapped in the Alpaca template without
/// input as it was there: a caption adapter answers best the exact prompt it was trained on.
pub const CAPTION_INSTRUCTION: &str = "Generate caption of this image";

/// The program the OCR expert runs; the Debian/Ubuntu package that provides it, for the error.
const TESSERACT: &str = "tesseract";
const TESSERACT_PACKAGE: &str = "tesseract-ocr";
/// Where a command's image path goes.
const IMAGE_TOKEN: &str = "{image}";
/// Default of [`ExpertOptions::expert_timeout`], seconds.
pub const DEFAULT_TIMEOUT_S: f64 = 120.0;
/// Default of [`ExpertOptions::expert_max_output`]: 1 MiB of stdout.
pub const DEFAULT_MAX_OUTPUT: usize = 1 << 20;
/// How much of an expert's stderr is kept (its end, for the last line of an error).
const STDERR_TAIL: usize = 64 << 10;
/// How long a killed expert is waited for before lav2 stops waiting on it.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Which experts to run and their settings. `Default` gives no expert and the settings the
/// command line defaults to (a derived `Default` would give a zero-token caption).
#[derive(Clone, Debug, PartialEq)]
pub struct ExpertOptions {
    /// Read the text in the image with Tesseract OCR (`tesseract IMAGE -`).
    pub ocr: bool,
    /// Tesseract language(s), e.g. eng or eng+deu (its `-l`); `None`: Tesseract's own default.
    pub ocr_lang: Option<String>,
    /// Caption the image first with this caption adapter (e.g. the converted CAPTION-7B) on
    /// the same base model.
    pub caption_adapter: Option<PathBuf>,
    /// Most tokens the caption may have (the authors' generate default: 256).
    pub caption_max_new_tokens: usize,
    /// Caption sampling temperature; 0 is greedy, so the same image always gives the same
    /// context.
    pub caption_temperature: f32,
    /// Caption prompt as comma-separated token ids, used as given instead of the formatted
    /// [`CAPTION_INSTRUCTION`] (no BOS added): for models with their own vocabulary.
    pub caption_prompt_ids: Option<String>,
    /// Other experts: commands run without a shell, each one's stdout its text. `{image}`
    /// stands for the image path and must appear; quotes group words as in a shell.
    pub expert_cmd: Vec<String>,
    /// Seconds each expert may take; a program still running then is killed, with everything
    /// it started.
    pub expert_timeout: f64,
    /// Most bytes an expert program may print on stdout.
    pub expert_max_output: usize,
}

/// A timeout in seconds that is finite and > 0 (fractions allowed), or why not.
pub fn check_timeout(t: f64) -> std::result::Result<f64, String> {
    if t > 0.0 && Duration::try_from_secs_f64(t).is_ok() {
        Ok(t)
    } else {
        Err(format!("must be a finite number of seconds > 0, got {t}"))
    }
}

impl Default for ExpertOptions {
    fn default() -> Self {
        ExpertOptions {
            ocr: false,
            ocr_lang: None,
            caption_adapter: None,
            caption_max_new_tokens: 256,
            caption_temperature: 0.0,
            caption_prompt_ids: None,
            expert_cmd: Vec::new(),
            expert_timeout: DEFAULT_TIMEOUT_S,
            expert_max_output: DEFAULT_MAX_OUTPUT,
        }
    }
}

impl ExpertOptions {
    /// Whether any expert was asked for.
    pub fn any(&self) -> bool {
        self.ocr || self.caption_adapter.is_some() || !self.expert_cmd.is_empty()
    }

    /// The options that asked for an expert.
    fn experts_asked(&self) -> Vec<&'static str> {
        [
            ("ocr", self.ocr),
            ("caption_adapter", self.caption_adapter.is_some()),
            ("expert_cmd", !self.expert_cmd.is_empty()),
        ]
        .into_iter()
        .filter_map(|(option, asked)| asked.then_some(option))
        .collect()
    }

    /// What every expert is held to, checked.
    pub fn bounds(&self) -> Result<Bounds> {
        let timeout = check_timeout(self.expert_timeout).map_err(|e| {
            OptionError::new(&["expert_timeout"], format!("{{expert_timeout}} {e}"))
        })?;
        if self.expert_max_output == 0 {
            return Err(OptionError::new(
                &["expert_max_output"],
                "{expert_max_output} must be at least 1 byte",
            )
            .into());
        }
        Ok(Bounds {
            timeout: Duration::from_secs_f64(timeout),
            max_output: self.expert_max_output,
        })
    }
}

/// The limits an expert runs under: `expert_timeout` and `expert_max_output`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    pub timeout: Duration,
    /// Bytes of stdout.
    pub max_output: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            timeout: Duration::from_secs_f64(DEFAULT_TIMEOUT_S),
            max_output: DEFAULT_MAX_OUTPUT,
        }
    }
}

/// What the caption expert needs to load its own model: the answering model's base folder and
/// options, because a caption adapter is trained on the same base.
#[derive(Clone, Debug)]
pub struct ExpertContext {
    pub model_dir: PathBuf,
    pub load: LoadOptions,
    /// The device of the caption session, as the answering model's.
    pub device: DeviceChoice,
    /// Tokenizer for the caption prompt and the caption.
    pub tokenizer: PathBuf,
    /// Overrides the caption adapter's channel order.
    pub channel_order: Option<ChannelOrder>,
}

/// One expert's contribution, listed in the JSON output so a user can see what the model was
/// told and what it cost.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExpertOutput {
    /// `ocr`, `caption`, or `cmd:PROGRAM` for an `expert_cmd`.
    pub name: String,
    /// Whitespace-normalized text (empty when the expert found nothing).
    pub text: String,
    /// Wall time, including the caption model's loading.
    pub ms: f64,
}

/// Runs every expert `args` asks for on `image`, in the order OCR, caption, commands.
pub fn run_experts(
    args: &ExpertOptions,
    image: Option<&Path>,
    ctx: &ExpertContext,
) -> Result<Vec<ExpertOutput>> {
    if !args.any() {
        return Ok(Vec::new());
    }
    let Some(image) = image else {
        let asked = args.experts_asked();
        let named: Vec<String> = asked.iter().map(|o| format!("{{{o}}}")).collect();
        let text = format!(
            "{} read(s) a picture file: give {{image}} FILE ({{pixels}} cannot be read by an expert)",
            named.join(", ")
        );
        let options: Vec<&str> = asked.into_iter().chain(["image", "pixels"]).collect();
        return Err(OptionError::new(&options, text).into());
    };
    if !image.is_file() {
        bail!("image not found: {}", image.display());
    }
    let bounds = args.bounds()?;
    // Commands are checked before anything slow runs, so a typo fails at once.
    let commands = args
        .expert_cmd
        .iter()
        .map(|c| command_argv(c, image).map(|argv| (c.as_str(), argv)))
        .collect::<Result<Vec<_>>>()?;
    // Every expert reads the picture with its own decoder, which may shrug off a truncated or
    // corrupt file; ours does not, so such a file fails here, named, before any expert runs.
    check_image(image)?;
    let mut out = Vec::new();
    if args.ocr {
        let t0 = Instant::now();
        let text = ocr(image, args.ocr_lang.as_deref(), &bounds)?;
        out.push(ExpertOutput {
            name: "ocr".into(),
            text,
            ms: ms_since(t0),
        });
    }
    if let Some(adapter) = &args.caption_adapter {
        let t0 = Instant::now();
        let text = caption(args, adapter, image, ctx, &bounds)
            .with_context(|| format!("caption expert ({})", adapter.display()))?;
        out.push(ExpertOutput {
            name: "caption".into(),
            text,
            ms: ms_since(t0),
        });
    }
    for (cmd, argv) in commands {
        let t0 = Instant::now();
        let text = run_command(cmd, &argv, &bounds)?;
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
/// Control characters (NUL, escape sequences, …) are blanks too: they have no place in a prompt.
pub fn normalize(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last non-blank line of stderr (where programs put the error that ended them), trimmed
/// and cut to 300 characters so one line stays one readable line. A closing pointer to
/// `--help` (GNU tools: "Try 'cat --help' for more information.") is passed over for the
/// error above it.
fn last_line(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let lines: Vec<String> = s.lines().map(normalize).filter(|l| !l.is_empty()).collect();
    let line = lines
        .iter()
        .rfind(|l| !l.contains("--help"))
        .or(lines.last())
        .cloned()
        .unwrap_or_else(|| "(nothing on stderr)".to_string());
    match line.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

fn program_name(program: &str) -> String {
    Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.to_string())
}

/// A bounded run that ended by itself: how it ended and what it printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// The last `STDERR_TAIL` bytes of stderr.
    pub stderr: Vec<u8>,
}

/// Why a bounded run gave no [`Finished`].
#[derive(Debug)]
pub enum RunFailure {
    /// The program does not exist (each caller says how to get it).
    NotFound,
    /// It could not be started, or its output could not be read.
    Io(std::io::Error),
    /// Still running at the deadline: it and everything it started were killed.
    TimedOut,
    /// It printed more than the cap: it and everything it started were killed.
    TooMuchOutput,
    /// It exited, but something it started outside its process group still held its output
    /// open at the deadline.
    OutputHeldOpen,
}

impl RunFailure {
    /// The error of the expert that `option` asked for, told apart by `detail` (the command of
    /// an `expert_cmd`).
    fn describe(
        &self,
        option: &'static str,
        detail: &str,
        program: &str,
        bounds: &Bounds,
    ) -> anyhow::Error {
        let secs = bounds.timeout.as_secs_f64();
        let who = format!("{{{option}}}{detail}");
        let (limit, text) = match self {
            RunFailure::NotFound => (None, format!("{who}: program '{program}' not found")),
            RunFailure::Io(e) => (None, format!("{who}: cannot run '{program}': {e}")),
            RunFailure::TimedOut => (
                Some("expert_timeout"),
                format!("{who}: still running after {secs} s ({{expert_timeout}}), killed"),
            ),
            RunFailure::TooMuchOutput => (
                Some("expert_max_output"),
                format!(
                    "{who}: printed more than {} bytes ({{expert_max_output}}), killed",
                    bounds.max_output
                ),
            ),
            RunFailure::OutputHeldOpen => (
                Some("expert_timeout"),
                format!(
                    "{who}: exited, but a process it started kept its output open for {secs} s \
                     ({{expert_timeout}})"
                ),
            ),
        };
        let options: Vec<&str> = std::iter::once(option).chain(limit).collect();
        OptionError::new(&options, text).into()
    }
}

enum Event {
    Stdout(std::io::Result<Vec<u8>>),
    Stderr(Vec<u8>),
    Exit(std::io::Result<ExitStatus>),
}

/// Runs `argv` (no shell) with no stdin (an expert must not wait on the terminal), within
/// `bounds`: at the deadline, or once stdout passes the cap, the program is killed with every
/// process it started (it runs in its own process group; on Linux it also dies with lav2), and
/// reaped. Stdout is kept up to the cap, stderr's last `STDERR_TAIL` bytes.
pub fn run_bounded(argv: &[String], bounds: &Bounds) -> std::result::Result<Finished, RunFailure> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    let start = Instant::now();
    let deadline = start + bounds.timeout;
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        ErrorKind::NotFound => RunFailure::NotFound,
        _ => RunFailure::Io(e),
    })?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let cap = bounds.max_output;
    let t = tx.clone();
    std::thread::spawn(move || {
        // One byte past the cap tells "exactly the cap" from "more".
        let mut buf = Vec::new();
        let r = (&mut stdout).take(cap as u64 + 1).read_to_end(&mut buf);
        let _ = t.send(Event::Stdout(r.map(|_| buf)));
    });
    let t = tx.clone();
    std::thread::spawn(move || {
        let (mut tail, mut chunk) = (Vec::new(), vec![0u8; 8192]);
        loop {
            match stderr.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tail.extend_from_slice(&chunk[..n]);
                    if tail.len() > 2 * STDERR_TAIL {
                        tail.drain(..tail.len() - STDERR_TAIL);
                    }
                }
            }
        }
        if tail.len() > STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
        let _ = t.send(Event::Stderr(tail));
    });
    std::thread::spawn(move || {
        let _ = tx.send(Event::Exit(child.wait()));
    });

    let (mut out, mut err, mut status) = (None, None, None);
    let failure = loop {
        if let (Some(_), Some(_), Some(_)) = (&out, &err, &status) {
            break None;
        }
        let now = Instant::now();
        if now >= deadline {
            break Some(if status.is_some() {
                RunFailure::OutputHeldOpen
            } else {
                RunFailure::TimedOut
            });
        }
        match rx.recv_timeout(deadline - now) {
            Ok(Event::Stdout(Ok(buf))) if buf.len() > cap => break Some(RunFailure::TooMuchOutput),
            Ok(Event::Stdout(Ok(buf))) => out = Some(buf),
            Ok(Event::Stdout(Err(e))) => break Some(RunFailure::Io(e)),
            Ok(Event::Stderr(tail)) => err = Some(tail),
            Ok(Event::Exit(Ok(s))) => {
                status = Some(s);
                // What it left behind in its group (a background job holding its output open)
                // goes with it; such members keep the group's id from being reused.
                if out.is_none() || err.is_none() {
                    kill_group(pid);
                }
            }
            Ok(Event::Exit(Err(e))) => break Some(RunFailure::Io(e)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Some(RunFailure::Io(std::io::Error::other(
                    "expert threads ended",
                )))
            }
        }
    };
    match failure {
        None => Ok(Finished {
            status: status.expect("checked above"),
            stdout: out.expect("checked above"),
            stderr: err.expect("checked above"),
        }),
        Some(f) => {
            if status.is_none() {
                // Kill the whole group, then reap the expert so no zombie is left behind; a
                // process that ignores SIGKILL (stuck in the kernel) is not waited for forever.
                kill_group(pid);
                let grace = Instant::now() + KILL_GRACE;
                while let Some(left) = grace.checked_duration_since(Instant::now()) {
                    match rx.recv_timeout(left) {
                        Ok(Event::Exit(_)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
            Err(f)
        }
    }
}

/// SIGKILL to the process group `pid` leads (an expert runs in its own group).
fn kill_group(pid: u32) {
    #[cfg(unix)]
    // SAFETY: kill has no memory effects; a group that is already gone gives ESRCH.
    unsafe {
        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
    }
}

/// `tesseract IMAGE -` (the real program: we do not reimplement OCR).
fn ocr(image: &Path, lang: Option<&str>, bounds: &Bounds) -> Result<String> {
    let mut argv = vec![
        TESSERACT.to_string(),
        image.to_string_lossy().into_owned(),
        "-".into(),
    ];
    if let Some(l) = lang {
        argv.extend(["-l".to_string(), l.to_string()]);
    }
    let out = match run_bounded(&argv, bounds) {
        Ok(o) => o,
        Err(RunFailure::NotFound) => {
            return Err(OptionError::new(
                &["ocr"],
                format!(
                    "{{ocr}}: the '{TESSERACT}' program is not installed or not on PATH \
                     (Debian/Ubuntu: apt-get install {TESSERACT_PACKAGE})"
                ),
            )
            .into())
        }
        Err(f) => return Err(f.describe("ocr", "", TESSERACT, bounds)),
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if let (Some(l), true) = (lang, err.contains("Failed loading language")) {
            let text = format!(
                "{{ocr}}: tesseract has no data for language '{l}' (Debian/Ubuntu: apt-get install \
                 {TESSERACT_PACKAGE}-LANG, e.g. {TESSERACT_PACKAGE}-deu; `tesseract --list-langs` shows what is installed)"
            );
            return Err(OptionError::new(&["ocr"], text).into());
        }
        let text = format!(
            "{{ocr}}: tesseract {} on {} ({}): {}",
            failed_or_crashed(&out.status),
            image.display(),
            out.status,
            last_line(&out.stderr)
        );
        return Err(OptionError::new(&["ocr"], text).into());
    }
    Ok(normalize(&String::from_utf8_lossy(&out.stdout)))
}

/// The caption prompt as the authors trained it: Alpaca without input around
/// [`CAPTION_INSTRUCTION`] (BOS is added by the caller).
pub fn caption_prompt() -> String {
    generate::format_prompt(Template::Alpaca, CAPTION_INSTRUCTION, None)
        .expect("the Alpaca template takes an instruction without input")
}

fn caption(
    args: &ExpertOptions,
    adapter: &Path,
    image: &Path,
    ctx: &ExpertContext,
    bounds: &Bounds,
) -> Result<String> {
    let t0 = Instant::now();
    let sampling = SamplingOptions {
        temperature: args.caption_temperature,
        max_new_tokens: args.caption_max_new_tokens,
        ..SamplingOptions::default()
    };
    sampling.validate().map_err(|e| e.within("caption"))?;
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
        Some(s) => {
            let refuse = |problem: String| {
                OptionError::new(
                    &["caption_prompt_ids"],
                    format!("{{caption_prompt_ids}}{problem}"),
                )
            };
            let ids = parse_token_ids(s).map_err(|e| refuse(format!(": {e}")))?;
            if ids.is_empty() {
                return Err(refuse(" is empty".into()).into());
            }
            ids
        }
        None => {
            let mut ids = vec![model.config.bos_id];
            ids.extend(tokenizer.encode(&caption_prompt())?);
            ids
        }
    };
    let pixels = load_image(image, size, order)?;
    let mut session = Session::new(model, backend::open(ctx.device)?)?;
    // In-process, so nothing to kill: the deadline is checked before the first token and
    // after each (loading the model and the vision tower cannot be cut short).
    let out_of_time = || {
        if t0.elapsed() > bounds.timeout {
            let text = format!(
                "still running after {} s ({{expert_timeout}}), stopped",
                bounds.timeout.as_secs_f64()
            );
            return Err(OptionError::new(&["expert_timeout"], text).into());
        }
        Ok(())
    };
    out_of_time()?;
    let ids = caption_core(&mut session, &pixels, &prompt_ids, &sampling, |_| {
        out_of_time()
    })?;
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
    caption_core(session, pixels, prompt_ids, sampling, |_| Ok(()))
}

fn caption_core(
    session: &mut Session,
    pixels: &[f32],
    prompt_ids: &[u32],
    sampling: &SamplingOptions,
    on_token: impl FnMut(u32) -> Result<()>,
) -> Result<Vec<u32>> {
    let vq = session.visual_query(pixels)?;
    session.set_visual_query(Some(&vq))?;
    Ok(generate::generate(session, prompt_ids, sampling, on_token)?.ids)
}

/// The argv of an `expert_cmd`, with `{image}` replaced by the image path inside any word
/// (so `--file={image}` works, and a path with spaces stays one argument).
pub fn command_argv(cmd: &str, image: &Path) -> Result<Vec<String>> {
    let refuse = |text: String| OptionError::new(&["expert_cmd"], text);
    let words = split_command(cmd).map_err(|e| refuse(format!("{{expert_cmd}} '{cmd}': {e}")))?;
    if words.is_empty() {
        return Err(refuse(format!(
            "{{expert_cmd}} is empty (expected e.g. \"my-detector {IMAGE_TOKEN}\")"
        ))
        .into());
    }
    if !words.iter().any(|w| w.contains(IMAGE_TOKEN)) {
        return Err(refuse(format!(
            "{{expert_cmd}} '{cmd}' has no {IMAGE_TOKEN}: write where the image path goes, e.g. \"{} {IMAGE_TOKEN}\"",
            words[0]
        ))
        .into());
    }
    let path = image.to_string_lossy();
    Ok(words
        .into_iter()
        .map(|w| w.replace(IMAGE_TOKEN, &path))
        .collect())
}

fn run_command(cmd: &str, argv: &[String], bounds: &Bounds) -> Result<String> {
    let out = run_bounded(argv, bounds)
        .map_err(|f| f.describe("expert_cmd", &format!(" '{cmd}'"), &argv[0], bounds))?;
    if !out.status.success() {
        let text = format!(
            "{{expert_cmd}} '{cmd}' {} ({}): {}",
            failed_or_crashed(&out.status),
            out.status,
            last_line(&out.stderr)
        );
        return Err(OptionError::new(&["expert_cmd"], text).into());
    }
    Ok(normalize(&String::from_utf8_lossy(&out.stdout)))
}

/// "crashed" when a signal ended the program, "failed" for a non-zero exit.
fn failed_or_crashed(status: &ExitStatus) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if status.signal().is_some() {
            return "crashed";
        }
    }
    let _ = status;
    "failed"
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
