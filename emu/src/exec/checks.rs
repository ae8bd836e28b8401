//! Findings of the checks (printed as `cuda-emu:` lines, kept for tests) and the racecheck
//! shadow of shared memory.

use std::cell::RefCell;

use crate::ir::Kernel;

/// After this many findings a launch stops looking (the first ones are what matter).
pub const MAX_FINDINGS: usize = 16;

/// One problem a check found, as printed (`cuda-emu: <check>: …`).
#[derive(Clone, Debug)]
pub struct Finding {
    /// `memcheck`, `initcheck`, `racecheck`, `synccheck`, `limits`, `trap`, `watchdog`.
    pub check: &'static str,
    pub kernel: String,
    /// PTX line (1-based) of the instruction, 0 when the finding is about the launch.
    pub line: u32,
    pub block: [u32; 3],
    pub thread: [u32; 3],
    pub address: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: kernel {}", self.check, self.kernel)?;
        if self.line > 0 {
            write!(
                f,
                ", PTX line {}, block ({},{},{}), thread ({},{},{})",
                self.line,
                self.block[0],
                self.block[1],
                self.block[2],
                self.thread[0],
                self.thread[1],
                self.thread[2]
            )?;
        }
        if let Some(a) = self.address {
            write!(f, ", address {a:#x}")?;
        }
        write!(f, ": {}", self.message)
    }
}

thread_local! {
    static FINDINGS: RefCell<Vec<Finding>> = const { RefCell::new(Vec::new()) };
}

/// The findings of the last launch made on this thread (for tests; they were printed too).
pub fn last_findings() -> Vec<Finding> {
    FINDINGS.with(|f| f.borrow().clone())
}

pub(crate) fn clear_findings() {
    FINDINGS.with(|f| f.borrow_mut().clear());
}

pub(crate) fn publish(found: Vec<Finding>) {
    FINDINGS.with(|f| f.borrow_mut().extend(found));
}

/// Prints and keeps one finding (at most [`MAX_FINDINGS`] per launch).
pub(crate) fn record(list: &mut Vec<Finding>, f: Finding) {
    if list.len() < MAX_FINDINGS {
        crate::report(&f.to_string());
        list.push(f);
    }
}

/// A finding about the launch itself (refused before any thread ran).
pub(crate) fn record_launch_finding(kernel: &Kernel, check: &'static str, message: String) {
    let f = Finding {
        check,
        kernel: kernel.name.clone(),
        line: 0,
        block: [0; 3],
        thread: [0; 3],
        address: None,
        message,
    };
    crate::report(&f.to_string());
    FINDINGS.with(|l| l.borrow_mut().push(f));
}

/// Who last wrote and read one shared byte, and when (barrier epoch, warp sync generation).
#[derive(Clone, Copy, Default)]
pub struct Race {
    pub w_epoch: u32,
    pub w_tid: u16,
    pub w_gen: u16,
    pub w_atomic: bool,
    pub r_epoch: u32,
    pub r_tid: u16,
    pub r_gen: u16,
    /// More than one thread read the byte in `r_epoch`.
    pub r_many: bool,
    /// Readers of `r_epoch` came from more than one warp.
    pub r_many_warps: bool,
}

/// Whether an earlier access by `other` (in `other_gen`) is ordered before one by `tid` (in `gen`)
/// within the same epoch: the same thread, or the same warp after a `bar.warp.sync`.
#[inline]
pub fn ordered(tid: u16, gen: u16, other: u16, other_gen: u16) -> bool {
    tid == other || (tid / 32 == other / 32 && gen != other_gen)
}
