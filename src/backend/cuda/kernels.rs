//! The kernels `build.rs` compiled (PTX for compute_80, cubin for sm_90a) and their sources,
//! embedded in the binary.

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// Whether this build carries compiled kernels at all.
pub fn compiled() -> bool {
    KERNEL_MODULES.iter().any(|m| m.ptx.is_some())
}

/// What `lav2 kernels` prints: the toolchain, every module with its entry points and sizes,
/// and the ptxas register / spill report.
pub fn report() -> String {
    let mut s = String::new();
    match (NVCC_USED, NVCC_VERSION) {
        (Some(path), version) => {
            s += &format!("nvcc: {path} ({})\n", version.unwrap_or("version unknown"))
        }
        (None, _) => {
            s +=
                &format!("nvcc: not found at build time; kernels were not compiled.\n{NVCC_HELP}\n")
        }
    }
    for m in KERNEL_MODULES {
        s += &format!(
            "{}: {} entry points, ptx {} B, cubin sm_90a {} B\n",
            m.name,
            m.entry_points.len(),
            m.ptx.map_or(0, |p| p.len()),
            m.cubin_sm90a.map_or(0, |p| p.len())
        );
    }
    if !PTXAS_REPORT.is_empty() {
        s += "ptxas (sm_90a):\n";
        for line in PTXAS_REPORT.lines() {
            s += &format!("  {line}\n");
        }
    }
    s
}
