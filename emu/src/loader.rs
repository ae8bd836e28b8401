//! Module images: PTX text is parsed (cached per process), cubin / fatbin / ELF refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::CuError;
use crate::ir::Module;
use crate::memory::{AllocKind, DeviceMemory};

/// A module loaded into a context: its code and the device addresses of its `.global` / `.const`
/// variables (same order as [`Module::globals`]).
pub struct LoadedModule {
    pub module: Arc<Module>,
    pub global_addrs: Vec<u64>,
}

const FATBIN_MAGIC: [u8; 4] = 0xBA55_ED50u32.to_le_bytes();
const FATBIN_WRAPPER_MAGIC: [u8; 4] = 0x4662_43B1u32.to_le_bytes();

/// Parses PTX text once per process (tests open many contexts over the same modules).
pub fn parse_cached(text: &str) -> Result<Arc<Module>, crate::ptx::ParseError> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Module>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(m) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(text) {
        return Ok(m.clone());
    }
    let m = Arc::new(crate::ptx::parse_module(text)?);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(text.to_string(), m.clone());
    Ok(m)
}

/// Loads an image as `cuModuleLoadData` does. On failure: the code and the JIT log text.
pub fn load_image(mem: &mut DeviceMemory, image: &[u8]) -> Result<LoadedModule, (CuError, String)> {
    if image.starts_with(b"\x7fELF") {
        return Err((
            CuError::NoBinaryForGpu,
            "cubin/ELF images cannot run on the emulator: load PTX".into(),
        ));
    }
    if image.starts_with(&FATBIN_MAGIC) || image.starts_with(&FATBIN_WRAPPER_MAGIC) {
        return Err((
            CuError::NoBinaryForGpu,
            "fatbin images cannot run on the emulator: load PTX".into(),
        ));
    }
    let end = image.iter().position(|&b| b == 0).unwrap_or(image.len());
    let text = std::str::from_utf8(&image[..end]).map_err(|e| {
        (
            CuError::InvalidImage,
            format!("the image is neither PTX text nor a known binary ({e})"),
        )
    })?;
    if !text.contains(".version") {
        return Err((
            CuError::InvalidImage,
            "the image is not PTX text (no .version)".into(),
        ));
    }
    let module = parse_cached(text).map_err(|e| {
        (
            CuError::InvalidPtx,
            format!("ptx parse error at line {}: {}", e.line, e.message),
        )
    })?;
    let mut global_addrs = Vec::with_capacity(module.globals.len());
    for g in &module.globals {
        let addr = match mem.alloc(g.size.max(1) as usize, AllocKind::ModuleData) {
            Ok(a) => a,
            Err(e) => {
                for &a in &global_addrs {
                    let _ = mem.free(a);
                }
                return Err((e, format!("could not allocate module variable {}", g.name)));
            }
        };
        // Module variables start initialised (zeros when the declaration has no initializer).
        let _ = mem.host_write(addr, &g.init);
        global_addrs.push(addr);
    }
    Ok(LoadedModule {
        module,
        global_addrs,
    })
}

/// Frees what [`load_image`] allocated.
pub fn unload(mem: &mut DeviceMemory, m: &LoadedModule) {
    for &a in &m.global_addrs {
        let _ = mem.free(a);
    }
}
