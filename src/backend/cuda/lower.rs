//! From ops to launches: every op of a planned graph becomes one or more [`Step`]s (a kernel with
//! its grid, block, shared memory and packed arguments, or an async device copy), resolved once
//! at prepare time against fixed device addresses, so a run only enqueues them — and a decode run
//! can be captured as a CUDA graph and replayed unchanged.

use std::collections::HashMap;
use std::ffi::c_void;

use anyhow::{anyhow, bail, Result};
use cudarc::driver::{result, sys, CudaFunction, CudaStream};

use crate::graph::{Elem, Graph, Op, TensorId};
use crate::tensor::shape_str;

/// Element type of a tensor as it sits in device memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevElem {
    F16,
    F32,
    I32,
    U8,
}

impl DevElem {
    pub fn size(self) -> usize {
        match self {
            DevElem::F16 => 2,
            DevElem::F32 | DevElem::I32 => 4,
            DevElem::U8 => 1,
        }
    }

    /// How the graph's element type is stored on this backend.
    pub fn of(elem: Elem) -> DevElem {
        match elem {
            Elem::Act => DevElem::F16,
            Elem::F32 => DevElem::F32,
            Elem::I32 => DevElem::I32,
            Elem::Quant => DevElem::U8,
        }
    }
}

/// Where a tensor of a prepared graph lives: its address, size in bytes and element type.
#[derive(Clone, Copy, Debug)]
pub struct TensorLoc {
    pub ptr: u64,
    pub bytes: usize,
    pub elem: DevElem,
}

/// One kernel argument, by value (`Ptr` 0 is the null pointer).
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    Ptr(u64),
    I32(i32),
    I64(i64),
    U64(u64),
    F32(f32),
}

pub struct Launch {
    pub kernel: &'static str,
    /// `None` only in a lowering without a device ([`dry_lower`]).
    pub func: Option<CudaFunction>,
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub smem: u32,
    pub args: Vec<Arg>,
}

pub enum Step {
    Kernel(Launch),
    Copy { dst: u64, src: u64, bytes: usize },
}

/// A step with the op it came from, for error messages.
pub struct OpStep {
    pub op_index: usize,
    pub op_name: &'static str,
    pub step: Step,
}

impl OpStep {
    pub fn describe(&self) -> String {
        match &self.step {
            Step::Kernel(l) => format!(
                "op {} ({}) → {} grid {:?} block {:?} smem {}",
                self.op_index, self.op_name, l.kernel, l.grid, l.block, l.smem
            ),
            Step::Copy { bytes, .. } => format!(
                "op {} ({}) → device copy of {bytes} bytes",
                self.op_index, self.op_name
            ),
        }
    }

    /// Enqueues the step on `stream` (also valid while the stream is being captured).
    pub fn enqueue(&self, stream: &CudaStream) -> Result<()> {
        match &self.step {
            Step::Kernel(l) => launch(stream, l),
            Step::Copy { dst, src, bytes } => {
                if *bytes > 0 {
                    // SAFETY: both ranges were checked against their allocations at prepare time.
                    unsafe { result::memcpy_dtod_async(*dst, *src, *bytes, stream.cu_stream()) }?;
                }
                Ok(())
            }
        }
        .map_err(|e| anyhow!("{}: {e}", self.describe()))
    }
}

pub fn launch(stream: &CudaStream, l: &Launch) -> Result<()> {
    let Some(func) = &l.func else {
        bail!("internal error: {} was lowered without a device", l.kernel);
    };
    let mut params: Vec<*mut c_void> = l
        .args
        .iter()
        .map(|a| match a {
            Arg::Ptr(v) | Arg::U64(v) => v as *const u64 as *mut c_void,
            Arg::I32(v) => v as *const i32 as *mut c_void,
            Arg::I64(v) => v as *const i64 as *mut c_void,
            Arg::F32(v) => v as *const f32 as *mut c_void,
        })
        .collect();
    // SAFETY: the argument list matches the kernel's signature (checked against the PTX when
    // the step was built, see `check_signature`), every pointer is a live device allocation of
    // the right size (checked when the step was built), and the values outlive the call
    // (cuLaunchKernel copies them).
    unsafe {
        result::launch_kernel(
            func.cu_function(),
            l.grid,
            l.block,
            l.smem,
            stream.cu_stream(),
            &mut params,
        )
    }?;
    Ok(())
}

