//! The CUDA side of an op, without a device: an op becomes kernel launches (name, grid, block,
//! shared bytes, packed arguments) or device copies, resolved against the tensors' device
//! locations. The CUDA backend turns them into driver calls; the no-GPU lowering test runs the
//! same code over made-up addresses. Every launch is checked here against its kernel's PTX: the
//! parameter list, the `.maxntid` its `__launch_bounds__` declares, and the device's limits.

use anyhow::{anyhow, bail, Result};

use super::kernels::{self, ParamKind};
use crate::graph::{Elem, Graph, TensorId};
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

    /// How the graph's element type is stored on the CUDA backend.
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

#[derive(Clone, Debug)]
pub struct Launch {
    pub kernel: &'static str,
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub smem: u32,
    pub args: Vec<Arg>,
}

#[derive(Clone, Debug)]
pub enum Step {
    Kernel(Launch),
    Copy { dst: u64, src: u64, bytes: usize },
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::Kernel(l) => format!(
                "{} grid {:?} block {:?} smem {}",
                l.kernel, l.grid, l.block, l.smem
            ),
            Step::Copy { bytes, .. } => format!("device copy of {bytes} bytes"),
        }
    }
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

/// What lowering needs to know of the device.
#[derive(Clone, Copy, Debug)]
pub struct DeviceLimits {
    pub sms: usize,
    /// Opt-in dynamic shared memory per block, bytes.
    pub max_smem_optin: usize,
}

impl DeviceLimits {
    /// An H100 SXM: 132 SMs, 227 KiB of opt-in shared memory per block.
    pub const H100: DeviceLimits = DeviceLimits {
        sms: 132,
        max_smem_optin: 232_448,
    };
}

/// Which kernel serves each op that has several (`"rmsnorm=naive,adapter_attention=unfused"`);
/// an op not named takes the first of its entry's variants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Variants(Vec<(&'static str, &'static str)>);

impl Variants {
    pub const fn defaults() -> Variants {
        Variants(Vec::new())
    }

    /// Every `op=variant` the registry offers, for help texts.
    pub fn help() -> String {
        super::REGISTRY
            .iter()
            .filter(|e| !e.variants.is_empty())
            .map(|e| {
                let names: Vec<&str> = e.variants.iter().map(|v| v.name).collect();
                format!("{}={}", e.name, names.join("|"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `"rmsnorm=naive,adapter_attention=unfused"`; empty = the defaults.
    pub fn parse(spec: &str) -> Result<Variants> {
        let mut chosen = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let found = item.split_once('=').and_then(|(op, name)| {
                let entry = super::find(op.trim())?;
                let v = entry.variants.iter().find(|v| v.name == name.trim())?;
                Some((entry.name, v.name))
            });
            match found {
                Some((op, name)) => {
                    chosen.retain(|(o, _)| *o != op);
                    chosen.push((op, name));
                }
                None => bail!(
                    "unknown kernel variant '{item}' (expected {})",
                    Variants::help()
                ),
            }
        }
        Ok(Variants(chosen))
    }

    /// The variant chosen for `op` (its default when none was).
    pub fn of(&self, op: &str) -> &'static str {
        self.0
            .iter()
            .find(|(o, _)| *o == op)
            .map(|(_, v)| *v)
            .or_else(|| super::find(op).and_then(|e| e.variants.first().map(|v| v.name)))
            .unwrap_or("")
    }
}

pub fn dim(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| anyhow!("{what} = {v} does not fit the kernels' 32-bit sizes"))
}

/// Blocks for a grid-stride kernel over `n` items of `per_block` items each, clamped.
pub fn stride_blocks(n: usize, per_block: usize, max_blocks: usize) -> u32 {
    n.div_ceil(per_block).clamp(1, max_blocks) as u32
}

/// Lowering of one program: its graph, where each tensor lives, and the device.
pub struct Lowering<'a> {
    pub graph: &'a Graph,
    pub locs: &'a [Option<TensorLoc>],
    pub device: DeviceLimits,
    pub variants: &'a Variants,
    /// The program's scratch buffer (address, bytes), sized by the entries' `scratch_bytes`.
    pub scratch: Option<(u64, usize)>,
    pub checks: Vec<Check>,
}

impl Lowering<'_> {
    pub fn loc(&self, id: TensorId) -> Result<TensorLoc> {
        self.locs.get(id.0).copied().flatten().ok_or_else(|| {
            anyhow!(
                "internal error: tensor '{}' has no device location",
                self.graph.desc(id).name
            )
        })
    }

    /// The address of `id`, which must be stored as `elem`.
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

    /// As [`Lowering::ptr`]; the null pointer for `None`.
    pub fn opt_ptr(&self, id: Option<TensorId>, elem: DevElem) -> Result<u64> {
        id.map_or(Ok(0), |id| self.ptr(id, elem))
    }

    pub fn numel(&self, id: TensorId) -> usize {
        self.graph.desc(id).numel()
    }

    pub fn shape(&self, id: TensorId) -> &[usize] {
        &self.graph.desc(id).shape
    }

    /// (rows, cols) of a tensor: all but the last dimension are rows.
    pub fn rows_cols(&self, id: TensorId) -> (usize, usize) {
        let cols = self.shape(id).last().copied().unwrap_or(1).max(1);
        (self.numel(id) / cols, cols)
    }

