//! The exported CUDA driver API: `#[no_mangle] extern "C"` functions with the names and ABI of
//! `libcuda.so.1` (as cudarc's dynamic loader looks them up for CUDA 13.0), over one emulated
//! device and one context state.
//!
//! - Everything lives in one global [`State`] behind a `Mutex`; handles (`CUcontext`, `CUmodule`,
//!   `CUfunction`, `CUstream`, `CUevent`, `CUgraph`, `CUgraphExec`) are opaque non-null values
//!   that encode a kind and an id, mapped in tables (a wrong kind or a stale id is
//!   `CUDA_ERROR_INVALID_HANDLE`).
//! - Work enqueued on a stream runs at once, so stream order is kept trivially; events record
//!   host `Instant`s (their elapsed time is host time, never a GPU timing).
//! - Errors 700 / 716 / 719 from a launch are sticky: every later call that touches the context
//!   returns them, until the primary context is reset (released to 0 or
//!   `cuDevicePrimaryCtxReset_v2`).
//! - Stream capture records work into a graph instead of running it (see [`graph`]).
//! - Every export runs inside `catch_unwind`: a panic prints `cuda-emu: internal error in cuXxx`
//!   and returns `CUDA_ERROR_UNKNOWN`.
//!
//! All contexts (the primary one and any `cuCtxCreate` ones) share the one device state.

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::error::CuError;
use crate::ir::Kernel;
use crate::loader::LoadedModule;
use crate::memory::DeviceMemory;

/// `CUresult`: a `u32` enum in `cuda.h`; 0 is `CUDA_SUCCESS`.
pub type CUresult = u32;
pub type CUdevice = i32;
pub type CUdeviceptr = u64;
pub type CUcontext = *mut std::ffi::c_void;
pub type CUmodule = *mut std::ffi::c_void;
pub type CUfunction = *mut std::ffi::c_void;
pub type CUstream = *mut std::ffi::c_void;
pub type CUevent = *mut std::ffi::c_void;
pub type CUgraph = *mut std::ffi::c_void;
pub type CUgraphExec = *mut std::ffi::c_void;
pub type CUgraphNode = *mut std::ffi::c_void;

pub const CUDA_SUCCESS: CUresult = 0;
/// Result codes `CuError` does not have.
pub const CUDA_ERROR_ILLEGAL_STATE: CUresult = 401;
pub const CUDA_ERROR_NOT_PERMITTED: CUresult = 800;
pub const CUDA_ERROR_STREAM_CAPTURE_MERGE: CUresult = 902;
pub const CUDA_ERROR_CAPTURED_EVENT: CUresult = 907;
pub const CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD: CUresult = 908;

/// A failed call: the `CUresult` it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code(pub CUresult);

impl From<CuError> for Code {
    fn from(e: CuError) -> Code {
        Code(e.code())
    }
}

pub type DResult<T> = Result<T, Code>;

pub(crate) fn err<T>(e: CuError) -> DResult<T> {
    Err(Code(e.code()))
}

/// Runs an export's body: a panic becomes `CUDA_ERROR_UNKNOWN` with a `cuda-emu:` line.
/// (Public for the tests.)
#[doc(hidden)]
pub fn guard(name: &str, f: impl FnOnce() -> DResult<()>) -> CUresult {
    if IN_HOST_FUNC.with(|c| c.get()) {
        // A `cuLaunchHostFunc` callback must not call the driver (and would deadlock here).
        crate::report(&format!(
            "{name} called from a host function (cuLaunchHostFunc)"
        ));
        return CUDA_ERROR_NOT_PERMITTED;
    }
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => CUDA_SUCCESS,
        Ok(Err(Code(c))) => c,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            crate::report(&format!("internal error in {name}: {msg}"));
            CuError::Unknown.code()
        }
    }
}

