// Lane-by-lane comparisons read clearest as index loops.
#![allow(clippy::needless_range_loop)]
//! The exported driver API, called directly (the exports are in the rlib), plus a C program that
//! `dlopen`s the built cdylib.
//!
//! The tests share the process's one device state, so each takes `LOCK` and works inside a fresh
//! primary context (released to 0 at the end, which resets the state, sticky error included).

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::ptr::{null, null_mut};
use std::sync::{Mutex, MutexGuard};

use cuda_emu::driver::*;
use cuda_emu::CuError;

static LOCK: Mutex<()> = Mutex::new(());

fn name(code: CUresult) -> String {
    match error_name_and_string(code) {
        Some((n, _)) => n.to_string_lossy().into_owned(),
        None => format!("code {code}"),
    }
}

#[track_caller]
fn ok(code: CUresult) {
    assert_eq!(code, 0, "expected CUDA_SUCCESS, got {}", name(code));
}

#[track_caller]
fn fails(code: CUresult, want: CUresult) {
    assert_eq!(code, want, "expected {}, got {}", name(want), name(code));
}

fn e(x: CuError) -> CUresult {
    x.code()
}

/// A fresh primary context, current on this thread, for one test.
struct Ctx {
    _guard: MutexGuard<'static, ()>,
}

impl Ctx {
    fn new() -> Ctx {
        let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        unsafe {
            ok(cuInit(0));
            // A previous failed test may have left a reference behind.
            ok(cuDevicePrimaryCtxReset_v2(0));
            let mut ctx = null_mut();
            ok(cuDevicePrimaryCtxRetain(&mut ctx, 0));
            assert!(!ctx.is_null());
            ok(cuCtxSetCurrent(ctx));
        }
        Ctx { _guard: guard }
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        unsafe {
            let mut active = 0;
            let mut flags = 0;
            cuDevicePrimaryCtxGetState(0, &mut flags, &mut active);
            while active != 0 {
                cuDevicePrimaryCtxRelease_v2(0);
                cuDevicePrimaryCtxGetState(0, &mut flags, &mut active);
            }
        }
    }
}

unsafe fn alloc(bytes: usize) -> CUdeviceptr {
    let mut p = 0;
    ok(cuMemAlloc_v2(&mut p, bytes));
    p
}

unsafe fn read(p: CUdeviceptr, bytes: usize) -> Vec<u8> {
    let mut v = vec![0u8; bytes];
    ok(cuMemcpyDtoH_v2(v.as_mut_ptr() as *mut c_void, p, bytes));
    v
}

unsafe fn write(p: CUdeviceptr, data: &[u8]) {
    ok(cuMemcpyHtoD_v2(
        p,
        data.as_ptr() as *const c_void,
        data.len(),
    ));
}

unsafe fn stream(flags: c_uint) -> CUstream {
    let mut s = null_mut();
    ok(cuStreamCreate(&mut s, flags));
    s
}

unsafe fn event(flags: c_uint) -> CUevent {
    let mut ev = null_mut();
    ok(cuEventCreate(&mut ev, flags));
    ev
}

const PTX: &str = r#"
.version 8.0
.target sm_90
.address_size 64

.visible .entry add_one(
    .param .u64 p_data,
    .param .u32 p_n
)
{
    .reg .pred %p<2>;
    .reg .b32 %r<6>;
    .reg .b64 %rd<5>;
    .reg .f32 %f<3>;

    ld.param.u64 %rd1, [p_data];
    ld.param.u32 %r1, [p_n];
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mov.u32 %r4, %tid.x;
    mad.lo.s32 %r5, %r2, %r3, %r4;
    setp.ge.u32 %p1, %r5, %r1;
    @%p1 bra DONE;
    cvta.to.global.u64 %rd2, %rd1;
    mul.wide.u32 %rd3, %r5, 4;
    add.s64 %rd4, %rd2, %rd3;
    ld.global.f32 %f1, [%rd4];
    add.f32 %f2, %f1, 0f3F800000;
    st.global.f32 [%rd4], %f2;
DONE:
    ret;
}

.visible .entry store_seven(
    .param .u64 p_ptr
)
{
    .reg .b32 %r<2>;
    .reg .b64 %rd<3>;

    ld.param.u64 %rd1, [p_ptr];
    cvta.to.global.u64 %rd2, %rd1;
    mov.u32 %r1, 7;
    st.global.u32 [%rd2], %r1;
    ret;
}
"#;

unsafe fn load_ptx(src: &str) -> Result<CUmodule, CUresult> {
    let text = std::ffi::CString::new(src).unwrap();
    let mut m = null_mut();
    match cuModuleLoadData(&mut m, text.as_ptr() as *const c_void) {
        0 => Ok(m),
        c => Err(c),
    }
}

unsafe fn function(m: CUmodule, name: &CStr) -> CUfunction {
    let mut f = null_mut();
    ok(cuModuleGetFunction(&mut f, m, name.as_ptr()));
    f
}

