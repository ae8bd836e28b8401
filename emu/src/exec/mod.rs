//! The SIMT executor: one grid, block after block; in a block, warps of 32 lanes with their own
//! program counters (independent thread scheduling: the lanes at the lowest program counter run
//! together, so diverged lanes reconverge where their paths meet), block barriers, and warp
//! collectives that complete once every lane of their member mask has arrived. Ready warps run
//! in an order shuffled per block from the launch's seed.

mod alu;
mod checks;
mod fast;
mod memops;
mod profile;
mod warpops;

use crate::error::{CuError, CuResult};
use crate::ir::{Kernel, Op, Operand, Special};
use crate::loader::LoadedModule;
use crate::memory::DeviceMemory;
use crate::{device, Options};

use checks::Race;
pub use checks::{last_findings, Finding};
use profile::Profile;

/// Generic addresses of the shared and local windows (cvta); device memory lies far above.
pub const SHARED_WINDOW: u64 = 0x1000_0000_0000;
pub const LOCAL_WINDOW: u64 = 0x2000_0000_0000;
const WINDOW_SIZE: u64 = 1 << 32;
/// Backward branches a partial group may take in a row before other ready lanes get a turn.
const SPIN_YIELD: u32 = 256;

/// Instructions a launch may run before it is stopped as hung (`CUDA_EMU_MAX_STEPS`).
fn step_budget() -> u64 {
    static B: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *B.get_or_init(|| {
        std::env::var("CUDA_EMU_MAX_STEPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000_000_000)
    })
}

pub struct LaunchParams<'a> {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    /// Dynamic shared memory of this launch (bytes).
    pub dynamic_shared: u32,
    /// The function's `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES` (0 = never set).
    pub max_dynamic_shared: u32,
    /// The parameter buffer, packed at the offsets of [`Kernel::params`].
    pub params: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    Ready,
    Exited,
    /// Waiting at a block barrier (its id).
    Barrier(u32),
    /// Waiting at a warp collective at this program counter.
    Collective,
}

/// A pending `cp.async`: bytes read at issue, landing in shared memory when its group completes.
pub(crate) struct AsyncCopy {
    dst: u32,
    data: Vec<u8>,
    init: Vec<bool>,
    line: u32,
}

pub(crate) struct Warp {
    index: u32,
    regs: Vec<u64>,
    pc: [u32; 32],
    lane: [Lane; 32],
    /// Lanes whose state is `Ready`.
    ready: u32,
    /// Per lane: `.local` memory and which of its bytes were written.
    local: Vec<u8>,
    local_init: Vec<bool>,
    /// Per lane: copies issued since the last commit, and committed groups (oldest first).
    uncommitted: Vec<Vec<AsyncCopy>>,
    groups: Vec<std::collections::VecDeque<Vec<AsyncCopy>>>,
    /// `bar.warp.sync` generation: shared accesses of one warp in different generations are ordered.
    sync_gen: u32,
    /// For `bar.red`: the value each lane brought to the barrier.
    red_value: [u32; 32],
}

/// Why a launch stops early.
pub(crate) enum Stop {
    Fault(CuError),
}

pub(crate) type Flow<T> = Result<T, Stop>;

/// The state of one launch while it runs.
pub(crate) struct Exec<'a> {
    pub mem: &'a mut DeviceMemory,
    pub module: &'a LoadedModule,
    pub kernel: &'a Kernel,
    pub params: &'a [u8],
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub dynamic_shared: u32,
    pub checks: bool,
    pub ctaid: [u32; 3],
    pub shared: Vec<u8>,
    /// Bytes of shared memory this launch has (the buffer may be larger).
    pub shared_size: usize,
    /// Block serial of the block that last wrote each shared byte (initcheck).
    pub shared_init: Vec<u32>,
    pub block_serial: u32,
    pub race: Vec<Race>,
    /// Per shared byte: `cp.async` copies into it issued and not yet landed.
    pub pending: Vec<u16>,
    /// Barrier epoch: shared accesses in different epochs are ordered.
    pub epoch: u32,
    pub findings: Vec<Finding>,
    pub failed: bool,
    pub profile: Profile,
    pub steps: u64,
    pub bars: [warpops::Bar; 16],
    /// This launch's number in the process (global hazard stamps).
    pub launch_serial: u64,
    /// The barrier epoch the running block started at: stamps from earlier epochs of this
    /// launch belong to other blocks.
    pub block_start_epoch: u32,
}

