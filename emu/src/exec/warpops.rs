//! Block barriers (`bar.sync`, `bar.red`, `bar.arrive`) and warp collectives (`shfl.sync`,
//! `vote.sync`, `bar.warp.sync`, `mma.sync`, `ldmatrix`): a collective runs once every live lane
//! of its member mask waits at it; a barrier is released once every live thread of the block
//! (or its thread count) arrived.

use super::{for_lanes, Exec, Flow, Lane, Stop, Warp};
use crate::error::CuError;
use crate::ir::{Op, Operand, Space, Sub, Ty};

/// Arrivals of one of the 16 named barriers that do not wait (`bar.arrive`), and its count.
#[derive(Clone, Copy, Default)]
pub(crate) struct Bar {
    pub arrivals: u32,
    pub expected: Option<u32>,
}

impl<'a> Exec<'a> {
    pub(crate) fn bar_arrive(&mut self, w: &mut Warp, pc: u32, mask: u32) -> Flow<()> {
        let ins = &self.kernel.code[pc as usize];
        // bar.sync a{, b}; bar.arrive a, b; bar.red.op d, a{, b}, {!}c
        let (id_op, count_op, pred_op) = match ins.op {
            Op::BarRed => {
                let n = ins.args.len();
                (
                    &ins.args[1],
                    if n == 4 { Some(&ins.args[2]) } else { None },
                    Some(&ins.args[n - 1]),
                )
            }
            _ => (&ins.args[0], ins.args.get(1), None),
        };
        let first = mask.trailing_zeros() as usize;
        let id = self.get(w, first, id_op) as u32;
        if id > 15 {
            self.finding(
                "synccheck",
                ins.line,
                w,
                first as u32,
                None,
                format!("barrier id {id} (0..15)"),
            );
            return Err(Stop::Fault(CuError::LaunchFailed));
        }
        let count = count_op.map(|o| self.get(w, first, o) as u32);
        if let Some(c) = count {
            if c % 32 != 0 || c == 0 {
                self.finding(
                    "synccheck",
                    ins.line,
                    w,
                    first as u32,
                    None,
                    format!("barrier thread count {c} is not a positive multiple of 32"),
                );
                return Err(Stop::Fault(CuError::LaunchFailed));
            }
            self.bars[id as usize].expected = Some(c);
        }
        if ins.op == Op::BarArrive {
            self.bars[id as usize].arrivals += mask.count_ones();
            for_lanes(mask, |l| w.pc[l] = pc + 1);
            return Ok(());
        }
        for_lanes(mask, |l| {
            w.set_lane(l, Lane::Barrier(id));
            if let Some(p) = pred_op {
                w.red_value[l] = (self.get(w, l, p) & 1) as u32;
            }
        });
        Ok(())
    }

    /// Releases every barrier whose participants all arrived. Returns whether any was.
    pub(crate) fn release_barriers(&mut self, warps: &mut [Warp]) -> Flow<bool> {
        let live: u32 = warps.iter().map(|w| w.live()).sum();
        let mut any = false;
        for id in 0..16u32 {
            let waiting: u32 = warps
                .iter()
                .map(|w| w.lane.iter().filter(|s| **s == Lane::Barrier(id)).count() as u32)
                .sum();
            if waiting == 0 {
                continue;
            }
            let bar = self.bars[id as usize];
            let arrived = waiting + bar.arrivals;
            let expected = bar.expected.unwrap_or(live);
            if arrived < expected && waiting < live {
                continue;
            }
            self.release(warps, id)?;
            self.bars[id as usize] = Bar::default();
            any = true;
        }
        Ok(any)
    }

