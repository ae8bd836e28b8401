//! The CUDA backend (cudarc, loaded dynamically so the binary runs without a driver).
//!
//! - Weights are uploaded once: f16 (f32/bf16 converted), quantized bytes as they are, and
//!   generated benchmark weights made on the device by `kernels/synthetic.cu` from their recipe.
//!   A weight a graph reads as `Elem::F32` (the per-head gates) also gets an exact f32 copy.
//! - States (KV cache, prompt K/V) are f16 and zeroed; each prepared program owns one arena
//!   (the plan's offsets at 2 bytes an activation), its input buffers and the decode attention
//!   scratch. Everything is allocated before any run: a run only enqueues kernels.
//! - Every op is lowered once, at prepare time, into launches with fixed addresses
//!   (`lower`); a program whose graph is marked `per_token` (decode) is captured as a CUDA
//!   graph on its second run and replayed afterwards (`LAV2_NO_CUDA_GRAPH=1` or [`CudaBackend::set_cuda_graphs`] turns that off).
//! - One stream, no event tracking: ordering is the stream's. `LAV2_CUDA_SYNC=1` synchronizes after
//!   every op so an asynchronous fault names the op that caused it.

mod cublas;
mod device;
mod lower;
mod measure;

pub use crate::ops::kernels;
pub use crate::ops::lowering::Variants;
pub use lower::{dry_lower, place, DryDevice, StateSlot, WeightSlot};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use cudarc::driver::{result, sys, CudaGraph, CudaSlice, CudaStream, DevicePtr};
use half::{bf16, f16};

use super::{
    beyond_f16, check_program, Backend, HostData, ProgramId, UploadProgress, UploadProgressFn,
    WeightOutOfRange,
};
use crate::graph::plan::Plan;
use crate::graph::{Elem, Graph, StateDesc, Storage, TensorDesc, TensorId};
use crate::notice::Notice;
use crate::ops::lowering::{
    dim, lower_program, scratch_bytes, stride_blocks, Arg, Check, DevElem, DeviceLimits, Launch,
    Lowering, Step, TensorLoc,
};
use crate::tensor::{shape_str, Bytes, DType, HostTensor, Synthetic};
use device::Device;
use lower::Runnable;

const GIB: f64 = (1u64 << 30) as f64;
/// The device name of the PTX emulator (`emu/`, run by `scripts/with-cuda-emu.sh`): a test tool
/// that executes our kernels on the CPU. `DeviceChoice::Auto` never picks it, and nothing it runs
/// is a timing.
pub const EMULATOR_NAME: &str = "cuda-emu (PTX emulator, not a GPU)";
/// Kept free beyond what we allocate: module code, graph executables, driver staging.
const RESERVE_BYTES: usize = 256 << 20;
/// f32 → f16 conversion staging for uploads (elements).
const STAGING_ELEMS: usize = 8 << 20;

/// One device allocation, freed (stream-ordered) when dropped.
struct Buf {
    _slice: CudaSlice<u8>,
    ptr: u64,
    bytes: usize,
}

fn alloc(stream: &std::sync::Arc<CudaStream>, bytes: usize) -> Result<Buf> {
    let len = bytes.max(1).div_ceil(256) * 256;
    // SAFETY: the memory is written (zeroed, uploaded or produced by a kernel) before it is read,
    // except arenas, whose contents are never read before an op writes them.
    let slice = unsafe { stream.alloc::<u8>(len) }.map_err(|e| {
        anyhow::Error::new(crate::limits::OutOfMemory(format!(
            "cudaMalloc of {:.3} GiB failed: {e}",
            len as f64 / GIB
        )))
    })?;
    let ptr = {
        let (p, _sync) = slice.device_ptr(stream);
        p
    };
    Ok(Buf {
        _slice: slice,
        ptr,
        bytes: len,
    })
}

fn alloc_zeroed(stream: &std::sync::Arc<CudaStream>, bytes: usize) -> Result<Buf> {
    let b = alloc(stream, bytes)?;
    // SAFETY: the range is the allocation.
    unsafe { result::memset_d8_async(b.ptr, 0, b.bytes, stream.cu_stream()) }?;
    Ok(b)
}

