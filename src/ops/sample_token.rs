//! Picks the next token from each row of f32 logits on the device, so a decode step copies back
//! one id per sequence: argmax when the temperature is 0, else the authors' top-p rule with that
//! row's uniform number. Temperature and top-p are a graph input (`params` = [T, p]) like the
//! uniform draw, so one decode program — and one captured CUDA graph — serves every setting
//! (kernels/sample_token.cu). A NaN logit never wins; a row without a finite largest logit gives
//! -1.

use anyhow::{bail, Result};

use super::case::{rnd, Case, Data, Sizes};
use super::kernels::geometry::sample_token as geo;
use super::lowering::{dim, Arg, DevElem, Lowering, Step};
use super::shape::Shapes;
use super::{no_scratch, wrong_op, CpuTensors, OpEntry};
use crate::graph::{Elem, Graph, Op};
use crate::rng::Rng;

pub const ENTRY: OpEntry = OpEntry {
    name: "sample_token",
    kernel_files: &["sample_token"],
    check,
    cpu,
    lower,
    scratch_bytes: no_scratch,
    variants: &[],
    cases,
};

/// Largest vocabulary the device sampler takes: masses are 40-bit fixed point summed in 64 bits.
pub const MAX_VOCAB: usize = 1 << 24;

fn check(g: &Graph, op: &Op) -> Result<(), String> {
    let Op::SampleToken {
        logits,
        uniform,
        params,
        out,
    } = op
    else {
        return Err(wrong_op("sample_token", op).to_string());
    };
    let s = Shapes(g);
    let (rows, _) = s.rows_cols(*logits)?;
    s.elem_is(*logits, Elem::F32)?;
    s.elem_is(*uniform, Elem::F32)?;
    s.numel_is(*uniform, rows, "one uniform number per row")?;
    s.elem_is(*params, Elem::F32)?;
    s.numel_is(*params, 2, "the temperature and top-p")?;
    s.elem_is(*out, Elem::I32)?;
    s.numel_is(*out, rows, "one token per row")
}

/// Index of the largest logit, the first one on ties; NaN never wins. `None` when there is no
/// finite largest logit (all NaN or -inf, or a +inf).
pub fn argmax(logits: &[f32]) -> Option<u32> {
    let mut best: Option<usize> = None;
    for (i, &v) in logits.iter().enumerate() {
        if !v.is_nan() && best.is_none_or(|b| v > logits[b]) {
            best = Some(i);
        }
    }
    best.filter(|&b| logits[b].is_finite()).map(|b| b as u32)
}

/// The authors' `sample_top_p`: softmax(logits / T), sort descending, drop tokens whose
/// preceding cumulative probability already exceeds `top_p`, renormalize, draw with `u`. NaN
/// logits carry no probability; `None` as for [`argmax`].
pub fn sample_top_p(logits: &[f32], temperature: f32, top_p: f32, u: f64) -> Option<u32> {
    let max = logits[argmax(logits)? as usize];
    let mut probs: Vec<(f64, u32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let p = if l.is_nan() {
                0.0
            } else {
                (((l - max) / temperature) as f64).exp()
            };
            (p, i as u32)
        })
        .collect();
    let total: f64 = probs.iter().map(|p| p.0).sum();
    for p in probs.iter_mut() {
        p.0 /= total;
    }
    probs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut kept = 0;
    let mut cum = 0.0;
    for p in &probs {
        if cum > top_p as f64 {
            break;
        }
        cum += p.0;
        kept += 1;
    }
    let kept_total: f64 = probs[..kept].iter().map(|p| p.0).sum();
    let target = u * kept_total;
    let mut run = 0.0;
    for p in &probs[..kept] {
        run += p.0;
        if run > target {
            return Some(p.1);
        }
    }
    Some(probs[kept - 1].1)
}

/// The token of one row by the rule of `temperature` (-1 when none can be drawn).
pub fn reference(row: &[f32], temperature: f32, top_p: f32, u: f64) -> i32 {
    let token = if temperature == 0.0 {
        argmax(row)
    } else {
        sample_top_p(row, temperature, top_p, u)
    };
    token.map_or(-1, |t| t as i32)
}

fn cpu(op: &Op, t: &mut CpuTensors) -> Result<()> {
    let Op::SampleToken {
        logits,
        uniform,
        params,
        out,
    } = op
    else {
        return Err(wrong_op("sample_token", op));
    };
    let (logits, uniform, params) = (t.get(*logits)?, t.get(*uniform)?, t.get(*params)?);
    let (temperature, top_p) = (params[0], params[1]);
    crate::sampling::check_sampling(temperature, top_p)?;
    let out = t.take_mut(*out)?;
    let vocab = logits.len() / out.len().max(1);
    for (i, row) in logits.chunks_exact(vocab).enumerate() {
        // The i32 token's bits in the f32 arena.
        out[i] = f32::from_bits(reference(row, temperature, top_p, uniform[i] as f64) as u32);
    }
    Ok(())
}

