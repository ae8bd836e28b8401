//! What an op's CPU reference sees: the tensors of one op, bound to borrowed slices by the CPU
//! executor. Every written tensor is a `&mut` of its own, every read one a shared slice; the
//! executor proves them disjoint before binding (safe borrow splitting, no raw pointers).

use anyhow::{anyhow, Result};

use crate::graph::{Graph, TensorId};

/// The tensors of one op as slices; written tensors can be taken once.
pub struct CpuTensors<'a> {
    graph: &'a Graph,
    reads: Vec<(TensorId, &'a [f32])>,
    writes: Vec<(TensorId, Option<&'a mut [f32]>)>,
    ints: Vec<(TensorId, &'a [i32])>,
    bytes: Vec<(TensorId, &'a [u8])>,
}

impl<'a> CpuTensors<'a> {
    pub fn new(graph: &'a Graph) -> CpuTensors<'a> {
        CpuTensors {
            graph,
            reads: Vec::new(),
            writes: Vec::new(),
            ints: Vec::new(),
            bytes: Vec::new(),
        }
    }

    pub fn bind(&mut self, id: TensorId, data: &'a [f32]) {
        self.reads.push((id, data));
    }

    pub fn bind_mut(&mut self, id: TensorId, data: &'a mut [f32]) {
        self.writes.push((id, Some(data)));
    }

    pub fn bind_ints(&mut self, id: TensorId, data: &'a [i32]) {
        self.ints.push((id, data));
    }

    pub fn bind_bytes(&mut self, id: TensorId, data: &'a [u8]) {
        self.bytes.push((id, data));
    }

    pub fn graph(&self) -> &'a Graph {
        self.graph
    }

    pub fn shape(&self, id: TensorId) -> &'a [usize] {
        &self.graph.desc(id).shape
    }

    fn missing(&self, id: TensorId, how: &str) -> anyhow::Error {
        anyhow!(
            "internal error: '{}' is not bound {how} for this op",
            self.graph.desc(id).name
        )
    }

    /// A tensor the op reads.
    pub fn get(&self, id: TensorId) -> Result<&'a [f32]> {
        self.reads
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, d)| *d)
            .ok_or_else(|| self.missing(id, "for reading"))
    }

    pub fn get_opt(&self, id: Option<TensorId>) -> Result<Option<&'a [f32]>> {
        id.map(|id| self.get(id)).transpose()
    }

    /// A tensor the op writes (or updates in place); each can be taken once.
    pub fn take_mut(&mut self, id: TensorId) -> Result<&'a mut [f32]> {
        let err = self.missing(id, "for writing");
        self.writes
            .iter_mut()
            .find(|(i, _)| *i == id)
            .and_then(|(_, d)| d.take())
            .ok_or(err)
    }

    pub fn ints(&self, id: TensorId) -> Result<&'a [i32]> {
        self.ints
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, d)| *d)
            .ok_or_else(|| self.missing(id, "as integers"))
    }

    pub fn bytes(&self, id: TensorId) -> Result<&'a [u8]> {
        self.bytes
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, d)| *d)
            .ok_or_else(|| self.missing(id, "as bytes"))
    }

    /// The first element of an i32 input as a position (negative positions are an error).
    pub fn position(&self, id: TensorId) -> Result<usize> {
        let v = self
            .ints(id)?
            .first()
            .copied()
            .ok_or_else(|| anyhow!("internal error: empty position tensor"))?;
        usize::try_from(v).map_err(|_| anyhow!("negative position {v}"))
    }
}
