//! `lav2 generate` streams exactly the text that `--json` reports, and that text is what
//! follows the prompt: decode(prompt + generated) minus decode(prompt), with byte-fallback
//! pieces that never complete a character as U+FFFD (one per maximal invalid sequence).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn lav2(args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_lav2"))
        .args(args)
        .output()
        .expect("run lav2");
    assert!(
        out.status.success(),
        "lav2 {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An independent decoder for the LLaMA sentencepiece tokenizer.json (Replace ▁ → space,
/// byte fallback, fuse, strip one leading space): piece bytes, then one lossy UTF-8 decode.
struct Pieces {
    by_id: Vec<String>,
}

impl Pieces {
    fn load(path: &Path) -> Pieces {
        let json = read_json(path);
        let vocab = json["model"]["vocab"].as_object().unwrap();
        let mut by_id = vec![String::new(); vocab.len()];
        for (piece, id) in vocab {
            by_id[id.as_u64().unwrap() as usize] = piece.clone();
        }
        Pieces { by_id }
    }

    fn is_byte(&self, id: u32) -> bool {
        let p = &self.by_id[id as usize];
        p.len() == 6 && p.starts_with("<0x")
    }

    fn text(&self, ids: &[u32]) -> String {
        let mut b = Vec::new();
        for &id in ids {
            let p = &self.by_id[id as usize];
            if p == "<s>" || p == "</s>" || p == "<unk>" {
                continue;
            }
            if self.is_byte(id) {
                b.push(u8::from_str_radix(&p[3..5], 16).unwrap());
            } else {
                b.extend_from_slice(p.replace('\u{2581}', " ").as_bytes());
            }
        }
        if b.first() == Some(&b' ') {
            b.remove(0);
        }
        String::from_utf8_lossy(&b).into_owned()
    }
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    ids(v)
}

/// For one request: the streamed stdout, and the JSON's prompt ids, generated ids and text.
fn run_both(args: &[&str]) -> (String, Vec<u32>, Vec<u32>, String) {
    let streamed = String::from_utf8(lav2(args)).expect("the stream is UTF-8");
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let v: serde_json::Value = serde_json::from_slice(&lav2(&json_args)).unwrap();
    (
        streamed,
        ids_of(&v["prompt_ids"]),
        ids_of(&v["ids"]),
        v["text"].as_str().unwrap().to_string(),
    )
}

#[test]
fn streamed_text_equals_the_json_text_over_seeded_hot_runs() {
    let Some(root) = conformance() else { return };
    let dir = root.join("stories260K");
    let pieces = Pieces::load(&dir.join("tokenizer.json"));
    let model = dir.to_str().unwrap();
    let (mut byte_tokens, mut replacements) = (0, 0);
    // Hot enough that byte pieces (half of this vocabulary) are sampled, complete or not.
    for (seed, prompt, temperature) in [
        (1, "Once upon a time", "2.5"),
        (2, "", "6"),
        (3, "Lily saw a", "2.5"),
        (4, "Once upon a time", "6"),
        (5, "The", "4"),
        (6, "", "2.5"),
        (7, "Tom", "6"),
        (8, "Once upon a time there was", "4"),
    ] {
        let seed = seed.to_string();
        let (streamed, prompt_ids, gen, text) = run_both(&[
            "generate",
            "--model",
            model,
            "--prompt",
            prompt,
            "--temperature",
            temperature,
            "--top-p",
            "1",
            "--seed",
            &seed,
            "--ignore-eos",
            "--max-new-tokens",
            "120",
        ]);
        assert_eq!(gen.len(), 120, "--ignore-eos: all tokens generated");
        // The stream ends with one newline after the text.
        assert_eq!(
            streamed,
            format!("{text}\n"),
            "seed {seed}, prompt {prompt:?}: stream and JSON differ"
        );
        let all: Vec<u32> = prompt_ids.iter().chain(&gen).copied().collect();
        let full = pieces.text(&all);
        let before = pieces.text(&prompt_ids);
        assert_eq!(before, prompt, "the prompt decodes to itself");
        assert_eq!(
            full.strip_prefix(&before),
            Some(text.as_str()),
            "seed {seed}: text is not decode(prompt + generated) minus decode(prompt)"
        );
        byte_tokens += gen.iter().filter(|&&id| pieces.is_byte(id)).count();
        replacements += text.matches('\u{FFFD}').count();
    }
    eprintln!("byte-fallback tokens: {byte_tokens}, U+FFFD in the texts: {replacements}");
    assert!(byte_tokens > 0, "no byte-fallback token was sampled");
    assert!(replacements > 0, "no incomplete byte sequence was sampled");
}

#[test]
fn the_first_piece_after_a_prompt_keeps_its_space() {
    let Some(root) = conformance() else { return };
    let dir = root.join("stories260K");
    let model = dir.to_str().unwrap();
    let args = [
        "generate",
        "--model",
        model,
        "--prompt",
        "Once upon a time there was",
        "--temperature",
        "0",
        "--max-new-tokens",
        "10",
    ];
    let (streamed, prompt_ids, gen, text) = run_both(&args);
    assert!(text.starts_with(" a little"), "{text:?}");
    assert_eq!(streamed, format!("{text}\n"));
    // The same as the tokenizers crate's own decode, for text without stray bytes.
    let tok = lav2::io::tokenizer::Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let all: Vec<u32> = prompt_ids.iter().chain(&gen).copied().collect();
    assert_eq!(
        tok.decode(&all).unwrap(),
        tok.decode(&prompt_ids).unwrap() + &text
    );
    // With an empty prompt the story starts without a space (the greedy conformance text).
    let (streamed, _, _, text) = run_both(&[
        "generate",
        "--model",
        model,
        "--prompt",
        "",
        "--temperature",
        "0",
        "--max-new-tokens",
        "5",
    ]);
    assert!(text.starts_with("Once upon"), "{text:?}");
    assert_eq!(streamed, format!("{text}\n"));
}

/// The library's stream on hand-made byte sequences: a complete character that a following
/// stray byte used to turn into U+FFFD, an unfinished character at the end, and a character
/// split across the prompt and the generated ids.
#[test]
fn byte_fallback_sequences_stream_as_they_end() {
    let Some(root) = conformance() else { return };
    let dir = root.join("stories260K");
    let tok = lav2::io::tokenizer::Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    // <0xNN> is id NN + 3 in the llama2.c vocabularies.
    let b = |x: u8| x as u32 + 3;
    let euro = [b(0xE2), b(0x82), b(0xAC)];
    let cases: Vec<(Vec<u32>, Vec<u32>, &str)> = vec![
        (vec![1], euro.to_vec(), "€"),
        // € then a stray lead byte, then a normal piece: the € stays.
        (
            vec![1],
            [&euro[..], &[b(0xE2)], &tok.encode("dog").unwrap()].concat(),
            "€\u{FFFD} dog",
        ),
        // An unfinished character at the end.
        (vec![1], vec![b(0x41), b(0xE2), b(0x82)], "A\u{FFFD}"),
        // Completed by the generated bytes.
        (vec![1, b(0xE2)], vec![b(0x82), b(0xAC)], "€"),
    ];
    for (prompt, gen, want) in cases {
        assert_eq!(tok.continuation(&prompt, &gen).unwrap(), want, "{gen:?}");
        let mut stream = tok.stream_after(&prompt);
        let mut out = String::new();
        for (i, &id) in gen.iter().enumerate() {
            let piece = stream.step(id).unwrap();
            out += &piece;
            assert!(
                want.starts_with(&out),
                "step {i}: streamed {out:?}, want {want:?}"
            );
        }
        out += &stream.finish().unwrap();
        assert_eq!(out, want);
    }
}