/// The arguments must be the kernel's parameters in number and type (as its PTX declares them):
/// a mismatch would otherwise be a silent wrong read on the device. Without compiled PTX
/// (an NVRTC-only build) there is nothing to compare with.
pub fn check_signature(name: &str, args: &[Arg]) -> Result<()> {
    use super::kernels::ParamKind;
    let Some(params) = super::kernels::signatures().get(name) else {
        return Ok(());
    };
    let kind = |a: &Arg| match a {
        Arg::Ptr(_) | Arg::U64(_) | Arg::I64(_) => ParamKind::Bits64,
        Arg::I32(_) => ParamKind::Int32,
        Arg::F32(_) => ParamKind::Float32,
    };
    let given: Vec<ParamKind> = args.iter().map(kind).collect();
    if given != *params {
        bail!("internal error: {name} takes parameters {params:?}, the lowering passed {given:?}");
    }
    Ok(())
}

/// Host-side checks run before every launch of a program: what the CPU reference rejects
/// (positions past the cache, unknown token ids) must not become an out-of-bounds write here.
#[derive(Clone, Debug)]
pub enum Check {
    Positions {
        start_pos: TensorId,
        rows: usize,
        cache_rows: usize,
    },
    TokenIds {
        ids: TensorId,
        vocab: usize,
    },
}

/// Which kernels serve the op families that have more than one: the defaults are the model's
/// (fastest) kernels; the others exist so their cost can be measured against the same graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Variants {
    /// `rmsnorm=naive`: scalar loads, two passes over global memory.
    pub naive_rmsnorm: bool,
    /// `attention=unfused`: causal attention, then a separate pass over the prompt.
    pub unfused_attention: bool,
}

impl Variants {
    /// Every spec [`Variants::parse`] takes, for help texts.
    pub const HELP: &'static str = "rmsnorm=fused|naive, attention=fused|unfused";

    /// `"rmsnorm=naive,attention=unfused"`; empty = the defaults.
    pub fn parse(spec: &str) -> Result<Variants> {
        let mut v = Variants::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item {
                "rmsnorm=fused" => v.naive_rmsnorm = false,
                "rmsnorm=naive" => v.naive_rmsnorm = true,
                "attention=fused" => v.unfused_attention = false,
                "attention=unfused" => v.unfused_attention = true,
                other => bail!(
                    "unknown kernel variant '{other}' (expected {})",
                    Variants::HELP
                ),
            }
        }
        Ok(v)
    }
}

/// What lowering needs to know about the device and the prepared buffers.
pub struct Lowerer<'a> {
    pub graph: &'a Graph,
    pub locs: &'a [Option<TensorLoc>],
    /// The loaded kernels; `None` lowers without a device (launches are checked, not resolved).
    pub functions: Option<&'a HashMap<String, CudaFunction>>,
    pub sms: usize,
    pub max_smem_optin: usize,
    pub variants: Variants,
    /// Decode attention partials: (address, bytes).
    pub scratch: Option<(u64, usize)>,
    /// Dynamic shared memory already enabled per kernel.
    pub smem_set: &'a mut HashMap<&'static str, usize>,
    pub checks: Vec<Check>,
}

pub fn dim(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| anyhow!("{what} = {v} does not fit the kernels' 32-bit sizes"))
}

/// Blocks for a grid-stride kernel over `n` items of `per_block` items each, clamped.
pub fn stride_blocks(n: usize, per_block: usize, max_blocks: usize) -> u32 {
    n.div_ceil(per_block).clamp(1, max_blocks) as u32
}

