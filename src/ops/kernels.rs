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

/// The type class of one kernel parameter, as the PTX declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// `.u64` / `.s64` / `.b64`: pointers and 64-bit integers.
    Bits64,
    /// `.u32` / `.s32` / `.b32`.
    Int32,
    /// `.f32`.
    Float32,
    /// Anything else (byte arrays, 16-bit types), with its size in bytes.
    Other(usize),
}

/// The parameters of every entry point, read from the embedded PTX (empty without nvcc).
pub fn signatures() -> &'static std::collections::HashMap<String, Vec<ParamKind>> {
    static SIGS: std::sync::OnceLock<std::collections::HashMap<String, Vec<ParamKind>>> =
        std::sync::OnceLock::new();
    SIGS.get_or_init(|| {
        KERNEL_MODULES
            .iter()
            .filter_map(|m| m.ptx)
            .flat_map(|ptx| parse_entries(&String::from_utf8_lossy(ptx)))
            .collect()
    })
}

/// The most threads per block each entry point takes: the `.maxntid` its `__launch_bounds__`
/// put in the PTX (entry points without one are absent).
pub fn launch_bounds() -> &'static std::collections::HashMap<String, u32> {
    static BOUNDS: std::sync::OnceLock<std::collections::HashMap<String, u32>> =
        std::sync::OnceLock::new();
    BOUNDS.get_or_init(|| {
        KERNEL_MODULES
            .iter()
            .filter_map(|m| m.ptx)
            .flat_map(|ptx| parse_max_threads(&String::from_utf8_lossy(ptx)))
            .collect()
    })
}

/// `.entry name(…) .maxntid x, y, z {`: the product of the three, per entry point.
fn parse_max_threads(ptx: &str) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut rest = ptx;
    while let Some(at) = rest.find(".entry ") {
        rest = &rest[at + ".entry ".len()..];
        let (Some(open), Some(body)) = (rest.find('('), rest.find('{')) else {
            break;
        };
        let name = rest[..open].trim().to_string();
        let head = &rest[..body];
        if let Some(m) = head.find(".maxntid") {
            let dims: Vec<u32> = head[m + ".maxntid".len()..]
                .split(',')
                .filter_map(|d| d.trim().parse().ok())
                .collect();
            if !dims.is_empty() {
                out.push((name, dims.iter().product()));
            }
        }
        rest = &rest[body..];
    }
    out
}

/// `.entry name( .param .u64 name_param_0, … )` blocks of a PTX module.
fn parse_entries(ptx: &str) -> Vec<(String, Vec<ParamKind>)> {
    let mut out = Vec::new();
    let mut rest = ptx;
    while let Some(at) = rest.find(".entry ") {
        rest = &rest[at + ".entry ".len()..];
        let Some(open) = rest.find('(') else { break };
        let name = rest[..open].trim().to_string();
        let Some(close) = rest[open..].find(')') else {
            break;
        };
        let params = rest[open + 1..open + close]
            .split(',')
            .filter(|p| p.contains(".param"))
            .map(param_kind)
            .collect();
        out.push((name, params));
        rest = &rest[open + close..];
    }
    out
}

fn param_kind(decl: &str) -> ParamKind {
    let words: Vec<&str> = decl.split_whitespace().collect();
    let ty = words
        .iter()
        .find(|w| w.len() >= 3 && w.starts_with('.') && w[2..].chars().all(|c| c.is_ascii_digit()))
        .copied()
        .unwrap_or("");
    let bytes_of_type = ty
        .get(2..)
        .and_then(|b| b.parse::<usize>().ok())
        .unwrap_or(0)
        / 8;
    // `.b8 name[16]`: an aggregate passed by value.
    let count = words
        .last()
        .and_then(|w| w.split_once('['))
        .and_then(|(_, n)| n.trim_end_matches(']').parse::<usize>().ok());
    match (ty, count) {
        (_, Some(n)) => ParamKind::Other(n * bytes_of_type),
        (".u64" | ".s64" | ".b64", None) => ParamKind::Bits64,
        (".u32" | ".s32" | ".b32", None) => ParamKind::Int32,
        (".f32", None) => ParamKind::Float32,
        _ => ParamKind::Other(bytes_of_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptx_parameters_are_read_by_type() {
        let ptx = ".visible .entry k(\n\t.param .u64 .ptr .align 1 k_param_0,\n\t.param .u32 \
                   k_param_1,\n\t.param .f32 k_param_2,\n\t.param .align 8 .b8 k_param_3[16]\n)\n\
                   .maxntid 256, 1, 1\n{\n}\n.visible .entry empty()\n{\n}\n";
        assert_eq!(parse_max_threads(ptx), vec![("k".to_string(), 256)]);
        let e = parse_entries(ptx);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].0, "k");
        use ParamKind::*;
        assert_eq!(e[0].1, vec![Bits64, Int32, Float32, Other(16)]);
        assert_eq!(e[1], ("empty".to_string(), vec![]));
    }

    /// Every entry point build.rs listed has a signature in the PTX, when kernels were compiled.
    #[test]
    fn every_entry_point_has_a_signature() {
        if !compiled() {
            eprintln!("SKIPPED: kernels were not compiled (no nvcc at build time)");
            return;
        }
        for m in KERNEL_MODULES {
            for e in m.entry_points {
                assert!(
                    signatures().contains_key(*e),
                    "{}: no .entry for {e} in the PTX",
                    m.name
                );
            }
        }
    }
}
