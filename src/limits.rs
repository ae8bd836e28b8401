//! Bounds on untrusted sizes and values: the memory a session may plan for, fallible zeroed
//! allocation, and the scan that refuses NaN / infinite weights.

use anyhow::{anyhow, bail, Result};

use crate::tensor::DType;

/// Environment variable that caps the memory lav2 plans for (bytes, or with a K/M/G/T suffix
/// in powers of 1024): the smaller of it and what the device reports is the budget.
pub const MEMORY_LIMIT_ENV: &str = "LAV2_MEMORY_LIMIT";

/// `12.3 GiB`, `512 MiB`, `700 B`.
pub fn human_bytes(b: u128) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Parses `LAV2_MEMORY_LIMIT`'s value.
pub fn parse_bytes(s: &str) -> Result<usize> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => bail!("'{s}': unknown unit (use K, M, G or T)"),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| anyhow!("'{s}' is not a byte count (e.g. 8G)"))?;
    n.checked_mul(mult)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| anyhow!("'{s}' is too large"))
}

/// `LAV2_MEMORY_LIMIT`, if set.
pub fn memory_limit_env() -> Result<Option<usize>> {
    match std::env::var(MEMORY_LIMIT_ENV) {
        Ok(v) => parse_bytes(&v)
            .map(Some)
            .map_err(|e| anyhow!("{MEMORY_LIMIT_ENV}: {e:#}")),
        Err(_) => Ok(None),
    }
}

/// Memory this process may still take on the host: `MemAvailable` from /proc/meminfo, lowered
/// to the cgroup's remaining limit where one is set. `None` where neither can be read.
pub fn host_memory_available() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<usize>().ok())
            .map(|kb| kb.saturating_mul(1024))
    });
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
    };
    let cgroup = match (
        read("/sys/fs/cgroup/memory.max"),
        read("/sys/fs/cgroup/memory.current"),
    ) {
        (Some(max), Some(cur)) => Some(max.saturating_sub(cur)),
        _ => None,
    };
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A zero-filled `Vec<f32>` of `n` values, or an error naming `what` when the allocator says
/// no (instead of aborting the process). Zeroed pages come from the OS untouched, as with
/// `vec![0.0; n]`.
/// Memory that was asked for and is not there (host RAM or device memory), by what wanted it.
#[derive(Debug)]
pub struct OutOfMemory(pub String);

impl std::fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OutOfMemory {}

/// Whether `e` or one of its causes is running out of memory.
pub fn is_out_of_memory(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<OutOfMemory>().is_some()
            || c.downcast_ref::<crate::notice::OptionError>()
                .is_some_and(|o| o.is_out_of_memory())
    })
}

pub fn try_zeroed_f32(n: usize, what: &str) -> Result<Vec<f32>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let fail = || {
        anyhow::Error::new(OutOfMemory(format!(
            "cannot allocate {} for {what}",
            human_bytes(n as u128 * 4)
        )))
    };
    let layout = std::alloc::Layout::array::<f32>(n).map_err(|_| fail())?;
    // SAFETY: the layout is non-zero-sized; all-zero bytes are a valid f32 (0.0); the pointer,
    // length and capacity given to from_raw_parts are the allocation's, from the global allocator
    // with f32's alignment, as Vec requires.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout) as *mut f32;
        if p.is_null() {
            return Err(fail());
        }
        Ok(Vec::from_raw_parts(p, n, n))
    }
}

