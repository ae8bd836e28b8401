//! End-to-end decode step of a synthetic LLaMA-Adapter V2 (tiny on the CPU, LLaMA-7B shapes
//! on a GPU) per weight format, for one sequence and a batch of 8, with the bytes a step must
//! read as throughput: criterion's GB/s against the copy bandwidth printed first is the
//! fraction of the roofline.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lav2::backend::{self, DeviceChoice};
use lav2::model::synthetic;
use lav2::quant::QuantFormat;
use lav2::Session;

const CONTEXT: usize = 128;

fn choice() -> DeviceChoice {
    match std::env::var("LAV2_BENCH_DEVICE").as_deref() {
        Ok("cpu") => DeviceChoice::Cpu,
        Ok("cuda") => DeviceChoice::Cuda,
        _ => DeviceChoice::Auto,
    }
}

fn decode(c: &mut Criterion) {
    let mut probe = backend::open(choice()).unwrap();
    let on_gpu = probe.act_bytes() == 2;
    let bw = probe
        .copy_bandwidth(if on_gpu { 1 << 30 } else { 1 << 27 })
        .unwrap();
    eprintln!(
        "copy bandwidth on {}: {:.1} GB/s",
        probe.describe(),
        bw / 1e9
    );
    drop(probe);
    let preset = synthetic::preset(if on_gpu { "7b" } else { "tiny" }, CONTEXT + 64).unwrap();
    // One sequence (the latency case the roofline targets are for) and a batch of 8 (throughput:
    // the weights are read once for 8 tokens, so GB/s counts them once).
    for batch in [1usize, 8] {
        let mut group =
            c.benchmark_group(format!("decode_{}_ctx{CONTEXT}_batch{batch}", preset.name));
        for format in [
            QuantFormat::None,
            QuantFormat::Int8,
            QuantFormat::Int4 { zero_point: false },
        ] {
            let model = synthetic::build(&preset, 0, format, true);
            let backend = backend::open(choice()).unwrap();
            let act = backend.act_bytes();
            let mut s = Session::with_batch(model, backend, batch).unwrap();
            let prompt: Vec<u32> = (0..(batch * CONTEXT) as u32)
                .map(|i| 1 + i % 1000)
                .collect();
            s.forward(&prompt, 0, false).unwrap();
            group.throughput(Throughput::Bytes(lav2::bench::decode_bytes(
                s.model(),
                act,
                CONTEXT,
                batch,
            ) as u64));
            group.bench_function(format.name(), |b| {
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    for i in 0..iters {
                        let step: Vec<u32> = (0..batch as u32)
                            .map(|j| 1 + (i as u32 + j) % 100)
                            .collect();
                        // Rewriting the same position keeps the context fixed across iterations.
                        s.forward(&step, CONTEXT, false).unwrap();
                    }
                    t.elapsed()
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    targets = decode
}
criterion_main!(benches);
