//! The float32 reference backend: plain Rust, the oracle every kernel is tested against.

mod bind;
mod measure;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{bail, Result};

use super::{check_program, Backend, HostData, ProgramId};
use crate::graph::plan::Plan;
use crate::graph::{Elem, Graph, StateDesc, Storage, TensorId};
use crate::ops::linear::reference as matmul;
use crate::tensor::{DType, HostTensor};

/// A weight as the CPU reads it: a view of the mapped file when it is already aligned f32.
enum CpuWeight {
    Mapped(HostTensor),
    Owned(Vec<f32>),
    /// Quantized values and zero points, read as bytes.
    Bytes(HostTensor),
}

impl CpuWeight {
    fn as_slice(&self) -> &[f32] {
        match self {
            CpuWeight::Mapped(t) => t.f32_view().expect("checked when loaded"),
            CpuWeight::Owned(v) => v,
            CpuWeight::Bytes(_) => &[],
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            CpuWeight::Bytes(t) => t.bytes.as_slice(),
            _ => &[],
        }
    }
}

struct CpuProgram {
    graph: Graph,
    plan: Plan,
    memory: Memory,
}

/// What a program owns: its activation arena and its input buffers.
struct Memory {
    arena: Vec<f32>,
    inputs_f32: HashMap<TensorId, Vec<f32>>,
    inputs_i32: HashMap<TensorId, Vec<i32>>,
}

pub struct CpuBackend {
    /// Shared by every backend made by [`Backend::share_weights`]: weights are read only.
    weights: Arc<Vec<CpuWeight>>,
    states: Vec<Vec<f32>>,
    programs: Vec<CpuProgram>,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuBackend {
    pub fn new() -> CpuBackend {
        CpuBackend {
            weights: Arc::new(Vec::new()),
            states: Vec::new(),
            programs: Vec::new(),
        }
    }
}

impl Backend for CpuBackend {
    fn describe(&self) -> String {
        let threads = std::thread::available_parallelism()
            .map(|t| t.get())
            .unwrap_or(1);
        format!("cpu (f32 reference, {threads} threads)")
    }

    fn act_bytes(&self) -> usize {
        4
    }

    fn memory_available(&self) -> Option<usize> {
        crate::limits::host_memory_available()
    }

    fn load_weights(&mut self, weights: &[HostTensor]) -> Result<()> {
        if !self.programs.is_empty() {
            bail!("internal error: weights replaced after graphs were prepared");
        }
        let loaded: Vec<CpuWeight> = weights
            .iter()
            .map(|t| {
                Ok(if matches!(t.dtype, DType::I8 | DType::U8) {
                    CpuWeight::Bytes(t.clone())
                } else if t.f32_view().is_some() {
                    CpuWeight::Mapped(t.clone())
                } else {
                    CpuWeight::Owned(t.to_f32()?)
                })
            })
            .collect::<Result<_>>()?;
        self.weights = Arc::new(loaded);
        Ok(())
    }

    fn share_weights(&self) -> Result<Box<dyn Backend>> {
        Ok(Box::new(CpuBackend {
            weights: self.weights.clone(),
            states: Vec::new(),
            programs: Vec::new(),
        }))
    }

    fn alloc_states(&mut self, states: &[StateDesc]) -> Result<()> {
        self.states = states
            .iter()
            .map(|s| crate::limits::try_zeroed_f32(s.shape.iter().product(), &s.name))
            .collect::<Result<_>>()?;
        Ok(())
    }

