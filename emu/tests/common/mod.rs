//! Shared helpers of the emulator's own tests: compile `tests/kernels/*.cu` to PTX with nvcc (once
//! per test process), load it into a fresh [`DeviceMemory`], upload inputs, launch with typed
//! arguments packed at the offsets of `Kernel::params`, download outputs; a seeded SplitMix64 for
//! inputs; float helpers (rustc_apfloat) for host references.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use cuda_emu::exec::{self, Finding};
use cuda_emu::ir::Kernel;
use cuda_emu::{AllocKind, CuError, CuResult, DeviceMemory, LaunchParams, LoadedModule, Options};

// ---------------------------------------------------------------------------------------------
// nvcc

/// Finds nvcc the way build.rs does: `$NVCC`, `$CUDA_HOME/bin/nvcc`, `$CUDA_PATH/bin/nvcc`, `nvcc`
/// on `PATH`, then `${LAV2_NVCC_DIR:-$HOME/.cache/lav2/nvcc}/nvidia/cu13/bin/nvcc`.
pub fn find_nvcc() -> Option<PathBuf> {
    fn nonempty(v: &str) -> Option<String> {
        std::env::var(v).ok().filter(|s| !s.trim().is_empty())
    }
    if let Some(v) = nonempty("NVCC") {
        let p = PathBuf::from(&v);
        if p.components().count() == 1 {
            if let Some(found) = search_path(&p) {
                return Some(found);
            }
        }
        return Some(p);
    }
    let mut candidates = Vec::new();
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(root) = nonempty(var) {
            candidates.push(PathBuf::from(root).join("bin").join("nvcc"));
        }
    }
    if let Some(p) = search_path(Path::new("nvcc")) {
        candidates.push(p);
    }
    let dir = nonempty("LAV2_NVCC_DIR")
        .map(PathBuf::from)
        .or_else(|| nonempty("HOME").map(|h| PathBuf::from(h).join(".cache/lav2/nvcc")));
    if let Some(d) = dir {
        candidates.push(d.join("nvidia/cu13/bin/nvcc"));
    }
    candidates.into_iter().find(|c| c.is_file())
}

fn search_path(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn nvcc() -> Option<&'static PathBuf> {
    static NVCC: OnceLock<Option<PathBuf>> = OnceLock::new();
    NVCC.get_or_init(find_nvcc).as_ref()
}

fn kernels_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("kernels")
}

/// `$CARGO_TARGET_TMPDIR/emu-test-ptx/<pid>/`: one folder per test process (test binaries run
/// in parallel); folders of processes that are gone are removed on the way.
fn ptx_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("emu-test-ptx");
        if let Ok(rd) = std::fs::read_dir(&root) {
            for ent in rd.flatten() {
                let name = ent.file_name();
                let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if pid != std::process::id()
                    && !Path::new(&format!("/proc/{pid}")).exists()
                    && Path::new("/proc/self").exists()
                {
                    let _ = std::fs::remove_dir_all(ent.path());
                }
            }
        }
        let d = root.join(std::process::id().to_string());
        std::fs::create_dir_all(&d).expect("create PTX temp dir");
        d
    })
    .clone()
}

type PtxResult = Result<Arc<String>, String>;

/// The PTX of `tests/kernels/<name>.cu`, compiled once per process. `None` when there is no nvcc
/// (the test is then skipped; under `CI=true` that is a failure instead).
pub fn ptx(name: &str) -> Option<Arc<String>> {
    let Some(nvcc) = nvcc() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("nvcc not found (CI=true): set NVCC or run scripts/install-nvcc.sh");
        }
        println!("SKIPPED: nvcc not found");
        return None;
    };
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<OnceLock<PtxResult>>>>> = OnceLock::new();
    let cell = CACHE
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_default()
        .clone();
    let res = cell.get_or_init(|| compile(nvcc, name));
    match res {
        Ok(p) => Some(p.clone()),
        Err(e) => panic!("{e}"),
    }
}

