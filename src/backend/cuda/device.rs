//! Opening the GPU: driver and device checks that fail with a clean error instead of a panic, one
//! context with one non-default stream, and the kernel modules — the sm_90a cubin on compute
//! capability 9.0, else the compute_80 PTX, else the embedded sources compiled by NVRTC.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{anyhow, bail, Result};
use cudarc::driver::{result, sys, CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::{CompileOptions, Ptx};

use crate::ops::kernels::{self, KernelModule, COMMON_HEADER, NVCC_HELP};

/// How a kernel module got onto the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModulePath {
    Cubin,
    Ptx,
    Nvrtc(String),
}

impl ModulePath {
    fn label(&self) -> String {
        match self {
            ModulePath::Cubin => "cubin sm_90a".into(),
            ModulePath::Ptx => "PTX compute_80 (driver JIT)".into(),
            ModulePath::Nvrtc(arch) => format!("NVRTC {arch}"),
        }
    }
}

/// Which module paths may be tried, from `LAV2_CUDA_JIT`: unset/`auto` = all in order,
/// `ptx` = skip the cubin, `nvrtc` = compile the sources at run time only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JitChoice {
    Auto,
    Ptx,
    Nvrtc,
}

/// A loaded kernel by entry-point name.
pub fn function(functions: &HashMap<String, CudaFunction>, name: &str) -> Result<CudaFunction> {
    functions
        .get(name)
        .cloned()
        .ok_or_else(|| anyhow!("kernel {name} is missing from the loaded modules"))
}

pub struct Device {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub name: String,
    pub cc: (i32, i32),
    pub total_mem: usize,
    pub sms: usize,
    /// Largest dynamic shared memory a block may opt into.
    pub max_smem_optin: usize,
    /// `cuDriverGetVersion`: 13000 for CUDA 13.0.
    pub driver_version: i32,
    pub functions: HashMap<String, CudaFunction>,
    /// One line: which path each module was loaded by.
    pub modules_summary: String,
    _modules: Vec<Arc<CudaModule>>,
}

impl Device {
    /// The same device, context and kernels with a stream of its own, so that work queued by
    /// another backend sharing them is not ordered with this one's.
    pub fn with_new_stream(&self) -> Result<Device> {
        let stream = self
            .ctx
            .new_stream()
            .map_err(|e| anyhow!("could not create a CUDA stream: {e}"))?;
        Ok(Device {
            ctx: self.ctx.clone(),
            stream,
            name: self.name.clone(),
            cc: self.cc,
            total_mem: self.total_mem,
            sms: self.sms,
            max_smem_optin: self.max_smem_optin,
            driver_version: self.driver_version,
            functions: self.functions.clone(),
            modules_summary: self.modules_summary.clone(),
            _modules: self._modules.clone(),
        })
    }
}

fn version_str(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// Opens device 0. Any panic inside cudarc (a symbol the installed driver lacks, say) becomes an
/// error too.
pub fn open() -> Result<Device> {
    // cudarc panics when libcuda is absent; ask first.
    if !unsafe { sys::is_culib_present() } {
        return Err(crate::notice::OptionError::new(
            &["device"],
            "no CUDA driver found (libcuda.so could not be loaded): this machine has no NVIDIA \
             driver or no GPU; use {device} cpu",
        )
        .into());
    }
    match std::panic::catch_unwind(open_inner) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            bail!(
                "the CUDA driver could not be used ({msg}); the driver may be older than CUDA 12.8"
            )
        }
    }
}