/// Index and value of the first NaN or infinite element of raw little-endian data of `dtype`;
/// `None` for integer types and finite data. Checks the exponent bits only, a few GB/s a core.
pub fn first_non_finite(dtype: DType, raw: &[u8]) -> Option<(usize, f32)> {
    fn scan<const N: usize>(raw: &[u8], non_finite: impl Fn([u8; N]) -> bool) -> Option<usize> {
        // Branch-free blocks first (vectorized), then the exact index inside the block.
        const BLOCK: usize = 4096;
        for (b, block) in raw.chunks(BLOCK * N).enumerate() {
            let any = block
                .chunks_exact(N)
                .fold(false, |acc, c| acc | non_finite(c.try_into().unwrap()));
            if any {
                let i = block
                    .chunks_exact(N)
                    .position(|c| non_finite(c.try_into().unwrap()))
                    .expect("the block has one");
                return Some(b * BLOCK + i);
            }
        }
        None
    }
    let i = match dtype {
        DType::F32 => scan::<4>(raw, |c| u32::from_le_bytes(c) & 0x7f80_0000 == 0x7f80_0000),
        DType::F16 => scan::<2>(raw, |c| u16::from_le_bytes(c) & 0x7c00 == 0x7c00),
        DType::BF16 => scan::<2>(raw, |c| u16::from_le_bytes(c) & 0x7f80 == 0x7f80),
        DType::I32 | DType::I8 | DType::U8 => None,
    }?;
    let es = dtype.size();
    let c = &raw[i * es..(i + 1) * es];
    let v = match dtype {
        DType::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
        DType::F16 => half::f16::from_le_bytes([c[0], c[1]]).to_f32(),
        _ => half::bf16::from_le_bytes([c[0], c[1]]).to_f32(),
    };
    Some((i, v))
}

/// [`first_non_finite`] over several threads for large tensors (same result).
pub fn first_non_finite_par(dtype: DType, raw: &[u8]) -> Option<(usize, f32)> {
    let es = dtype.size();
    let threads = std::thread::available_parallelism()
        .map(|t| t.get())
        .unwrap_or(1)
        .min(16);
    if threads < 2 || raw.len() < (8 << 20) {
        return first_non_finite(dtype, raw);
    }
    let per = raw.len().div_ceil(threads).div_ceil(es) * es;
    let found: Vec<Option<(usize, f32)>> = std::thread::scope(|s| {
        let handles: Vec<_> = raw
            .chunks(per)
            .enumerate()
            .map(|(k, part)| {
                s.spawn(move || first_non_finite(dtype, part).map(|(i, v)| (k * per / es + i, v)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("scan thread"))
            .collect()
    });
    found.into_iter().flatten().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_non_finite_value_of_each_float_type() {
        let mut f: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
        assert_eq!(first_non_finite(DType::F32, bytemuck::cast_slice(&f)), None);
        f[9000] = f32::INFINITY;
        f[9500] = f32::NAN;
        assert_eq!(
            first_non_finite(DType::F32, bytemuck::cast_slice(&f)),
            Some((9000, f32::INFINITY))
        );
        let h: Vec<u8> = (0..5000)
            .flat_map(|i| {
                let v = if i == 4321 { f32::NAN } else { i as f32 * 0.5 };
                half::f16::from_f32(v).to_le_bytes()
            })
            .collect();
        let (i, v) = first_non_finite(DType::F16, &h).unwrap();
        assert!(i == 4321 && v.is_nan());
        let b: Vec<u8> = (0..5000)
            .flat_map(|i| {
                let v = if i == 17 { f32::NEG_INFINITY } else { 1e30 };
                half::bf16::from_f32(v).to_le_bytes()
            })
            .collect();
        assert_eq!(
            first_non_finite(DType::BF16, &b),
            Some((17, f32::NEG_INFINITY))
        );
        // f16 overflow of a finite f32 is not a NaN in the file: 65504 is finite.
        let big = half::f16::from_f32(65504.0).to_le_bytes();
        assert_eq!(first_non_finite(DType::F16, &big), None);
        assert_eq!(first_non_finite(DType::I8, &[0xff; 16]), None);
        let mut large = vec![0f32; 5 << 20];
        large[(5 << 20) - 3] = f32::NAN;
        let (i, _) = first_non_finite_par(DType::F32, bytemuck::cast_slice(&large)).unwrap();
        assert_eq!(i, (5 << 20) - 3);
    }

    #[test]
    fn byte_counts_parse_with_units() {
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("64M").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("2g").unwrap(), 2 << 30);
        assert!(parse_bytes("12Q").is_err());
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("99999999999T").is_err());
    }

    #[test]
    fn zeroed_allocation_fails_cleanly() {
        assert_eq!(try_zeroed_f32(3, "x").unwrap(), vec![0.0; 3]);
        let e = try_zeroed_f32(usize::MAX / 2, "the KV cache").unwrap_err();
        assert!(format!("{e}").contains("the KV cache"), "{e}");
    }
}
