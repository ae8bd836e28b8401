//! Weight-only quantization: int8 with one f16 scale per output channel, int4 with one f16
//! scale (and optionally a zero point) per group of 128 input channels. Weights are quantized
//! after the adapter's folds, so the V2 input scales and LoRA are inside the quantized values.

use anyhow::{bail, Result};
use half::f16;

use crate::tensor::{DType, HostTensor};

/// Input channels sharing one int4 scale.
pub const INT4_GROUP: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantFormat {
    /// Weights kept as they are (f16 on the GPU, f32 on the CPU reference).
    None,
    /// int8, symmetric, one scale per output channel.
    Int8,
    /// int4 in groups of [`INT4_GROUP`]; `zero_point` makes it asymmetric.
    Int4 { zero_point: bool },
}

impl QuantFormat {
    pub fn parse(name: &str, zero_point: bool) -> Result<QuantFormat> {
        Ok(match (name, zero_point) {
            ("f16" | "f32" | "none", false) => QuantFormat::None,
            ("int8", false) => QuantFormat::Int8,
            ("int4", z) => QuantFormat::Int4 { zero_point: z },
            (_, true) => {
                return Err(crate::notice::OptionError::new(
                    &["zero_point"],
                    "{zero_point} applies to int4 only",
                )
                .into())
            }
            (other, _) => bail!("unknown quantization '{other}' (expected f16, int8 or int4)"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            QuantFormat::None => "f16",
            QuantFormat::Int8 => "int8",
            QuantFormat::Int4 { zero_point: false } => "int4",
            QuantFormat::Int4 { zero_point: true } => "int4-zp",
        }
    }

    pub fn bits(self) -> usize {
        match self {
            QuantFormat::None => 16,
            QuantFormat::Int8 => 8,
            QuantFormat::Int4 { .. } => 4,
        }
    }

    /// Input channels per scale for a matrix with `in_features` columns.
    pub fn group(self, in_features: usize) -> usize {
        match self {
            QuantFormat::Int4 { .. } => INT4_GROUP,
            _ => in_features,
        }
    }
}

/// A quantized `[out, in]` matrix: the values, one scale per (row, group), zero points.
#[derive(Clone, Debug)]
pub struct QuantizedMatrix {
    pub format: QuantFormat,
    pub out_features: usize,
    pub in_features: usize,
    /// int8: `[out, in]` i8. int4: `[out, ceil(in/2)]` bytes, element `2j` in the low nibble.
    pub values: HostTensor,
    /// `[out, groups]` f16.
    pub scales: HostTensor,
    /// `[out, groups]` u8 (int4 with zero point only).
    pub zeros: Option<HostTensor>,
}

pub fn groups(in_features: usize, group: usize) -> usize {
    in_features.div_ceil(group)
}

/// Quantizes a row-major f32 matrix. Scales are rounded to f16 before the values are computed,
/// so dequantization with the stored scale is what the rounding was chosen against.
pub fn quantize(
    w: &[f32],
    out_features: usize,
    in_features: usize,
    format: QuantFormat,
) -> QuantizedMatrix {
    assert_eq!(w.len(), out_features * in_features);
    let group = format.group(in_features);
    let ng = groups(in_features, group);
    let mut scales = vec![f16::ZERO; out_features * ng];
    let mut zeros = vec![0u8; out_features * ng];
    let (values, vshape, vtype) = match format {
        QuantFormat::None => panic!("quantize called without a format"),
        QuantFormat::Int8 => {
            let mut q = vec![0u8; out_features * in_features];
            for o in 0..out_features {
                let row = &w[o * in_features..(o + 1) * in_features];
                let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
                let s = f16::from_f32(if amax > 0.0 { amax / 127.0 } else { 1.0 });
                scales[o] = s;
                let inv = 1.0 / s.to_f32();
                for (k, v) in row.iter().enumerate() {
                    q[o * in_features + k] = ((v * inv).round().clamp(-127.0, 127.0) as i8) as u8;
                }
            }
            (q, vec![out_features, in_features], DType::I8)
        }
        QuantFormat::Int4 { zero_point } => {
            let packed = in_features.div_ceil(2);
            let mut q = vec![0u8; out_features * packed];
            for o in 0..out_features {
                let row = &w[o * in_features..(o + 1) * in_features];
                for g in 0..ng {
                    let part = &row[g * group..((g + 1) * group).min(in_features)];
                    let (scale, zero) = if zero_point {
                        let lo = part.iter().fold(0f32, |m, &v| m.min(v));
                        let hi = part.iter().fold(0f32, |m, &v| m.max(v));
                        let s = f16::from_f32(if hi > lo { (hi - lo) / 15.0 } else { 1.0 });
                        let z = (-lo / s.to_f32()).round().clamp(0.0, 15.0);
                        (s, z)
                    } else {
                        let amax = part.iter().fold(0f32, |m, v| m.max(v.abs()));
                        (
                            f16::from_f32(if amax > 0.0 { amax / 7.0 } else { 1.0 }),
                            8.0,
                        )
                    };
                    scales[o * ng + g] = scale;
                    zeros[o * ng + g] = zero as u8;
                    let inv = 1.0 / scale.to_f32();
                    let (qmin, qmax) = if zero_point { (0.0, 15.0) } else { (1.0, 15.0) };
                    for (i, v) in part.iter().enumerate() {
                        let k = g * group + i;
                        let n = ((v * inv).round() + zero).clamp(qmin, qmax) as u8;
                        q[o * packed + k / 2] |= if k.is_multiple_of(2) { n } else { n << 4 };
                    }
                }
            }
            (q, vec![out_features, packed], DType::U8)
        }
    };
    let scale_bytes: Vec<u8> = scales.iter().flat_map(|s| s.to_le_bytes()).collect();
    QuantizedMatrix {
        format,
        out_features,
        in_features,
        values: HostTensor::from_bytes(vshape, vtype, values),
        scales: HostTensor::from_bytes(vec![out_features, ng], DType::F16, scale_bytes),
        zeros: matches!(format, QuantFormat::Int4 { zero_point: true })
            .then(|| HostTensor::from_bytes(vec![out_features, ng], DType::U8, zeros)),
    }
}

/// Borrowed quantized data as the CPU reference reads it.
pub struct QuantView<'a> {
    pub format: QuantFormat,
    pub in_features: usize,
    pub values: &'a [u8],
    pub scales: &'a [f32],
    pub zeros: Option<&'a [u8]>,
}

impl QuantView<'_> {
    /// Dequantizes row `o` into `buf` (`in_features` long).
    pub fn row(&self, o: usize, buf: &mut [f32]) {
        let n = self.in_features;
        let group = self.format.group(n);
        let ng = groups(n, group);
        match self.format {
            QuantFormat::Int8 => {
                let s = self.scales[o];
                for (k, b) in buf.iter_mut().enumerate() {
                    *b = self.values[o * n + k] as i8 as f32 * s;
                }
            }
            QuantFormat::Int4 { .. } => {
                let packed = n.div_ceil(2);
                for (k, b) in buf.iter_mut().enumerate() {
                    let byte = self.values[o * packed + k / 2];
                    let q = if k.is_multiple_of(2) {
                        byte & 15
                    } else {
                        byte >> 4
                    };
                    let g = o * ng + k / group;
                    let zero = self.zeros.map_or(8.0, |z| z[g] as f32);
                    *b = (q as f32 - zero) * self.scales[g];
                }
            }
            QuantFormat::None => unreachable!("a quantized view has a format"),
        }
    }
}