unsafe fn launch_add_one(f: CUfunction, data: CUdeviceptr, n: u32, s: CUstream) -> CUresult {
    let mut d = data;
    let mut n = n;
    let mut params = [
        &mut d as *mut u64 as *mut c_void,
        &mut n as *mut u32 as *mut c_void,
    ];
    cuLaunchKernel(
        f,
        n.div_ceil(64),
        1,
        1,
        64,
        1,
        1,
        0,
        s,
        params.as_mut_ptr(),
        null_mut(),
    )
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_f32(v: &[u8]) -> Vec<f32> {
    v.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn device_queries() {
    let _c = Ctx::new();
    unsafe {
        let mut v = 0;
        ok(cuDriverGetVersion(&mut v));
        assert_eq!(v, 13000);
        let mut n = 0;
        ok(cuDeviceGetCount(&mut n));
        assert_eq!(n, 1);
        let mut d = -1;
        ok(cuDeviceGet(&mut d, 0));
        assert_eq!(d, 0);
        fails(cuDeviceGet(&mut d, 1), e(CuError::InvalidDevice));
        let mut buf = [0 as c_char; 128];
        ok(cuDeviceGetName(buf.as_mut_ptr(), 128, 0));
        assert_eq!(
            CStr::from_ptr(buf.as_ptr()).to_str().unwrap(),
            cuda_emu::device::NAME
        );
        // Truncated to the buffer, still NUL-terminated.
        let mut small = [1 as c_char; 5];
        ok(cuDeviceGetName(small.as_mut_ptr(), 5, 0));
        assert_eq!(CStr::from_ptr(small.as_ptr()).to_str().unwrap(), "cuda");
        let mut total = 0usize;
        ok(cuDeviceTotalMem_v2(&mut total, 0));
        assert_eq!(total as u64, cuda_emu::device::TOTAL_MEMORY);
        let attr = |a: c_int| {
            let mut v = -99;
            ok(cuDeviceGetAttribute(&mut v, a, 0));
            v
        };
        assert_eq!(attr(75), 9, "COMPUTE_CAPABILITY_MAJOR");
        assert_eq!(attr(76), 0, "COMPUTE_CAPABILITY_MINOR");
        assert_eq!(attr(16), cuda_emu::device::MULTIPROCESSORS);
        assert_eq!(attr(97), cuda_emu::device::SHARED_PER_BLOCK_OPTIN as i32);
        assert_eq!(attr(8), 48 * 1024);
        assert_eq!(attr(1), 1024);
        assert_eq!(attr(10), 32);
        assert_eq!(
            attr(115),
            1,
            "MEMORY_POOLS_SUPPORTED (cudarc then uses cuMemAllocAsync)"
        );
        // Every attribute of the enum answers; a code outside it is refused.
        for a in 1..148 {
            attr(a);
        }
        let mut x = 0;
        fails(
            cuDeviceGetAttribute(&mut x, 9999, 0),
            e(CuError::InvalidValue),
        );
        fails(
            cuDeviceGetAttribute(null_mut(), 1, 0),
            e(CuError::InvalidValue),
        );
        fails(
            cuDeviceGetAttribute(&mut x, 1, 3),
            e(CuError::InvalidDevice),
        );
        let mut uuid = [0u8; 16];
        ok(cuDeviceGetUuid_v2(&mut uuid, 0));
        assert_ne!(uuid, [0u8; 16]);
    }
}

#[test]
fn contexts() {
    let _c = Ctx::new();
    unsafe {
        let mut cur = null_mut();
        ok(cuCtxGetCurrent(&mut cur));
        assert!(!cur.is_null());
        let primary = cur;
        // Without a current context, context calls fail.
        ok(cuCtxSetCurrent(null_mut()));
        let mut p = 0;
        fails(cuMemAlloc_v2(&mut p, 16), e(CuError::InvalidContext));
        ok(cuCtxSetCurrent(primary));
        // A created context is current and shares the device state.
        let mut ctx = null_mut();
        ok(cuCtxCreate_v2(&mut ctx, 0, 0));
        ok(cuCtxGetCurrent(&mut cur));
        assert_eq!(cur, ctx);
        let a = alloc(64);
        ok(cuCtxDestroy_v2(ctx));
        fails(cuCtxDestroy_v2(ctx), e(CuError::InvalidContext));
        ok(cuCtxGetCurrent(&mut cur));
        assert!(cur.is_null());
        ok(cuCtxSetCurrent(primary));
        ok(cuMemFree_v2(a));
        let mut dev = -1;
        ok(cuCtxGetDevice(&mut dev));
        assert_eq!(dev, 0);
        ok(cuCtxSynchronize());
        fails(
            cuCtxSetCurrent(0x1234 as CUcontext),
            e(CuError::InvalidHandle),
        );
    }
}

#[test]
fn sync_memory_round_trips() {
    let _c = Ctx::new();
    unsafe {
        let mut free0 = 0;
        let mut total = 0;
        ok(cuMemGetInfo_v2(&mut free0, &mut total));
        assert_eq!(total as u64, cuda_emu::device::TOTAL_MEMORY);
        let n = 1000;
        let a = alloc(n);
        let b = alloc(n);
        assert_eq!(a % 256, 0);
        let mut free1 = 0;
        ok(cuMemGetInfo_v2(&mut free1, &mut total));
        assert!(free1 <= free0 - 2 * n);
        let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        write(a, &data);
        assert_eq!(read(a, n), data);
        ok(cuMemcpyDtoD_v2(b, a, n));
        assert_eq!(read(b, n), data);
        ok(cuMemsetD8_v2(b + 10, 0xAB, 5));
        let got = read(b, n);
        assert_eq!(&got[10..15], &[0xAB; 5]);
        assert_eq!(got[9], data[9]);
        assert_eq!(got[15], data[15]);
        ok(cuMemsetD16_v2(b, 0x1234, 4));
        assert_eq!(
            &read(b, 8),
            &[0x34, 0x12, 0x34, 0x12, 0x34, 0x12, 0x34, 0x12]
        );
        ok(cuMemsetD32_v2(b + 16, 0xDEADBEEF, 2));
        assert_eq!(
            &read(b + 16, 8),
            &[0xEF, 0xBE, 0xAD, 0xDE, 0xEF, 0xBE, 0xAD, 0xDE]
        );
        // Misaligned D32, out of range, a null host pointer.
        fails(cuMemsetD32_v2(b + 2, 0, 1), e(CuError::InvalidValue));
        fails(
            cuMemsetD8_v2(b + n as u64 - 2, 0, 4),
            e(CuError::InvalidValue),
        );
        fails(cuMemcpyHtoD_v2(a, null(), 4), e(CuError::InvalidValue));
        let mut base = 0;
        let mut size = 0;
        ok(cuMemGetAddressRange_v2(&mut base, &mut size, a + 17));
        assert_eq!((base, size), (a, n));
        ok(cuMemFree_v2(a));
        ok(cuMemFree_v2(b));
        // Use after free and double free.
        let mut v = [0u8; 4];
        fails(
            cuMemcpyDtoH_v2(v.as_mut_ptr() as *mut c_void, a, 4),
            e(CuError::InvalidValue),
        );
        fails(cuMemFree_v2(a), e(CuError::InvalidValue));
        fails(cuMemFree_v2(a + 8), e(CuError::InvalidValue));
        ok(cuMemFree_v2(0));
        let mut p = 0;
        fails(cuMemAlloc_v2(&mut p, 0), e(CuError::InvalidValue));
        fails(cuMemAlloc_v2(null_mut(), 16), e(CuError::InvalidValue));
        fails(
            cuMemAlloc_v2(&mut p, usize::MAX / 2),
            e(CuError::OutOfMemory),
        );
        let mut free2 = 0;
        ok(cuMemGetInfo_v2(&mut free2, &mut total));
        assert_eq!(free2, free0);
    }
}

#[test]
fn async_memory_on_streams() {
    let _c = Ctx::new();
    unsafe {
        let s = stream(CU_STREAM_NON_BLOCKING);
        let mut flags = 9;
        ok(cuStreamGetFlags(s, &mut flags));
        assert_eq!(flags, CU_STREAM_NON_BLOCKING);
        let n = 256;
        let mut a = 0;
        ok(cuMemAllocAsync(&mut a, n, s));
        let mut b = 0;
        ok(cuMemAllocAsync(&mut b, n, null_mut()));
        let src: Vec<u8> = (0..n as u32).map(|i| i as u8).collect();
        ok(cuMemcpyHtoDAsync_v2(a, src.as_ptr() as *const c_void, n, s));
        ok(cuMemsetD8Async(a, 0x55, 16, s));
        ok(cuMemcpyDtoDAsync_v2(b, a, n, s));
        ok(cuMemsetD32Async(b + 32, 0x01020304, 1, s));
        ok(cuMemsetD16Async(b + 40, 0xFFEE, 1, s));
        let mut out = vec![0u8; n];
        ok(cuMemcpyDtoHAsync_v2(
            out.as_mut_ptr() as *mut c_void,
            b,
            n,
            s,
        ));
        ok(cuStreamSynchronize(s));
        ok(cuStreamQuery(s));
        let mut want = src.clone();
        want[..16].fill(0x55);
        want[32..36].copy_from_slice(&[4, 3, 2, 1]);
        want[40..42].copy_from_slice(&[0xEE, 0xFF]);
        assert_eq!(out, want);
        // The legacy and per-thread default streams take work too.
        ok(cuMemsetD8Async(b, 9, 4, null_mut()));
        ok(cuMemsetD8Async(b + 4, 8, 4, 2 as CUstream));
        ok(cuStreamSynchronize(null_mut()));
        assert_eq!(&read(b, 8), &[9, 9, 9, 9, 8, 8, 8, 8]);
        // An empty async allocation is the null pointer (cudarc's `CudaStream::null`).
        let mut z = 1;
        ok(cuMemAllocAsync(&mut z, 0, s));
        assert_eq!(z, 0);
        ok(cuMemFreeAsync(z, s));
        ok(cuMemFreeAsync(a, s));
        ok(cuMemFreeAsync(b, s));
        fails(cuMemFreeAsync(b, s), e(CuError::InvalidValue));
        ok(cuStreamDestroy_v2(s));
        fails(cuStreamSynchronize(s), e(CuError::InvalidHandle));
        fails(cuStreamCreate(null_mut(), 0), e(CuError::InvalidValue));
        let mut s2 = null_mut();
        fails(cuStreamCreate(&mut s2, 8), e(CuError::InvalidValue));
    }
}

#[test]
fn events_and_elapsed_time() {
    let _c = Ctx::new();
    unsafe {
        let s = stream(CU_STREAM_NON_BLOCKING);
        let a = event(0);
        let b = event(0);
        let mut ms = -1.0f32;
        // Not recorded yet.
        fails(
            cuEventElapsedTime_v2(&mut ms, a, b),
            e(CuError::InvalidHandle),
        );
        ok(cuEventQuery(a));
        ok(cuEventRecord(a, s));
        std::thread::sleep(std::time::Duration::from_millis(30));
        ok(cuEventRecord(b, s));
        ok(cuEventSynchronize(b));
        ok(cuEventElapsedTime_v2(&mut ms, a, b));
        assert!((25.0..5000.0).contains(&ms), "elapsed {ms} ms");
        ok(cuEventElapsedTime(&mut ms, b, a));
        assert!(ms < 0.0);
        fails(
            cuEventElapsedTime_v2(null_mut(), a, b),
            e(CuError::InvalidValue),
        );
        let nt = event(CU_EVENT_DISABLE_TIMING);
        ok(cuEventRecord(nt, s));
        fails(
            cuEventElapsedTime_v2(&mut ms, a, nt),
            e(CuError::InvalidHandle),
        );
        // Waiting on an event outside capture is fine.
        ok(cuStreamWaitEvent(s, a, 0));
        ok(cuStreamWaitEvent(null_mut(), nt, 0));
        // An event handle is not a stream handle and vice versa.
        fails(cuEventRecord(s as CUevent, s), e(CuError::InvalidHandle));
        fails(
            cuStreamSynchronize(a as CUstream),
            e(CuError::InvalidHandle),
        );
        ok(cuEventDestroy_v2(a));
        fails(cuEventRecord(a, s), e(CuError::InvalidHandle));
        fails(cuEventCreate(null_mut(), 0), e(CuError::InvalidValue));
        let mut x = null_mut();
        fails(
            cuEventCreate(&mut x, CU_EVENT_INTERPROCESS),
            e(CuError::InvalidValue),
        );
    }
}

#[test]
fn capture_and_replay_memory_nodes() {
    let _c = Ctx::new();
    unsafe {
        let s = stream(CU_STREAM_NON_BLOCKING);
        let n = 64;
        let a = alloc(n);
        let b = alloc(n);
        write(a, &[1u8; 64]);
        write(b, &[2u8; 64]);
        let mut host_src = vec![10u8; n];
        let mut host_dst = vec![0u8; n];
        let mut status = 9;
        ok(cuStreamIsCapturing(s, &mut status));
        assert_eq!(status, CU_STREAM_CAPTURE_STATUS_NONE);
        ok(cuStreamBeginCapture_v2(
            s,
            CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
        ));
        ok(cuStreamIsCapturing(s, &mut status));
        assert_eq!(status, CU_STREAM_CAPTURE_STATUS_ACTIVE);
        ok(cuMemcpyHtoDAsync_v2(
            a,
            host_src.as_ptr() as *const c_void,
            n,
            s,
        ));
        ok(cuMemsetD8Async(a, 0x77, 8, s));
        ok(cuMemcpyDtoDAsync_v2(b, a, n, s));
        ok(cuMemcpyDtoHAsync_v2(
            host_dst.as_mut_ptr() as *mut c_void,
            b,
            n,
            s,
        ));
        let mut graph = null_mut();
        ok(cuStreamEndCapture(s, &mut graph));
        assert!(!graph.is_null());
        ok(cuStreamIsCapturing(s, &mut status));
        assert_eq!(status, CU_STREAM_CAPTURE_STATUS_NONE);
        // Nothing ran during the capture.
        assert_eq!(read(a, n), vec![1u8; 64]);
        assert_eq!(read(b, n), vec![2u8; 64]);
        assert_eq!(host_dst, vec![0u8; 64]);
        let mut exec = null_mut();
        ok(cuGraphInstantiateWithFlags(&mut exec, graph, 0));
        ok(cuGraphLaunch(exec, s));
        ok(cuStreamSynchronize(s));
        let mut want = vec![10u8; 64];
        want[..8].fill(0x77);
        assert_eq!(host_dst, want);
        assert_eq!(read(b, n), want);
        // The host source is read at replay, the host destination written at replay.
        host_src.fill(33);
        host_dst.fill(0);
        ok(cuGraphLaunch(exec, s));
        ok(cuStreamSynchronize(s));
        want[8..].fill(33);
        assert_eq!(host_dst, want);
        // The graph can be destroyed before its executable; the executable stays valid.
        ok(cuGraphDestroy(graph));
        fails(cuGraphDestroy(graph), e(CuError::InvalidHandle));
        ok(cuGraphLaunch(exec, null_mut()));
        ok(cuGraphExecDestroy(exec));
        fails(cuGraphLaunch(exec, s), e(CuError::InvalidHandle));
        // An empty capture gives an empty graph.
        ok(cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
        ok(cuStreamEndCapture(s, &mut graph));
        ok(cuGraphInstantiateWithFlags(&mut exec, graph, 0));
        ok(cuGraphLaunch(exec, s));
        ok(cuGraphExecDestroy(exec));
        ok(cuGraphDestroy(graph));
    }
}

/// Begins a capture, runs `bad` (which checks its own error), then checks the capture was invalidated.
unsafe fn expect_invalidated(s: CUstream, mode: c_uint, bad: impl FnOnce()) {
    ok(cuStreamBeginCapture_v2(s, mode));
    ok(cuMemsetD8Async(0, 0, 0, s));
    bad();
    let mut status = 0;
    ok(cuStreamIsCapturing(s, &mut status));
    assert_eq!(status, CU_STREAM_CAPTURE_STATUS_INVALIDATED);
    fails(
        cuMemsetD8Async(0, 0, 0, s),
        e(CuError::StreamCaptureInvalidated),
    );
    let mut graph = 1 as CUgraph;
    fails(
        cuStreamEndCapture(s, &mut graph),
        e(CuError::StreamCaptureInvalidated),
    );
    assert!(graph.is_null());
    ok(cuStreamIsCapturing(s, &mut status));
    assert_eq!(status, CU_STREAM_CAPTURE_STATUS_NONE);
}

#[test]
fn capture_rules() {
    let _c = Ctx::new();
    unsafe {
        let s = stream(CU_STREAM_NON_BLOCKING);
        let buf = alloc(64);
        let unsupported = e(CuError::StreamCaptureUnsupported);
        let global = CU_STREAM_CAPTURE_MODE_GLOBAL;
        let local = CU_STREAM_CAPTURE_MODE_THREAD_LOCAL;
        expect_invalidated(s, local, || {
            let mut p = 0;
            fails(cuMemAlloc_v2(&mut p, 64), unsupported);
        });
        expect_invalidated(s, global, || fails(cuMemFree_v2(buf), unsupported));
        expect_invalidated(s, local, || fails(cuStreamSynchronize(s), unsupported));
        expect_invalidated(s, local, || fails(cuStreamQuery(s), unsupported));
        expect_invalidated(s, local, || fails(cuCtxSynchronize(), unsupported));
        expect_invalidated(s, local, || {
            let v = [0u8; 4];
            fails(
                cuMemcpyHtoD_v2(buf, v.as_ptr() as *const c_void, 4),
                unsupported,
            )
        });
        expect_invalidated(s, local, || fails(cuMemsetD8_v2(buf, 0, 4), unsupported));
        expect_invalidated(s, local, || {
            let mut p = 0;
            fails(cuMemAllocAsync(&mut p, 64, s), unsupported)
        });
        // A dependency on work outside the capture.
        let outside = event(CU_EVENT_DISABLE_TIMING);
        ok(cuEventRecord(outside, s));
        expect_invalidated(s, local, || {
            fails(
                cuStreamWaitEvent(s, outside, 0),
                e(CuError::StreamCaptureIsolation),
            )
        });
        // Legacy-stream work waits for blocking streams: refused while a blocking one captures.
        let blocking = stream(0);
        expect_invalidated(blocking, CU_STREAM_CAPTURE_MODE_RELAXED, || {
            fails(
                cuMemsetD8Async(buf, 0, 4, null_mut()),
                e(CuError::StreamCaptureImplicit),
            )
        });
        // ... but not while a non-blocking one does; and RELAXED allows unsafe calls.
        ok(cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_RELAXED));
        ok(cuMemsetD8Async(buf, 5, 4, null_mut()));
        let mut p = 0;
        ok(cuMemAlloc_v2(&mut p, 64));
        ok(cuMemFree_v2(p));
        let mut graph = null_mut();
        ok(cuStreamEndCapture(s, &mut graph));
        ok(cuGraphDestroy(graph));
        assert_eq!(&read(buf, 4), &[5, 5, 5, 5]);
        // A THREAD_LOCAL capture does not restrict other threads; GLOBAL does.
        ok(cuStreamBeginCapture_v2(s, local));
        let ctx = {
            let mut c = null_mut();
            ok(cuCtxGetCurrent(&mut c));
            c as usize
        };
        let su = s as usize;
        std::thread::spawn(move || {
            ok(cuCtxSetCurrent(ctx as CUcontext));
            let mut p = 0;
            ok(cuMemAlloc_v2(&mut p, 64));
            ok(cuMemFree_v2(p));
            // Ending another thread's capture.
            let mut g = null_mut();
            fails(
                cuStreamEndCapture(su as CUstream, &mut g),
                CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD,
            );
        })
        .join()
        .unwrap();
        ok(cuStreamEndCapture(s, &mut graph));
        ok(cuGraphDestroy(graph));
        ok(cuStreamBeginCapture_v2(s, global));
        std::thread::spawn(move || {
            ok(cuCtxSetCurrent(ctx as CUcontext));
            let mut p = 0;
            fails(
                cuMemAlloc_v2(&mut p, 64),
                e(CuError::StreamCaptureUnsupported),
            );
        })
        .join()
        .unwrap();
        fails(
            cuStreamEndCapture(s, &mut graph),
            e(CuError::StreamCaptureInvalidated),
        );
        // State errors.
        fails(cuStreamEndCapture(s, &mut graph), CUDA_ERROR_ILLEGAL_STATE);
        ok(cuStreamBeginCapture_v2(s, local));
        fails(cuStreamBeginCapture_v2(s, local), CUDA_ERROR_ILLEGAL_STATE);
        fails(cuStreamEndCapture(s, null_mut()), e(CuError::InvalidValue));
        ok(cuStreamEndCapture(s, &mut graph));
        ok(cuGraphDestroy(graph));
        fails(cuStreamBeginCapture_v2(null_mut(), local), unsupported);
        fails(cuStreamBeginCapture_v2(s, 7), e(CuError::InvalidValue));
    }
}

#[test]
fn capture_fork_and_join() {
    let _c = Ctx::new();
    unsafe {
        let s = stream(CU_STREAM_NON_BLOCKING);
        let t = stream(CU_STREAM_NON_BLOCKING);
        let buf = alloc(8);
        write(buf, &[0u8; 8]);
        let fork = event(CU_EVENT_DISABLE_TIMING);
        let join = event(CU_EVENT_DISABLE_TIMING);
        let mut status = 0;
        let mut graph = null_mut();
        // Without the join, the capture is unjoined.
        ok(cuStreamBeginCapture_v2(
            s,
            CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
        ));
        ok(cuEventRecord(fork, s));
        fails(cuEventSynchronize(fork), CUDA_ERROR_CAPTURED_EVENT);
        ok(cuStreamWaitEvent(t, fork, 0));
        ok(cuStreamIsCapturing(t, &mut status));
        assert_eq!(status, CU_STREAM_CAPTURE_STATUS_ACTIVE);
        ok(cuMemsetD8Async(buf + 4, 4, 4, t));
        fails(
            cuStreamEndCapture(t, &mut graph),
            e(CuError::StreamCaptureUnmatched),
        );
        fails(
            cuStreamEndCapture(s, &mut graph),
            e(CuError::StreamCaptureInvalidated),
        );
        ok(cuStreamIsCapturing(t, &mut status));
        assert_eq!(status, CU_STREAM_CAPTURE_STATUS_NONE);
        ok(cuStreamBeginCapture_v2(
            s,
            CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
        ));
        ok(cuEventRecord(fork, s));
        ok(cuStreamWaitEvent(t, fork, 0));
        ok(cuMemsetD8Async(buf + 4, 4, 4, t));
        fails(
            cuStreamEndCapture(s, &mut graph),
            e(CuError::StreamCaptureUnjoined),
        );
        // With it, the graph holds both streams' work.
        ok(cuStreamBeginCapture_v2(
            s,
            CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
        ));
        ok(cuEventRecord(fork, s));
        ok(cuStreamWaitEvent(t, fork, 0));
        ok(cuMemsetD8Async(buf, 1, 4, s));
        ok(cuMemsetD8Async(buf + 4, 4, 4, t));
        ok(cuEventRecord(join, t));
        ok(cuStreamWaitEvent(s, join, 0));
        ok(cuStreamEndCapture(s, &mut graph));
        assert_eq!(&read(buf, 8), &[0u8; 8]);
        let mut exec = null_mut();
        ok(cuGraphInstantiateWithFlags(&mut exec, graph, 0));
        ok(cuGraphLaunch(exec, s));
        ok(cuStreamSynchronize(s));
        assert_eq!(&read(buf, 8), &[1, 1, 1, 1, 4, 4, 4, 4]);
        // Re-recorded outside, the event is usable again.
        ok(cuEventRecord(fork, s));
        ok(cuEventSynchronize(fork));
        ok(cuGraphExecDestroy(exec));
        ok(cuGraphDestroy(graph));
    }
}

#[test]
fn binary_images_are_refused() {
    let _c = Ctx::new();
    unsafe {
        let mut m = null_mut();
        let mut elf = vec![0u8; 256];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        fails(
            cuModuleLoadData(&mut m, elf.as_ptr() as *const c_void),
            e(CuError::NoBinaryForGpu),
        );
        let mut fatbin = vec![0u8; 256];
        fatbin[..4].copy_from_slice(&0xBA55ED50u32.to_le_bytes());
        fatbin[4] = 1;
        fails(
            cuModuleLoadData(&mut m, fatbin.as_ptr() as *const c_void),
            e(CuError::NoBinaryForGpu),
        );
        fails(cuModuleLoadData(&mut m, null()), e(CuError::InvalidValue));
        fails(
            cuModuleLoadData(null_mut(), elf.as_ptr() as *const c_void),
            e(CuError::InvalidValue),
        );
    }
}

#[test]
fn bad_ptx_fills_the_error_log() {
    let _c = Ctx::new();
    unsafe {
        let text = b".version 8.0\n.target sm_90\n.address_size 64\n.visible .entry k() { this is not ptx; }\n\0";
        let mut log = [0 as c_char; 1024];
        let mut opts = [CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES];
        let mut vals = [log.as_mut_ptr() as *mut c_void, 1024usize as *mut c_void];
        let mut m = null_mut();
        let r = cuModuleLoadDataEx(
            &mut m,
            text.as_ptr() as *const c_void,
            2,
            opts.as_mut_ptr(),
            vals.as_mut_ptr(),
        );
        fails(r, e(CuError::InvalidPtx));
        let msg = CStr::from_ptr(log.as_ptr()).to_string_lossy();
        assert!(!msg.is_empty(), "the JIT error log is empty");
        assert_eq!(vals[1] as usize, msg.len() + 1);
    }
}

#[test]
fn kernels_launch_and_replay() {
    let _c = Ctx::new();
    unsafe {
        let m = load_ptx(PTX).unwrap_or_else(|c| panic!("loading PTX: {}", name(c)));
        let f = function(m, c"add_one");
        let mut g = null_mut();
        fails(
            cuModuleGetFunction(&mut g, m, c"nope".as_ptr()),
            e(CuError::NotFound),
        );
        let n = 100u32;
        let data = alloc(n as usize * 4);
        let init: Vec<f32> = (0..n).map(|i| i as f32).collect();
        write(data, &f32_bytes(&init));
        let s = stream(CU_STREAM_NON_BLOCKING);
        ok(launch_add_one(f, data, n, s));
        ok(cuStreamSynchronize(s));
        let got = bytes_f32(&read(data, n as usize * 4));
        assert_eq!(got, (0..n).map(|i| i as f32 + 1.0).collect::<Vec<_>>());
        // On the legacy stream too.
        ok(launch_add_one(f, data, n, null_mut()));
        // Captured: the parameters are copied at capture time.
        ok(cuStreamBeginCapture_v2(
            s,
            CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
        ));
        ok(launch_add_one(f, data, n, s));
        let mut graph = null_mut();
        ok(cuStreamEndCapture(s, &mut graph));
        let mut exec = null_mut();
        ok(cuGraphInstantiateWithFlags(&mut exec, graph, 0));
        for _ in 0..3 {
            ok(cuGraphLaunch(exec, s));
        }
        ok(cuStreamSynchronize(s));
        let got = bytes_f32(&read(data, n as usize * 4));
        assert_eq!(got, (0..n).map(|i| i as f32 + 5.0).collect::<Vec<_>>());
        // `extra` is not supported; a bogus function handle is refused.
        let mut d = data;
        let mut nn = n;
        let mut params = [
            &mut d as *mut u64 as *mut c_void,
            &mut nn as *mut u32 as *mut c_void,
        ];
        let mut extra = [null_mut::<c_void>()];
        fails(
            cuLaunchKernel(
                f,
                1,
                1,
                1,
                32,
                1,
                1,
                0,
                s,
                params.as_mut_ptr(),
                extra.as_mut_ptr(),
            ),
            e(CuError::InvalidValue),
        );
        fails(
            cuLaunchKernel(
                m as CUfunction,
                1,
                1,
                1,
                32,
                1,
                1,
                0,
                s,
                params.as_mut_ptr(),
                null_mut(),
            ),
            e(CuError::InvalidHandle),
        );
        fails(
            cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, s, null_mut(), null_mut()),
            e(CuError::InvalidValue),
        );
        // Function attributes.
        let attr = |a: c_int| {
            let mut v = -1;
            ok(cuFuncGetAttribute(&mut v, a, f));
            v
        };
        assert_eq!(attr(CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK), 1024);
        assert_eq!(attr(CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES), 0);
        assert!(attr(4) > 0, "NUM_REGS");
        assert_eq!(
            attr(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES),
            48 * 1024
        );
        let optin = cuda_emu::device::SHARED_PER_BLOCK_OPTIN as c_int;
        ok(cuFuncSetAttribute(
            f,
            CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            optin,
        ));
        assert_eq!(attr(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES), optin);
        fails(
            cuFuncSetAttribute(
                f,
                CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                optin + 1,
            ),
            e(CuError::InvalidValue),
        );
        fails(
            cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, 1),
            e(CuError::InvalidValue),
        );
        let mut x = 0;
        fails(cuFuncGetAttribute(&mut x, 999, f), e(CuError::InvalidValue));
        // The same name gives the same handle.
        assert_eq!(function(m, c"add_one"), f);
        ok(cuGraphExecDestroy(exec));
        ok(cuGraphDestroy(graph));
        ok(cuModuleUnload(m));
        fails(
            cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, s, params.as_mut_ptr(), null_mut()),
            e(CuError::InvalidHandle),
        );
        fails(cuModuleUnload(m), e(CuError::InvalidHandle));
    }
}

