//! The softmax-weighted row sum the attention references share.

/// `acc = Σ_j softmax(scores)_j · values[j·stride + off ..][..acc.len()]`; `scores` is
/// overwritten.
pub fn weighted_rows(
    scores: &mut [f32],
    values: &[f32],
    stride: usize,
    off: usize,
    acc: &mut [f32],
) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    acc.fill(0.0);
    for (j, s) in scores.iter().enumerate() {
        let p = s / sum;
        let row = &values[j * stride + off..j * stride + off + acc.len()];
        for (a, v) in acc.iter_mut().zip(row) {
            *a += p * v;
        }
    }
}