struct DevWeight {
    buf: Buf,
    elem: DevElem,
    numel: usize,
    host: HostTensor,
}

/// A captured CUDA graph, owned by one backend.
struct CapturedGraph(CudaGraph);

// SAFETY: a graph executable may be launched from any thread whose context is current; this one
// is launched only through `&mut CudaBackend` (never from two threads at once), after
// `bind_to_thread`, on the stream it was captured on.
unsafe impl Send for CapturedGraph {}

#[derive(Default)]
struct CaptureState {
    graph: Option<CapturedGraph>,
    failed: bool,
}

struct CudaProgram {
    graph: Graph,
    locs: Vec<Option<TensorLoc>>,
    steps: Vec<Runnable>,
    checks: Vec<Check>,
    host_i32: HashMap<TensorId, Vec<i32>>,
    arena: Option<Buf>,
    scratch: Option<Buf>,
    _inputs: Vec<Buf>,
    runs: usize,
    capture: CaptureState,
}

pub struct CudaBackend {
    programs: Vec<CudaProgram>,
    states: Vec<(Buf, DevElem)>,
    /// Shared by every backend made by [`Backend::share_weights`]; uploaded (and synchronized)
    /// before any is made, and read only afterwards.
    weights: Arc<Vec<DevWeight>>,
    weights_f32: HashMap<usize, Buf>,
    smem_set: HashMap<&'static str, usize>,
    bytes_weights: usize,
    bytes_states: usize,
    bytes_activations: usize,
    cuda_graphs: bool,
    sync_each_op: bool,
    /// Opened on first use by [`crate::backend::Measure::vendor_matmul_time`].
    cublas: Option<cublas::Cublas>,
    /// The last shape [`crate::backend::Measure::vendor_matmul_time`] timed and its operands, kept so a later
    /// call of that shape writes nothing before its timed products: a cache flush the caller
    /// ran just before (`bench::CacheFlush`) then still holds.
    vendor_operands: Option<VendorOperands>,
    /// Kernels for the ops that have several, for programs prepared from now on.
    variants: Variants,
    /// Fallbacks taken while running (a decode graph that could not be captured), until taken.
    notices: Vec<Notice>,
    upload_progress: Option<UploadProgressFn>,
    dev: Device,
}

/// A product's shape `(m, k, n)` and its operands `x`, `w`, `y`.
type VendorOperands = ((usize, usize, usize), (Buf, Buf, Buf));

