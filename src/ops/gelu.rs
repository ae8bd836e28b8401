//! Exact (erf) GELU, `x · Φ(x)`, the vision resampler blocks' activation (kernels/gelu.cu).

use anyhow::Result;

use super::case::{unary_cases, Case, Sizes};
use super::lowering::{unary, Lowering, Step};
use super::shape::Shapes;
use super::{no_scratch, wrong_op, CpuTensors, OpEntry};
use crate::graph::{Graph, Op};
use crate::rng::Rng;

pub const ENTRY: OpEntry = OpEntry {
    name: "gelu",
    kernel_files: &["gelu"],
    check,
    cpu,
    lower,
    scratch_bytes: no_scratch,
    variants: &[],
    cases,
};

fn check(g: &Graph, op: &Op) -> Result<(), String> {
    let Op::Gelu { x, out } = op else {
        return Err(wrong_op("gelu", op).to_string());
    };
    Shapes(g).same_size(*x, *out)
}

/// Exact GELU with the error function evaluated in f64.
pub fn reference(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        let v = v as f64;
        *o = (0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2))) as f32;
    }
}

fn cpu(op: &Op, t: &mut CpuTensors) -> Result<()> {
    let Op::Gelu { x, out } = op else {
        return Err(wrong_op("gelu", op));
    };
    reference(t.get(*x)?, t.take_mut(*out)?);
    Ok(())
}

fn lower(lw: &mut Lowering, op: &Op) -> Result<Vec<Step>> {
    let Op::Gelu { x, out } = op else {
        return Err(wrong_op("gelu", op));
    };
    Ok(vec![unary(lw, "gelu_f16", *x, *out)?])
}

fn cases(rng: &mut Rng, sizes: Sizes) -> Vec<Case> {
    unary_cases("gelu", rng, sizes, |x, out| Op::Gelu { x, out })
}

/// Error function to full f64 precision (W. J. Cody's rational approximations).
#[allow(clippy::excessive_precision)] // the published coefficients, digit for digit
pub fn erf(x: f64) -> f64 {
    let ax = x.abs();
    let r = if ax < 0.5 {
        let t = x * x;
        let p = [
            3.209_377_589_138_469_4e3,
            3.774_852_376_853_020_2e2,
            1.138_641_541_510_501_6e2,
            3.161_123_743_870_565_6,
            1.857_777_061_846_031_5e-1,
        ];
        let q = [
            2.844_236_833_439_170_6e3,
            1.282_616_526_077_372_3e3,
            2.440_246_379_344_441_7e2,
            2.360_129_095_234_412_1e1,
            1.0,
        ];
        let num = (((p[4] * t + p[3]) * t + p[2]) * t + p[1]) * t + p[0];
        let den = (((q[4] * t + q[3]) * t + q[2]) * t + q[1]) * t + q[0];
        return x * num / den;
    } else if ax < 4.0 {
        let p = [
            1.230_339_354_797_997_2e3,
            2.051_078_377_826_071_6e3,
            1.712_047_612_634_070_7e3,
            8.819_522_212_417_690_9e2,
            2.986_351_381_974_001_3e2,
            6.611_919_063_714_163e1,
            8.883_149_794_388_376,
            5.641_884_969_886_701e-1,
            2.153_115_354_744_038_3e-8,
        ];
        let q = [
            1.230_339_354_803_749_4e3,
            3.439_367_674_143_721_6e3,
            4.362_619_090_143_247e3,
            3.290_799_235_733_459_7e3,
            1.621_389_574_566_690_2e3,
            5.371_811_018_620_098_6e2,
            1.176_939_508_913_125e2,
            1.574_492_611_070_983_5e1,
            1.0,
        ];
        let mut num = p[8];
        let mut den = q[8];
        for i in (0..8).rev() {
            num = num * ax + p[i];
            den = den * ax + q[i];
        }
        1.0 - (-ax * ax).exp() * num / den
    } else {
        let t = 1.0 / (ax * ax);
        let p = [
            -6.587_491_615_298_378e-4,
            -1.608_378_514_874_227_5e-2,
            -1.257_817_261_112_292_6e-1,
            -3.603_448_999_498_044_5e-1,
            -3.053_266_349_612_323_4e-1,
            -1.631_538_713_730_709_6e-2,
        ];
        let q = [
            2.335_204_976_268_691_8e-3,
            6.051_834_131_244_132e-2,
            5.278_034_983_140_087e-1,
            1.872_952_849_923_460_4,
            2.568_520_192_289_822,
            1.0,
        ];
        let mut num = p[5];
        let mut den = q[5];
        for i in (0..5).rev() {
            num = num * t + p[i];
            den = den * t + q[i];
        }
        let frac_1_sqrt_pi = 0.564_189_583_547_756_3;
        let v = (frac_1_sqrt_pi + t * num / den) / ax;
        1.0 - (-ax * ax).exp() * v
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::erf;

    #[test]
    fn erf_matches_known_values() {
        // Values from the Abramowitz & Stegun tables.
        for (x, want) in [
            (0.0, 0.0),
            (0.1, 0.112_462_916_018_284_9),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.5, 0.999_999_256_901_627_7),
            (5.0, 0.999_999_999_998_462_5),
        ] {
            assert!(
                (erf(x) - want).abs() < 1e-12,
                "erf({x}) = {} vs {want}",
                erf(x)
            );
            assert!((erf(-x) + want).abs() < 1e-12);
        }
    }
}
