//! cuBLAS as a comparison variant for the benchmarks only — the model never calls it: an f16
//! product with f32 accumulation through `cublasGemmEx` on the backend's stream. libcublas is
//! opened at run time; where it cannot be found (or lacks a symbol) the comparison is an error
//! that says so, never a panic.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use anyhow::{anyhow, bail, Result};
use cudarc::cublas::{result, sys};
use cudarc::driver::CudaStream;

pub struct Cublas {
    handle: sys::cublasHandle_t,
}

// SAFETY: a cuBLAS handle may move between threads; this one is used only through
// `&mut CudaBackend`, so never from two threads at once.
unsafe impl Send for Cublas {}

/// cudarc panics on a missing library symbol: turn that into an error.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err(anyhow!("cuBLAS {what} panicked")))
}

impl Cublas {
    pub fn new(stream: &CudaStream) -> Result<Cublas> {
        // SAFETY: only tries to open the library.
        if !unsafe { sys::is_culib_present() } {
            bail!("libcublas was not found on the library search path (LD_LIBRARY_PATH)");
        }
        guarded("setup", || {
            let handle = result::create_handle().map_err(|e| anyhow!("cublasCreate: {e:?}"))?;
            // SAFETY: a live handle and this context's stream.
            unsafe { result::set_stream(handle, stream.cu_stream() as _) }
                .map_err(|e| anyhow!("cublasSetStream: {e:?}"))?;
            Ok(Cublas { handle })
        })
    }

    /// `y[m, n] = x[m, k] · w[n, k]ᵀ`, row-major f16, f32 accumulation. Column-major cuBLAS sees
    /// `yᵀ[n, m] = op_T(w as k×n) · xᵀ(k×m)`.
    ///
    /// # Safety
    /// `x`, `w`, `y` are device allocations of at least `m·k`, `n·k`, `m·n` halves.
    pub unsafe fn matmul_f16(&self, x: u64, w: u64, y: u64, m: i32, k: i32, n: i32) -> Result<()> {
        let (alpha, beta) = (1.0f32, 0.0f32);
        guarded("gemm", || {
            result::gemm_ex(
                self.handle,
                sys::cublasOperation_t::CUBLAS_OP_T,
                sys::cublasOperation_t::CUBLAS_OP_N,
                n,
                m,
                k,
                &alpha as *const f32 as *const c_void,
                w as *const c_void,
                sys::cudaDataType::CUDA_R_16F,
                k,
                x as *const c_void,
                sys::cudaDataType::CUDA_R_16F,
                k,
                &beta as *const f32 as *const c_void,
                y as *mut c_void,
                sys::cudaDataType::CUDA_R_16F,
                n,
                sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
            .map_err(|e| anyhow!("cublasGemmEx: {e:?}"))
        })
    }
}

impl Drop for Cublas {
    fn drop(&mut self) {
        // SAFETY: the handle is live and dropped once.
        let _ = guarded("teardown", || {
            unsafe { result::destroy_handle(self.handle) }.map_err(|e| anyhow!("{e:?}"))
        });
    }
}
