//! Binding an op's tensors to slices without raw pointers: weights and inputs are shared
//! borrows; written activations are cut out of the arena with `split_at_mut`, and written states
//! are distinct elements of the state list, so the borrow checker itself proves that no
//! written slice overlaps anything else the op sees. Overlaps the planner should have prevented
//! ([`crate::graph::plan::Plan::check_no_alias`]) are errors here, never undefined behaviour.

use anyhow::{anyhow, bail, Result};

use super::{CpuProgram, CpuWeight, Memory};
use crate::graph::plan::Plan;
use crate::graph::Graph;
use crate::graph::{Elem, Op, Storage, TensorId};
use crate::ops::CpuTensors;

/// Where a program's tensors are stored.
pub(super) struct Stores<'a> {
    pub weights: &'a [CpuWeight],
    pub states: &'a mut [Vec<f32>],
    pub memory: &'a mut Memory,
}

/// The tensors of `op` of `graph` (planned as `plan`), bound for its CPU reference.
pub(super) fn tensors<'a>(
    graph: &'a Graph,
    plan: &Plan,
    stores: Stores<'a>,
    op: &Op,
) -> Result<CpuTensors<'a>> {
    let Stores {
        weights,
        states,
        memory,
    } = stores;
    let Memory {
        arena,
        inputs_f32,
        inputs_i32,
    } = memory;
    let writes = op.writes();
    let mut reads = op.reads();
    reads.retain(|r| !writes.contains(r));
    reads.sort();
    reads.dedup();
    let mut t = CpuTensors::new(graph);
    let overlap = |a: TensorId, b: TensorId| {
        anyhow!(
            "internal error: graph '{}', {}: '{}' overlaps '{}'",
            graph.name,
            op.name(),
            graph.desc(a).name,
            graph.desc(b).name
        )
    };

    // Written activations, in arena order, each cut out of the arena; the gaps between them
    // hold every activation the op only reads.
    let mut cuts: Vec<(usize, usize, TensorId)> = Vec::new();
    for &w in &writes {
        let d = graph.desc(w);
        match d.storage {
            Storage::Activation => {
                let off = plan.offsets[w.0]
                    .ok_or_else(|| anyhow!("internal error: '{}' has no slot", d.name))?;
                cuts.push((off / 4, d.numel(), w));
            }
            Storage::State(_) => {}
            Storage::Input if d.elem != Elem::I32 => {}
            Storage::Weight(_) | Storage::Input => bail!(
                "internal error: graph '{}', {} writes '{}', which is a weight or an integer input",
                graph.name,
                op.name(),
                d.name
            ),
        }
    }
    cuts.sort();
    let mut gaps: Vec<(usize, &'a [f32])> = Vec::new();
    let mut rest: &'a mut [f32] = arena.as_mut_slice();
    let mut cursor = 0;
    for (i, &(start, len, id)) in cuts.iter().enumerate() {
        if start < cursor {
            return Err(overlap(id, cuts[i - 1].2));
        }
        let (gap, tail) = std::mem::take(&mut rest).split_at_mut(start - cursor);
        let (mine, tail) = tail.split_at_mut(len);
        gaps.push((cursor, gap));
        t.bind_mut(id, mine);
        rest = tail;
        cursor = start + len;
    }
    gaps.push((cursor, rest));

    // Written states are `&mut` elements of the state list; the others are shared.
    let written_states: Vec<(usize, TensorId)> = writes
        .iter()
        .filter_map(|&w| match graph.desc(w).storage {
            Storage::State(s) => Some((s, w)),
            _ => None,
        })
        .collect();
    let mut shared_states: Vec<(usize, &'a [f32])> = Vec::new();
    for (s, data) in states.iter_mut().enumerate() {
        let mut owners = written_states.iter().filter(|(ws, _)| *ws == s);
        match (owners.next(), owners.next()) {
            (Some(&(_, a)), Some(&(_, b))) => return Err(overlap(a, b)),
            (Some(&(_, id)), None) => {
                let n = graph.desc(id).numel();
                let len = data.len();
                let slice = data
                    .get_mut(..n)
                    .ok_or_else(|| anyhow!("internal error: state holds {len} values, not {n}"))?;
                t.bind_mut(id, slice);
            }
            (None, _) => shared_states.push((s, data.as_slice())),
        }
    }

    // Float inputs: each its own buffer, `&mut` where written (tests update inputs in place).
    for (id, data) in inputs_f32.iter_mut() {
        if writes.contains(id) {
            t.bind_mut(*id, data.as_mut_slice());
        } else if reads.contains(id) {
            t.bind(*id, data.as_slice());
        }
    }

    for &r in &reads {
        let d = graph.desc(r);
        let n = d.numel();
        match (d.storage, d.elem) {
            (Storage::Activation, _) => {
                let off = plan.offsets[r.0]
                    .ok_or_else(|| anyhow!("internal error: '{}' has no slot", d.name))?
                    / 4;
                let (start, gap) = gaps
                    .iter()
                    .rev()
                    .find(|(start, _)| *start <= off)
                    .ok_or_else(|| anyhow!("internal error: '{}' is outside the arena", d.name))?;
                let slice = gap
                    .get(off - start..off - start + n)
                    .ok_or_else(|| overlap(r, cuts.first().map_or(r, |c| c.2)))?;
                t.bind(r, slice);
            }
            (Storage::Input, Elem::I32) => t.bind_ints(r, &inputs_i32[&r]),
            (Storage::Input, _) => {}
            (Storage::Weight(w), Elem::Quant) => t.bind_bytes(r, weights[w].as_bytes()),
            (Storage::Weight(w), _) => t.bind(r, weights[w].as_slice()),
            (Storage::State(s), _) => {
                let (_, data) = shared_states
                    .iter()
                    .find(|(i, _)| *i == s)
                    .ok_or_else(|| overlap(r, r))?;
                let slice = data
                    .get(..n)
                    .ok_or_else(|| anyhow!("internal error: state '{}' is too small", d.name))?;
                t.bind(r, slice);
            }
        }
    }
    Ok(t)
}

/// A float tensor of a program between runs (reading outputs).
pub(super) fn stored<'a>(
    p: &'a CpuProgram,
    weights: &'a [CpuWeight],
    states: &'a [Vec<f32>],
    id: TensorId,
) -> Result<&'a [f32]> {
    let d = p.graph.desc(id);
    let n = d.numel();
    let data: &[f32] = match d.storage {
        Storage::Activation => {
            let off =
                p.plan.offsets[id.0].ok_or_else(|| anyhow!("'{}' was never written", d.name))? / 4;
            &p.memory.arena[off..]
        }
        Storage::Input => p
            .memory
            .inputs_f32
            .get(&id)
            .ok_or_else(|| anyhow!("internal error: '{}' is not a float input", d.name))?,
        Storage::Weight(w) => weights[w].as_slice(),
        Storage::State(s) => &states[s],
    };
    data.get(..n)
        .ok_or_else(|| anyhow!("internal error: '{}' is not stored whole", d.name))
}
