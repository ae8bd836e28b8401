//! Modules, functions, kernel launches.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::Arc;

use super::graph::Node;
use super::{
    err, handle, id_of, out, state, CUdeviceptr, CUfunction, CUmodule, CUstream, DResult, Func,
    Kind, ModuleEntry, State,
};
use crate::device as dev;
use crate::error::CuError;
use crate::ir::Space;

pub const CU_JIT_INFO_LOG_BUFFER: c_int = 3;
pub const CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES: c_int = 4;
pub const CU_JIT_ERROR_LOG_BUFFER: c_int = 5;
pub const CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES: c_int = 6;

pub const CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: c_int = 0;
pub const CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES: c_int = 1;
pub const CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: c_int = 8;
pub const CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT: c_int = 9;

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const FATBIN_MAGIC: u32 = 0xBA55_ED50;
const FATBIN_WRAPPER_MAGIC: u32 = 0x4662_43B1;
/// Bytes of a binary image handed to the loader (it only looks at the magic).
const BINARY_PREFIX: usize = 16;

/// The bytes of a module image: PTX text up to its NUL, or a binary's first bytes.
unsafe fn image_slice<'a>(image: *const c_void) -> &'a [u8] {
    let p = image as *const u8;
    // The first bytes, stopping at a NUL (a short text).
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < 4 {
        let b = *p.add(n);
        if b == 0 {
            break;
        }
        head[n] = b;
        n += 1;
    }
    if n == 4 {
        let magic = u32::from_le_bytes(head);
        if &head == ELF_MAGIC || magic == FATBIN_MAGIC || magic == FATBIN_WRAPPER_MAGIC {
            return std::slice::from_raw_parts(p, BINARY_PREFIX);
        }
    }
    CStr::from_ptr(p as *const c_char).to_bytes()
}

/// Where the JIT log options of `cuModuleLoadDataEx` point.
#[derive(Default)]
struct JitLogs {
    error: Option<(*mut c_char, *mut *mut c_void)>,
    info: Option<(*mut c_char, *mut *mut c_void)>,
}

unsafe fn jit_logs(n: c_uint, options: *const c_int, values: *mut *mut c_void) -> DResult<JitLogs> {
    let mut logs = JitLogs::default();
    if n == 0 {
        return Ok(logs);
    }
    if options.is_null() || values.is_null() {
        return err(CuError::InvalidValue);
    }
    let mut bufs: HashMap<c_int, usize> = HashMap::new();
    for i in 0..n as usize {
        bufs.insert(*options.add(i), i);
    }
    let pick = |buf: c_int, size: c_int| -> Option<(*mut c_char, *mut *mut c_void)> {
        let b = *values.add(*bufs.get(&buf)?) as *mut c_char;
        let s = values.add(*bufs.get(&size)?);
        (!b.is_null()).then_some((b, s))
    };
    logs.error = pick(CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES);
    logs.info = pick(CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES);
    Ok(logs)
}

/// Copies `text` into a JIT log buffer (NUL-terminated, truncated to its size) and writes back
/// the bytes used.
unsafe fn fill_log(slot: Option<(*mut c_char, *mut *mut c_void)>, text: &str) {
    let Some((buf, size)) = slot else { return };
    let cap = *size as usize;
    if cap == 0 {
        return;
    }
    let n = text.len().min(cap - 1);
    std::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, n);
    *buf.add(n) = 0;
    *size = (n + 1) as *mut c_void;
}

unsafe fn load(module: *mut CUmodule, image: &[u8], logs: JitLogs) -> DResult<()> {
    let mut st = state();
    st.ctx()?;
    if module.is_null() {
        return err(CuError::InvalidValue);
    }
    match crate::loader::load_image(&mut st.mem, image) {
        Ok(loaded) => {
            fill_log(logs.error, "");
            fill_log(logs.info, "");
            let id = st.new_id();
            st.modules.insert(
                id,
                ModuleEntry {
                    loaded: Arc::new(loaded),
                    functions: HashMap::new(),
                },
            );
            out(module, handle(Kind::Module, id))
        }
        Err((e, log)) => {
            // A refused binary is expected (lav2 tries its cubin before its PTX on every
            // context): say so once per process; every PTX failure is printed.
            static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
            let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
            if e != CuError::NoBinaryForGpu || !said.contains(&log) {
                for line in log.lines() {
                    crate::report(line);
                }
                if e == CuError::NoBinaryForGpu {
                    said.push(log.clone());
                }
            }
            drop(said);
            fill_log(logs.error, &log);
            fill_log(logs.info, "");
            err(e)
        }
    }
}

