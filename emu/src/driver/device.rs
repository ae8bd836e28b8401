//! Initialisation, the device, contexts, error strings.

use std::collections::HashMap;
use std::ffi::c_void;
use std::ffi::{c_char, c_int, c_uint, CString};
use std::sync::OnceLock;

use super::{
    err, handle, id_of, out, state, CUcontext, CUdevice, CUresult, DResult, Kind, CURRENT,
    PRIMARY_CTX,
};
use crate::device as dev;
use crate::error::CuError;

/// `cuDeviceGetAttribute`'s answer for each `CUdevice_attribute` (CUDA 13.0 numbering); `None`
/// for codes outside the enum. Values not in [`crate::device`] are an H100's (or 0 for a feature
/// the emulator does not have).
pub fn device_attribute(attr: c_int) -> Option<i32> {
    let sm_threads = 2048;
    Some(match attr {
        1 => dev::MAX_THREADS_PER_BLOCK as i32,
        2..=4 => dev::MAX_BLOCK_DIM[(attr - 2) as usize] as i32,
        5..=7 => dev::MAX_GRID_DIM[(attr - 5) as usize] as i32,
        8 => dev::SHARED_PER_BLOCK as i32,
        9 => 65536, // TOTAL_CONSTANT_MEMORY
        10 => dev::WARP_SIZE as i32,
        11 => i32::MAX,                 // MAX_PITCH
        12 => dev::REGISTERS_PER_BLOCK, // MAX_REGISTERS_PER_BLOCK
        13 => dev::CLOCK_RATE_KHZ,
        14 => 512, // TEXTURE_ALIGNMENT
        15 => 1,   // GPU_OVERLAP
        16 => dev::MULTIPROCESSORS,
        17 => 0, // KERNEL_EXEC_TIMEOUT
        18 => 0, // INTEGRATED
        19 => 1, // CAN_MAP_HOST_MEMORY
        20 => 0, // COMPUTE_MODE: default
        21 => 131072,
        22 | 23 => 131072,
        24..=26 => 16384,
        27 | 28 => 32768,
        29 => 2048,
        30 => 512, // SURFACE_ALIGNMENT
        31 => 1,   // CONCURRENT_KERNELS
        32 => 0,   // ECC_ENABLED
        33 => 0,   // PCI_BUS_ID
        34 => 0,   // PCI_DEVICE_ID
        35 => 0,   // TCC_DRIVER
        36 => dev::MEMORY_CLOCK_RATE_KHZ,
        37 => dev::MEMORY_BUS_WIDTH,
        38 => dev::L2_CACHE_BYTES,
        39 => sm_threads, // MAX_THREADS_PER_MULTIPROCESSOR
        40 => 2,          // ASYNC_ENGINE_COUNT
        41 => 1,          // UNIFIED_ADDRESSING
        42 => 32768,
        43 => 2048,
        44 => 1,
        45 | 46 => 32768,
        47..=49 => 8192,
        50 => 0,  // PCI_DOMAIN_ID
        51 => 32, // TEXTURE_PITCH_ALIGNMENT
        52 | 53 => 32768,
        54 => 2046,
        55..=57 => 32768,
        58 | 59 => 16384,
        60 => 16384,
        61 => 32768,
        62 => 2048,
        63 | 64 => 32768,
        65 => 2048,
        66 | 67 => 32768,
        68 => 2046,
        69 => 268435456,
        70 | 71 => 131072,
        72 => 2097120,
        73 | 74 => 32768,
        75 => dev::COMPUTE_CAPABILITY.0,
        76 => dev::COMPUTE_CAPABILITY.1,
        77 => 32768,
        78 => 1,      // STREAM_PRIORITIES_SUPPORTED
        79 | 80 => 1, // GLOBAL/LOCAL_L1_CACHE_SUPPORTED
        81 => dev::SHARED_PER_MULTIPROCESSOR as i32,
        82 => 65536,  // MAX_REGISTERS_PER_MULTIPROCESSOR
        83 => 0,      // MANAGED_MEMORY: not emulated
        84 | 85 => 0, // MULTI_GPU_BOARD(_GROUP_ID)
        86 => 0,      // HOST_NATIVE_ATOMIC_SUPPORTED
        87 => 2,      // SINGLE_TO_DOUBLE_PRECISION_PERF_RATIO
        88 | 89 => 0, // PAGEABLE_MEMORY_ACCESS, CONCURRENT_MANAGED_ACCESS
        90 => 1,      // COMPUTE_PREEMPTION_SUPPORTED
        91 => 0,
        92..=94 => 0,
        95 => 1, // COOPERATIVE_LAUNCH
        96 => 0,
        97 => dev::SHARED_PER_BLOCK_OPTIN as i32,
        98 => 0,
        99 => 0, // HOST_REGISTER_SUPPORTED: not emulated
        100 | 101 => 0,
        102 => 0, // VIRTUAL_ADDRESS_MANAGEMENT_SUPPORTED: not emulated
        103..=105 => 0,
        106 => 32, // MAX_BLOCKS_PER_MULTIPROCESSOR
        107 => 0,
        108 => 32 << 20,  // MAX_PERSISTING_L2_CACHE_SIZE
        109 => 128 << 20, // MAX_ACCESS_POLICY_WINDOW_SIZE
        110 => 0,
        111 => 1024, // RESERVED_SHARED_MEMORY_PER_BLOCK
        112..=114 => 0,
        // MEMORY_POOLS_SUPPORTED: cudarc then allocates with cuMemAllocAsync/cuMemFreeAsync,
        // as on an H100.
        115 => 1,
        116..=118 => 0,
        119 => 0, // MEMPOOL_SUPPORTED_HANDLE_TYPES
        120 => 0, // CLUSTER_LAUNCH: not emulated
        121..=125 => 0,
        126 => 4, // MEM_SYNC_DOMAIN_COUNT
        127..=129 => 0,
        130 => 0,  // NUMA_CONFIG: none
        131 => -1, // NUMA_ID
        132 | 133 => 0,
        134 => -1, // HOST_NUMA_ID
        135..=147 => 0,
        _ => return None,
    })
}

