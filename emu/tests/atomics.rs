// Lane-by-lane comparisons read clearest as index loops.
#![allow(clippy::needless_range_loop)]
//! Atomics (tests/kernels/atomics.cu): atom add/min/max/and/or/xor/exch/cas on global and shared,
//! 32 and 64 bits, f32/f64 add, and red forms, against host folds. Values returned by atomics
//! (tickets, exchanged-out values) must form the permutations a serial order implies.

mod common;
use common::*;

#[test]
fn atomics_global_and_shared() {
    // Values with checks off (so a racecheck false positive cannot hide them); the same launch
    // with checks on must be clean: atomics never race (atomics_are_not_races).
    atomics_test("atomics_global_and_shared", false);
}

#[test]
fn atomics_are_not_races() {
    atomics_test("atomics_are_not_races", true);
}

fn atomics_test(name: &str, checks: bool) {
    let Some(mut e) = Emu::new("atomics") else {
        return;
    };
    e.assert_ptx_has("red.global.add.u32");
    e.assert_ptx_has("red.shared.add.u32");
    e.assert_ptx_has("atom.global.cas.b64");
    e.assert_ptx_has("atom.shared.add.f32");
    let mut rng = rng(name);
    let (blocks, bs) = (4usize, 128usize);
    let n = blocks * bs;
    let v32: Vec<u32> = (0..n).map(|_| rng.int_u32()).collect();
    let v64: Vec<u64> = (0..n).map(|_| rng.int_u64()).collect();
    // Multiples of 1/8 with small numerators: every partial sum is exact, in any order.
    let vf: Vec<f32> = (0..n)
        .map(|_| rng.range_i64(-64, 64) as f32 / 8.0)
        .collect();
    let vd: Vec<f64> = (0..n)
        .map(|_| rng.range_i64(-1 << 20, 1 << 20) as f64 / 1024.0)
        .collect();
    let g0: Vec<u32> = vec![
        0,
        0,
        i32::MAX as u32,
        i32::MIN as u32,
        u32::MAX,
        0,
        u32::MAX,
        0,
        0,
        0,
        0xdead_beef,
        0,
        0,
    ];
    let g640: Vec<u64> = vec![0, i64::MAX as u64, 0, 0, 0xdead, 0];
    let (p32, p64, pf, pd) = (e.upload(&v32), e.upload(&v64), e.upload(&vf), e.upload(&vd));
    let (g, g64, gf, gd) = (
        e.upload(&g0),
        e.upload(&g640),
        e.upload(&[0.0f32, 0.0]),
        e.upload(&[0.0f64]),
    );
    let tickets = e.alloc::<u32>(n);
    let exch_old = e.alloc::<u32>(n);
    let exch64_old = e.alloc::<u64>(n);
    let sres = e.alloc::<u32>(blocks * 12);
    let sres64 = e.alloc::<u64>(blocks * 3);
    let sf = e.alloc::<f32>(blocks);
    let stickets = e.alloc::<u32>(n);
    let args = [
        Arg::P(p32),
        Arg::P(p64),
        Arg::P(pf),
        Arg::P(pd),
        Arg::P(g),
        Arg::P(g64),
        Arg::P(gf),
        Arg::P(gd),
        Arg::P(tickets),
        Arg::P(exch_old),
        Arg::P(exch64_old),
        Arg::P(sres),
        Arg::P(sres64),
        Arg::P(sf),
        Arg::P(stickets),
    ];
    let l = Launch::new(blocks as u32, bs as u32).checks(checks);
    if checks {
        e.run("atomics", &l, &args);
    } else {
        let r = e.launch("atomics", &l, &args);
        assert_eq!(r, Ok(()), "{}", fmt_findings(&findings()));
    }

    // 32-bit folds over a set of values, from a start value.
    let fold32 = |vals: &[u32], init: &[u32]| -> Vec<u32> {
        let mut r = init.to_vec();
        for &x in vals {
            r[1] = r[1].wrapping_add(x);
            r[2] = (r[2] as i32).min(x as i32) as u32;
            r[3] = (r[3] as i32).max(x as i32) as u32;
            r[4] = r[4].min(x);
            r[5] = r[5].max(x);
            r[6] &= x | 0x0100_0000;
            r[7] |= x & 0x00ff_00ff;
            r[8] ^= x;
            r[9] = r[9].wrapping_add(x & 0xffff);
        }
        r
    };
    let gw = e.read::<u32>(g, 13);
    let want = fold32(&v32, &g0);
    let names = [
        "ticket",
        "add (result unused)",
        "min.s32",
        "max.s32",
        "min.u32",
        "max.u32",
        "and",
        "or",
        "xor",
        "cas loop",
    ];
    assert_eq!(gw[0], n as u32, "global ticket counter");
    for k in 1..10 {
        assert_eq!(gw[k], want[k], "global atom {}", names[k]);
    }
    let sum32 = v32.iter().fold(0u32, |a, &x| a.wrapping_add(x));
    assert_eq!(gw[11], sum32, "red.global.add.u32");
    assert_eq!(gw[12], *v32.iter().max().unwrap(), "red.global.max.u32");

    let mut t = e.read::<u32>(tickets, n);
    t.sort();
    assert_eq!(
        t,
        (0..n as u32).collect::<Vec<_>>(),
        "atomicAdd(&c, 1) tickets must be a permutation of 0..n"
    );

    let mut ex = e.read::<u32>(exch_old, n);
    ex.push(gw[10]);
    ex.sort();
    let mut want_ex: Vec<u32> = (0..n as u32).collect();
    want_ex.push(0xdead_beef);
    want_ex.sort();
    assert_eq!(ex, want_ex, "atomicExch: the values swapped out plus the final one = the initial one plus every thread's");

    let gw64 = e.read::<u64>(g64, 6);
    let sum64 = v64.iter().fold(0u64, |a, &y| a.wrapping_add(y));
    assert_eq!(gw64[0], sum64, "atom.global.add.u64");
    assert_eq!(
        gw64[1],
        v64.iter().map(|&y| y as i64).min().unwrap() as u64,
        "atom.global.min.s64"
    );
    assert_eq!(gw64[2], *v64.iter().max().unwrap(), "atom.global.max.u64");
    assert_eq!(
        gw64[3],
        v64.iter().fold(0u64, |a, &y| a.wrapping_add(y >> 8)),
        "atom.global.cas.b64 loop"
    );
    assert_eq!(gw64[5], sum64, "red.global.add.u64");
    let mut ex = e.read::<u64>(exch64_old, n);
    ex.push(gw64[4]);
    ex.sort();
    let mut want_ex: Vec<u64> = (0..n as u64).map(|i| i * 0x1_0000_0001).collect();
    want_ex.push(0xdead);
    want_ex.sort();
    assert_eq!(ex, want_ex, "atom.global.exch.b64");

    let fsum: f32 = vf.iter().sum();
    let gfw = e.read::<f32>(gf, 2);
    assert_eq!(gfw[0], fsum, "atomicAdd(float*) (exact: multiples of 1/8)");
    assert_eq!(gfw[1], fsum, "red.global.add.f32");
    let dsum: f64 = vd.iter().sum();
    assert_eq!(e.read::<f64>(gd, 1)[0], dsum, "atomicAdd(double*)");

    // Shared, per block.
    let s = e.read::<u32>(sres, blocks * 12);
    let s64 = e.read::<u64>(sres64, blocks * 3);
    let sfv = e.read::<f32>(sf, blocks);
    let st = e.read::<u32>(stickets, n);
    let s0: Vec<u32> = vec![
        0,
        0,
        i32::MAX as u32,
        i32::MIN as u32,
        u32::MAX,
        0,
        u32::MAX,
        0,
        0,
        0,
    ];
    for b in 0..blocks {
        let vals = &v32[b * bs..(b + 1) * bs];
        let want = fold32(vals, &s0);
        let got = &s[b * 12..(b + 1) * 12];
        assert_eq!(got[0], bs as u32, "block {b}: shared ticket counter");
        for k in 1..10 {
            assert_eq!(got[k], want[k], "block {b}: shared atom {}", names[k]);
        }
        assert!(
            got[10] < bs as u32,
            "block {b}: shared exch holds a thread index, got {:#x}",
            got[10]
        );
        assert_eq!(
            got[11],
            vals.iter().fold(0u32, |a, &x| a.wrapping_add(x)),
            "block {b}: red.shared.add.u32"
        );
        let y = &v64[b * bs..(b + 1) * bs];
        assert_eq!(
            s64[b * 3],
            y.iter().fold(0u64, |a, &v| a.wrapping_add(v)),
            "block {b}: atom.shared.add.u64"
        );
        assert_eq!(
            s64[b * 3 + 1],
            y.iter().map(|&v| v as i64).min().unwrap() as u64,
            "block {b}: atom.shared.min.s64"
        );
        assert_eq!(
            s64[b * 3 + 2],
            *y.iter().max().unwrap(),
            "block {b}: atom.shared.max.u64"
        );
        assert_eq!(
            sfv[b],
            vf[b * bs..(b + 1) * bs].iter().sum::<f32>(),
            "block {b}: atom.shared.add.f32"
        );
        let mut tk = st[b * bs..(b + 1) * bs].to_vec();
        tk.sort();
        assert_eq!(
            tk,
            (0..bs as u32).collect::<Vec<_>>(),
            "block {b}: shared tickets"
        );
    }
}
