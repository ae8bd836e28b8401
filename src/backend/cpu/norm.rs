//! RMSNorm (fused with the residual add) and LayerNorm, f32.

/// `residual += x` (if given), then `out = residual / rms(residual) ⊙ weight (+ bias)`, per row.
pub fn rmsnorm(
    x: Option<&[f32]>,
    residual: &mut [f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    eps: f32,
) {
    let d = weight.len();
    if let Some(x) = x {
        for (r, v) in residual.iter_mut().zip(x) {
            *r += v;
        }
    }
    for (row, orow) in residual.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ss: f32 = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ss + eps).sqrt();
        for i in 0..d {
            orow[i] = row[i] * inv * weight[i] + bias.map_or(0.0, |b| b[i]);
        }
    }
}

/// `out = (x − mean) / sqrt(var + eps) ⊙ weight + bias`, biased variance, per row.
pub fn layernorm(x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32], eps: f32) {
    let d = weight.len();
    for (row, orow) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for i in 0..d {
            orow[i] = (row[i] - mean) * inv * weight[i] + bias[i];
        }
    }
}