#[test]
fn launch_errors_are_sticky() {
    {
        let _c = Ctx::new();
        unsafe {
            let m = load_ptx(PTX).unwrap_or_else(|c| panic!("loading PTX: {}", name(c)));
            let f = function(m, c"store_seven");
            let good = alloc(4);
            let s = stream(CU_STREAM_NON_BLOCKING);
            let mut p = good;
            let mut params = [&mut p as *mut u64 as *mut c_void];
            ok(cuLaunchKernel(
                f,
                1,
                1,
                1,
                1,
                1,
                1,
                0,
                s,
                params.as_mut_ptr(),
                null_mut(),
            ));
            assert_eq!(&read(good, 4), &7u32.to_le_bytes());
            // A store far outside every allocation.
            let mut bad = 0x10u64;
            let mut params = [&mut bad as *mut u64 as *mut c_void];
            let r = cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, s, params.as_mut_ptr(), null_mut());
            fails(r, e(CuError::IllegalAddress));
            // Every later call on the context fails the same way.
            let ill = e(CuError::IllegalAddress);
            fails(cuStreamSynchronize(s), ill);
            fails(cuCtxSynchronize(), ill);
            let mut q = 0;
            fails(cuMemAlloc_v2(&mut q, 16), ill);
            let mut v = [0u8; 4];
            fails(cuMemcpyDtoH_v2(v.as_mut_ptr() as *mut c_void, good, 4), ill);
            let mut free = 0;
            let mut total = 0;
            fails(cuMemGetInfo_v2(&mut free, &mut total), ill);
            // Device queries do not touch the context.
            let mut n = 0;
            ok(cuDeviceGetCount(&mut n));
        }
    }
    // Releasing the primary context to 0 resets it.
    let _c = Ctx::new();
    unsafe {
        ok(cuCtxSynchronize());
        let p = alloc(16);
        ok(cuMemFree_v2(p));
    }
}

