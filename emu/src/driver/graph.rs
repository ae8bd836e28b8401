//! Running work, stream capture and graphs.
//!
//! Work enqueued on a stream runs at once ([`State::enqueue`]), unless the stream takes part in
//! a capture sequence: then it is appended to the capture's node list and runs when the graph is
//! launched (a host-to-device copy reads host memory at replay, a device-to-host one writes it at
//! replay, as on a GPU). The node list is one valid order of the captured DAG (the order work was
//! enqueued in), so a replay in that order is exact.
//!
//! Capture rules enforced, as the driver does:
//! - "potentially unsafe" calls (`cuMemAlloc`, `cuMemFree`, synchronous copies and memsets,
//!   `cuCtxSynchronize`, a legacy-stream synchronize) from a thread that a
//!   `GLOBAL` / `THREAD_LOCAL` capture prohibits → `CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED`, and
//!   the capture is invalidated;
//! - `cuStreamSynchronize` / `cuStreamQuery` of a capturing stream → `..._UNSUPPORTED`,
//!   invalidated;
//! - legacy-stream work while a blocking (not `CU_STREAM_NON_BLOCKING`) stream captures →
//!   `CUDA_ERROR_STREAM_CAPTURE_IMPLICIT`, invalidated;
//! - a capturing stream waiting on an event recorded outside the capture →
//!   `CUDA_ERROR_STREAM_CAPTURE_ISOLATION`, invalidated; waiting on an event recorded inside a
//!   capture joins the waiting stream to it; `cuStreamEndCapture` with a joined stream whose last
//!   work the origin stream did not wait for → `..._UNJOINED`;
//! - work on a stream of an invalidated capture → `..._INVALIDATED`; `cuStreamEndCapture` of an
//!   invalidated capture → `..._INVALIDATED` and no graph; of a joined (not origin) stream →
//!   `..._UNMATCHED`; from another thread (not `RELAXED`) → `..._WRONG_THREAD`;
//! - `cuEventSynchronize` / `cuEventQuery` / `cuEventElapsedTime` of an event last recorded in a
//!   capture → `CUDA_ERROR_CAPTURED_EVENT`.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{c_char, c_uint, c_ulonglong, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::ThreadId;

use super::{
    err, handle, id_of, out, state, CUgraph, CUgraphExec, CUgraphNode, CUstream, Code, DResult,
    Kind, State, StreamRef, CUDA_ERROR_ILLEGAL_STATE, CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD,
};
use crate::error::CuError;
use crate::exec::{launch, LaunchParams};
use crate::ir::Kernel;
use crate::loader::LoadedModule;

pub const CU_STREAM_CAPTURE_MODE_GLOBAL: u32 = 0;
pub const CU_STREAM_CAPTURE_MODE_THREAD_LOCAL: u32 = 1;
pub const CU_STREAM_CAPTURE_MODE_RELAXED: u32 = 2;
pub const CU_STREAM_CAPTURE_STATUS_NONE: u32 = 0;
pub const CU_STREAM_CAPTURE_STATUS_ACTIVE: u32 = 1;
pub const CU_STREAM_CAPTURE_STATUS_INVALIDATED: u32 = 2;

/// One piece of work: run at once, or recorded by a capture.
#[derive(Clone)]
pub enum Node {
    Kernel {
        module: Arc<LoadedModule>,
        kernel: Arc<Kernel>,
        grid: [u32; 3],
        block: [u32; 3],
        dynamic_shared: u32,
        max_dynamic_shared: u32,
        /// The packed parameter buffer (a copy: the caller's values may change afterwards).
        params: Vec<u8>,
    },
    Memset {
        dst: u64,
        pattern: Vec<u8>,
        count: usize,
    },
    /// The host pointer is kept and read when the node runs.
    HtoD {
        dst: u64,
        src: usize,
        bytes: usize,
    },
    DtoH {
        dst: usize,
        src: u64,
        bytes: usize,
    },
    DtoD {
        dst: u64,
        src: u64,
        bytes: usize,
    },
    HtoH {
        dst: usize,
        src: usize,
        bytes: usize,
    },
    /// `cuLaunchHostFunc`.
    Host {
        func: usize,
        arg: usize,
    },
    /// `cuGraphLaunch` captured into another graph.
    Graph(Arc<Vec<Node>>),
}

