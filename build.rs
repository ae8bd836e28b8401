//! Compiles `kernels/*.cu` with nvcc, when one can be found, into PTX for `compute_80` (portable, JIT-ed
//! by the driver on any GPU from Ampere on) and a cubin for `sm_90a` (Hopper), and writes
//! `$OUT_DIR/kernels.rs`: constants only, `include!`d by the CUDA backend.
//!
//! nvcc is looked up in this order: `$NVCC`, `$CUDA_HOME/bin/nvcc`, `$CUDA_PATH/bin/nvcc`, `nvcc` on
//! `PATH`, then the folder `scripts/install-nvcc.sh` installs into
//! (`${LAV2_NVCC_DIR:-$HOME/.cache/lav2/nvcc}/nvidia/cu13/bin/nvcc`). No GPU or driver is needed, and
//! nvidia-smi is never called. Without nvcc the build succeeds with one warning and the constants say
//! that nothing was compiled; with nvcc, any kernel that fails to compile fails the build.
//! std only: no build-dependencies.

use std::collections::VecDeque;
use std::env;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread;

/// Flags shared by both targets. No --use_fast_math: erf/exp/sincos/rsqrt must stay accurate (GELU,
/// RoPE at large positions, softmax); the kernels pick fast intrinsics explicitly where it is safe.
/// Extra flags (whitespace-separated) can be appended with LAV2_NVCC_FLAGS, e.g. "-lineinfo" for
/// source-level profiling; it is off by default since it doubles the embedded size.
const COMMON_FLAGS: &[&str] = &["-O3", "-std=c++17"];
const PTX_FLAGS: &[&str] = &["-arch=compute_80", "--ptx"];
const CUBIN_FLAGS: &[&str] = &[
    "-gencode=arch=compute_90a,code=sm_90a",
    "--cubin",
    "-Xptxas",
    "-v",
];

const NVCC_HELP: &str = "CUDA kernels are compiled at build time by nvcc (no GPU needed). To get it, run \
`bash scripts/install-nvcc.sh` (pip-installs the CUDA 13.0 compiler wheels into \
${LAV2_NVCC_DIR:-$HOME/.cache/lav2/nvcc}; needs python3 with pip, and gcc on PATH), then \
`export NVCC=<the path it prints>` (build.rs also finds that folder by itself), or set CUDA_HOME to a \
CUDA 12.x/13.x toolkit, and rebuild.";

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Ptx,
    Cubin,
}

struct Job {
    name: String,
    src: PathBuf,
    target: Target,
    out: PathBuf,
}