impl Drop for CudaBackend {
    fn drop(&mut self) {
        // Let queued work finish before its buffers go back to the pool.
        let _ = self.dev.stream.synchronize();
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn gib(b: usize) -> String {
    format!("{:.2}", b as f64 / GIB)
}

impl CudaBackend {
    /// Where a program's tensor lives on the device, with its description.
    fn locate(&self, program: ProgramId, tensor: TensorId) -> Result<(TensorLoc, TensorDesc)> {
        check_program(self.programs.len(), program)?;
        self.dev.ctx.bind_to_thread()?;
        let p = &self.programs[program.0];
        let desc = p
            .graph
            .tensors
            .get(tensor.0)
            .ok_or_else(|| anyhow!("internal error: unknown tensor {tensor:?}"))?;
        let Some(loc) = p.locs[tensor.0] else {
            bail!("internal error: '{}' has no device location", desc.name);
        };
        Ok((loc, desc.clone()))
    }

    /// Copies `n` elements of `T` from `loc` to the host once the queued work is done.
    fn copy_back<T: Default + Clone + cudarc::driver::DeviceRepr>(
        &self,
        loc: TensorLoc,
        n: usize,
    ) -> Result<Vec<T>> {
        let mut v = vec![T::default(); n];
        // SAFETY: n elements of the location's type fit it (checked at prepare time).
        unsafe { result::memcpy_dtoh_async(&mut v, loc.ptr, self.dev.stream.cu_stream()) }?;
        self.dev.stream.synchronize().context("reading a result")?;
        Ok(v)
    }
}

impl CudaBackend {
    /// Opens GPU 0. A clean error (never a panic) when there is no driver, no GPU, a GPU older
    /// than compute capability 8.0, or no way to get the kernels onto it.
    pub fn new() -> Result<CudaBackend> {
        let dev = device::open()?;
        Ok(CudaBackend {
            programs: Vec::new(),
            states: Vec::new(),
            weights: Arc::new(Vec::new()),
            weights_f32: HashMap::new(),
            smem_set: HashMap::new(),
            bytes_weights: 0,
            bytes_states: 0,
            bytes_activations: 0,
            cuda_graphs: !env_flag("LAV2_NO_CUDA_GRAPH"),
            sync_each_op: env_flag("LAV2_CUDA_SYNC"),
            cublas: None,
            variants: Variants::defaults(),
            notices: Vec::new(),
            upload_progress: None,
            vendor_operands: None,
            dev,
        })
    }

    /// Whether the device is the PTX emulator ([`EMULATOR_NAME`]) rather than a GPU: kernels run
    /// as on a GPU, but at a CPU interpreter's speed, so no time it takes is a timing.
    pub fn is_emulated(&self) -> bool {
        self.dev.name == EMULATOR_NAME
    }

    /// Whether decode (`per_token`) programs are captured and replayed as CUDA graphs (default: on unless
    /// `LAV2_NO_CUDA_GRAPH=1`). Takes effect for programs not yet captured.
    pub fn set_cuda_graphs(&mut self, on: bool) {
        self.cuda_graphs = on;
    }

    /// Whether `program` is being replayed from a captured CUDA graph.
    pub fn is_captured(&self, program: ProgramId) -> bool {
        self.programs
            .get(program.0)
            .is_some_and(|p| p.capture.graph.is_some())
    }

    /// Fills the program's arena (and decode scratch) with 0xFF bytes — NaN in f16 and f32 — so
    /// an output a kernel failed to write shows up as NaN. For tests.
    pub fn poison(&mut self, program: ProgramId) -> Result<()> {
        check_program(self.programs.len(), program)?;
        self.dev.ctx.bind_to_thread()?;
        let p = &self.programs[program.0];
        for b in p.arena.iter().chain(p.scratch.iter()) {
            // SAFETY: the range is the allocation.
            unsafe { result::memset_d8_async(b.ptr, 0xFF, b.bytes, self.dev.stream.cu_stream()) }?;
        }
        Ok(())
    }

    /// Compiles every kernel module's embedded source with NVRTC for `arch` (`compute_90`, …):
    /// needs libnvrtc but no GPU. Returns the module names, or the first failure.
    pub fn nvrtc_check(arch: &str) -> Result<Vec<&'static str>> {
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            bail!("NVRTC (libnvrtc.so) not found");
        }
        let mut names = Vec::new();
        for m in kernels::KERNEL_MODULES {
            device::nvrtc_compile(m, arch).with_context(|| format!("kernels/{}.cu", m.name))?;
            names.push(m.name);
        }
        Ok(names)
    }

    fn ensure_fits(&self, weights: usize, states: usize, activations: usize) -> Result<()> {
        let new = weights + states + activations;
        let (mut free, _total) = self.dev.ctx.mem_get_info()?;
        if new + RESERVE_BYTES > free {
            // Memory freed by an earlier backend may still sit in the stream-ordered pool, which
            // gives it back at a synchronization: synchronize and look again.
            self.dev.ctx.synchronize()?;
            free = self.dev.ctx.mem_get_info()?.0;
        }
        if new + RESERVE_BYTES > free {
            let resident = self.bytes_weights + self.bytes_states + self.bytes_activations;
            let (a, b, c) = (
                self.bytes_weights + weights,
                self.bytes_states + states,
                self.bytes_activations + activations,
            );
            return Err(crate::limits::OutOfMemory(format!(
                "out of GPU memory: needs {} GiB (weights {}, KV cache {}, activations {}), {} GiB free on {}",
                gib(a + b + c),
                gib(a),
                gib(b),
                gib(c),
                gib(free + resident),
                self.dev.name
            ))
            .into());
        }
        Ok(())
    }

