// Lane-by-lane comparisons read clearest as index loops.
#![allow(clippy::needless_range_loop)]
//! Seeded-bug kernels (tests/kernels/seeded_bugs.cu): each bug must be reported with the right
//! launch error and a finding naming the check, the kernel and the PTX line; with
//! `Options { checks: false }` the sanitizer-only ones (racecheck, initcheck) must not report.

mod common;
use common::*;
use cuda_emu::CuError;

macro_rules! emu {
    () => {
        match Emu::new("seeded_bugs") {
            Some(e) => e,
            None => return,
        }
    };
}

#[test]
fn oob_global_store_is_illegal_address() {
    let mut e = emu!();
    let n = 64;
    let out = e.alloc::<f32>(n);
    let r = e.launch(
        "oob_store",
        &Launch::new(2, 64),
        &[Arg::P(out), Arg::I32(n as i32)],
    );
    let f = expect_report(
        &e,
        r,
        Some(CuError::IllegalAddress),
        &["memcheck"],
        "oob_store",
        true,
    );
    assert!(
        e.ptx_line(f.line).starts_with("st.global"),
        "memcheck should point at the store, got line {}: {}",
        f.line,
        e.ptx_line(f.line)
    );
    assert_eq!(
        f.address,
        Some(out + 4 * n as u64),
        "the faulting address is out[n]"
    );
    assert_eq!(f.thread, [0, 0, 0], "thread n = 64 is thread 0 of block 1");
    assert_eq!(f.block, [1, 0, 0]);

    // Without the sanitizer a store outside every allocation still cannot succeed.
    let out2 = e.alloc::<f32>(n);
    let r = e.launch(
        "oob_store",
        &Launch::new(2, 64).checks(false),
        &[Arg::P(out2), Arg::I32(n as i32)],
    );
    assert_eq!(
        r,
        Err(CuError::IllegalAddress),
        "checks off: an illegal address is still a fault"
    );

    // In bounds: clean.
    let out3 = e.alloc::<f32>(n + 1);
    e.run(
        "oob_store",
        &Launch::new(2, 64),
        &[Arg::P(out3), Arg::I32(n as i32)],
    );
    let got = e.read::<f32>(out3, n + 1);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(*g, 1.0 + i as f32, "out[{i}]");
    }
}

#[test]
fn oob_shared_store_is_illegal_address() {
    let mut e = emu!();
    let out = e.alloc::<f32>(64);
    let r = e.launch("oob_shared", &Launch::new(1, 64), &[Arg::P(out)]);
    let f = expect_report(
        &e,
        r,
        Some(CuError::IllegalAddress),
        &["memcheck"],
        "oob_shared",
        true,
    );
    assert!(
        e.ptx_line(f.line).starts_with("st.shared"),
        "line {}: {}",
        f.line,
        e.ptx_line(f.line)
    );
    assert_eq!(f.thread, [63, 0, 0]);
}

#[test]
fn misaligned_vector_load() {
    let mut e = emu!();
    let mut rng = rng("misaligned_vector_load");
    let data: Vec<f32> = (0..64).map(|_| rng.f32_in(-1.0, 1.0)).collect();
    let p = e.upload(&data);
    let out = e.alloc::<f32>(32);
    let r = e.launch(
        "misaligned_v4",
        &Launch::new(1, 32),
        &[Arg::P(p), Arg::I32(1), Arg::P(out)],
    );
    let f = expect_report(
        &e,
        r,
        Some(CuError::MisalignedAddress),
        &["memcheck"],
        "misaligned_v4",
        true,
    );
    assert!(
        e.ptx_line(f.line).contains(".v4"),
        "line {}: {}",
        f.line,
        e.ptx_line(f.line)
    );
    assert_eq!(f.address, Some(p + 4));

    let r = e.launch(
        "misaligned_v4",
        &Launch::new(1, 32).checks(false),
        &[Arg::P(p), Arg::I32(1), Arg::P(out)],
    );
    assert_eq!(
        r,
        Err(CuError::MisalignedAddress),
        "checks off: a misaligned access still faults"
    );

    // Aligned (off = 4): fine, and the sum is right.
    let out = e.alloc::<f32>(32);
    e.run(
        "misaligned_v4",
        &Launch::new(1, 32),
        &[Arg::P(p), Arg::I32(4), Arg::P(out)],
    );
    let want = ((data[4] + data[5]) + data[6]) + data[7];
    for (i, g) in e.read::<f32>(out, 32).iter().enumerate() {
        assert_eq!(g.to_bits(), want.to_bits(), "out[{i}]");
    }
}

