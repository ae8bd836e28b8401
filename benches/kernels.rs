//! Kernel variants side by side at LLaMA-7B shapes, through the same backend interface the
//! model uses: each variant is a one- or two-op graph. Runs on the CPU reference everywhere
//! and on CUDA when a GPU is present (`LAV2_BENCH_DEVICE=cpu|cuda|auto`, default auto).
//!
//! Every sample is one cold run: the device's last-level cache is flushed first
//! (`lav2::bench::CacheFlush`, twice the L2), because inside a model the other layers' weights
//! have pushed a kernel's operands out, and a loop that reran one kernel on hot data would time
//! the cache instead (a 7B GEMV's 32 MiB of f16 fits in an H100's 50 MiB L2). Each case prints
//! the median over `LAV2_BENCH_SAMPLES` samples (default 15) with the fastest and slowest, and
//! the rate at the median: GB/s for what the variant must move (compare with the copy bandwidth
//! printed first) or TFLOP/s for the products. A sample is timed on the host around one run and
//! a synchronize, so a kernel of a few microseconds includes the launch latency.
//! `cargo bench --bench kernels -- gemv` runs the cases whose name contains `gemv`.
//! Variants are either other graphs (unfused ops) or other kernels for the same graph (CUDA's
//! kernel variants, e.g. `rmsnorm=naive`), and cuBLAS for the products.

use lav2::backend::program::Program;
use lav2::backend::{self, Backend, DeviceChoice};
use lav2::bench::{case_line, CacheFlush, Stats, Work};
use lav2::graph::{Elem, Graph, Op, PromptKv, QuantRef, StateDesc};
use lav2::quant::{quantize, QuantFormat};
use lav2::rng::Rng;
use lav2::tensor::HostTensor;

const DIM: usize = 4096;
const FFN: usize = 11008;
const HEADS: usize = 32;
const HEAD_DIM: usize = 128;
const PROMPT: usize = 10;

/// The backend every case runs on, resolved once (`auto`: CUDA if it opens, else the CPU).
fn device() -> Box<dyn Backend> {
    static CHOICE: std::sync::OnceLock<DeviceChoice> = std::sync::OnceLock::new();
    let choice = *CHOICE.get_or_init(|| match std::env::var("LAV2_BENCH_DEVICE").as_deref() {
        Ok("cpu") => DeviceChoice::Cpu,
        Ok("cuda") => DeviceChoice::Cuda,
        _ => match backend::open(DeviceChoice::Cuda) {
            Ok(_) => DeviceChoice::Cuda,
            Err(e) => {
                eprintln!("kernel benches on the CPU: {e:#}");
                DeviceChoice::Cpu
            }
        },
    });
    backend::open(choice).expect("a backend")
}

fn random(rng: &mut Rng, n: usize, amp: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.uniform() as f32 * 2.0 - 1.0) * amp)
        .collect()
}

/// A graph with its weights and states, ready to time on one backend.
struct Case {
    backend: Box<dyn Backend>,
    program: Program,
    flush: CacheFlush,
}

impl Case {
    fn new(
        graph: Graph,
        weights: Vec<HostTensor>,
        states: Vec<StateDesc>,
        inputs: &[(&str, Vec<f32>)],
    ) -> Case {
        Case::with_kernels(graph, weights, states, inputs, "")
    }

    /// A case whose graph the backend lowers with the kernel variants `kernels`.
    fn with_kernels(
        graph: Graph,
        weights: Vec<HostTensor>,
        states: Vec<StateDesc>,
        inputs: &[(&str, Vec<f32>)],
        kernels: &str,
    ) -> Case {
        let mut backend = device();
        backend.set_kernel_variants(kernels).unwrap();
        backend.load_weights(&weights).unwrap();
        backend.alloc_states(&states).unwrap();
        let flush = CacheFlush::new(backend.as_mut()).unwrap();
        let program = Program::new(backend.as_mut(), graph).unwrap();
        for (name, data) in inputs {
            if name == &"start_pos" {
                program
                    .set_i32(backend.as_mut(), name, &[data[0] as i32])
                    .unwrap();
            } else {
                program.set_f32(backend.as_mut(), name, data).unwrap();
            }
        }
        // One run outside the timing: plans, module loads and first-touch page faults.
        program.run(backend.as_mut()).unwrap();
        backend.synchronize().unwrap();
        Case {
            backend,
            program,
            flush,
        }
    }

