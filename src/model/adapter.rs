//! The learned parts of LLaMA-Adapter V2 as the authors name them, and the load-time folds:
//! input scales and LoRA into the weight, Meta row order into Hugging Face row order.

use anyhow::{bail, Result};

use super::weights::TensorFiles;
use crate::tensor::{shape_str, HostTensor};
use std::collections::BTreeSet;

/// Reads adapter tensors and remembers which names were used, so that a tensor the runtime
/// would silently ignore is reported instead.
pub struct AdapterFile {
    pub files: TensorFiles,
    used: BTreeSet<String>,
}

impl AdapterFile {
    pub fn new(files: TensorFiles) -> AdapterFile {
        AdapterFile {
            files,
            used: BTreeSet::new(),
        }
    }

    /// The stored name for `name`: the released checkpoints prefix the LLaMA part with `llama.`,
    /// converted ones may not; both are accepted.
    pub fn resolve(&self, name: &str) -> Option<String> {
        let prefixed = format!("llama.{name}");
        if (name.starts_with("layers.") || name == "norm.weight") && self.files.contains(&prefixed)
        {
            return Some(prefixed);
        }
        self.files.contains(name).then(|| name.to_string())
    }

    pub fn get_opt(&mut self, name: &str, shape: &[usize]) -> Result<Option<HostTensor>> {
        match self.resolve(name) {
            Some(stored) => {
                let t = self.files.get_any(&stored)?;
                // Size-1 axes are layout only: the gate is stored as [1, heads, 1, 1].
                let squeeze =
                    |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
                if squeeze(&t.shape) != squeeze(shape) {
                    bail!(
                        "adapter tensor '{stored}' in {} has shape {}, expected {}",
                        self.files.describe_source(),
                        shape_str(&t.shape),
                        shape_str(shape)
                    );
                }
                self.used.insert(stored);
                Ok(Some(t.reshaped(shape.to_vec())))
            }
            None => Ok(None),
        }
    }

    pub fn get(&mut self, name: &str, shape: &[usize], why: &str) -> Result<HostTensor> {
        match self.get_opt(name, shape)? {
            Some(t) => Ok(t),
            None => bail!(
                "adapter {} is missing tensor 'llama.{}' (or '{}') of shape {}{why}",
                self.files.describe_source(),
                name,
                name,
                shape_str(shape)
            ),
        }
    }

    /// Marks a tensor as understood but unused (the gates of layers without prompts).
    pub fn skip(&mut self, name: &str) {
        if let Some(stored) = self.resolve(name) {
            self.used.insert(stored);
        }
    }

    pub fn get_exact(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let t = self.files.get(name, shape)?;
        self.used.insert(name.to_string());
        Ok(t)
    }

    pub fn unused(&self) -> Vec<String> {
        self.files
            .names()
            .filter(|n| !self.used.contains(*n))
            .map(|n| n.to_string())
            .collect()
    }
}

/// The adapter's contribution to one linear layer of the LLaMA.
#[derive(Default)]
pub struct LinearDelta {
    pub bias: Option<Vec<f32>>,
    /// Per input channel: `W · (s ⊙ x)`.
    pub input_scale: Option<Vec<f32>>,
    /// `(l1 [rank, in], l2 [out, rank])`.
    pub lora: Option<(Vec<f32>, Vec<f32>)>,
}

/// `(W + l2·l1) · diag(s)`, the weight the token path multiplies by.
pub fn fold_linear(
    w: &[f32],
    out_features: usize,
    in_features: usize,
    input_scale: Option<&[f32]>,
    lora: Option<&(Vec<f32>, Vec<f32>)>,
) -> Vec<f32> {
    let mut folded = w.to_vec();
    if let Some((l1, l2)) = lora {
        let rank = l1.len() / in_features;
        for o in 0..out_features {
            let row = &mut folded[o * in_features..(o + 1) * in_features];
            for r in 0..rank {
                let c = l2[o * rank + r];
                let l1_row = &l1[r * in_features..(r + 1) * in_features];
                for (w, l) in row.iter_mut().zip(l1_row) {
                    *w += c * l;
                }
            }
        }
    }
    if let Some(s) = input_scale {
        for row in folded.chunks_exact_mut(in_features) {
            for (w, s) in row.iter_mut().zip(s) {
                *w *= s;
            }
        }
    }
    folded
}

/// Moves output rows from Meta order (pairs interleaved within a head) to Hugging Face order
/// (halves), as HF's conversion script permutes wq and wk. `row_len` is 1 for a bias vector.
pub fn meta_rows_to_hf(data: &[f32], n_heads: usize, head_dim: usize, row_len: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    let half = head_dim / 2;
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let meta = h * head_dim + 2 * i + j;
                let hf = h * head_dim + j * half + i;
                out[hf * row_len..(hf + 1) * row_len]
                    .copy_from_slice(&data[meta * row_len..(meta + 1) * row_len]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_equals_applying_scale_and_lora_at_run_time() {
        let (o, i, r) = (5, 7, 2);
        let w: Vec<f32> = (0..o * i).map(|k| (k as f32 * 0.37).sin()).collect();
        let s: Vec<f32> = (0..i).map(|k| 0.5 + k as f32 * 0.1).collect();
        let l1: Vec<f32> = (0..r * i).map(|k| (k as f32 * 0.11).cos()).collect();
        let l2: Vec<f32> = (0..o * r).map(|k| (k as f32 * 0.23).sin()).collect();
        let x: Vec<f32> = (0..i).map(|k| (k as f32 * 0.7).cos()).collect();
        let sx: Vec<f32> = x.iter().zip(&s).map(|(a, b)| a * b).collect();
        let folded = fold_linear(&w, o, i, Some(&s), Some(&(l1.clone(), l2.clone())));
        for row in 0..o {
            let mut want: f32 = (0..i).map(|k| w[row * i + k] * sx[k]).sum();
            for rr in 0..r {
                let h: f32 = (0..i).map(|k| l1[rr * i + k] * sx[k]).sum();
                want += l2[row * r + rr] * h;
            }
            let got: f32 = (0..i).map(|k| folded[row * i + k] * x[k]).sum();
            assert!((got - want).abs() < 1e-5, "row {row}: {got} vs {want}");
        }
    }

    #[test]
    fn meta_to_hf_row_order_matches_the_hf_permutation() {
        // HF: w.view(heads, hd/2, 2, in).transpose(1, 2): HF row (h, j, i) = Meta row (h, i, j).
        let data: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let hf = meta_rows_to_hf(&data, 2, 4, 1);
        assert_eq!(hf, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    }
}