fn compile(nvcc: &Path, name: &str) -> PtxResult {
    let src = kernels_dir().join(format!("{name}.cu"));
    let out = ptx_dir().join(format!("{name}.ptx"));
    let mut cmd = Command::new(nvcc);
    cmd.args(["-O3", "-std=c++17", "-arch=compute_80", "--ptx"]);
    if let Some(root) = nvcc.parent().and_then(|b| b.parent()) {
        let cccl = root.join("include").join("cccl");
        if cccl.is_dir() {
            cmd.arg("-isystem").arg(cccl);
        }
    }
    cmd.arg(&src).arg("-o").arg(&out);
    let o = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", nvcc.display()))?;
    if !o.status.success() {
        return Err(format!(
            "nvcc failed on {}:\n{}{}",
            src.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| format!("read {}: {e}", out.display()))?;
    Ok(Arc::new(text))
}

// ---------------------------------------------------------------------------------------------
// Random inputs

/// The run's seed: `EMU_TEST_SEED`, else from the clock. Printed by [`rng`].
pub fn base_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        if let Ok(s) = std::env::var("EMU_TEST_SEED") {
            let s = s.trim();
            let v = if let Some(h) = s.strip_prefix("0x") {
                u64::from_str_radix(h, 16)
            } else {
                s.parse()
            };
            return v.unwrap_or_else(|_| panic!("EMU_TEST_SEED={s:?} is not a number"));
        }
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        t.as_nanos() as u64 ^ (std::process::id() as u64) << 32
    })
}

/// SplitMix64.
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    pub fn range_i64(&mut self, lo: i64, hi_incl: i64) -> i64 {
        lo + self.below((hi_incl - lo + 1) as u64) as i64
    }
    pub fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
    /// Uniform in `[lo, hi)`.
    pub fn f32_in(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    pub fn f64_in(&mut self, lo: f64, hi: f64) -> f64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * u
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    /// A u32 that is often "interesting": random bits, small, near the limits.
    pub fn int_u32(&mut self) -> u32 {
        match self.below(8) {
            0 => self.pick(&[
                0,
                1,
                2,
                31,
                32,
                0x7fff_ffff,
                0x8000_0000,
                0xffff_ffff,
                0xffff_fffe,
                0x8000_0001,
            ]),
            1 => self.below(64) as u32,
            2 => (self.below(64) as u32).wrapping_neg(),
            _ => self.next_u32(),
        }
    }
    pub fn int_u64(&mut self) -> u64 {
        match self.below(8) {
            0 => self.pick(&[
                0,
                1,
                u64::MAX,
                i64::MAX as u64,
                1 << 63,
                0xffff_ffff,
                1 << 32,
            ]),
            1 => self.below(64),
            2 => self.below(64).wrapping_neg(),
            3 => self.next_u32() as u64,
            4 => (self.next_u32() as i32) as i64 as u64,
            _ => self.next_u64(),
        }
    }
    /// An f32 drawn from everywhere: random bit patterns, normal values, specials.
    pub fn f32_any(&mut self) -> f32 {
        match self.below(10) {
            0 => self.pick(&[
                0.0f32,
                -0.0,
                1.0,
                -1.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
                f32::MAX,
                f32::MIN_POSITIVE,
                1.0e-45,
                -1.0e-45,
                0.5,
                f32::EPSILON,
            ]),
            1 => f32::from_bits(self.next_u32() & 0x807f_ffff), // subnormal
            2 | 3 => f32::from_bits(self.next_u32()),
            _ => {
                let m = self.f32_in(1.0, 2.0);
                let e = self.range_i64(-20, 20) as i32;
                let s = if self.bool() { -1.0 } else { 1.0 };
                s * m * 2f32.powi(e)
            }
        }
    }
}

/// A fresh RNG for one test: the run seed mixed with the test's name; prints the seed.
pub fn rng(test: &str) -> Rng {
    let seed = base_seed();
    println!("{test}: EMU_TEST_SEED={seed}");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in test.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    let mut r = Rng(seed ^ h);
    r.next_u64();
    r
}

// ---------------------------------------------------------------------------------------------
// Plain data

