//! A planned graph ready to run: the graph, its plan, and the host-side helpers that bind
//! inputs and read outputs through a backend.

use anyhow::{bail, Result};

use super::{Backend, HostData, ProgramId};
use crate::graph::plan::Plan;
use crate::graph::{Elem, Graph, Storage, TensorId};
use crate::ops::case::{Case, Data};
use crate::tensor::shape_str;

pub struct Program {
    pub graph: Graph,
    pub plan: Plan,
    pub id: ProgramId,
}

impl Program {
    /// Validates `graph` by the op registry's rules, plans it (and proves the plan never lets an
    /// op write over what it reads), and lets the backend prepare it (arena, input buffers).
    pub fn new(backend: &mut dyn Backend, graph: Graph) -> Result<Program> {
        if let Err(e) = crate::ops::validate(&graph) {
            bail!("internal error: {e}");
        }
        let plan = Plan::new(&graph, backend.act_bytes());
        if let Err(e) = plan.check_no_alias(&graph) {
            bail!("internal error: {e}");
        }
        let id = backend.prepare(&graph, &plan)?;
        Ok(Program { graph, plan, id })
    }

    /// A registry case on `backend`: its weights loaded, its states allocated, its setup graphs
    /// run, and its graph prepared with its inputs set (not yet run).
    pub fn for_case(backend: &mut dyn Backend, case: &Case) -> Result<Program> {
        backend.load_weights(&case.weights)?;
        backend.alloc_states(&case.states)?;
        for (graph, inputs) in &case.setup {
            let setup = Program::new(backend, graph.clone())?;
            setup.set_inputs(backend, inputs)?;
            setup.run(backend)?;
        }
        let p = Program::new(backend, case.graph.clone())?;
        p.set_inputs(backend, &case.inputs)?;
        Ok(p)
    }

    /// Sets each named input.
    pub fn set_inputs(&self, backend: &mut dyn Backend, inputs: &[(String, Data)]) -> Result<()> {
        for (name, data) in inputs {
            match data {
                Data::F32(v) => self.set_f32(backend, name, v)?,
                Data::I32(v) => self.set_i32(backend, name, v)?,
            }
        }
        Ok(())
    }

    pub fn input_id(&self, name: &str) -> Result<TensorId> {
        match self.graph.find(name) {
            Some(id) if self.graph.desc(id).storage == Storage::Input => Ok(id),
            _ => bail!(
                "internal error: graph '{}' has no input '{name}'",
                self.graph.name
            ),
        }
    }

    pub fn set_i32(&self, backend: &mut dyn Backend, name: &str, data: &[i32]) -> Result<()> {
        let id = self.input_id(name)?;
        self.check_len(id, data.len(), Elem::I32)?;
        backend.write_input(self.id, id, HostData::I32(data))
    }

    pub fn set_f32(&self, backend: &mut dyn Backend, name: &str, data: &[f32]) -> Result<()> {
        let id = self.input_id(name)?;
        let elem = self.graph.desc(id).elem;
        if elem == Elem::I32 {
            bail!("internal error: input '{name}' takes integers");
        }
        self.check_len(id, data.len(), elem)?;
        backend.write_input(self.id, id, HostData::F32(data))
    }

    fn check_len(&self, id: TensorId, len: usize, elem: Elem) -> Result<()> {
        let d = self.graph.desc(id);
        if d.numel() != len || (elem == Elem::I32) != (d.elem == Elem::I32) {
            bail!(
                "internal error: input '{}' is {} {:?}, given {len} values",
                d.name,
                shape_str(&d.shape),
                d.elem
            );
        }
        Ok(())
    }

    pub fn run(&self, backend: &mut dyn Backend) -> Result<()> {
        backend.run(self.id)
    }

    /// Reads output `index` (in `mark_output` order) as f32; integer outputs (sampled tokens)
    /// as their values.
    pub fn output(&self, backend: &mut dyn Backend, index: usize) -> Result<Vec<f32>> {
        let Some(&id) = self.graph.outputs.get(index) else {
            bail!(
                "internal error: graph '{}' has {} outputs, not {}",
                self.graph.name,
                self.graph.outputs.len(),
                index + 1
            );
        };
        if self.graph.desc(id).elem == Elem::I32 {
            return Ok(backend
                .read_i32(self.id, id)?
                .into_iter()
                .map(|v| v as f32)
                .collect());
        }
        backend.read_f32(self.id, id)
    }
}
