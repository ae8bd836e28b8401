//! Kernel variants side by side at LLaMA-7B shapes, through the same backend interface the
//! model uses: each variant is a one- or two-op graph. Runs on the CPU reference everywhere
//! and on CUDA when a GPU is present (`LAV2_BENCH_DEVICE=cpu|cuda|auto`, default auto).
//! Throughput is the bytes each variant must move, so criterion prints GB/s beside the time;
//! the copy bandwidth of the same device is measured first and printed for the ratio. Variants
//! are either other graphs (unfused ops) or other kernels for the same graph (CUDA's kernel
//! variants, e.g. `rmsnorm=naive`), and cuBLAS for the products.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lav2::backend::program::Program;
use lav2::backend::{self, Backend, DeviceChoice};
use lav2::generate::Rng;
use lav2::graph::{Elem, Graph, Op, PromptKv, QuantRef, StateDesc};
use lav2::quant::{quantize, QuantFormat};
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
        Case { backend, program }
    }

    fn time(&mut self, iters: u64) -> Duration {
        self.program.run(self.backend.as_mut()).unwrap();
        self.backend.synchronize().unwrap();
        let t = Instant::now();
        for _ in 0..iters {
            self.program.run(self.backend.as_mut()).unwrap();
        }
        self.backend.synchronize().unwrap();
        t.elapsed()
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

fn bench_copy_bandwidth(c: &mut Criterion) {
    let mut b = device();
    let bw = b.copy_bandwidth(1 << 28).unwrap();
    eprintln!(
        "copy bandwidth on {}: {:.1} GB/s (read + write); compare each variant's GB/s to it",
        b.describe(),
        bw / 1e9
    );
    let _ = c;
}

fn rmsnorm(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    let mut group = c.benchmark_group("rmsnorm_7b");
    for rows in [1usize, 128] {
        let n = rows * DIM;
        // Fused: read x and residual, write residual and y. Unfused adds a pass over both.
        group.throughput(Throughput::Bytes(4 * n as u64 * act_bytes()));
        for (label, fused, kernels) in variants(&[
            ("fused", true, ""),
            ("add_then_norm", false, ""),
            ("naive_kernel", true, "rmsnorm=naive"),
        ]) {
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
            group.bench_function(format!("{label}/rows{rows}"), |b| {
                b.iter_custom(|iters| case.time(iters))
            });
        }
    }
    group.finish();
}

fn gemv(c: &mut Criterion) {
    let mut rng = Rng::new(2);
    let mut group = c.benchmark_group("gemv_7b");
    for (out_f, in_f) in [(DIM, DIM), (FFN, DIM)] {
        let w = random(&mut rng, out_f * in_f, 0.02);
        for format in [
            QuantFormat::None,
            QuantFormat::Int8,
            QuantFormat::Int4 { zero_point: false },
        ] {
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
            group.throughput(Throughput::Bytes(bytes as u64));
            g.push(Op::Linear {
                x,
                w: wid,
                quant,
                bias: None,
                out,
            });
            g.mark_output(out);
            let mut case = Case::new(g, weights, vec![], &[("x", random(&mut rng, in_f, 1.0))]);
            group.bench_function(format!("{}/{out_f}x{in_f}", format.name()), |b| {
                b.iter_custom(|iters| case.time(iters))
            });
        }
        group.throughput(Throughput::Bytes((out_f * in_f) as u64 * act_bytes()));
        vendor_variant(&mut group, 1, in_f, out_f);
    }
    group.finish();
}

/// The vendor library's product (cuBLAS on CUDA) as one more variant of `group`, where the
/// device has one; skipped with the reason where it cannot be opened.
fn vendor_variant(
    group: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>,
    m: usize,
    k: usize,
    n: usize,
) {
    let mut b = device();
    match b.vendor_matmul_time(m, k, n, 1) {
        Ok(Some((name, _))) => {
            let label = format!("{}_f16/{n}x{k}", name.to_lowercase());
            group.bench_function(label, |bench| {
                bench.iter_custom(|iters| {
                    b.vendor_matmul_time(m, k, n, iters)
                        .expect("timed once already")
                        .expect("the same backend")
                        .1
                })
            });
        }
        Ok(None) => {}
        Err(e) => eprintln!("vendor comparison skipped: {e:#}"),
    }
}

/// Prefill-sized products (512 tokens; 64 on the CPU reference, which would take seconds an
/// iteration) on tensor cores: ours against the vendor library, as FLOP/s (criterion's
/// elements are multiply-adds × 2).
fn gemm(c: &mut Criterion) {
    let mut rng = Rng::new(4);
    let m = if act_bytes() == 2 { 512 } else { 64 };
    let mut group = c.benchmark_group(format!("gemm_7b_{m}_tokens"));
    for (out_f, in_f) in [(DIM, DIM), (FFN, DIM)] {
        group.throughput(Throughput::Elements(2 * (m * in_f * out_f) as u64));
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
        group.bench_function(format!("lav2_f16/{out_f}x{in_f}"), |b| {
            b.iter_custom(|iters| case.time(iters))
        });
        vendor_variant(&mut group, m, in_f, out_f);
    }
    group.finish();
}

/// Decode attention at context 2048: the fused kernel (causal + gated prompt in one pass) vs
/// plain causal attention followed by a separate pass over the prompt.
fn adapter_attention(c: &mut Criterion) {
    let mut rng = Rng::new(3);
    let mut group = c.benchmark_group("adapter_attention_decode_7b");
    let ctx = 2048;
    let kv = ctx * HEADS * HEAD_DIM;
    group.throughput(Throughput::Bytes(
        2 * (kv + PROMPT * HEADS * HEAD_DIM) as u64 * act_bytes(),
    ));
    for (label, fused, kernels) in variants(&[
        ("fused", true, ""),
        ("causal_then_prompt_pass", false, ""),
        ("unfused_kernels", true, "attention=unfused"),
    ]) {
        let states = vec![
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
        ];
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
        group.bench_function(label, |b| b.iter_custom(|iters| case.time(iters)));
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = kernels;
    config = config();
    targets = bench_copy_bandwidth, rmsnorm, gemv, gemm, adapter_attention
}
criterion_main!(kernels);