pub trait Elem: Copy + std::fmt::Debug {
    const SIZE: usize;
    fn put(&self, out: &mut Vec<u8>);
    fn get(b: &[u8]) -> Self;
}

macro_rules! elem {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(&self, out: &mut Vec<u8>) { out.extend_from_slice(&self.to_le_bytes()); }
            fn get(b: &[u8]) -> Self { <$t>::from_le_bytes(b.try_into().unwrap()) }
        }
    )*};
}
elem!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

pub fn to_bytes<T: Elem>(xs: &[T]) -> Vec<u8> {
    let mut v = Vec::with_capacity(xs.len() * T::SIZE);
    for x in xs {
        x.put(&mut v);
    }
    v
}

pub fn from_bytes<T: Elem>(b: &[u8]) -> Vec<T> {
    b.chunks_exact(T::SIZE).map(T::get).collect()
}

/// A kernel argument.
#[derive(Clone, Debug)]
pub enum Arg {
    /// A device pointer.
    P(u64),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    U8(u8),
    U16(u16),
    /// A by-value aggregate (`.param .align A .b8 p[N]`): its bytes.
    Bytes(Vec<u8>),
}

impl Arg {
    fn bytes(&self) -> Vec<u8> {
        match *self {
            Arg::P(v) | Arg::U64(v) => v.to_le_bytes().to_vec(),
            Arg::I64(v) => v.to_le_bytes().to_vec(),
            Arg::U32(v) => v.to_le_bytes().to_vec(),
            Arg::I32(v) => v.to_le_bytes().to_vec(),
            Arg::F32(v) => v.to_le_bytes().to_vec(),
            Arg::F64(v) => v.to_le_bytes().to_vec(),
            Arg::U8(v) => vec![v],
            Arg::U16(v) => v.to_le_bytes().to_vec(),
            Arg::Bytes(ref b) => b.clone(),
        }
    }
}

/// Launch configuration; `checks` on and a seed derived from the run seed by default.
#[derive(Clone, Debug)]
pub struct Launch {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub dynamic_shared: u32,
    pub max_dynamic_shared: u32,
    pub checks: bool,
    pub seed: u64,
}

impl Launch {
    pub fn new(grid: u32, block: u32) -> Launch {
        Launch::dims([grid, 1, 1], [block, 1, 1])
    }
    pub fn dims(grid: [u32; 3], block: [u32; 3]) -> Launch {
        Launch {
            grid,
            block,
            dynamic_shared: 0,
            max_dynamic_shared: 0,
            checks: true,
            seed: base_seed() % 1_000_003 + 1,
        }
    }
    pub fn dyn_smem(mut self, bytes: u32) -> Launch {
        self.dynamic_shared = bytes;
        self
    }
    pub fn max_dyn(mut self, bytes: u32) -> Launch {
        self.max_dynamic_shared = bytes;
        self
    }
    pub fn checks(mut self, on: bool) -> Launch {
        self.checks = on;
        self
    }
    pub fn seed(mut self, s: u64) -> Launch {
        self.seed = s;
        self
    }
}

// ---------------------------------------------------------------------------------------------
// The emulator

pub struct Emu {
    pub name: String,
    pub ptx: Arc<String>,
    pub mem: DeviceMemory,
    pub module: LoadedModule,
}

impl Emu {
    /// Compiles (once) and loads `tests/kernels/<name>.cu`. `None`: no nvcc, test skipped.
    pub fn new(name: &str) -> Option<Emu> {
        let ptx = ptx(name)?;
        let mut mem = DeviceMemory::new(cuda_emu::device::TOTAL_MEMORY);
        let mut image = ptx.as_bytes().to_vec();
        image.push(0); // cuModuleLoadData takes NUL-terminated PTX text
        let module = match cuda_emu::load_image(&mut mem, &image) {
            Ok(m) => m,
            Err((e, log)) => panic!("load_image({name}.ptx) failed: {e:?} ({})\n{log}", e.name()),
        };
        Some(Emu {
            name: name.to_string(),
            ptx,
            mem,
            module,
        })
    }