impl State {
    fn func(&self, f: CUfunction) -> DResult<&Func> {
        let id = id_of(Kind::Function, f)?;
        self.functions
            .get(&id)
            .ok_or_else(|| CuError::InvalidHandle.into())
    }

    fn module_entry(&self, m: CUmodule) -> DResult<(u64, &ModuleEntry)> {
        let id = id_of(Kind::Module, m)?;
        Ok((id, self.modules.get(&id).ok_or(CuError::InvalidHandle)?))
    }
}

/// Packs `kernelParams` (entry i points at parameter i's bytes) at the kernel's offsets.
unsafe fn pack_params(k: &crate::ir::Kernel, params: *mut *mut c_void) -> DResult<Vec<u8>> {
    let mut buf = vec![0u8; k.param_bytes as usize];
    if k.params.is_empty() {
        return Ok(buf);
    }
    if params.is_null() {
        return err(CuError::InvalidValue);
    }
    for (i, p) in k.params.iter().enumerate() {
        let src = *params.add(i) as *const u8;
        if src.is_null() {
            return err(CuError::InvalidValue);
        }
        let (off, size) = (p.offset as usize, p.size as usize);
        if off + size > buf.len() {
            return err(CuError::InvalidValue);
        }
        std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr().add(off), size);
    }
    Ok(buf)
}

