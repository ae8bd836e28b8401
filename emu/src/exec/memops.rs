//! Loads, stores, atomics and `cp.async`, with memcheck (bounds, alignment), initcheck (bytes
//! never written) and racecheck (shared bytes touched by two threads between two barriers).

use super::checks::ordered;
use super::{for_lanes, resolve_generic, AsyncCopy, Exec, Flow, Stop, Warp};
use crate::error::CuError;
use crate::ir::{AddrBase, Instr, Op, Operand, Space, Sub, Ty};

impl<'a> Exec<'a> {
    /// The space and address of an address operand for one lane.
    pub(crate) fn address(&self, w: &Warp, l: usize, space: Space, o: &Operand) -> (Space, u64) {
        let Operand::Addr(base, off) = o else {
            return (space, 0);
        };
        let (sp, a) = match base {
            AddrBase::Reg(r) => {
                let v = w.regs[*r as usize * 32 + l];
                // A 32-bit address register (shared / local windows) wraps at 32 bits.
                let a = if self.kernel.reg_bits[*r as usize] <= 32 {
                    (v as u32).wrapping_add(*off as u32) as u64
                } else {
                    v.wrapping_add(*off as u64)
                };
                (space, a)
            }
            AddrBase::Param(p) => (Space::Param, (*p as i64 + off) as u64),
            AddrBase::Shared(s) => (Space::Shared, (*s as i64 + off) as u64),
            AddrBase::Local(s) => (Space::Local, (*s as i64 + off) as u64),
            AddrBase::Global(i) => (
                Space::Global,
                self.module.global_addrs[*i as usize].wrapping_add(*off as u64),
            ),
            AddrBase::Absolute => (space, *off as u64),
        };
        match sp {
            Space::Generic => resolve_generic(a),
            Space::Const => (Space::Global, a),
            s => (s, a),
        }
    }

    fn fault(
        &mut self,
        ins: &Instr,
        w: &Warp,
        l: usize,
        addr: u64,
        err: CuError,
        msg: String,
    ) -> Stop {
        self.finding("memcheck", ins.line, w, l as u32, Some(addr), msg);
        Stop::Fault(err)
    }

    /// The live allocation (index, offset) holding `[addr, addr + n)`, or a memcheck fault naming
    /// the access (`what`, e.g. "global read") and where the address lies.
    fn global_slot(
        &mut self,
        ins: &Instr,
        w: &Warp,
        l: usize,
        addr: u64,
        n: u64,
        what: &str,
    ) -> Flow<(usize, usize)> {
        match self.mem.slot(addr, n) {
            Some(s) => Ok(s),
            None => {
                let where_ = self.mem.describe(addr);
                Err(self.fault(
                    ins,
                    w,
                    l,
                    addr,
                    CuError::IllegalAddress,
                    format!("invalid {what} of {n} bytes ({where_})"),
                ))
            }
        }
    }

    fn check_align(
        &mut self,
        ins: &Instr,
        w: &Warp,
        l: usize,
        space: Space,
        addr: u64,
        n: u32,
    ) -> Flow<()> {
        if n > 1 && !addr.is_multiple_of(n as u64) {
            let e = self.fault(
                ins,
                w,
                l,
                addr,
                CuError::MisalignedAddress,
                format!("misaligned {n}-byte {} access", space_name(space)),
            );
            return Err(e);
        }
        Ok(())
    }

    /// Reads `out.len()` bytes for lane `l` (natural alignment of the whole access required).
    pub(crate) fn read(
        &mut self,
        ins: &Instr,
        w: &Warp,
        l: usize,
        space: Space,
        addr: u64,
        out: &mut [u8],
    ) -> Flow<()> {
        self.read_access(ins, w, l, space, addr, out, false)
    }

