//! Device memory: allocation, copies, memsets (synchronous and stream-ordered), host allocations.

use std::alloc::Layout;
use std::collections::HashMap;
use std::ffi::{c_uchar, c_uint, c_ushort, c_void};
use std::sync::Mutex;

use super::graph::Node;
use super::{err, out, state, CUdeviceptr, CUstream, DResult, State, StreamRef};
use crate::error::CuError;
use crate::memory::AllocKind;

impl State {
    /// `cuMemFree*`: only a live `cuMemAlloc` allocation, by its base address (0 is a no-op).
    pub(crate) fn free_device(&mut self, ptr: CUdeviceptr) -> DResult<()> {
        if ptr == 0 {
            return Ok(());
        }
        match self.mem.find(ptr, 1) {
            Some(i) => {
                let a = self.mem.alloc_at(i);
                if a.base != ptr || a.kind != AllocKind::Device {
                    return err(CuError::InvalidValue);
                }
            }
            None => return err(CuError::InvalidValue),
        }
        self.mem.free(ptr).map_err(Into::into)
    }

    /// A synchronous (legacy-stream) operation: refused in a thread a capture prohibits from
    /// unsafe calls, and where it would implicitly depend on a capturing blocking stream.
    pub(crate) fn sync_op(&mut self, node: Node) -> DResult<()> {
        self.ctx()?;
        self.check_unsafe_call()?;
        self.enqueue(StreamRef::Legacy, node)
    }

    /// An operation enqueued on `stream`.
    pub(crate) fn async_op(&mut self, stream: CUstream, node: Node) -> DResult<()> {
        self.ctx()?;
        let s = self.stream_ref(stream)?;
        self.enqueue(s, node)
    }

    /// Allocation on `stream`; refused while it captures (graph memory nodes are not emulated).
    fn stream_alloc_check(&mut self, stream: CUstream, what: &str) -> DResult<()> {
        self.ctx()?;
        let s = self.stream_ref(stream)?;
        match s {
            StreamRef::Created(id) => {
                if let Some(c) = self.streams[&id].capture {
                    crate::report(&format!(
                        "{what} on a capturing stream (a graph memory node) is not emulated; \
                         the capture is invalidated"
                    ));
                    self.invalidate(c);
                    return err(CuError::StreamCaptureUnsupported);
                }
            }
            StreamRef::Legacy => self.check_implicit()?,
            StreamRef::PerThread => {}
        }
        Ok(())
    }
}

fn pattern_node(dst: CUdeviceptr, pattern: &[u8], count: usize) -> Node {
    Node::Memset {
        dst,
        pattern: pattern.to_vec(),
        count,
    }
}

/// Pinned host allocations (`cuMemAllocHost` / `cuMemHostAlloc`): plain host memory here.
fn host_allocs() -> std::sync::MutexGuard<'static, HashMap<usize, Layout>> {
    static H: std::sync::OnceLock<Mutex<HashMap<usize, Layout>>> = std::sync::OnceLock::new();
    H.get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

unsafe fn host_alloc(pp: *mut *mut c_void, bytes: usize) -> DResult<()> {
    state().ctx()?;
    if pp.is_null() || bytes == 0 {
        return err(CuError::InvalidValue);
    }
    let layout = Layout::from_size_align(bytes, 4096).map_err(|_| CuError::InvalidValue)?;
    let p = std::alloc::alloc_zeroed(layout);
    if p.is_null() {
        return err(CuError::OutOfMemory);
    }
    host_allocs().insert(p as usize, layout);
    out(pp, p as *mut c_void)
}

