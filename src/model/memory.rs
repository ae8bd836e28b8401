//! What a model's graphs need beside its weights, planned without a device: the figures a
//! user checks before choosing a context and a device.

use super::llama::{self, Head};
use super::Model;
use crate::graph::plan::Plan;

/// Longest prompt chunk one forward graph takes (the session splits longer prompts).
pub const MAX_CHUNK: usize = 512;

/// Bytes of one graph's activations at one element size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaBytes {
    /// The planned arena, buffers reused once their last reader is done.
    pub planned: usize,
    /// Every activation in a buffer of its own: what the planning saves is the difference.
    pub unplanned: usize,
}

/// One forward graph's activations in f32 (the CPU) and f16 (CUDA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphMemory {
    pub name: String,
    pub f32: ArenaBytes,
    pub f16: ArenaBytes,
}

/// The session state and the activations of a single-token step and of a prompt chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedMemory {
    /// Elements of the state one sequence keeps (KV cache, prompt K/V).
    pub state_elements: usize,
    pub graphs: Vec<GraphMemory>,
}

/// Plans `model`'s decode step and its longest prompt chunk (up to 512 tokens) for one
/// sequence.
pub fn planned_memory(model: &Model) -> PlannedMemory {
    let state_elements = llama::states(model, 1)
        .iter()
        .map(|st| st.shape.iter().product::<usize>())
        .sum();
    let chunk = model.config.max_seq_len.min(MAX_CHUNK);
    let graphs = [1, chunk]
        .into_iter()
        .map(|tokens| {
            let g = llama::build_forward(model, 1, tokens, Head::LastLogits);
            let bytes = |element_bytes| {
                let plan = Plan::new(&g, element_bytes);
                ArenaBytes {
                    planned: plan.arena_bytes,
                    unplanned: plan.unplanned_bytes,
                }
            };
            GraphMemory {
                name: g.name.clone(),
                f32: bytes(4),
                f16: bytes(2),
            }
        })
        .collect();
    PlannedMemory {
        state_elements,
        graphs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::synthetic;
    use crate::quant::QuantFormat;

    #[test]
    fn plans_a_decode_step_and_a_prompt_chunk() {
        let preset = synthetic::preset("tiny", 64).unwrap();
        let model = synthetic::build(&preset, 0, QuantFormat::None, true);
        let m = planned_memory(&model);
        assert!(m.state_elements > 0);
        assert_eq!(m.graphs.len(), 2);
        for g in &m.graphs {
            assert!(g.f16.planned < g.f32.planned, "{g:?}");
            assert!(g.f32.planned <= g.f32.unplanned, "{g:?}");
        }
    }
}