    /// [`Self::read`], or the read half of an atomic read-modify-write (`atomic`), which races
    /// only with plain writes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn read_access(
        &mut self,
        ins: &Instr,
        w: &Warp,
        l: usize,
        space: Space,
        addr: u64,
        out: &mut [u8],
        atomic: bool,
    ) -> Flow<()> {
        let n = out.len() as u32;
        self.check_align(ins, w, l, space, addr, n)?;
        match space {
            Space::Global | Space::Const | Space::Generic => {
                let (i, off) = self.global_slot(ins, w, l, addr, n as u64, "global read")?;
                let a = self.mem.alloc_at(i);
                out.copy_from_slice(&a.data[off..off + n as usize]);
                if self.checks && a.init[off..off + n as usize].contains(&0) {
                    let first = a.init[off..off + n as usize]
                        .iter()
                        .position(|&b| b == 0)
                        .unwrap();
                    self.finding(
                        "initcheck",
                        ins.line,
                        w,
                        l as u32,
                        Some(addr + first as u64),
                        format!(
                            "read of {n} bytes of global memory never written since allocation"
                        ),
                    );
                }
                if self.checks {
                    self.global_hazard(ins.line, w, l, i, off, n as usize, false, atomic);
                }
            }
            Space::Shared => {
                let end = addr + n as u64;
                if end > self.shared_size as u64 {
                    return Err(self.fault(
                        ins,
                        w,
                        l,
                        addr,
                        CuError::IllegalAddress,
                        format!(
                            "shared read of {n} bytes at offset {addr} beyond the block's {} bytes",
                            self.shared_size
                        ),
                    ));
                }
                let (s, e) = (addr as usize, end as usize);
                out.copy_from_slice(&self.shared[s..e]);
                if self.checks {
                    if let Some(k) = (s..e).find(|&b| self.pending[b] != 0) {
                        self.finding("cp.async", ins.line, w, l as u32, Some(k as u64), format!(
                            "read of shared memory offset {k} while a cp.async into it is in flight \
                             (no cp.async.wait_group completed it)"));
                    }
                    if let Some(k) = (s..e).find(|&b| self.shared_init[b] != self.block_serial) {
                        self.finding("initcheck", ins.line, w, l as u32, Some(k as u64),
                            format!("read of shared memory offset {k} that no thread of this block wrote"));
                    }
                    self.race_read(ins, w, l, s, e, atomic);
                }
            }
            Space::Local => {
                let size = self.kernel.local_bytes as u64;
                if addr + n as u64 > size {
                    return Err(self.fault(ins, w, l, addr, CuError::IllegalAddress, format!(
                        "local read of {n} bytes at offset {addr} beyond the thread's {size} bytes")));
                }
                let base = l * size as usize + addr as usize;
                out.copy_from_slice(&w.local[base..base + n as usize]);
                if self.checks && w.local_init[base..base + n as usize].iter().any(|b| !b) {
                    self.finding(
                        "initcheck",
                        ins.line,
                        w,
                        l as u32,
                        Some(addr),
                        "read of local memory never written by this thread".into(),
                    );
                }
            }
            Space::Param => {
                let end = addr as usize + n as usize;
                if end > self.params.len() {
                    return Err(self.fault(
                        ins,
                        w,
                        l,
                        addr,
                        CuError::IllegalAddress,
                        format!(
                            "parameter read at offset {addr} beyond the {} parameter bytes",
                            self.params.len()
                        ),
                    ));
                }
                out.copy_from_slice(&self.params[addr as usize..end]);
            }
        }
        Ok(())
    }

    /// Writes `data` for lane `l`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write(
        &mut self,
        ins: &Instr,
        w: &mut Warp,
        l: usize,
        space: Space,
        addr: u64,
        data: &[u8],
        atomic: bool,
    ) -> Flow<()> {
        let n = data.len() as u32;
        self.check_align(ins, w, l, space, addr, n)?;
        match space {
            Space::Global | Space::Const | Space::Generic => {
                let (i, off) = self.global_slot(ins, w, l, addr, n as u64, "global write")?;
                if self.checks {
                    self.global_hazard(ins.line, w, l, i, off, n as usize, true, atomic);
                }
                let a = self.mem.alloc_at_mut(i);
                a.data[off..off + n as usize].copy_from_slice(data);
                a.init[off..off + n as usize].fill(1);
            }
            Space::Shared => {
                let end = addr + n as u64;
                if end > self.shared_size as u64 {
                    return Err(self.fault(
                        ins,
                        w,
                        l,
                        addr,
                        CuError::IllegalAddress,
                        format!(
                        "shared write of {n} bytes at offset {addr} beyond the block's {} bytes",
                        self.shared_size),
                    ));
                }
                let (s, e) = (addr as usize, end as usize);
                if self.checks {
                    if let Some(k) = (s..e).find(|&b| self.pending[b] != 0) {
                        self.finding("cp.async", ins.line, w, l as u32, Some(k as u64), format!(
                            "write to shared memory offset {k} while a cp.async into it is in flight"));
                    }
                    self.race_write(ins.line, w, l, s, e, atomic);
                }
                self.shared[s..e].copy_from_slice(data);
                let serial = self.block_serial;
                self.shared_init[s..e].fill(serial);
            }
            Space::Local => {
                let size = self.kernel.local_bytes as u64;
                if addr + n as u64 > size {
                    return Err(self.fault(ins, w, l, addr, CuError::IllegalAddress, format!(
                        "local write of {n} bytes at offset {addr} beyond the thread's {size} bytes")));
                }
                let base = l * size as usize + addr as usize;
                w.local[base..base + n as usize].copy_from_slice(data);
                w.local_init[base..base + n as usize].fill(true);
            }
            Space::Param => {
                return Err(self.fault(
                    ins,
                    w,
                    l,
                    addr,
                    CuError::IllegalAddress,
                    "write to kernel parameter space".into(),
                ));
            }
        }
        Ok(())
    }

    /// Global-memory hazards inside one launch: a byte written by one thread and read or
    /// written by another with no order between them — another block of the grid (blocks have
    /// none), or the same block between the same two barriers. Atomics do not race each other.
    #[allow(clippy::too_many_arguments)]
    fn global_hazard(
        &mut self,
        line: u32,
        w: &Warp,
        l: usize,
        alloc: usize,
        off: usize,
        n: usize,
        write: bool,
        atomic: bool,
    ) {
        let tid = w.index * 32 + l as u32;
        let launch = self.launch_serial & ((1 << 21) - 1);
        let stamp =
            (launch << 43) | ((self.epoch as u64) << 11) | ((tid as u64) << 1) | atomic as u64;
        let block_start = self.block_start_epoch;
        let epoch = self.epoch;
        let a = self.mem.alloc_at_mut(alloc);
        if a.hazard.len() < a.data.len() {
            a.hazard.resize(a.data.len(), 0);
        }
        let mut conflict = None;
        for b in off..off + n {
            let s = a.hazard[b];
            if s != 0 && s >> 43 == launch {
                let s_epoch = ((s >> 11) & 0xffff_ffff) as u32;
                let s_tid = ((s >> 1) & 0x3ff) as u32;
                let s_atomic = s & 1 == 1;
                let other_block = s_epoch < block_start;
                let same_interval = s_epoch == epoch && s_tid != tid;
                if (other_block || same_interval) && !(atomic && s_atomic) {
                    conflict = Some((b, other_block, s_tid));
                    break;
                }
            }
            if write {
                a.hazard[b] = stamp;
            }
        }
        if let Some((b, other_block, s_tid)) = conflict {
            let base = a.base;
            let who = if other_block {
                "another block of this launch".to_string()
            } else {
                let o = self.thread_xyz(s_tid);
                format!(
                    "thread ({},{},{}) of this block with no barrier between",
                    o[0], o[1], o[2]
                )
            };
            let what = if write {
                "write after write"
            } else {
                "read after write"
            };
            self.finding("racecheck", line, w, l as u32, Some(base + b as u64), format!(
                "global memory {what} hazard: the byte was written by {who}; the result depends on scheduling"));
            // Report each location once.
            let a = self.mem.alloc_at_mut(alloc);
            a.hazard[b] = 0;
        }
    }

    fn race_read(&mut self, ins: &Instr, w: &Warp, l: usize, s: usize, e: usize, atomic: bool) {
        let tid = (w.index * 32 + l as u32) as u16;
        let gen = w.sync_gen as u16;
        let epoch = self.epoch;
        for b in s..e {
            let r = self.race[b];
            if r.w_epoch == epoch && !ordered(tid, gen, r.w_tid, r.w_gen) && !(atomic && r.w_atomic)
            {
                let other = r.w_tid;
                self.race_finding(ins.line, w, l, b, "read", other);
                // One finding per access is enough.
                self.race[b].w_epoch = 0;
                return;
            }
            if atomic {
                continue;
            }
            let c = &mut self.race[b];
            if c.r_epoch == epoch {
                if c.r_tid != tid {
                    c.r_many = true;
                    if c.r_tid / 32 != tid / 32 {
                        c.r_many_warps = true;
                    }
                }
                c.r_tid = tid;
                c.r_gen = gen;
            } else {
                c.r_epoch = epoch;
                c.r_tid = tid;
                c.r_gen = gen;
                c.r_many = false;
                c.r_many_warps = false;
            }
        }
    }

    pub(crate) fn race_write(
        &mut self,
        line: u32,
        w: &Warp,
        l: usize,
        s: usize,
        e: usize,
        atomic: bool,
    ) {
        let tid = (w.index * 32 + l as u32) as u16;
        let gen = w.sync_gen as u16;
        let epoch = self.epoch;
        for b in s..e {
            let r = self.race[b];
            let waw = r.w_epoch == epoch
                && !ordered(tid, gen, r.w_tid, r.w_gen)
                && !(atomic && r.w_atomic);
            let reads_ordered = if r.r_many {
                !r.r_many_warps && r.r_tid / 32 == tid / 32 && r.r_gen != gen
            } else {
                ordered(tid, gen, r.r_tid, r.r_gen)
            };
            let war = r.r_epoch == epoch && !reads_ordered;
            if waw || war {
                let other = if waw { r.w_tid } else { r.r_tid };
                self.race_finding(
                    line,
                    w,
                    l,
                    b,
                    if waw {
                        "write after write"
                    } else {
                        "write after read"
                    },
                    other,
                );
                let c = &mut self.race[b];
                c.w_epoch = 0;
                c.r_epoch = 0;
                return;
            }
            let c = &mut self.race[b];
            c.w_epoch = epoch;
            c.w_tid = tid;
            c.w_gen = gen;
            c.w_atomic = atomic;
        }
    }

    fn race_finding(&mut self, line: u32, w: &Warp, l: usize, byte: usize, what: &str, other: u16) {
        let o = self.thread_xyz(other as u32);
        self.finding(
            "racecheck",
            line,
            w,
            l as u32,
            Some(byte as u64),
            format!(
                "shared memory {what} hazard at offset {byte} with thread ({},{},{}), no barrier between them",
                o[0], o[1], o[2]
            ),
        );
    }

    /// `ld`, `st`, `atom`, `red`, `cp.async*`, `prefetch` for the lanes of `mask`.
    pub(crate) fn memop(&mut self, w: &mut Warp, ins: &Instr, mask: u32) -> Flow<()> {
        match ins.op {
            Op::Ld => self.ld(w, ins, mask),
            Op::St => self.st(w, ins, mask),
            Op::Atom | Op::Red => self.atom(w, ins, mask),
            Op::CpAsync => self.cp_async(w, ins, mask),
            Op::CpAsyncCommit => {
                for_lanes(mask, |l| {
                    let g = std::mem::take(&mut w.uncommitted[l]);
                    w.groups[l].push_back(g);
                });
                Ok(())
            }
            Op::CpAsyncWait | Op::CpAsyncWaitAll => {
                let keep = if ins.op == Op::CpAsyncWait {
                    self.get(w, 0, &ins.args[0]) as usize
                } else {
                    0
                };
                let mut err = Ok(());
                for_lanes(mask, |l| {
                    if err.is_err() {
                        return;
                    }
                    if ins.op == Op::CpAsyncWaitAll {
                        let g = std::mem::take(&mut w.uncommitted[l]);
                        w.groups[l].push_back(g);
                    }
                    while w.groups[l].len() > keep {
                        let g = w.groups[l].pop_front().unwrap();
                        for c in g {
                            if let Err(e) = self.land(w, l, c) {
                                err = Err(e);
                                return;
                            }
                        }
                    }
                });
                err
            }
            _ => Ok(()),
        }
    }

    /// A copy that will never land (its thread exited) no longer counts as in flight.
    pub(crate) fn forget_copy(&mut self, dst: usize, n: usize) {
        for p in &mut self.pending[dst..dst + n] {
            *p = p.saturating_sub(1);
        }
    }

    fn land(&mut self, w: &mut Warp, l: usize, c: AsyncCopy) -> Flow<()> {
        let (s, e) = (c.dst as usize, c.dst as usize + c.data.len());
        if e > self.shared_size {
            return Err(Stop::Fault(CuError::IllegalAddress));
        }
        self.forget_copy(s, c.data.len());
        if self.checks {
            self.race_write(c.line, w, l, s, e, false);
        }
        self.shared[s..e].copy_from_slice(&c.data);
        let serial = self.block_serial;
        for (k, init) in c.init.iter().enumerate() {
            // Bytes copied from never-written global memory stay unwritten for initcheck.
            self.shared_init[s + k] = if *init { serial } else { 0 };
        }
        Ok(())
    }

    fn ld(&mut self, w: &mut Warp, ins: &Instr, mask: u32) -> Flow<()> {
        let esz = ins.ty.bytes() as usize;
        let n = ins.mods.vec as usize;
        let total = esz * n;
        let mut buf = [0u8; 64];
        let mut accesses: [(u64, u32); 32] = [(0, 0); 32];
        let mut na = 0;
        let mut space_seen = Space::Generic;
        let mut m = mask;
        while m != 0 {
            let l = m.trailing_zeros() as usize;
            m &= m - 1;
            let (space, addr) = self.address(w, l, ins.mods.space, &ins.args[1]);
            self.read(ins, w, l, space, addr, &mut buf[..total])?;
            space_seen = space;
            accesses[na] = (addr, total as u32);
            na += 1;
            for i in 0..n {
                let mut raw = [0u8; 8];
                raw[..esz].copy_from_slice(&buf[i * esz..(i + 1) * esz]);
                let mut v = u64::from_le_bytes(raw);
                if ins.ty.is_signed() && esz < 8 {
                    let sh = 64 - 8 * esz as u32;
                    v = (((v << sh) as i64) >> sh) as u64;
                }
                let dst = match &ins.args[0] {
                    Operand::Vec(d) => &d[i],
                    d => d,
                };
                self.set(w, l, dst, v);
            }
        }
        self.profile_access(space_seen, false, &accesses[..na]);
        Ok(())
    }

    fn profile_access(&mut self, space: Space, store: bool, acc: &[(u64, u32)]) {
        match space {
            Space::Shared => self.profile.shared(acc),
            Space::Global | Space::Const | Space::Generic => self.profile.global(store, acc),
            _ => {}
        }
    }

    fn st(&mut self, w: &mut Warp, ins: &Instr, mask: u32) -> Flow<()> {
        let esz = ins.ty.bytes() as usize;
        let n = ins.mods.vec as usize;
        let total = esz * n;
        let mut buf = [0u8; 64];
        let mut accesses: [(u64, u32); 32] = [(0, 0); 32];
        let mut na = 0;
        let mut space_seen = Space::Generic;
        let mut m = mask;
        while m != 0 {
            let l = m.trailing_zeros() as usize;
            m &= m - 1;
            let (space, addr) = self.address(w, l, ins.mods.space, &ins.args[0]);
            for i in 0..n {
                let src = match &ins.args[1] {
                    Operand::Vec(d) => &d[i],
                    d => d,
                };
                let v = self.get(w, l, src);
                buf[i * esz..(i + 1) * esz].copy_from_slice(&v.to_le_bytes()[..esz]);
            }
            self.write(ins, w, l, space, addr, &buf[..total], false)?;
            space_seen = space;
            accesses[na] = (addr, total as u32);
            na += 1;
        }
        self.profile_access(space_seen, true, &accesses[..na]);
        Ok(())
    }

    fn atom(&mut self, w: &mut Warp, ins: &Instr, mask: u32) -> Flow<()> {
        let is_red = ins.op == Op::Red;
        let (dst, addr_op, b_op, c_op) = if is_red {
            (None, &ins.args[0], &ins.args[1], None)
        } else {
            (
                Some(&ins.args[0]),
                &ins.args[1],
                &ins.args[2],
                ins.args.get(3),
            )
        };
        let esz = ins.ty.bytes() as usize;
        let mut m = mask;
        while m != 0 {
            let l = m.trailing_zeros() as usize;
            m &= m - 1;
            let (space, addr) = self.address(w, l, ins.mods.space, addr_op);
            if !matches!(space, Space::Global | Space::Shared) {
                return Err(self.fault(
                    ins,
                    w,
                    l,
                    addr,
                    CuError::IllegalAddress,
                    format!("atomic on {} memory", space_name(space)),
                ));
            }
            let mut raw = [0u8; 8];
            // An exchange does not use the old value; every other atomic combines with it.
            let uses_old = ins.mods.sub != Sub::AtomExch;
            let checks = self.checks;
            self.checks = checks && uses_old;
            let r = self.read_access(ins, w, l, space, addr, &mut raw[..esz], true);
            self.checks = checks;
            r?;
            let old = u64::from_le_bytes(raw);
            let b = self.get(w, l, b_op);
            let c = c_op.map(|o| self.get(w, l, o)).unwrap_or(0);
            let new = atomic_result(ins.mods.sub, ins.ty, old, b, c);
            self.write(ins, w, l, space, addr, &new.to_le_bytes()[..esz], true)?;
            if let Some(d) = dst {
                let v = if ins.ty.is_signed() && esz < 8 {
                    ((old as i64) << (64 - 8 * esz) >> (64 - 8 * esz)) as u64
                } else {
                    old
                };
                self.set(w, l, d, v);
            }
        }
        Ok(())
    }

    fn cp_async(&mut self, w: &mut Warp, ins: &Instr, mask: u32) -> Flow<()> {
        let cp_size = self.get(w, 0, &ins.args[2]) as usize;
        if !matches!(cp_size, 4 | 8 | 16) || (ins.mods.cg && cp_size != 16) {
            self.finding(
                "memcheck",
                ins.line,
                w,
                mask.trailing_zeros(),
                None,
                format!("cp.async with copy size {cp_size} (4, 8 or 16; .cg needs 16)"),
            );
            return Err(Stop::Fault(CuError::LaunchFailed));
        }
        let mut m = mask;
        while m != 0 {
            let l = m.trailing_zeros() as usize;
            m &= m - 1;
            let (dsp, dst) = self.address(w, l, Space::Shared, &ins.args[0]);
            let (ssp, src) = self.address(w, l, Space::Global, &ins.args[1]);
            let src_size = match ins.args.get(3) {
                Some(o @ Operand::Reg(r)) if self.kernel.reg_bits[*r as usize] == 1 => {
                    // ignore-src predicate: true → nothing is read
                    if self.get(w, l, o) & 1 == 1 {
                        0
                    } else {
                        cp_size
                    }
                }
                Some(o) => self.get(w, l, o) as usize,
                None => cp_size,
            };
            if src_size > cp_size {
                self.finding(
                    "memcheck",
                    ins.line,
                    w,
                    l as u32,
                    Some(src),
                    format!("cp.async source size {src_size} larger than the copy size {cp_size}"),
                );
                return Err(Stop::Fault(CuError::LaunchFailed));
            }
            if dsp != Space::Shared || !matches!(ssp, Space::Global) {
                return Err(self.fault(
                    ins,
                    w,
                    l,
                    src,
                    CuError::IllegalAddress,
                    "cp.async needs a shared destination and a global source".into(),
                ));
            }
            self.check_align(ins, w, l, Space::Shared, dst, cp_size as u32)?;
            self.check_align(ins, w, l, Space::Global, src, cp_size as u32)?;
            if dst as usize + cp_size > self.shared_size {
                return Err(self.fault(ins, w, l, dst, CuError::IllegalAddress, format!(
                    "cp.async destination offset {dst} + {cp_size} beyond the block's {} shared bytes",
                    self.shared_size)));
            }
            let mut data = vec![0u8; cp_size];
            let mut init = vec![true; cp_size];
            if src_size > 0 {
                let (i, off) =
                    self.global_slot(ins, w, l, src, src_size as u64, "cp.async global read")?;
                if self.checks {
                    self.global_hazard(ins.line, w, l, i, off, src_size, false, false);
                }
                let a = self.mem.alloc_at(i);
                data[..src_size].copy_from_slice(&a.data[off..off + src_size]);
                for (dst, &written) in init.iter_mut().zip(&a.init[off..off + src_size]) {
                    *dst = written != 0;
                }
            }
            self.profile.global(false, &[(src, src_size as u32)]);
            for p in &mut self.pending[dst as usize..dst as usize + cp_size] {
                *p = p.saturating_add(1);
            }
            w.uncommitted[l].push(AsyncCopy {
                dst: dst as u32,
                data,
                init,
                line: ins.line,
            });
        }
        Ok(())
    }
}

