//! The CPU's own speeds: a threaded copy and the reference matmul, timed now.

use anyhow::Result;

use super::{matmul, CpuBackend};
use crate::backend::Measure;

impl Measure for CpuBackend {
    fn copy_bandwidth(&mut self, bytes: usize) -> Result<f64> {
        let n = bytes / 4;
        let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let mut dst = vec![0f32; n];
        let threads = std::thread::available_parallelism()
            .map(|t| t.get())
            .unwrap_or(1);
        let chunk = n.div_ceil(threads);
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t0 = std::time::Instant::now();
            std::thread::scope(|s| {
                for (d, c) in dst.chunks_mut(chunk).zip(src.chunks(chunk)) {
                    s.spawn(move || d.copy_from_slice(c));
                }
            });
            best = best.min(t0.elapsed().as_secs_f64());
        }
        std::hint::black_box(&dst);
        Ok(2.0 * (n * 4) as f64 / best)
    }

    fn matmul_rate(&mut self, m: usize, k: usize, n: usize) -> Result<f64> {
        let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut out = vec![0f32; m * n];
        let args = matmul::LinearArgs {
            x: &x,
            w: matmul::Weights::Dense(&w),
            bias: None,
            rows: m,
            in_features: k,
            out_features: n,
        };
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t0 = std::time::Instant::now();
            matmul::linear(&args, &mut out);
            best = best.min(t0.elapsed().as_secs_f64());
        }
        std::hint::black_box(&out);
        Ok(2.0 * (m * k * n) as f64 / best)
    }
}