fn lower(lw: &mut Lowering, op: &Op) -> Result<Vec<Step>> {
    let Op::SampleToken {
        logits,
        uniform,
        params,
        out,
    } = op
    else {
        return Err(wrong_op("sample_token", op));
    };
    let (rows, vocab) = lw.rows_cols(*logits);
    if vocab > MAX_VOCAB {
        bail!("sampling on the device takes at most 2^24 logits a row, not {vocab}");
    }
    let args = vec![
        Arg::Ptr(lw.ptr(*logits, DevElem::F32)?),
        Arg::I32(dim(vocab, "vocab")?),
        Arg::Ptr(lw.ptr(*params, DevElem::F32)?),
        Arg::Ptr(lw.ptr(*uniform, DevElem::F32)?),
        Arg::Ptr(lw.ptr(*out, DevElem::I32)?),
    ];
    // The kernel is written for exactly SP_THREADS threads.
    let grid = (dim(rows, "sampled rows")? as u32, 1, 1);
    Ok(vec![lw.kernel(
        "sample_token_f32",
        grid,
        (geo::SP_THREADS as u32, 1, 1),
        0,
        args,
    )?])
}

/// Logits with a clear winner and a spread tail, so argmax and top-p agree across backends up to
/// the device's 2^-40 mass quantization; some rows hold NaNs, which must never win.
fn logits_row(rng: &mut Rng, vocab: usize, with_nan: bool) -> Vec<f32> {
    let mut row = rnd(rng, vocab, 4.0);
    let winner = (rng.next_u64() % vocab as u64) as usize;
    row[winner] = 9.0;
    if with_nan {
        for _ in 0..3 {
            row[(rng.next_u64() % vocab as u64) as usize] = f32::NAN;
        }
        row[winner] = 9.0;
    }
    row
}

fn cases(rng: &mut Rng, sizes: Sizes) -> Vec<Case> {
    let vocabs = sizes.pick(&[7, 1000, 32000, 128_256], &[7, 1000, 32000]);
    let mut out = Vec::new();
    for vocab in vocabs {
        for (rows, temperature, top_p) in [(1, 0.0f32, 1.0f32), (3, 0.8, 0.9), (2, 1.0, 0.05)] {
            let mut g = Graph::new("sample_token");
            let logits = g.input("logits", &[rows, vocab], Elem::F32);
            let uniform = g.input("uniform", &[rows], Elem::F32);
            let params = g.input("params", &[2], Elem::F32);
            let token = g.activation_i32("token", &[rows]);
            g.push(Op::SampleToken {
                logits,
                uniform,
                params,
                out: token,
            });
            g.mark_output(token);
            let mut values = Vec::new();
            for r in 0..rows {
                values.extend(logits_row(rng, vocab, r == 1));
            }
            let uniforms = (0..rows).map(|_| rng.uniform() as f32).collect();
            let name = format!("sample_token vocab {vocab} rows {rows} T {temperature} p {top_p}");
            // Tokens are compared as numbers: they must be equal.
            out.push(
                Case::new(name, g)
                    .tolerance(0.0)
                    .input("logits", Data::F32(values))
                    .input("uniform", Data::F32(uniforms))
                    .input("params", Data::F32(vec![temperature, top_p])),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_p_keeps_the_smallest_prefix_that_passes_p() {
        // probs ≈ [0.5, 0.3, 0.2]: with p = 0.6 the first two are kept (0.5 ≤ 0.6 before the
        // second), the third is dropped (0.8 > 0.6 before it).
        let logits: Vec<f32> = [0.5f32, 0.3, 0.2].iter().map(|p| p.ln()).collect();
        let mut seen = [0usize; 3];
        let mut rng = Rng::new(7);
        for _ in 0..2000 {
            seen[sample_top_p(&logits, 1.0, 0.6, rng.uniform()).unwrap() as usize] += 1;
        }
        assert_eq!(seen[2], 0);
        let ratio = seen[0] as f64 / seen[1] as f64;
        assert!((ratio - 5.0 / 3.0).abs() < 0.3, "ratio {ratio}");
        // A tiny p keeps only the most likely token.
        assert_eq!(sample_top_p(&logits, 1.0, 0.01, 0.99), Some(0));
    }

    #[test]
    fn a_nan_logit_never_wins() {
        let logits = [f32::NAN, 1.0, 3.0, f32::NAN, 2.0];
        assert_eq!(argmax(&logits), Some(2));
        for u in [0.0, 0.3, 0.7, 0.999] {
            let t = sample_top_p(&logits, 1.0, 1.0, u).unwrap();
            assert!(!logits[t as usize].is_nan(), "u {u} drew the NaN at {t}");
        }
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), None);
        assert_eq!(argmax(&[f32::NEG_INFINITY, 1.0, f32::INFINITY]), None);
        assert_eq!(reference(&[f32::NAN; 4], 0.8, 0.9, 0.5), -1);
        // Ties go to the lowest index, as on the device.
        assert_eq!(argmax(&[1.0, 5.0, 5.0]), Some(1));
    }
}
