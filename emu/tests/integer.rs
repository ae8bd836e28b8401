// Lane-by-lane comparisons read clearest as index loops.
#![allow(clippy::needless_range_loop)]
//! Integer and logic instructions (tests/kernels/integer.cu, int_extra.cu), bit-exact against
//! host references written from the PTX ISA pseudo-code.

mod common;
use common::*;

const BLOCK: u32 = 128;

/// prmt default mode: bytes 0..3 of a, 4..7 of b; selector nibble k picks d's byte k; bit 3 of the
/// nibble replicates the picked byte's sign.
fn prmt(a: u32, b: u32, c: u32) -> u32 {
    let src = (b as u64) << 32 | a as u64;
    let mut d = 0u32;
    for k in 0..4 {
        let sel = (c >> (4 * k)) & 0xf;
        let mut byte = (src >> (8 * (sel & 7))) as u8;
        if sel & 8 != 0 {
            byte = if byte & 0x80 != 0 { 0xff } else { 0 };
        }
        d |= (byte as u32) << (8 * k);
    }
    d
}

/// bfe per the PTX ISA pseudo-code (32-bit). `None` for .s32 with len = 0 (see below).
fn bfe(a: u32, b: u32, c: u32, signed: bool) -> Option<u32> {
    let msb = 31i64;
    let pos = (b & 0xff) as i64;
    let len = (c & 0xff) as i64;
    let sbit = if signed {
        // len = 0: the pseudo-code's sign bit a[pos - 1] is not what every implementation gives
        // (the emulator returns 0); left unchecked.
        if len == 0 {
            return None;
        }
        (a >> (pos + len - 1).min(msb)) & 1
    } else {
        0
    };
    let mut d = 0u32;
    for i in 0..=msb {
        let bit = if i < len && pos + i <= msb {
            (a >> (pos + i)) & 1
        } else {
            sbit
        };
        d |= bit << i;
    }
    Some(d)
}

fn bfi(f: u32, b: u32, pos: u32, len: u32) -> u32 {
    let (pos, len) = ((pos & 0xff) as i64, (len & 0xff) as i64);
    let mut d = b;
    let mut i = 0;
    while i < len && pos + i <= 31 {
        d = (d & !(1 << (pos + i))) | (((f >> i) & 1) << (pos + i));
        i += 1;
    }
    d
}

fn sext24(x: u32) -> i32 {
    ((x << 8) as i32) >> 8
}

fn inputs(rng: &mut Rng, n: usize) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let x = rng.int_u32();
        let mut y = match rng.below(6) {
            0 => x, // equal: setp eq/le/ge edges
            1 => x.wrapping_neg(),
            _ => rng.int_u32(),
        };
        // b's low byte is bfe's pos: often in 0..40 (pos + len around 32)
        if rng.bool() {
            y = (y & !0xff) | rng.below(41) as u32;
        }
        if y == 0 || (x == 0x8000_0000 && y == 0xffff_ffff) {
            y = 3; // division: no 0 divisor, no INT_MIN / -1 (unspecified in PTX)
        }
        // c: low byte = bfe len / bfi pos / shift amount, next byte = bfi len, upper = prmt selector bits
        let mut z = rng.next_u32();
        if rng.below(4) != 0 {
            z = (z & !0xffff) | (rng.below(41) as u32) << 8 | rng.below(41) as u32;
        }
        a.push(x);
        b.push(y);
        c.push(z);
    }
    (a, b, c)
}

