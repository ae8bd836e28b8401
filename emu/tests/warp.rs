// Lane-by-lane comparisons read clearest as index loops.
#![allow(clippy::needless_range_loop)]
//! Warp-level behaviour (tests/kernels/warp.cu): shfl idx/up/down/bfly with widths and partial
//! masks, votes, divergence and reconvergence, independent thread scheduling, special registers
//! with a 3-D grid and block.

mod common;
use common::*;

macro_rules! emu {
    () => {
        match Emu::new("warp") {
            Some(e) => e,
            None => return,
        }
    };
}

/// `shfl.sync` per the PTX ISA pseudo-code: c = ((32 - width) << 8) | cval, where cval is 31 for
/// idx/down/bfly and 0 for up (as CUDA's __shfl_*_sync build it). Returns the source lane.
fn shfl_src(mode: &str, lane: i32, b: i32, width: i32) -> i32 {
    let segmask = (32 - width) & 31;
    let cval = if mode == "up" { 0 } else { 31 };
    let max_lane = (lane & segmask) | (cval & !segmask);
    let min_lane = lane & segmask;
    let (j, ok) = match mode {
        "up" => (lane - b, lane - b >= max_lane),
        "down" => (lane + b, lane + b <= max_lane),
        "bfly" => (lane ^ b, (lane ^ b) <= max_lane),
        "idx" => {
            let j = min_lane | (b & 31 & !segmask);
            (j, j <= max_lane)
        }
        _ => unreachable!(),
    };
    if ok {
        j
    } else {
        lane
    }
}

#[test]
fn shuffles() {
    let mut e = emu!();
    let mut rng = rng("shuffles");
    let n = 128; // 2 blocks of 64: 4 warps
    let v: Vec<i32> = (0..n).map(|_| rng.next_u32() as i32).collect();
    let mut par: Vec<i32> = (0..32).map(|_| rng.below(32) as i32).collect();
    let d = rng.range_i64(1, 9) as i32;
    let m = rng.range_i64(1, 31) as i32;
    let w = rng.below(32) as i32;
    par.extend([d, m, w]);
    println!("delta {d}, xor mask {m}, idx source {w}");
    let (pv, pp) = (e.upload(&v), e.upload(&par));
    let out = e.alloc::<i32>(12 * n);
    e.run(
        "shfl_ops",
        &Launch::new(2, 64),
        &[Arg::P(pv), Arg::P(pp), Arg::P(out), Arg::I32(n as i32)],
    );
    let got = e.read::<i32>(out, 12 * n);
    for i in 0..n {
        let lane = (i % 32) as i32;
        let base = i - i % 32;
        let at = |l: i32| v[base + l as usize];
        let want = [
            at(shfl_src("idx", lane, par[lane as usize], 32)),
            at(shfl_src("up", lane, d, 32)),
            at(shfl_src("down", lane, d, 32)),
            at(shfl_src("bfly", lane, m, 32)),
            at(shfl_src("idx", lane, w, 8)),
            at(shfl_src("up", lane, d, 16)),
            at(shfl_src("down", lane, d, 8)),
            at(shfl_src("bfly", lane, m, 16)),
            if lane & 1 == 1 {
                at((par[lane as usize] | 1) & 31)
            } else {
                -1
            },
            if lane & 1 == 0 { at(lane ^ 2) } else { -1 },
            if lane < 20 {
                at(shfl_src("down", lane, 1, 4))
            } else {
                -1
            },
            {
                let s = at(31 - lane);
                s ^ s.wrapping_mul(7)
            },
        ];
        let names = [
            "idx",
            "up",
            "down",
            "bfly",
            "idx w8",
            "up w16",
            "down w8",
            "bfly w16",
            "idx odd lanes",
            "bfly even lanes",
            "down low 20 lanes w4",
            "idx 64-bit",
        ];
        for k in 0..12 {
            assert_eq!(
                got[k * n + i],
                want[k],
                "{} thread {i} (lane {lane})",
                names[k]
            );
        }
    }
}

#[test]
fn votes() {
    let mut e = emu!();
    let mut rng = rng("votes");
    let n = 256;
    let mut p: Vec<i32> = Vec::new();
    for warp in 0..n / 32 {
        // Per warp: bit 1 set everywhere or not, bit 2 clear everywhere or not, bit 3 everywhere on odd lanes or not.
        let all2 = warp % 2 == 0 || rng.bool();
        let none4 = warp % 4 == 1;
        let odd8 = warp % 3 == 0;
        for lane in 0..32 {
            let mut x = (rng.next_u32() & 0x7fff_fff0) as i32 | (rng.next_u32() & 0xf) as i32;
            if all2 {
                x |= 2
            }
            if none4 {
                x &= !4
            }
            if odd8 && lane & 1 == 1 {
                x |= 8
            }
            p.push(x);
        }
    }
    let pp = e.upload(&p);
    let out = e.alloc::<u32>(6 * n);
    e.run(
        "vote_ops",
        &Launch::new(2, 128),
        &[Arg::P(pp), Arg::P(out), Arg::I32(n as i32)],
    );
    let got = e.read::<u32>(out, 6 * n);
    for w in 0..n / 32 {
        let lanes = &p[w * 32..w * 32 + 32];
        let ballot = lanes
            .iter()
            .enumerate()
            .fold(0u32, |b, (l, x)| b | ((x & 1) as u32) << l);
        let all = lanes.iter().all(|x| x & 2 != 0) as u32;
        let any = lanes.iter().any(|x| x & 4 != 0) as u32;
        let all_odd = lanes.iter().skip(1).step_by(2).all(|x| x & 8 != 0) as u32;
        for lane in 0..32 {
            let i = w * 32 + lane;
            assert_eq!(got[i], ballot, "ballot warp {w} lane {lane}");
            assert_eq!(got[n + i], all, "all warp {w} lane {lane}");
            assert_eq!(got[2 * n + i], any, "any warp {w} lane {lane}");
            let want = if lane < 20 {
                ballot & 0xfffff
            } else {
                u32::MAX
            };
            assert_eq!(
                got[3 * n + i],
                want,
                "ballot over lanes 0..19, warp {w} lane {lane}"
            );
            let want = if lane & 1 == 1 { all_odd } else { u32::MAX };
            assert_eq!(
                got[4 * n + i],
                want,
                "all over odd lanes, warp {w} lane {lane}"
            );
            assert_eq!(
                got[5 * n + i],
                u32::MAX,
                "activemask of a converged warp, warp {w} lane {lane}"
            );
        }
    }
}

