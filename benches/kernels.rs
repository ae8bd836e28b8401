//! Every op of the registry, every case and every kernel variant, timed through the same backend
//! interface the model uses (llm.c's `dev/cuda/<op>.cu` harness, over `ops::REGISTRY`): on CUDA
//! when a GPU is present, else the CPU reference (`LAV2_BENCH_DEVICE=cpu|cuda|auto`).
//!
//! Each sample is one cold run: the device's last-level cache is flushed first
//! (`lav2::bench::CacheFlush`, twice the L2), because inside a model the other layers' weights
//! have pushed an op's operands out. Each case prints the median over `LAV2_BENCH_SAMPLES`
//! samples (default 15) with the fastest and slowest, the bytes it must move per second at the
//! median (`Case::bytes_moved`) and that as a percentage of the copy bandwidth measured just
//! before in the same run. A sample is timed on the host around one run and a synchronize, so an
//! op of a few microseconds includes the launch latency. Linear cases add the vendor library's
//! product (cuBLAS) at the same shape, timed the same way. `cargo bench --bench kernels -- gemv`
//! runs the cases whose name contains `gemv`. The case lists are the registry's GPU shapes (7B
//! widths) on a GPU or the CPU, and its emulator shapes on the PTX emulator, whose lines carry
//! "emulated: not a timing".

use lav2::backend::program::Program;
use lav2::backend::{self, Backend, DeviceChoice};
use lav2::bench::{case_line, CacheFlush, Stats, Work};
use lav2::graph::Op;
use lav2::ops::case::Case;
use lav2::ops::{Sizes, REGISTRY};
use lav2::rng::Rng;

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

/// Samples per case, the name filter from the command line, and the device's labelling.
struct Harness {
    samples: usize,
    filter: Option<String>,
    emulated: bool,
    on_gpu: bool,
    /// Copy bandwidth in bytes/s, measured at the start of this run.
    copy_bandwidth: f64,
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
        let mut b = device();
        let emulated = b.is_emulated();
        let copy_bytes = if emulated { 1 << 24 } else { 1 << 28 };
        let copy_bandwidth = b.copy_bandwidth(copy_bytes).expect("copy bandwidth");
        let flush = CacheFlush::new(b.as_mut()).expect("cache flush");
        println!(
            "{}: copy bandwidth {:.1} GB/s (read + write, best of 5), cache flush {} MiB before \
             every sample{}",
            b.describe(),
            copy_bandwidth / 1e9,
            flush.bytes >> 20,
            if emulated {
                format!(" [{}]", lav2::bench::EMULATED_LABEL)
            } else {
                String::new()
            }
        );
        Harness {
            samples,
            filter,
            emulated,
            on_gpu: b.act_bytes() == 2,
            copy_bandwidth,
        }
    }

    fn wants(&self, name: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| name.contains(f.as_str()))
    }

    /// Takes the samples of one case and prints its line with the share of the copy bandwidth.
    fn report(&self, name: &str, work: Work, mut cold_ms: impl FnMut() -> f64) {
        let times: Vec<f64> = (0..self.samples).map(|_| cold_ms()).collect();
        let stats = Stats::of(&times);
        let share = match work {
            Work::Bytes(b) => format!(
                "  {:.0} % of copy",
                100.0 * b / (stats.median / 1e3) / self.copy_bandwidth
            ),
            Work::Flops(_) => String::new(),
        };
        let line = case_line(name, &stats, "cold runs", work, self.emulated);
        println!("{line}{share}");
    }
}

/// Times one registry case with the kernel variants `kernels` ("" = the defaults).
fn time_case(h: &Harness, name: &str, c: &Case, kernels: &str) {
    let mut b = device();
    b.set_kernel_variants(kernels).unwrap();
    let p = Program::for_case(b.as_mut(), c).unwrap();
    let flush = CacheFlush::new(b.as_mut()).unwrap();
    // One run outside the timing: module loads and first-touch page faults.
    p.run(b.as_mut()).unwrap();
    b.synchronize().unwrap();
    h.report(name, Work::Bytes(c.bytes_moved() as f64), || {
        flush.time_cold_ms(b.as_mut(), |b| p.run(b)).unwrap()
    });
}

/// The vendor library's product at a linear case's shape, timed cold like ours.
fn time_vendor(h: &Harness, name: &str, c: &Case) {
    let Some(Op::Linear { x, w, .. }) = c.graph.ops.first() else {
        return;
    };
    let (m, k) = (c.graph.desc(*x).shape[0], c.graph.desc(*x).shape[1]);
    let n = c.graph.desc(*w).shape[0];
    let mut b = device();
    match b.vendor_matmul_time(m, k, n, 1) {
        Ok(Some((library, _))) => {
            let flush = CacheFlush::new(b.as_mut()).unwrap();
            let work = Work::Flops(2.0 * (m * k * n) as f64);
            h.report(&format!("{name} [{library}]"), work, || {
                flush.run(b.as_mut()).unwrap();
                let (_, t) = b.vendor_matmul_time(m, k, n, 1).unwrap().unwrap();
                t.as_secs_f64() * 1e3
            });
        }
        Ok(None) => {}
        Err(e) => eprintln!("vendor comparison skipped: {e:#}"),
    }
}

fn main() {
    let h = Harness::from_env();
    let sizes = if h.emulated {
        Sizes::Emulator
    } else {
        Sizes::Gpu
    };
    let mut rng = Rng::new(5);
    for entry in REGISTRY {
        for c in (entry.cases)(&mut rng, sizes) {
            let default = if h.on_gpu {
                entry.variants.first().map_or("", |v| v.name)
            } else {
                ""
            };
            let mut specs = vec![(String::new(), default)];
            // Kernel variants are a CUDA option; the CPU reference has one of each op.
            if h.on_gpu {
                specs.extend(
                    entry
                        .variants
                        .iter()
                        .skip(1)
                        .map(|v| (format!("{}={}", entry.name, v.name), v.name)),
                );
            }
            for (spec, variant) in &specs {
                let name = if variant.is_empty() {
                    c.name.clone()
                } else {
                    format!("{} [{variant}]", c.name)
                };
                if h.wants(&name) {
                    time_case(&h, &name, &c, spec);
                }
            }
            if entry.name == "linear" && h.on_gpu && h.wants(&c.name) {
                time_vendor(&h, &c.name, &c);
            }
        }
    }
}