#[test]
fn int32_instructions() {
    let Some(mut e) = Emu::new("integer") else {
        return;
    };
    let mut rng = rng("int32_instructions");
    let n = 5000;
    let (a, b, c) = inputs(&mut rng, n);
    let (pa, pb, pc) = (e.upload(&a), e.upload(&b), e.upload(&c));
    let k = 48;
    let out = e.alloc::<u32>(k * n);
    e.run(
        "int32_ops",
        &Launch::new((n as u32).div_ceil(BLOCK), BLOCK),
        &[
            Arg::P(pa),
            Arg::P(pb),
            Arg::P(pc),
            Arg::P(out),
            Arg::I32(n as i32),
        ],
    );
    let got = e.read::<u32>(out, k * n);
    let names = [
        "add.u32",
        "sub.u32",
        "mul.lo.u32",
        "mul.hi.u32",
        "mul.hi.s32",
        "mul.wide.u32 lo",
        "mul.wide.u32 hi",
        "mul.wide.s32 lo",
        "mul.wide.s32 hi",
        "mad.lo.u32",
        "mad.hi.s32",
        "div.u32",
        "rem.u32",
        "div.s32",
        "rem.s32",
        "min.s32",
        "max.s32",
        "min.u32",
        "max.u32",
        "shl.b32",
        "shr.u32",
        "shr.s32",
        "and.b32",
        "or.b32",
        "xor.b32",
        "not.b32",
        "selp.b32",
        "prmt.b32",
        "bfe.u32",
        "bfe.s32",
        "bfi.b32",
        "popc.b32",
        "clz.b32",
        "brev.b32",
        "setp (bits)",
        "add.sat.s32",
        "sub.sat.s32",
        "abs.s32",
        "neg.s32",
        "lop3.b32 0x96",
        "lop3.b32 0xE8",
        "mul24.lo.u32",
        "mad24.lo.s32",
        "selp.s32",
        "cnot.b32",
        "mad.hi.u32",
        "mul.lo.s32",
        "sad.u32",
    ];
    for i in 0..n {
        let (x, y, z) = (a[i], b[i], c[i]);
        let (xs, ys) = (x as i32, y as i32);
        let sh = z & 63;
        let wu = x as u64 * y as u64;
        let ws = (xs as i64 * ys as i64) as u64;
        let q = z & 1 != 0;
        let lt = xs < ys;
        let setp = [
            xs == ys,
            xs != ys,
            xs < ys,
            xs <= ys,
            xs > ys,
            xs >= ys,
            x <= y,
            x > y,
            x != y,
            x == y,
            x < y,
            x >= y,
            lt && q,
            lt || q,
            lt ^ !q,
        ]
        .iter()
        .enumerate()
        .fold(0u32, |r, (k, &bit)| r | (bit as u32) << k);
        let want: [Option<u32>; 48] = [
            Some(x.wrapping_add(y)),
            Some(x.wrapping_sub(y)),
            Some(x.wrapping_mul(y)),
            Some((wu >> 32) as u32),
            Some((ws >> 32) as u32),
            Some(wu as u32),
            Some((wu >> 32) as u32),
            Some(ws as u32),
            Some((ws >> 32) as u32),
            Some(x.wrapping_mul(y).wrapping_add(z)),
            Some(((ws >> 32) as u32).wrapping_add(z)),
            Some(x / y),
            Some(x % y),
            Some(xs.wrapping_div(ys) as u32),
            Some(xs.wrapping_rem(ys) as u32),
            Some(xs.min(ys) as u32),
            Some(xs.max(ys) as u32),
            Some(x.min(y)),
            Some(x.max(y)),
            Some(if sh >= 32 { 0 } else { x << sh }),
            Some(if sh >= 32 { 0 } else { x >> sh }),
            Some((xs >> sh.min(31)) as u32),
            Some(x & y),
            Some(x | y),
            Some(x ^ y),
            Some(!x),
            Some(if q { x } else { y }),
            Some(prmt(x, y, z)),
            bfe(x, y, z, false),
            bfe(x, y, z, true),
            Some(bfi(x, y, z & 0xff, (z >> 8) & 0xff)),
            Some(x.count_ones()),
            Some(x.leading_zeros()),
            Some(x.reverse_bits()),
            Some(setp),
            Some(xs.saturating_add(ys) as u32),
            Some(xs.saturating_sub(ys) as u32),
            Some(xs.wrapping_abs() as u32),
            Some(xs.wrapping_neg() as u32),
            Some(x ^ y ^ z),
            Some((x & y) | (x & z) | (y & z)),
            Some((x & 0xff_ffff).wrapping_mul(y & 0xff_ffff)),
            Some((sext24(x).wrapping_mul(sext24(y))).wrapping_add(z as i32) as u32),
            Some(if lt { u32::MAX } else { 7 }),
            Some(((x & 3) == 0) as u32),
            Some(((wu >> 32) as u32).wrapping_add(z)),
            Some(xs.wrapping_mul(ys) as u32),
            Some(x.abs_diff(y).wrapping_add(z)),
        ];
        for (kk, w) in want.iter().enumerate() {
            if let Some(w) = w {
                let g = got[kk * n + i];
                assert_eq!(
                    g, *w,
                    "{}(a={x:#010x}, b={y:#010x}, c={z:#010x}): got {g:#010x}, want {w:#010x}",
                    names[kk]
                );
            }
        }
    }
}