exports! {
    fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, bytesize: usize) {
        let mut st = state();
        st.ctx()?;
        st.check_unsafe_call()?;
        if dptr.is_null() {
            return err(CuError::InvalidValue);
        }
        let p = st.mem.alloc(bytesize, AllocKind::Device)?;
        out(dptr, p)
    }

    fn cuMemFree_v2(dptr: CUdeviceptr) {
        let mut st = state();
        st.ctx()?;
        st.check_unsafe_call()?;
        st.free_device(dptr)
    }

    fn cuMemAllocAsync(dptr: *mut CUdeviceptr, bytesize: usize, stream: CUstream) {
        let mut st = state();
        st.stream_alloc_check(stream, "cuMemAllocAsync")?;
        if dptr.is_null() {
            return err(CuError::InvalidValue);
        }
        if bytesize == 0 {
            // cudarc's `CudaStream::null()`: an empty allocation is the null pointer.
            return out(dptr, 0);
        }
        let p = st.mem.alloc(bytesize, AllocKind::Device)?;
        out(dptr, p)
    }

    fn cuMemFreeAsync(dptr: CUdeviceptr, stream: CUstream) {
        let mut st = state();
        st.stream_alloc_check(stream, "cuMemFreeAsync")?;
        st.free_device(dptr)
    }

    fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) {
        let st = state();
        st.ctx()?;
        if free.is_null() || total.is_null() {
            return err(CuError::InvalidValue);
        }
        free.write(st.mem.capacity.saturating_sub(st.mem.used) as usize);
        total.write(st.mem.capacity as usize);
        Ok(())
    }

    fn cuMemGetAddressRange_v2(pbase: *mut CUdeviceptr, psize: *mut usize, dptr: CUdeviceptr) {
        let st = state();
        st.ctx()?;
        let i = st.mem.find(dptr, 1).ok_or(CuError::NotFound)?;
        let a = st.mem.alloc_at(i);
        if !pbase.is_null() {
            pbase.write(a.base);
        }
        if !psize.is_null() {
            psize.write(a.data.len());
        }
        Ok(())
    }

    fn cuMemcpyHtoD_v2(dst: CUdeviceptr, src: *const c_void, bytes: usize) {
        state().sync_op(Node::HtoD { dst, src: src as usize, bytes })
    }

    fn cuMemcpyDtoH_v2(dst: *mut c_void, src: CUdeviceptr, bytes: usize) {
        state().sync_op(Node::DtoH { dst: dst as usize, src, bytes })
    }

    fn cuMemcpyDtoD_v2(dst: CUdeviceptr, src: CUdeviceptr, bytes: usize) {
        state().sync_op(Node::DtoD { dst, src, bytes })
    }

    fn cuMemcpyHtoDAsync_v2(dst: CUdeviceptr, src: *const c_void, bytes: usize, stream: CUstream) {
        state().async_op(stream, Node::HtoD { dst, src: src as usize, bytes })
    }

    fn cuMemcpyDtoHAsync_v2(dst: *mut c_void, src: CUdeviceptr, bytes: usize, stream: CUstream) {
        state().async_op(stream, Node::DtoH { dst: dst as usize, src, bytes })
    }

    fn cuMemcpyDtoDAsync_v2(dst: CUdeviceptr, src: CUdeviceptr, bytes: usize, stream: CUstream) {
        state().async_op(stream, Node::DtoD { dst, src, bytes })
    }

    /// Unified addressing: whichever side lies in device memory is the device.
    fn cuMemcpy(dst: CUdeviceptr, src: CUdeviceptr, bytes: usize) {
        let mut st = state();
        let node = unified_copy(&st, dst, src, bytes);
        st.sync_op(node)
    }

    fn cuMemcpyAsync(dst: CUdeviceptr, src: CUdeviceptr, bytes: usize, stream: CUstream) {
        let mut st = state();
        let node = unified_copy(&st, dst, src, bytes);
        st.async_op(stream, node)
    }

    fn cuMemsetD8_v2(dst: CUdeviceptr, uc: c_uchar, n: usize) {
        state().sync_op(pattern_node(dst, &[uc], n))
    }

    fn cuMemsetD16_v2(dst: CUdeviceptr, us: c_ushort, n: usize) {
        state().sync_op(pattern_node(dst, &us.to_le_bytes(), n))
    }

    fn cuMemsetD32_v2(dst: CUdeviceptr, ui: c_uint, n: usize) {
        state().sync_op(pattern_node(dst, &ui.to_le_bytes(), n))
    }

    fn cuMemsetD8Async(dst: CUdeviceptr, uc: c_uchar, n: usize, stream: CUstream) {
        state().async_op(stream, pattern_node(dst, &[uc], n))
    }

    fn cuMemsetD16Async(dst: CUdeviceptr, us: c_ushort, n: usize, stream: CUstream) {
        state().async_op(stream, pattern_node(dst, &us.to_le_bytes(), n))
    }

    fn cuMemsetD32Async(dst: CUdeviceptr, ui: c_uint, n: usize, stream: CUstream) {
        state().async_op(stream, pattern_node(dst, &ui.to_le_bytes(), n))
    }

    fn cuMemAllocHost_v2(pp: *mut *mut c_void, bytesize: usize) {
        host_alloc(pp, bytesize)
    }

    fn cuMemHostAlloc(pp: *mut *mut c_void, bytesize: usize, _flags: c_uint) {
        host_alloc(pp, bytesize)
    }

    fn cuMemFreeHost(p: *mut c_void) {
        state().ctx()?;
        match host_allocs().remove(&(p as usize)) {
            Some(layout) => {
                std::alloc::dealloc(p as *mut u8, layout);
                Ok(())
            }
            None => err(CuError::InvalidValue),
        }
    }
}

fn unified_copy(st: &State, dst: CUdeviceptr, src: CUdeviceptr, bytes: usize) -> Node {
    let dev = |p: u64| st.mem.find(p, 1).is_some();
    match (dev(dst), dev(src)) {
        (true, true) => Node::DtoD { dst, src, bytes },
        (true, false) => Node::HtoD {
            dst,
            src: src as usize,
            bytes,
        },
        (false, true) => Node::DtoH {
            dst: dst as usize,
            src,
            bytes,
        },
        (false, false) => Node::HtoH {
            dst: dst as usize,
            src: src as usize,
            bytes,
        },
    }
}
