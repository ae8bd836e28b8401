//! `lav2 bench`: synthetic LLaMA-Adapter V2 models measured against this device's roofline.
//! Every row carries the bytes a step must move and the fraction of the copy bandwidth —
//! measured in the same run — that the step achieved.
//!
//! On the PTX emulator (`scripts/with-cuda-emu.sh`) the same steps run, but what they take is a
//! CPU interpreter's time: the report says so once (`emulated`) and on every timing row.

use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::backend::{self, Backend, DeviceChoice};

use crate::model::synthetic::{self, Preset, ShapeOverrides};
use crate::model::Model;
use crate::quant::QuantFormat;
use crate::session::Session;

mod stats;

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub preset: Option<String>,
    /// Dimensions that replace the preset's.
    pub shape: ShapeOverrides,
    pub device: DeviceChoice,
    pub formats: Vec<QuantFormat>,
    pub prefill_lens: Vec<usize>,
    pub decode_contexts: Vec<usize>,
    /// Decode steps timed per context.
    pub decode_tokens: usize,
    pub repeats: usize,
    /// Sequences decoded side by side (each with its own KV cache, one shared image).
    pub batch: usize,
    pub seed: u64,
    /// Run with the adapter, without it, or both.
    pub adapter: AdapterChoice,
    /// Kernel variants for the ops that have several (`Backend::set_kernel_variants`).
    pub kernels: String,
    /// Told what the run is doing (device found, models set up), for a caller that shows it.
    pub progress: fn(&str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterChoice {
    Both,
    With,
    Without,
}

/// What every row measured on an emulated device carries in place of a timing's meaning.
pub const EMULATED_LABEL: &str = "emulated: not a timing";

pub use stats::*;

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub format: String,
    pub adapter: bool,
    pub step: String,
    /// Sequences in the step.
    pub batch: usize,
    /// Tokens per sequence in the step.
    pub tokens: usize,
    pub context: usize,
    /// Time of one step (all sequences): the median over the repeats.
    pub ms: f64,
    /// The spread of the step's time: the fastest and slowest repeat.
    pub ms_min: f64,
    pub ms_max: f64,
    pub repeats: usize,
    /// Tokens of all sequences per second, at the median time.
    pub tokens_per_s: f64,
    /// Bytes a step must at least read and write (weights, KV cache, activations ignored),
    /// over the tokens it produces.
    pub bytes_per_token: f64,
    /// Roofline time (bytes / copy bandwidth) over the median time.
    pub roofline_fraction: f64,
    /// Measured on an emulator: the numbers are not a timing of any device.
    pub emulated: bool,
    /// [`EMULATED_LABEL`] on an emulator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub device: String,
    /// The device is an emulator: every time below is the emulator's, not a timing.
    pub emulated: bool,
    /// [`EMULATED_LABEL`] on an emulator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
    pub preset: String,
    pub shape: String,
    /// The kernel variants measured ("default": the model's kernels).
    pub kernels: String,
    /// The device's ceilings (the backend's best of its own repeats: a roofline is the most the
    /// device was seen to do, not what it typically does).
    pub copy_bandwidth_gb_s: f64,
    pub matmul_tflop_s: f64,
    /// The same product by the vendor library (cuBLAS on CUDA), where there is one.
    pub vendor_matmul: Option<VendorRate>,
    pub rows: Vec<Row>,
    pub runs: Vec<RunSummary>,
    /// What the adapter (prompts, biases, gated attention) adds to each step, where the same
    /// step was measured with and without it, in interleaved pairs.
    pub adapter_overhead: Vec<AdapterOverhead>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AdapterOverhead {
    pub format: String,
    pub step: String,
    pub context: usize,
    /// `ms with / ms without − 1`, the median over the pairs; `null` when within noise.
    pub fraction: Option<f64>,
    pub within_noise: bool,
    /// Median and spread of the per-pair fractions, whether or not they resolve.
    pub per_pair: Stats,
    pub emulated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VendorRate {
    pub library: String,
    /// At the backend's best of its own repeats, as our `matmul_tflop_s` is: ceilings compared.
    pub tflop_s: f64,
}

/// Per weight format and adapter choice: setup, the image path, and time to first token.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub label: String,
    pub setup_s: f64,
    /// Image → visual prompts → prompt K/V (adapter runs only): median and spread.
    pub vision_ms: Option<f64>,
    pub vision_ms_min: Option<f64>,
    pub vision_ms_max: Option<f64>,
    /// Image path plus prefill of the first prefill length (their medians).
    pub time_to_first_token_ms: f64,
    pub emulated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

/// Bytes one decode step of `batch` sequences reads: every matrix once (in its stored format),
/// norms and biases, and per sequence an embedding row and the KV cache up to `context` (plus
/// the prompt K/V, shared by the batch, with an adapter).
pub fn decode_bytes(m: &Model, act_bytes: usize, context: usize, batch: usize) -> f64 {
    let c = &m.config;
    let mut bytes = 0f64;
    for (name, t) in m.weights.names.iter().zip(&m.weights.tensors) {
        let skip = name.starts_with("clip.")
            || name.starts_with("visual_")
            || name.starts_with("clip_")
            || name.starts_with("adapter_query")
            || name == "tok_embeddings";
        if skip {
            continue;
        }
        bytes += match t.dtype {
            crate::tensor::DType::I8 | crate::tensor::DType::U8 => t.numel() as f64,
            _ => (t.numel() * act_bytes) as f64,
        };
    }
    let per_seq_kv = 2.0 * c.n_layers as f64 * context as f64 * c.kv_dim() as f64;
    let kv = batch as f64 * (per_seq_kv + c.dim as f64) * act_bytes as f64;
    let prompts = m.adapter.as_ref().map_or(0.0, |a| {
        2.0 * a.config.query_layer as f64
            * a.config.query_len as f64
            * c.kv_dim() as f64
            * act_bytes as f64
    });
    bytes + kv + prompts
}

/// Best of five timed batches of the vendor library's product, as a rate: a ceiling, like the
/// backend's own `matmul_rate` it is printed beside.
fn vendor_rate(b: &mut dyn Backend, m: usize, k: usize, n: usize) -> Result<Option<VendorRate>> {
    let mut best = f64::INFINITY;
    let mut library = None;
    for _ in 0..5 {
        let Some((name, t)) = b.vendor_matmul_time(m, k, n, 10)? else {
            return Ok(None);
        };
        library = Some(name);
        best = best.min(t.as_secs_f64() / 10.0);
    }
    Ok(library.map(|l| VendorRate {
        library: l.to_string(),
        tflop_s: 2.0 * (m * k * n) as f64 / best.max(1e-12) / 1e12,
    }))
}

/// What the device can do, measured once before the model runs.
struct DeviceProbe {
    device: String,
    on_gpu: bool,
    /// Bytes per activation element (4 on the CPU reference, 2 in f16 on CUDA).
    act_bytes: usize,
    emulated: bool,
    preset_name: String,
    copy_bandwidth: f64,
    matmul_rate: f64,
    vendor: Option<VendorRate>,
}

/// Opens the device once for its description and ceilings; `dim` gives the width of a preset,
/// whose default (7B on a GPU, tiny on the CPU) depends on the device.
fn probe_device(opts: &BenchOptions, dim: impl Fn(&str) -> Result<usize>) -> Result<DeviceProbe> {
    let mut probe = backend::open(opts.device)?;
    probe.set_kernel_variants(&opts.kernels)?;
    let on_gpu = probe.act_bytes() == 2;
    let emulated = probe.is_emulated();
    let preset_name =
        opts.preset
            .clone()
            .unwrap_or_else(|| if on_gpu { "7b".into() } else { "tiny".into() });
    let device = probe.describe();
    (opts.progress)(&format!("device {device}"));
    if emulated {
        (opts.progress)(&format!(
            "the device is an emulator: every row is labelled '{EMULATED_LABEL}'"
        ));
    }
    // On an emulator the bandwidth is no measurement: a small copy keeps the run short (a GiB
    // through an interpreter's memory checks takes minutes and gigabytes of host memory).
    let copy_bytes = if emulated {
        1 << 24
    } else if on_gpu {
        1 << 30
    } else {
        1 << 28
    };
    let copy_bandwidth = probe.copy_bandwidth(copy_bytes)?;
    let d = dim(&preset_name)?;
    let matmul_rate = probe.matmul_rate(512, d, d)?;
    let vendor = match vendor_rate(probe.as_mut(), 512, d, d) {
        Ok(v) => v,
        Err(e) => {
            (opts.progress)(&format!("vendor matmul comparison skipped: {e:#}"));
            None
        }
    };
    Ok(DeviceProbe {
        device,
        on_gpu,
        act_bytes: probe.act_bytes(),
        emulated,
        preset_name,
        copy_bandwidth,
        matmul_rate,
        vendor,
    })
}

/// One model (a weight format, with or without the adapter) ready to time.
struct BenchRun {
    format: String,
    with_adapter: bool,
    label: String,
    setup_s: f64,
    session: Session,
}

fn open_run(
    opts: &BenchOptions,
    preset: &Preset,
    format: QuantFormat,
    fname: &str,
    with_adapter: bool,
) -> Result<BenchRun> {
    let label = format!("{fname}{}", if with_adapter { " + adapter" } else { "" });
    (opts.progress)(&format!(
        "{label}: generating and uploading {} weights",
        preset.name
    ));
    let t0 = Instant::now();
    let model = synthetic::build(preset, opts.seed, format, with_adapter);
    let mut backend = backend::open(opts.device)?;
    backend.set_kernel_variants(&opts.kernels)?;
    let session = Session::with_batch(model, backend, opts.batch)?;
    let setup_s = t0.elapsed().as_secs_f64();
    (opts.progress)(&format!("{label}: ready in {setup_s:.1} s"));
    Ok(BenchRun {
        format: fname.into(),
        with_adapter,
        label,
        setup_s,
        session,
    })
}

/// `repeats` samples (ms) of `step` on every run, the runs alternated within each repeat — and
/// their order reversed every other repeat — so that drift (clocks, heat, other load) reaches
/// each alike and samples with the same index form fair pairs.
fn interleaved(
    runs: &mut [BenchRun],
    repeats: usize,
    mut step: impl FnMut(&mut Session, usize) -> Result<f64>,
) -> Result<Vec<Vec<f64>>> {
    let mut samples = vec![Vec::with_capacity(repeats); runs.len()];
    for r in 0..repeats {
        let mut order: Vec<usize> = (0..runs.len()).collect();
        if r % 2 == 1 {
            order.reverse();
        }
        for i in order {
            samples[i].push(step(&mut runs[i].session, r)?);
        }
    }
    Ok(samples)
}

/// A different prompt per sequence, sequence after sequence.
fn prompt_tokens(vocab: u32, batch: usize, n: usize) -> Vec<u32> {
    (0..(batch * n) as u32)
        .map(|i| 1 + (i * 7919) % (vocab - 1))
        .collect()
}

/// A measured step: its name, tokens per sequence, context, and the bytes it must move.
struct StepKind<'a> {
    step: &'a str,
    tokens: usize,
    context: usize,
    /// Bytes the step moves, for the roofline, given the session that ran it.
    bytes: &'a dyn Fn(&Session) -> f64,
}

/// Adds a row per run and, with both adapter choices, the adapter's overhead from the
/// interleaved pairs (`samples[i]` are `runs[i]`'s, sample by sample in pairs).
fn record(
    kind: &StepKind,
    runs: &[BenchRun],
    samples: &[Vec<f64>],
    probe: &DeviceProbe,
    batch: usize,
    out: &mut Report,
) {
    let note = probe.emulated.then_some(EMULATED_LABEL);
    for (run, times) in runs.iter().zip(samples) {
        let ms = Stats::of(times);
        let bytes = (kind.bytes)(&run.session);
        let tokens = (batch * kind.tokens) as f64;
        out.rows.push(Row {
            format: run.format.clone(),
            adapter: run.with_adapter,
            step: kind.step.into(),
            batch,
            tokens: kind.tokens,
            context: kind.context,
            ms: ms.median,
            ms_min: ms.min,
            ms_max: ms.max,
            repeats: ms.samples,
            tokens_per_s: tokens / (ms.median / 1e3),
            bytes_per_token: bytes / tokens,
            roofline_fraction: bytes / probe.copy_bandwidth / (ms.median / 1e3),
            emulated: probe.emulated,
            note,
        });
    }
    if let [without, with] = runs {
        if !without.with_adapter && with.with_adapter {
            let o = PairedOverhead::of(&samples[0], &samples[1]);
            out.adapter_overhead.push(AdapterOverhead {
                format: with.format.clone(),
                step: kind.step.into(),
                context: kind.context,
                fraction: o.resolved(),
                within_noise: o.within_noise,
                per_pair: o.per_pair,
                emulated: probe.emulated,
                note,
            });
        }
    }
}

/// Image → visual prompts → prompt K/V on every run that has an image path: median and spread.
fn measure_vision(runs: &mut [BenchRun], repeats: usize) -> Result<Vec<Option<Stats>>> {
    let mut out = Vec::new();
    for run in runs.iter_mut() {
        let s = &mut run.session;
        let Some(size) = s.image_size() else {
            out.push(None);
            continue;
        };
        let pixels: Vec<f32> = (0..3 * size * size)
            .map(|i| ((i % 255) as f32 / 127.0) - 1.0)
            .collect();
        let mut times = Vec::new();
        for _ in 0..repeats {
            let t = Instant::now();
            let vq = s.visual_query(&pixels)?;
            s.set_visual_query(Some(&vq))?;
            s.backend_mut().synchronize()?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        out.push(Some(Stats::of(&times)));
    }
    Ok(out)
}

/// Prefill at every length, interleaved across `runs`; the median of the first length.
fn measure_prefill(
    opts: &BenchOptions,
    runs: &mut [BenchRun],
    probe: &DeviceProbe,
    vocab: u32,
    out: &mut Report,
) -> Result<Vec<f64>> {
    let act = probe.act_bytes;
    let mut first = vec![0.0; runs.len()];
    for (li, &len) in opts.prefill_lens.iter().enumerate() {
        let ids = prompt_tokens(vocab, opts.batch, len);
        for run in runs.iter_mut() {
            run.session.forward(&ids, 0, false)?; // plans and warms up this shape
        }
        let samples = interleaved(runs, opts.repeats, |s, _| {
            let t = Instant::now();
            s.forward(&ids, 0, false)?;
            Ok(t.elapsed().as_secs_f64() * 1e3)
        })?;
        if li == 0 {
            first = samples.iter().map(|t| Stats::of(t).median).collect();
        }
        // Prefill reads the weights once for all tokens.
        let bytes = |s: &Session| decode_bytes(s.model(), act, len, opts.batch);
        let kind = StepKind {
            step: "prefill",
            tokens: len,
            context: len,
            bytes: &bytes,
        };
        record(&kind, runs, &samples, probe, opts.batch, out);
    }
    Ok(first)
}

/// Decode at every context, interleaved across `runs`: each sample is the mean step time of
/// `decode_tokens` consecutive steps (the positions rewritten by every repeat).
fn measure_decode(
    opts: &BenchOptions,
    runs: &mut [BenchRun],
    probe: &DeviceProbe,
    vocab: u32,
    out: &mut Report,
) -> Result<()> {
    let act = probe.act_bytes;
    let batch = opts.batch;
    for &ctx in &opts.decode_contexts {
        for run in runs.iter_mut() {
            run.session
                .forward(&prompt_tokens(vocab, batch, ctx), 0, false)?;
        }
        let samples = interleaved(runs, opts.repeats, |s, r| {
            let t = Instant::now();
            for i in 0..opts.decode_tokens {
                let step: Vec<u32> = (0..batch as u32)
                    .map(|b| 1 + (i as u32 * 31 + r as u32 + b * 7) % (vocab - 1))
                    .collect();
                s.forward(&step, ctx + i, false)?;
            }
            Ok(t.elapsed().as_secs_f64() * 1e3 / opts.decode_tokens as f64)
        })?;
        let bytes = |s: &Session| decode_bytes(s.model(), act, ctx + opts.decode_tokens / 2, batch);
        let kind = StepKind {
            step: "decode",
            tokens: 1,
            context: ctx,
            bytes: &bytes,
        };
        record(&kind, runs, &samples, probe, batch, out);
    }
    Ok(())
}

pub fn run(opts: &BenchOptions) -> Result<Report> {
    if opts.repeats == 0 || opts.decode_tokens == 0 || opts.batch == 0 {
        bail!("--repeats, --decode-tokens and --batch must be positive");
    }
    if opts.prefill_lens.contains(&0) || opts.decode_contexts.contains(&0) {
        bail!("--prefill and --contexts lengths must be positive");
    }
    let max_ctx = opts
        .decode_contexts
        .iter()
        .chain(&opts.prefill_lens)
        .copied()
        .max()
        .unwrap_or(128);
    let preset_for = |name: &str| -> Result<Preset> {
        synthetic::preset(name, max_ctx + opts.decode_tokens + 1)?.with_shape(&opts.shape)
    };
    let probe = probe_device(opts, |name| Ok(preset_for(name)?.config.dim))?;
    let preset = preset_for(&probe.preset_name)?;
    let note = probe.emulated.then_some(EMULATED_LABEL);
    (opts.progress)(&format!(
        "copy bandwidth {:.1} GB/s, matmul {:.2} TFLOP/s{}{}",
        probe.copy_bandwidth / 1e9,
        probe.matmul_rate / 1e12,
        probe.vendor.as_ref().map_or(String::new(), |v| format!(
            " ({} {:.2} TFLOP/s)",
            v.library, v.tflop_s
        )),
        note.map_or(String::new(), |n| format!(" ({n})"))
    ));
    let c = &preset.config;
    let mut report = Report {
        device: probe.device.clone(),
        emulated: probe.emulated,
        note,
        preset: preset.name.clone(),
        shape: format!(
            "dim {}, {} layers, {} heads ({} kv), ffn {}, vocab {}",
            c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.ffn_dim, c.vocab_size
        ),
        kernels: if opts.kernels.trim().is_empty() {
            "default".into()
        } else {
            opts.kernels.clone()
        },
        copy_bandwidth_gb_s: probe.copy_bandwidth / 1e9,
        matmul_tflop_s: probe.matmul_rate / 1e12,
        vendor_matmul: probe.vendor.clone(),
        rows: Vec::new(),
        runs: Vec::new(),
        adapter_overhead: Vec::new(),
    };
    let adapters: &[bool] = match opts.adapter {
        AdapterChoice::Both => &[false, true],
        AdapterChoice::With => &[true],
        AdapterChoice::Without => &[false],
    };
    for &format in &opts.formats {
        // Unquantized weights are f32 on the CPU reference and f16 on a GPU.
        let fname = match format {
            QuantFormat::None if !probe.on_gpu => "f32",
            f => f.name(),
        };
        // Both models stay loaded so their runs can alternate (the overhead's pairs).
        let mut runs = adapters
            .iter()
            .map(|&a| open_run(opts, &preset, format, fname, a))
            .collect::<Result<Vec<_>>>()?;
        let vocab = c.vocab_size as u32;
        let vision = measure_vision(&mut runs, opts.repeats)?;
        let first_prefill = measure_prefill(opts, &mut runs, &probe, vocab, &mut report)?;
        measure_decode(opts, &mut runs, &probe, vocab, &mut report)?;
        for ((run, vision), prefill_ms) in runs.iter().zip(vision).zip(first_prefill) {
            report.runs.push(RunSummary {
                label: run.label.clone(),
                setup_s: run.setup_s,
                vision_ms: vision.map(|v| v.median),
                vision_ms_min: vision.map(|v| v.min),
                vision_ms_max: vision.map(|v| v.max),
                time_to_first_token_ms: vision.map_or(0.0, |v| v.median) + prefill_ms,
                emulated: probe.emulated,
                note,
            });
        }
    }
    Ok(report)
}

impl Report {
    /// The adapter-overhead table (empty without one), with the note column `head` / `rule`.
    fn overhead_markdown(&self, head: &str, rule: &str) -> String {
        let note = |n: Option<&str>| n.map_or(String::new(), |n| format!(" {n} |"));
        let mut s = String::new();
        if !self.adapter_overhead.is_empty() {
            s += &format!(
                "\n| weights | step | context | adapter adds | per pair: median (min … max) | pairs |{head}\n|---|---|---:|---:|---:|---:|{rule}\n"
            );
            for o in &self.adapter_overhead {
                let p = &o.per_pair;
                s += &format!(
                    "| {} | {} | {} | {} | {:+.1} % ({:+.1} … {:+.1}) | {} |{}\n",
                    o.format,
                    o.step,
                    o.context,
                    o.fraction.map_or("within noise".to_string(), |f| format!(
                        "{:+.1} %",
                        100.0 * f
                    )),
                    100.0 * p.median,
                    100.0 * p.min,
                    100.0 * p.max,
                    p.samples,
                    note(o.note)
                );
            }
        }
        s
    }

    pub fn markdown(&self) -> String {
        let vendor = self.vendor_matmul.as_ref().map_or(String::new(), |v| {
            format!(
                " (our kernel; {} does the same product at {:.2} TFLOP/s, {:.0} % of which is ours)",
                v.library,
                v.tflop_s,
                100.0 * self.matmul_tflop_s / v.tflop_s
            )
        });
        // On an emulator every timing row says so, in an extra column (and the header once).
        let note = |n: Option<&str>| n.map_or(String::new(), |n| format!(" {n} |"));
        let (head, rule) = if self.emulated {
            (" note |", "---|")
        } else {
            ("", "")
        };
        let mut s = format!(
            "# lav2 bench — {} preset on {}\n\n",
            self.preset, self.device
        );
        if self.emulated {
            s += &format!(
                "**{EMULATED_LABEL}**: this device is an emulator; every number below is its \
                 interpreter's time and says nothing about any GPU.\n\n"
            );
        }
        s += &format!(
            "Shape: {}. Kernels: {}. Copy bandwidth {:.1} GB/s (read + write), \
             f16/f32 matmul [512 × dim · (dim × dim)ᵀ] {:.2} TFLOP/s{vendor}, all measured in this \
             run.\n\n",
            self.shape, self.kernels, self.copy_bandwidth_gb_s, self.matmul_tflop_s
        );
        s += &format!("| weights | adapter | step | batch | tokens | context | ms | ms min … max | tokens/s | MB/token | % of roofline |{head}\n");
        s += &format!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|{rule}\n");
        for r in &self.rows {
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {:.3} | {:.3} … {:.3} | {:.1} | {:.2} | {:.1} |{}\n",
                r.format,
                if r.adapter { "yes" } else { "no" },
                r.step,
                r.batch,
                r.tokens,
                r.context,
                r.ms,
                r.ms_min,
                r.ms_max,
                r.tokens_per_s,
                r.bytes_per_token / 1e6,
                100.0 * r.roofline_fraction,
                note(r.note)
            );
        }
        s += &self.overhead_markdown(head, rule);
        s += &format!("\n| run | setup (s) | image → visual prompts (ms) | time to first token (ms) |{head}\n|---|---:|---:|---:|{rule}\n");
        for r in &self.runs {
            let vision = match (r.vision_ms, r.vision_ms_min, r.vision_ms_max) {
                (Some(v), Some(lo), Some(hi)) => format!("{v:.2} ({lo:.2} … {hi:.2})"),
                _ => "–".to_string(),
            };
            s += &format!(
                "| {} | {:.1} | {vision} | {:.2} |{}\n",
                r.label,
                r.setup_s,
                r.time_to_first_token_ms,
                note(r.note)
            );
        }
        s += &format!(
            "\nRoofline: the bytes a step must move (every weight once in its stored format, the KV \
              cache up to the context of every sequence, the prompt K/V) divided by the copy \
              bandwidth; the fraction is that ideal time over the median time. `ms` is one step of \
              the whole batch, the median over the repeats, beside the fastest and slowest; \
              tokens/s counts the tokens of every sequence. The adapter's overhead comes from \
              runs alternated with the same step without it: each pair's ratio, their median, and \
              \"within noise\" where their spread includes 0 (or there are fewer than {MIN_PAIRS} \
              pairs).\n"
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(emulated: bool) -> Report {
        let note = emulated.then_some(EMULATED_LABEL);
        let row = |adapter: bool, ms: f64| Row {
            format: "int4".into(),
            adapter,
            step: "decode".into(),
            batch: 1,
            tokens: 1,
            context: 16,
            ms,
            ms_min: ms * 0.9,
            ms_max: ms * 1.1,
            repeats: 3,
            tokens_per_s: 1e3 / ms,
            bytes_per_token: 1e6,
            roofline_fraction: 0.5,
            emulated,
            note,
        };
        let o = PairedOverhead::of(&[2.0, 2.1, 1.9, 2.0, 2.2], &[2.5, 2.6, 2.4, 2.5, 2.7]);
        Report {
            device: "some device".into(),
            emulated,
            note,
            preset: "tiny".into(),
            shape: "dim 256".into(),
            kernels: "default".into(),
            copy_bandwidth_gb_s: 1.0,
            matmul_tflop_s: 1.0,
            vendor_matmul: None,
            adapter_overhead: vec![AdapterOverhead {
                format: "int4".into(),
                step: "decode".into(),
                context: 16,
                fraction: o.resolved(),
                within_noise: o.within_noise,
                per_pair: o.per_pair,
                emulated,
                note,
            }],
            rows: vec![row(false, 2.0), row(true, 2.5)],
            runs: vec![RunSummary {
                label: "int4 + adapter".into(),
                setup_s: 1.0,
                vision_ms: Some(3.0),
                vision_ms_min: Some(2.9),
                vision_ms_max: Some(3.2),
                time_to_first_token_ms: 4.0,
                emulated,
                note,
            }],
        }
    }

    /// On an emulator every timing row of the table carries the label, and the JSON says so.
    #[test]
    fn emulated_rows_are_labelled_as_not_a_timing() {
        let md = report(true).markdown();
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| int4")).collect();
        assert_eq!(rows.len(), 4, "{md}");
        assert!(
            rows.iter()
                .all(|l| l.ends_with("| emulated: not a timing |")),
            "{md}"
        );
        let v = serde_json::to_value(report(true)).unwrap();
        assert_eq!(v["emulated"], true);
        assert_eq!(v["rows"][0]["note"], EMULATED_LABEL);
        assert_eq!(v["adapter_overhead"][0]["emulated"], true);

        let md = report(false).markdown();
        assert!(!md.contains("emulated"), "{md}");
        let v = serde_json::to_value(report(false)).unwrap();
        assert_eq!(v["emulated"], false);
        assert!(v["rows"][0]["note"].is_null());
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn stats_give_the_median_and_the_extremes_of_odd_and_even_counts() {
        let odd = Stats::of(&[5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!(
            odd,
            Stats {
                median: 3.0,
                min: 1.0,
                max: 5.0,
                samples: 5
            }
        );
        // Even: the mean of the two middle samples, not either of them.
        let even = Stats::of(&[10.0, 1.0, 3.0, 2.0]);
        assert_eq!((even.median, even.min, even.max), (2.5, 1.0, 10.0));
        assert_eq!(even.samples, 4);
        // One outlier moves neither the median of an odd count nor the other end of the spread.
        let outlier = Stats::of(&[1.0, 1.1, 50.0]);
        assert_eq!((outlier.median, outlier.min, outlier.max), (1.1, 1.0, 50.0));
        let one = Stats::of(&[7.0]);
        assert_eq!(
            (one.median, one.min, one.max, one.samples),
            (7.0, 7.0, 7.0, 1)
        );
        assert!(odd.spans(1.0) && odd.spans(5.0) && !odd.spans(5.01) && !odd.spans(0.99));
    }

    #[test]
    #[should_panic(expected = "no samples")]
    fn stats_of_nothing_is_a_bug() {
        Stats::of(&[]);
    }

    /// The overhead is the median of the pairs' ratios (not the ratio of medians or means).
    #[test]
    fn paired_overhead_is_the_median_of_per_pair_ratios() {
        // Ratios 1.10, 1.20, 1.05, 1.50, 1.15: median 1.15, spread 1.05 … 1.50.
        let without = [10.0, 5.0, 20.0, 2.0, 8.0];
        let with = [11.0, 6.0, 21.0, 3.0, 9.2];
        let o = PairedOverhead::of(&without, &with);
        assert!(close(o.per_pair.median, 0.15), "{o:?}");
        assert!(
            close(o.per_pair.min, 0.05) && close(o.per_pair.max, 0.5),
            "{o:?}"
        );
        assert!(!o.within_noise);
        assert!(close(o.resolved().unwrap(), 0.15));
        // Even count: the mean of the middle two ratios (1.12 and 1.18).
        let o = PairedOverhead::of(&[1.0; 6], &[1.1, 1.2, 1.05, 1.3, 1.12, 1.18]);
        assert!(close(o.resolved().unwrap(), 0.15), "{o:?}");
        // Consistently faster with the adapter is a measured negative, and reported.
        let o = PairedOverhead::of(&[2.0; 5], &[1.8, 1.9, 1.7, 1.8, 1.9]);
        assert!(close(o.resolved().unwrap(), -0.1), "{o:?}");
    }

    /// Equal-ish pairs (the same step twice, give or take noise) whose median fraction is
    /// negative are reported as within noise, never as a negative overhead; and too few pairs
    /// resolve nothing.
    #[test]
    fn paired_noise_is_never_a_negative_overhead() {
        let without = [10.00, 10.03, 9.98, 10.01, 10.02];
        let with = [9.97, 10.05, 9.96, 10.00, 10.01];
        let o = PairedOverhead::of(&without, &with);
        assert!(
            o.per_pair.median < 0.0,
            "the case this test is about: {o:?}"
        );
        assert!(o.within_noise && o.resolved().is_none(), "{o:?}");
        let mut r = report(false);
        r.adapter_overhead[0].fraction = o.resolved();
        r.adapter_overhead[0].within_noise = o.within_noise;
        let md = r.markdown();
        let line = md
            .lines()
            .find(|l| l.starts_with("| int4 | decode | 16 |"))
            .unwrap();
        assert!(line.contains("| within noise |"), "{line}");
        assert_eq!(
            serde_json::to_value(&r).unwrap()["adapter_overhead"][0]["fraction"],
            serde_json::Value::Null
        );

        // Fewer than MIN_PAIRS pairs resolve nothing, even when all agree in sign.
        for n in 1..MIN_PAIRS {
            let o = PairedOverhead::of(&vec![10.0; n], &vec![9.0; n]);
            assert!(o.within_noise && o.resolved().is_none(), "{n} pairs: {o:?}");
        }

        // Pairs drawn from one distribution: a negative is reported only when every pair has
        // the adapter faster (chance 2⁻⁷ for 7 pairs), so in 2000 seeded trials about 16 — a
        // rule that trusted the median's sign would report about 1000.
        let mut rng = crate::rng::Rng::new(11);
        let mut noise = || 10.0 + rng.uniform();
        let negatives = (0..2000)
            .filter(|_| {
                let without: Vec<f64> = (0..7).map(|_| noise()).collect();
                let with: Vec<f64> = (0..7).map(|_| noise()).collect();
                PairedOverhead::of(&without, &with)
                    .resolved()
                    .is_some_and(|f| f < 0.0)
            })
            .count();
        assert!(
            negatives < 40,
            "{negatives} of 2000 noise-only trials reported a negative"
        );
    }
}