#[test]
fn error_strings() {
    unsafe {
        let mut p: *const c_char = null();
        ok(cuGetErrorName(0, &mut p));
        assert_eq!(CStr::from_ptr(p).to_str().unwrap(), "CUDA_SUCCESS");
        ok(cuGetErrorName(700, &mut p));
        assert_eq!(
            CStr::from_ptr(p).to_str().unwrap(),
            "CUDA_ERROR_ILLEGAL_ADDRESS"
        );
        ok(cuGetErrorString(700, &mut p));
        assert_eq!(
            CStr::from_ptr(p).to_str().unwrap(),
            CuError::IllegalAddress.description()
        );
        ok(cuGetErrorName(209, &mut p));
        assert_eq!(
            CStr::from_ptr(p).to_str().unwrap(),
            "CUDA_ERROR_NO_BINARY_FOR_GPU"
        );
        ok(cuGetErrorName(CUDA_ERROR_CAPTURED_EVENT, &mut p));
        assert_eq!(
            CStr::from_ptr(p).to_str().unwrap(),
            "CUDA_ERROR_CAPTURED_EVENT"
        );
        // Every code the emulator knows has both strings.
        for code in [
            1, 2, 3, 100, 101, 200, 201, 218, 400, 401, 500, 600, 716, 719, 900, 901, 903, 904,
            905, 906, 999,
        ] {
            ok(cuGetErrorName(code, &mut p));
            assert!(CStr::from_ptr(p)
                .to_str()
                .unwrap()
                .starts_with("CUDA_ERROR_"));
            ok(cuGetErrorString(code, &mut p));
            assert!(!CStr::from_ptr(p).to_bytes().is_empty());
        }
        fails(cuGetErrorName(12345, &mut p), e(CuError::InvalidValue));
        fails(cuGetErrorString(12345, &mut p), e(CuError::InvalidValue));
        fails(cuGetErrorString(0, null_mut()), e(CuError::InvalidValue));
        let mut v = 0;
        fails(cuDriverGetVersion(null_mut()), e(CuError::InvalidValue));
        ok(cuDriverGetVersion(&mut v));
        fails(cuInit(1), e(CuError::InvalidValue));
    }
}

