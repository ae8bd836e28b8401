// Lane-by-lane comparisons read clearest as index loops.
#![allow(clippy::needless_range_loop)]
//! cp.async (tests/kernels/cp_async.cu): .ca 4/8/16 and .cg 16 bytes, src-size zero fill,
//! commit_group / wait_group N / wait_all, and that the data is not visible before the wait.

mod common;
use common::*;

macro_rules! emu {
    () => {
        match Emu::new("cp_async") {
            Some(e) => e,
            None => return,
        }
    };
}

/// What the shared block holds once the given regions' copies are complete: bytes below src-size
/// come from `src`, the rest of each cp-size chunk is zero; regions not complete keep `fill`.
fn expected_shared(src: &[u8], sz: &[i32], fill: u8, done: usize) -> Vec<u8> {
    let mut sh = vec![fill; 1408];
    let regions = [(0usize, 4usize), (128, 8), (384, 16), (896, 16)];
    for (ri, &(base, size)) in regions.iter().enumerate() {
        if ri >= done {
            break;
        }
        for t in 0..32 {
            let n = sz[ri * 32 + t] as usize;
            for i in 0..size {
                let off = base + t * size + i;
                sh[off] = if i < n { src[off] } else { 0 };
            }
        }
    }
    sh
}

#[test]
fn cp_async_sizes_zero_fill_and_groups() {
    let mut e = emu!();
    e.assert_ptx_has("cp.async.ca.shared.global");
    e.assert_ptx_has("cp.async.cg.shared.global");
    e.assert_ptx_has("cp.async.wait_group 2");
    e.assert_ptx_has("cp.async.wait_all");
    let mut rng = rng("cp_async_sizes_zero_fill_and_groups");
    // Source bytes: never zero and never the fill byte, so zero fill and stale bytes both show.
    let fill: u8 = 0xA5;
    let src: Vec<u8> = (0..1408)
        .map(|_| loop {
            let b = rng.next_u32() as u8;
            if b != 0 && b != fill {
                break b;
            }
        })
        .collect();
    let mut sz = Vec::new();
    for (ri, size) in [4i32, 8, 16, 16].into_iter().enumerate() {
        for t in 0..32 {
            // Make sure every region has full, empty and partial copies.
            let v = match t {
                0 => size,
                1 => 0,
                _ => rng.range_i64(0, size as i64) as i32,
            };
            let _ = ri;
            sz.push(v);
        }
    }
    let (psrc, psz) = (e.upload(&src), e.upload(&sz));
    let out = e.alloc::<u8>(3 * 1408);
    e.run(
        "cp_async_groups",
        &Launch::new(1, 32),
        &[
            Arg::P(psrc),
            Arg::P(psz),
            Arg::P(out),
            Arg::I32(fill as i32),
        ],
    );
    let got = e.read::<u8>(out, 3 * 1408);
    let all = expected_shared(&src, &sz, fill, 4);
    let names = |i: usize| match i {
        0..128 => ("cp.async.ca 4", i / 4, 4),
        128..384 => ("cp.async.ca 8", (i - 128) / 8, 32 + (i - 128) / 8),
        384..896 => ("cp.async.ca 16", (i - 384) / 16, 64 + (i - 384) / 16),
        _ => ("cp.async.cg 16", (i - 896) / 16, 96 + (i - 896) / 16),
    };
    for (snap, upto) in [(0usize, 128usize), (1, 384), (2, 1408)] {
        for i in 0..upto {
            let g = got[snap * 1408 + i];
            if g != all[i] {
                let (what, t, szi) = names(i);
                panic!(
                    "snapshot {snap} byte {i}: {what} of thread {t} (src-size {}): got {g:#04x}, want {:#04x}",
                    sz[szi.min(127)], all[i]
                );
            }
        }
    }
}

#[test]
fn cp_async_full_copies_across_warps() {
    let mut e = emu!();
    let mut rng = rng("cp_async_full_copies_across_warps");
    let src: Vec<u32> = (0..512).map(|_| rng.next_u32()).collect();
    let psrc = e.upload(&src);
    let out = e.alloc::<u32>(512);
    e.run(
        "cp_async_full",
        &Launch::new(1, 128),
        &[Arg::P(psrc), Arg::P(out)],
    );
    let got = e.read::<u32>(out, 512);
    for t in 0..128 {
        let s = (t + 37) % 128;
        assert_eq!(&got[t * 4..t * 4 + 4], &src[s * 4..s * 4 + 4], "thread {t}");
    }
}

#[test]
fn cp_async_data_not_visible_before_wait() {
    let mut e = emu!();
    let mut rng = rng("cp_async_data_not_visible_before_wait");
    let fill: u8 = 0x3C;
    let src: Vec<u8> = (0..1024)
        .map(|_| loop {
            let b = rng.next_u32() as u8;
            if b != fill {
                break b;
            }
        })
        .collect();
    let psrc = e.upload(&src);
    let out = e.alloc::<u8>(2048);
    // Reading the destination before the wait is the bug the checks report, so checks off here.
    let r = e.launch(
        "cp_async_visibility",
        &Launch::new(1, 32).checks(false),
        &[Arg::P(psrc), Arg::P(out), Arg::I32(fill as i32)],
    );
    assert_eq!(r, Ok(()), "{}", fmt_findings(&findings()));
    let got = e.read::<u8>(out, 2048);
    for t in 0..32 {
        for i in 0..16 {
            let k = t * 16 + i;
            assert_eq!(
                got[k], fill,
                "thread {t} byte {i}: group 0 read before any wait must see the old content"
            );
            assert_eq!(
                got[512 + k],
                src[k],
                "thread {t} byte {i}: group 0 after wait_group 1"
            );
            assert_eq!(
                got[1024 + k], fill,
                "thread {t} byte {i}: group 1 (the youngest) read after wait_group 1 must still see the old content"
            );
            assert_eq!(
                got[1536 + k],
                src[512 + k],
                "thread {t} byte {i}: group 1 after wait_all"
            );
        }
    }
    // With checks on, the early reads are reported.
    let out = e.alloc::<u8>(2048);
    let r = e.launch(
        "cp_async_visibility",
        &Launch::new(1, 32),
        &[Arg::P(psrc), Arg::P(out), Arg::I32(fill as i32)],
    );
    expect_report(
        &e,
        r,
        None,
        &["initcheck", "racecheck", "cp.async"],
        "cp_async_visibility",
        true,
    );
}