#[allow(clippy::too_many_arguments)]
unsafe fn launch_kernel(
    f: CUfunction,
    grid: [c_uint; 3],
    block: [c_uint; 3],
    shared: c_uint,
    stream: CUstream,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> DResult<()> {
    let mut st = state();
    st.ctx()?;
    let func = st.func(f)?;
    if !extra.is_null() {
        crate::report("cuLaunchKernel: the `extra` argument is not supported (use kernelParams)");
        return err(CuError::InvalidValue);
    }
    let kernel = func.kernel.clone();
    let module = st.modules[&func.module].loaded.clone();
    let max_dynamic_shared = func.max_dynamic_shared.unwrap_or(0);
    let buf = pack_params(&kernel, params)?;
    let node = Node::Kernel {
        module,
        kernel,
        grid,
        block,
        dynamic_shared: shared,
        max_dynamic_shared,
        params: buf,
    };
    let s = st.stream_ref(stream)?;
    st.enqueue(s, node)
}

exports! {
    fn cuModuleLoadData(module: *mut CUmodule, image: *const c_void) {
        if image.is_null() {
            return err(CuError::InvalidValue);
        }
        load(module, image_slice(image), JitLogs::default())
    }

    fn cuModuleLoadDataEx(
        module: *mut CUmodule,
        image: *const c_void,
        num_options: c_uint,
        options: *const c_int,
        option_values: *mut *mut c_void,
    ) {
        if image.is_null() {
            return err(CuError::InvalidValue);
        }
        let logs = jit_logs(num_options, options, option_values)?;
        load(module, image_slice(image), logs)
    }

    fn cuModuleLoad(module: *mut CUmodule, fname: *const c_char) {
        if fname.is_null() {
            return err(CuError::InvalidValue);
        }
        let path = CStr::from_ptr(fname).to_string_lossy().into_owned();
        let Ok(mut bytes) = std::fs::read(&path) else {
            return err(CuError::NotFound);
        };
        bytes.push(0);
        load(module, image_slice(bytes.as_ptr() as *const c_void), JitLogs::default())
    }

    fn cuModuleUnload(module: CUmodule) {
        let mut st = state();
        st.ctx()?;
        let (id, _) = st.module_entry(module)?;
        let m = st.modules.remove(&id).expect("module");
        for f in m.functions.values() {
            st.functions.remove(f);
        }
        crate::loader::unload(&mut st.mem, &m.loaded);
        Ok(())
    }

    fn cuModuleGetFunction(hfunc: *mut CUfunction, module: CUmodule, name: *const c_char) {
        let mut st = state();
        st.ctx()?;
        if hfunc.is_null() || name.is_null() {
            return err(CuError::InvalidValue);
        }
        let name = CStr::from_ptr(name).to_string_lossy().into_owned();
        let (mid, m) = st.module_entry(module)?;
        if let Some(&f) = m.functions.get(&name) {
            return out(hfunc, handle(Kind::Function, f));
        }
        let kernel = m.loaded.module.kernel(&name).ok_or(CuError::NotFound)?.clone();
        let fid = st.new_id();
        st.functions.insert(
            fid,
            Func {
                module: mid,
                kernel,
                max_dynamic_shared: None,
                carveout: -1,
            },
        );
        st.modules.get_mut(&mid).expect("module").functions.insert(name, fid);
        out(hfunc, handle(Kind::Function, fid))
    }

    fn cuModuleGetGlobal_v2(dptr: *mut CUdeviceptr, bytes: *mut usize, module: CUmodule, name: *const c_char) {
        let st = state();
        st.ctx()?;
        if name.is_null() {
            return err(CuError::InvalidValue);
        }
        let name = CStr::from_ptr(name).to_string_lossy();
        let (_, m) = st.module_entry(module)?;
        let i = m
            .loaded
            .module
            .globals
            .iter()
            .position(|g| g.name == name)
            .ok_or(CuError::NotFound)?;
        let addr = *m.loaded.global_addrs.get(i).ok_or(CuError::NotFound)?;
        if !dptr.is_null() {
            dptr.write(addr);
        }
        if !bytes.is_null() {
            bytes.write(m.loaded.module.globals[i].size as usize);
        }
        Ok(())
    }

    fn cuFuncGetAttribute(pi: *mut c_int, attrib: c_int, hfunc: CUfunction) {
        let st = state();
        st.ctx()?;
        if pi.is_null() {
            return err(CuError::InvalidValue);
        }
        let f = st.func(hfunc)?;
        let k = &f.kernel;
        let module = &st.modules[&f.module].loaded.module;
        let threads = |d: [u32; 3]| (d[0] * d[1] * d[2]) as c_int;
        let v = match attrib {
            CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK => k
                .reqntid
                .or(k.maxntid)
                .map(threads)
                .unwrap_or(dev::MAX_THREADS_PER_BLOCK as c_int),
            CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES => k.static_shared as c_int,
            2 => module
                .globals
                .iter()
                .filter(|g| g.space == Space::Const)
                .map(|g| g.size as c_int)
                .sum(),
            3 => k.local_bytes as c_int,
            // NUM_REGS: a plausible count (64 registers × 1024 threads fit an SM's 64K).
            4 => (k.reg_bits.len() as c_int).clamp(16, 64),
            5 => (module.version.0 * 10 + module.version.1) as c_int,
            6 => dev::COMPUTE_CAPABILITY.0 * 10 + dev::COMPUTE_CAPABILITY.1,
            7 => 0,
            CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES => f
                .max_dynamic_shared
                .map(|v| v as c_int)
                .unwrap_or((dev::SHARED_PER_BLOCK.saturating_sub(k.static_shared)) as c_int),
            CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT => f.carveout,
            10..=17 => 0,
            _ => return err(CuError::InvalidValue),
        };
        out(pi, v)
    }

    fn cuFuncSetAttribute(hfunc: CUfunction, attrib: c_int, value: c_int) {
        let mut st = state();
        st.ctx()?;
        let id = id_of(Kind::Function, hfunc)?;
        let f = st.functions.get_mut(&id).ok_or(CuError::InvalidHandle)?;
        match attrib {
            CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES => {
                let limit = dev::SHARED_PER_BLOCK_OPTIN.saturating_sub(f.kernel.static_shared);
                if value < 0 || value as u32 > limit {
                    return err(CuError::InvalidValue);
                }
                f.max_dynamic_shared = Some(value as u32);
            }
            CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT => {
                if !(-1..=100).contains(&value) {
                    return err(CuError::InvalidValue);
                }
                f.carveout = value;
            }
            // Cluster attributes: accepted, no effect.
            10..=17 => {}
            _ => return err(CuError::InvalidValue),
        }
        Ok(())
    }

    fn cuFuncSetCacheConfig(hfunc: CUfunction, config: c_int) {
        let st = state();
        st.ctx()?;
        st.func(hfunc)?;
        if !(0..=3).contains(&config) {
            return err(CuError::InvalidValue);
        }
        Ok(())
    }

    fn cuFuncGetModule(hmod: *mut CUmodule, hfunc: CUfunction) {
        let st = state();
        st.ctx()?;
        let f = st.func(hfunc)?;
        out(hmod, handle(Kind::Module, f.module))
    }

    fn cuLaunchKernel(
        f: CUfunction,
        grid_x: c_uint, grid_y: c_uint, grid_z: c_uint,
        block_x: c_uint, block_y: c_uint, block_z: c_uint,
        shared_mem_bytes: c_uint,
        stream: CUstream,
        kernel_params: *mut *mut c_void,
        extra: *mut *mut c_void,
    ) {
        launch_kernel(
            f,
            [grid_x, grid_y, grid_z],
            [block_x, block_y, block_z],
            shared_mem_bytes,
            stream,
            kernel_params,
            extra,
        )
    }

    fn cuLaunchCooperativeKernel(
        f: CUfunction,
        grid_x: c_uint, grid_y: c_uint, grid_z: c_uint,
        block_x: c_uint, block_y: c_uint, block_z: c_uint,
        shared_mem_bytes: c_uint,
        stream: CUstream,
        kernel_params: *mut *mut c_void,
    ) {
        launch_kernel(
            f,
            [grid_x, grid_y, grid_z],
            [block_x, block_y, block_z],
            shared_mem_bytes,
            stream,
            kernel_params,
            std::ptr::null_mut(),
        )
    }

    fn cuOccupancyMaxActiveBlocksPerMultiprocessor(num_blocks: *mut c_int, f: CUfunction, block_size: c_int, dynamic_smem: usize) {
        occupancy(num_blocks, f, block_size, dynamic_smem)
    }

    fn cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(num_blocks: *mut c_int, f: CUfunction, block_size: c_int, dynamic_smem: usize, _flags: c_uint) {
        occupancy(num_blocks, f, block_size, dynamic_smem)
    }

    fn cuOccupancyAvailableDynamicSMemPerBlock(size: *mut usize, f: CUfunction, num_blocks: c_int, block_size: c_int) {
        let st = state();
        st.ctx()?;
        let func = st.func(f)?;
        if num_blocks <= 0 || block_size <= 0 {
            return err(CuError::InvalidValue);
        }
        let per_block = dev::SHARED_PER_MULTIPROCESSOR / num_blocks as u32;
        let v = per_block
            .min(dev::SHARED_PER_BLOCK_OPTIN)
            .saturating_sub(func.kernel.static_shared + 1024);
        out(size, v as usize)
    }
}

/// Blocks per SM from threads, shared memory and the 32-block limit (registers not modelled).
unsafe fn occupancy(
    num_blocks: *mut c_int,
    f: CUfunction,
    block_size: c_int,
    dynamic_smem: usize,
) -> DResult<()> {
    let st = state();
    st.ctx()?;
    let func = st.func(f)?;
    if block_size <= 0 || num_blocks.is_null() {
        return err(CuError::InvalidValue);
    }
    let by_threads = 2048 / block_size;
    let smem = func.kernel.static_shared as usize + dynamic_smem + 1024;
    let by_smem = dev::SHARED_PER_MULTIPROCESSOR as usize / smem;
    out(num_blocks, by_threads.min(by_smem as c_int).min(32))
}
