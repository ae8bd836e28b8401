// Lane-by-lane comparisons read clearest as index loops.
#![allow(clippy::needless_range_loop)]
//! Memory spaces (tests/kernels/memory_spaces.cu): .local arrays with dynamic indices,
//! initialised and zero `__device__` globals, `__constant__` data (initialised and host-written),
//! globals written by one kernel and read by the next, static + dynamic shared memory (also past
//! 48 KB with the opt-in), generic pointers to shared or global.

mod common;
use common::*;

macro_rules! emu {
    () => {
        match Emu::new("memory_spaces") {
            Some(e) => e,
            None => return,
        }
    };
}

#[test]
fn local_arrays() {
    let mut e = emu!();
    e.assert_ptx_has(".local");
    let mut rng = rng("local_arrays");
    let (blocks, bs, rounds) = (2usize, 64usize, 40usize);
    let n = blocks * bs;
    let vals: Vec<i32> = (0..n * 32).map(|_| rng.next_u32() as i32).collect();
    let idx: Vec<i32> = (0..n * rounds).map(|_| rng.next_u32() as i32).collect();
    let (pv, pi) = (e.upload(&vals), e.upload(&idx));
    let out = e.alloc::<i32>(n);
    e.run(
        "local_array",
        &Launch::new(blocks as u32, bs as u32),
        &[Arg::P(pv), Arg::P(pi), Arg::P(out), Arg::I32(rounds as i32)],
    );
    let got = e.read::<i32>(out, n);
    for i in 0..n {
        let mut arr: Vec<i32> = vals[i * 32..(i + 1) * 32].to_vec();
        for r in 0..rounds {
            let a = (idx[i * rounds + r] & 31) as usize;
            let b = ((idx[i * rounds + r] >> 8) & 31) as usize;
            arr[a] = arr[a].wrapping_mul(3).wrapping_add(arr[b]);
        }
        let acc = arr
            .iter()
            .fold(0i32, |acc, &x| acc.wrapping_mul(31).wrapping_add(x));
        assert_eq!(got[i], acc, "thread {i}");
    }
}

#[test]
fn device_globals_and_constants() {
    let mut e = emu!();
    let mut rng = rng("device_globals_and_constants");
    let table = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3];
    let coef = [0.5f32, -1.0, 2.0, 0.25, 8.0, -0.125, 3.0, 1.5];
    // The loader put the initial bytes there.
    assert_eq!(
        e.read::<i32>(e.global_addr("g_table"), 16),
        table.to_vec(),
        "g_table as loaded"
    );
    assert_eq!(
        e.read::<f32>(e.global_addr("c_coef"), 8),
        coef.to_vec(),
        "c_coef as loaded"
    );
    assert_eq!(
        e.read::<u32>(e.global_addr("g_zero"), 8),
        vec![0; 8],
        "an uninitialised __device__ array is zero"
    );
    // The host fills c_host (cuMemcpyHtoD to the symbol).
    let host: Vec<i32> = (0..32).map(|_| rng.next_u32() as i32).collect();
    let addr = e.global_addr("c_host");
    e.write(addr, &host);
    let nt = 128;
    let idx: Vec<i32> = (0..nt)
        .map(|_| (rng.next_u32() & 0x7fff_ffff) as i32)
        .collect();
    let pi = e.upload(&idx);
    let (of, oi, ow) = (
        e.alloc::<f32>(nt * 2),
        e.alloc::<i32>(nt * 4),
        e.alloc::<u64>(nt),
    );
    e.run(
        "read_globals",
        &Launch::new(1, nt as u32),
        &[Arg::P(pi), Arg::P(of), Arg::P(oi), Arg::P(ow)],
    );
    let (gf, gi, gw) = (
        e.read::<f32>(of, nt * 2),
        e.read::<i32>(oi, nt * 4),
        e.read::<u64>(ow, nt),
    );
    for i in 0..nt {
        let k = idx[i];
        let wi = [
            table[(k & 15) as usize],
            0,
            host[(k & 31) as usize],
            table[((k >> 4) & 15) as usize].wrapping_add(host[((k >> 8) & 31) as usize]),
        ];
        assert_eq!(
            &gi[i * 4..i * 4 + 4],
            &wi,
            "thread {i}: g_table / g_zero / c_host"
        );
        assert_eq!(
            gf[i * 2],
            coef[(k & 7) as usize] * 2.5,
            "thread {i}: c_coef * g_scale"
        );
        assert_eq!(
            gf[i * 2 + 1],
            coef[((k >> 3) & 7) as usize],
            "thread {i}: c_coef"
        );
        assert_eq!(
            gw[i],
            0x0123_4567_89ab_cdef ^ k as u64,
            "thread {i}: g_wide"
        );
    }
}

#[test]
fn global_written_by_one_kernel_read_by_the_next() {
    let mut e = emu!();
    let mut rng = rng("global_written_by_one_kernel_read_by_the_next");
    let inp: Vec<u32> = (0..256).map(|_| rng.next_u32()).collect();
    let pi = e.upload(&inp);
    e.run("write_global", &Launch::new(1, 256), &[Arg::P(pi)]);
    let want: Vec<u32> = inp
        .iter()
        .map(|&x| x.wrapping_mul(5).wrapping_add(1))
        .collect();
    assert_eq!(
        e.read::<u32>(e.global_addr("g_written"), 256),
        want,
        "g_written as the host sees it"
    );
    let out = e.alloc::<u32>(256);
    e.run("read_global", &Launch::new(1, 256), &[Arg::P(out)]);
    let got = e.read::<u32>(out, 256);
    for t in 0..256 {
        assert_eq!(got[t], want[255 - t], "thread {t}");
    }
}

