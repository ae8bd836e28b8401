//! Quantized models on the CPU reference: int8 keeps greedy text, int4 keeps perplexity,
//! quantized files round-trip and refuse other models.

mod common;

use common::*;
use lav2::generate::{self, SamplingOptions};
use lav2::model::{LoadOptions, Model};
use lav2::quant::QuantFormat;

fn load_q(dir: &std::path::Path, quant: QuantFormat) -> lav2::session::Session {
    let opts = LoadOptions {
        quant,
        ..Default::default()
    };
    cpu_session(Model::load(dir, None, &opts).unwrap())
}

/// exp(mean negative log-likelihood) of `tokens[1..]`, each given the tokens before it.
fn perplexity(s: &mut lav2::session::Session, tokens: &[u32]) -> f64 {
    let logits = s.forward(tokens, 0, true).unwrap();
    let vocab = logits.len() / tokens.len();
    let mut nll = 0f64;
    for i in 0..tokens.len() - 1 {
        let row = &logits[i * vocab..(i + 1) * vocab];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = row
            .iter()
            .map(|&v| (v as f64 - max).exp())
            .sum::<f64>()
            .ln()
            + max;
        nll += lse - row[tokens[i + 1] as usize] as f64;
    }
    (nll / (tokens.len() - 1) as f64).exp()
}