#[test]
fn host_functions_run_in_order() {
    let _c = Ctx::new();
    unsafe extern "C" fn bump(p: *mut c_void) {
        *(p as *mut u32) += 1;
    }
    unsafe {
        let s = stream(CU_STREAM_NON_BLOCKING);
        let mut counter = 0u32;
        ok(cuLaunchHostFunc(
            s,
            Some(bump),
            &mut counter as *mut u32 as *mut c_void,
        ));
        ok(cuStreamSynchronize(s));
        assert_eq!(counter, 1);
        ok(cuStreamBeginCapture_v2(
            s,
            CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
        ));
        ok(cuLaunchHostFunc(
            s,
            Some(bump),
            &mut counter as *mut u32 as *mut c_void,
        ));
        let mut graph = null_mut();
        ok(cuStreamEndCapture(s, &mut graph));
        assert_eq!(counter, 1);
        let mut exec = null_mut();
        ok(cuGraphInstantiateWithFlags(&mut exec, graph, 0));
        ok(cuGraphLaunch(exec, s));
        ok(cuGraphLaunch(exec, s));
        assert_eq!(counter, 3);
        fails(
            cuLaunchHostFunc(s, None, null_mut()),
            e(CuError::InvalidValue),
        );
        // A callback calling the driver is refused (not a deadlock).
        unsafe extern "C" fn calls_driver(p: *mut c_void) {
            let mut n = 0;
            *(p as *mut CUresult) = cuDeviceGetCount(&mut n);
        }
        let mut got: CUresult = 0;
        ok(cuLaunchHostFunc(
            s,
            Some(calls_driver),
            &mut got as *mut CUresult as *mut c_void,
        ));
        fails(got, CUDA_ERROR_NOT_PERMITTED);
        ok(cuStreamSynchronize(s));
    }
}