    /// A launch of `name`, checked against its PTX and the device.
    pub fn kernel(
        &self,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        smem: usize,
        args: Vec<Arg>,
    ) -> Result<Step> {
        check_signature(name, &args)?;
        let [gx, gy, gz] = [grid.0, grid.1, grid.2];
        if gx == 0 || gy == 0 || gz == 0 || gx > i32::MAX as u32 || gy > 65535 || gz > 65535 {
            bail!("{name}: grid {grid:?} is out of range");
        }
        let threads = block.0 * block.1 * block.2;
        if threads == 0 || threads > 1024 {
            bail!("{name}: block {block:?} must have 1 to 1024 threads");
        }
        if let Some(&max) = kernels::launch_bounds().get(name) {
            if threads > max {
                bail!("{name}: block {block:?} exceeds the kernel's __launch_bounds__ of {max}");
            }
        }
        if smem > 48 * 1024 && smem > self.device.max_smem_optin {
            bail!(
                "{name} needs {smem} bytes of shared memory per block; this GPU allows {}",
                self.device.max_smem_optin
            );
        }
        Ok(Step::Kernel(Launch {
            kernel: name,
            grid,
            block,
            smem: smem as u32,
            args,
        }))
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
        let name = |id: TensorId| {
            let t = self.graph.desc(id);
            format!("'{}' {}", t.name, shape_str(&t.shape))
        };
        if d.elem != s.elem {
            bail!(
                "copy between {} ({:?}) and {} ({:?})",
                name(dst),
                d.elem,
                name(src),
                s.elem
            );
        }
        if dst_off + bytes > d.bytes || src_off + bytes > s.bytes {
            bail!(
                "copy of {bytes} bytes out of range ({}, {})",
                name(dst),
                name(src)
            );
        }
        Ok(Step::Copy {
            dst: d.ptr + dst_off as u64,
            src: s.ptr + src_off as u64,
            bytes,
        })
    }

    /// The scratch buffer, which must hold `bytes`.
    pub fn scratch(&self, bytes: usize) -> Result<u64> {
        match self.scratch {
            Some((ptr, have)) if have >= bytes => Ok(ptr),
            Some((_, have)) => bail!("internal error: scratch holds {have} bytes, {bytes} needed"),
            None => bail!("internal error: no scratch buffer for {bytes} bytes"),
        }
    }
}

/// The arguments must be the kernel's parameters in number and type (as its PTX declares them):
/// a mismatch would otherwise be a silent wrong read on the device. Without compiled PTX
/// (an NVRTC-only build) there is nothing to compare with.
pub fn check_signature(name: &str, args: &[Arg]) -> Result<()> {
    let Some(params) = kernels::signatures().get(name) else {
        if kernels::compiled() {
            bail!("internal error: no kernel named {name} was compiled");
        }
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

/// The scratch bytes a program needs: the most any of its ops asks for.
pub fn scratch_bytes(graph: &Graph, device: &DeviceLimits) -> usize {
    graph
        .ops
        .iter()
        .filter_map(|op| Some((super::entry(op).ok()?.scratch_bytes)(graph, op, device)))
        .max()
        .unwrap_or(0)
}

/// One lowered step with the op it came from, for error messages.
pub struct OpStep {
    pub op_index: usize,
    pub op_name: &'static str,
    pub step: Step,
}

impl OpStep {
    pub fn describe(&self) -> String {
        format!(
            "op {} ({}) → {}",
            self.op_index,
            self.op_name,
            self.step.describe()
        )
    }
}

/// Lowers every op of `lw.graph` through its registry entry.
pub fn lower_program(lw: &mut Lowering) -> Result<Vec<OpStep>> {
    let graph = lw.graph;
    let mut steps = Vec::new();
    for (i, op) in graph.ops.iter().enumerate() {
        let lowered = super::entry(op)
            .and_then(|e| (e.lower)(lw, op))
            .map_err(|e| anyhow!("graph '{}', op {i} ({}): {e}", graph.name, op.name()))?;
        steps.extend(lowered.into_iter().map(|step| OpStep {
            op_index: i,
            op_name: op.name(),
            step,
        }));
    }
    Ok(steps)
}

/// Threads per block of the grid-stride elementwise kernels.
pub const ELEMENTWISE_THREADS: u32 = 256;

/// Grid of a grid-stride elementwise kernel over `n` elements with 8-element vector paths: one
/// 8-element chunk per thread per pass, at most 4096 blocks.
pub fn elementwise_grid(n: usize) -> (u32, u32, u32) {
    (
        stride_blocks(n, 8 * ELEMENTWISE_THREADS as usize, 4096),
        1,
        1,
    )
}

/// `kernel(x, out, n)`: an f16 map of one input (GELU, QuickGELU).
pub fn unary(lw: &Lowering, kernel: &'static str, x: TensorId, out: TensorId) -> Result<Step> {
    let n = lw.numel(out);
    let args = vec![
        Arg::Ptr(lw.ptr(x, DevElem::F16)?),
        Arg::Ptr(lw.ptr(out, DevElem::F16)?),
        Arg::I32(dim(n, "elements")?),
    ];
    elementwise(lw, kernel, n, args)
}

/// A grid-stride elementwise launch of `kernel` over the `n` elements of its output.
pub fn elementwise(lw: &Lowering, kernel: &'static str, n: usize, args: Vec<Arg>) -> Result<Step> {
    lw.kernel(
        kernel,
        elementwise_grid(n),
        (ELEMENTWISE_THREADS, 1, 1),
        0,
        args,
    )
}