fn space_name(s: Space) -> &'static str {
    match s {
        Space::Generic | Space::Global => "global",
        Space::Shared => "shared",
        Space::Local => "local",
        Space::Param => "param",
        Space::Const => "const",
    }
}

/// The value an atomic leaves in memory.
fn atomic_result(op: Sub, ty: Ty, old: u64, b: u64, c: u64) -> u64 {
    let bits = ty.bits();
    let mask = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let sx = |v: u64| -> i64 { ((v << (64 - bits)) as i64) >> (64 - bits) };
    let r = match (op, ty) {
        (Sub::AtomAdd, Ty::F32) => {
            crate::float::add_f32(old as u32, b as u32, crate::ir::Rnd::Rn, true, false) as u64
        }
        (Sub::AtomAdd, Ty::F64) => (f64::from_bits(old) + f64::from_bits(b)).to_bits(),
        (Sub::AtomAdd, Ty::F16) => {
            crate::float::add_f16(old as u16, b as u16, crate::ir::Rnd::Rn, false, false) as u64
        }
        (Sub::AtomAdd, Ty::F16x2) => crate::float::f16x2(old as u32, b as u32, |x, y| {
            crate::float::add_f16(x, y, crate::ir::Rnd::Rn, false, false)
        }) as u64,
        (Sub::AtomAdd, _) => old.wrapping_add(b),
        (Sub::AtomMin, Ty::F32) => crate::float::min_f32(old as u32, b as u32, false, false) as u64,
        (Sub::AtomMax, Ty::F32) => crate::float::max_f32(old as u32, b as u32, false, false) as u64,
        (Sub::AtomMin, t) if t.is_signed() => sx(old).min(sx(b)) as u64,
        (Sub::AtomMax, t) if t.is_signed() => sx(old).max(sx(b)) as u64,
        (Sub::AtomMin, _) => (old & mask).min(b & mask),
        (Sub::AtomMax, _) => (old & mask).max(b & mask),
        (Sub::AtomExch, _) => b,
        (Sub::AtomCas, _) => {
            if old & mask == b & mask {
                c
            } else {
                old
            }
        }
        (Sub::AtomAnd, _) => old & b,
        (Sub::AtomOr, _) => old | b,
        (Sub::AtomXor, _) => old ^ b,
        (Sub::AtomInc, _) => {
            if old & mask >= b & mask {
                0
            } else {
                old + 1
            }
        }
        (Sub::AtomDec, _) => {
            if old & mask == 0 || old & mask > b & mask {
                b
            } else {
                old - 1
            }
        }
        _ => old,
    };
    r & mask
}
