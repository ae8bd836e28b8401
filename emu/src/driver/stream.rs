//! Streams, events, synchronisation, host functions.

use std::ffi::{c_float, c_int, c_uint, c_ulonglong, c_void};
use std::time::Instant;

use super::graph::Node;
use super::{
    err, handle, id_of, out, state, CUcontext, CUevent, CUstream, Code, DResult, EventEntry, Kind,
    StreamEntry, StreamRef, CUDA_ERROR_CAPTURED_EVENT, CUDA_ERROR_STREAM_CAPTURE_MERGE, CURRENT,
};
use crate::error::CuError;

pub const CU_STREAM_NON_BLOCKING: c_uint = 1;
pub const CU_EVENT_BLOCKING_SYNC: c_uint = 1;
pub const CU_EVENT_DISABLE_TIMING: c_uint = 2;
pub const CU_EVENT_INTERPROCESS: c_uint = 4;

unsafe fn create_stream(ph: *mut CUstream, flags: c_uint, priority: c_int) -> DResult<()> {
    let mut st = state();
    st.ctx()?;
    if ph.is_null() || flags & !CU_STREAM_NON_BLOCKING != 0 {
        return err(CuError::InvalidValue);
    }
    let id = st.new_id();
    st.streams.insert(
        id,
        StreamEntry {
            flags,
            priority: priority.clamp(-5, 0),
            capture: None,
        },
    );
    out(ph, handle(Kind::Stream, id))
}

unsafe fn event_elapsed(ms: *mut c_float, start: CUevent, end: CUevent) -> DResult<()> {
    let st = state();
    st.ctx()?;
    if ms.is_null() {
        return err(CuError::InvalidValue);
    }
    let a = st
        .events
        .get(&id_of(Kind::Event, start)?)
        .ok_or(CuError::InvalidHandle)?;
    let b = st
        .events
        .get(&id_of(Kind::Event, end)?)
        .ok_or(CuError::InvalidHandle)?;
    if a.captured.is_some() || b.captured.is_some() {
        return Err(Code(CUDA_ERROR_CAPTURED_EVENT));
    }
    if (a.flags | b.flags) & CU_EVENT_DISABLE_TIMING != 0 {
        return err(CuError::InvalidHandle);
    }
    let (Some(t0), Some(t1)) = (a.recorded, b.recorded) else {
        return err(CuError::InvalidHandle);
    };
    // Host time between the two records (work runs when enqueued): not a GPU timing.
    let v = if t1 >= t0 {
        t1.duration_since(t0).as_secs_f64() * 1e3
    } else {
        -(t0.duration_since(t1).as_secs_f64() * 1e3)
    };
    out(ms, v as c_float)
}

unsafe fn event_ready(event: CUevent) -> DResult<()> {
    let st = state();
    st.ctx()?;
    let e = st
        .events
        .get(&id_of(Kind::Event, event)?)
        .ok_or(CuError::InvalidHandle)?;
    if e.captured.is_some() {
        return Err(Code(CUDA_ERROR_CAPTURED_EVENT));
    }
    // Work runs when enqueued: everything recorded has completed.
    Ok(())
}

unsafe fn destroy_stream(stream: CUstream) -> DResult<()> {
    let mut st = state();
    st.ctx()?;
    let StreamRef::Created(id) = st.stream_ref(stream)? else {
        return err(CuError::InvalidHandle);
    };
    if let Some(c) = st.streams[&id].capture {
        st.invalidate(c);
        if st.captures[&c].origin == id {
            st.end_capture_seq(c);
        } else if let Some(cap) = st.captures.get_mut(&c) {
            cap.streams.remove(&id);
        }
    }
    st.streams.remove(&id);
    Ok(())
}

