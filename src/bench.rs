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
use crate::Session;

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterChoice {
    Both,
    With,
    Without,
}

/// What every row measured on an emulated device carries in place of a timing's meaning.
pub const EMULATED_LABEL: &str = "emulated: not a timing";

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
    /// Time of one step (all sequences).
    pub ms: f64,
    /// Tokens of all sequences per second.
    pub tokens_per_s: f64,
    /// Bytes a step must at least read and write (weights, KV cache, activations ignored),
    /// over the tokens it produces.
    pub bytes_per_token: f64,
    /// Roofline time (bytes / copy bandwidth) over measured time.
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
    pub copy_bandwidth_gb_s: f64,
    pub matmul_tflop_s: f64,
    /// The same product by the vendor library (cuBLAS on CUDA), where there is one.
    pub vendor_matmul: Option<VendorRate>,
    pub rows: Vec<Row>,
    pub runs: Vec<RunSummary>,
    /// What the adapter (prompts, biases, gated attention) adds to each step, where the same
    /// step was measured with and without it.
    pub adapter_overhead: Vec<AdapterOverhead>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AdapterOverhead {
    pub format: String,
    pub step: String,
    pub context: usize,
    /// `ms with / ms without − 1`.
    pub fraction: f64,
    pub emulated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

/// Pairs every step measured with the adapter with the same step measured without it.
fn adapter_overhead(rows: &[Row]) -> Vec<AdapterOverhead> {
    rows.iter()
        .filter(|r| r.adapter)
        .filter_map(|w| {
            rows.iter()
                .find(|o| {
                    !o.adapter
                        && o.format == w.format
                        && o.step == w.step
                        && o.context == w.context
                        && o.tokens == w.tokens
                })
                .map(|o| AdapterOverhead {
                    format: w.format.clone(),
                    step: w.step.clone(),
                    context: w.context,
                    fraction: w.ms / o.ms - 1.0,
                    emulated: w.emulated,
                    note: w.note,
                })
        })
        .collect()
}

#[derive(Clone, Debug, Serialize)]
pub struct VendorRate {
    pub library: String,
    pub tflop_s: f64,
}

/// Per weight format and adapter choice: setup, the image path, and time to first token.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub label: String,
    pub setup_s: f64,
    /// Image → visual prompts → prompt K/V (adapter runs only).
    pub vision_ms: Option<f64>,
    /// Image path plus prefill of the first prefill length.
    pub time_to_first_token_ms: f64,
    pub emulated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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

fn progress(msg: &str) {
    eprintln!("lav2 bench: {msg}");
}

/// Best of five timed batches of the vendor library's product, as a rate.
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

pub fn run(opts: &BenchOptions) -> Result<Report> {
    if opts.repeats == 0 || opts.decode_tokens == 0 || opts.batch == 0 {
        bail!("--repeats, --decode-tokens and --batch must be positive");
    }
    if opts.prefill_lens.contains(&0) || opts.decode_contexts.contains(&0) {
        bail!("--prefill and --contexts lengths must be positive");
    }
    let mut probe = backend::open(opts.device)?;
    probe.set_kernel_variants(&opts.kernels)?;
    let on_gpu = probe.act_bytes() == 2;
    let emulated = probe.is_emulated();
    let note = emulated.then_some(EMULATED_LABEL);
    let preset_name =
        opts.preset
            .clone()
            .unwrap_or_else(|| if on_gpu { "7b".into() } else { "tiny".into() });
    let max_ctx = opts
        .decode_contexts
        .iter()
        .chain(&opts.prefill_lens)
        .copied()
        .max()
        .unwrap_or(128);
    let preset: Preset = synthetic::preset(&preset_name, max_ctx + opts.decode_tokens + 1)?
        .with_shape(&opts.shape)?;
    let device = probe.describe();
    progress(&format!("device {device}"));
    if emulated {
        progress(&format!(
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
    let bw = probe.copy_bandwidth(copy_bytes)?;
    let c = &preset.config;
    let mm = probe.matmul_rate(512, c.dim, c.dim)?;
    let vendor = match vendor_rate(probe.as_mut(), 512, c.dim, c.dim) {
        Ok(v) => v,
        Err(e) => {
            progress(&format!("vendor matmul comparison skipped: {e:#}"));
            None
        }
    };
    progress(&format!(
        "copy bandwidth {:.1} GB/s, matmul {:.2} TFLOP/s{}{}",
        bw / 1e9,
        mm / 1e12,
        vendor.as_ref().map_or(String::new(), |v| format!(
            " ({} {:.2} TFLOP/s)",
            v.library, v.tflop_s
        )),
        note.map_or(String::new(), |n| format!(" ({n})"))
    ));
    drop(probe);

    let mut rows = Vec::new();
    let mut runs = Vec::new();
    let adapters: &[bool] = match opts.adapter {
        AdapterChoice::Both => &[false, true],
        AdapterChoice::With => &[true],
        AdapterChoice::Without => &[false],
    };
    for &format in &opts.formats {
        for &with_adapter in adapters {
            // Unquantized weights are f32 on the CPU reference and f16 on a GPU.
            let fname = match format {
                QuantFormat::None if !on_gpu => "f32",
                f => f.name(),
            };
            let label = format!("{fname}{}", if with_adapter { " + adapter" } else { "" });
            progress(&format!(
                "{label}: generating and uploading {} weights",
                preset.name
            ));
            let t0 = Instant::now();
            let model = synthetic::build(&preset, opts.seed, format, with_adapter);
            let mut backend = backend::open(opts.device)?;
            backend.set_kernel_variants(&opts.kernels)?;
            let act = backend.act_bytes();
            let batch = opts.batch;
            let mut s = Session::with_batch(model, backend, batch)?;
            let setup_s = t0.elapsed().as_secs_f64();
            progress(&format!("{label}: ready in {setup_s:.1} s"));
            let vocab = c.vocab_size as u32;
            // A different prompt per sequence, sequence after sequence.
            let tokens = |n: usize| -> Vec<u32> {
                (0..(batch * n) as u32)
                    .map(|i| 1 + (i * 7919) % (vocab - 1))
                    .collect()
            };

            let mut vision = None;
            if let Some(size) = s.image_size() {
                let pixels: Vec<f32> = (0..3 * size * size)
                    .map(|i| ((i % 255) as f32 / 127.0) - 1.0)
                    .collect();
                let mut times = Vec::new();
                for _ in 0..opts.repeats {
                    let t = Instant::now();
                    let vq = s.visual_query(&pixels)?;
                    s.set_visual_query(Some(&vq))?;
                    s.backend_mut().synchronize()?;
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                }
                vision = Some(median(times));
            }
            let mut first_prefill_ms = 0.0;
            for &len in &opts.prefill_lens {
                let ids = tokens(len);
                s.forward(&ids, 0, false)?; // plans and warms up this shape
                let mut times = Vec::new();
                for _ in 0..opts.repeats {
                    let t = Instant::now();
                    s.forward(&ids, 0, false)?;
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                }
                let ms = median(times);
                // Prefill reads the weights once for all tokens.
                let bytes = decode_bytes(s.model(), act, len, batch);
                let n = (batch * len) as f64;
                rows.push(Row {
                    format: fname.into(),
                    adapter: with_adapter,
                    step: "prefill".into(),
                    batch,
                    tokens: len,
                    context: len,
                    ms,
                    tokens_per_s: n / (ms / 1e3),
                    bytes_per_token: bytes / n,
                    roofline_fraction: bytes / bw / (ms / 1e3),
                    emulated,
                    note,
                });
                if len == opts.prefill_lens[0] {
                    first_prefill_ms = ms;
                }
            }
            for &ctx in &opts.decode_contexts {
                s.forward(&tokens(ctx), 0, false)?;
                let mut times = Vec::new();
                for r in 0..opts.repeats {
                    let t = Instant::now();
                    for i in 0..opts.decode_tokens {
                        let step: Vec<u32> = (0..batch as u32)
                            .map(|b| 1 + (i as u32 * 31 + r as u32 + b * 7) % (vocab - 1))
                            .collect();
                        s.forward(&step, ctx + i, false)?;
                    }
                    times.push(t.elapsed().as_secs_f64() * 1e3 / opts.decode_tokens as f64);
                }
                let ms = median(times);
                let bytes = decode_bytes(s.model(), act, ctx + opts.decode_tokens / 2, batch);
                rows.push(Row {
                    format: fname.into(),
                    adapter: with_adapter,
                    step: "decode".into(),
                    batch,
                    tokens: 1,
                    context: ctx,
                    ms,
                    tokens_per_s: batch as f64 * 1e3 / ms,
                    bytes_per_token: bytes / batch as f64,
                    roofline_fraction: bytes / bw / (ms / 1e3),
                    emulated,
                    note,
                });
            }
            runs.push(RunSummary {
                label,
                setup_s,
                vision_ms: vision,
                time_to_first_token_ms: vision.unwrap_or(0.0) + first_prefill_ms,
                emulated,
                note,
            });
        }
    }
    Ok(Report {
        device,
        emulated,
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
        copy_bandwidth_gb_s: bw / 1e9,
        matmul_tflop_s: mm / 1e12,
        vendor_matmul: vendor,
        adapter_overhead: adapter_overhead(&rows),
        rows,
        runs,
    })
}

impl Report {
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
        s += &format!("| weights | adapter | step | batch | tokens | context | ms | tokens/s | MB/token | % of roofline |{head}\n");
        s += &format!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|{rule}\n");
        for r in &self.rows {
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {:.3} | {:.1} | {:.2} | {:.1} |{}\n",
                r.format,
                if r.adapter { "yes" } else { "no" },
                r.step,
                r.batch,
                r.tokens,
                r.context,
                r.ms,
                r.tokens_per_s,
                r.bytes_per_token / 1e6,
                100.0 * r.roofline_fraction,
                note(r.note)
            );
        }
        if !self.adapter_overhead.is_empty() {
            s += &format!(
                "\n| weights | step | context | adapter adds |{head}\n|---|---|---:|---:|{rule}\n"
            );
            for o in &self.adapter_overhead {
                s += &format!(
                    "| {} | {} | {} | {:+.1} % |{}\n",
                    o.format,
                    o.step,
                    o.context,
                    100.0 * o.fraction,
                    note(o.note)
                );
            }
        }
        s += &format!("\n| run | setup (s) | image → visual prompts (ms) | time to first token (ms) |{head}\n|---|---:|---:|---:|{rule}\n");
        for r in &self.runs {
            let vision = r.vision_ms.map_or("–".to_string(), |v| format!("{v:.2}"));
            s += &format!(
                "| {} | {:.1} | {vision} | {:.2} |{}\n",
                r.label,
                r.setup_s,
                r.time_to_first_token_ms,
                note(r.note)
            );
        }
        s += "\nRoofline: the bytes a step must move (every weight once in its stored format, the KV \
              cache up to the context of every sequence, the prompt K/V) divided by the copy \
              bandwidth; the fraction is that ideal time over the measured time. `ms` is one step of \
              the whole batch; tokens/s counts the tokens of every sequence.\n";
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
            tokens_per_s: 1e3 / ms,
            bytes_per_token: 1e6,
            roofline_fraction: 0.5,
            emulated,
            note,
        };
        let rows = vec![row(false, 2.0), row(true, 2.5)];
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
            adapter_overhead: adapter_overhead(&rows),
            rows,
            runs: vec![RunSummary {
                label: "int4 + adapter".into(),
                setup_s: 1.0,
                vision_ms: Some(3.0),
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
}