struct JobResult {
    name: String,
    target: Target,
    ok: bool,
    stderr: String,
}

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let kdir = manifest.join("kernels");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));

    println!("cargo::rerun-if-changed=kernels");
    for var in [
        "NVCC",
        "CUDA_HOME",
        "CUDA_PATH",
        "LAV2_NVCC_DIR",
        "LAV2_NVCC_FLAGS",
        "PATH",
        "HOME",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }

    let mut sources: Vec<(String, PathBuf)> = Vec::new();
    if let Ok(rd) = fs::read_dir(&kdir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|s| s.to_str()) == Some("cu") {
                if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                    sources.push((stem.to_string(), p.clone()));
                }
            }
        }
    }
    sources.sort();
    let common = kdir.join("common.cuh");
    for (_, p) in &sources {
        println!("cargo::rerun-if-changed={}", p.display());
    }
    println!("cargo::rerun-if-changed={}", common.display());

    let entry_points: Vec<Vec<String>> = sources
        .iter()
        .map(|(_, p)| parse_entry_points(&fs::read_to_string(p).unwrap_or_default()))
        .collect();

    let nvcc = find_nvcc();
    let mut ptxas_report = String::new();
    let mut compiled = false;
    let mut version = None;

    if let Some((nvcc_path, ver)) = &nvcc {
        version = ver.clone();
        let kout = out_dir.join("kernels");
        fs::create_dir_all(&kout).expect("create OUT_DIR/kernels");
        let mut flags: Vec<OsString> = COMMON_FLAGS.iter().map(OsString::from).collect();
        flags.push("-I".into());
        flags.push(kdir.clone().into_os_string());
        // The CUDA 13 wheels keep CCCL (cub, thrust, libcu++) in include/cccl.
        if let Some(root) = Path::new(nvcc_path).parent().and_then(Path::parent) {
            let cccl = root.join("include").join("cccl");
            if cccl.is_dir() {
                flags.push("-isystem".into());
                flags.push(cccl.into_os_string());
            }
        }

        if let Ok(extra) = env::var("LAV2_NVCC_FLAGS") {
            flags.extend(extra.split_whitespace().map(OsString::from));
        }

        // Largest files first: the build takes as long as its slowest worker.
        let mut order: Vec<usize> = (0..sources.len()).collect();
        order.sort_by_key(|&i| {
            std::cmp::Reverse(fs::metadata(&sources[i].1).map(|m| m.len()).unwrap_or(0))
        });
        let mut jobs = VecDeque::new();
        for &i in &order {
            let (name, src) = &sources[i];
            for target in [Target::Cubin, Target::Ptx] {
                let out = match target {
                    Target::Ptx => kout.join(format!("{name}.ptx")),
                    Target::Cubin => kout.join(format!("{name}.sm_90a.cubin")),
                };
                jobs.push_back(Job {
                    name: name.clone(),
                    src: src.clone(),
                    target,
                    out,
                });
            }
        }
        let results = run_jobs(nvcc_path, &flags, jobs);

        let mut failures = String::new();
        let mut ptxas_by_file: Vec<(String, String)> = Vec::new();
        for r in &results {
            if !r.ok {
                let what = if r.target == Target::Ptx {
                    "PTX (compute_80)"
                } else {
                    "cubin (sm_90a)"
                };
                let _ = writeln!(
                    failures,
                    "\n=== kernels/{}.cu -> {what} failed ===\n{}",
                    r.name,
                    r.stderr.trim_end()
                );
            } else {
                // Anything nvcc says besides the -Xptxas -v report is a warning worth seeing.
                for line in r.stderr.lines().filter(|l| is_diagnostic(l)) {
                    println!("cargo::warning=kernels/{}.cu: {}", r.name, line.trim());
                }
                if r.target == Target::Cubin {
                    ptxas_by_file.push((r.name.clone(), r.stderr.clone()));
                }
            }
        }
        if !failures.is_empty() {
            eprintln!(
                "error: nvcc ({}) failed to compile CUDA kernels:{failures}",
                nvcc_path.display()
            );
            std::process::exit(1);
        }
        for (i, (name, _)) in sources.iter().enumerate() {
            let log = ptxas_by_file
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.as_str())
                .unwrap_or("");
            let stats = parse_ptxas(log);
            for ep in &entry_points[i] {
                match stats.iter().find(|s| &s.name == ep) {
                    Some(s) => {
                        let _ = writeln!(
                            ptxas_report,
                            "{name}.cu {ep}: {} regs, {} B smem, {} B stack, spill {} B st / {} B ld",
                            s.regs, s.smem, s.stack, s.spill_st, s.spill_ld
                        );
                        if s.spill_st > 0 || s.spill_ld > 0 {
                            println!(
                                "cargo::warning=kernels/{name}.cu: {ep} spills registers on sm_90a ({} B stores, {} B loads)",
                                s.spill_st, s.spill_ld
                            );
                        }
                    }
                    None => {
                        let _ = writeln!(ptxas_report, "{name}.cu {ep}: (no ptxas report)");
                    }
                }
            }
        }
        compiled = true;
    } else {
        println!("cargo::warning=lav2: nvcc not found, CUDA kernels were NOT compiled (the build goes on; the CUDA backend will report it). {NVCC_HELP}");
    }

    // ---- kernels.rs ----
    let mut g = String::new();
    g.push_str("// @generated by build.rs: kernels compiled from kernels/*.cu. Do not edit.\n\n");
    g.push_str("/// One compiled `kernels/<name>.cu`\n");
    g.push_str("pub struct KernelModule { pub name: &'static str, pub source: &'static str, pub ptx: Option<&'static [u8]>, pub cubin_sm90a: Option<&'static [u8]>, pub entry_points: &'static [&'static str] }\n\n");
    g.push_str("pub const KERNEL_MODULES: &[KernelModule] = &[\n");
    for (i, (name, src)) in sources.iter().enumerate() {
        let kout = out_dir.join("kernels");
        let (ptx, cubin) = if compiled {
            (
                format!(
                    "Some(include_bytes!({}))",
                    lit(&kout.join(format!("{name}.ptx")))
                ),
                format!(
                    "Some(include_bytes!({}))",
                    lit(&kout.join(format!("{name}.sm_90a.cubin")))
                ),
            )
        } else {
            ("None".to_string(), "None".to_string())
        };
        let eps: Vec<String> = entry_points[i].iter().map(|e| format!("{e:?}")).collect();
        let _ = writeln!(
            g,
            "    KernelModule {{ name: {name:?}, source: include_str!({}), ptx: {ptx}, cubin_sm90a: {cubin}, entry_points: &[{}] }},",
            lit(src),
            eps.join(", ")
        );
    }
    g.push_str("];\n\n");
    g.push_str(&geometry_module(&sources, &common));
    if common.is_file() {
        let _ = writeln!(
            g,
            "pub const COMMON_HEADER: (&str, &str) = (\"common.cuh\", include_str!({}));",
            lit(&common)
        );
    } else {
        g.push_str("pub const COMMON_HEADER: (&str, &str) = (\"common.cuh\", \"\");\n");
    }
    match (&nvcc, compiled) {
        (Some((p, _)), true) => {
            let _ = writeln!(
                g,
                "pub const NVCC_USED: Option<&str> = Some({:?});",
                p.display().to_string()
            );
        }
        _ => g.push_str("pub const NVCC_USED: Option<&str> = None;\n"),
    }
    match version {
        Some(v) => {
            let _ = writeln!(g, "pub const NVCC_VERSION: Option<&str> = Some({v:?});");
        }
        None => g.push_str("pub const NVCC_VERSION: Option<&str> = None;\n"),
    }
    let _ = writeln!(g, "pub const PTXAS_REPORT: &str = {ptxas_report:?};");
    let _ = writeln!(g, "pub const NVCC_HELP: &str = {NVCC_HELP:?};");

    let dest = out_dir.join("kernels.rs");
    // Leave the file (and its mtime) alone when nothing changed.
    if fs::read_to_string(&dest).ok().as_deref() != Some(g.as_str()) {
        fs::write(&dest, g).expect("write OUT_DIR/kernels.rs");
    }
}

