//! Backends execute planned graphs. The CPU backend is the float32 reference; the CUDA
//! backend runs the same graphs with the kernels in `kernels/`.

pub mod cpu;
pub mod cuda;
pub mod program;

use anyhow::{bail, Result};

use crate::graph::plan::Plan;
use crate::graph::{Graph, StateDesc, TensorId};
use crate::notice::Notice;
use crate::tensor::HostTensor;

/// A prepared graph inside a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramId(pub usize);

pub enum HostData<'a> {
    I32(&'a [i32]),
    F32(&'a [f32]),
}

/// Executes planned graphs. Every backend can also be measured ([`Measure`]): a `&mut dyn
/// Backend` coerces to the `&mut dyn Measure` the benchmarks take.
pub trait Backend: Measure + Send {
    /// One line naming the device, for logs and benchmark reports.
    fn describe(&self) -> String;
    /// Whether the device is an emulator (the PTX emulator behind a drop-in libcuda): results
    /// are real, times are not.
    fn is_emulated(&self) -> bool {
        false
    }
    /// Bytes per element of `Act` tensors (4 for f32, 2 for f16).
    fn act_bytes(&self) -> usize;
    /// Bytes a session may still allocate here (free device memory on a GPU, available RAM on
    /// the CPU); `None` where unknown. Sessions compare their planned bytes with it first.
    fn memory_available(&self) -> Option<usize> {
        None
    }
    /// Uploads every weight once; graphs refer to them by index.
    fn load_weights(&mut self, weights: &[HostTensor]) -> Result<()>;
    /// Has [`Backend::load_weights`] tell `report` how far it has got, where an upload takes
    /// long enough to show (a large model going to a GPU); the CPU reads weights in place.
    fn set_upload_progress(&mut self, _report: UploadProgressFn) {}
    /// A backend on the same device holding this one's uploaded weights (shared, not copied) and
    /// nothing else: its own states, programs and, on a GPU, its own stream. Sessions of one
    /// engine run on such backends side by side, on the weights uploaded once.
    fn share_weights(&self) -> Result<Box<dyn Backend>>;
    /// Allocates the persistent state (KV cache, prompt K/V), zero-filled.
    fn alloc_states(&mut self, states: &[StateDesc]) -> Result<()>;
    /// Keeps a planned graph and allocates what it needs.
    fn prepare(&mut self, graph: &Graph, plan: &Plan) -> Result<ProgramId>;
    fn write_input(&mut self, program: ProgramId, tensor: TensorId, data: HostData) -> Result<()>;
    fn run(&mut self, program: ProgramId) -> Result<()>;
    fn read_f32(&mut self, program: ProgramId, tensor: TensorId) -> Result<Vec<f32>>;
    /// Reads an i32 tensor (a sampled token).
    fn read_i32(&mut self, program: ProgramId, tensor: TensorId) -> Result<Vec<i32>>;
    /// Waits until queued work is done, so a host timer measures it.
    fn synchronize(&mut self) -> Result<()>;
    /// Picks, for graphs prepared from now on, among the kernels of the op families that have
    /// several (`"rmsnorm=naive,adapter_attention=unfused"`; empty: the defaults), so variants can be
    /// compared on the same graph. The CPU reference has one implementation of each op.
    fn set_kernel_variants(&mut self, spec: &str) -> Result<()> {
        if spec.trim().is_empty() {
            return Ok(());
        }
        bail!(
            "kernel variants ('{spec}') are a CUDA option; {} has one implementation of each op",
            self.describe()
        )
    }
    /// What the backend did that its user should know (a fallback it took while running),
    /// since the last call.
    fn take_notices(&mut self) -> Vec<Notice> {
        Vec::new()
    }
}

/// The device's own speeds, measured now, for the rooflines benchmarks compare against.
pub trait Measure {
    /// Copy bandwidth of this device in bytes/s, counting bytes read plus bytes written, measured
    /// now on buffers of `bytes`: the roofline a memory-bound step is compared against.
    fn copy_bandwidth(&mut self, bytes: usize) -> Result<f64>;
    /// Dense matmul rate in FLOP/s (2·m·k·n per product) in the activation precision.
    fn matmul_rate(&mut self, m: usize, k: usize, n: usize) -> Result<f64>;
    /// Bytes of the device's last-level cache (the L2 on a GPU), where known: kernel benchmarks
    /// write twice this between timed runs (`bench::CacheFlush`) so none starts warm.
    fn cache_bytes(&self) -> Option<usize> {
        None
    }
    /// Time of `iters` products `[m, k] · [n, k]ᵀ` by the vendor library a user would otherwise
    /// pick (cuBLAS on CUDA), for comparison only; `None` where there is none (the CPU).
    fn vendor_matmul_time(
        &mut self,
        _m: usize,
        _k: usize,
        _n: usize,
        _iters: u64,
    ) -> Result<Option<(&'static str, std::time::Duration)>> {
        Ok(None)
    }
}

/// How far an upload of weights has got.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UploadProgress {
    /// Whole percent done, in steps of 5; 100 once every weight is on the device.
    pub percent: usize,
    pub done_bytes: usize,
    pub total_bytes: usize,
    pub elapsed: std::time::Duration,
}