#[test]
fn missing_syncthreads_is_a_race() {
    let mut e = emu!();
    let mut rng = rng("missing_syncthreads_is_a_race");
    let data: Vec<f32> = (0..256).map(|_| rng.f32_in(1.0, 2.0)).collect();
    let inp = e.upload(&data);
    let out = e.alloc::<f32>(256);
    let r = e.launch(
        "race_no_sync",
        &Launch::new(1, 256),
        &[Arg::P(inp), Arg::P(out)],
    );
    let f = expect_report(
        &e,
        r,
        Some(CuError::LaunchFailed),
        &["racecheck"],
        "race_no_sync",
        true,
    );
    let line = e.ptx_line(f.line);
    assert!(
        line.contains(".shared"),
        "racecheck should point at a shared access, line {}: {line}",
        f.line
    );

    // Checks off: it "works"; each value is either the old 0 or the other warp's new value.
    let out = e.alloc::<f32>(256);
    let r = e.launch(
        "race_no_sync",
        &Launch::new(1, 256).checks(false),
        &[Arg::P(inp), Arg::P(out)],
    );
    let f = findings();
    assert_eq!(r, Ok(()), "checks off: {}", fmt_findings(&f));
    assert!(
        !f.iter().any(|x| x.check == "racecheck"),
        "checks off but racecheck reported:\n{}",
        fmt_findings(&f)
    );
    for (t, g) in e.read::<f32>(out, 256).iter().enumerate() {
        let other = data[(t + 32) % 256];
        assert!(
            *g == 0.0 || *g == other,
            "out[{t}] = {g}, want 0 or {other}"
        );
    }

    // The fixed twin is clean and exact.
    let out = e.alloc::<f32>(256);
    e.run(
        "race_fixed",
        &Launch::new(1, 256),
        &[Arg::P(inp), Arg::P(out)],
    );
    for (t, g) in e.read::<f32>(out, 256).iter().enumerate() {
        assert_eq!(*g, data[(t + 32) % 256], "out[{t}]");
    }
}

#[test]
fn unwritten_shared_is_initcheck() {
    let mut e = emu!();
    let out = e.alloc::<f32>(64);
    let r = e.launch("uninit_shared", &Launch::new(1, 64), &[Arg::P(out)]);
    let f = expect_report(
        &e,
        r,
        Some(CuError::LaunchFailed),
        &["initcheck"],
        "uninit_shared",
        true,
    );
    assert!(
        e.ptx_line(f.line).starts_with("ld.shared"),
        "line {}: {}",
        f.line,
        e.ptx_line(f.line)
    );
    assert!(
        f.thread[0] >= 32,
        "only threads 32..63 read unwritten slots, got {:?}",
        f.thread
    );

    let out = e.alloc::<f32>(64);
    let r = e.launch(
        "uninit_shared",
        &Launch::new(1, 64).checks(false),
        &[Arg::P(out)],
    );
    let f = findings();
    assert_eq!(r, Ok(()), "checks off:\n{}", fmt_findings(&f));
    assert!(
        !f.iter().any(|x| x.check == "initcheck"),
        "{}",
        fmt_findings(&f)
    );
    let got = e.read::<f32>(out, 64);
    for t in 0..32 {
        assert_eq!(got[t], 1.0 + t as f32, "out[{t}]");
    }
}