/// Prompt and HF's greedy continuation of each TinyStories case, as one sequence.
fn story_sequences(root: &std::path::Path) -> Vec<(Vec<u32>, Vec<u32>)> {
    let expected = read_json(&root.join("tinystories656K/expected.json"));
    expected["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (ids(&c["prompt_ids"]), ids(&c["greedy_ids"])))
        .collect()
}

fn top2(row: &[f32]) -> (usize, usize) {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    (idx[0], idx[1])
}

/// "Once upon a time": int8 greedy equals f32 greedy for 20 tokens. For every prompt, each of
/// the 20 steps (teacher-forced on the f32 text) must pick f32's token unless the f32 top-2
/// margin is within the int8 logit error at that step: only a genuine near-tie may flip.
/// Measured: "Tom and Sue went to the" has such a tie at its 15th token (f32 margin 0.013,
/// int8 logit error 0.10), so its free-running text differs from there on.
#[test]
fn int8_greedy_matches_f32_for_20_tokens() {
    let Some(root) = conformance() else { return };
    let dir = root.join("tinystories656K");
    let mut f32s = load_q(&dir, QuantFormat::None);
    let mut int8 = load_q(&dir, QuantFormat::Int8);
    let opts = SamplingOptions {
        temperature: 0.0,
        max_new_tokens: 20,
        ignore_eos: true,
        ..Default::default()
    };
    for (i, (prompt, _)) in story_sequences(&root).into_iter().enumerate() {
        let a = generate::generate(&mut f32s, &prompt, &opts, |_| Ok(())).unwrap();
        if i == 0 {
            let b = generate::generate(&mut int8, &prompt, &opts, |_| Ok(())).unwrap();
            assert_eq!(a.ids, b.ids, "prompt {prompt:?}");
        }
        let seq = [prompt.as_slice(), &a.ids].concat();
        let la = f32s.forward(&seq, 0, true).unwrap();
        let lb = int8.forward(&seq, 0, true).unwrap();
        let vocab = la.len() / seq.len();
        for step in 0..a.ids.len() {
            let r = prompt.len() - 1 + step;
            let (ra, rb) = (
                &la[r * vocab..(r + 1) * vocab],
                &lb[r * vocab..(r + 1) * vocab],
            );
            let (best, second) = top2(ra);
            assert_eq!(best as u32, a.ids[step]);
            if top2(rb).0 != best {
                let margin = ra[best] - ra[second];
                let err = max_abs_diff(ra, rb);
                assert!(
                    margin <= err,
                    "prompt {prompt:?} step {step}: int8 flips a margin of {margin} (error {err})"
                );
            }
        }
    }
}

/// Measured on TinyStories-656K over 130 tokens of TinyStories text (llama2.c's reference story
/// and HF's two greedy stories):
/// f32 9.82, int8 9.81, int4 10.60 (+8 %), int4 with zero points 11.09 (+13 %: lower weight
/// error, 0.100 vs 0.115 relative, but the asymmetric grid shifts small weights; a 656K-parameter
/// model is sensitive to it). Deterministic, so the bounds sit a few points above what was
/// measured; a broken format (nibble order, scale, zero point) lands far above them.
const INT4_PPL_RATIO: f64 = 1.12;
const INT4_ZP_PPL_RATIO: f64 = 1.18;

#[test]
fn int4_keeps_perplexity_within_the_bound() {
    let Some(root) = conformance() else { return };
    let dir = root.join("tinystories656K");
    let text = read_json(&root.join("stories260K/expected.json"))["text"]
        .as_str()
        .unwrap()
        .to_string();
    let tok = lav2::io::tokenizer::Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let mut seqs = vec![[vec![1], tok.encode(&text).unwrap()].concat()];
    seqs.extend(
        story_sequences(&root)
            .into_iter()
            .map(|(p, g)| [p, g].concat()),
    );
    let total: usize = seqs.iter().map(|s| s.len() - 1).sum();
    assert!(total > 100, "{total} predicted tokens");
    // Pooled over every predicted token of the three texts.
    let ppl = |format: QuantFormat| -> f64 {
        let mut s = load_q(&dir, format);
        let nll: f64 = seqs
            .iter()
            .map(|t| perplexity(&mut s, t).ln() * (t.len() - 1) as f64)
            .sum();
        (nll / total as f64).exp()
    };
    let base = ppl(QuantFormat::None);
    let int8 = ppl(QuantFormat::Int8);
    let int4 = ppl(QuantFormat::Int4 { zero_point: false });
    let int4z = ppl(QuantFormat::Int4 { zero_point: true });
    eprintln!("perplexity: f32 {base:.4}, int8 {int8:.4}, int4 {int4:.4}, int4-zp {int4z:.4}");
    assert!(
        base < 20.0,
        "the f32 model itself should model this text: {base}"
    );
    assert!(int8 <= base * 1.01, "int8 {int8} vs f32 {base}");
    assert!(int4 <= base * INT4_PPL_RATIO, "int4 {int4} vs f32 {base}");
    assert!(
        int4z <= base * INT4_ZP_PPL_RATIO,
        "int4-zp {int4z} vs f32 {base}"
    );
}

#[test]
fn quantized_file_round_trips_and_refuses_other_weights() {
    let Some(root) = conformance() else { return };
    let case = root.join("adapter-v2/case-3");
    let (base, adapter) = (case.join("base"), case.join("adapter"));
    let file = scratch("quantized").join("int4.safetensors");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lav2"))
        .args([
            "quantize",
            "--model",
            base.to_str().unwrap(),
            "--adapter",
            adapter.to_str().unwrap(),
        ])
        .args([
            "--quant",
            "int4",
            "--zero-point",
            "--out",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens = ids(&read_json(&case.join("expected.json"))["tokens"]);
    let at_load = LoadOptions {
        quant: QuantFormat::Int4 { zero_point: true },
        ..Default::default()
    };
    let from_file = LoadOptions {
        quantized_file: Some(file.clone()),
        ..Default::default()
    };
    let mut a = cpu_session(Model::load(&base, Some(&adapter), &at_load).unwrap());
    let mut b = cpu_session(Model::load(&base, Some(&adapter), &from_file).unwrap());
    assert_eq!(
        a.forward(&tokens, 0, true).unwrap(),
        b.forward(&tokens, 0, true).unwrap()
    );
    // Quantized, the adapter case stays near its float32 logits (random weights: int4 measured
    // 0.22 relative L2, int8 0.01).
    let (_, want) = read_tensor(&case.join("expected.safetensors"), "logits_text_only");
    let err = rel_l2(&a.forward(&tokens, 0, true).unwrap(), &want);
    assert!(err < 0.3, "int4 relative L2 {err}");
    let int8 = LoadOptions {
        quant: QuantFormat::Int8,
        ..Default::default()
    };
    let mut c = cpu_session(Model::load(&base, Some(&adapter), &int8).unwrap());
    let err = rel_l2(&c.forward(&tokens, 0, true).unwrap(), &want);
    assert!(err < 0.03, "int8 relative L2 {err}");
    // A NaN scale (it multiplies a whole group of weights) is refused by name.
    let bytes = std::fs::read(&file).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let target = st
        .names()
        .into_iter()
        .find(|n| n.ends_with(".scales"))
        .unwrap()
        .to_string();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    for (n, _, _, data) in owned.iter_mut() {
        if *n == target {
            data[2..4].copy_from_slice(&half::f16::NAN.to_le_bytes());
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, d, s, data)| {
            let v = safetensors::tensor::TensorView::new(*d, s.clone(), data).unwrap();
            (n.clone(), v)
        })
        .collect();
    let bad = file.with_file_name("int4-nan-scale.safetensors");
    safetensors::serialize_to_file(views, meta.metadata().clone(), &bad).unwrap();
    let nan_file = LoadOptions {
        quantized_file: Some(bad),
        ..Default::default()
    };
    let err = format!(
        "{:#}",
        Model::load(&base, Some(&adapter), &nan_file).err().unwrap()
    );
    assert!(
        err.contains(&format!("'{target}'")) && err.contains("finite"),
        "{err}"
    );
    // Without the adapter the folded weights differ: the file is refused by name.
    let err = Model::load(&base, None, &from_file)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("made from different weights"), "{err}");
}
