// Lane-by-lane comparisons read clearest as index loops.
#![allow(clippy::needless_range_loop)]
//! Warp order and `Options.seed` (tests/kernels/seeds.cu): the order ready warps run in is seeded;
//! the same seed gives the same order (and result), different seeds give different ones.

mod common;
use common::*;

fn run_order(e: &mut Emu, seed: u64) -> (Vec<u32>, u32) {
    let (blocks, bs, rounds) = (8u32, 128u32, 3usize);
    let warps = (blocks * bs / 32) as usize;
    let counter = e.upload(&[0u32]);
    let order = e.alloc::<u32>(warps * rounds);
    let last = e.upload(&[u32::MAX]);
    e.run(
        "warp_order",
        &Launch::new(blocks, bs).seed(seed),
        &[
            Arg::P(counter),
            Arg::P(order),
            Arg::P(last),
            Arg::I32(rounds as i32),
        ],
    );
    let o = e.read::<u32>(order, warps * rounds);
    // Whatever the order, every warp took exactly `rounds` tickets.
    let mut counts = vec![0usize; warps];
    for &w in &o {
        assert!(
            (w as usize) < warps,
            "order holds {w:#x}: a ticket slot never written"
        );
        counts[w as usize] += 1;
    }
    assert!(
        counts.iter().all(|&c| c == rounds),
        "tickets per warp {counts:?}"
    );
    let l = e.read::<u32>(last, 1)[0];
    assert_eq!(
        l,
        o[o.len() - 1],
        "the last writer is the warp with the last ticket"
    );
    (o, l)
}

#[test]
fn same_seed_same_order() {
    let Some(mut e) = Emu::new("seeds") else {
        return;
    };
    let base = base_seed() % 1000 + 1;
    for s in base..base + 3 {
        let (o1, l1) = run_order(&mut e, s);
        let (o2, l2) = run_order(&mut e, s);
        assert_eq!(
            o1, o2,
            "seed {s}: two launches with the same Options.seed ran warps in different orders"
        );
        assert_eq!(
            l1, l2,
            "seed {s}: last writer differs between two launches with the same Options.seed"
        );
    }
}

#[test]
fn different_seeds_different_orders() {
    let Some(mut e) = Emu::new("seeds") else {
        return;
    };
    let base = base_seed() % 1000 + 1;
    println!("emulator seeds {base}..{}", base + 8);
    let mut orders = Vec::new();
    let mut lasts = Vec::new();
    for s in base..base + 8 {
        let (o1, l1) = run_order(&mut e, s);
        orders.push(o1);
        lasts.push(l1);
    }
    let mut distinct = orders.clone();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() >= 4,
        "8 seeds gave only {} distinct warp orders",
        distinct.len()
    );
    let mut dl = lasts.clone();
    dl.sort();
    dl.dedup();
    assert!(
        dl.len() >= 2,
        "the last writer was warp {} for all 8 seeds: the seed does not change the order",
        lasts[0]
    );
}