    fn release(&mut self, warps: &mut [Warp], id: u32) -> Flow<()> {
        let mut popc = 0u32;
        let mut all = true;
        let mut anyv = false;
        for w in warps.iter() {
            for l in 0..32 {
                if w.lane[l] == Lane::Barrier(id) {
                    let v = w.red_value[l];
                    popc += v;
                    all &= v != 0;
                    anyv |= v != 0;
                }
            }
        }
        let nthreads = self.block[0] * self.block[1] * self.block[2];
        for w in warps.iter_mut() {
            let mut waiting = 0u32;
            let mut aligned_line = None;
            for l in 0..32 {
                if w.lane[l] == Lane::Barrier(id) {
                    waiting |= 1 << l;
                    let ins = &self.kernel.code[w.pc[l] as usize];
                    if ins.mods.aligned {
                        aligned_line = Some((ins.line, l));
                    }
                }
            }
            let existing = if w.index * 32 + 32 <= nthreads {
                u32::MAX
            } else {
                (1u32 << (nthreads - w.index * 32)) - 1
            };
            if let (true, Some((line, l))) = (self.checks, aligned_line) {
                if waiting != 0 && existing & !waiting != 0 {
                    self.finding(
                        "synccheck",
                        line,
                        w,
                        l as u32,
                        None,
                        format!(
                        "barrier {id} (bar.sync, which is .aligned) reached by {} lanes of warp {} \
                         while its other {} lanes exited without reaching it",
                        waiting.count_ones(), w.index, (existing & !waiting).count_ones()),
                    );
                }
            }
            let mut pc0 = None;
            for l in 0..32 {
                if w.lane[l] != Lane::Barrier(id) {
                    continue;
                }
                let pc = w.pc[l];
                if self.checks {
                    match pc0 {
                        None => pc0 = Some(pc),
                        Some(p) if p != pc => {
                            let (a, b) = (
                                self.kernel.code[p as usize].line,
                                self.kernel.code[pc as usize].line,
                            );
                            self.finding("synccheck", b, w, l as u32, None, format!(
                                "divergent threads of one warp at barrier {id}: lines {a} and {b} (bar.sync is .aligned)"));
                            pc0 = Some(pc);
                        }
                        _ => {}
                    }
                }
                let ins = &self.kernel.code[pc as usize];
                if ins.op == Op::BarRed {
                    let v = match ins.mods.sub {
                        Sub::Popc => popc as u64,
                        Sub::And => all as u64,
                        _ => anyv as u64,
                    };
                    let d = ins.args[0].clone();
                    self.set(w, l, &d, v);
                }
                w.set_lane(l, Lane::Ready);
                w.pc[l] = pc + 1;
            }
        }
        self.epoch = self.epoch.wrapping_add(1);
        Ok(())
    }

    /// Nothing can run: report where the block's threads wait.
    pub(crate) fn deadlock(&mut self, warps: &mut [Warp]) -> Flow<()> {
        let live: u32 = warps.iter().map(|w| w.live()).sum();
        let mut waits: Vec<(u32, String)> = Vec::new();
        let mut first: Option<(usize, usize)> = None;
        for (wi, w) in warps.iter().enumerate() {
            for l in 0..32 {
                let what = match w.lane[l] {
                    Lane::Barrier(id) => format!("barrier {id}"),
                    Lane::Collective => {
                        let ins = &self.kernel.code[w.pc[l] as usize];
                        format!("{:?} (warp collective)", ins.op).to_lowercase()
                    }
                    _ => continue,
                };
                let line = self.kernel.code[w.pc[l] as usize].line;
                first.get_or_insert((wi, l));
                let key = format!("{what} at line {line}");
                match waits.iter_mut().find(|(_, k)| *k == key) {
                    Some((n, _)) => *n += 1,
                    None => waits.push((1, key)),
                }
            }
        }
        let desc: Vec<String> = waits
            .iter()
            .map(|(n, k)| format!("{n} wait at {k}"))
            .collect();
        let (wi, l) = first.unwrap_or((0, 0));
        let line = self.kernel.code[warps[wi].pc[l] as usize].line;
        let w = &warps[wi];
        self.finding("synccheck", line, w, l as u32, None, format!(
            "deadlock: of {live} live threads, {}; the others exited or wait elsewhere, so these never resume",
            desc.join(", ")));
        Err(Stop::Fault(CuError::LaunchFailed))
    }