/// A Rust string literal for an absolute path.
fn lit(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

fn run_jobs(nvcc: &Path, flags: &[OsString], jobs: VecDeque<Job>) -> Vec<JobResult> {
    let workers = env::var("NUM_JOBS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .or_else(|| thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(2)
        .clamp(1, 16)
        .min(jobs.len().max(1));
    let queue = Mutex::new(jobs);
    let results = Mutex::new(Vec::new());
    thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some(job) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let mut cmd = Command::new(nvcc);
                cmd.args(flags);
                cmd.args(if job.target == Target::Ptx {
                    PTX_FLAGS
                } else {
                    CUBIN_FLAGS
                });
                cmd.arg("-o").arg(&job.out).arg(&job.src);
                let r = match cmd.output() {
                    Ok(o) => {
                        let mut stderr = String::from_utf8_lossy(&o.stderr).into_owned();
                        stderr.push_str(&String::from_utf8_lossy(&o.stdout));
                        JobResult {
                            name: job.name,
                            target: job.target,
                            ok: o.status.success() && job.out.is_file(),
                            stderr,
                        }
                    }
                    Err(e) => JobResult {
                        name: job.name,
                        target: job.target,
                        ok: false,
                        stderr: format!("could not run {}: {e}", nvcc.display()),
                    },
                };
                results.lock().unwrap().push(r);
            });
        }
    });
    results.into_inner().unwrap()
}

fn is_diagnostic(line: &str) -> bool {
    let l = line.trim();
    !(l.is_empty()
        || l.starts_with("ptxas info")
        || l.contains("bytes stack frame")
        || l.starts_with("Remark: The warnings can be suppressed"))
}

// ---------------------------------------------------------------------------------------------
// nvcc discovery
// ---------------------------------------------------------------------------------------------

fn nonempty_env(name: &str) -> Option<OsString> {
    env::var_os(name).filter(|v| !v.is_empty())
}

