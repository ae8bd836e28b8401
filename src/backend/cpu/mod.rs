//! The float32 reference backend: plain Rust, the oracle every kernel is tested against.

pub mod attention;
pub mod elementwise;
pub mod matmul;
mod measure;
pub mod norm;

use std::collections::HashMap;

use anyhow::{anyhow, bail, Result};

use super::{check_program, Backend, HostData, ProgramId};
use crate::graph::plan::Plan;
use crate::graph::{Elem, Graph, Op, StateDesc, Storage, TensorId};
use crate::quant::QuantView;
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
    arena: Vec<f32>,
    inputs_f32: HashMap<TensorId, Vec<f32>>,
    inputs_i32: HashMap<TensorId, Vec<i32>>,
}

pub struct CpuBackend {
    weights: Vec<CpuWeight>,
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
            weights: Vec::new(),
            states: Vec::new(),
            programs: Vec::new(),
        }
    }
}

/// Raw view of one float tensor for the duration of one op. The planner guarantees that
/// tensors alive at the same time never share arena bytes, and inputs, weights and states
/// live in their own allocations, so distinct ids never alias.
#[derive(Clone, Copy)]
struct Raw {
    ptr: *mut f32,
    len: usize,
}

impl Raw {
    /// SAFETY: see the type's comment; callers never take two views of the same id mutably.
    unsafe fn get<'a>(self) -> &'a [f32] {
        std::slice::from_raw_parts(self.ptr, self.len)
    }
    unsafe fn get_mut<'a>(self) -> &'a mut [f32] {
        std::slice::from_raw_parts_mut(self.ptr, self.len)
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
        self.weights = weights
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
        Ok(())
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
            arena: crate::limits::try_zeroed_f32(
                plan.arena_bytes / 4,
                &format!("the activations of graph '{}'", graph.name),
            )?,
            inputs_f32,
            inputs_i32,
        });
        Ok(ProgramId(self.programs.len() - 1))
    }

    fn write_input(&mut self, program: ProgramId, tensor: TensorId, data: HostData) -> Result<()> {
        check_program(self.programs.len(), program)?;
        let p = &mut self.programs[program.0];
        match data {
            HostData::I32(d) => match p.inputs_i32.get_mut(&tensor) {
                Some(buf) if buf.len() == d.len() => buf.copy_from_slice(d),
                _ => bail!("internal error: bad i32 input {tensor:?}"),
            },
            HostData::F32(d) => match p.inputs_f32.get_mut(&tensor) {
                Some(buf) if buf.len() == d.len() => buf.copy_from_slice(d),
                _ => bail!("internal error: bad f32 input {tensor:?}"),
            },
        }
        Ok(())
    }

    fn run(&mut self, program: ProgramId) -> Result<()> {
        check_program(self.programs.len(), program)?;
        // The ops are lent out for the run instead of cloned on every decode step.
        let ops = std::mem::take(&mut self.programs[program.0].graph.ops);
        let result = ops.iter().try_for_each(|op| self.run_op(program, op));
        self.programs[program.0].graph.ops = ops;
        result
    }

    fn synchronize(&mut self) -> Result<()> {
        Ok(())
    }

    fn read_i32(&mut self, program: ProgramId, tensor: TensorId) -> Result<Vec<i32>> {
        check_program(self.programs.len(), program)?;
        let p = &self.programs[program.0];
        let desc = &p.graph.tensors[tensor.0];
        match (desc.elem, desc.storage) {
            (Elem::I32, Storage::Input) => Ok(p.inputs_i32[&tensor].clone()),
            // i32 activations share the f32 arena; their bits are the integer.
            (Elem::I32, Storage::Activation) => {
                let raw = self.raw(program, tensor);
                // SAFETY: no op is running; a plain read.
                Ok(unsafe { raw.get() }
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
        let raw = self.raw(program, tensor);
        // SAFETY: no op is running; this is a plain read.
        Ok(unsafe { raw.get() }.to_vec())
    }
}

impl CpuBackend {
    fn raw(&mut self, program: ProgramId, id: TensorId) -> Raw {
        let p = &mut self.programs[program.0];
        let desc = &p.graph.tensors[id.0];
        let len = desc.numel();
        let ptr = match desc.storage {
            Storage::Activation => {
                let off = p.plan.offsets[id.0].expect("planned activation") / 4;
                p.arena[off..off + len].as_mut_ptr()
            }
            Storage::Input => p.inputs_f32.get_mut(&id).expect("f32 input").as_mut_ptr(),
            Storage::Weight(w) => self.weights[w].as_slice().as_ptr() as *mut f32,
            Storage::State(s) => self.states[s].as_mut_ptr(),
        };
        Raw { ptr, len }
    }

    /// Bytes of a quantized weight; valid as long as the weights are loaded.
    fn weight_bytes<'a>(&self, program: ProgramId, id: TensorId) -> &'a [u8] {
        match self.programs[program.0].graph.tensors[id.0].storage {
            Storage::Weight(w) => {
                let b = self.weights[w].as_bytes();
                // SAFETY: weights are not modified or dropped while a program runs.
                unsafe { std::slice::from_raw_parts(b.as_ptr(), b.len()) }
            }
            _ => &[],
        }
    }

    fn ints(&self, program: ProgramId, id: TensorId) -> &[i32] {
        &self.programs[program.0].inputs_i32[&id]
    }

    fn scalar(&self, program: ProgramId, id: TensorId) -> Result<usize> {
        let v = self.ints(program, id)[0];
        if v < 0 {
            bail!("negative position {v}");
        }
        Ok(v as usize)
    }

    /// The start position of a RoPE / attention op, checked against each sequence's cache.
    fn start_position(&self, pid: ProgramId, op: &Op, start_pos: TensorId) -> Result<usize> {
        let start = self.scalar(pid, start_pos)?;
        let graph = &self.programs[pid.0].graph;
        let (rows, cache_rows) = graph
            .per_sequence(op)
            .ok_or_else(|| anyhow!("internal error: {} has no positions", op.name()))?
            .map_err(|e| anyhow!(e))?;
        crate::graph::check_positions(start, rows, cache_rows).map_err(|e| anyhow!(e))?;
        Ok(start)
    }

    fn run_op(&mut self, pid: ProgramId, op: &Op) -> Result<()> {
        let shape = |s: &Self, id: TensorId| s.programs[pid.0].graph.tensors[id.0].shape.clone();
        // SAFETY (every `get`/`get_mut` below): distinct tensor ids never alias (see `Raw`),
        // and each id is viewed mutably at most once per op.
        unsafe {
            match op {
                Op::Embedding { ids, table, out } => {
                    let dim = *shape(self, *table).last().unwrap();
                    let vocab = shape(self, *table)[0];
                    let ids_v = self.ints(pid, *ids).to_vec();
                    if let Some(bad) = ids_v.iter().find(|&&i| i < 0 || i as usize >= vocab) {
                        bail!("token id {bad} is outside the vocabulary of {vocab}");
                    }
                    let table = self.raw(pid, *table).get();
                    elementwise::embedding(&ids_v, table, dim, self.raw(pid, *out).get_mut());
                }
                Op::RmsNorm {
                    x,
                    residual,
                    weight,
                    bias,
                    out,
                    eps,
                } => {
                    let x = x.map(|x| self.raw(pid, x).get());
                    let bias = bias.map(|b| self.raw(pid, b).get());
                    norm::rmsnorm(
                        x,
                        self.raw(pid, *residual).get_mut(),
                        self.raw(pid, *weight).get(),
                        bias,
                        self.raw(pid, *out).get_mut(),
                        *eps,
                    );
                }
                Op::Linear {
                    x,
                    w,
                    quant,
                    bias,
                    out_scale,
                    residual,
                    out,
                } => {
                    let ws = shape(self, *w);
                    let weights = match quant {
                        None => matmul::Weights::Dense(self.raw(pid, *w).get()),
                        Some(q) => matmul::Weights::Quant(QuantView {
                            format: q.format,
                            in_features: ws[1],
                            values: self.weight_bytes(pid, *w),
                            scales: self.raw(pid, q.scales).get(),
                            zeros: q.zeros.map(|z| self.weight_bytes(pid, z)),
                        }),
                    };
                    let args = matmul::LinearArgs {
                        x: self.raw(pid, *x).get(),
                        w: weights,
                        bias: bias.map(|b| self.raw(pid, b).get()),
                        out_scale: out_scale.map(|b| self.raw(pid, b).get()),
                        residual: residual.map(|b| self.raw(pid, b).get()),
                        rows: self.raw(pid, *x).len / ws[1],
                        in_features: ws[1],
                        out_features: ws[0],
                    };
                    matmul::linear(&args, self.raw(pid, *out).get_mut());
                }
                Op::SiluMul { gate, up, out } => elementwise::silu_mul(
                    self.raw(pid, *gate).get(),
                    self.raw(pid, *up).get(),
                    self.raw(pid, *out).get_mut(),
                ),
                Op::RopeKvWrite {
                    q,
                    k,
                    v,
                    k_cache,
                    v_cache,
                    start_pos,
                    n_heads,
                    n_kv_heads,
                    head_dim,
                    theta,
                    interleaved,
                    batch,
                } => {
                    let start = self.start_position(pid, op, *start_pos)?;
                    let args = attention::RopeArgs {
                        start_pos: start,
                        n_heads: *n_heads,
                        n_kv_heads: *n_kv_heads,
                        head_dim: *head_dim,
                        theta: *theta,
                        interleaved: *interleaved,
                        batch: *batch,
                    };
                    attention::rope_kv_write(
                        &args,
                        self.raw(pid, *q).get_mut(),
                        self.raw(pid, *k).get(),
                        self.raw(pid, *v).get(),
                        self.raw(pid, *k_cache).get_mut(),
                        self.raw(pid, *v_cache).get_mut(),
                    );
                }
                Op::AdapterAttention {
                    q,
                    k_cache,
                    v_cache,
                    prompt,
                    start_pos,
                    out,
                    n_heads,
                    n_kv_heads,
                    head_dim,
                    batch,
                } => {
                    let start = self.start_position(pid, op, *start_pos)?;
                    let args = attention::AttentionArgs {
                        start_pos: start,
                        batch: *batch,
                        n_heads: *n_heads,
                        n_kv_heads: *n_kv_heads,
                        head_dim: *head_dim,
                        prompt: prompt.map(|p| {
                            (
                                self.raw(pid, p.k).get(),
                                self.raw(pid, p.v).get(),
                                self.raw(pid, p.gate).get(),
                            )
                        }),
                    };
                    attention::adapter_attention(
                        &args,
                        self.raw(pid, *q).get(),
                        self.raw(pid, *k_cache).get(),
                        self.raw(pid, *v_cache).get(),
                        self.raw(pid, *out).get_mut(),
                    );
                }
                Op::LayerNorm {
                    x,
                    weight,
                    bias,
                    out,
                    eps,
                } => norm::layernorm(
                    self.raw(pid, *x).get(),
                    self.raw(pid, *weight).get(),
                    self.raw(pid, *bias).get(),
                    self.raw(pid, *out).get_mut(),
                    *eps,
                ),
                Op::Gelu { x, out } => {
                    elementwise::gelu(self.raw(pid, *x).get(), self.raw(pid, *out).get_mut())
                }
                Op::QuickGelu { x, out } => {
                    elementwise::quick_gelu(self.raw(pid, *x).get(), self.raw(pid, *out).get_mut())
                }
                Op::Add { a, b, out } => elementwise::add(
                    self.raw(pid, *a).get(),
                    self.raw(pid, *b).get(),
                    self.raw(pid, *out).get_mut(),
                ),
                Op::ConcatRows { a, b, out } => {
                    let a = self.raw(pid, *a).get();
                    let b = self.raw(pid, *b).get();
                    let o = self.raw(pid, *out).get_mut();
                    o[..a.len()].copy_from_slice(a);
                    o[a.len()..].copy_from_slice(b);
                }
                Op::SliceRows {
                    x,
                    start,
                    step,
                    out,
                } => {
                    let cols = *shape(self, *out).last().unwrap();
                    let o = self.raw(pid, *out).get_mut();
                    let x = self.raw(pid, *x).get();
                    for (j, row) in o.chunks_exact_mut(cols).enumerate() {
                        let r = start + j * step;
                        row.copy_from_slice(&x[r * cols..(r + 1) * cols]);
                    }
                }
                Op::Im2ColPatches { pixels, out, patch } => {
                    let size = shape(self, *pixels)[1];
                    elementwise::im2col_patches(
                        self.raw(pid, *pixels).get(),
                        size,
                        *patch,
                        self.raw(pid, *out).get_mut(),
                    );
                }
                Op::SampleToken {
                    logits,
                    uniform,
                    out,
                    temperature,
                    top_p,
                } => {
                    let out = self.raw(pid, *out).get_mut();
                    let uniform = self.raw(pid, *uniform).get();
                    let logits = self.raw(pid, *logits).get();
                    let vocab = logits.len() / out.len();
                    for (i, row) in logits.chunks_exact(vocab).enumerate() {
                        // No finite largest logit (all NaN, all -inf, or a +inf): no token
                        // can be drawn; -1 tells the session so (as the CUDA kernels do).
                        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let token = if !max.is_finite() {
                            u32::MAX
                        } else if *temperature == 0.0 {
                            crate::generate::argmax(row)
                        } else {
                            crate::generate::sample_top_p(
                                row,
                                *temperature,
                                *top_p,
                                uniform[i] as f64,
                            )
                        };
                        out[i] = f32::from_bits(token);
                    }
                }
                Op::VisionAttention { qkv, out, n_heads } => {
                    let s = shape(self, *out);
                    attention::vision_attention(
                        self.raw(pid, *qkv).get(),
                        self.raw(pid, *out).get_mut(),
                        s[0],
                        s[1],
                        *n_heads,
                    );
                }
            }
        }
        Ok(())
    }
}