    /// A warp collective: waits for the member lanes, then runs for every lane waiting here.
    pub(crate) fn collective(&mut self, w: &mut Warp, pc: u32, mask: u32) -> Flow<()> {
        let ins = &self.kernel.code[pc as usize];
        let first = mask.trailing_zeros() as usize;
        let member = match ins.op {
            Op::Shfl => self.get(w, first, ins.args.last().unwrap()) as u32,
            Op::Vote => self.get(w, first, &ins.args[2]) as u32,
            Op::BarWarpSync => self.get(w, first, &ins.args[0]) as u32,
            _ => u32::MAX,
        };
        for_lanes(mask, |l| w.set_lane(l, Lane::Collective));
        let mut arrived = 0u32;
        let mut live = 0u32;
        for l in 0..32 {
            if w.lane[l] != Lane::Exited {
                live |= 1 << l;
            }
            if w.lane[l] == Lane::Collective && w.pc[l] == pc {
                arrived |= 1 << l;
            }
        }
        if self.checks
            && matches!(ins.op, Op::Shfl | Op::Vote | Op::BarWarpSync)
            && mask & !member != 0
        {
            let l = (mask & !member).trailing_zeros();
            self.finding(
                "synccheck",
                ins.line,
                w,
                l,
                None,
                format!(
                "{} with member mask {member:#010x}, which does not include the executing lane {l}",
                format!("{:?}", ins.op).to_lowercase()),
            );
            return Err(Stop::Fault(CuError::LaunchFailed));
        }
        if member & live & !arrived != 0 {
            return Ok(());
        }
        let part = arrived;
        match ins.op {
            Op::Shfl => self.shfl(w, pc, part),
            Op::Vote => self.vote(w, pc, part, member),
            Op::BarWarpSync => w.sync_gen = w.sync_gen.wrapping_add(1),
            Op::Mma => {
                if part != u32::MAX {
                    self.finding("synccheck", ins.line, w, first as u32, None, format!(
                        "mma.sync.aligned executed by {} lanes: all 32 must execute it together", part.count_ones()));
                    return Err(Stop::Fault(CuError::LaunchFailed));
                }
                self.mma(w, pc);
            }
            Op::Ldmatrix => self.ldmatrix(w, pc, part)?,
            _ => {}
        }
        for_lanes(part, |l| {
            w.set_lane(l, Lane::Ready);
            w.pc[l] = pc + 1;
        });
        Ok(())
    }

    fn shfl(&mut self, w: &mut Warp, pc: u32, part: u32) {
        let ins = &self.kernel.code[pc as usize];
        let (d, p) = match &ins.args[0] {
            Operand::Vec(v) => (v[0].clone(), v.get(1).cloned()),
            o => (o.clone(), None),
        };
        let mut src = [0u64; 32];
        for (l, s) in src.iter_mut().enumerate() {
            *s = self.get(w, l, &ins.args[1]);
        }
        let mut m = part;
        while m != 0 {
            let lane = m.trailing_zeros();
            m &= m - 1;
            let l = lane as usize;
            let b = self.get(w, l, &ins.args[2]) as u32;
            let c = self.get(w, l, &ins.args[3]) as u32;
            let clamp = c & 0x1f;
            let seg = (c >> 8) & 0x1f;
            let max_lane = (lane & seg) | (clamp & !seg);
            let min_lane = lane & seg;
            let (j, ok) = match ins.mods.sub {
                Sub::Up => {
                    let j = lane as i32 - b as i32;
                    (j, j >= max_lane as i32)
                }
                Sub::Down => {
                    let j = lane as i32 + b as i32;
                    (j, j <= max_lane as i32)
                }
                Sub::Bfly => {
                    let j = (lane ^ b) as i32;
                    (j, j <= max_lane as i32)
                }
                _ => {
                    let j = (min_lane | (b & !seg)) as i32;
                    (j, j <= max_lane as i32)
                }
            };
            let j = if ok && (0..32).contains(&j) {
                j as usize
            } else {
                l
            };
            self.set(w, l, &d, src[j]);
            if let Some(p) = &p {
                self.set(w, l, p, ok as u64);
            }
        }
    }

    fn vote(&mut self, w: &mut Warp, pc: u32, part: u32, member: u32) {
        let ins = &self.kernel.code[pc as usize];
        let mut ballot = 0u32;
        for_lanes(part, |l| {
            if self.get(w, l, &ins.args[1]) & 1 != 0 {
                ballot |= 1 << l;
            }
        });
        let set = part & member;
        let v = match ins.mods.sub {
            Sub::Ballot => ballot as u64,
            Sub::All => (ballot & set == set) as u64,
            Sub::Any => (ballot & set != 0) as u64,
            _ => (ballot & set == set || ballot & set == 0) as u64,
        };
        let d = ins.args[0].clone();
        for_lanes(part, |l| self.set(w, l, &d, v));
    }