/// A capture sequence (`cuStreamBeginCapture` … `cuStreamEndCapture`).
pub struct Capture {
    pub origin: u64,
    pub mode: u32,
    pub thread: ThreadId,
    pub invalidated: bool,
    pub nodes: Vec<Node>,
    /// Every stream in the capture: (work items enqueued on it, work items the origin has
    /// waited for).
    pub streams: HashMap<u64, (u64, u64)>,
}

pub struct Graph {
    pub nodes: Arc<Vec<Node>>,
}

thread_local! {
    /// `cuThreadExchangeStreamCaptureMode`: this thread's mode (GLOBAL by default).
    static THREAD_MODE: Cell<u32> = const { Cell::new(CU_STREAM_CAPTURE_MODE_GLOBAL) };
}

impl State {
    /// Ends a capture's validity: later work on its streams fails, `cuStreamEndCapture` too.
    pub(crate) fn invalidate(&mut self, capture: u64) {
        if let Some(c) = self.captures.get_mut(&capture) {
            c.invalidated = true;
        }
    }

    /// Removes a capture; its streams stop capturing.
    pub(crate) fn end_capture_seq(&mut self, capture: u64) -> Option<Capture> {
        let c = self.captures.remove(&capture)?;
        for s in c.streams.keys() {
            if let Some(s) = self.streams.get_mut(s) {
                s.capture = None;
            }
        }
        Some(c)
    }

    /// Refuses a "potentially unsafe" call in a thread that an active capture prohibits.
    pub(crate) fn check_unsafe_call(&mut self) -> DResult<()> {
        let me = std::thread::current().id();
        let tmode = THREAD_MODE.with(|m| m.get());
        if tmode == CU_STREAM_CAPTURE_MODE_RELAXED {
            return Ok(());
        }
        let bad: Vec<u64> = self
            .captures
            .iter()
            .filter(|(_, c)| match c.mode {
                CU_STREAM_CAPTURE_MODE_GLOBAL => {
                    c.thread == me || tmode == CU_STREAM_CAPTURE_MODE_GLOBAL
                }
                CU_STREAM_CAPTURE_MODE_THREAD_LOCAL => c.thread == me,
                _ => false,
            })
            .map(|(&id, _)| id)
            .collect();
        if bad.is_empty() {
            return Ok(());
        }
        for id in bad {
            self.invalidate(id);
        }
        err(CuError::StreamCaptureUnsupported)
    }

    /// Legacy-stream work would wait for every blocking stream: refused while one captures.
    pub(crate) fn check_implicit(&mut self) -> DResult<()> {
        let bad: Vec<u64> = self
            .captures
            .iter()
            .filter(|(_, c)| {
                c.streams
                    .keys()
                    .any(|s| self.streams.get(s).is_some_and(|s| s.flags & 1 == 0))
            })
            .map(|(&id, _)| id)
            .collect();
        if bad.is_empty() {
            return Ok(());
        }
        for id in bad {
            self.invalidate(id);
        }
        err(CuError::StreamCaptureImplicit)
    }

