//! cuda-emu: the CUDA driver API over a PTX interpreter, for running lav2's kernels and CUDA
//! backend on machines without a GPU. A test tool, never part of the product.
//!
//! - [`load_image`] parses PTX text (cubin / fatbin / ELF are refused with
//!   `CUDA_ERROR_NO_BINARY_FOR_GPU`) into a pre-decoded [`ir::Module`], cached per process.
//! - [`launch`] runs one grid: warps of 32 threads with independent scheduling, block barriers,
//!   warp collectives, `mma.sync`, `ldmatrix`, `cp.async`, atomics; with the checks of
//!   `compute-sanitizer` (memcheck, initcheck, racecheck, synccheck) and launch limits.
//! - [`driver`] exports the `cu*` symbols cudarc calls, so the cdylib is a drop-in `libcuda.so.1`.
//!
//! Environment: `CUDA_EMU_CHECKS=none` turns the checks off, `CUDA_EMU_SEED=N` seeds the warp
//! order, `CUDA_EMU_PROFILE=FILE` appends one JSON line per launch.

pub mod driver;
pub mod error;
pub mod exec;
pub mod float;
pub mod ir;
pub mod loader;
pub mod memory;
pub mod ptx;

pub use error::{CuError, CuResult};
pub use exec::{launch, LaunchParams};
pub use loader::{load_image, unload, LoadedModule};
pub use memory::{AllocKind, DeviceMemory};

/// The one device the emulator reports.
pub mod device {
    pub const NAME: &str = "cuda-emu (PTX emulator, not a GPU)";
    pub const COMPUTE_CAPABILITY: (i32, i32) = (9, 0);
    pub const MULTIPROCESSORS: i32 = 132;
    pub const MAX_THREADS_PER_BLOCK: u32 = 1024;
    pub const MAX_BLOCK_DIM: [u32; 3] = [1024, 1024, 64];
    pub const MAX_GRID_DIM: [u32; 3] = [i32::MAX as u32, 65535, 65535];
    pub const WARP_SIZE: u32 = 32;
    /// Static + dynamic shared memory a block gets without opting in.
    pub const SHARED_PER_BLOCK: u32 = 48 * 1024;
    /// The most a block may opt into (`cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)`), as an H100.
    pub const SHARED_PER_BLOCK_OPTIN: u32 = 232_448;
    pub const SHARED_PER_MULTIPROCESSOR: u32 = 233_472;
    pub const REGISTERS_PER_BLOCK: i32 = 65536;
    pub const CLOCK_RATE_KHZ: i32 = 1_755_000;
    pub const MEMORY_CLOCK_RATE_KHZ: i32 = 2_619_000;
    pub const MEMORY_BUS_WIDTH: i32 = 5120;
    pub const L2_CACHE_BYTES: i32 = 50 * 1024 * 1024;
    /// Device memory the emulator reports and allows (host memory backs it).
    pub const TOTAL_MEMORY: u64 = 16 << 30;
    /// `cuDriverGetVersion`.
    pub const DRIVER_VERSION: i32 = 13000;
}

/// Settings read from the environment once per process.
#[derive(Clone, Debug)]
pub struct Options {
    /// memcheck, initcheck, racecheck, synccheck (`CUDA_EMU_CHECKS=none` turns them off).
    pub checks: bool,
    /// Seeds the order blocks and ready warps run in (`CUDA_EMU_SEED`, default 1), mixed with the
    /// kernel's name: the same seed gives every launch of a kernel the same order.
    pub seed: u64,
    /// `CUDA_EMU_PROFILE=FILE`: one JSON line per launch is appended there.
    pub profile: Option<std::path::PathBuf>,
}

impl Options {
    pub fn from_env() -> Options {
        let checks = !matches!(
            std::env::var("CUDA_EMU_CHECKS").as_deref(),
            Ok("none") | Ok("0") | Ok("off")
        );
        let seed = std::env::var("CUDA_EMU_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1);
        let profile = std::env::var_os("CUDA_EMU_PROFILE")
            .filter(|s| !s.is_empty())
            .map(std::path::PathBuf::from);
        Options {
            checks,
            seed,
            profile,
        }
    }

    /// The process-wide options (read once).
    pub fn global() -> &'static Options {
        static OPTS: std::sync::OnceLock<Options> = std::sync::OnceLock::new();
        OPTS.get_or_init(Options::from_env)
    }
}

/// Prints one finding line to stderr, as every check does: `cuda-emu: <check>: …`.
pub fn report(line: &str) {
    eprintln!("cuda-emu: {line}");
}