    fn launch_now(&self, name: &'static str, n: usize, args: Vec<Arg>) -> Result<()> {
        let func = device::function(&self.dev.functions, name)?;
        crate::ops::lowering::check_signature(name, &args)?;
        let step = Runnable {
            step: crate::ops::lowering::OpStep {
                op_index: 0,
                op_name: "upload",
                step: Step::Kernel(Launch {
                    kernel: name,
                    grid: (stride_blocks(n, 256, 8192), 1, 1),
                    block: (256, 1, 1),
                    smem: 0,
                    args,
                }),
            },
            func: Some(func),
        };
        step.enqueue(&self.dev.stream)
    }

    fn htod<T>(&self, dst: u64, src: &[T]) -> Result<()> {
        if !src.is_empty() {
            // SAFETY: callers pass a destination of at least size_of_val(src) bytes; pageable
            // sources are staged by the driver before the call returns.
            unsafe { result::memcpy_htod_async(dst, src, self.dev.stream.cu_stream()) }?;
        }
        Ok(())
    }

    /// Uploads (or generates) one weight into `dst`.
    /// Uploads weight `index`; float weights become f16, and a finite value that f16 cannot
    /// hold is a [`WeightOutOfRange`] error rather than an infinity in the model.
    fn upload_weight(
        &self,
        index: usize,
        t: &HostTensor,
        dst: &Buf,
        staging: Option<&Buf>,
    ) -> Result<()> {
        let out_of_range = |value| anyhow::Error::new(WeightOutOfRange { index, value });
        let n = t.numel();
        let n64 = n as i64;
        if let Bytes::Generated { recipe, .. } = &t.bytes {
            match (*recipe, t.dtype) {
                (Synthetic::UniformF16 { seed, amp }, DType::F16) => {
                    return self.launch_now(
                        "synthetic_uniform_f16",
                        n,
                        vec![
                            Arg::Ptr(dst.ptr),
                            Arg::I64(n64),
                            Arg::U64(seed),
                            Arg::F32(amp),
                        ],
                    );
                }
                (Synthetic::ConstF16 { value }, DType::F16) => {
                    let bits = f16::from_f32(value).to_bits() as i32;
                    return self.launch_now(
                        "fill_u16",
                        n,
                        vec![Arg::Ptr(dst.ptr), Arg::I64(n64), Arg::I32(bits)],
                    );
                }
                (Synthetic::Bytes { seed, int8 }, DType::I8 | DType::U8) => {
                    return self.launch_now(
                        "synthetic_bytes_u8",
                        n,
                        vec![
                            Arg::Ptr(dst.ptr),
                            Arg::I64(n64),
                            Arg::U64(seed),
                            Arg::I32(i32::from(int8)),
                        ],
                    );
                }
                (Synthetic::FillByte { value }, DType::I8 | DType::U8) => {
                    // SAFETY: n bytes fit the allocation.
                    unsafe {
                        result::memset_d8_async(dst.ptr, value, n, self.dev.stream.cu_stream())
                    }?;
                    return Ok(());
                }
                _ => {} // any other combination: generated on the host below
            }
        }
        let raw = t.bytes.as_slice();
        match t.dtype {
            DType::F16 | DType::I8 | DType::U8 | DType::I32 => self.htod(dst.ptr, raw),
            DType::BF16 => {
                for (i, chunk) in raw.chunks(2 * STAGING_ELEMS).enumerate() {
                    let values: Vec<f32> = chunk
                        .chunks_exact(2)
                        .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                        .collect();
                    if let Some(v) = beyond_f16(values.iter().copied()) {
                        return Err(out_of_range(v));
                    }
                    let h: Vec<u16> = values.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
                    self.htod(dst.ptr + (i * STAGING_ELEMS * 2) as u64, &h)?;
                }
                Ok(())
            }
            DType::F32 => {
                let staging =
                    staging.ok_or_else(|| anyhow!("internal error: no staging buffer"))?;
                for (i, chunk) in raw.chunks(4 * STAGING_ELEMS).enumerate() {
                    let count = chunk.len() / 4;
                    let values = chunk
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
                    if let Some(v) = beyond_f16(values) {
                        return Err(out_of_range(v));
                    }
                    self.htod(staging.ptr, chunk)?;
                    self.launch_now(
                        "convert_f32_to_f16",
                        count.div_ceil(8),
                        vec![
                            Arg::Ptr(staging.ptr),
                            Arg::Ptr(dst.ptr + (i * STAGING_ELEMS * 2) as u64),
                            Arg::I32(count as i32),
                        ],
                    )?;
                }
                Ok(())
            }
        }
    }