static LAUNCH_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A small deterministic generator for the warp order (SplitMix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Runs one grid to completion. Errors: the launch is refused (`CUDA_ERROR_INVALID_VALUE` for
/// limits), or a check found something (700 / 716 / 719), each finding printed as a `cuda-emu:` line.
pub fn launch(
    mem: &mut DeviceMemory,
    module: &LoadedModule,
    kernel: &Kernel,
    p: &LaunchParams,
    opts: &Options,
) -> CuResult<()> {
    checks::clear_findings();
    check_limits(kernel, p)?;
    if (p.params.len() as u32) < kernel.param_bytes {
        checks::record_launch_finding(
            kernel,
            "limits",
            format!(
                "parameter buffer of {} bytes, the kernel declares {}",
                p.params.len(),
                kernel.param_bytes
            ),
        );
        return Err(CuError::InvalidValue);
    }
    let nthreads = p.block[0] * p.block[1] * p.block[2];
    let shared_bytes = (kernel.dynamic_shared_offset() + p.dynamic_shared) as usize;
    // Buffers live on between launches of this thread: registers and local memory are written
    // before they are read, and the shadows are stamped with serials unique to the process, so
    // nothing needs clearing.
    let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    scratch.fit(shared_bytes, opts.checks);
    let mut ex = Exec {
        mem,
        module,
        kernel,
        params: p.params,
        grid: p.grid,
        block: p.block,
        dynamic_shared: p.dynamic_shared,
        checks: opts.checks,
        ctaid: [0; 3],
        shared: std::mem::take(&mut scratch.shared),
        shared_size: shared_bytes,
        shared_init: std::mem::take(&mut scratch.shared_init),
        block_serial: 0,
        race: std::mem::take(&mut scratch.race),
        pending: std::mem::take(&mut scratch.pending),
        epoch: scratch.epoch,
        findings: Vec::new(),
        failed: false,
        profile: Profile::default(),
        steps: 0,
        bars: Default::default(),
        launch_serial: LAUNCH_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
        block_start_epoch: 0,
    };
    // The order depends on the seed and the kernel only, so a seed reproduces a run.
    let name_hash = kernel.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = Rng(opts.seed ^ name_hash);
    let nwarps = nthreads.div_ceil(32) as usize;
    let nregs = kernel.reg_bits.len().max(1);
    let local = kernel.local_bytes as usize;
    let mut warps = std::mem::take(&mut scratch.warps);
    while warps.len() < nwarps {
        warps.push(Warp::new(warps.len() as u32));
    }
    warps.truncate(nwarps);
    for w in warps.iter_mut() {
        if w.regs.len() < nregs * 32 {
            w.regs.resize(nregs * 32, 0);
        }
        w.local.resize(local * 32, 0);
        w.local_init.resize(local * 32, false);
    }
    let mut blocks: Vec<[u32; 3]> =
        Vec::with_capacity((p.grid[0] * p.grid[1] * p.grid[2]) as usize);
    for z in 0..p.grid[2] {
        for y in 0..p.grid[1] {
            for x in 0..p.grid[0] {
                blocks.push([x, y, z]);
            }
        }
    }
    rng.shuffle(&mut blocks);
    let mut result = Ok(());
    for (serial, ctaid) in blocks.into_iter().enumerate() {
        ex.ctaid = ctaid;
        let _ = serial;
        scratch.serial = scratch.serial.wrapping_add(1).max(1);
        ex.block_serial = scratch.serial;
        ex.epoch = ex.epoch.wrapping_add(1);
        ex.block_start_epoch = ex.epoch;
        ex.bars = Default::default();
        for w in warps.iter_mut() {
            w.reset(nthreads);
        }
        let mut order: Vec<usize> = (0..warps.len()).collect();
        rng.shuffle(&mut order);
        if let Err(Stop::Fault(e)) = ex.run_block(&mut warps, &order) {
            result = Err(e);
            break;
        }
        if ex.failed && ex.findings.len() >= checks::MAX_FINDINGS {
            break;
        }
    }
    ex.profile.finish(kernel, p, opts);
    checks::publish(std::mem::take(&mut ex.findings));
    scratch.epoch = ex.epoch.wrapping_add(1);
    scratch.shared = std::mem::take(&mut ex.shared);
    scratch.shared_init = std::mem::take(&mut ex.shared_init);
    scratch.race = std::mem::take(&mut ex.race);
    // Copies a faulting launch left in flight must not count against the next one.
    ex.pending.iter_mut().for_each(|p| *p = 0);
    scratch.pending = std::mem::take(&mut ex.pending);
    scratch.warps = warps;
    SCRATCH.with(|s| *s.borrow_mut() = scratch);
    result?;
    if ex.failed {
        return Err(CuError::LaunchFailed);
    }
    Ok(())
}

fn check_limits(kernel: &Kernel, p: &LaunchParams) -> CuResult<()> {
    let refuse = |msg: String| {
        checks::record_launch_finding(kernel, "limits", msg);
        Err(CuError::InvalidValue)
    };
    let threads = p.block[0] as u64 * p.block[1] as u64 * p.block[2] as u64;
    if threads == 0 || p.grid.contains(&0) {
        return refuse(format!(
            "empty launch: grid {:?} block {:?}",
            p.grid, p.block
        ));
    }
    for i in 0..3 {
        if p.block[i] > device::MAX_BLOCK_DIM[i] || p.grid[i] > device::MAX_GRID_DIM[i] {
            return refuse(format!(
                "grid {:?} / block {:?} exceed the device's dimensions",
                p.grid, p.block
            ));
        }
    }
    let max = kernel
        .maxntid
        .or(kernel.reqntid)
        .map(|d| d[0] as u64 * d[1] as u64 * d[2] as u64)
        .unwrap_or(device::MAX_THREADS_PER_BLOCK as u64)
        .min(device::MAX_THREADS_PER_BLOCK as u64);
    if threads > max {
        return refuse(format!(
            "{threads} threads per block, the kernel allows at most {max}"
        ));
    }
    if let Some(r) = kernel.reqntid {
        if r != p.block {
            return refuse(format!(
                "block {:?}, the kernel requires {:?} (.reqntid)",
                p.block, r
            ));
        }
    }
    let total = kernel.dynamic_shared_offset() as u64 + p.dynamic_shared as u64;
    if total > device::SHARED_PER_BLOCK_OPTIN as u64 {
        return refuse(format!(
            "{} bytes of shared memory ({} static + {} dynamic), over the device's maximum of {}",
            total,
            kernel.static_shared,
            p.dynamic_shared,
            device::SHARED_PER_BLOCK_OPTIN
        ));
    }
    if total > device::SHARED_PER_BLOCK as u64 && p.dynamic_shared > p.max_dynamic_shared {
        return refuse(format!(
            "{} bytes of shared memory ({} static + {} dynamic) exceed 48 KiB, and \
             CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES is {} (set it to opt in)",
            total, kernel.static_shared, p.dynamic_shared, p.max_dynamic_shared
        ));
    }
    Ok(())
}

/// Per-thread buffers reused by every launch (see [`launch`]).
#[derive(Default)]
struct Scratch {
    warps: Vec<Warp>,
    shared: Vec<u8>,
    shared_init: Vec<u32>,
    race: Vec<Race>,
    pending: Vec<u16>,
    /// Last block serial and barrier epoch handed out on this thread.
    serial: u32,
    epoch: u32,
}

impl Scratch {
    fn fit(&mut self, shared_bytes: usize, checks: bool) {
        if self.shared.len() < shared_bytes {
            self.shared.resize(shared_bytes, 0);
            self.shared_init.resize(shared_bytes, 0);
        }
        if checks && self.race.len() < shared_bytes {
            self.race.resize(shared_bytes, Race::default());
        }
        if self.pending.len() < shared_bytes {
            self.pending.resize(shared_bytes, 0);
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

impl Warp {
    fn new(index: u32) -> Warp {
        Warp {
            index,
            regs: Vec::new(),
            pc: [0; 32],
            lane: [Lane::Exited; 32],
            ready: 0,
            local: Vec::new(),
            local_init: Vec::new(),
            uncommitted: (0..32).map(|_| Vec::new()).collect(),
            groups: (0..32).map(|_| Default::default()).collect(),
            sync_gen: 0,
            red_value: [0; 32],
        }
    }

    fn reset(&mut self, nthreads: u32) {
        for l in 0..32 {
            let tid = self.index * 32 + l as u32;
            self.set_lane(
                l,
                if tid < nthreads {
                    Lane::Ready
                } else {
                    Lane::Exited
                },
            );
            self.pc[l] = 0;
            self.uncommitted[l].clear();
            self.groups[l].clear();
        }
        self.local_init.iter_mut().for_each(|b| *b = false);
        self.sync_gen = 0;
    }

    fn live(&self) -> u32 {
        self.lane.iter().filter(|l| **l != Lane::Exited).count() as u32
    }

    #[inline]
    fn ready_mask(&self) -> u32 {
        self.ready
    }

    #[inline]
    pub(crate) fn set_lane(&mut self, l: usize, s: Lane) {
        self.lane[l] = s;
        if s == Lane::Ready {
            self.ready |= 1 << l;
        } else {
            self.ready &= !(1 << l);
        }
    }
}

impl<'a> Exec<'a> {
    /// Runs the block's warps until all exited. Each ready warp runs until none of its lanes
    /// can go on; then barriers whose participants all arrived are released.
    fn run_block(&mut self, warps: &mut [Warp], order: &[usize]) -> Flow<()> {
        loop {
            let mut progressed = false;
            for &w in order {
                if warps[w].ready_mask() != 0 {
                    self.run_warp(&mut warps[w])?;
                    progressed = true;
                }
            }
            if warps.iter().all(|w| w.live() == 0) {
                return Ok(());
            }
            if self.release_barriers(warps)? {
                continue;
            }
            if !progressed {
                return self.deadlock(warps);
            }
        }
    }

    /// Runs one warp until no lane is ready (all exited or waiting).
    fn run_warp(&mut self, w: &mut Warp) -> Flow<()> {
        // (pc, lanes) known to be the next group while the warp stays converged.
        let mut next: Option<(u32, u32)> = None;
        let budget = step_budget();
        let mut spins = 0u32;
        let mut last_group = 0u32;
        loop {
            let ready = w.ready;
            if ready == 0 {
                return Ok(());
            }
            let (pc, group) = match next {
                Some((pc, g)) if g == ready => (pc, g),
                _ => {
                    // Lowest program counter first, so diverged lanes meet again; but a group
                    // that keeps looping while other lanes wait yields to them (forward progress
                    // of diverged threads, as independent thread scheduling guarantees).
                    let candidates = if spins > SPIN_YIELD && ready & !last_group != 0 {
                        spins = 0;
                        ready & !last_group
                    } else {
                        ready
                    };
                    let mut pc = u32::MAX;
                    for_lanes(candidates, |l| pc = pc.min(w.pc[l]));
                    let mut group = 0u32;
                    for_lanes(candidates, |l| {
                        if w.pc[l] == pc {
                            group |= 1 << l;
                        }
                    });
                    (pc, group)
                }
            };
            let Some(ins) = self.kernel.code.get(pc as usize) else {
                // Falling off the end of the code is a return.
                for_lanes(group, |l| w.set_lane(l, Lane::Exited));
                next = None;
                continue;
            };
            self.steps += 1;
            if self.steps > budget {
                self.finding("watchdog", ins.line, w, group.trailing_zeros(), None,
                    format!("more than {budget} warp instructions: stopped as hung (CUDA_EMU_MAX_STEPS)"));
                return Err(Stop::Fault(CuError::LaunchTimeout));
            }
            // Lanes whose guard is false skip the instruction.
            let mut active = group;
            if let Some((p, neg)) = ins.guard {
                let base = p as usize * 32;
                for_lanes(group, |l| {
                    if (w.regs[base + l] & 1 != 0) == neg {
                        active &= !(1 << l);
                    }
                });
            }
            let skipped = group & !active;
            for_lanes(skipped, |l| w.pc[l] = pc + 1);
            if active != 0 {
                self.profile.count(active);
                self.exec(w, pc, active)?;
            }
            if let (Op::Bra, Some(Operand::Label(t))) = (ins.op, ins.args.first()) {
                if *t <= pc && group != ready {
                    spins += 1;
                } else {
                    spins = 0;
                }
                last_group = group;
            }
            next = match ins.op {
                // Control flow and waits: find the next group by scanning.
                Op::Bra
                | Op::Ret
                | Op::Exit
                | Op::BarSync
                | Op::BarRed
                | Op::BarArrive
                | Op::Shfl
                | Op::Vote
                | Op::Mma
                | Op::Ldmatrix
                | Op::BarWarpSync => None,
                _ => Some((pc + 1, group)),
            };
        }
    }

    /// Executes `code[pc]` for the lanes of `mask`, which all sit at `pc`, and moves them on.
    fn exec(&mut self, w: &mut Warp, pc: u32, mask: u32) -> Flow<()> {
        let ins = &self.kernel.code[pc as usize];
        match ins.op {
            Op::Bra => {
                let Operand::Label(t) = ins.args[0] else {
                    unreachable!("branch operands are labels")
                };
                for_lanes(mask, |l| w.pc[l] = t);
                return Ok(());
            }
            Op::Ret | Op::Exit => {
                for_lanes(mask, |l| {
                    w.set_lane(l, Lane::Exited);
                    let mut copies = std::mem::take(&mut w.uncommitted[l]);
                    copies.extend(w.groups[l].drain(..).flatten());
                    for c in copies {
                        self.forget_copy(c.dst as usize, c.data.len());
                    }
                });
                return Ok(());
            }
            Op::Trap => {
                self.finding(
                    "trap",
                    ins.line,
                    w,
                    mask.trailing_zeros(),
                    None,
                    "trap instruction".into(),
                );
                return Err(Stop::Fault(CuError::LaunchFailed));
            }
            Op::BarSync | Op::BarRed | Op::BarArrive => return self.bar_arrive(w, pc, mask),
            Op::Shfl | Op::Vote | Op::Mma | Op::Ldmatrix | Op::BarWarpSync => {
                return self.collective(w, pc, mask)
            }
            Op::Ld
            | Op::St
            | Op::Atom
            | Op::Red
            | Op::CpAsync
            | Op::CpAsyncCommit
            | Op::CpAsyncWait
            | Op::CpAsyncWaitAll
            | Op::Prefetch => {
                self.memop(w, ins, mask)?;
            }
            Op::Activemask => {
                let d = &ins.args[0];
                for_lanes(mask, |l| self.set(w, l, d, mask as u64));
            }
            Op::Membar | Op::Nanosleep => {}
            _ => {
                if !self.alu_fast(w, ins, mask) {
                    self.alu(w, ins, mask)?
                }
            }
        }
        if mask == u32::MAX {
            w.pc = [pc + 1; 32];
        } else {
            for_lanes(mask, |l| w.pc[l] = pc + 1);
        }
        Ok(())
    }

    /// Reads a source operand for one lane (registers, literals, special registers, addresses).
    #[inline(always)]
    fn get(&self, w: &Warp, l: usize, o: &Operand) -> u64 {
        match o {
            Operand::Reg(r) => w.regs[*r as usize * 32 + l],
            Operand::Imm(v) => *v,
            Operand::PredNot(r) => (w.regs[*r as usize * 32 + l] & 1) ^ 1,
            Operand::Special(s) => self.special(w, l, *s),
            Operand::SymAddr(b) => self.sym_addr(*b),
            _ => 0,
        }
    }

    #[inline(always)]
    fn set(&self, w: &mut Warp, l: usize, o: &Operand, v: u64) {
        if let Operand::Reg(r) = o {
            let bits = self.kernel.reg_bits[*r as usize] as u32;
            w.regs[*r as usize * 32 + l] = v & (u64::MAX >> (64 - bits));
        }
    }

    fn sym_addr(&self, b: crate::ir::AddrBase) -> u64 {
        use crate::ir::AddrBase;
        match b {
            AddrBase::Param(off) => off as u64,
            AddrBase::Shared(off) => off as u64,
            AddrBase::Local(off) => off as u64,
            AddrBase::Global(i) => self.module.global_addrs[i as usize],
            AddrBase::Reg(_) | AddrBase::Absolute => 0,
        }
    }

    pub(crate) fn thread_xyz(&self, tid: u32) -> [u32; 3] {
        let bx = self.block[0];
        let by = self.block[1];
        [tid % bx, (tid / bx) % by, tid / (bx * by)]
    }

    fn special(&self, w: &Warp, l: usize, s: Special) -> u64 {
        let tid = w.index * 32 + l as u32;
        (match s {
            Special::Tid(d) => self.thread_xyz(tid)[d as usize],
            Special::Ntid(d) => self.block[d as usize],
            Special::Ctaid(d) => self.ctaid[d as usize],
            Special::Nctaid(d) => self.grid[d as usize],
            Special::LaneId => l as u32,
            Special::WarpId => w.index,
            Special::NWarpId => 64,
            Special::SmId => self.block_serial % device::MULTIPROCESSORS as u32,
            Special::NSmId => device::MULTIPROCESSORS as u32,
            Special::GridId => 1,
            Special::LaneMaskEq => 1u32 << l,
            Special::LaneMaskLt => (1u32 << l) - 1,
            Special::LaneMaskLe => ((1u64 << (l + 1)) - 1) as u32,
            Special::LaneMaskGt => !(((1u64 << (l + 1)) - 1) as u32),
            Special::LaneMaskGe => !((1u32 << l) - 1),
            Special::Clock | Special::Clock64 | Special::GlobalTimer => return self.steps,
            Special::DynamicSmemSize => self.dynamic_shared,
            Special::TotalSmemSize => self.shared_size as u32,
        }) as u64
    }

    /// The launch's thread coordinates of a lane, for findings.
    pub(crate) fn thread_of(&self, w: &Warp, l: u32) -> [u32; 3] {
        self.thread_xyz(w.index * 32 + l)
    }

    fn finding(
        &mut self,
        check: &'static str,
        line: u32,
        w: &Warp,
        lane: u32,
        address: Option<u64>,
        message: String,
    ) {
        let thread = self.thread_of(w, lane.min(31));
        self.failed = true;
        checks::record(
            &mut self.findings,
            Finding {
                check,
                kernel: self.kernel.name.clone(),
                line,
                block: self.ctaid,
                thread,
                address,
                message,
            },
        );
    }
}

/// Calls `f` for each lane set in `mask`.
#[inline]
pub(crate) fn for_lanes(mut mask: u32, mut f: impl FnMut(usize)) {
    while mask != 0 {
        let l = mask.trailing_zeros() as usize;
        f(l);
        mask &= mask - 1;
    }
}

/// Which space a generic address falls in, and the address within it.
pub(crate) fn resolve_generic(addr: u64) -> (crate::ir::Space, u64) {
    use crate::ir::Space;
    if (SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&addr) {
        (Space::Shared, addr - SHARED_WINDOW)
    } else if (LOCAL_WINDOW..LOCAL_WINDOW + WINDOW_SIZE).contains(&addr) {
        (Space::Local, addr - LOCAL_WINDOW)
    } else {
        (Space::Global, addr)
    }
}