fn check_dev(d: CUdevice) -> DResult<()> {
    if d == 0 {
        Ok(())
    } else {
        err(CuError::InvalidDevice)
    }
}

/// Every `CuError`, for the error-string table.
const ALL_ERRORS: &[CuError] = &[
    CuError::InvalidValue,
    CuError::OutOfMemory,
    CuError::NotInitialized,
    CuError::Deinitialized,
    CuError::NoDevice,
    CuError::InvalidDevice,
    CuError::InvalidImage,
    CuError::InvalidContext,
    CuError::NoBinaryForGpu,
    CuError::InvalidPtx,
    CuError::InvalidSource,
    CuError::InvalidHandle,
    CuError::NotFound,
    CuError::NotReady,
    CuError::IllegalAddress,
    CuError::LaunchOutOfResources,
    CuError::LaunchTimeout,
    CuError::MisalignedAddress,
    CuError::LaunchFailed,
    CuError::StreamCaptureUnsupported,
    CuError::StreamCaptureInvalidated,
    CuError::StreamCaptureUnmatched,
    CuError::StreamCaptureUnjoined,
    CuError::StreamCaptureIsolation,
    CuError::StreamCaptureImplicit,
    CuError::NotSupported,
    CuError::Unknown,
];

/// Codes the emulator returns that `CuError` does not have.
const EXTRA_ERRORS: &[(CUresult, &str, &str)] = &[
    (0, "CUDA_SUCCESS", "no error"),
    (
        401,
        "CUDA_ERROR_ILLEGAL_STATE",
        "the operation cannot be performed in the present state",
    ),
    (800, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted"),
    (
        902,
        "CUDA_ERROR_STREAM_CAPTURE_MERGE",
        "operation would result in a merge of separate capture sequences",
    ),
    (
        907,
        "CUDA_ERROR_CAPTURED_EVENT",
        "operation not permitted on an event last recorded in a capturing stream",
    ),
    (
        908,
        "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD",
        "attempt to terminate a thread-local capture sequence from another thread",
    ),
];

/// The static, NUL-terminated (name, description) of a result code.
fn error_strings(code: CUresult) -> Option<&'static (CString, CString)> {
    static TABLE: OnceLock<HashMap<CUresult, (CString, CString)>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = HashMap::new();
        for e in ALL_ERRORS {
            t.insert(
                e.code(),
                (
                    CString::new(e.name()).unwrap(),
                    CString::new(e.description()).unwrap(),
                ),
            );
        }
        for &(c, n, d) in EXTRA_ERRORS {
            t.insert(c, (CString::new(n).unwrap(), CString::new(d).unwrap()));
        }
        t
    });
    table.get(&code)
}

/// The C-string name and description of a result code (for the tests and `cuGetError*`).
pub fn error_name_and_string(
    code: CUresult,
) -> Option<(&'static std::ffi::CStr, &'static std::ffi::CStr)> {
    let (n, d) = error_strings(code)?;
    Some((n.as_c_str(), d.as_c_str()))
}