    pub fn kernel(&self, name: &str) -> Arc<Kernel> {
        match self.module.module.kernel(name) {
            Some(k) => k.clone(),
            None => panic!(
                "kernel {name} not in {}.ptx (has: {:?})",
                self.name,
                self.module
                    .module
                    .kernels
                    .iter()
                    .map(|k| k.name.clone())
                    .collect::<Vec<_>>()
            ),
        }
    }

    /// The device address of a module `__device__` / `__constant__` variable.
    pub fn global_addr(&self, var: &str) -> u64 {
        let m = &self.module.module;
        let i = m
            .globals
            .iter()
            .position(|g| g.name == var)
            .unwrap_or_else(|| panic!("no global {var} in {}.ptx", self.name));
        self.module.global_addrs[i]
    }

    /// An allocation of `n` elements, left as `cuMemAlloc` leaves it: poisoned, never written.
    pub fn alloc<T: Elem>(&mut self, n: usize) -> u64 {
        self.mem
            .alloc((n * T::SIZE).max(1), AllocKind::Device)
            .expect("alloc")
    }

    pub fn upload<T: Elem>(&mut self, xs: &[T]) -> u64 {
        let p = self.alloc::<T>(xs.len());
        self.write(p, xs);
        p
    }

    pub fn write<T: Elem>(&mut self, p: u64, xs: &[T]) {
        self.mem.host_write(p, &to_bytes(xs)).expect("host_write");
    }

    /// Writes the poison pattern (0xFF bytes: NaN as f16/f32/f64, -1 as integers) explicitly,
    /// for an output buffer that is re-used.
    pub fn poison(&mut self, p: u64, bytes: usize) {
        self.mem
            .host_write(p, &vec![cuda_emu::memory::POISON; bytes])
            .expect("poison");
    }

    pub fn read<T: Elem>(&self, p: u64, n: usize) -> Vec<T> {
        let mut b = vec![0u8; n * T::SIZE];
        self.mem.host_read(p, &mut b).expect("host_read");
        from_bytes(&b)
    }

    pub fn pack(&self, k: &Kernel, args: &[Arg]) -> Vec<u8> {
        assert_eq!(
            k.params.len(),
            args.len(),
            "kernel {} takes {} parameters ({:?}), given {}",
            k.name,
            k.params.len(),
            k.params
                .iter()
                .map(|p| (&p.name, p.size))
                .collect::<Vec<_>>(),
            args.len()
        );
        let mut buf = vec![0u8; k.param_bytes as usize];
        for (p, a) in k.params.iter().zip(args) {
            let b = a.bytes();
            assert_eq!(
                b.len() as u32,
                p.size,
                "kernel {} parameter {} is {} bytes, argument {a:?} is {}",
                k.name,
                p.name,
                p.size,
                b.len()
            );
            buf[p.offset as usize..p.offset as usize + b.len()].copy_from_slice(&b);
        }
        buf
    }

    /// Launches and returns what `exec::launch` returned (findings via [`findings`]).
    pub fn launch(&mut self, kernel: &str, l: &Launch, args: &[Arg]) -> CuResult<()> {
        let k = self.kernel(kernel);
        let params = self.pack(&k, args);
        let p = LaunchParams {
            grid: l.grid,
            block: l.block,
            dynamic_shared: l.dynamic_shared,
            max_dynamic_shared: l.max_dynamic_shared,
            params: &params,
        };
        let opts = Options {
            checks: l.checks,
            seed: l.seed,
            profile: None,
        };
        exec::launch(&mut self.mem, &self.module, &k, &p, &opts)
    }

    /// Launches a kernel that must run cleanly: `Ok` and no finding at all.
    pub fn run(&mut self, kernel: &str, l: &Launch, args: &[Arg]) {
        let r = self.launch(kernel, l, args);
        let f = findings();
        assert!(
            r.is_ok() && f.is_empty(),
            "{}::{kernel} {l:?}: expected a clean launch, got {r:?} with findings:\n{}",
            self.name,
            fmt_findings(&f)
        );
    }