    /// One run from a cold cache, in ms.
    fn cold_ms(&mut self) -> f64 {
        let program = &self.program;
        self.flush
            .time_cold_ms(self.backend.as_mut(), |b| program.run(b))
            .unwrap()
    }
}

/// The samples per case, the case filter from the command line, and the device's labelling.
struct Harness {
    samples: usize,
    /// Cases whose name contains it run; `None`: all.
    filter: Option<String>,
    emulated: bool,
}

impl Harness {
    fn from_env() -> Harness {
        let samples = std::env::var("LAV2_BENCH_SAMPLES")
            .ok()
            .map(|v| v.parse().expect("LAV2_BENCH_SAMPLES: a positive count"))
            .unwrap_or(15usize)
            .max(1);
        // `cargo bench` adds `--bench`; the first other argument is the filter.
        let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
        Harness {
            samples,
            filter,
            emulated: device().is_emulated(),
        }
    }

    fn wants(&self, name: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| name.contains(f.as_str()))
    }

    /// Takes the samples of one case and prints its line.
    fn report(&self, name: &str, work: Work, mut cold_ms: impl FnMut() -> f64) {
        let times: Vec<f64> = (0..self.samples).map(|_| cold_ms()).collect();
        let line = case_line(name, &Stats::of(&times), "cold runs", work, self.emulated);
        println!("{line}");
    }
}

/// The variants of a group that this device has: (label, fused graph, kernel variants); kernel
/// variants are a CUDA option, so the CPU reference runs only the graph-level ones.
fn variants(all: &[(&'static str, bool, &'static str)]) -> Vec<(&'static str, bool, &'static str)> {
    let on_gpu = act_bytes() == 2;
    all.iter()
        .copied()
        .filter(|v| on_gpu || v.2.is_empty())
        .collect()
}

fn act_bytes() -> u64 {
    device().act_bytes() as u64
}

fn print_copy_bandwidth(h: &Harness) {
    let mut b = device();
    let bw = b.copy_bandwidth(1 << 28).unwrap();
    let flush = CacheFlush::new(b.as_mut()).unwrap();
    let label = if h.emulated {
        format!(" [{}]", lav2::bench::EMULATED_LABEL)
    } else {
        String::new()
    };
    println!(
        "copy bandwidth on {}: {:.1} GB/s (read + write; the backend's best); compare each \
         variant's GB/s to it. Cache flush before every sample: {} MiB.{label}",
        b.describe(),
        bw / 1e9,
        flush.bytes >> 20
    );
}

fn rmsnorm(h: &Harness) {
    let mut rng = Rng::new(1);
    for rows in [1usize, 128] {
        let n = rows * DIM;
        // Fused: read x and residual, write residual and y. Unfused adds a pass over both.
        let work = Work::Bytes((4 * n as u64 * act_bytes()) as f64);
        for (label, fused, kernels) in variants(&[
            ("fused", true, ""),
            ("add_then_norm", false, ""),
            ("naive_kernel", true, "rmsnorm=naive"),
        ]) {
            let name = format!("rmsnorm_7b/{label}/rows{rows}");
            if !h.wants(&name) {
                continue;
            }
            let mut g = Graph::new("rmsnorm");
            let x = g.input("x", &[rows, DIM], Elem::Act);
            let res = g.input("residual", &[rows, DIM], Elem::Act);
            let w = g.weight("w", &[DIM], Elem::Act, 0);
            let out = g.activation("out", &[rows, DIM]);
            if fused {
                g.push(Op::RmsNorm {
                    x: Some(x),
                    residual: res,
                    weight: w,
                    out,
                    eps: 1e-5,
                });
            } else {
                let sum = g.activation("sum", &[rows, DIM]);
                g.push(Op::Add {
                    a: x,
                    b: res,
                    out: sum,
                });
                g.push(Op::RmsNorm {
                    x: None,
                    residual: sum,
                    weight: w,
                    out,
                    eps: 1e-5,
                });
            }
            g.mark_output(out);
            let weights = vec![HostTensor::from_f32(vec![DIM], random(&mut rng, DIM, 1.0))];
            let inputs = [
                ("x", random(&mut rng, n, 1.0)),
                ("residual", random(&mut rng, n, 1.0)),
            ];
            let mut case = Case::with_kernels(g, weights, vec![], &inputs, kernels);
            h.report(&name, work, || case.cold_ms());
        }
    }
}

