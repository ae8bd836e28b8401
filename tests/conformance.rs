//! Every case in `../shared/conformance`, on the CPU reference backend.

mod common;

use common::*;
use lav2::generate::{self, SamplingOptions};
use lav2::io::image::load_image;
use lav2::io::tokenizer::Tokenizer;
use lav2::model::config::ChannelOrder;

#[test]
fn stories260k_greedy_matches_llama2c_byte_for_byte() {
    let Some(root) = conformance() else { return };
    let dir = root.join("stories260K");
    let expected = read_json(&dir.join("expected.json"));
    let mut s = cpu_session(load(&dir, None));
    let gen = generate::generate(&mut s, &ids(&expected["prompt_ids"]), &greedy(200), |_| {
        Ok(())
    })
    .unwrap();
    assert_eq!(gen.ids, ids(&expected["greedy_ids"]));
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let text = tok.decode(&gen.ids).unwrap();
    assert_eq!(text, expected["text"].as_str().unwrap());
    // The streamed pieces concatenate to the same bytes.
    let mut stream = tok.stream();
    let mut streamed = String::new();
    for &id in &gen.ids {
        streamed += &stream.step(id).unwrap();
    }
    streamed += &stream.finish().unwrap();
    assert_eq!(streamed, text);
}

#[test]
fn tinystories656k_matches_hugging_face() {
    let Some(root) = conformance() else { return };
    let dir = root.join("tinystories656K");
    let expected = read_json(&dir.join("expected.json"));
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let mut s = cpu_session(load(&dir, None));
    for case in expected["cases"].as_array().unwrap() {
        let prompt_ids = ids(&case["prompt_ids"]);
        let mut encoded = vec![1];
        encoded.extend(tok.encode(case["prompt"].as_str().unwrap()).unwrap());
        assert_eq!(encoded, prompt_ids, "tokenizing {:?}", case["prompt"]);
        let want = ids(&case["greedy_ids"]);
        let gen = generate::generate(&mut s, &prompt_ids, &greedy(want.len()), |_| Ok(())).unwrap();
        assert_eq!(gen.ids, want, "prompt {:?}", case["prompt"]);
        assert_eq!(
            tok.decode(&gen.ids).unwrap(),
            case["text"].as_str().unwrap()
        );
        let logits = s.forward(&prompt_ids, 0, false).unwrap();
        let first5: Vec<f32> = case["last_logits_first5"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert!(max_abs_diff(&logits[..5], &first5) <= 1e-3);
    }
    let (shape, want) = read_tensor(
        &dir.join("expected_logits_once_upon_a_time.safetensors"),
        "logits",
    );
    let prompt = ids(&expected["cases"][0]["prompt_ids"]);
    let got = s.forward(&prompt, 0, true).unwrap();
    assert_eq!(shape, vec![prompt.len(), 2048]);
    let err = max_abs_diff(&got, &want);
    assert!(err <= 1e-3, "per-position logits differ by {err}");
}

#[test]
fn llama_tokenizer_matches_sentencepiece_on_all_cases() {
    let Some(root) = conformance() else { return };
    let dir = root.join("llama-tokenizer");
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let cases = read_json(&dir.join("cases.json"));
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 57);
    let mut failures = Vec::new();
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let mut got = Vec::new();
        if c["bos"].as_bool().unwrap() {
            got.push(1);
        }
        got.extend(tok.encode(text).unwrap());
        if got != ids(&c["ids"]) {
            failures.push(format!("{text:?}: got {got:?}, want {:?}", c["ids"]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn clip_preprocessing_is_within_tolerance_in_both_channel_orders() {
    let Some(root) = conformance() else { return };
    let dir = root.join("clip-preprocess");
    for (order, file) in [
        (ChannelOrder::Rgb, "expected_rgb.safetensors"),
        (ChannelOrder::Bgr, "expected_bgr.safetensors"),
    ] {
        let got = load_image(&dir.join("franz-kafka.jpg"), 224, order).unwrap();
        let (shape, want) = read_tensor(&dir.join(file), "pixels");
        assert_eq!(shape, vec![3, 224, 224]);
        let mean = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / got.len() as f32;
        let max = max_abs_diff(&got, &want);
        assert!(
            mean <= 0.01 && max <= 0.15,
            "{order:?}: mean {mean}, max {max}"
        );
    }
}

fn adapter_cases(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(root.join("adapter-v2"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no adapter-v2 cases");
    v
}

#[test]
fn adapter_v2_cases_match_the_authors_model() {
    let Some(root) = conformance() else { return };
    for case in adapter_cases(&root) {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let exp = case.join("expected.safetensors");
        let meta = read_json(&case.join("expected.json"));
        let tokens = ids(&meta["tokens"]);
        let mut s = cpu_session(load(&case.join("base"), Some(&case.join("adapter"))));
        let (_, pixels) = read_tensor(&exp, "pixels");
        let vq = s.visual_query(&pixels).unwrap();
        let (_, want_vq) = read_tensor(&exp, "visual_query");
        let err = max_abs_diff(&vq, &want_vq);
        assert!(err <= 1e-3, "{name}: visual_query differs by {err}");

        s.set_visual_query(Some(&vq)).unwrap();
        let (_, want) = read_tensor(&exp, "logits");
        let err = max_abs_diff(&s.forward(&tokens, 0, true).unwrap(), &want);
        assert!(err <= 1e-3, "{name}: logits differ by {err}");
        // The reference generated a fixed 8 tokens, EOS included.
        let opts = SamplingOptions {
            ignore_eos: true,
            ..greedy(8)
        };
        let gen = generate::generate(&mut s, &tokens, &opts, |_| Ok(())).unwrap();
        assert_eq!(
            gen.ids,
            ids(&meta["greedy_with_image"]),
            "{name}: greedy with image"
        );

        s.set_visual_query(None).unwrap();
        let (_, want) = read_tensor(&exp, "logits_text_only");
        let err = max_abs_diff(&s.forward(&tokens, 0, true).unwrap(), &want);
        assert!(err <= 1e-3, "{name}: text-only logits differ by {err}");

        let mut base = cpu_session(load(&case.join("base"), None));
        let (_, want) = read_tensor(&exp, "logits_base");
        let err = max_abs_diff(&base.forward(&tokens, 0, true).unwrap(), &want);
        assert!(err <= 1e-3, "{name}: base logits differ by {err}");
    }
}

/// Byte-fallback pieces (emoji, CJK split into <0xNN> tokens) stream out as whole characters:
/// no replacement character mid-stream, and the pieces concatenate to the full decode.
#[test]
fn streaming_detokenization_handles_byte_fallback() {
    let Some(root) = conformance() else { return };
    let tok = Tokenizer::load(&root.join("llama-tokenizer/tokenizer.json")).unwrap();
    for text in [
        "Hello 🦙 world",
        "宇宙 and 🚀🚀",
        " leading space, tabs\tand\nnewlines",
        "Führer ½",
    ] {
        let ids = tok.encode(text).unwrap();
        let full = tok.decode(&ids).unwrap();
        assert_eq!(full, text);
        let mut stream = tok.stream();
        let mut out = String::new();
        for &id in &ids {
            let piece = stream.step(id).unwrap();
            assert!(
                !piece.contains('\u{FFFD}'),
                "{text:?}: partial character streamed"
            );
            out += &piece;
        }
        out += &stream.finish().unwrap();
        assert_eq!(out, full, "{text:?}");
    }
}