#[test]
fn unwritten_global_is_initcheck() {
    let mut e = emu!();
    let inp = e.alloc::<f32>(128); // cuMemAlloc'd, never written
    let out = e.alloc::<f32>(128);
    let r = e.launch(
        "uninit_global",
        &Launch::new(2, 64),
        &[Arg::P(inp), Arg::P(out)],
    );
    let f = expect_report(
        &e,
        r,
        Some(CuError::LaunchFailed),
        &["initcheck"],
        "uninit_global",
        true,
    );
    assert!(
        e.ptx_line(f.line).starts_with("ld.global"),
        "line {}: {}",
        f.line,
        e.ptx_line(f.line)
    );
    let a = f.address.expect("initcheck finding has an address");
    assert!(
        a >= inp && a < inp + 512,
        "address {a:#x} not in the input {inp:#x}+512"
    );

    let out = e.alloc::<f32>(128);
    let r = e.launch(
        "uninit_global",
        &Launch::new(2, 64).checks(false),
        &[Arg::P(inp), Arg::P(out)],
    );
    let f = findings();
    assert_eq!(r, Ok(()), "checks off:\n{}", fmt_findings(&f));
    assert!(
        !f.iter().any(|x| x.check == "initcheck"),
        "{}",
        fmt_findings(&f)
    );
    // The input holds the poison pattern (NaN as f32), so is the output.
    for (i, g) in e.read::<f32>(out, 128).iter().enumerate() {
        assert!(
            g.is_nan(),
            "out[{i}] = {g}: uninitialised device memory should read as the poison NaN"
        );
    }

    // Written by the host: clean.
    let mut rng = rng("unwritten_global_is_initcheck");
    let data: Vec<f32> = (0..128).map(|_| rng.f32_in(-4.0, 4.0)).collect();
    e.write(inp, &data);
    let out = e.alloc::<f32>(128);
    e.run(
        "uninit_global",
        &Launch::new(2, 64),
        &[Arg::P(inp), Arg::P(out)],
    );
    for (i, g) in e.read::<f32>(out, 128).iter().enumerate() {
        assert_eq!(*g, data[i] * 2.0, "out[{i}]");
    }
}

#[test]
fn missing_cp_async_wait_is_reported() {
    let mut e = emu!();
    let mut rng = rng("missing_cp_async_wait_is_reported");
    let data: Vec<f32> = (0..128).map(|_| rng.f32_in(-4.0, 4.0)).collect();
    let inp = e.upload(&data);
    let out = e.alloc::<f32>(128);
    let r = e.launch(
        "cp_async_no_wait",
        &Launch::new(1, 128),
        &[Arg::P(inp), Arg::P(out)],
    );
    expect_report(
        &e,
        r,
        None,
        &["initcheck", "racecheck", "cp.async"],
        "cp_async_no_wait",
        true,
    );
}

#[test]
fn barrier_in_divergent_code_is_synccheck() {
    let mut e = emu!();
    let out = e.alloc::<f32>(64);
    let r = e.launch(
        "divergent_barrier",
        &Launch::new(1, 64),
        &[Arg::P(out), Arg::I32(48)],
    );
    let f = expect_report(
        &e,
        r,
        Some(CuError::LaunchFailed),
        &["synccheck"],
        "divergent_barrier",
        true,
    );
    assert!(
        e.ptx_line(f.line).starts_with("bar.sync"),
        "line {}: {}",
        f.line,
        e.ptx_line(f.line)
    );

    // Every thread reaches it: clean.
    let out = e.alloc::<f32>(64);
    e.run(
        "divergent_barrier",
        &Launch::new(1, 64),
        &[Arg::P(out), Arg::I32(64)],
    );
    for (t, g) in e.read::<f32>(out, 64).iter().enumerate() {
        assert_eq!(*g, 1.0 + t as f32);
    }
}

#[test]
fn use_after_free_is_illegal_address() {
    let mut e = emu!();
    let p = e.alloc::<f32>(32);
    e.mem.free(p).unwrap();
    let r = e.launch("store_to", &Launch::new(1, 32), &[Arg::P(p)]);
    let f = expect_report(
        &e,
        r,
        Some(CuError::IllegalAddress),
        &["memcheck"],
        "store_to",
        true,
    );
    assert!(
        e.ptx_line(f.line).starts_with("st.global"),
        "line {}: {}",
        f.line,
        e.ptx_line(f.line)
    );
    // A null pointer too.
    let r = e.launch("store_to", &Launch::new(1, 32), &[Arg::P(0)]);
    expect_report(
        &e,
        r,
        Some(CuError::IllegalAddress),
        &["memcheck"],
        "store_to",
        true,
    );
}