#[test]
fn divergence_and_reconvergence() {
    let mut e = emu!();
    e.assert_ptx_has("bar.warp.sync");
    let mut rng = rng("divergence_and_reconvergence");
    let v: Vec<i32> = (0..32).map(|_| rng.next_u32() as i32).collect();
    let pv = e.upload(&v);
    let out = e.alloc::<i32>(32);
    e.run("diverge", &Launch::new(1, 32), &[Arg::P(pv), Arg::P(out)]);
    let got = e.read::<i32>(out, 32);
    let x1: Vec<i32> = (0..32)
        .map(|l| {
            if l & 1 == 1 {
                v[l].wrapping_mul(3).wrapping_add(1)
            } else {
                v[l] ^ 0x55
            }
        })
        .collect();
    let x2: Vec<i32> = (0..32)
        .map(|l| {
            if l & 1 == 1 {
                x1[l].wrapping_add(x1[(l + 2) & 31])
            } else {
                x1[l].wrapping_add(x1[l ^ 2])
            }
        })
        .collect();
    let x3: Vec<i32> = (0..32).map(|l| x2[l].wrapping_add(x2[31 - l])).collect();
    for l in 0..32 {
        let x4 = if l >= 16 {
            x3[l].wrapping_add(x3[l - 16].wrapping_mul(2))
        } else {
            x3[l]
        };
        let k = v[l] & 7;
        let want = x4.wrapping_add(k * (k + 1));
        assert_eq!(got[l], want, "lane {l}");
    }
}

#[test]
fn independent_thread_scheduling() {
    let mut e = emu!();
    // Checks off first: this is about scheduling (the spin must not starve the setter); then on:
    // only atomics touch the flag after the __syncwarp, so there is nothing to report.
    for checks in [false, true] {
        for (waiter, setter) in [(5, 20), (20, 5), (0, 31), (31, 0)] {
            let out = e.alloc::<i32>(2);
            let l = Launch::new(1, 32).checks(checks);
            let args = [Arg::P(out), Arg::I32(waiter), Arg::I32(setter)];
            if checks {
                e.run("its_flag", &l, &args);
            } else {
                let r = e.launch("its_flag", &l, &args);
                assert_eq!(r, Ok(()), "checks off: {}", fmt_findings(&findings()));
            }
            let got = e.read::<i32>(out, 2);
            assert_eq!(
                got[0], 1,
                "waiter lane {waiter} never saw lane {setter}'s flag ({} spins)",
                got[1]
            );
            assert!(got[1] < 1_000_000, "spun to the bound");
        }
    }
}

#[test]
fn special_registers_3d() {
    special_registers([3, 2, 2], [8, 4, 3]);
}

#[test]
fn special_registers_3d_partial_warps() {
    // 45 threads: the second warp has 13 lanes.
    special_registers([2, 3, 2], [5, 3, 3]);
}

fn special_registers(grid: [u32; 3], block: [u32; 3]) {
    let mut e = emu!();
    let nthr = (block[0] * block[1] * block[2]) as usize;
    let nblk = (grid[0] * grid[1] * grid[2]) as usize;
    let out = e.alloc::<u32>(nthr * nblk * 14);
    e.run("special_regs", &Launch::dims(grid, block), &[Arg::P(out)]);
    let got = e.read::<u32>(out, nthr * nblk * 14);
    for bz in 0..grid[2] {
        for by in 0..grid[1] {
            for bx in 0..grid[0] {
                let blk = (bx + by * grid[0] + bz * grid[0] * grid[1]) as usize;
                let mut warpids = vec![None; nthr.div_ceil(32)];
                for tz in 0..block[2] {
                    for ty in 0..block[1] {
                        for tx in 0..block[0] {
                            let lin = (tx + ty * block[0] + tz * block[0] * block[1]) as usize;
                            let o = &got[(blk * nthr + lin) * 14..][..14];
                            let want = [
                                tx,
                                ty,
                                tz,
                                block[0],
                                block[1],
                                block[2],
                                bx,
                                by,
                                bz,
                                grid[0],
                                grid[1],
                                grid[2],
                                (lin % 32) as u32,
                            ];
                            assert_eq!(&o[..13], &want, "block ({bx},{by},{bz}) thread ({tx},{ty},{tz}): tid ntid ctaid nctaid laneid");
                            // %warpid is the hardware warp slot: the same for a whole warp.
                            let w = &mut warpids[lin / 32];
                            match *w {
                                None => *w = Some(o[13]),
                                Some(x) => assert_eq!(
                                    o[13],
                                    x,
                                    "%warpid differs within warp {} of block {blk}",
                                    lin / 32
                                ),
                            }
                        }
                    }
                }
                let mut ws: Vec<u32> = warpids.iter().map(|w| w.unwrap()).collect();
                ws.sort();
                ws.dedup();
                assert_eq!(
                    ws.len(),
                    warpids.len(),
                    "warps of one block share a %warpid: {warpids:?}"
                );
            }
        }
    }
}
