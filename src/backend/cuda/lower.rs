//! From a planned graph to enqueued work: one placement of every tensor (shared by
//! [`super::CudaBackend::prepare`] and the device-free [`dry_lower`]), the registry's lowering
//! of every op ([`crate::ops::lowering`]), and the launches those steps become — resolved once at
//! prepare time against fixed device addresses, so a run only enqueues them and a decode run can
//! be captured as a CUDA graph and replayed unchanged.

use std::ffi::c_void;

use anyhow::{anyhow, bail, Result};
use cudarc::driver::{result, CudaFunction, CudaStream};

use crate::graph::plan::Plan;
use crate::graph::{Elem, Graph, StateDesc, Storage};
use crate::ops::lowering::{
    lower_program, scratch_bytes, Arg, DevElem, DeviceLimits, Launch, Lowering, OpStep, Step,
    TensorLoc, Variants,
};
use crate::tensor::{shape_str, DType, HostTensor};

/// A lowered step with its loaded kernel (`None` only for copies and device-free lowering).
pub struct Runnable {
    pub step: OpStep,
    pub func: Option<CudaFunction>,
}

impl Runnable {
    pub fn describe(&self) -> String {
        self.step.describe()
    }

    /// Enqueues the step on `stream` (also valid while the stream is being captured).
    pub fn enqueue(&self, stream: &CudaStream) -> Result<()> {
        match (&self.step.step, &self.func) {
            (Step::Kernel(l), Some(func)) => launch(stream, l, func),
            (Step::Kernel(l), None) => Err(anyhow!(
                "internal error: {} was lowered without a device",
                l.kernel
            )),
            (Step::Copy { dst, src, bytes }, _) => {
                if *bytes > 0 {
                    // SAFETY: both ranges were checked against their allocations when lowered
                    // (`Lowering::copy`).
                    unsafe { result::memcpy_dtod_async(*dst, *src, *bytes, stream.cu_stream()) }?;
                }
                Ok(())
            }
        }
        .map_err(|e| anyhow!("{}: {e}", self.describe()))
    }
}

