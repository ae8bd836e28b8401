//! Element types, shapes and host-side tensor storage (memory-mapped or owned).

use std::fmt;
use std::sync::Arc;

use anyhow::{bail, Result};
use half::{bf16, f16};
use memmap2::Mmap;

/// Element type of a tensor as stored in a file or in a backend buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    I32,
    /// Signed bytes: int8 quantized weights.
    I8,
    /// Unsigned bytes: packed int4 weights (two per byte, low nibble first), zero points.
    U8,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I8 | DType::U8 => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I32 => "i32",
            DType::I8 => "i8",
            DType::U8 => "u8",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Formats a shape the way error messages and `lav2 info` print it: `[4096, 11008]`.
pub fn shape_str(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Raw bytes of a host tensor: borrowed from a memory-mapped file when nothing had to change,
/// owned when the loader had to transform the data (folding, dtype conversion).
#[derive(Clone)]
pub enum Bytes {
    Mapped {
        map: Arc<Mmap>,
        start: usize,
        end: usize,
    },
    Owned(Arc<Vec<u8>>),
    /// Deterministic pseudo-random contents (benchmark models): a GPU backend generates them on
    /// the device from the recipe; on the host they are produced once, on first access.
    Generated {
        recipe: Synthetic,
        len: usize,
        data: Arc<std::sync::OnceLock<Vec<u8>>>,
    },
}

/// How the elements of a generated tensor are made. Element `i` depends only on `seed` and `i`
/// (counter-based), so every backend produces the same values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Synthetic {
    /// f16 values uniform in `[-amp, amp]`.
    UniformF16 { seed: u64, amp: f32 },
    /// f16 values all equal to `value`.
    ConstF16 { value: f32 },
    /// Random bytes (quantized values); int8 avoids -128.
    Bytes { seed: u64, int8: bool },
    /// Every byte equal to `value` (zero points).
    FillByte { value: u8 },
}

impl Synthetic {
    /// Element `i` as its little-endian bytes (2 for f16, 1 for bytes).
    pub fn element(self, i: u64) -> [u8; 2] {
        match self {
            Synthetic::UniformF16 { seed, amp } => {
                let u = (crate::rng::nth(seed, i) >> 40) as f32 / (1u64 << 24) as f32;
                f16::from_f32((2.0 * u - 1.0) * amp).to_le_bytes()
            }
            Synthetic::ConstF16 { value } => f16::from_f32(value).to_le_bytes(),
            Synthetic::Bytes { seed, int8 } => {
                let h = crate::rng::nth(seed, i);
                let b = if int8 {
                    ((h % 255) as i32 - 127) as i8 as u8
                } else {
                    h as u8
                };
                [b, 0]
            }
            Synthetic::FillByte { value } => [value, 0],
        }
    }

    pub fn dtype_size(self) -> usize {
        match self {
            Synthetic::Bytes { .. } | Synthetic::FillByte { .. } => 1,
            _ => 2,
        }
    }

    pub fn generate(self, len: usize) -> Vec<u8> {
        let es = self.dtype_size();
        let mut out = Vec::with_capacity(len);
        for i in 0..(len / es) as u64 {
            out.extend_from_slice(&self.element(i)[..es]);
        }
        out
    }
}

impl Bytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped { map, start, end } => &map[*start..*end],
            Bytes::Owned(v) => v,
            Bytes::Generated { recipe, len, data } => data.get_or_init(|| recipe.generate(*len)),
        }
    }
}

/// A tensor in host memory: shape, element type and bytes.
#[derive(Clone)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub bytes: Bytes,
}

impl fmt::Debug for HostTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostTensor({} {})", self.dtype, shape_str(&self.shape))
    }
}

impl HostTensor {
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> HostTensor {
        assert_eq!(
            numel(&shape),
            data.len(),
            "shape does not match data length"
        );
        let bytes: Vec<u8> = bytemuck::cast_slice(&data).to_vec();
        HostTensor {
            shape,
            dtype: DType::F32,
            bytes: Bytes::Owned(Arc::new(bytes)),
        }
    }

    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// The values widened to f32 (copied; f32 data that is aligned is still copied once here,
    /// callers that only need a view use [`HostTensor::f32_view`]).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let raw = self.bytes.as_slice();
        Ok(match self.dtype {
            DType::F32 => match bytemuck::try_cast_slice::<u8, f32>(raw) {
                Ok(s) => s.to_vec(),
                Err(_) => bytemuck::pod_collect_to_vec::<u8, f32>(raw),
            },
            DType::F16 => raw
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::BF16 => raw
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::I32 | DType::I8 | DType::U8 => {
                bail!("a {} tensor cannot be read as floating point", self.dtype)
            }
        })
    }

    /// One element as f32 (for sampling a few values without converting the whole tensor).
    pub fn get_f32(&self, index: usize) -> f32 {
        let es = self.dtype.size();
        let b = &self.bytes.as_slice()[index * es..(index + 1) * es];
        match self.dtype {
            DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            DType::F16 => f16::from_le_bytes([b[0], b[1]]).to_f32(),
            DType::BF16 => bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            DType::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            DType::I8 => b[0] as i8 as f32,
            DType::U8 => b[0] as f32,
        }
    }

    pub fn from_bytes(shape: Vec<usize>, dtype: DType, bytes: Vec<u8>) -> HostTensor {
        assert_eq!(
            numel(&shape) * dtype.size(),
            bytes.len(),
            "shape does not match data length"
        );
        HostTensor {
            shape,
            dtype,
            bytes: Bytes::Owned(Arc::new(bytes)),
        }
    }

    /// A generated tensor (benchmark weights) of `shape`.
    pub fn synthetic(shape: Vec<usize>, dtype: DType, recipe: Synthetic) -> HostTensor {
        let len = numel(&shape) * dtype.size();
        assert_eq!(
            dtype.size(),
            recipe.dtype_size(),
            "recipe does not fit the dtype"
        );
        HostTensor {
            shape,
            dtype,
            bytes: Bytes::Generated {
                recipe,
                len,
                data: Arc::new(std::sync::OnceLock::new()),
            },
        }
    }

    /// A zero-copy f32 view when the data is f32 and suitably aligned.
    pub fn f32_view(&self) -> Option<&[f32]> {
        if self.dtype != DType::F32 {
            return None;
        }
        bytemuck::try_cast_slice::<u8, f32>(self.bytes.as_slice()).ok()
    }

    /// The same data seen with another shape of equal element count.
    pub fn reshaped(&self, shape: Vec<usize>) -> HostTensor {
        assert_eq!(
            numel(&shape),
            self.numel(),
            "reshape must keep the element count"
        );
        HostTensor {
            shape,
            dtype: self.dtype,
            bytes: self.bytes.clone(),
        }
    }
}