    /// An exact f32 copy of weight `w` for graphs that read it as `Elem::F32`.
    fn ensure_f32_weight(&mut self, w: usize) -> Result<()> {
        if self.weights_f32.contains_key(&w) {
            return Ok(());
        }
        let dw = &self.weights[w];
        let n = dw.numel;
        let buf = alloc(&self.dev.stream, n * 4)?;
        let exact_f32 =
            dw.host.dtype == DType::F32 && !matches!(dw.host.bytes, Bytes::Generated { .. });
        if exact_f32 {
            self.htod(buf.ptr, dw.host.bytes.as_slice())?;
        } else if dw.elem == DevElem::F16 {
            self.launch_now(
                "convert_f16_to_f32",
                n.div_ceil(8),
                vec![
                    Arg::Ptr(dw.buf.ptr),
                    Arg::Ptr(buf.ptr),
                    Arg::I32(dim(n, "elements")?),
                ],
            )?;
        } else {
            bail!("weight {w} ({}) cannot be read as f32", dw.host.dtype);
        }
        self.bytes_activations += buf.bytes;
        self.weights_f32.insert(w, buf);
        Ok(())
    }

    /// Loads a lowered step's kernel and allows the dynamic shared memory it asks for.
    fn resolve(&mut self, step: crate::ops::lowering::OpStep) -> Result<Runnable> {
        let Step::Kernel(l) = &step.step else {
            return Ok(Runnable { step, func: None });
        };
        let func = device::function(&self.dev.functions, l.kernel)?;
        let (name, smem) = (l.kernel, l.smem as usize);
        if smem > 48 * 1024 && self.smem_set.get(name).copied().unwrap_or(0) < smem {
            func.set_attribute(
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                smem as i32,
            )
            .map_err(|e| anyhow!("{name}: could not allow {smem} bytes of shared memory: {e}"))?;
            self.smem_set.insert(name, smem);
        }
        Ok(Runnable {
            step,
            func: Some(func),
        })
    }

    fn run_checks(p: &CudaProgram) -> Result<()> {
        let ints = |id: &TensorId| p.host_i32.get(id).map(|v| v.as_slice()).unwrap_or(&[]);
        for c in &p.checks {
            match c {
                Check::Positions {
                    start_pos,
                    rows,
                    cache_rows,
                } => {
                    let start = ints(start_pos).first().copied().unwrap_or(0);
                    if start < 0 {
                        bail!("negative position {start}");
                    }
                    crate::ops::shape::check_positions(start as usize, *rows, *cache_rows)
                        .map_err(|e| anyhow!(e))?;
                }
                Check::TokenIds { ids, vocab } => {
                    if let Some(bad) = crate::ops::embedding::bad_id(ints(ids), *vocab) {
                        bail!("token id {bad} is outside the vocabulary of {vocab}");
                    }
                }
            }
        }
        Ok(())
    }

    fn enqueue_all(stream: &CudaStream, steps: &[Runnable], sync_each: bool) -> Result<()> {
        for s in steps {
            s.enqueue(stream)?;
            if sync_each {
                stream
                    .synchronize()
                    .map_err(|e| anyhow!("{} failed: {e}", s.describe()))?;
            }
        }
        Ok(())
    }

    fn capture(stream: &std::sync::Arc<CudaStream>, steps: &[Runnable]) -> Result<CudaGraph> {
        stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)?;
        let enqueued = Self::enqueue_all(stream, steps, false);
        // Always end the capture, so the stream is usable again whatever happened.
        let ended = stream.end_capture(sys::CUgraphInstantiate_flags(0));
        enqueued?;
        match ended {
            Ok(Some(g)) => Ok(g),
            Ok(None) => bail!("the capture produced no graph"),
            Err(e) => Err(anyhow!("ending the capture failed: {e}")),
        }
    }
}