    fn prepare(&mut self, graph: &Graph, plan: &Plan) -> Result<ProgramId> {
        let mut inputs_f32 = HashMap::new();
        let mut inputs_i32 = HashMap::new();
        for (i, t) in graph.tensors.iter().enumerate() {
            match t.storage {
                Storage::Input if t.elem == Elem::I32 => {
                    inputs_i32.insert(TensorId(i), vec![0i32; t.numel()]);
                }
                Storage::Input => {
                    inputs_f32.insert(TensorId(i), vec![0f32; t.numel()]);
                }
                Storage::Weight(w) if w >= self.weights.len() => {
                    bail!(
                        "internal error: graph '{}' uses weight {w} which was not loaded",
                        graph.name
                    )
                }
                // Views are raw pointers: a float weight must really hold its elements.
                Storage::Weight(w)
                    if t.elem != Elem::Quant && self.weights[w].as_slice().len() != t.numel() =>
                {
                    bail!(
                        "internal error: graph '{}' reads weight '{}' as {} floats, it holds {}",
                        graph.name,
                        t.name,
                        t.numel(),
                        self.weights[w].as_slice().len()
                    )
                }
                Storage::State(s) if s >= self.states.len() => {
                    bail!(
                        "internal error: graph '{}' uses state {s} which was not allocated",
                        graph.name
                    )
                }
                _ => {}
            }
        }
        self.programs.push(CpuProgram {
            graph: graph.clone(),
            plan: plan.clone(),
            memory: Memory {
                arena: crate::limits::try_zeroed_f32(
                    plan.arena_bytes / 4,
                    &format!("the activations of graph '{}'", graph.name),
                )?,
                inputs_f32,
                inputs_i32,
            },
        });
        Ok(ProgramId(self.programs.len() - 1))
    }

    fn write_input(&mut self, program: ProgramId, tensor: TensorId, data: HostData) -> Result<()> {
        check_program(self.programs.len(), program)?;
        let p = &mut self.programs[program.0];
        match data {
            HostData::I32(d) => match p.memory.inputs_i32.get_mut(&tensor) {
                Some(buf) if buf.len() == d.len() => buf.copy_from_slice(d),
                _ => bail!("internal error: bad i32 input {tensor:?}"),
            },
            HostData::F32(d) => match p.memory.inputs_f32.get_mut(&tensor) {
                Some(buf) if buf.len() == d.len() => buf.copy_from_slice(d),
                _ => bail!("internal error: bad f32 input {tensor:?}"),
            },
        }
        Ok(())
    }

    fn run(&mut self, program: ProgramId) -> Result<()> {
        check_program(self.programs.len(), program)?;
        let p = &mut self.programs[program.0];
        for op in &p.graph.ops {
            let stores = bind::Stores {
                weights: &self.weights,
                states: &mut self.states,
                memory: &mut p.memory,
            };
            let mut tensors = bind::tensors(&p.graph, &p.plan, stores, op)?;
            (crate::ops::entry(op)?.cpu)(op, &mut tensors)?;
        }
        Ok(())
    }

    fn synchronize(&mut self) -> Result<()> {
        Ok(())
    }

    fn read_i32(&mut self, program: ProgramId, tensor: TensorId) -> Result<Vec<i32>> {
        check_program(self.programs.len(), program)?;
        let p = &self.programs[program.0];
        let desc = &p.graph.tensors[tensor.0];
        match (desc.elem, desc.storage) {
            (Elem::I32, Storage::Input) => Ok(p.memory.inputs_i32[&tensor].clone()),
            // i32 activations share the f32 arena; their bits are the integer.
            (Elem::I32, Storage::Activation) => {
                Ok(bind::stored(p, &self.weights, &self.states, tensor)?
                    .iter()
                    .map(|v| v.to_bits() as i32)
                    .collect())
            }
            _ => bail!("internal error: '{}' does not hold integers", desc.name),
        }
    }

    fn read_f32(&mut self, program: ProgramId, tensor: TensorId) -> Result<Vec<f32>> {
        check_program(self.programs.len(), program)?;
        if self.programs[program.0].graph.desc(tensor).elem == Elem::I32 {
            bail!("internal error: {tensor:?} holds integers");
        }
        let p = &self.programs[program.0];
        Ok(bind::stored(p, &self.weights, &self.states, tensor)?.to_vec())
    }
}