fn gemv(h: &Harness) {
    let mut rng = Rng::new(2);
    for (out_f, in_f) in [(DIM, DIM), (FFN, DIM)] {
        let w = random(&mut rng, out_f * in_f, 0.02);
        for format in [
            QuantFormat::None,
            QuantFormat::Int8,
            QuantFormat::Int4 { zero_point: false },
        ] {
            let name = format!("gemv_7b/{}/{out_f}x{in_f}", format.name());
            if !h.wants(&name) {
                continue;
            }
            let mut g = Graph::new("gemv");
            let x = g.input("x", &[1, in_f], Elem::Act);
            let out = g.activation("y", &[1, out_f]);
            let (weights, wid, quant) = if format == QuantFormat::None {
                let t = HostTensor::from_f32(vec![out_f, in_f], w.clone());
                let id = g.weight("w", &[out_f, in_f], Elem::Act, 0);
                (vec![t], id, None)
            } else {
                let q = quantize(&w, out_f, in_f, format);
                let id = g.weight("w", &[out_f, in_f], Elem::Quant, 0);
                let scales = g.weight("w.scales", &q.scales.shape, Elem::Act, 1);
                (
                    vec![q.values, q.scales],
                    id,
                    Some(QuantRef {
                        format,
                        scales,
                        zeros: None,
                    }),
                )
            };
            let bytes: usize = weights
                .iter()
                .map(|t| {
                    t.numel()
                        * if matches!(t.dtype, lav2::tensor::DType::I8 | lav2::tensor::DType::U8) {
                            1
                        } else {
                            act_bytes() as usize
                        }
                })
                .sum();
            g.push(Op::Linear {
                x,
                w: wid,
                quant,
                bias: None,
                out,
            });
            g.mark_output(out);
            let mut case = Case::new(g, weights, vec![], &[("x", random(&mut rng, in_f, 1.0))]);
            h.report(&name, Work::Bytes(bytes as f64), || case.cold_ms());
        }
        let work = Work::Bytes(((out_f * in_f) as u64 * act_bytes()) as f64);
        vendor_variant(h, "gemv_7b", work, 1, in_f, out_f);
    }
}

/// The vendor library's product (cuBLAS on CUDA) as one more variant of `group`, where the
/// device has one, timed cold like ours; skipped with the reason where it cannot be opened.
fn vendor_variant(h: &Harness, group: &str, work: Work, m: usize, k: usize, n: usize) {
    let mut b = device();
    // The first call of a shape writes the operands and warms cuBLAS up; later ones only time.
    match b.vendor_matmul_time(m, k, n, 1) {
        Ok(Some((library, _))) => {
            let name = format!("{group}/{}_f16/{n}x{k}", library.to_lowercase());
            if !h.wants(&name) {
                return;
            }
            let flush = CacheFlush::new(b.as_mut()).unwrap();
            h.report(&name, work, || {
                flush.run(b.as_mut()).unwrap();
                let (_, t) = b
                    .vendor_matmul_time(m, k, n, 1)
                    .expect("timed once already")
                    .expect("the same backend");
                t.as_secs_f64() * 1e3
            });
        }
        Ok(None) => {}
        Err(e) => eprintln!("vendor comparison skipped: {e:#}"),
    }
}

/// Prefill-sized products (512 tokens; 64 on the CPU reference, which would take seconds an
/// iteration) on tensor cores: ours against the vendor library, as FLOP/s.
fn gemm(h: &Harness) {
    let mut rng = Rng::new(4);
    let m = if act_bytes() == 2 { 512 } else { 64 };
    let group = format!("gemm_7b_{m}_tokens");
    for (out_f, in_f) in [(DIM, DIM), (FFN, DIM)] {
        let work = Work::Flops(2.0 * (m * in_f * out_f) as f64);
        let name = format!("{group}/lav2_f16/{out_f}x{in_f}");
        if !h.wants(&name) {
            vendor_variant(h, &group, work, m, in_f, out_f);
            continue;
        }
        let mut g = Graph::new("gemm");
        let x = g.input("x", &[m, in_f], Elem::Act);
        let w = g.weight("w", &[out_f, in_f], Elem::Act, 0);
        let out = g.activation("y", &[m, out_f]);
        g.push(Op::Linear {
            x,
            w,
            quant: None,
            bias: None,
            out,
        });
        g.mark_output(out);
        let weights = vec![HostTensor::from_f32(
            vec![out_f, in_f],
            random(&mut rng, out_f * in_f, 0.02),
        )];
        let mut case = Case::new(
            g,
            weights,
            vec![],
            &[("x", random(&mut rng, m * in_f, 1.0))],
        );
        h.report(&name, work, || case.cold_ms());
        vendor_variant(h, &group, work, m, in_f, out_f);
    }
}