impl Backend for CudaBackend {
    fn describe(&self) -> String {
        let d = &self.dev;
        let emulated = if self.is_emulated() {
            " — emulated: not a timing"
        } else {
            ""
        };
        format!(
            "cuda: {}{emulated} (compute {}.{}, {} SMs, {:.1} GiB, driver CUDA {}.{}; kernels: {})",
            d.name,
            d.cc.0,
            d.cc.1,
            d.sms,
            d.total_mem as f64 / GIB,
            d.driver_version / 1000,
            (d.driver_version % 1000) / 10,
            d.modules_summary
        )
    }

    fn act_bytes(&self) -> usize {
        2
    }

    fn is_emulated(&self) -> bool {
        CudaBackend::is_emulated(self)
    }

    fn memory_available(&self) -> Option<usize> {
        let (free, _) = self.dev.ctx.mem_get_info().ok()?;
        Some(free.saturating_sub(RESERVE_BYTES))
    }

    fn load_weights(&mut self, weights: &[HostTensor]) -> Result<()> {
        if !self.programs.is_empty() {
            bail!("internal error: weights replaced after graphs were prepared");
        }
        self.dev.ctx.bind_to_thread()?;
        self.dev.stream.synchronize()?;
        self.weights = Arc::new(Vec::new());
        self.weights_f32.clear();
        self.bytes_weights = 0;
        let mut uploaded = Vec::with_capacity(weights.len());
        let plan: Vec<(DevElem, usize)> = weights
            .iter()
            .map(|t| {
                let elem = lower::device_elem(t.dtype);
                (elem, t.numel() * elem.size())
            })
            .collect();
        let total: usize = plan.iter().map(|(_, b)| b.div_ceil(256) * 256).sum();
        let needs_staging = weights
            .iter()
            .any(|t| t.dtype == DType::F32 && !matches!(t.bytes, Bytes::Generated { .. }));
        let staging_bytes = if needs_staging { STAGING_ELEMS * 4 } else { 0 };
        self.ensure_fits(total + staging_bytes, 0, 0)?;
        let staging = if needs_staging {
            Some(alloc(&self.dev.stream, staging_bytes)?)
        } else {
            None
        };
        // Smaller models upload in moments: no progress to show.
        let show = total as f64 > GIB;
        let started = Instant::now();
        let mut done = 0usize;
        let mut shown = 0usize;
        for (i, (t, &(elem, bytes))) in weights.iter().zip(&plan).enumerate() {
            let buf = alloc(&self.dev.stream, bytes)?;
            self.upload_weight(i, t, &buf, staging.as_ref())
                .with_context(|| {
                    format!("uploading weight {i} ({} {})", t.dtype, shape_str(&t.shape))
                })?;
            done += buf.bytes;
            self.bytes_weights += buf.bytes;
            uploaded.push(DevWeight {
                buf,
                elem,
                numel: t.numel(),
                host: t.clone(),
            });
            let step = done * 20 / total.max(1);
            if let Some(report) = self
                .upload_progress
                .as_mut()
                .filter(|_| show && step > shown)
            {
                shown = step;
                // Generation is asynchronous: wait so the progress is real.
                self.dev.stream.synchronize()?;
                report(UploadProgress {
                    percent: step * 5,
                    done_bytes: done,
                    total_bytes: total,
                    elapsed: started.elapsed(),
                });
            }
        }
        self.dev.stream.synchronize().context("uploading weights")?;
        drop(staging);
        self.weights = Arc::new(uploaded);
        Ok(())
    }

    fn share_weights(&self) -> Result<Box<dyn Backend>> {
        self.dev.ctx.bind_to_thread()?;
        // Work queued on this stream (an upload) is done before another stream reads its results.
        self.dev.stream.synchronize()?;
        Ok(Box::new(CudaBackend {
            programs: Vec::new(),
            states: Vec::new(),
            weights: self.weights.clone(),
            weights_f32: HashMap::new(),
            smem_set: HashMap::new(),
            bytes_weights: self.bytes_weights,
            bytes_states: 0,
            bytes_activations: 0,
            cuda_graphs: self.cuda_graphs,
            sync_each_op: self.sync_each_op,
            cublas: None,
            vendor_operands: None,
            variants: self.variants.clone(),
            notices: Vec::new(),
            upload_progress: None,
            dev: self.dev.with_new_stream()?,
        }))
    }

