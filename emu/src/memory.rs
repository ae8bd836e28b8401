//! Device memory: live allocations with a byte-exact shadow of which bytes were ever written
//! (for initcheck). Addresses are never reused, so a use after free is an illegal address too.

use crate::error::{CuError, CuResult};

/// First device address handed out; far from 0 so a null or small offset never hits memory.
const HEAP_BASE: u64 = 0x7f00_0000_0000;
/// Allocations are aligned like `cuMemAlloc` (256 bytes) and separated by an unmapped gap.
const ALIGN: u64 = 256;
const GUARD: u64 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocKind {
    /// `cuMemAlloc` / `cuMemAllocAsync`.
    Device,
    /// A module's `.global` / `.const` variable, owned by the module.
    ModuleData,
}

pub struct Allocation {
    pub base: u64,
    pub data: Vec<u8>,
    /// One byte per data byte: 1 once written (by the host, a memset, a copy or a kernel).
    pub init: Vec<u8>,
    pub kind: AllocKind,
    /// Global-memory hazard shadow (empty until a launch with checks touches the allocation):
    /// per byte, the last kernel write as `launch << 43 | epoch << 11 | thread << 1 | atomic`.
    pub hazard: Vec<u64>,
}

impl Allocation {
    pub fn end(&self) -> u64 {
        self.base + self.data.len() as u64
    }
}

pub struct DeviceMemory {
    /// Sorted by base address.
    allocs: Vec<Allocation>,
    next: u64,
    pub capacity: u64,
    pub used: u64,
    /// Index of the allocation found last (most accesses hit the same one in a row).
    last: std::cell::Cell<usize>,
}

/// The byte an allocation starts as: recognisable in a dump, and a NaN in f16 (0xFFFF) and f32.
pub const POISON: u8 = 0xFF;

impl DeviceMemory {
    pub fn new(capacity: u64) -> Self {
        DeviceMemory {
            allocs: Vec::new(),
            next: HEAP_BASE,
            capacity,
            used: 0,
            last: std::cell::Cell::new(0),
        }
    }

    pub fn alloc(&mut self, size: usize, kind: AllocKind) -> CuResult<u64> {
        if size == 0 {
            return Err(CuError::InvalidValue);
        }
        if self.used + size as u64 > self.capacity {
            return Err(CuError::OutOfMemory);
        }
        let mut data = Vec::new();
        data.try_reserve_exact(size)
            .map_err(|_| CuError::OutOfMemory)?;
        data.resize(size, POISON);
        let mut init = Vec::new();
        init.try_reserve_exact(size)
            .map_err(|_| CuError::OutOfMemory)?;
        init.resize(size, 0);
        let base = self.next;
        self.next = (base + size as u64 + GUARD).div_ceil(ALIGN) * ALIGN;
        self.used += size as u64;
        self.allocs.push(Allocation {
            base,
            data,
            init,
            kind,
            hazard: Vec::new(),
        });
        Ok(base)
    }

    /// Frees the allocation starting exactly at `base`.
    pub fn free(&mut self, base: u64) -> CuResult<()> {
        match self.allocs.binary_search_by_key(&base, |a| a.base) {
            Ok(i) => {
                self.used -= self.allocs[i].data.len() as u64;
                self.allocs.remove(i);
                self.last.set(0);
                Ok(())
            }
            Err(_) => Err(CuError::InvalidValue),
        }
    }

    /// The index of the live allocation holding `[addr, addr + len)` whole.
    pub fn find(&self, addr: u64, len: u64) -> Option<usize> {
        let last = self.last.get();
        if let Some(a) = self.allocs.get(last) {
            if addr >= a.base && addr.checked_add(len)? <= a.end() {
                return Some(last);
            }
        }
        let i = match self.allocs.binary_search_by_key(&addr, |a| a.base) {
            Ok(i) => i,
            Err(0) => return None,
            Err(i) => i - 1,
        };
        let a = &self.allocs[i];
        if addr >= a.base && addr.checked_add(len)? <= a.end() {
            self.last.set(i);
            Some(i)
        } else {
            None
        }
    }

