//! End-to-end decode step of a synthetic LLaMA-Adapter V2 (tiny on the CPU, LLaMA-7B shapes
//! on a GPU) per weight format, for one sequence and a batch of 8. Each case prints the median
//! step time over `LAV2_BENCH_SAMPLES` steps (default 20) with the fastest and slowest, and the
//! bytes a step must read over the median time: against the copy bandwidth printed first, the
//! fraction of the roofline.
//!
//! Unlike the kernel benches, no cache is flushed between steps: consecutive decode steps are
//! what a real run does, so the cache state one step leaves the next is the real one (the 7B
//! weights are far larger than any L2; the tiny model's fit in the CPU's caches in use too).
//! `cargo bench --bench decode -- int4` runs the cases whose name contains `int4`.

use std::time::Instant;

use lav2::backend::{self, DeviceChoice};
use lav2::bench::{case_line, decode_bytes, Stats, Work};
use lav2::model::synthetic;
use lav2::quant::QuantFormat;
use lav2::session::Session;

const CONTEXT: usize = 128;

fn choice() -> DeviceChoice {
    match std::env::var("LAV2_BENCH_DEVICE").as_deref() {
        Ok("cpu") => DeviceChoice::Cpu,
        Ok("cuda") => DeviceChoice::Cuda,
        _ => DeviceChoice::Auto,
    }
}

fn samples() -> usize {
    std::env::var("LAV2_BENCH_SAMPLES")
        .ok()
        .map(|v| v.parse().expect("LAV2_BENCH_SAMPLES: a positive count"))
        .unwrap_or(20usize)
        .max(1)
}

/// The median and spread of `samples` decode steps of `batch` sequences at a fixed context.
fn time_steps(s: &mut Session, batch: usize, samples: usize) -> Stats {
    let times: Vec<f64> = (0..samples)
        .map(|i| {
            let step: Vec<u32> = (0..batch as u32)
                .map(|j| 1 + (i as u32 + j) % 100)
                .collect();
            let t = Instant::now();
            // Rewriting the same position keeps the context fixed across samples.
            s.forward(&step, CONTEXT, false).unwrap();
            s.backend_mut().synchronize().unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    Stats::of(&times)
}

fn main() {
    // `cargo bench` adds `--bench`; the first other argument is the filter.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let mut probe = backend::open(choice()).unwrap();
    let on_gpu = probe.act_bytes() == 2;
    let emulated = probe.is_emulated();
    let bw = probe
        .copy_bandwidth(if on_gpu { 1 << 30 } else { 1 << 27 })
        .unwrap();
    println!(
        "copy bandwidth on {}: {:.1} GB/s (read + write; the backend's best)",
        probe.describe(),
        bw / 1e9
    );
    drop(probe);
    let preset = synthetic::preset(if on_gpu { "7b" } else { "tiny" }, CONTEXT + 64).unwrap();
    // One sequence (the latency case the roofline targets are for) and a batch of 8 (throughput:
    // the weights are read once for 8 tokens, so the bytes count them once).
    for batch in [1usize, 8] {
        for format in [
            QuantFormat::None,
            QuantFormat::Int8,
            QuantFormat::Int4 { zero_point: false },
        ] {
            let name = format!(
                "decode_{}_ctx{CONTEXT}_batch{batch}/{}",
                preset.name,
                format.name()
            );
            if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
                continue;
            }
            let model = synthetic::build(&preset, 0, format, true);
            let backend = backend::open(choice()).unwrap();
            let act = backend.act_bytes();
            let mut s = Session::with_batch(model, backend, batch).unwrap();
            let prompt: Vec<u32> = (0..(batch * CONTEXT) as u32)
                .map(|i| 1 + i % 1000)
                .collect();
            s.forward(&prompt, 0, false).unwrap();
            // One step outside the timing: the decode shape's plan and first launches.
            time_steps(&mut s, batch, 1);
            let bytes = decode_bytes(s.model(), act, CONTEXT, batch);
            let ms = time_steps(&mut s, batch, samples());
            println!(
                "{}",
                case_line(&name, &ms, "steps", Work::Bytes(bytes), emulated)
            );
        }
    }
}