impl Lowerer<'_> {
    pub fn loc(&self, id: TensorId) -> Result<TensorLoc> {
        self.locs.get(id.0).copied().flatten().ok_or_else(|| {
            anyhow!(
                "internal error: tensor '{}' has no device location",
                self.graph.desc(id).name
            )
        })
    }

    /// The address of `id`, which must be stored as `elem` (null for `None`).
    pub fn ptr(&self, id: TensorId, elem: DevElem) -> Result<u64> {
        let l = self.loc(id)?;
        if l.elem != elem {
            bail!(
                "tensor '{}' is {:?} on the device, this op needs {:?}",
                self.graph.desc(id).name,
                l.elem,
                elem
            );
        }
        Ok(l.ptr)
    }

    pub fn opt_ptr(&self, id: Option<TensorId>, elem: DevElem) -> Result<u64> {
        id.map_or(Ok(0), |id| self.ptr(id, elem))
    }

    pub fn numel(&self, id: TensorId) -> usize {
        self.graph.desc(id).numel()
    }

    pub fn shape(&self, id: TensorId) -> &[usize] {
        &self.graph.desc(id).shape
    }

    /// (rows, cols) of a 1-D or 2-D tensor (higher ranks: all but the last dimension are rows).
    pub fn rows_cols(&self, id: TensorId) -> (usize, usize) {
        let s = self.shape(id);
        let cols = s.last().copied().unwrap_or(1).max(1);
        (self.numel(id) / cols, cols)
    }

    pub fn kernel(
        &mut self,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        smem: usize,
        args: Vec<Arg>,
    ) -> Result<Step> {
        check_signature(name, &args)?;
        if grid.0 == 0
            || grid.1 == 0
            || grid.2 == 0
            || grid.0 > i32::MAX as u32
            || grid.1 > 65535
            || grid.2 > 65535
        {
            bail!("{name}: grid {grid:?} is out of range");
        }
        if block.0 * block.1 * block.2 > 1024 {
            bail!("{name}: block {block:?} has more than 1024 threads");
        }
        let func = match self.functions {
            Some(f) => Some(super::device::function(f, name)?),
            None => None,
        };
        if smem > 48 * 1024 {
            if smem > self.max_smem_optin {
                bail!(
                    "{name} needs {smem} bytes of shared memory per block; this GPU allows {}",
                    self.max_smem_optin
                );
            }
            if let Some(func) = func
                .as_ref()
                .filter(|_| self.smem_set.get(name).copied().unwrap_or(0) < smem)
            {
                func.set_attribute(
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    smem as i32,
                )
                .map_err(|e| {
                    anyhow!("{name}: could not allow {smem} bytes of shared memory: {e}")
                })?;
                self.smem_set.insert(name, smem);
            }
        }
        Ok(Step::Kernel(Launch {
            kernel: name,
            func,
            grid,
            block,
            smem: smem as u32,
            args,
        }))
    }

    /// Lowers one op.
    pub fn op(&mut self, op: &Op) -> Result<Vec<Step>> {
        use super::{attention, elementwise, matmul};
        match op {
            Op::Linear {
                x,
                w,
                quant,
                bias,
                out_scale,
                residual,
                out,
            } => matmul::linear(
                self,
                *x,
                *w,
                quant.as_ref(),
                *bias,
                *out_scale,
                *residual,
                *out,
            ),
            Op::RopeKvWrite { .. } => attention::rope_kv_write(self, op),
            Op::AdapterAttention { .. } => attention::adapter_attention(self, op),
            Op::VisionAttention { qkv, out, n_heads } => {
                attention::vision_attention(self, *qkv, *out, *n_heads)
            }
            Op::SampleToken {
                logits,
                uniform,
                out,
                temperature,
                top_p,
            } => {
                let (rows, vocab) = self.rows_cols(*logits);
                let vocab = dim(vocab, "vocab")?;
                let grid = (dim(rows, "sampled rows")? as u32, 1, 1);
                let (logits, out) = (
                    self.ptr(*logits, DevElem::F32)?,
                    self.ptr(*out, DevElem::I32)?,
                );
                // Both kernels are written for exactly 1024 threads (kernels/README.md).
                let step = if *temperature == 0.0 {
                    let args = vec![Arg::Ptr(logits), Arg::I32(vocab), Arg::Ptr(out)];
                    self.kernel("argmax_f32", grid, (1024, 1, 1), 0, args)?
                } else {
                    // Masses are 40-bit fixed point summed in 64 bits (kernels/sampling.cu).
                    if vocab > 1 << 24 {
                        bail!(
                            "top-p sampling on the device takes at most 2^24 logits, not {vocab}"
                        );
                    }
                    let args = vec![
                        Arg::Ptr(logits),
                        Arg::I32(vocab),
                        Arg::F32(*temperature),
                        Arg::F32(*top_p),
                        Arg::Ptr(self.ptr(*uniform, DevElem::F32)?),
                        Arg::Ptr(out),
                    ];
                    self.kernel("top_p_sample_f32", grid, (1024, 1, 1), 0, args)?
                };
                Ok(vec![step])
            }
            _ => elementwise::lower(self, op),
        }
    }

    /// A device-to-device copy of `bytes` from `src + src_off` into `dst + dst_off`, both checked.
    pub fn copy(
        &self,
        dst: TensorId,
        dst_off: usize,
        src: TensorId,
        src_off: usize,
        bytes: usize,
    ) -> Result<Step> {
        let (d, s) = (self.loc(dst)?, self.loc(src)?);
        if d.elem != s.elem {
            bail!(
                "copy between '{}' ({:?}) and '{}' ({:?})",
                self.graph.desc(dst).name,
                d.elem,
                self.graph.desc(src).name,
                s.elem
            );
        }
        if dst_off + bytes > d.bytes || src_off + bytes > s.bytes {
            bail!(
                "copy of {bytes} bytes out of range ('{}' {}, '{}' {})",
                self.graph.desc(dst).name,
                shape_str(self.shape(dst)),
                self.graph.desc(src).name,
                shape_str(self.shape(src))
            );
        }
        Ok(Step::Copy {
            dst: d.ptr + dst_off as u64,
            src: s.ptr + src_off as u64,
            bytes,
        })
    }
}

