//! A planned graph ready to run: the graph, its plan, and the host-side helpers that bind
//! inputs and read outputs through a backend.

use anyhow::{bail, Result};

use super::plan::Plan;
use super::{Elem, Graph, Storage, TensorId};
use crate::backend::{Backend, HostData, ProgramId};
use crate::tensor::shape_str;

pub struct Program {
    pub graph: Graph,
    pub plan: Plan,
    pub id: ProgramId,
}

impl Program {
    /// Validates and plans `graph`, and lets the backend prepare it (arena, input buffers).
    pub fn new(backend: &mut dyn Backend, graph: Graph) -> Result<Program> {
        if let Err(e) = graph.validate() {
            bail!("internal error: {e}");
        }
        let plan = Plan::new(&graph, backend.act_bytes());
        let id = backend.prepare(&graph, &plan)?;
        Ok(Program { graph, plan, id })
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

    /// Reads output `index` (in `mark_output` order) as f32.
    pub fn output(&self, backend: &mut dyn Backend, index: usize) -> Result<Vec<f32>> {
        let id = self.graph.outputs[index];
        backend.read_f32(self.id, id)
    }
}