fn launch(stream: &CudaStream, l: &Launch, func: &CudaFunction) -> Result<()> {
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
    // the step was lowered, `check_signature`), every pointer is a live device allocation of
    // the right size (checked when lowered), and the values outlive the call (cuLaunchKernel
    // copies them).
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

/// How a host weight is stored on the device: float weights as f16, quantized ones as bytes.
pub fn device_elem(dtype: DType) -> DevElem {
    match dtype {
        DType::F32 | DType::F16 | DType::BF16 => DevElem::F16,
        DType::I8 | DType::U8 => DevElem::U8,
        DType::I32 => DevElem::I32,
    }
}

/// A loaded weight as placement sees it.
#[derive(Clone, Debug)]
pub struct WeightSlot {
    pub ptr: u64,
    pub elem: DevElem,
    pub numel: usize,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// The exact f32 copy, for graphs that read the weight as `Elem::F32`.
    pub f32_copy: Option<u64>,
}

/// An allocated state as placement sees it.
#[derive(Clone, Copy, Debug)]
pub struct StateSlot {
    pub ptr: u64,
    pub bytes: usize,
    pub elem: DevElem,
}

/// Where every tensor of `graph` lives: activations at their planned offsets in the arena
/// (`arena`: address and bytes), inputs in buffers `input` allocates, weights and states in their
/// slots — each checked against the element type and size the graph declares.
pub fn place(
    graph: &Graph,
    plan: &Plan,
    arena: Option<(u64, usize)>,
    weights: &[WeightSlot],
    states: &[StateSlot],
    input: &mut dyn FnMut(usize) -> Result<u64>,
) -> Result<Vec<Option<TensorLoc>>> {
    let mut locs = vec![None; graph.tensors.len()];
    for (i, t) in graph.tensors.iter().enumerate() {
        let elem = DevElem::of(t.elem);
        let bytes = t.numel() * elem.size();
        let bad = |what: String| anyhow!("'{}' {}: {what}", t.name, shape_str(&t.shape));
        if plan.bytes.get(i) != Some(&bytes) {
            return Err(bad("was planned for another backend".into()));
        }
        let loc = match t.storage {
            Storage::Activation => {
                let Some(off) = plan.offsets[i] else {
                    // Declared but never written by an op: nothing to place.
                    continue;
                };
                let (base, size) = arena.ok_or_else(|| bad("planned without an arena".into()))?;
                if off + bytes > size {
                    return Err(bad("planned past the end of the arena".into()));
                }
                TensorLoc {
                    ptr: base + off as u64,
                    bytes,
                    elem,
                }
            }
            Storage::Input => TensorLoc {
                ptr: input(bytes)?,
                bytes,
                elem,
            },
            Storage::Weight(w) => {
                let slot = weights
                    .get(w)
                    .ok_or_else(|| bad(format!("weight {w} was not loaded")))?;
                weight_loc(t.elem, t.numel(), bytes, slot).map_err(bad)?
            }
            Storage::State(s) => {
                let slot = states
                    .get(s)
                    .ok_or_else(|| bad(format!("state {s} was not allocated")))?;
                if slot.elem != elem || bytes > slot.bytes {
                    return Err(bad("does not match the allocated state".into()));
                }
                TensorLoc {
                    ptr: slot.ptr,
                    bytes,
                    elem,
                }
            }
        };
        locs[i] = Some(loc);
    }
    Ok(locs)
}

fn weight_loc(elem: Elem, numel: usize, bytes: usize, w: &WeightSlot) -> Result<TensorLoc, String> {
    let what = || format!("the weight is {} {}", w.dtype, shape_str(&w.shape));
    let dev = DevElem::of(elem);
    match elem {
        Elem::F32 => match w.f32_copy {
            Some(ptr) if w.numel == numel => Ok(TensorLoc {
                ptr,
                bytes,
                elem: dev,
            }),
            _ => Err(format!("{} and has no f32 copy of {numel} values", what())),
        },
        Elem::Act | Elem::I32 if w.elem == dev && w.numel == numel => Ok(TensorLoc {
            ptr: w.ptr,
            bytes,
            elem: dev,
        }),
        Elem::Act | Elem::I32 => Err(what()),
        // The graph's shape is logical ([out, in] of the matrix); the bytes are what was uploaded
        // (the linear lowering checks they suffice).
        Elem::Quant if w.elem == DevElem::U8 => Ok(TensorLoc {
            ptr: w.ptr,
            bytes: w.numel,
            elem: dev,
        }),
        Elem::Quant => Err(format!("quantized data must be bytes; {}", what())),
    }
}

/// The device a [`dry_lower`] pretends to lower for.
#[derive(Clone, Debug)]
pub struct DryDevice {
    pub limits: DeviceLimits,
    pub variants: Variants,
}

impl DryDevice {
    /// An H100 SXM with the default kernels.
    pub const H100: DryDevice = DryDevice {
        limits: DeviceLimits::H100,
        variants: Variants::defaults(),
    };
}

/// Lowers `graph` as [`super::CudaBackend`] would — the same validation, planning, placement and
/// lowering code — but with no device: addresses are made up (regions far apart, so an overlap
/// of two tensors could not go unnoticed) and kernels are checked instead of loaded. Every launch
/// is checked against its kernel's PTX parameters and launch bounds, the grid, block and
/// shared-memory limits, and every tensor against the element type and size its op needs; a
/// machine without a GPU can so test every lowering path. Returns each step as
/// [`OpStep::describe`] prints it.
pub fn dry_lower(
    graph: &Graph,
    weights: &[HostTensor],
    states: &[StateDesc],
    device: &DryDevice,
) -> Result<Vec<String>> {
    if let Err(e) = crate::ops::validate(graph) {
        bail!("internal error: {e}");
    }
    let plan = Plan::new(graph, 2);
    plan.check_no_alias(graph)
        .map_err(|e| anyhow!("internal error: {e}"))?;
    const REGION: u64 = 1 << 40;
    let mut next = [REGION, 2 * REGION, 3 * REGION, 4 * REGION];
    let mut fake = move |region: usize, bytes: usize| {
        let p = next[region];
        next[region] += (bytes as u64).div_ceil(256) * 256 + 256;
        p
    };
    let weight_slots: Vec<WeightSlot> = weights
        .iter()
        .map(|h| {
            let elem = device_elem(h.dtype);
            WeightSlot {
                ptr: fake(1, h.numel() * elem.size()),
                elem,
                numel: h.numel(),
                dtype: h.dtype,
                shape: h.shape.clone(),
                f32_copy: Some(fake(1, h.numel() * 4)),
            }
        })
        .collect();
    let state_slots: Vec<StateSlot> = states
        .iter()
        .map(|s| {
            let elem = DevElem::of(s.elem);
            let bytes = s.shape.iter().product::<usize>() * elem.size();
            StateSlot {
                ptr: fake(2, bytes),
                bytes,
                elem,
            }
        })
        .collect();
    let arena = (plan.arena_bytes > 0).then_some((5 * REGION, plan.arena_bytes));
    let locs = place(graph, &plan, arena, &weight_slots, &state_slots, &mut |b| {
        Ok(fake(0, b))
    })?;
    let scratch = scratch_bytes(graph, &device.limits);
    let mut lw = Lowering {
        graph,
        locs: &locs,
        device: device.limits,
        variants: &device.variants,
        scratch: (scratch > 0).then_some((6 * REGION, scratch)),
        checks: Vec::new(),
    };
    Ok(lower_program(&mut lw)?
        .iter()
        .map(OpStep::describe)
        .collect())
}