/// `emu/tests/c/driver_smoke.c`, built with the system C compiler, `dlopen`s the cdylib.
#[test]
fn c_program_against_the_cdylib() {
    let Some(cc) = ["cc", "gcc", "clang"].into_iter().find(|c| {
        std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("SKIPPED c_program_against_the_cdylib: no C compiler (cc/gcc/clang) found");
        return;
    };
    // target/<profile>/deps/driver-… → target/<profile>/libcuda_emu.so
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let lib = [
        profile_dir.join("libcuda_emu.so"),
        exe.parent().unwrap().join("libcuda_emu.so"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .unwrap_or_else(|| panic!("libcuda_emu.so not found next to {}", exe.display()));
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/driver_smoke.c");
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("driver_smoke");
    let build = std::process::Command::new(cc)
        .arg("-std=c99")
        .arg("-Wall")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .arg("-ldl")
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{cc} failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let run = std::process::Command::new(&out).arg(&lib).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success(),
        "driver_smoke failed ({}):\n{text}",
        run.status
    );
    assert!(text.contains("driver_smoke: ok"), "{text}");
}

#[test]
fn panics_become_cuda_error_unknown() {
    let r = guard("cuTestPanic", || panic!("boom"));
    assert_eq!(r, CuError::Unknown.code());
    assert_eq!(guard("cuTestOk", || Ok(())), 0);
    assert_eq!(
        guard("cuTestErr", || Err(Code(CuError::NotFound.code()))),
        500
    );
}

#[test]
fn module_globals_and_load_data_ex() {
    let _c = Ctx::new();
    let src = ".version 8.0\n.target sm_90\n.address_size 64\n\
               .visible .global .align 4 .u32 counter[2] = {5, 6};\n\
               .visible .entry bump()\n{\n    .reg .b32 %r<3>;\n\
               ld.global.u32 %r1, [counter];\n    add.u32 %r2, %r1, 1;\n\
               st.global.u32 [counter], %r2;\n    ret;\n}\n\0";
    unsafe {
        let mut log = [1 as c_char; 64];
        let mut opts = [CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES];
        let mut vals = [log.as_mut_ptr() as *mut c_void, 64usize as *mut c_void];
        let mut m = null_mut();
        ok(cuModuleLoadDataEx(
            &mut m,
            src.as_ptr() as *const c_void,
            2,
            opts.as_mut_ptr(),
            vals.as_mut_ptr(),
        ));
        assert_eq!(log[0], 0, "the info log is empty and NUL-terminated");
        let mut addr = 0;
        let mut size = 0;
        ok(cuModuleGetGlobal_v2(
            &mut addr,
            &mut size,
            m,
            c"counter".as_ptr(),
        ));
        assert_eq!(size, 8);
        assert_eq!(read(addr, 8), [5, 0, 0, 0, 6, 0, 0, 0]);
        fails(
            cuModuleGetGlobal_v2(&mut addr, &mut size, m, c"nothing".as_ptr()),
            e(CuError::NotFound),
        );
        let f = function(m, c"bump");
        ok(cuLaunchKernel(
            f,
            1,
            1,
            1,
            1,
            1,
            1,
            0,
            null_mut(),
            null_mut(),
            null_mut(),
        ));
        assert_eq!(read(addr, 4), [6, 0, 0, 0]);
        // A module's variable is not a cuMemAlloc allocation.
        fails(cuMemFree_v2(addr), e(CuError::InvalidValue));
        ok(cuModuleUnload(m));
    }
}