#[test]
fn int64_instructions() {
    let Some(mut e) = Emu::new("integer") else {
        return;
    };
    let mut rng = rng("int64_instructions");
    let n = 3000;
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut c = Vec::new();
    for _ in 0..n {
        let x = rng.int_u64();
        let mut y = if rng.below(5) == 0 { x } else { rng.int_u64() };
        if y == 0 || (x == 1 << 63 && y == u64::MAX) {
            y = 7;
        }
        a.push(x);
        b.push(y);
        c.push(rng.next_u32());
    }
    let (pa, pb, pc) = (e.upload(&a), e.upload(&b), e.upload(&c));
    let out = e.alloc::<u64>(16 * n);
    e.run(
        "int64_ops",
        &Launch::new((n as u32).div_ceil(BLOCK), BLOCK),
        &[
            Arg::P(pa),
            Arg::P(pb),
            Arg::P(pc),
            Arg::P(out),
            Arg::I32(n as i32),
        ],
    );
    let got = e.read::<u64>(out, 16 * n);
    let names = [
        "add.u64",
        "sub.u64",
        "mul.lo.u64",
        "mul.hi.u64",
        "mul.hi.s64",
        "div.u64",
        "rem.u64",
        "div.s64",
        "rem.s64",
        "min.s64",
        "max.u64",
        "shl.b64",
        "shr.u64",
        "shr.s64",
        "popc.b64 | clz.b64 << 32",
        "brev.b64",
    ];
    for i in 0..n {
        let (x, y) = (a[i], b[i]);
        let (xs, ys) = (x as i64, y as i64);
        let sh = c[i] & 127;
        let want = [
            x.wrapping_add(y),
            x.wrapping_sub(y),
            x.wrapping_mul(y),
            ((x as u128 * y as u128) >> 64) as u64,
            ((xs as i128 * ys as i128) >> 64) as u64,
            x / y,
            x % y,
            xs.wrapping_div(ys) as u64,
            xs.wrapping_rem(ys) as u64,
            xs.min(ys) as u64,
            x.max(y),
            if sh >= 64 { 0 } else { x << sh },
            if sh >= 64 { 0 } else { x >> sh },
            (xs >> sh.min(63)) as u64,
            x.count_ones() as u64 | (x.leading_zeros() as u64) << 32,
            x.reverse_bits(),
        ];
        for (k, w) in want.iter().enumerate() {
            let g = got[k * n + i];
            assert_eq!(
                g, *w,
                "{}(a={x:#018x}, b={y:#018x}, shift {sh}): got {g:#018x}, want {w:#018x}",
                names[k]
            );
        }
    }
}

#[test]
fn funnel_shifts() {
    let Some(mut e) = Emu::new("int_shf") else {
        return;
    };
    let mut rng = rng("funnel_shifts");
    let n = 3000;
    let a: Vec<u32> = (0..n).map(|_| rng.int_u32()).collect();
    let b: Vec<u32> = (0..n).map(|_| rng.int_u32()).collect();
    let c: Vec<u32> = (0..n)
        .map(|_| {
            if rng.bool() {
                rng.below(70) as u32
            } else {
                rng.next_u32()
            }
        })
        .collect();
    let (pa, pb, pc) = (e.upload(&a), e.upload(&b), e.upload(&c));
    let out = e.alloc::<u32>(4 * n);
    e.run(
        "int_shf",
        &Launch::new((n as u32).div_ceil(BLOCK), BLOCK),
        &[
            Arg::P(pa),
            Arg::P(pb),
            Arg::P(pc),
            Arg::P(out),
            Arg::I32(n as i32),
        ],
    );
    let got = e.read::<u32>(out, 4 * n);
    for i in 0..n {
        let (x, y, z) = (a[i], b[i], c[i]);
        // {b, a} as a 64-bit value (b high); wrap: c & 31, clamp: min(c, 32)
        let v = (y as u64) << 32 | x as u64;
        let wrap = z & 31;
        let clamp = z.min(32);
        let want = [
            ("shf.l.wrap", ((v << wrap) >> 32) as u32),
            ("shf.r.wrap", (v >> wrap) as u32),
            ("shf.l.clamp", ((v << clamp) >> 32) as u32),
            ("shf.r.clamp", (v >> clamp) as u32),
        ];
        for (k, (op, w)) in want.iter().enumerate() {
            let g = got[k * n + i];
            assert_eq!(
                g, *w,
                "{op}(a={x:#010x}, b={y:#010x}, c={z}): got {g:#010x}, want {w:#010x}"
            );
        }
    }
}

