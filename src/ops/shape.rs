//! The vocabulary of the shape rules: sizes of a graph's tensors, and errors that name them.

use crate::graph::{Elem, Graph, TensorId};
use crate::tensor::shape_str;

/// Shape questions about one graph, answered with errors that name the tensors.
#[derive(Clone, Copy)]
pub struct Shapes<'a>(pub &'a Graph);

impl<'a> Shapes<'a> {
    pub fn shape(self, id: TensorId) -> &'a [usize] {
        &self.0.desc(id).shape
    }

    pub fn numel(self, id: TensorId) -> usize {
        self.0.desc(id).numel()
    }

    pub fn name(self, id: TensorId) -> &'a str {
        &self.0.desc(id).name
    }

    pub fn elem(self, id: TensorId) -> Elem {
        self.0.desc(id).elem
    }

    /// `(rows, cols)` of a 1-D (one row) or 2-D tensor.
    pub fn rows_cols(self, id: TensorId) -> Result<(usize, usize), String> {
        let s = self.shape(id);
        match s.len() {
            2 => Ok((s[0], s[1])),
            1 => Ok((1, s[0])),
            _ => Err(format!(
                "'{}' must be 1-D or 2-D, is {}",
                self.name(id),
                shape_str(s)
            )),
        }
    }

    /// Both tensors hold the same number of elements.
    pub fn same_size(self, a: TensorId, b: TensorId) -> Result<(), String> {
        if self.numel(a) != self.numel(b) {
            return Err(format!(
                "'{}' {} and '{}' {} differ in size",
                self.name(a),
                shape_str(self.shape(a)),
                self.name(b),
                shape_str(self.shape(b))
            ));
        }
        Ok(())
    }

    /// The tensor holds exactly `n` elements.
    pub fn numel_is(self, id: TensorId, n: usize, what: &str) -> Result<(), String> {
        if self.numel(id) != n {
            return Err(format!(
                "'{}' {} must hold {n} elements ({what})",
                self.name(id),
                shape_str(self.shape(id))
            ));
        }
        Ok(())
    }

    /// The tensor's element type is `elem`.
    pub fn elem_is(self, id: TensorId, elem: Elem) -> Result<(), String> {
        if self.elem(id) != elem {
            return Err(format!(
                "'{}' is {:?}, this op takes {elem:?}",
                self.name(id),
                self.elem(id)
            ));
        }
        Ok(())
    }
}

/// Tokens and cache rows of one sequence of a RoPE or attention op whose `rows` query/key rows
/// and `cache_rows` cache rows split evenly over `batch` sequences, each with its own block of
/// the cache.
pub fn per_sequence(
    rows: usize,
    cache_rows: usize,
    batch: usize,
) -> Result<(usize, usize), String> {
    if batch == 0 || !rows.is_multiple_of(batch) || !cache_rows.is_multiple_of(batch) {
        return Err(format!(
            "{rows} rows and {cache_rows} cache rows do not split over {batch} sequences"
        ));
    }
    Ok((rows / batch, cache_rows / batch))
}

/// Rows `start .. start + rows` of a sequence must fit its `cache_rows`.
pub fn check_positions(start: usize, rows: usize, cache_rows: usize) -> Result<(), String> {
    if start + rows > cache_rows {
        return Err(format!(
            "positions {start}..{} exceed the context of {cache_rows}",
            start + rows
        ));
    }
    Ok(())
}

/// Query heads that share kv heads evenly, and an even head size of at most `max_head_dim`.
pub fn check_heads(
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    max_head_dim: usize,
) -> Result<(), String> {
    if n_heads == 0 || n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
        return Err(format!(
            "{n_heads} query heads cannot share {n_kv_heads} kv heads"
        ));
    }
    if head_dim == 0 || !head_dim.is_multiple_of(2) || head_dim > max_head_dim {
        return Err(format!(
            "head_dim {head_dim} is not supported (even, at most {max_head_dim})"
        ));
    }
    Ok(())
}