fn open_inner() -> Result<Device> {
    let mut driver_version = 0i32;
    // SAFETY: plain out-parameter call, valid before cuInit.
    unsafe { sys::cuDriverGetVersion(&mut driver_version) }
        .result()
        .map_err(|e| anyhow!("the CUDA driver does not answer cuDriverGetVersion: {e}"))?;
    if let Err(e) = result::init() {
        if e.0 == sys::cudaError_enum::CUDA_ERROR_NO_DEVICE {
            bail!(
                "no CUDA GPU found (the driver, CUDA {}, reports no device)",
                version_str(driver_version)
            );
        }
        bail!(
            "the CUDA driver (CUDA {}) failed to initialize: {e}",
            version_str(driver_version)
        );
    }
    let count = result::device::get_count().map_err(|e| anyhow!("cuDeviceGetCount failed: {e}"))?;
    if count < 1 {
        bail!(
            "no CUDA GPU found (the driver, CUDA {}, reports 0 devices)",
            version_str(driver_version)
        );
    }
    let ctx = CudaContext::new(0)
        .map_err(|e| anyhow!("could not create a CUDA context on GPU 0: {e}"))?;
    // One stream and explicit ordering: no per-buffer events (they would also break graph capture).
    // SAFETY: every buffer of this backend is used on `stream` only.
    unsafe { ctx.disable_event_tracking() };
    let stream = ctx
        .new_stream()
        .map_err(|e| anyhow!("could not create a CUDA stream: {e}"))?;
    let name = ctx.name().unwrap_or_else(|_| "unknown NVIDIA GPU".into());
    let cc = ctx.compute_capability()?;
    if cc.0 < 8 {
        bail!(
            "{name} has compute capability {}.{}; lav2's kernels need 8.0 (Ampere) or newer",
            cc.0,
            cc.1
        );
    }
    let total_mem = ctx.total_mem()?;
    let sms =
        ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as usize;
    let max_smem_optin = ctx
        .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?
        as usize;

    let jit = match std::env::var("LAV2_CUDA_JIT").as_deref() {
        Ok("nvrtc") => JitChoice::Nvrtc,
        Ok("ptx") => JitChoice::Ptx,
        _ => JitChoice::Auto,
    };
    let nvrtc_ok = unsafe { cudarc::nvrtc::sys::is_culib_present() };
    if !kernels::compiled() && !nvrtc_ok {
        bail!(
            "the CUDA kernels were not compiled into this build, and NVRTC (libnvrtc.so) is not \
             available to compile them at run time. {NVCC_HELP}"
        );
    }
    if jit == JitChoice::Nvrtc && !nvrtc_ok {
        bail!("LAV2_CUDA_JIT=nvrtc but NVRTC (libnvrtc.so) could not be loaded");
    }

    let mut functions = HashMap::new();
    let mut modules = Vec::new();
    let mut paths: Vec<(String, ModulePath)> = Vec::new();
    for m in kernels::KERNEL_MODULES {
        let (module, path) = load_module(&ctx, m, cc, jit, nvrtc_ok, driver_version)?;
        for ep in m.entry_points {
            let f = module
                .load_function(ep)
                .map_err(|e| anyhow!("kernel {ep} not found in module {}: {e}", m.name))?;
            functions.insert(ep.to_string(), f);
        }
        modules.push(module);
        paths.push((m.name.to_string(), path));
    }
    Ok(Device {
        ctx,
        stream,
        name,
        cc,
        total_mem,
        sms,
        max_smem_optin,
        driver_version,
        functions,
        modules_summary: summarize(&paths),
        _modules: modules,
    })
}

fn summarize(paths: &[(String, ModulePath)]) -> String {
    let mut kinds: Vec<(String, Vec<String>)> = Vec::new();
    for (name, p) in paths {
        let label = p.label();
        match kinds.iter_mut().find(|(l, _)| *l == label) {
            Some((_, v)) => v.push(name.clone()),
            None => kinds.push((label, vec![name.clone()])),
        }
    }
    if kinds.len() == 1 {
        return format!("{} ({} modules)", kinds[0].0, paths.len());
    }
    kinds
        .iter()
        .map(|(l, v)| format!("{l}: {}", v.join(" ")))
        .collect::<Vec<_>>()
        .join("; ")
}