/// The nvcc to use and its version string ("13.0.88"), or None.
fn find_nvcc() -> Option<(PathBuf, Option<String>)> {
    // An explicit NVCC that does not work is a configuration error, not a reason to fall back to
    // some other compiler silently.
    if let Some(v) = nonempty_env("NVCC") {
        let p = PathBuf::from(&v);
        let p = if p.components().count() == 1 {
            search_path(&p).unwrap_or(p)
        } else {
            p
        };
        match nvcc_version(&p) {
            Ok(ver) => return Some((p, ver)),
            Err(e) => {
                eprintln!("error: NVCC={} does not run: {e}\n{NVCC_HELP}", p.display());
                std::process::exit(1);
            }
        }
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(root) = nonempty_env(var) {
            candidates.push(PathBuf::from(root).join("bin").join("nvcc"));
        }
    }
    if let Some(p) = search_path(Path::new("nvcc")) {
        candidates.push(p);
    }
    let dir = nonempty_env("LAV2_NVCC_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            nonempty_env("HOME").map(|h| PathBuf::from(h).join(".cache").join("lav2").join("nvcc"))
        });
    if let Some(d) = dir {
        candidates.push(d.join("nvidia").join("cu13").join("bin").join("nvcc"));
    }
    for c in candidates {
        if !c.is_file() {
            continue;
        }
        match nvcc_version(&c) {
            Ok(ver) => return Some((c, ver)),
            Err(e) => println!("cargo::warning=lav2: skipping {}: {e}", c.display()),
        }
    }
    None
}

fn search_path(name: &Path) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

fn nvcc_version(p: &Path) -> Result<Option<String>, String> {
    let o = Command::new(p)
        .arg("--version")
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!(
            "`{} --version` exited with {}",
            p.display(),
            o.status
        ));
    }
    let text = String::from_utf8_lossy(&o.stdout);
    // "Cuda compilation tools, release 13.0, V13.0.88"
    let v = text
        .lines()
        .find_map(|l| l.split(", V").nth(1).map(|s| s.trim().to_string()))
        .or_else(|| {
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_string())
        });
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Source and ptxas parsing
// ---------------------------------------------------------------------------------------------

/// Names of the `extern "C" __global__` functions, in source order.
/// `pub mod geometry { pub mod <file> { pub const NAME: usize = …; } }`: every top-level
/// `constexpr int NAME = <expr>;` of each kernel file (and of common.cuh, which every file sees),
/// so launches are sized by the very constants the kernels are compiled with.
fn geometry_module(sources: &[(String, PathBuf)], common: &Path) -> String {
    let common_src = fs::read_to_string(common).unwrap_or_default();
    let common_consts = parse_constants(&common_src, &[]);
    let mut g = String::from(
        "/// Launch geometry: the top-level integer constants of each `kernels/<file>.cu`.\npub mod geometry {\n",
    );
    let mut emit = |module: &str, consts: &[(String, i64)]| {
        let _ = writeln!(g, "    pub mod {module} {{");
        for (name, value) in consts {
            if *value >= 0 {
                let _ = writeln!(g, "        pub const {name}: usize = {value};");
            }
        }
        g.push_str("    }\n");
    };
    emit("common", &common_consts);
    for (name, path) in sources {
        let src = fs::read_to_string(path).unwrap_or_default();
        emit(name, &parse_constants(&src, &common_consts));
    }
    g.push_str("}\n\n");
    g
}

/// `constexpr int NAME = EXPR;` at the start of a line, EXPR of integers, earlier names, `* / + -`
/// and parentheses; anything else is skipped (it is not launch geometry).
fn parse_constants(src: &str, known: &[(String, i64)]) -> Vec<(String, i64)> {
    let mut consts: Vec<(String, i64)> = Vec::new();
    for line in strip_comments(src).lines() {
        let Some(rest) = line.strip_prefix("constexpr int ") else {
            continue;
        };
        let Some((name, expr)) = rest.split_once('=') else {
            continue;
        };
        let Some(expr) = expr.trim().strip_suffix(';') else {
            continue;
        };
        let lookup = |n: &str| {
            consts
                .iter()
                .chain(known)
                .find(|(k, _)| k == n)
                .map(|(_, v)| *v)
        };
        if let Some(v) = eval_int(expr, &lookup) {
            consts.push((name.trim().to_string(), v));
        }
    }
    consts
}