    /// Whether the compiled PTX contains `needle` (to make sure a test exercises an instruction).
    pub fn assert_ptx_has(&self, needle: &str) {
        assert!(
            self.ptx.contains(needle),
            "{}.ptx does not contain {needle:?}: the test would not exercise it",
            self.name
        );
    }

    /// The PTX text of the 1-based line `n` (for messages).
    pub fn ptx_line(&self, n: u32) -> String {
        self.ptx
            .lines()
            .nth(n.saturating_sub(1) as usize)
            .unwrap_or("")
            .trim()
            .to_string()
    }
}

pub fn findings() -> Vec<Finding> {
    exec::last_findings()
}

pub fn fmt_findings(f: &[Finding]) -> String {
    if f.is_empty() {
        return "  (none)".into();
    }
    f.iter()
        .map(|f| {
            format!(
                "  {} kernel={} line={} block={:?} thread={:?} addr={:?}: {}",
                f.check, f.kernel, f.line, f.block, f.thread, f.address, f.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts the launch result is `Err(code)` and that a finding of one of `checks` names `kernel`
/// (with a nonzero PTX line when `need_line`). Returns that finding.
pub fn expect_report(
    emu: &Emu,
    r: CuResult<()>,
    code: Option<CuError>,
    checks: &[&str],
    kernel: &str,
    need_line: bool,
) -> Finding {
    let f = findings();
    match code {
        Some(c) => assert_eq!(
            r,
            Err(c),
            "{kernel}: expected Err({c:?}), got {r:?}; findings:\n{}",
            fmt_findings(&f)
        ),
        None => assert!(
            r.is_err(),
            "{kernel}: expected the launch to fail; findings:\n{}",
            fmt_findings(&f)
        ),
    }
    let hit = f
        .iter()
        .find(|x| checks.contains(&x.check) && x.kernel == kernel && (!need_line || x.line > 0));
    match hit {
        Some(h) => {
            if need_line {
                let line = emu.ptx_line(h.line);
                assert!(
                    !line.is_empty(),
                    "{kernel}: finding line {} is past the PTX ({} lines)",
                    h.line,
                    emu.ptx.lines().count()
                );
                println!("{kernel}: {} at PTX line {}: {line}", h.check, h.line);
            }
            h.clone()
        }
        None => panic!(
            "{kernel}: expected a finding of {checks:?} naming the kernel{}; got:\n{}",
            if need_line {
                " with a nonzero PTX line"
            } else {
                ""
            },
            fmt_findings(&f)
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Floats

#[allow(unused_imports)]
pub use rustc_apfloat::ieee::{Double, Half, Single};
#[allow(unused_imports)]
pub use rustc_apfloat::{Float, FloatConvert, Round};

pub const ROUNDS: [Round; 4] = [
    Round::NearestTiesToEven,
    Round::TowardZero,
    Round::TowardNegative,
    Round::TowardPositive,
];
pub const ROUND_NAMES: [&str; 4] = ["rn", "rz", "rm", "rp"];

pub fn f16_bits_to_f32(h: u16) -> f32 {
    let mut li = false;
    let v: Single = Half::from_bits(h as u128).convert(&mut li).value;
    f32::from_bits(v.to_bits() as u32)
}

pub fn f32_to_f16(x: f32, r: Round) -> u16 {
    let mut li = false;
    let v: Half = Single::from_bits(x.to_bits() as u128)
        .convert_r(r, &mut li)
        .value;
    v.to_bits() as u16
}

pub fn f16_is_nan(h: u16) -> bool {
    h & 0x7c00 == 0x7c00 && h & 0x03ff != 0
}

pub fn sgl(x: u32) -> Single {
    Single::from_bits(x as u128)
}

pub fn sbits(x: Single) -> u32 {
    x.to_bits() as u32
}

/// Bit-exact f32 comparison where any NaN equals any NaN (PTX does not specify NaN payloads).
pub fn same_f32(a: u32, b: u32) -> bool {
    a == b || (f32::from_bits(a).is_nan() && f32::from_bits(b).is_nan())
}

pub fn same_f16(a: u16, b: u16) -> bool {
    a == b || (f16_is_nan(a) && f16_is_nan(b))
}