    /// The allocation and offset of `[addr, addr + len)`, for kernels.
    pub fn slot(&self, addr: u64, len: u64) -> Option<(usize, usize)> {
        let i = self.find(addr, len)?;
        Some((i, (addr - self.allocs[i].base) as usize))
    }

    pub fn alloc_at(&self, index: usize) -> &Allocation {
        &self.allocs[index]
    }

    pub fn alloc_at_mut(&mut self, index: usize) -> &mut Allocation {
        &mut self.allocs[index]
    }

    /// Whether `addr` lies in any live allocation (for messages).
    pub fn describe(&self, addr: u64) -> String {
        let i = match self.allocs.binary_search_by_key(&addr, |a| a.base) {
            Ok(i) => Some(i),
            Err(0) => None,
            Err(i) => Some(i - 1),
        };
        match i.map(|i| &self.allocs[i]) {
            Some(a) if addr < a.end() => {
                format!(
                    "inside allocation {:#x}+{} at offset {}",
                    a.base,
                    a.data.len(),
                    addr - a.base
                )
            }
            Some(a) => format!(
                "{} bytes past the end of allocation {:#x}+{}",
                addr - a.end(),
                a.base,
                a.data.len()
            ),
            None => "before every allocation".to_string(),
        }
    }

    pub fn host_write(&mut self, dst: u64, src: &[u8]) -> CuResult<()> {
        if src.is_empty() {
            return Ok(());
        }
        let (i, off) = self
            .slot(dst, src.len() as u64)
            .ok_or(CuError::InvalidValue)?;
        let a = &mut self.allocs[i];
        a.data[off..off + src.len()].copy_from_slice(src);
        a.init[off..off + src.len()].fill(1);
        Ok(())
    }

    pub fn host_read(&self, src: u64, dst: &mut [u8]) -> CuResult<()> {
        if dst.is_empty() {
            return Ok(());
        }
        let (i, off) = self
            .slot(src, dst.len() as u64)
            .ok_or(CuError::InvalidValue)?;
        dst.copy_from_slice(&self.allocs[i].data[off..off + dst.len()]);
        Ok(())
    }

    /// `cuMemsetD8/D16/D32`: `count` elements of `pattern` (1, 2 or 4 bytes, little-endian).
    pub fn memset(&mut self, dst: u64, pattern: &[u8], count: usize) -> CuResult<()> {
        let bytes = count
            .checked_mul(pattern.len())
            .ok_or(CuError::InvalidValue)?;
        if bytes == 0 {
            return Ok(());
        }
        if !dst.is_multiple_of(pattern.len() as u64) {
            return Err(CuError::InvalidValue);
        }
        let (i, off) = self.slot(dst, bytes as u64).ok_or(CuError::InvalidValue)?;
        let a = &mut self.allocs[i];
        for chunk in a.data[off..off + bytes].chunks_exact_mut(pattern.len()) {
            chunk.copy_from_slice(pattern);
        }
        a.init[off..off + bytes].fill(1);
        Ok(())
    }

    /// Device-to-device copy; the written-bytes shadow travels with the data.
    pub fn copy(&mut self, dst: u64, src: u64, bytes: usize) -> CuResult<()> {
        if bytes == 0 {
            return Ok(());
        }
        let (si, so) = self.slot(src, bytes as u64).ok_or(CuError::InvalidValue)?;
        let data = self.allocs[si].data[so..so + bytes].to_vec();
        let init = self.allocs[si].init[so..so + bytes].to_vec();
        let (di, doff) = self.slot(dst, bytes as u64).ok_or(CuError::InvalidValue)?;
        let a = &mut self.allocs[di];
        a.data[doff..doff + bytes].copy_from_slice(&data);
        a.init[doff..doff + bytes].copy_from_slice(&init);
        Ok(())
    }
}