/// Evaluates a constant integer expression (precedence climbing over `+ - * /` and parentheses).
fn eval_int(expr: &str, lookup: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
    let tokens: Vec<String> = {
        let mut t = Vec::new();
        let mut word = String::new();
        for ch in expr.chars() {
            if ch.is_ascii_alphanumeric() || ch == '_' {
                word.push(ch);
                continue;
            }
            if !word.is_empty() {
                t.push(std::mem::take(&mut word));
            }
            if "+-*/()".contains(ch) {
                t.push(ch.to_string());
            } else if !ch.is_whitespace() {
                return None;
            }
        }
        if !word.is_empty() {
            t.push(word);
        }
        t
    };
    fn atom(t: &[String], i: &mut usize, l: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        let tok = t.get(*i)?.clone();
        *i += 1;
        if tok == "(" {
            let v = sum(t, i, l)?;
            (t.get(*i)? == ")").then(|| *i += 1)?;
            return Some(v);
        }
        tok.parse::<i64>().ok().or_else(|| l(&tok))
    }
    fn product(t: &[String], i: &mut usize, l: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        let mut v = atom(t, i, l)?;
        while let Some(op) = t.get(*i).filter(|o| *o == "*" || *o == "/") {
            let op = op.clone();
            *i += 1;
            let r = atom(t, i, l)?;
            v = if op == "*" { v * r } else { v.checked_div(r)? };
        }
        Some(v)
    }
    fn sum(t: &[String], i: &mut usize, l: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        let mut v = product(t, i, l)?;
        while let Some(op) = t.get(*i).filter(|o| *o == "+" || *o == "-") {
            let op = op.clone();
            *i += 1;
            let r = product(t, i, l)?;
            v = if op == "+" { v + r } else { v - r };
        }
        Some(v)
    }
    let mut i = 0;
    let v = sum(&tokens, &mut i, lookup)?;
    (i == tokens.len()).then_some(v)
}

fn parse_entry_points(src: &str) -> Vec<String> {
    let code = strip_comments(src);
    let marker = "extern \"C\" __global__";
    let mut names = Vec::new();
    let mut rest = code.as_str();
    while let Some(pos) = rest.find(marker) {
        rest = &rest[pos + marker.len()..];
        // Up to the parameter list, skipping __launch_bounds__(...) and the like.
        let mut depth = 0usize;
        let mut last_ident = String::new();
        let mut ident = String::new();
        for ch in rest.chars() {
            if ch.is_ascii_alphanumeric() || ch == '_' {
                ident.push(ch);
                continue;
            }
            if !ident.is_empty() {
                if depth == 0 {
                    last_ident = std::mem::take(&mut ident);
                } else {
                    ident.clear();
                }
            }
            match ch {
                '(' if depth == 0
                    && last_ident != "__launch_bounds__"
                    && !last_ident.is_empty() =>
                {
                    names.push(last_ident.clone());
                    break;
                }
                '(' => depth += 1,
                ')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        last_ident.clear();
                    }
                }
                ';' | '{' => break,
                _ => {}
            }
        }
    }
    names
}

fn strip_comments(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            out.push(c as char);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1] as char);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            i += 1;
        } else if c == b'"' {
            in_str = true;
            out.push('"');
            i += 1;
        } else if c == b'/' && i + 1 < b.len() && b[i + 1] == b'/' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && i + 1 < b.len() && b[i + 1] == b'*' {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
            out.push(' ');
        } else {
            // Non-ASCII bytes only occur in comments and strings; keep the byte stream ASCII.
            out.push(if c.is_ascii() { c as char } else { ' ' });
            i += 1;
        }
    }
    out
}

#[derive(Default)]
struct PtxasStats {
    name: String,
    regs: u32,
    smem: u32,
    stack: u32,
    spill_st: u32,
    spill_ld: u32,
}

/// Reads `-Xptxas -v` output: "Compiling entry function 'x' for 'sm_90a'", then
/// "N bytes stack frame, N bytes spill stores, N bytes spill loads" and
/// "Used N registers, used N barriers, N bytes smem, ...".
fn parse_ptxas(log: &str) -> Vec<PtxasStats> {
    let mut out: Vec<PtxasStats> = Vec::new();
    for line in log.lines() {
        if let Some(i) = line.find("Compiling entry function '") {
            let rest = &line[i + "Compiling entry function '".len()..];
            let name = rest.split('\'').next().unwrap_or("").to_string();
            out.push(PtxasStats {
                name,
                ..Default::default()
            });
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        if line.contains("bytes stack frame") {
            cur.stack = number_before(line, "bytes stack frame");
            cur.spill_st = number_before(line, "bytes spill stores");
            cur.spill_ld = number_before(line, "bytes spill loads");
        } else if line.contains(" registers") && line.contains("Used ") {
            cur.regs = number_before(line, "registers");
            cur.smem = number_before(line, "bytes smem");
        }
    }
    out
}

fn number_before(line: &str, what: &str) -> u32 {
    let Some(i) = line.find(what) else { return 0 };
    line[..i]
        .split_whitespace()
        .last()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}
