//! Test and benchmark cases of the registry: each op module lists graphs of that one op at
//! odd and edge sizes, with fresh random inputs, the tolerance suited to the op, and what the op
//! must move. The GPU tests run every case on both backends; the lowering test lowers each for an
//! H100; the kernel benches time them.

use half::f16;

use crate::graph::{Elem, Graph, StateDesc};
use crate::ops::lowering::DevElem;
use crate::rng::Rng;
use crate::tensor::HostTensor;

/// Which size list a case list is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizes {
    /// Real-model shapes (7B widths, long contexts): a GPU.
    Gpu,
    /// The same code paths (odd sizes, tile edges, vector and scalar loads) at sizes an
    /// interpreter runs in seconds: the PTX emulator, and the no-GPU lowering test.
    Emulator,
}

impl Sizes {
    /// `gpu` on a GPU, `emu` on the emulator.
    pub fn pick<T: Clone>(self, gpu: &[T], emu: &[T]) -> Vec<T> {
        match self {
            Sizes::Gpu => gpu.to_vec(),
            Sizes::Emulator => emu.to_vec(),
        }
    }
}

/// Host data for one input.
#[derive(Clone, Debug)]
pub enum Data {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

/// The relative L2 error f16 kernels are held to unless an op states otherwise.
pub const F16_TOLERANCE: f32 = 2e-2;

/// One graph (plus setup graphs that fill the states first), with weights and inputs.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub weights: Vec<HostTensor>,
    pub states: Vec<StateDesc>,
    pub setup: Vec<(Graph, Vec<(String, Data)>)>,
    pub graph: Graph,
    pub inputs: Vec<(String, Data)>,
    /// Largest relative L2 error of the CUDA outputs against the CPU reference.
    pub tolerance: f32,
}

impl Case {
    pub fn new(name: String, graph: Graph) -> Case {
        Case {
            name,
            weights: Vec::new(),
            states: Vec::new(),
            setup: Vec::new(),
            graph,
            inputs: Vec::new(),
            tolerance: F16_TOLERANCE,
        }
    }

    pub fn input(mut self, name: &str, d: Data) -> Case {
        self.inputs.push((name.to_string(), d));
        self
    }

    pub fn tolerance(mut self, tolerance: f32) -> Case {
        self.tolerance = tolerance;
        self
    }

    /// Bytes the graph's ops must read and write at least once on the CUDA backend (f16
    /// activations, quantized weights as stored): the denominator of a bandwidth figure.
    pub fn bytes_moved(&self) -> usize {
        let g = &self.graph;
        let mut seen = vec![false; g.tensors.len()];
        let mut total = 0;
        for op in &g.ops {
            for id in op.reads().into_iter().chain(op.writes()) {
                if std::mem::replace(&mut seen[id.0], true) {
                    continue;
                }
                let t = g.desc(id);
                total += match (t.elem, t.storage) {
                    (Elem::Quant, crate::graph::Storage::Weight(w)) => self
                        .weights
                        .get(w)
                        .map_or(0, |h| h.numel() * h.dtype.size()),
                    _ => t.numel() * DevElem::of(t.elem).size(),
                };
            }
        }
        total
    }
}

/// Uniform values in [-amp, amp], rounded to f16 so both backends see the same inputs.
pub fn rnd(rng: &mut Rng, n: usize, amp: f32) -> Vec<f32> {
    (0..n)
        .map(|_| f16::from_f32(((rng.uniform() * 2.0 - 1.0) as f32) * amp).to_f32())
        .collect()
}

/// An f32 weight.
pub fn tensor(shape: &[usize], data: Vec<f32>) -> HostTensor {
    HostTensor::from_f32(shape.to_vec(), data)
}

/// Cases of a one-input elementwise op `make(x, out)` (GELU, QuickGELU): odd widths, a single
/// element row, and many rows.
pub fn unary_cases(
    name: &str,
    rng: &mut Rng,
    sizes: Sizes,
    make: fn(crate::graph::TensorId, crate::graph::TensorId) -> crate::graph::Op,
) -> Vec<Case> {
    sizes
        .pick(
            &[(1, 7), (3, 1000), (257, 4096)],
            &[(1, 7), (3, 1000), (65, 1027)],
        )
        .into_iter()
        .map(|(rows, d)| {
            let mut g = Graph::new(name);
            let x = g.input("x", &[rows, d], Elem::Act);
            let out = g.activation("out", &[rows, d]);
            g.push(make(x, out));
            g.mark_output(out);
            Case::new(format!("{name} {rows}x{d}"), g)
                .input("x", Data::F32(rnd(rng, rows * d, 5.0)))
        })
        .collect()
}
