//! The device's own speeds: a device-to-device copy, our dense matmul kernel and cuBLAS's,
//! each the best of a few timed runs.

use std::time::{Duration, Instant};

use anyhow::Result;
use cudarc::driver::{result, sys};

use super::lower::Runnable;
use super::{alloc, alloc_zeroed, cublas, device, Buf, CudaBackend};
use crate::backend::Measure;
use crate::ops::linear as matmul;
use crate::ops::lowering::{check_signature, dim, Arg, Launch, OpStep, Step};

impl Measure for CudaBackend {
    fn copy_bandwidth(&mut self, bytes: usize) -> Result<f64> {
        self.dev.ctx.bind_to_thread()?;
        let bytes = bytes.max(1 << 20).div_ceil(256) * 256;
        self.ensure_fits(0, 0, 2 * bytes)?;
        let src = alloc_zeroed(&self.dev.stream, bytes)?;
        let dst = alloc(&self.dev.stream, bytes)?;
        let cu = self.dev.stream.cu_stream();
        // SAFETY (both closures): the ranges are the two allocations.
        let copy = || -> Result<()> {
            unsafe { result::memcpy_dtod_async(dst.ptr, src.ptr, bytes, cu) }?;
            Ok(())
        };
        copy()?;
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            best = best.min(self.time_ms(&copy)?);
        }
        self.dev.stream.synchronize()?;
        Ok(2.0 * bytes as f64 / (best.max(1e-6) * 1e-3))
    }

    fn matmul_rate(&mut self, m: usize, k: usize, n: usize) -> Result<f64> {
        let (x, w, y) = self.matmul_operands(m, k, n)?;
        let shape = matmul::pick(m, n, self.dev.sms);
        let name = matmul::dense_kernel(shape, false);
        let (grid, block) = matmul::grid_block(shape, false, m, n);
        let func = device::function(&self.dev.functions, name)?;
        let args = vec![
            Arg::Ptr(x.ptr),
            Arg::Ptr(w.ptr),
            Arg::Ptr(0), // no bias
            Arg::Ptr(y.ptr),
            Arg::I32(dim(m, "m")?),
            Arg::I32(dim(k, "k")?),
            Arg::I32(dim(n, "n")?),
        ];
        check_signature(name, &args)?;
        let step = Runnable {
            step: OpStep {
                op_index: 0,
                op_name: "linear",
                step: Step::Kernel(Launch {
                    kernel: name,
                    grid,
                    block,
                    smem: 0,
                    args,
                }),
            },
            func: Some(func),
        };
        let stream = self.dev.stream.clone();
        let work = || step.enqueue(&stream);
        work()?;
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            best = best.min(self.time_ms(&work)?);
        }
        self.dev.stream.synchronize()?;
        Ok(2.0 * (m * k * n) as f64 / (best.max(1e-6) * 1e-3))
    }

    fn cache_bytes(&self) -> Option<usize> {
        self.dev
            .ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)
            .ok()
            .and_then(|b| usize::try_from(b).ok())
            .filter(|&b| b > 0)
    }

    fn vendor_matmul_time(
        &mut self,
        m: usize,
        k: usize,
        n: usize,
        iters: u64,
    ) -> Result<Option<(&'static str, Duration)>> {
        let fresh = !matches!(&self.vendor_operands, Some((shape, _)) if *shape == (m, k, n));
        if fresh {
            self.vendor_operands = None; // freed before the new ones are counted against memory
            let operands = self.matmul_operands(m, k, n)?;
            self.vendor_operands = Some(((m, k, n), operands));
        }
        if self.cublas.is_none() {
            self.cublas = Some(cublas::Cublas::new(&self.dev.stream)?);
        }
        let (_, (x, w, y)) = self.vendor_operands.as_ref().expect("set above");
        let blas = self.cublas.as_ref().expect("opened above");
        let (mi, ki, ni) = (dim(m, "m")?, dim(k, "k")?, dim(n, "n")?);
        // SAFETY: the three buffers hold m·k, n·k and m·n halves.
        let run = || unsafe { blas.matmul_f16(x.ptr, w.ptr, y.ptr, mi, ki, ni) };
        if fresh {
            // cuBLAS picks its algorithm and loads its kernels on a shape's first product.
            run()?;
        }
        self.dev.stream.synchronize()?;
        let t = Instant::now();
        for _ in 0..iters {
            run()?;
        }
        self.dev.stream.synchronize()?;
        Ok(Some(("cuBLAS", t.elapsed())))
    }
}

impl CudaBackend {
    /// Random f16 operands `x [m, k]`, `w [n, k]` and an output `y [m, n]` for timing products.
    fn matmul_operands(&mut self, m: usize, k: usize, n: usize) -> Result<(Buf, Buf, Buf)> {
        self.dev.ctx.bind_to_thread()?;
        let (xb, wb, yb) = (m * k * 2, n * k * 2, m * n * 2);
        self.ensure_fits(0, 0, xb + wb + yb)?;
        let x = alloc(&self.dev.stream, xb)?;
        let w = alloc(&self.dev.stream, wb)?;
        let y = alloc(&self.dev.stream, yb)?;
        let amp = (1.0 / k.max(1) as f32).sqrt();
        for (b, count, seed) in [(&x, m * k, 1u64), (&w, n * k, 2u64)] {
            self.launch_now(
                "synthetic_uniform_f16",
                count,
                vec![
                    Arg::Ptr(b.ptr),
                    Arg::I64(count as i64),
                    Arg::U64(seed),
                    Arg::F32(amp),
                ],
            )?;
        }
        Ok((x, w, y))
    }

    /// Times `work` (enqueued on the stream) in milliseconds: CUDA events, or a host timer
    /// around a synchronized stream on drivers older than 12.8 (no cuEventElapsedTime_v2).
    fn time_ms(&self, work: &dyn Fn() -> Result<()>) -> Result<f64> {
        if self.dev.driver_version >= 12080 {
            let start = self
                .dev
                .ctx
                .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?;
            let end = self
                .dev
                .ctx
                .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?;
            start.record(&self.dev.stream)?;
            work()?;
            end.record(&self.dev.stream)?;
            end.synchronize()?;
            Ok(start.elapsed_ms(&end)? as f64)
        } else {
            self.dev.stream.synchronize()?;
            let t0 = Instant::now();
            work()?;
            self.dev.stream.synchronize()?;
            Ok(t0.elapsed().as_secs_f64() * 1e3)
        }
    }
}