#[test]
fn local_array_out_of_bounds_is_illegal_address() {
    let mut e = emu!();
    let mut idx: Vec<i32> = (0..32).map(|t| t % 8).collect();
    let out = e.alloc::<i32>(32);
    let pi = e.upload(&idx);
    // In bounds first: clean, and right.
    e.run("local_oob", &Launch::new(1, 32), &[Arg::P(pi), Arg::P(out)]);
    let got = e.read::<i32>(out, 32);
    for t in 0..32usize {
        let j = (t + 3) & 7;
        let want = if j == t % 8 { 5 } else { (t + j) as i32 };
        assert_eq!(got[t], want, "thread {t}");
    }
    idx[7] = 1 << 20;
    let pi = e.upload(&idx);
    let r = e.launch("local_oob", &Launch::new(1, 32), &[Arg::P(pi), Arg::P(out)]);
    let f = expect_report(
        &e,
        r,
        Some(CuError::IllegalAddress),
        &["memcheck"],
        "local_oob",
        true,
    );
    assert_eq!(f.thread, [7, 0, 0]);
    assert!(
        e.ptx_line(f.line).contains(".local"),
        "line {}: {}",
        f.line,
        e.ptx_line(f.line)
    );
}

#[test]
fn syncwarp_mask_without_own_lane_is_synccheck() {
    let mut e = emu!();
    let out = e.alloc::<i32>(32);
    let r = e.launch("syncwarp_bad_mask", &Launch::new(1, 32), &[Arg::P(out)]);
    let f = expect_report(&e, r, None, &["synccheck"], "syncwarp_bad_mask", true);
    assert!(
        e.ptx_line(f.line).starts_with("bar.warp.sync"),
        "line {}: {}",
        f.line,
        e.ptx_line(f.line)
    );
    assert_eq!(f.thread, [0, 0, 0]);
}

#[test]
fn barrier_deadlock_is_reported() {
    // Threads 0..47 wait at barrier 0, threads 48..63 at barrier 1: neither can complete.
    let mut e = emu!();
    let out = e.alloc::<f32>(64);
    let r = e.launch("barrier_deadlock", &Launch::new(1, 64), &[Arg::P(out)]);
    expect_report(
        &e,
        r,
        Some(CuError::LaunchFailed),
        &["synccheck", "deadlock"],
        "barrier_deadlock",
        false,
    );
}

#[test]
fn dynamic_shared_limits() {
    let mut e = emu!();
    let words = 64 * 1024 / 4; // 64 KB > 48 KB
    let out = e.alloc::<u32>(128);
    // Without the opt-in the launch is refused.
    let l = Launch::new(1, 128).dyn_smem(64 * 1024);
    let r = e.launch("dyn_smem", &l, &[Arg::P(out), Arg::I32(words as i32)]);
    expect_report(
        &e,
        r,
        Some(CuError::InvalidValue),
        &["limits"],
        "dyn_smem",
        false,
    );
    // Not a sanitizer check: refused with checks off too.
    let r = e.launch(
        "dyn_smem",
        &l.clone().checks(false),
        &[Arg::P(out), Arg::I32(words as i32)],
    );
    assert_eq!(r, Err(CuError::InvalidValue), "checks off: still refused");
    // An opt-in smaller than the request is not enough.
    let r = e.launch(
        "dyn_smem",
        &l.clone().max_dyn(60 * 1024),
        &[Arg::P(out), Arg::I32(words as i32)],
    );
    assert_eq!(
        r,
        Err(CuError::InvalidValue),
        "opt-in of 60 KB, 64 KB requested"
    );
    // More than the device's opt-in limit is refused even when "opted in".
    let too_big = cuda_emu::device::SHARED_PER_BLOCK_OPTIN + 1024;
    let r = e.launch(
        "dyn_smem",
        &Launch::new(1, 128).dyn_smem(too_big).max_dyn(too_big),
        &[Arg::P(out), Arg::I32(1)],
    );
    assert_eq!(
        r,
        Err(CuError::InvalidValue),
        "beyond SHARED_PER_BLOCK_OPTIN"
    );

    // With the opt-in it runs, over the whole 64 KB.
    e.run(
        "dyn_smem",
        &l.clone().max_dyn(64 * 1024),
        &[Arg::P(out), Arg::I32(words as i32)],
    );
    let got = e.read::<u32>(out, 128);
    for t in 0..128usize {
        let mut acc = 0u32;
        let mut i = t;
        while i < words {
            acc ^= ((words - 1 - i) as u32).wrapping_mul(2654435761);
            i += 128;
        }
        assert_eq!(got[t], acc, "out[{t}]");
    }
    // 48 KB needs no opt-in.
    let out = e.alloc::<u32>(128);
    let words = 48 * 1024 / 4;
    e.run(
        "dyn_smem",
        &Launch::new(1, 128).dyn_smem(48 * 1024),
        &[Arg::P(out), Arg::I32(words)],
    );
}