/// The KV cache (one row past `ctx`) and the prompt K/V of one 7B attention layer.
fn attention_states(ctx: usize) -> Vec<StateDesc> {
    vec![
        StateDesc {
            name: "k".into(),
            shape: vec![ctx + 1, HEADS, HEAD_DIM],
            elem: Elem::Act,
        },
        StateDesc {
            name: "v".into(),
            shape: vec![ctx + 1, HEADS, HEAD_DIM],
            elem: Elem::Act,
        },
        StateDesc {
            name: "pk".into(),
            shape: vec![PROMPT, HEADS, HEAD_DIM],
            elem: Elem::Act,
        },
        StateDesc {
            name: "pv".into(),
            shape: vec![PROMPT, HEADS, HEAD_DIM],
            elem: Elem::Act,
        },
    ]
}

/// Decode attention at context 2048: the fused kernel (causal + gated prompt in one pass) vs
/// plain causal attention followed by a separate pass over the prompt.
fn adapter_attention(h: &Harness) {
    let mut rng = Rng::new(3);
    let ctx = 2048;
    let kv = ctx * HEADS * HEAD_DIM;
    let work = Work::Bytes((2 * (kv + PROMPT * HEADS * HEAD_DIM) as u64 * act_bytes()) as f64);
    for (label, fused, kernels) in variants(&[
        ("fused", true, ""),
        ("causal_then_prompt_pass", false, ""),
        ("unfused_kernels", true, "attention=unfused"),
    ]) {
        let name = format!("adapter_attention_decode_7b/{label}");
        if !h.wants(&name) {
            continue;
        }
        let states = attention_states(ctx);
        let mut g = Graph::new("attention");
        let q = g.input("q", &[1, HEADS * HEAD_DIM], Elem::Act);
        let start = g.input("start_pos", &[1], Elem::I32);
        let (k, v) = (g.state(&states[0], 0), g.state(&states[1], 1));
        let (pk, pv) = (g.state(&states[2], 2), g.state(&states[3], 3));
        let gate = g.weight("gate", &[HEADS], Elem::F32, 0);
        let out = g.activation("out", &[1, HEADS * HEAD_DIM]);
        let args = |prompt, out| Op::AdapterAttention {
            q,
            k_cache: k,
            v_cache: v,
            prompt,
            start_pos: start,
            out,
            n_heads: HEADS,
            n_kv_heads: HEADS,
            head_dim: HEAD_DIM,
            batch: 1,
        };
        if fused {
            g.push(args(Some(PromptKv { k: pk, v: pv, gate }), out));
        } else {
            let causal = g.activation("causal", &[1, HEADS * HEAD_DIM]);
            g.push(args(None, causal));
            // The prompt pass alone: attention over the prompt rows as if they were a cache.
            let prompt_only = g.activation("prompt", &[1, HEADS * HEAD_DIM]);
            let zero = g.input("prompt_pos", &[1], Elem::I32);
            g.push(Op::AdapterAttention {
                q,
                k_cache: pk,
                v_cache: pv,
                prompt: None,
                start_pos: zero,
                out: prompt_only,
                n_heads: HEADS,
                n_kv_heads: HEADS,
                head_dim: HEAD_DIM,
                batch: 1,
            });
            g.push(Op::Add {
                a: causal,
                b: prompt_only,
                out,
            });
        }
        g.mark_output(out);
        let weights = vec![HostTensor::from_f32(vec![HEADS], vec![0.1; HEADS])];
        let mut case = Case::with_kernels(
            g,
            weights,
            states,
            &[
                ("q", random(&mut rng, HEADS * HEAD_DIM, 1.0)),
                ("start_pos", vec![ctx as f32]),
            ],
            kernels,
        );
        if !fused {
            case.program
                .set_i32(case.backend.as_mut(), "prompt_pos", &[(PROMPT - 1) as i32])
                .unwrap();
        }
        h.report(&name, work, || case.cold_ms());
    }
}

fn main() {
    let h = Harness::from_env();
    print_copy_bandwidth(&h);
    rmsnorm(&h);
    gemv(&h);
    gemm(&h);
    adapter_attention(&h);
}