    fn alloc_states(&mut self, states: &[StateDesc]) -> Result<()> {
        if !self.programs.is_empty() {
            bail!("internal error: states reallocated after graphs were prepared");
        }
        self.dev.ctx.bind_to_thread()?;
        self.dev.stream.synchronize()?;
        self.states.clear();
        self.bytes_states = 0;
        let sizes: Vec<(DevElem, usize)> = states
            .iter()
            .map(|s| {
                let e = DevElem::of(s.elem);
                (e, s.shape.iter().product::<usize>() * e.size())
            })
            .collect();
        let total: usize = sizes.iter().map(|(_, b)| b.div_ceil(256) * 256).sum();
        self.ensure_fits(0, total, 0)?;
        for (e, bytes) in sizes {
            let b = alloc_zeroed(&self.dev.stream, bytes)?;
            self.bytes_states += b.bytes;
            self.states.push((b, e));
        }
        Ok(())
    }

    fn prepare(&mut self, graph: &Graph, plan: &Plan) -> Result<ProgramId> {
        self.dev.ctx.bind_to_thread()?;
        let ctx = |e: anyhow::Error| anyhow!("preparing graph '{}' for CUDA: {e}", graph.name);
        for t in &graph.tensors {
            match t.storage {
                Storage::Weight(w) if t.elem == Elem::F32 && w < self.weights.len() => {
                    self.ensure_f32_weight(w).map_err(ctx)?
                }
                _ => {}
            }
        }
        let limits = DeviceLimits {
            sms: self.dev.sms,
            max_smem_optin: self.dev.max_smem_optin,
        };
        let input_bytes: usize = graph
            .tensors
            .iter()
            .filter(|t| t.storage == Storage::Input)
            .map(|t| (t.numel() * DevElem::of(t.elem).size()).div_ceil(256) * 256)
            .sum();
        let scratch_bytes = scratch_bytes(graph, &limits);
        self.ensure_fits(0, 0, plan.arena_bytes + input_bytes + scratch_bytes)?;
        let stream = self.dev.stream.clone();
        let arena = (plan.arena_bytes > 0)
            .then(|| alloc_zeroed(&stream, plan.arena_bytes))
            .transpose()?;
        let scratch = (scratch_bytes > 0)
            .then(|| alloc_zeroed(&stream, scratch_bytes))
            .transpose()?;
        let weights: Vec<lower::WeightSlot> = self
            .weights
            .iter()
            .enumerate()
            .map(|(i, w)| lower::WeightSlot {
                ptr: w.buf.ptr,
                elem: w.elem,
                numel: w.numel,
                dtype: w.host.dtype,
                shape: w.host.shape.clone(),
                f32_copy: self.weights_f32.get(&i).map(|b| b.ptr),
            })
            .collect();
        let states: Vec<lower::StateSlot> = self
            .states
            .iter()
            .map(|(b, e)| lower::StateSlot {
                ptr: b.ptr,
                bytes: b.bytes,
                elem: *e,
            })
            .collect();
        let mut inputs = Vec::new();
        let locs = lower::place(
            graph,
            plan,
            arena.as_ref().map(|b| (b.ptr, b.bytes)),
            &weights,
            &states,
            &mut |bytes| {
                let b = alloc_zeroed(&stream, bytes)?;
                let ptr = b.ptr;
                inputs.push(b);
                Ok(ptr)
            },
        )
        .map_err(ctx)?;
        let mut lw = Lowering {
            graph,
            locs: &locs,
            device: limits,
            variants: &self.variants,
            scratch: scratch.as_ref().map(|b| (b.ptr, b.bytes)),
            checks: Vec::new(),
        };
        let lowered = lower_program(&mut lw).map_err(ctx)?;
        let checks = std::mem::take(&mut lw.checks);
        let steps = lowered
            .into_iter()
            .map(|step| self.resolve(step))
            .collect::<Result<Vec<_>>>()
            .map_err(ctx)?;
        self.bytes_activations += arena.as_ref().map_or(0, |b| b.bytes)
            + scratch.as_ref().map_or(0, |b| b.bytes)
            + inputs.iter().map(|b| b.bytes).sum::<usize>();
        self.programs.push(CudaProgram {
            graph: graph.clone(),
            locs,
            steps,
            checks,
            host_i32: HashMap::new(),
            arena,
            scratch,
            _inputs: inputs,
            runs: 0,
            capture: CaptureState::default(),
        });
        Ok(ProgramId(self.programs.len() - 1))
    }