#[test]
fn prmt_modes() {
    let Some(mut e) = Emu::new("int_extra") else {
        return;
    };
    let mut rng = rng("prmt_modes");
    let n = 3000;
    let a: Vec<u32> = (0..n).map(|_| rng.int_u32()).collect();
    let b: Vec<u32> = (0..n).map(|_| rng.int_u32()).collect();
    let c: Vec<u32> = (0..n)
        .map(|_| {
            if rng.bool() {
                rng.below(70) as u32
            } else {
                rng.next_u32()
            }
        })
        .collect();
    let (pa, pb, pc) = (e.upload(&a), e.upload(&b), e.upload(&c));
    let out = e.alloc::<u32>(11 * n);
    e.run(
        "int_extra",
        &Launch::new((n as u32).div_ceil(BLOCK), BLOCK),
        &[
            Arg::P(pa),
            Arg::P(pb),
            Arg::P(pc),
            Arg::P(out),
            Arg::I32(n as i32),
        ],
    );
    let got = e.read::<u32>(out, 11 * n);
    // Byte-index tables (d.b3 d.b2 d.b1 d.b0) of the prmt modes, by c[1:0].
    let tables: [(&str, [[u8; 4]; 4]); 6] = [
        (
            "f4e",
            [[3, 2, 1, 0], [4, 3, 2, 1], [5, 4, 3, 2], [6, 5, 4, 3]],
        ),
        (
            "b4e",
            [[5, 6, 7, 0], [6, 7, 0, 1], [7, 0, 1, 2], [0, 1, 2, 3]],
        ),
        (
            "rc8",
            [[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]],
        ),
        (
            "ecl",
            [[3, 2, 1, 0], [3, 2, 1, 1], [3, 2, 2, 2], [3, 3, 3, 3]],
        ),
        (
            "ecr",
            [[0, 0, 0, 0], [1, 1, 1, 0], [2, 2, 1, 0], [3, 2, 1, 0]],
        ),
        (
            "rc16",
            [[1, 0, 1, 0], [3, 2, 3, 2], [1, 0, 1, 0], [3, 2, 3, 2]],
        ),
    ];
    for i in 0..n {
        let (x, y, z) = (a[i], b[i], c[i]);
        let v = (y as u64) << 32 | x as u64;
        for (k, (mode, t)) in tables.iter().enumerate() {
            let sel = t[(z & 3) as usize];
            let mut w = 0u32;
            for (pos, &byte) in sel.iter().enumerate() {
                w |= (((v >> (8 * byte)) & 0xff) as u32) << (8 * (3 - pos));
            }
            let g = got[(4 + k) * n + i];
            assert_eq!(g, w, "prmt.b32.{mode}(a={x:#010x}, b={y:#010x}, c={z:#x}): got {g:#010x}, want {w:#010x}");
        }
    }
}

#[test]
fn setp_unsigned_comparison_names() {
    let Some(mut e) = Emu::new("int_setp") else {
        return;
    };
    let mut rng = rng("setp_unsigned_comparison_names");
    let n = 2000;
    let a: Vec<u32> = (0..n).map(|_| rng.int_u32()).collect();
    let b: Vec<u32> = (0..n)
        .map(|i| {
            if rng.below(4) == 0 {
                a[i]
            } else {
                rng.int_u32()
            }
        })
        .collect();
    let (pa, pb) = (e.upload(&a), e.upload(&b));
    let out = e.alloc::<u32>(n);
    e.run(
        "int_setp",
        &Launch::new((n as u32).div_ceil(BLOCK), BLOCK),
        &[Arg::P(pa), Arg::P(pb), Arg::P(out), Arg::I32(n as i32)],
    );
    let got = e.read::<u32>(out, n);
    for i in 0..n {
        let (x, y) = (a[i], b[i]);
        let w = (x < y) as u32
            | ((x <= y) as u32) << 1
            | ((x > y) as u32) << 2
            | ((x >= y) as u32) << 3;
        assert_eq!(got[i], w, "setp.lo/ls/hi/hs.u32({x:#x}, {y:#x}) bits");
    }
}