/// Defines `#[no_mangle] pub unsafe extern "C"` exports whose bodies return `DResult<()>` and run
/// under [`guard`].
macro_rules! exports {
    ($( $(#[$m:meta])* fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) $body:block )*) => {
        $(
            $(#[$m])*
            #[no_mangle]
            #[allow(non_snake_case, clippy::missing_safety_doc)]
            pub unsafe extern "C" fn $name($($arg: $ty),*) -> $crate::driver::CUresult {
                $crate::driver::guard(stringify!($name), move || -> $crate::driver::DResult<()> {
                    #[allow(unused_unsafe)]
                    unsafe { $body }
                })
            }
        )*
    };
}

/// Writes `v` through an out-pointer; null → `CUDA_ERROR_INVALID_VALUE`.
pub(crate) unsafe fn out<T>(p: *mut T, v: T) -> DResult<()> {
    if p.is_null() {
        return err(CuError::InvalidValue);
    }
    p.write(v);
    Ok(())
}

/// Handle kinds (the top bits of a handle's value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum Kind {
    Ctx = 1,
    Module = 2,
    Function = 3,
    Stream = 4,
    Event = 5,
    Graph = 6,
    GraphExec = 7,
}

const KIND_SHIFT: u32 = 48;

pub(crate) fn handle(kind: Kind, id: u64) -> *mut std::ffi::c_void {
    (((kind as u64) << KIND_SHIFT) | id) as usize as *mut std::ffi::c_void
}

/// The id of a handle of `kind`; anything else is `CUDA_ERROR_INVALID_HANDLE`.
pub(crate) fn id_of(kind: Kind, h: *mut std::ffi::c_void) -> DResult<u64> {
    let v = h as usize as u64;
    if v >> KIND_SHIFT == kind as u64 && v & ((1 << KIND_SHIFT) - 1) != 0 {
        Ok(v & ((1 << KIND_SHIFT) - 1))
    } else {
        err(CuError::InvalidHandle)
    }
}

/// The primary context's id (its handle never changes, as on a GPU).
pub(crate) const PRIMARY_CTX: u64 = 1;

/// A function handle's state.
pub(crate) struct Func {
    pub module: u64,
    pub kernel: Arc<Kernel>,
    /// `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES` once set.
    pub max_dynamic_shared: Option<u32>,
    pub carveout: i32,
}

pub(crate) struct ModuleEntry {
    pub loaded: Arc<LoadedModule>,
    /// Kernel name → function id (one handle per name, as the driver).
    pub functions: HashMap<String, u64>,
}

/// Which stream an operation goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamRef {
    /// NULL or `CU_STREAM_LEGACY`: synchronises with every blocking stream.
    Legacy,
    /// `CU_STREAM_PER_THREAD`.
    PerThread,
    Created(u64),
}

pub(crate) struct StreamEntry {
    pub flags: u32,
    pub priority: i32,
    /// The capture sequence this stream takes part in.
    pub capture: Option<u64>,
}

pub(crate) struct EventEntry {
    pub flags: u32,
    /// When it was last recorded outside a capture.
    pub recorded: Option<Instant>,
    /// Last recorded in a capturing stream: (capture id, stream id, that stream's work count).
    pub captured: Option<(u64, u64, u64)>,
}

pub(crate) struct State {
    pub initialized: bool,
    pub primary_refs: u32,
    /// Contexts made by `cuCtxCreate` (ids), alive until `cuCtxDestroy`.
    pub created_ctxs: Vec<u64>,
    pub mem: DeviceMemory,
    pub modules: HashMap<u64, ModuleEntry>,
    pub functions: HashMap<u64, Func>,
    pub streams: HashMap<u64, StreamEntry>,
    pub events: HashMap<u64, EventEntry>,
    pub graphs: HashMap<u64, graph::Graph>,
    pub execs: HashMap<u64, Arc<Vec<graph::Node>>>,
    pub captures: HashMap<u64, graph::Capture>,
    pub sticky: Option<CuError>,
    /// Ids are never reused (a stale handle stays invalid).
    pub next_id: u64,
}

impl State {
    fn new() -> State {
        State {
            initialized: false,
            primary_refs: 0,
            created_ctxs: Vec::new(),
            mem: DeviceMemory::new(crate::device::TOTAL_MEMORY),
            modules: HashMap::new(),
            functions: HashMap::new(),
            streams: HashMap::new(),
            events: HashMap::new(),
            graphs: HashMap::new(),
            execs: HashMap::new(),
            captures: HashMap::new(),
            sticky: None,
            next_id: 16,
        }
    }

    pub fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Destroys everything the context owns (the primary context released to 0, or reset).
    pub fn reset(&mut self) {
        let initialized = self.initialized;
        let next_id = self.next_id;
        let created = std::mem::take(&mut self.created_ctxs);
        let refs = self.primary_refs;
        *self = State::new();
        self.initialized = initialized;
        self.next_id = next_id;
        self.created_ctxs = created;
        self.primary_refs = refs;
    }

    pub fn check_init(&self) -> DResult<()> {
        if self.initialized {
            Ok(())
        } else {
            err(CuError::NotInitialized)
        }
    }

    /// Whether context `id` is alive.
    pub fn ctx_alive(&self, id: u64) -> bool {
        if id == PRIMARY_CTX {
            self.primary_refs > 0
        } else {
            self.created_ctxs.contains(&id)
        }
    }

    /// What every call that touches the context checks first: initialised, a live context
    /// current on this thread, and no sticky error.
    pub fn ctx(&self) -> DResult<()> {
        self.check_init()?;
        let cur = CURRENT.with(|c| c.get());
        if cur == 0 || !self.ctx_alive(cur) {
            return err(CuError::InvalidContext);
        }
        if let Some(e) = self.sticky {
            return err(e);
        }
        Ok(())
    }

    pub fn stream_ref(&self, h: CUstream) -> DResult<StreamRef> {
        match h as usize {
            0 | 1 => Ok(StreamRef::Legacy),
            2 => Ok(StreamRef::PerThread),
            _ => {
                let id = id_of(Kind::Stream, h)?;
                if self.streams.contains_key(&id) {
                    Ok(StreamRef::Created(id))
                } else {
                    err(CuError::InvalidHandle)
                }
            }
        }
    }

    /// Records a launch error; the sticky ones poison the context.
    pub fn launch_error(&mut self, e: CuError) -> Code {
        if e.is_sticky() {
            self.sticky = Some(e);
        }
        Code::from(e)
    }
}

thread_local! {
    /// The context current on this thread (its id; 0 = none).
    pub(crate) static CURRENT: Cell<u64> = const { Cell::new(0) };
    /// Set while a `cuLaunchHostFunc` callback runs on this thread.
    pub(crate) static IN_HOST_FUNC: Cell<bool> = const { Cell::new(false) };
}

pub(crate) fn state() -> MutexGuard<'static, State> {
    static STATE: std::sync::OnceLock<Mutex<State>> = std::sync::OnceLock::new();
    STATE
        .get_or_init(|| Mutex::new(State::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

pub mod device;
pub mod graph;
pub mod memory;
pub mod module;
pub mod stream;

pub use self::device::*;
pub use graph::*;
pub use memory::*;
pub use module::*;
pub use stream::*;