unsafe fn record_event(event: CUevent, stream: CUstream) -> DResult<()> {
    let mut st = state();
    st.ctx()?;
    let eid = id_of(Kind::Event, event)?;
    if !st.events.contains_key(&eid) {
        return err(CuError::InvalidHandle);
    }
    let s = st.stream_ref(stream)?;
    if let Some(c) = st.capture_of(s)? {
        let StreamRef::Created(sid) = s else {
            unreachable!()
        };
        let work = st.captures[&c].streams.get(&sid).map_or(0, |w| w.0);
        st.events.get_mut(&eid).expect("event").captured = Some((c, sid, work));
        return Ok(());
    }
    if s == StreamRef::Legacy {
        st.check_implicit()?;
    }
    let e = st.events.get_mut(&eid).expect("event");
    e.recorded = Some(Instant::now());
    e.captured = None;
    Ok(())
}

exports! {
    fn cuStreamCreate(ph: *mut CUstream, flags: c_uint) {
        create_stream(ph, flags, 0)
    }

    fn cuStreamCreateWithPriority(ph: *mut CUstream, flags: c_uint, priority: c_int) {
        create_stream(ph, flags, priority)
    }

    fn cuStreamDestroy_v2(stream: CUstream) {
        destroy_stream(stream)
    }

    fn cuStreamDestroy(stream: CUstream) {
        destroy_stream(stream)
    }

    fn cuStreamGetFlags(stream: CUstream, flags: *mut c_uint) {
        let st = state();
        st.ctx()?;
        let f = match st.stream_ref(stream)? {
            StreamRef::Created(id) => st.streams[&id].flags,
            _ => 0,
        };
        out(flags, f)
    }

    fn cuStreamGetPriority(stream: CUstream, priority: *mut c_int) {
        let st = state();
        st.ctx()?;
        let p = match st.stream_ref(stream)? {
            StreamRef::Created(id) => st.streams[&id].priority,
            _ => 0,
        };
        out(priority, p)
    }

    fn cuStreamGetId(stream: CUstream, id_out: *mut c_ulonglong) {
        let st = state();
        st.ctx()?;
        let id = match st.stream_ref(stream)? {
            StreamRef::Created(id) => id,
            StreamRef::Legacy => 1,
            StreamRef::PerThread => 2,
        };
        out(id_out, id)
    }

    fn cuStreamGetCtx(stream: CUstream, pctx: *mut CUcontext) {
        let st = state();
        st.ctx()?;
        st.stream_ref(stream)?;
        out(pctx, handle(Kind::Ctx, CURRENT.with(|c| c.get())))
    }

    fn cuStreamSynchronize(stream: CUstream) {
        let mut st = state();
        st.ctx()?;
        let s = st.stream_ref(stream)?;
        match s {
            StreamRef::Created(id) => {
                if let Some(c) = st.streams[&id].capture {
                    st.invalidate(c);
                    return err(CuError::StreamCaptureUnsupported);
                }
            }
            StreamRef::Legacy => {
                st.check_unsafe_call()?;
                st.check_implicit()?;
            }
            StreamRef::PerThread => {}
        }
        Ok(())
    }

    fn cuStreamQuery(stream: CUstream) {
        let mut st = state();
        st.ctx()?;
        if let StreamRef::Created(id) = st.stream_ref(stream)? {
            if let Some(c) = st.streams[&id].capture {
                st.invalidate(c);
                return err(CuError::StreamCaptureUnsupported);
            }
        }
        Ok(())
    }

    fn cuStreamWaitEvent(stream: CUstream, event: CUevent, _flags: c_uint) {
        let mut st = state();
        st.ctx()?;
        let s = st.stream_ref(stream)?;
        let eid = id_of(Kind::Event, event)?;
        let ev = st.events.get(&eid).ok_or(CuError::InvalidHandle)?;
        let (recorded, captured) = (ev.recorded.is_some(), ev.captured);
        let scap = st.capture_of(s)?;
        match captured.filter(|(c, _, _)| st.captures.contains_key(c)) {
            Some((c, from, work)) => match s {
                StreamRef::Created(id) => match scap {
                    Some(sc) if sc == c => {
                        let cap = st.captures.get_mut(&c).expect("capture");
                        if id == cap.origin {
                            let e = cap.streams.entry(from).or_insert((0, 0));
                            e.1 = e.1.max(work);
                        }
                        Ok(())
                    }
                    Some(sc) => {
                        st.invalidate(sc);
                        st.invalidate(c);
                        Err(Code(CUDA_ERROR_STREAM_CAPTURE_MERGE))
                    }
                    None => {
                        // The waiting stream joins the capture (a fork).
                        st.captures.get_mut(&c).expect("capture").streams.insert(id, (0, 0));
                        st.streams.get_mut(&id).expect("stream").capture = Some(c);
                        Ok(())
                    }
                },
                _ => {
                    st.invalidate(c);
                    err(CuError::StreamCaptureImplicit)
                }
            },
            None => {
                if let Some(sc) = scap {
                    if recorded {
                        // A dependency on work outside the capture.
                        st.invalidate(sc);
                        return err(CuError::StreamCaptureIsolation);
                    }
                }
                Ok(())
            }
        }
    }

    fn cuCtxSynchronize() {
        let mut st = state();
        st.ctx()?;
        if !st.captures.is_empty() {
            let ids: Vec<u64> = st.captures.keys().copied().collect();
            for c in ids {
                st.invalidate(c);
            }
            return err(CuError::StreamCaptureUnsupported);
        }
        Ok(())
    }

    fn cuEventCreate(ph: *mut CUevent, flags: c_uint) {
        let mut st = state();
        st.ctx()?;
        let known = CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS;
        if ph.is_null()
            || flags & !known != 0
            || (flags & CU_EVENT_INTERPROCESS != 0 && flags & CU_EVENT_DISABLE_TIMING == 0)
        {
            return err(CuError::InvalidValue);
        }
        let id = st.new_id();
        st.events.insert(id, EventEntry { flags, recorded: None, captured: None });
        out(ph, handle(Kind::Event, id))
    }

    fn cuEventDestroy_v2(event: CUevent) {
        let mut st = state();
        st.ctx()?;
        let id = id_of(Kind::Event, event)?;
        st.events.remove(&id).ok_or(CuError::InvalidHandle)?;
        Ok(())
    }

    fn cuEventDestroy(event: CUevent) {
        let mut st = state();
        st.ctx()?;
        let id = id_of(Kind::Event, event)?;
        st.events.remove(&id).ok_or(CuError::InvalidHandle)?;
        Ok(())
    }

    fn cuEventRecord(event: CUevent, stream: CUstream) {
        record_event(event, stream)
    }

    fn cuEventRecordWithFlags(event: CUevent, stream: CUstream, flags: c_uint) {
        if flags & !1 != 0 {
            return err(CuError::InvalidValue);
        }
        if flags != 0 {
            // CU_EVENT_RECORD_EXTERNAL (an event record node in a graph).
            crate::report("cuEventRecordWithFlags(CU_EVENT_RECORD_EXTERNAL) is not emulated");
            return err(CuError::NotSupported);
        }
        record_event(event, stream)
    }

    fn cuEventQuery(event: CUevent) {
        event_ready(event)
    }

    fn cuEventSynchronize(event: CUevent) {
        event_ready(event)
    }

    fn cuEventElapsedTime(ms: *mut c_float, start: CUevent, end: CUevent) {
        event_elapsed(ms, start, end)
    }

    fn cuEventElapsedTime_v2(ms: *mut c_float, start: CUevent, end: CUevent) {
        event_elapsed(ms, start, end)
    }

    fn cuLaunchHostFunc(stream: CUstream, func: Option<unsafe extern "C" fn(*mut c_void)>, user_data: *mut c_void) {
        let Some(f) = func else {
            return err(CuError::InvalidValue);
        };
        state().async_op(stream, Node::Host { func: f as usize, arg: user_data as usize })
    }
}
