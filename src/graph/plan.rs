//! Buffer planning: every activation gets a byte offset in one arena, reusing the space of
//! tensors whose last reader has already run.

use super::{Elem, Graph, Storage};

/// Offsets are aligned so any backend may use vector loads on every tensor.
pub const ALIGN: usize = 256;

#[derive(Clone, Debug)]
pub struct Plan {
    /// Byte offset of each activation in the arena (`None` for inputs, weights, states).
    pub offsets: Vec<Option<usize>>,
    /// Bytes of each tensor in this backend's precision.
    pub bytes: Vec<usize>,
    /// Size of the arena.
    pub arena_bytes: usize,
    /// What the arena would take without reuse, to show what planning saved.
    pub unplanned_bytes: usize,
}

pub fn elem_bytes(elem: Elem, act_bytes: usize) -> usize {
    match elem {
        Elem::Act => act_bytes,
        Elem::F32 | Elem::I32 => 4,
        Elem::Quant => 1,
    }
}

impl Plan {
    /// Plans `graph` for a backend whose activations take `act_bytes` bytes per element.
    pub fn new(graph: &Graph, act_bytes: usize) -> Plan {
        let n = graph.tensors.len();
        let bytes: Vec<usize> = graph
            .tensors
            .iter()
            .map(|t| t.numel() * elem_bytes(t.elem, act_bytes))
            .collect();
        let mut first = vec![usize::MAX; n];
        let mut last = vec![0usize; n];
        for (i, op) in graph.ops.iter().enumerate() {
            for id in op.writes().into_iter().chain(op.reads()) {
                first[id.0] = first[id.0].min(i);
                last[id.0] = last[id.0].max(i);
            }
        }
        for out in &graph.outputs {
            last[out.0] = usize::MAX;
        }
        // Live blocks as (offset, size, last use), kept sorted by offset for first-fit.
        let mut live: Vec<(usize, usize, usize)> = Vec::new();
        let mut offsets = vec![None; n];
        let mut arena_bytes = 0;
        let mut unplanned_bytes = 0;
        for (i, op) in graph.ops.iter().enumerate() {
            live.retain(|&(_, _, end)| end >= i);
            for id in op.writes() {
                let t = &graph.tensors[id.0];
                if t.storage != Storage::Activation || offsets[id.0].is_some() {
                    continue;
                }
                let size = bytes[id.0].div_ceil(ALIGN) * ALIGN;
                unplanned_bytes += size;
                let mut offset = 0;
                let mut slot = live.len();
                for (j, &(o, s, _)) in live.iter().enumerate() {
                    if o >= offset + size {
                        slot = j;
                        break;
                    }
                    offset = offset.max(o + s);
                }
                live.insert(slot, (offset, size, last[id.0]));
                offsets[id.0] = Some(offset);
                arena_bytes = arena_bytes.max(offset + size);
            }
        }
        Plan {
            offsets,
            bytes,
            arena_bytes,
            unplanned_bytes,
        }
    }
}

impl Plan {
    /// The byte range of `id` in the arena, when it is an activation.
    fn range(&self, id: crate::graph::TensorId) -> Option<std::ops::Range<usize>> {
        self.offsets[id.0].map(|o| o..o + self.bytes[id.0])
    }

    /// Proves what the CPU executor's borrow splitting (and every kernel) relies on: no op writes
    /// a weight, and no tensor an op writes shares a byte with another tensor the op touches.
    pub fn check_no_alias(&self, graph: &Graph) -> Result<(), String> {
        for (i, op) in graph.ops.iter().enumerate() {
            let (reads, writes) = (op.reads(), op.writes());
            for &w in &writes {
                let t = graph.desc(w);
                if matches!(t.storage, Storage::Weight(_)) {
                    return Err(format!(
                        "graph '{}', op {i} ({}) writes the weight '{}'",
                        graph.name,
                        op.name(),
                        t.name
                    ));
                }
                for &other in reads.iter().chain(&writes).filter(|&&o| o != w) {
                    let clash = match (t.storage, graph.desc(other).storage) {
                        (Storage::Activation, Storage::Activation) => {
                            match (self.range(w), self.range(other)) {
                                (Some(a), Some(b)) => a.start < b.end && b.start < a.end,
                                _ => false,
                            }
                        }
                        (Storage::State(a), Storage::State(b)) => a == b,
                        _ => false,
                    };
                    if clash {
                        return Err(format!(
                            "graph '{}', op {i} ({}): '{}' is placed over '{}'",
                            graph.name,
                            op.name(),
                            t.name,
                            graph.desc(other).name
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Graph, Op};

    #[test]
    fn planner_reuses_dead_buffers_and_never_overlaps_live_ones() {
        let mut g = Graph::new("chain");
        let x = g.input("x", &[64], Elem::Act);
        let mut prev = x;
        let mut ids = vec![];
        for i in 0..6 {
            let out = g.activation(&format!("a{i}"), &[64]);
            g.push(Op::Gelu { x: prev, out });
            ids.push(out);
            prev = out;
        }
        g.mark_output(prev);
        let plan = Plan::new(&g, 4);
        // A chain needs two live buffers at a time, never six.
        assert_eq!(plan.arena_bytes, 2 * ALIGN);
        assert_eq!(plan.unplanned_bytes, 6 * ALIGN);
        for w in ids.windows(2) {
            assert_ne!(plan.offsets[w[0].0], plan.offsets[w[1].0]);
        }
    }
}