    fn mma(&mut self, w: &mut Warp, pc: u32) {
        let ins = &self.kernel.code[pc as usize];
        self.profile.mma += 1;
        let (mm, nn, kk) = ins.mods.shape;
        let (mm, nn, kk) = (mm as usize, nn as usize, kk as usize);
        let (dr, ar, br, cr) = (
            parts(&ins.args[0]),
            parts(&ins.args[1]),
            parts(&ins.args[2]),
            parts(&ins.args[3]),
        );
        let elem = |bits: u16| -> f64 {
            match ins.ty2 {
                Ty::Bf16 => crate::float::bf16_to_f32(bits) as f64,
                _ => crate::float::f16_to_f32(bits) as f64,
            }
        };
        let mut a = [0f64; 16 * 16];
        let mut b = [0f64; 16 * 8];
        let mut c = [0f64; 16 * 8];
        let f32_acc = ins.ty3 == Ty::F32;
        for l in 0..32usize {
            let (g, t) = (l / 4, l % 4);
            for (r, o) in ar.iter().enumerate() {
                let v = self.get(w, l, o) as u32;
                for h in 0..2 {
                    let row = g + 8 * (r & 1);
                    let col = 2 * t + h + 8 * (r >> 1);
                    a[row * kk + col] = elem((v >> (16 * h)) as u16);
                }
            }
            for (r, o) in br.iter().enumerate() {
                let v = self.get(w, l, o) as u32;
                for h in 0..2 {
                    let k = 2 * t + h + 8 * r;
                    b[k * nn + g] = elem((v >> (16 * h)) as u16);
                }
            }
            for (r, o) in cr.iter().enumerate() {
                let v = self.get(w, l, o);
                if f32_acc {
                    c[(g + 8 * (r >> 1)) * nn + 2 * t + (r & 1)] = f32::from_bits(v as u32) as f64;
                } else {
                    for h in 0..2 {
                        c[(g + 8 * r) * nn + 2 * t + h] =
                            crate::float::f16_to_f32((v >> (16 * h)) as u16) as f64;
                    }
                }
            }
        }
        // Products of f16 values are exact in f64 and the sums of one tile stay far inside its
        // precision, so D is the exact result rounded once.
        let mut d = c;
        for i in 0..mm {
            for k in 0..kk {
                let aik = a[i * kk + k];
                for j in 0..nn {
                    d[i * nn + j] += aik * b[k * nn + j];
                }
            }
        }
        let d_f32 = ins.ty == Ty::F32;
        for l in 0..32usize {
            let (g, t) = (l / 4, l % 4);
            for (r, o) in dr.iter().enumerate() {
                let v = if d_f32 {
                    (d[(g + 8 * (r >> 1)) * nn + 2 * t + (r & 1)] as f32).to_bits() as u64
                } else {
                    let lo = crate::float::f32_to_f16_rn(d[(g + 8 * r) * nn + 2 * t] as f32) as u64;
                    let hi =
                        crate::float::f32_to_f16_rn(d[(g + 8 * r) * nn + 2 * t + 1] as f32) as u64;
                    lo | (hi << 16)
                };
                self.set(w, l, o, v);
            }
        }
    }

    fn ldmatrix(&mut self, w: &mut Warp, pc: u32, part: u32) -> Flow<()> {
        let ins = &self.kernel.code[pc as usize];
        let num = ins.mods.num.max(1) as usize;
        let mut rows = [[0u8; 16]; 32];
        let mut acc = [(0u64, 0u32); 32];
        for (r, row) in rows.iter_mut().enumerate().take(8 * num) {
            if part & (1 << r) == 0 {
                self.finding(
                    "synccheck",
                    ins.line,
                    w,
                    r as u32,
                    None,
                    format!(
                    "ldmatrix.x{num}: lane {r}, which supplies a row address, did not execute it"),
                );
                return Err(Stop::Fault(CuError::LaunchFailed));
            }
            let (sp, addr) = self.address(w, r, Space::Shared, &ins.args[1]);
            if sp != Space::Shared {
                self.finding(
                    "memcheck",
                    ins.line,
                    w,
                    r as u32,
                    Some(addr),
                    "ldmatrix row address is not in shared memory".into(),
                );
                return Err(Stop::Fault(CuError::IllegalAddress));
            }
            self.read(ins, w, r, Space::Shared, addr, row)?;
            acc[r] = (addr, 16u32);
        }
        self.profile.shared(&acc[..8 * num]);
        let dst = parts(&ins.args[0]);
        let el = |row: &[u8; 16], col: usize| -> u64 {
            u16::from_le_bytes([row[2 * col], row[2 * col + 1]]) as u64
        };
        for_lanes(part, |l| {
            for (i, d) in dst.iter().enumerate().take(num) {
                let m = &rows[8 * i..8 * i + 8];
                let (lo, hi) = if ins.mods.trans {
                    (el(&m[2 * (l % 4)], l / 4), el(&m[2 * (l % 4) + 1], l / 4))
                } else {
                    (el(&m[l / 4], 2 * (l % 4)), el(&m[l / 4], 2 * (l % 4) + 1))
                };
                self.set(w, l, d, lo | (hi << 16));
            }
        });
        Ok(())
    }
}

/// The registers of a vector operand (`{a, b, c, d}`), or the one register.
fn parts(o: &Operand) -> &[Operand] {
    match o {
        Operand::Vec(v) => v,
        o => std::slice::from_ref(o),
    }
}