#[test]
fn static_and_dynamic_shared() {
    let mut e = emu!();
    let mut rng = rng("static_and_dynamic_shared");
    let inp: Vec<u32> = (0..256).map(|_| rng.next_u32()).collect();
    let pi = e.upload(&inp);
    let nt = 256usize;
    let out = e.alloc::<u32>(3 * nt);
    let gbuf = e.alloc::<u32>(256);
    for (words, flag) in [(256usize, 1), (10_000, 0), (25_000, 1), (57_000, 0)] {
        let bytes = (words * 4) as u32;
        let mut l = Launch::new(1, nt as u32).dyn_smem(bytes);
        if bytes + 1024 > 48 * 1024 {
            l = l.max_dyn(bytes);
        }
        e.poison(out, 3 * nt * 4);
        e.run(
            "shared_static_dynamic",
            &l,
            &[
                Arg::P(pi),
                Arg::P(out),
                Arg::P(gbuf),
                Arg::I32(words as i32),
                Arg::I32(flag),
            ],
        );
        let got = e.read::<u32>(out, 3 * nt);
        let st = |j: usize| inp[j] ^ 0x5a5a_5a5a;
        let dy = |j: usize| {
            (j as u32)
                .wrapping_mul(0x9e37_79b9)
                .wrapping_add(inp[j & 255])
        };
        for t in 0..nt {
            let mut acc = 0u32;
            let mut k = t;
            while k < words {
                acc = acc.wrapping_add(dy(words - 1 - k) ^ st(k & 255));
                k += nt;
            }
            assert_eq!(
                got[t], acc,
                "{words} dynamic words: thread {t} (dynamic and static shared must not overlap)"
            );
            assert_eq!(
                got[nt + t],
                st(255 - (t & 255)),
                "{words} dynamic words: static shared, thread {t}"
            );
            assert_eq!(
                got[2 * nt + t],
                (((t + 1) & 255) as u32) * 7,
                "generic pointer to {}, thread {t}",
                if flag == 1 { "shared" } else { "global" }
            );
        }
        if flag == 0 {
            let g = e.read::<u32>(gbuf, 256);
            for (t, v) in g.iter().enumerate() {
                assert_eq!(*v, t as u32 * 7, "generic store to global, slot {t}");
            }
        }
    }
}

#[test]
fn shared_address_arithmetic_wraps_at_32_bits() {
    let mut e = emu!();
    // The PTX this test needs: a 32-bit shared address register biased by -128 and a +128 offset.
    assert!(
        e.ptx.contains("+128]"),
        "nvcc no longer emits the [%r+128] form this test is about"
    );
    let out = e.alloc::<u8>(1408);
    let fill = 0x21;
    e.run(
        "strided_fill",
        &Launch::new(1, 32),
        &[Arg::P(out), Arg::I32(fill)],
    );
    let got = e.read::<u8>(out, 1408);
    for (i, v) in got.iter().enumerate() {
        assert_eq!(*v, (fill as usize + 1407 - i) as u8, "out[{i}]");
    }
}

#[test]
fn parameters_of_mixed_sizes() {
    let mut e = emu!();
    let mut rng = rng("parameters_of_mixed_sizes");
    let c = (rng.next_u32() as u8) | 0x80; // negative as a (signed) char
    let d = rng.f64_in(-1e6, 1e6);
    let i = rng.next_u32() as i32;
    let q = [
        rng.f32_in(-1.0, 1.0),
        rng.f32_in(-1.0, 1.0),
        rng.f32_in(-1.0, 1.0),
        rng.f32_in(-1.0, 1.0),
    ];
    let s = rng.next_u32() as u16 | 0x8000;
    let (oc, os, oi) = (
        rng.next_u32() as u8 & 0x7f,
        rng.next_u32() as u16,
        rng.next_u32(),
    );
    let u = rng.next_u64();
    let f = rng.f32_in(-10.0, 10.0);
    let mut quad = Vec::new();
    for v in q {
        quad.extend_from_slice(&v.to_le_bytes());
    }
    let mut odd = vec![oc, 0];
    odd.extend_from_slice(&os.to_le_bytes());
    odd.extend_from_slice(&oi.to_le_bytes());
    let out = e.alloc::<u64>(9);
    let k = e.kernel("params_mixed");
    println!(
        "params: {:?}",
        k.params
            .iter()
            .map(|p| (p.offset, p.size, p.align))
            .collect::<Vec<_>>()
    );
    e.run(
        "params_mixed",
        &Launch::new(1, 1),
        &[
            Arg::U8(c),
            Arg::F64(d),
            Arg::I32(i),
            Arg::Bytes(quad),
            Arg::U16(s),
            Arg::Bytes(odd),
            Arg::U64(u),
            Arg::F32(f),
            Arg::P(out),
        ],
    );
    let got = e.read::<u64>(out, 9);
    let want = [
        c as i8 as i64 as u64,
        d.to_bits(),
        i as i64 as u64,
        q[0].to_bits() as u64 | (q[3].to_bits() as u64) << 32,
        q[1].to_bits() as u64 | (q[2].to_bits() as u64) << 32,
        s as i16 as i64 as u64,
        oc as u64 ^ (os as u64) << 8 ^ (oi as u64) << 24,
        u,
        f.to_bits() as u64,
    ];
    let names = [
        "char",
        "double",
        "int",
        "Quad x|w",
        "Quad y|z",
        "short",
        "Odd struct",
        "u64",
        "float",
    ];
    for k in 0..9 {
        assert_eq!(
            got[k], want[k],
            "parameter {}: got {:#x}, want {:#x}",
            names[k], got[k], want[k]
        );
    }
}
