//! The CUDA backend (cudarc, loaded dynamically so the binary runs without a driver).

pub mod kernels;

use anyhow::{bail, Result};

use super::{Backend, HostData, ProgramId};
use crate::graph::plan::Plan;
use crate::graph::{Graph, StateDesc, TensorId};
use crate::tensor::HostTensor;

pub struct CudaBackend {
    _private: (),
}

impl CudaBackend {
    pub fn new() -> Result<CudaBackend> {
        // cudarc panics when libcuda is absent; ask first.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            bail!("no CUDA driver found (libcuda.so could not be loaded); use --device cpu");
        }
        bail!("the CUDA executor is not part of this build yet; use --device cpu")
    }
}

impl Backend for CudaBackend {
    fn describe(&self) -> String {
        "cuda".into()
    }
    fn act_bytes(&self) -> usize {
        2
    }
    fn load_weights(&mut self, _weights: &[HostTensor]) -> Result<()> {
        bail!("CUDA backend unavailable")
    }
    fn alloc_states(&mut self, _states: &[StateDesc]) -> Result<()> {
        bail!("CUDA backend unavailable")
    }
    fn prepare(&mut self, _graph: &Graph, _plan: &Plan) -> Result<ProgramId> {
        bail!("CUDA backend unavailable")
    }
    fn write_input(&mut self, _p: ProgramId, _t: TensorId, _d: HostData) -> Result<()> {
        bail!("CUDA backend unavailable")
    }
    fn run(&mut self, _p: ProgramId) -> Result<()> {
        bail!("CUDA backend unavailable")
    }
    fn read_f32(&mut self, _p: ProgramId, _t: TensorId) -> Result<Vec<f32>> {
        bail!("CUDA backend unavailable")
    }
    fn synchronize(&mut self) -> Result<()> {
        bail!("CUDA backend unavailable")
    }
    fn copy_bandwidth(&mut self, _bytes: usize) -> Result<f64> {
        bail!("CUDA backend unavailable")
    }
    fn matmul_rate(&mut self, _m: usize, _k: usize, _n: usize) -> Result<f64> {
        bail!("CUDA backend unavailable")
    }
}