#[test]
fn too_many_threads_refused() {
    let mut e = emu!();
    let out = e.alloc::<u32>(2048);
    for (block, ok) in [
        ([1025, 1, 1], false),
        ([32, 32, 2], false),
        ([1, 1, 65], false),
        ([2048, 1, 1], false),
        ([1024, 1, 1], true),
        ([16, 8, 8], true),
    ] {
        e.poison(out, 2048 * 4);
        let r = e.launch("big_block", &Launch::dims([1, 1, 1], block), &[Arg::P(out)]);
        if ok {
            assert_eq!(r, Ok(()), "block {block:?}:\n{}", fmt_findings(&findings()));
            let n = (block[0] * block[1] * block[2]) as usize;
            let got = e.read::<u32>(out, n);
            for (i, g) in got.iter().enumerate() {
                assert_eq!(*g, i as u32, "block {block:?} out[{i}]");
            }
        } else {
            expect_report(
                &e,
                r,
                Some(CuError::InvalidValue),
                &["limits"],
                "big_block",
                false,
            );
        }
    }
    // A zero dimension is invalid too.
    let r = e.launch(
        "big_block",
        &Launch::dims([1, 1, 1], [0, 1, 1]),
        &[Arg::P(out)],
    );
    assert_eq!(r, Err(CuError::InvalidValue), "block with a zero dimension");
    let r = e.launch(
        "big_block",
        &Launch::dims([0, 1, 1], [32, 1, 1]),
        &[Arg::P(out)],
    );
    assert_eq!(r, Err(CuError::InvalidValue), "grid with a zero dimension");
}

#[test]
fn global_write_from_every_block_is_a_race() {
    let mut e = emu!();
    let mut rng = rng("global_write_from_every_block_is_a_race");
    let data: Vec<f32> = (0..8).map(|_| rng.f32_in(1.0, 2.0)).collect();
    let inp = e.upload(&data);
    let out = e.alloc::<f32>(1);
    let r = e.launch(
        "global_same_slot",
        &Launch::new(8, 32),
        &[Arg::P(inp), Arg::P(out)],
    );
    expect_report(
        &e,
        r,
        Some(CuError::LaunchFailed),
        &["racecheck"],
        "global_same_slot",
        true,
    );

    // Blocks shifting one array in place read what a neighbour block writes. Only a read after
    // the write is seen, so 16 blocks: some block then runs after its right neighbour in any
    // order but the identity (1 in 16!).
    let x = e.upload(&(0..512).map(|i| i as f32 + 1.0).collect::<Vec<f32>>());
    let r = e.launch(
        "global_shift_in_place",
        &Launch::new(16, 32),
        &[Arg::P(x), Arg::I32(512)],
    );
    expect_report(
        &e,
        r,
        Some(CuError::LaunchFailed),
        &["racecheck"],
        "global_shift_in_place",
        true,
    );

    // Atomic adds to one slot are no race, and the sum is the host's.
    let out = e.upload(&[0.0f32]);
    let r = e.launch(
        "global_atomic_slot",
        &Launch::new(8, 32),
        &[Arg::P(inp), Arg::P(out)],
    );
    assert!(
        r.is_ok(),
        "atomics raced: {r:?} {:?}",
        cuda_emu::exec::last_findings()
    );
    let got: Vec<f32> = e.read(out, 1);
    let want: f32 = data.iter().sum();
    assert!(
        (got[0] - want).abs() <= 1e-5 * want.abs(),
        "atomic sum {} vs {want}",
        got[0]
    );
}