exports! {
    fn cuInit(flags: c_uint) {
        if flags != 0 {
            return err(CuError::InvalidValue);
        }
        state().initialized = true;
        Ok(())
    }

    fn cuDriverGetVersion(version: *mut c_int) {
        out(version, dev::DRIVER_VERSION)
    }

    /// The driver's private export tables: NVRTC asks for them when it finds a libcuda (and
    /// crashed on a missing symbol). The emulator has none; NVRTC then compiles without them.
    fn cuGetExportTable(table: *mut *const c_void, _id: *const c_void) {
        if !table.is_null() {
            table.write(std::ptr::null());
        }
        err(CuError::NotFound)
    }

    fn cuGetErrorName(error: CUresult, p_str: *mut *const c_char) {
        if p_str.is_null() {
            return err(CuError::InvalidValue);
        }
        match error_strings(error) {
            Some((n, _)) => out(p_str, n.as_ptr()),
            None => {
                p_str.write(std::ptr::null());
                err(CuError::InvalidValue)
            }
        }
    }

    fn cuGetErrorString(error: CUresult, p_str: *mut *const c_char) {
        if p_str.is_null() {
            return err(CuError::InvalidValue);
        }
        match error_strings(error) {
            Some((_, d)) => out(p_str, d.as_ptr()),
            None => {
                p_str.write(std::ptr::null());
                err(CuError::InvalidValue)
            }
        }
    }

    fn cuDeviceGetCount(count: *mut c_int) {
        state().check_init()?;
        out(count, 1)
    }

    fn cuDeviceGet(device: *mut CUdevice, ordinal: c_int) {
        state().check_init()?;
        if device.is_null() {
            return err(CuError::InvalidValue);
        }
        check_dev(ordinal)?;
        out(device, 0)
    }

    fn cuDeviceGetName(name: *mut c_char, len: c_int, device: CUdevice) {
        state().check_init()?;
        check_dev(device)?;
        if name.is_null() || len <= 0 {
            return err(CuError::InvalidValue);
        }
        let bytes = dev::NAME.as_bytes();
        let n = bytes.len().min(len as usize - 1);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), name as *mut u8, n);
        *name.add(n) = 0;
        Ok(())
    }

    fn cuDeviceGetUuid(uuid: *mut [u8; 16], device: CUdevice) {
        state().check_init()?;
        check_dev(device)?;
        out(uuid, *b"cuda-emu\0ptx\0emu")
    }

    fn cuDeviceGetUuid_v2(uuid: *mut [u8; 16], device: CUdevice) {
        state().check_init()?;
        check_dev(device)?;
        out(uuid, *b"cuda-emu\0ptx\0emu")
    }

    fn cuDeviceTotalMem_v2(bytes: *mut usize, device: CUdevice) {
        state().check_init()?;
        check_dev(device)?;
        out(bytes, dev::TOTAL_MEMORY as usize)
    }

    fn cuDeviceGetAttribute(pi: *mut c_int, attrib: c_int, device: CUdevice) {
        state().check_init()?;
        check_dev(device)?;
        if pi.is_null() {
            return err(CuError::InvalidValue);
        }
        match device_attribute(attrib) {
            Some(v) => out(pi, v),
            None => err(CuError::InvalidValue),
        }
    }

    fn cuDevicePrimaryCtxRetain(pctx: *mut CUcontext, device: CUdevice) {
        let mut st = state();
        st.check_init()?;
        check_dev(device)?;
        if pctx.is_null() {
            return err(CuError::InvalidValue);
        }
        st.primary_refs += 1;
        out(pctx, handle(Kind::Ctx, PRIMARY_CTX))
    }

    fn cuDevicePrimaryCtxRelease_v2(device: CUdevice) {
        let mut st = state();
        st.check_init()?;
        check_dev(device)?;
        if st.primary_refs == 0 {
            return err(CuError::InvalidContext);
        }
        st.primary_refs -= 1;
        if st.primary_refs == 0 && st.created_ctxs.is_empty() {
            st.reset();
        }
        Ok(())
    }

    fn cuDevicePrimaryCtxReset_v2(device: CUdevice) {
        let mut st = state();
        st.check_init()?;
        check_dev(device)?;
        st.reset();
        Ok(())
    }

    fn cuDevicePrimaryCtxGetState(device: CUdevice, flags: *mut c_uint, active: *mut c_int) {
        let st = state();
        st.check_init()?;
        check_dev(device)?;
        out(flags, 0)?;
        out(active, (st.primary_refs > 0) as c_int)
    }

    fn cuDevicePrimaryCtxSetFlags_v2(device: CUdevice, _flags: c_uint) {
        state().check_init()?;
        check_dev(device)
    }

    fn cuCtxCreate_v2(pctx: *mut CUcontext, _flags: c_uint, device: CUdevice) {
        create_ctx(pctx, device)
    }

    fn cuCtxCreate_v3(pctx: *mut CUcontext, _params: *mut std::ffi::c_void, _num_params: c_int, _flags: c_uint, device: CUdevice) {
        create_ctx(pctx, device)
    }

    fn cuCtxCreate_v4(pctx: *mut CUcontext, _params: *mut std::ffi::c_void, _flags: c_uint, device: CUdevice) {
        create_ctx(pctx, device)
    }

    fn cuCtxDestroy_v2(ctx: CUcontext) {
        let mut st = state();
        st.check_init()?;
        let id = id_of(Kind::Ctx, ctx)?;
        if id == PRIMARY_CTX {
            // The primary context is released, never destroyed.
            return err(CuError::InvalidContext);
        }
        let Some(pos) = st.created_ctxs.iter().position(|&c| c == id) else {
            return err(CuError::InvalidContext);
        };
        st.created_ctxs.remove(pos);
        CURRENT.with(|c| {
            if c.get() == id {
                c.set(0)
            }
        });
        if st.primary_refs == 0 && st.created_ctxs.is_empty() {
            st.reset();
        }
        Ok(())
    }

    fn cuCtxSetCurrent(ctx: CUcontext) {
        let st = state();
        st.check_init()?;
        if ctx.is_null() {
            CURRENT.with(|c| c.set(0));
            return Ok(());
        }
        let id = id_of(Kind::Ctx, ctx)?;
        if !st.ctx_alive(id) {
            return err(CuError::InvalidContext);
        }
        CURRENT.with(|c| c.set(id));
        Ok(())
    }

    fn cuCtxGetCurrent(pctx: *mut CUcontext) {
        state().check_init()?;
        let cur = CURRENT.with(|c| c.get());
        out(pctx, if cur == 0 { std::ptr::null_mut() } else { handle(Kind::Ctx, cur) })
    }

    fn cuCtxPushCurrent_v2(ctx: CUcontext) {
        // One level: the context becomes current (the previous one is forgotten).
        let st = state();
        st.check_init()?;
        let id = id_of(Kind::Ctx, ctx)?;
        if !st.ctx_alive(id) {
            return err(CuError::InvalidContext);
        }
        CURRENT.with(|c| c.set(id));
        Ok(())
    }

    fn cuCtxPopCurrent_v2(pctx: *mut CUcontext) {
        state().check_init()?;
        let cur = CURRENT.with(|c| c.replace(0));
        if cur == 0 {
            return err(CuError::InvalidContext);
        }
        if !pctx.is_null() {
            pctx.write(handle(Kind::Ctx, cur));
        }
        Ok(())
    }

    fn cuCtxGetDevice(device: *mut CUdevice) {
        state().ctx()?;
        out(device, 0)
    }

    fn cuCtxGetApiVersion(ctx: CUcontext, version: *mut c_uint) {
        let st = state();
        st.check_init()?;
        let id = id_of(Kind::Ctx, ctx)?;
        if !st.ctx_alive(id) {
            return err(CuError::InvalidContext);
        }
        out(version, 12010)
    }

    fn cuCtxSetFlags(_flags: c_uint) {
        state().ctx()
    }

    fn cuCtxGetFlags(flags: *mut c_uint) {
        state().ctx()?;
        out(flags, 0)
    }

    fn cuCtxGetLimit(value: *mut usize, limit: c_int) {
        state().ctx()?;
        let v = match limit {
            0 => 1024,                 // STACK_SIZE
            1 => 1 << 20,              // PRINTF_FIFO_SIZE
            2 => 8 << 20,              // MALLOC_HEAP_SIZE
            3 => 2,                    // DEV_RUNTIME_SYNC_DEPTH
            4 => 2048,                 // DEV_RUNTIME_PENDING_LAUNCH_COUNT
            5 => 32,                   // MAX_L2_FETCH_GRANULARITY
            6 => 0,                    // PERSISTING_L2_CACHE_SIZE
            7 | 8 => 0,
            _ => return err(CuError::InvalidValue),
        };
        out(value, v)
    }

    fn cuCtxSetLimit(limit: c_int, _value: usize) {
        state().ctx()?;
        if !(0..=8).contains(&limit) {
            return err(CuError::InvalidValue);
        }
        Ok(())
    }

    fn cuCtxGetCacheConfig(config: *mut c_int) {
        state().ctx()?;
        out(config, 0)
    }

    fn cuCtxSetCacheConfig(config: c_int) {
        state().ctx()?;
        if !(0..=3).contains(&config) {
            return err(CuError::InvalidValue);
        }
        Ok(())
    }

    fn cuCtxGetStreamPriorityRange(least: *mut c_int, greatest: *mut c_int) {
        state().ctx()?;
        if !least.is_null() {
            least.write(0);
        }
        if !greatest.is_null() {
            greatest.write(-5);
        }
        Ok(())
    }
}

unsafe fn create_ctx(pctx: *mut CUcontext, device: CUdevice) -> DResult<()> {
    let mut st = state();
    st.check_init()?;
    check_dev(device)?;
    if pctx.is_null() {
        return err(CuError::InvalidValue);
    }
    let id = st.new_id();
    st.created_ctxs.push(id);
    CURRENT.with(|c| c.set(id));
    out(pctx, handle(Kind::Ctx, id))
}