/// The device a [`dry_lower`] pretends to lower for.
#[derive(Clone, Copy, Debug)]
pub struct DryDevice {
    pub sms: usize,
    pub max_smem_optin: usize,
    pub variants: Variants,
}

impl DryDevice {
    /// An H100 SXM: 132 SMs, 227 KiB of opt-in shared memory per block; the default kernels.
    pub const H100: DryDevice = DryDevice {
        sms: 132,
        max_smem_optin: 232_448,
        variants: Variants {
            naive_rmsnorm: false,
            unfused_attention: false,
        },
    };
}

/// Lowers `graph` as [`super::CudaBackend`] would, but with no device: made-up addresses, and
/// kernels checked instead of loaded. Every launch is checked against its kernel's PTX
/// parameters, the grid, block and shared-memory limits, and every tensor against the element
/// type and size its op needs; a machine without a GPU can so test every lowering path.
/// Returns each step as [`OpStep::describe`] prints it.
pub fn dry_lower(
    graph: &Graph,
    weights: &[crate::tensor::HostTensor],
    states: &[crate::graph::StateDesc],
    device: DryDevice,
) -> Result<Vec<String>> {
    use crate::graph::Storage;
    if let Err(e) = graph.validate() {
        bail!("internal error: {e}");
    }
    let plan = crate::graph::plan::Plan::new(graph, 2);
    // Distinct regions far apart, so an overlap of two tensors could not go unnoticed.
    const REGION: u64 = 1 << 40;
    let mut next = [REGION, 2 * REGION, 3 * REGION];
    let mut place = |region: usize, bytes: usize| {
        let p = next[region];
        next[region] += (bytes as u64).div_ceil(256) * 256 + 256;
        p
    };
    let mut locs = vec![None; graph.tensors.len()];
    for (i, t) in graph.tensors.iter().enumerate() {
        let elem = DevElem::of(t.elem);
        let bytes = t.numel() * elem.size();
        let name = || format!("'{}' {}", t.name, shape_str(&t.shape));
        let (ptr, bytes) = match t.storage {
            Storage::Activation => match plan.offsets[i] {
                Some(off) => (4 * REGION + off as u64, bytes),
                None => continue,
            },
            Storage::Input => (place(0, bytes), bytes),
            Storage::Weight(w) => {
                let h = weights
                    .get(w)
                    .ok_or_else(|| anyhow!("{}: weight {w} is not in the store", name()))?;
                let quantized =
                    matches!(h.dtype, crate::tensor::DType::I8 | crate::tensor::DType::U8);
                if (t.elem == Elem::Quant) != quantized {
                    bail!("{}: the weight is {}", name(), h.dtype);
                }
                if t.elem == Elem::Quant {
                    (place(1, h.numel()), h.numel())
                } else if h.numel() != t.numel() {
                    bail!("{}: the weight holds {} values", name(), h.numel());
                } else {
                    (place(1, bytes), bytes)
                }
            }
            Storage::State(s) => {
                let d = states
                    .get(s)
                    .ok_or_else(|| anyhow!("{}: state {s} was not allocated", name()))?;
                if DevElem::of(d.elem) != elem || t.numel() > d.shape.iter().product() {
                    bail!("{}: does not match the allocated state", name());
                }
                (place(2, bytes), bytes)
            }
        };
        locs[i] = Some(TensorLoc { ptr, bytes, elem });
    }
    let scratch_bytes = super::attention::scratch_bytes(graph, device.sms);
    let mut smem_set = HashMap::new();
    let mut lw = Lowerer {
        graph,
        locs: &locs,
        functions: None,
        sms: device.sms,
        max_smem_optin: device.max_smem_optin,
        variants: device.variants,
        scratch: (scratch_bytes > 0).then_some((5 * REGION, scratch_bytes)),
        smem_set: &mut smem_set,
        checks: Vec::new(),
    };
    let mut out = Vec::new();
    for (i, op) in graph.ops.iter().enumerate() {
        let steps = lw
            .op(op)
            .map_err(|e| anyhow!("graph '{}', op {i} ({}): {e}", graph.name, op.name()))?;
        out.extend(steps.into_iter().map(|step| {
            OpStep {
                op_index: i,
                op_name: op.name(),
                step,
            }
            .describe()
        }));
    }
    Ok(out)
}