/// Receives [`UploadProgress`] as weights reach the device.
pub type UploadProgressFn = Box<dyn FnMut(UploadProgress) + Send>;

/// The smallest magnitude that rounds to infinity in f16 (65504 is the largest finite f16).
pub const F16_OVERFLOW: f32 = 65520.0;

/// A weight holding a finite value the backend's f16 storage cannot (it would become infinite).
#[derive(Debug)]
pub struct WeightOutOfRange {
    /// Index into the weights given to [`Backend::load_weights`].
    pub index: usize,
    pub value: f32,
}

impl std::fmt::Display for WeightOutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "weight {} holds {}, beyond the ±65504 an f16 weight can hold",
            self.index, self.value
        )
    }
}

impl std::error::Error for WeightOutOfRange {}

/// The first finite value f16 cannot hold.
pub fn beyond_f16(values: impl IntoIterator<Item = f32>) -> Option<f32> {
    values
        .into_iter()
        .find(|v| v.is_finite() && v.abs() >= F16_OVERFLOW)
}

/// Which device a backend is opened on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    /// CUDA when a usable GPU is present, else the CPU with a notice. The PTX emulator is not a
    /// GPU: it is taken only with `Cuda` (or `LAV2_REQUIRE_GPU=1`, as the GPU tests set).
    Auto,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            "auto" => Ok(DeviceChoice::Auto),
            other => Err(format!(
                "unknown device '{other}' (expected cpu, cuda or auto)"
            )),
        }
    }
}

/// Opens the backend `choice` names; with `Auto`, a fallback to the CPU is not reported (see
/// [`open_with_notice`]).
pub fn open(choice: DeviceChoice) -> Result<Box<dyn Backend>> {
    open_with_notice(choice).map(|(backend, _)| backend)
}

/// Opens the backend `choice` names, with a notice when `Auto` fell back to the CPU (and why).
pub fn open_with_notice(choice: DeviceChoice) -> Result<(Box<dyn Backend>, Option<Notice>)> {
    let cpu = || -> Box<dyn Backend> { Box::new(cpu::CpuBackend::new()) };
    match choice {
        DeviceChoice::Cpu => Ok((cpu(), None)),
        DeviceChoice::Cuda => Ok((Box::new(cuda::CudaBackend::new()?), None)),
        DeviceChoice::Auto => match cuda::CudaBackend::new() {
            Ok(b) if b.is_emulated() && !require_gpu() => {
                let notice = Notice::naming(
                    &["device"],
                    format!(
                        "found the CUDA emulator '{}', not a GPU; it is used only with {{device}} cuda (or LAV2_REQUIRE_GPU=1); running on the CPU",
                        cuda::EMULATOR_NAME
                    ),
                );
                Ok((cpu(), Some(notice)))
            }
            Ok(b) => Ok((Box::new(b), None)),
            Err(e) => {
                let notice = Notice::of_error(&e, |reason| {
                    format!("CUDA unavailable ({reason}); running on the CPU")
                });
                Ok((cpu(), Some(notice)))
            }
        },
    }
}

/// `LAV2_REQUIRE_GPU=1`: the GPU tests' switch, under which `DeviceChoice::Auto` takes the
/// emulator too.
fn require_gpu() -> bool {
    std::env::var("LAV2_REQUIRE_GPU").is_ok_and(|v| !v.is_empty() && v != "0")
}

pub(crate) fn check_program(count: usize, program: ProgramId) -> Result<()> {
    if program.0 >= count {
        bail!("internal error: unknown program {}", program.0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_says_why_it_fell_back_to_the_cpu() {
        let (backend, notice) = open_with_notice(DeviceChoice::Auto).unwrap();
        let on_cpu = backend.act_bytes() == 4;
        assert_eq!(notice.is_some(), on_cpu, "{notice:?}");
        if let Some(n) = notice {
            assert!(n.to_string().ends_with("running on the CPU"), "{n}");
        }
        assert!(open_with_notice(DeviceChoice::Cpu).unwrap().1.is_none());
    }

    #[test]
    fn f16_range_is_checked_where_rounding_overflows() {
        // 65519 still rounds to 65504; 65520 rounds to infinity.
        assert_eq!(beyond_f16([1.0, -65504.0, 65519.0]), None);
        assert_eq!(beyond_f16([1.0, -65520.0, 7e4]), Some(-65520.0));
        assert_eq!(half::f16::from_f32(65519.0).to_f32(), 65504.0);
        assert!(half::f16::from_f32(F16_OVERFLOW).is_infinite());
        // Infinities and NaN are the file's own, not an overflow of ours.
        assert_eq!(beyond_f16([f32::INFINITY, f32::NAN]), None);
    }
}