    /// The capture a stream takes part in; `..._INVALIDATED` when that capture is.
    pub(crate) fn capture_of(&self, s: StreamRef) -> DResult<Option<u64>> {
        if let StreamRef::Created(id) = s {
            if let Some(c) = self.streams[&id].capture {
                if self.captures[&c].invalidated {
                    return err(CuError::StreamCaptureInvalidated);
                }
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// Runs `node` now, or records it when the stream captures. (The caller checked the context.)
    pub(crate) fn enqueue(&mut self, s: StreamRef, node: Node) -> DResult<()> {
        if let Some(c) = self.capture_of(s)? {
            let StreamRef::Created(id) = s else {
                unreachable!()
            };
            let cap = self.captures.get_mut(&c).expect("capture");
            cap.nodes.push(node);
            cap.streams.entry(id).or_insert((0, 0)).0 += 1;
            return Ok(());
        }
        if s == StreamRef::Legacy {
            self.check_implicit()?;
        }
        self.run_node(&node)
    }

    /// Executes one node.
    pub(crate) fn run_node(&mut self, node: &Node) -> DResult<()> {
        match node {
            Node::Kernel {
                module,
                kernel,
                grid,
                block,
                dynamic_shared,
                max_dynamic_shared,
                params,
            } => {
                let p = LaunchParams {
                    grid: *grid,
                    block: *block,
                    dynamic_shared: *dynamic_shared,
                    max_dynamic_shared: *max_dynamic_shared,
                    params,
                };
                launch(&mut self.mem, module, kernel, &p, crate::Options::global())
                    .map_err(|e| self.launch_error(e))
            }
            Node::Memset {
                dst,
                pattern,
                count,
            } => self.mem.memset(*dst, pattern, *count).map_err(Into::into),
            Node::HtoD { dst, src, bytes } => {
                if *bytes == 0 {
                    return Ok(());
                }
                if *src == 0 {
                    return err(CuError::InvalidValue);
                }
                // SAFETY: the caller promised `bytes` readable bytes at `src` (now or at replay).
                let data = unsafe { std::slice::from_raw_parts(*src as *const u8, *bytes) };
                self.mem.host_write(*dst, data).map_err(Into::into)
            }
            Node::DtoH { dst, src, bytes } => {
                if *bytes == 0 {
                    return Ok(());
                }
                if *dst == 0 {
                    return err(CuError::InvalidValue);
                }
                // SAFETY: the caller promised `bytes` writable bytes at `dst`.
                let data = unsafe { std::slice::from_raw_parts_mut(*dst as *mut u8, *bytes) };
                self.mem.host_read(*src, data).map_err(Into::into)
            }
            Node::DtoD { dst, src, bytes } => self.mem.copy(*dst, *src, *bytes).map_err(Into::into),
            Node::HtoH { dst, src, bytes } => {
                if *bytes == 0 {
                    return Ok(());
                }
                if *dst == 0 || *src == 0 {
                    return err(CuError::InvalidValue);
                }
                // SAFETY: both host ranges were promised by the caller; `copy` allows overlap.
                unsafe { std::ptr::copy(*src as *const u8, *dst as *mut u8, *bytes) };
                Ok(())
            }
            Node::Host { func, arg } => {
                // SAFETY: `cuLaunchHostFunc`'s callback and argument.
                let f: unsafe extern "C" fn(*mut c_void) = unsafe { std::mem::transmute(*func) };
                super::IN_HOST_FUNC.with(|c| c.set(true));
                let r = catch_unwind(AssertUnwindSafe(|| unsafe { f(*arg as *mut c_void) }));
                super::IN_HOST_FUNC.with(|c| c.set(false));
                if let Err(p) = r {
                    std::panic::resume_unwind(p);
                }
                Ok(())
            }
            Node::Graph(nodes) => {
                for n in nodes.iter() {
                    self.run_node(n)?;
                }
                Ok(())
            }
        }
    }

    fn graph_nodes(&self, g: CUgraph) -> DResult<(u64, Arc<Vec<Node>>)> {
        let id = id_of(Kind::Graph, g)?;
        let graph = self.graphs.get(&id).ok_or(CuError::InvalidHandle)?;
        Ok((id, graph.nodes.clone()))
    }

    fn instantiate(&mut self, exec: *mut CUgraphExec, g: CUgraph) -> DResult<()> {
        self.ctx()?;
        if exec.is_null() {
            return err(CuError::InvalidValue);
        }
        let (_, nodes) = self.graph_nodes(g)?;
        let id = self.new_id();
        self.execs.insert(id, nodes);
        // SAFETY: checked non-null.
        unsafe { out(exec, handle(Kind::GraphExec, id)) }
    }
}

exports! {
    fn cuStreamBeginCapture_v2(stream: CUstream, mode: c_uint) {
        let mut st = state();
        st.ctx()?;
        if mode > CU_STREAM_CAPTURE_MODE_RELAXED {
            return err(CuError::InvalidValue);
        }
        let id = match st.stream_ref(stream)? {
            StreamRef::Created(id) => id,
            // The legacy stream cannot be captured; the per-thread one is not emulated.
            StreamRef::Legacy => return err(CuError::StreamCaptureUnsupported),
            StreamRef::PerThread => {
                crate::report("capturing the per-thread default stream is not emulated");
                return err(CuError::NotSupported);
            }
        };
        if st.streams[&id].capture.is_some() {
            return Err(Code(CUDA_ERROR_ILLEGAL_STATE));
        }
        let cid = st.new_id();
        let mut streams = HashMap::new();
        streams.insert(id, (0, 0));
        st.captures.insert(
            cid,
            Capture {
                origin: id,
                mode,
                thread: std::thread::current().id(),
                invalidated: false,
                nodes: Vec::new(),
                streams,
            },
        );
        st.streams.get_mut(&id).expect("stream").capture = Some(cid);
        Ok(())
    }

    fn cuStreamEndCapture(stream: CUstream, graph: *mut CUgraph) {
        let mut st = state();
        st.ctx()?;
        if graph.is_null() {
            return err(CuError::InvalidValue);
        }
        let StreamRef::Created(id) = st.stream_ref(stream)? else {
            return Err(Code(CUDA_ERROR_ILLEGAL_STATE));
        };
        let Some(cid) = st.streams[&id].capture else {
            return Err(Code(CUDA_ERROR_ILLEGAL_STATE));
        };
        let (origin, mode, thread) = {
            let c = &st.captures[&cid];
            (c.origin, c.mode, c.thread)
        };
        if origin != id {
            st.invalidate(cid);
            return err(CuError::StreamCaptureUnmatched);
        }
        if mode != CU_STREAM_CAPTURE_MODE_RELAXED && thread != std::thread::current().id() {
            return Err(Code(CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD));
        }
        let c = st.end_capture_seq(cid).expect("capture");
        graph.write(std::ptr::null_mut());
        if c.invalidated {
            return err(CuError::StreamCaptureInvalidated);
        }
        if c.streams.iter().any(|(&s, &(work, joined))| s != origin && work > joined) {
            return err(CuError::StreamCaptureUnjoined);
        }
        let gid = st.new_id();
        st.graphs.insert(gid, Graph { nodes: Arc::new(c.nodes) });
        graph.write(handle(Kind::Graph, gid));
        Ok(())
    }

    fn cuStreamIsCapturing(stream: CUstream, status: *mut c_uint) {
        let st = state();
        st.ctx()?;
        let s = st.stream_ref(stream)?;
        out(status, capture_status(&st, s))
    }

    fn cuStreamGetCaptureInfo_v2(
        stream: CUstream,
        status: *mut c_uint,
        id_out: *mut c_ulonglong,
        graph_out: *mut CUgraph,
        deps_out: *mut *const CUgraphNode,
        num_deps_out: *mut usize,
    ) {
        capture_info(stream, status, id_out, graph_out, deps_out, std::ptr::null_mut(), num_deps_out)
    }

    fn cuStreamGetCaptureInfo_v3(
        stream: CUstream,
        status: *mut c_uint,
        id_out: *mut c_ulonglong,
        graph_out: *mut CUgraph,
        deps_out: *mut *const CUgraphNode,
        edges_out: *mut *const c_void,
        num_deps_out: *mut usize,
    ) {
        capture_info(stream, status, id_out, graph_out, deps_out, edges_out, num_deps_out)
    }

    fn cuThreadExchangeStreamCaptureMode(mode: *mut c_uint) {
        if mode.is_null() || *mode > CU_STREAM_CAPTURE_MODE_RELAXED {
            return err(CuError::InvalidValue);
        }
        let old = THREAD_MODE.with(|m| m.replace(*mode));
        *mode = old;
        Ok(())
    }

    fn cuGraphInstantiateWithFlags(exec: *mut CUgraphExec, graph: CUgraph, _flags: c_ulonglong) {
        state().instantiate(exec, graph)
    }

    fn cuGraphInstantiate_v2(
        exec: *mut CUgraphExec,
        graph: CUgraph,
        error_node: *mut CUgraphNode,
        log: *mut c_char,
        log_size: usize,
    ) {
        if !error_node.is_null() {
            error_node.write(std::ptr::null_mut());
        }
        if !log.is_null() && log_size > 0 {
            *log = 0;
        }
        state().instantiate(exec, graph)
    }

    fn cuGraphLaunch(exec: CUgraphExec, stream: CUstream) {
        let mut st = state();
        st.ctx()?;
        let id = id_of(Kind::GraphExec, exec)?;
        let nodes = st.execs.get(&id).ok_or(CuError::InvalidHandle)?.clone();
        let s = st.stream_ref(stream)?;
        if st.capture_of(s)?.is_some() {
            return st.enqueue(s, Node::Graph(nodes));
        }
        if s == StreamRef::Legacy {
            st.check_implicit()?;
        }
        for n in nodes.iter() {
            st.run_node(n)?;
        }
        Ok(())
    }

    fn cuGraphUpload(exec: CUgraphExec, stream: CUstream) {
        let st = state();
        st.ctx()?;
        let id = id_of(Kind::GraphExec, exec)?;
        st.execs.get(&id).ok_or(CuError::InvalidHandle)?;
        st.stream_ref(stream)?;
        Ok(())
    }

    fn cuGraphExecDestroy(exec: CUgraphExec) {
        let mut st = state();
        st.ctx()?;
        let id = id_of(Kind::GraphExec, exec)?;
        st.execs.remove(&id).ok_or(CuError::InvalidHandle)?;
        Ok(())
    }

    fn cuGraphDestroy(graph: CUgraph) {
        let mut st = state();
        st.ctx()?;
        let (id, _) = st.graph_nodes(graph)?;
        st.graphs.remove(&id);
        Ok(())
    }

    fn cuGraphGetNodes(graph: CUgraph, nodes: *mut CUgraphNode, num_nodes: *mut usize) {
        // The count only (node handles are not emulated).
        let st = state();
        st.ctx()?;
        let (_, g) = st.graph_nodes(graph)?;
        if !nodes.is_null() {
            crate::report("cuGraphGetNodes: node handles are not emulated");
            return err(CuError::NotSupported);
        }
        out(num_nodes, g.len())
    }
}

fn capture_status(st: &State, s: StreamRef) -> c_uint {
    match s {
        StreamRef::Created(id) => match st.streams[&id].capture {
            Some(c) if st.captures[&c].invalidated => CU_STREAM_CAPTURE_STATUS_INVALIDATED,
            Some(_) => CU_STREAM_CAPTURE_STATUS_ACTIVE,
            None => CU_STREAM_CAPTURE_STATUS_NONE,
        },
        _ => CU_STREAM_CAPTURE_STATUS_NONE,
    }
}

unsafe fn capture_info(
    stream: CUstream,
    status: *mut c_uint,
    id_out: *mut c_ulonglong,
    graph_out: *mut CUgraph,
    deps_out: *mut *const CUgraphNode,
    edges_out: *mut *const c_void,
    num_deps_out: *mut usize,
) -> DResult<()> {
    let st = state();
    st.ctx()?;
    let s = st.stream_ref(stream)?;
    out(status, capture_status(&st, s))?;
    let cap = match s {
        StreamRef::Created(id) => st.streams[&id].capture,
        _ => None,
    };
    if !id_out.is_null() {
        id_out.write(cap.unwrap_or(0));
    }
    if !graph_out.is_null() {
        // The graph under construction has no handle here.
        graph_out.write(std::ptr::null_mut());
    }
    if !deps_out.is_null() {
        deps_out.write(std::ptr::null());
    }
    if !edges_out.is_null() {
        edges_out.write(std::ptr::null());
    }
    if !num_deps_out.is_null() {
        num_deps_out.write(0);
    }
    Ok(())
}