impl QuantizedMatrix {
    pub fn dequantize(&self) -> Vec<f32> {
        let scales = self.scales.to_f32().expect("f16 scales");
        let view = QuantView {
            format: self.format,
            in_features: self.in_features,
            values: self.values.bytes.as_slice(),
            scales: &scales,
            zeros: self.zeros.as_ref().map(|z| z.bytes.as_slice()),
        };
        let mut out = vec![0f32; self.out_features * self.in_features];
        for (o, row) in out.chunks_exact_mut(self.in_features).enumerate() {
            view.row(o, row);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..n).map(|_| (rng.uniform() as f32 - 0.5) * 2.0).collect()
    }

    fn check_bound(format: QuantFormat, out: usize, inp: usize) {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let mut w = random(out * inp, seed);
        w[3] = 0.0; // exact zeros survive
        let q = quantize(&w, out, inp, format);
        let d = q.dequantize();
        let scales = q.scales.to_f32().unwrap();
        let group = format.group(inp);
        let ng = groups(inp, group);
        for o in 0..out {
            for k in 0..inp {
                let s = scales[o * ng + k / group];
                let err = (d[o * inp + k] - w[o * inp + k]).abs();
                // Round to nearest: half a step, plus the f16 rounding of the scale itself.
                let bound = 0.5 * s + 2e-3 * w[o * inp + k].abs() + 1e-7;
                assert!(
                    err <= bound,
                    "{format:?} seed {seed} [{o},{k}]: err {err} > {bound}"
                );
            }
        }
        assert_eq!(d[3], 0.0, "{format:?}: zero must stay zero");
    }

    #[test]
    fn dequantization_error_is_within_half_a_step() {
        check_bound(QuantFormat::Int8, 7, 300);
        check_bound(QuantFormat::Int4 { zero_point: false }, 5, 300);
        check_bound(QuantFormat::Int4 { zero_point: true }, 5, 257);
    }

    #[test]
    fn int4_packs_low_nibble_first() {
        let w = vec![-7.0, 7.0, 0.0, 3.5];
        let q = quantize(&w, 1, 4, QuantFormat::Int4 { zero_point: false });
        // scale 1: -7 → 1, 7 → 15, 0 → 8, 3.5 → 12 (round half away from zero)
        assert_eq!(q.values.bytes.as_slice(), &[1 | (15 << 4), 8 | (12 << 4)]);
        assert_eq!(q.dequantize(), vec![-7.0, 7.0, 0.0, 4.0]);
    }
}