    fn write_input(&mut self, program: ProgramId, tensor: TensorId, data: HostData) -> Result<()> {
        let (loc, desc) = self.locate(program, tensor)?;
        if desc.storage != Storage::Input {
            bail!("internal error: '{}' is not an input", desc.name);
        }
        let n = desc.numel();
        match data {
            HostData::I32(d) if loc.elem == DevElem::I32 && d.len() == n => {
                self.htod(loc.ptr, d)?;
                self.programs[program.0].host_i32.insert(tensor, d.to_vec());
            }
            HostData::F32(d) if loc.elem == DevElem::F32 && d.len() == n => {
                self.htod(loc.ptr, d)?
            }
            HostData::F32(d) if loc.elem == DevElem::F16 && d.len() == n => {
                let h: Vec<u16> = d.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
                self.htod(loc.ptr, &h)?;
            }
            _ => bail!("internal error: bad input data for '{}'", desc.name),
        }
        Ok(())
    }

    fn run(&mut self, program: ProgramId) -> Result<()> {
        check_program(self.programs.len(), program)?;
        self.dev.ctx.bind_to_thread()?;
        let stream = self.dev.stream.clone();
        let use_graph = self.cuda_graphs && !self.sync_each_op;
        let sync_each = self.sync_each_op;
        let p = &mut self.programs[program.0];
        Self::run_checks(p)?;
        let name = p.graph.name.clone();
        // The first run is eager (a warm-up that also surfaces errors op by op); a decode program
        // is captured on its second run and replayed from then on.
        if use_graph
            && p.graph.per_token
            && p.runs >= 1
            && p.capture.graph.is_none()
            && !p.capture.failed
        {
            match Self::capture(&stream, &p.steps) {
                Ok(g) => p.capture.graph = Some(CapturedGraph(g)),
                Err(e) => {
                    self.notices.push(Notice::new(format!(
                        "capturing '{name}' as a CUDA graph failed ({e}); running it op by op"
                    )));
                    p.capture.failed = true;
                }
            }
        }
        match &p.capture.graph {
            Some(g) if use_graph => {
                g.0.launch()
                    .map_err(|e| anyhow!("replaying the CUDA graph of '{name}': {e}"))?
            }
            _ => Self::enqueue_all(&stream, &p.steps, sync_each)
                .with_context(|| format!("running '{name}'"))?,
        }
        p.runs += 1;
        Ok(())
    }

    fn read_f32(&mut self, program: ProgramId, tensor: TensorId) -> Result<Vec<f32>> {
        let (loc, desc) = self.locate(program, tensor)?;
        let (n, name) = (desc.numel(), desc.name);
        Ok(match loc.elem {
            DevElem::F16 => self
                .copy_back::<u16>(loc, n)?
                .into_iter()
                .map(|b| f16::from_bits(b).to_f32())
                .collect(),
            DevElem::F32 => self.copy_back::<f32>(loc, n)?,
            DevElem::I32 | DevElem::U8 => {
                bail!("internal error: '{name}' does not hold floats")
            }
        })
    }

    fn read_i32(&mut self, program: ProgramId, tensor: TensorId) -> Result<Vec<i32>> {
        let (loc, desc) = self.locate(program, tensor)?;
        if loc.elem != DevElem::I32 {
            bail!("internal error: '{}' does not hold integers", desc.name);
        }
        self.copy_back::<i32>(loc, desc.numel())
    }

    fn synchronize(&mut self) -> Result<()> {
        self.dev.ctx.bind_to_thread()?;
        self.dev.stream.synchronize()?;
        self.dev.ctx.check_err()?;
        Ok(())
    }

    fn set_kernel_variants(&mut self, spec: &str) -> Result<()> {
        self.variants = Variants::parse(spec)?;
        Ok(())
    }

    fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    fn set_upload_progress(&mut self, report: UploadProgressFn) {
        self.upload_progress = Some(report);
    }
}