fn load_module(
    ctx: &Arc<CudaContext>,
    m: &KernelModule,
    cc: (i32, i32),
    jit: JitChoice,
    nvrtc_ok: bool,
    driver_version: i32,
) -> Result<(Arc<CudaModule>, ModulePath)> {
    let mut tried: Vec<String> = Vec::new();
    if jit == JitChoice::Auto && cc == (9, 0) {
        if let Some(cubin) = m.cubin_sm90a {
            match ctx.load_module(Ptx::from_binary(cubin.to_vec())) {
                Ok(module) => return Ok((module, ModulePath::Cubin)),
                Err(e) => tried.push(format!("cubin sm_90a: {e}")),
            }
        }
    }
    if jit != JitChoice::Nvrtc {
        if let Some(ptx) = m.ptx {
            let text = String::from_utf8_lossy(ptx);
            let text = text.trim_end_matches('\0');
            if text.contains('\0') {
                tried.push("PTX: embedded text contains a NUL byte".into());
            } else {
                match ctx.load_module(Ptx::from_src(text.to_string())) {
                    Ok(module) => return Ok((module, ModulePath::Ptx)),
                    Err(e) => tried.push(format!(
                        "PTX compute_80: {e} (PTX from nvcc 13 needs a CUDA 13 driver; this one is CUDA {})",
                        version_str(driver_version)
                    )),
                }
            }
        } else {
            tried.push("no compiled PTX in this build".into());
        }
    }
    if nvrtc_ok {
        let mut archs = vec![format!("compute_{}{}", cc.0, cc.1)];
        if cc.0 >= 9 && cc != (9, 0) {
            archs.push("compute_90".into());
        }
        if cc != (8, 0) {
            archs.push("compute_80".into());
        }
        for arch in archs {
            match nvrtc_compile(m, &arch) {
                Ok(ptx) => match ctx.load_module(ptx) {
                    Ok(module) => return Ok((module, ModulePath::Nvrtc(arch))),
                    Err(e) => tried.push(format!("NVRTC {arch}: the driver rejected the PTX: {e}")),
                },
                Err(e) => tried.push(format!("NVRTC {arch}: {e}")),
            }
        }
    } else {
        tried.push("NVRTC: libnvrtc.so not found".into());
    }
    bail!(
        "could not load the CUDA kernels of kernels/{}.cu on this GPU (compute capability {}.{}, driver CUDA {}):\n  {}",
        m.name,
        cc.0,
        cc.1,
        version_str(driver_version),
        tried.join("\n  ")
    )
}

/// The module's source with `common.cuh` pasted in place of its include, as NVRTC compiles it.
pub fn nvrtc_source(m: &KernelModule) -> String {
    let header: String = COMMON_HEADER
        .1
        .lines()
        .filter(|l| l.trim() != "#pragma once")
        .map(|l| format!("{l}\n"))
        .collect();
    let mut out = String::with_capacity(m.source.len() + header.len());
    let mut pasted = false;
    for line in m.source.lines() {
        if !pasted && line.trim() == format!("#include \"{}\"", COMMON_HEADER.0) {
            out.push_str(&header);
            pasted = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Compiles one module's embedded source with NVRTC for `arch` (e.g. `compute_90`). Needs only
/// libnvrtc, no GPU: the tests call it where the library exists.
pub fn nvrtc_compile(m: &KernelModule, arch: &str) -> Result<Ptx> {
    // Compiling takes seconds a module: do it once per process (tests open many backends).
    static CACHE: OnceLock<Mutex<HashMap<(String, String), Ptx>>> = OnceLock::new();
    let key = (m.name.to_string(), arch.to_string());
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(ptx) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(ptx.clone());
    }
    let ptx = nvrtc_compile_uncached(m, arch)?;
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, ptx.clone());
    Ok(ptx)
}

fn nvrtc_compile_uncached(m: &KernelModule, arch: &str) -> Result<Ptx> {
    let src = nvrtc_source(m);
    let opts = CompileOptions {
        options: vec![format!("--gpu-architecture={arch}"), "-std=c++17".into()],
        name: Some(format!("{}.cu", m.name)),
        ..Default::default()
    };
    let compiled =
        std::panic::catch_unwind(move || cudarc::nvrtc::compile_ptx_with_opts(src, opts));
    match compiled {
        Ok(Ok(ptx)) => Ok(ptx),
        Ok(Err(cudarc::nvrtc::CompileError::CompileError { nvrtc, log, .. })) => {
            let log = log.to_string_lossy();
            let lines: Vec<&str> = log.lines().take(20).collect();
            Err(anyhow!(
                "compilation failed ({nvrtc:?}):\n{}",
                lines.join("\n")
            ))
        }
        Ok(Err(e)) => Err(anyhow!("{e}")),
        Err(_) => Err(anyhow!("NVRTC panicked (library missing or incompatible)")),
    }
}
