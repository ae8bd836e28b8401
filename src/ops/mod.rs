//! The op registry: one module per op of the graph IR ([`crate::graph::Op`]), each holding the
//! op's shape and dtype rule, its float32 CPU reference, its CUDA lowering, its kernel variants and
//! its test cases. Validation, the CPU executor, the CUDA lowering, the GPU tests, the no-GPU
//! lowering test and the kernel benches all loop over [`REGISTRY`]; nothing else knows an op.
//!
//! A new kernel variant is one kernel in `kernels/<op>.cu` and one [`Variant`] in its module.

pub mod adapter_attention;
pub mod add;
pub mod case;
pub mod concat_rows;
pub mod cpu;
pub mod embedding;
pub mod gelu;
pub mod im2col_patches;
pub mod kernels;
pub mod layernorm;
pub mod linear;
pub mod lowering;
pub mod quick_gelu;
pub mod rmsnorm;
pub mod rope_kv_write;
pub mod sample_token;
pub mod shape;
pub mod silu_mul;
pub mod slice_rows;
pub mod softmax;
pub mod vision_attention;

use anyhow::Result;

use crate::graph::{Graph, Op};
pub use case::{Case, Sizes};
pub use cpu::CpuTensors;
pub use lowering::{DeviceLimits, Lowering, Step, Variants};

/// One kernel of an op that has several: the first of an op's list is its default.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    pub name: &'static str,
    /// What distinguishes it, for help texts and reports.
    pub about: &'static str,
}

/// Every part of one op.
pub struct OpEntry {
    /// [`Op::name`], the module's name and its kernel file's (`kernels/<name>.cu`).
    pub name: &'static str,
    /// Kernel files (stems under `kernels/`) whose entry points this op launches; empty for ops
    /// lowered to device copies.
    pub kernel_files: &'static [&'static str],
    /// The shape and dtype rule: a model-builder bug shows up here, not as a wrong answer.
    pub check: fn(&Graph, &Op) -> Result<(), String>,
    /// The float32 reference.
    pub cpu: fn(&Op, &mut CpuTensors) -> Result<()>,
    /// The CUDA launches (or device copies) that compute it.
    pub lower: fn(&mut Lowering, &Op) -> Result<Vec<Step>>,
    /// Device scratch bytes one launch of the op needs (shared by the ops of a program).
    pub scratch_bytes: fn(&Graph, &Op, &DeviceLimits) -> usize,
    /// Selectable kernels; empty when there is one.
    pub variants: &'static [Variant],
    /// Test and benchmark cases: odd and edge sizes, the tolerance, the bytes they move.
    pub cases: fn(&mut crate::rng::Rng, Sizes) -> Vec<Case>,
}

/// No scratch: the default of most ops.
pub fn no_scratch(_: &Graph, _: &Op, _: &DeviceLimits) -> usize {
    0
}

pub const REGISTRY: &[OpEntry] = &[
    embedding::ENTRY,
    rmsnorm::ENTRY,
    linear::ENTRY,
    silu_mul::ENTRY,
    rope_kv_write::ENTRY,
    adapter_attention::ENTRY,
    layernorm::ENTRY,
    gelu::ENTRY,
    quick_gelu::ENTRY,
    add::ENTRY,
    concat_rows::ENTRY,
    slice_rows::ENTRY,
    im2col_patches::ENTRY,
    vision_attention::ENTRY,
    sample_token::ENTRY,
];

/// The registry entry of `op` (tests/registry.rs keeps one for every op of the IR).
pub fn entry(op: &Op) -> Result<&'static OpEntry> {
    find(op.name()).ok_or_else(|| {
        anyhow::anyhow!(
            "internal error: the op registry has no entry for {}",
            op.name()
        )
    })
}

/// The entry named `name`.
pub fn find(name: &str) -> Option<&'static OpEntry> {
    REGISTRY.iter().find(|e| e.name == name)
}

/// Checks every op's shapes and types by its entry's rule.
pub fn validate(graph: &Graph) -> Result<(), String> {
    for (i, op) in graph.ops.iter().enumerate() {
        entry(op)
            .map_err(|e| e.to_string())
            .and_then(|e| (e.check)(graph, op))
            .map_err(|e| format!("graph '{}', op {i} ({}): {e}", graph.name, op.name()))?;
    }
    Ok(())
}

/// An op given to a module that is not its own: a registry wiring bug.
pub(crate) fn wrong_op(module: &str, op: &Op) -> anyhow::Error {
    anyhow::anyhow!(
        "internal error: the {module} module was given a {} op",
        op.name()
    )
}
