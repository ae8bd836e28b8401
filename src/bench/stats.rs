//! The measurement primitives every benchmark shares: medians with their spread, paired
//! overheads that cannot come out negative from noise, cold runs after a cache flush, and the
//! one line format a case is reported in.

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use super::EMULATED_LABEL;
use crate::backend::program::Program;
use crate::backend::Backend;
use crate::graph::{Elem, Graph, Op};

/// The summary of repeated measurements that every benchmark of lav2 reports (`lav2 bench` and
/// `cargo bench`): the median, which one slow run (a page fault, a clock change) cannot move as
/// it moves a mean, and which unlike a best is what a run typically takes; and the spread as
/// the smallest and largest sample — with the few repeats a benchmark can afford, percentiles
/// would be those samples anyway.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: usize,
}

impl Stats {
    /// Summarizes `samples`; an even count's median is the mean of the two middle ones.
    /// Panics on none: every caller measures at least once (`--repeats` is checked positive).
    pub fn of(samples: &[f64]) -> Stats {
        assert!(!samples.is_empty(), "no samples to summarize");
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Stats {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            samples: n,
        }
    }

    /// Whether `x` lies within the spread, ends included.
    pub fn spans(&self, x: f64) -> bool {
        self.min <= x && x <= self.max
    }
}

/// What one run of a benchmark case moves or computes, for the rate printed beside its time.
#[derive(Clone, Copy, Debug)]
pub enum Work {
    /// Bytes read plus written: the rate is GB/s, to compare with the copy bandwidth.
    Bytes(f64),
    /// Floating-point operations (a multiply-add is 2): the rate is TFLOP/s.
    Flops(f64),
}

/// One line of `cargo bench` output: the case, its median time with the spread over `what`
/// (e.g. "cold runs"), and the rate at the median; on an emulator, [`EMULATED_LABEL`].
pub fn case_line(name: &str, ms: &Stats, what: &str, work: Work, emulated: bool) -> String {
    let seconds = ms.median / 1e3;
    let rate = match work {
        Work::Bytes(b) => format!("{:.1} GB/s", b / seconds / 1e9),
        Work::Flops(f) => format!("{:.2} TFLOP/s", f / seconds / 1e12),
    };
    let label = if emulated {
        format!("  [{EMULATED_LABEL}]")
    } else {
        String::new()
    };
    format!(
        "{name:<52} median {:.4} ms (min {:.4} … max {:.4}, {} {what})  {rate} at the median{label}",
        ms.median, ms.min, ms.max, ms.samples
    )
}

/// Fewer interleaved pairs than this are reported as within noise whatever their sign: pairs of
/// pure noise all agree in sign (and so resolve) with chance 2^(1−n) — 25 % for 3 pairs, 6 % for
/// 5 — so a handful cannot tell an overhead from noise.
pub const MIN_PAIRS: usize = 5;

/// What one variant adds to another's time, from runs taken in pairs (one of each, alternated in
/// the same loop, so a clock or load change hits both alike): per pair `with / without − 1`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PairedOverhead {
    /// Median and spread of the per-pair fractions.
    pub per_pair: Stats,
    /// The spread includes 0 (or there are fewer than [`MIN_PAIRS`] pairs): the difference is
    /// not told apart from noise, so no number is reported for it.
    pub within_noise: bool,
}

impl PairedOverhead {
    /// `without_ms[i]` and `with_ms[i]` were measured side by side.
    pub fn of(without_ms: &[f64], with_ms: &[f64]) -> PairedOverhead {
        assert_eq!(without_ms.len(), with_ms.len(), "unpaired samples");
        let fractions: Vec<f64> = without_ms
            .iter()
            .zip(with_ms)
            .map(|(without, with)| with / without - 1.0)
            .collect();
        let per_pair = Stats::of(&fractions);
        PairedOverhead {
            per_pair,
            within_noise: fractions.len() < MIN_PAIRS || per_pair.spans(0.0),
        }
    }

    /// The overhead to report: the median fraction, or `None` within noise — so noise alone
    /// (pairs that disagree in sign) never shows as a negative overhead.
    pub fn resolved(&self) -> Option<f64> {
        (!self.within_noise).then_some(self.per_pair.median)
    }
}

/// Bytes a cache flush touches when the backend does not say how large its last-level cache is:
/// more than twice the L2 of any current GPU (50 MiB on an H100).
pub const DEFAULT_FLUSH_BYTES: usize = 256 << 20;

/// Evicts the device's last-level cache before a timed kernel run (as llm.c's
/// `benchmark_kernel` does), so the run reads its operands from memory as it would inside a
/// model, where the other layers' weights pushed them out, and not from the cache the previous
/// repeat left them in. It is a graph of the backend's own ops (one add over buffers that
/// together span twice the cache, [`crate::backend::Measure::cache_bytes`], or [`DEFAULT_FLUSH_BYTES`]).
/// On an emulator it does nothing: there is no cache, and its times are not timings.
pub struct CacheFlush {
    program: Option<Program>,
    /// Bytes the flush reads and writes (0 on an emulator).
    pub bytes: usize,
}

impl CacheFlush {
    pub fn new(backend: &mut dyn Backend) -> Result<CacheFlush> {
        if backend.is_emulated() {
            return Ok(CacheFlush {
                program: None,
                bytes: 0,
            });
        }
        let bytes = backend.cache_bytes().map_or(DEFAULT_FLUSH_BYTES, |c| 2 * c);
        // The two inputs alone span `bytes`, even if the planner gave the sum an input's slot.
        let n = bytes.div_ceil(2 * backend.act_bytes());
        let mut g = Graph::new("cache_flush");
        let a = g.input("a", &[1, n], Elem::Act);
        let b = g.input("b", &[1, n], Elem::Act);
        let out = g.activation("sum", &[1, n]);
        g.push(Op::Add { a, b, out });
        g.mark_output(out);
        let program = Program::new(backend, g)?;
        let zeros = vec![0f32; n];
        program.set_f32(backend, "a", &zeros)?;
        program.set_f32(backend, "b", &zeros)?;
        Ok(CacheFlush {
            program: Some(program),
            bytes,
        })
    }

    /// Flushes and waits for it, so a timer started next measures only what follows.
    pub fn run(&self, backend: &mut dyn Backend) -> Result<()> {
        if let Some(p) = &self.program {
            p.run(backend)?;
            backend.synchronize()?;
        }
        Ok(())
    }

    /// The time of `work` in ms from a cold cache: flush, then `work`, then wait for the device.
    pub fn time_cold_ms(
        &self,
        backend: &mut dyn Backend,
        work: impl FnOnce(&mut dyn Backend) -> Result<()>,
    ) -> Result<f64> {
        self.run(backend)?;
        let t = Instant::now();
        work(backend)?;
        backend.synchronize()?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    }
}
