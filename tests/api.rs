//! The public Rust API (`lav2::Engine`, `lav2::Session`) against the command line and the
//! conformance data: the same texts, ids and logits, and typed errors for bad input.

mod common;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;

use lav2::{
    DeviceChoice, Engine, EngineOptions, ErrorKind, Image, SamplingOptions, Session, StopReason,
};

fn cpu() -> EngineOptions {
    EngineOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    }
}

fn stories() -> Option<PathBuf> {
    common::conformance().map(|c| c.join("stories260K"))
}

fn adapter_case(n: usize) -> Option<PathBuf> {
    common::conformance().map(|c| c.join(format!("adapter-v2/case-{n}")))
}

/// What `lav2 generate --json` says for `args`.
fn cli_generate(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_lav2"))
        .arg("generate")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lav2 generate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn generate_all(
    session: &mut Session,
    sampling: &SamplingOptions,
) -> (lav2::Completion, Vec<String>) {
    let mut pieces = Vec::new();
    let done = session
        .generate(sampling, |t| {
            pieces.push(t.text.clone());
            ControlFlow::Continue(())
        })
        .unwrap();
    (done, pieces)
}

#[test]
fn the_story_from_bos_is_llama2c_s_and_the_command_line_s() {
    let Some(dir) = stories() else { return };
    let expected = common::read_json(&dir.join("expected.json"));
    let engine = Engine::load(&dir, None, &cpu()).unwrap();
    let mut s = engine.session().unwrap();
    s.prefill(&[engine.bos_id()]).unwrap();
    let (done, pieces) = generate_all(&mut s, &SamplingOptions::greedy(200));
    assert_eq!(done.ids, common::ids(&expected["greedy_ids"]));
    assert_eq!(done.text, expected["text"].as_str().unwrap());
    assert_eq!(
        pieces.concat(),
        done.text,
        "the streamed pieces add up to the text"
    );

    let prompt = "Once upon a time";
    for (t, p, seed) in [(0.0, 0.75, 0), (0.8, 0.9, 7)] {
        let sampling = SamplingOptions {
            temperature: t,
            top_p: p,
            seed,
            max_new_tokens: 60,
            ignore_eos: false,
        };
        s.reset().unwrap();
        s.prefill_text(prompt).unwrap();
        let (done, _) = generate_all(&mut s, &sampling);
        let cli = cli_generate(&[
            "--model",
            dir.to_str().unwrap(),
            "--prompt",
            prompt,
            "--temperature",
            &t.to_string(),
            "--top-p",
            &p.to_string(),
            "--seed",
            &seed.to_string(),
            "--max-new-tokens",
            "60",
        ]);
        assert_eq!(
            done.text,
            cli["text"].as_str().unwrap(),
            "T={t} top_p={p} seed={seed}"
        );
        assert_eq!(done.ids, common::ids(&cli["ids"]));
        assert_eq!(done.stop.name(), cli["stop_reason"].as_str().unwrap());
    }
}

#[test]
fn stepping_and_reading_logits_give_what_generate_gives() {
    let Some(dir) = stories() else { return };
    let engine = Engine::load(&dir, None, &cpu()).unwrap();
    let mut a = engine.session().unwrap();
    a.prefill_text("The cat").unwrap();
    let (done, _) = generate_all(&mut a, &SamplingOptions::greedy(25));

    let mut b = engine.session().unwrap();
    b.prefill_text("The cat").unwrap();
    let greedy = SamplingOptions::greedy(0);
    let mut stepped = Vec::new();
    for i in 0..25 {
        // Reading the logits in between runs the picked token early; nothing else changes.
        if i % 3 == 1 {
            let logits = b.logits().unwrap().to_vec();
            assert_eq!(logits.len(), engine.vocab_size());
            let best = (0..logits.len())
                .max_by(|&x, &y| logits[x].total_cmp(&logits[y]).then(y.cmp(&x)))
                .unwrap() as u32;
            let id = b.step(&greedy).unwrap();
            assert_eq!(id, best, "greedy picks the largest logit");
            stepped.push(id);
        } else {
            stepped.push(b.step(&greedy).unwrap());
        }
    }
    let eos_at = stepped.iter().position(|&t| t == engine.eos_id());
    assert_eq!(done.ids[..], stepped[..eos_at.unwrap_or(stepped.len())]);
    assert_eq!(
        b.tokens().len(),
        engine.tokenize("The cat", true).unwrap().len() + 25
    );
}

#[test]
fn a_callback_stops_generation_at_its_third_token() {
    let Some(dir) = stories() else { return };
    let engine = Engine::load(&dir, None, &cpu()).unwrap();
    let mut s = engine.session().unwrap();
    s.prefill_text("Once upon a time").unwrap();
    let mut n = 0;
    let done = s
        .generate(&SamplingOptions::greedy(50), |_| {
            n += 1;
            if n == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!((done.ids.len(), done.stop), (3, StopReason::Stopped));
    // The conversation goes on from where it stopped.
    let (more, _) = generate_all(&mut s, &SamplingOptions::greedy(5));
    let mut whole = engine.session().unwrap();
    whole.prefill_text("Once upon a time").unwrap();
    let (all, _) = generate_all(&mut whole, &SamplingOptions::greedy(8));
    assert_eq!([done.ids, more.ids].concat(), all.ids);
}

#[test]
fn pulling_tokens_one_at_a_time_gives_what_generate_gives() {
    let Some(dir) = stories() else { return };
    let engine = Engine::load(&dir, None, &cpu()).unwrap();
    let sampling = SamplingOptions {
        temperature: 0.8,
        top_p: 0.9,
        seed: 3,
        max_new_tokens: 40,
        ignore_eos: false,
    };
    let mut a = engine.session().unwrap();
    a.prefill_text("Once upon a time").unwrap();
    let (want, want_pieces) = generate_all(&mut a, &sampling);

    let mut b = engine.session().unwrap();
    b.prefill_text("Once upon a time").unwrap();
    let mut g = b.start_generation(&sampling).unwrap();
    let mut pieces = Vec::new();
    while let Some(token) = b.next_token(&mut g).unwrap() {
        assert_eq!(g.stop_reason(), None);
        pieces.push(token.text);
    }
    assert_eq!(pieces, want_pieces);
    assert_eq!(g.completion(), Some(want));
    assert_eq!(
        b.next_token(&mut g).unwrap(),
        None,
        "an ended generation stays ended"
    );

    b.reset().unwrap();
    b.prefill_text("Once upon a time").unwrap();
    let mut g = b.start_generation(&sampling).unwrap();
    for _ in 0..3 {
        b.next_token(&mut g).unwrap().unwrap();
    }
    g.stop();
    assert_eq!(b.next_token(&mut g).unwrap(), None);
    let stopped = g.completion().unwrap();
    assert_eq!((stopped.ids.len(), stopped.stop), (3, StopReason::Stopped));
    let bad = SamplingOptions {
        top_p: 0.0,
        ..sampling
    };
    assert_eq!(kind_of(b.start_generation(&bad)).0, ErrorKind::BadInput);
}

#[test]
fn an_adapter_answers_about_its_image_as_the_authors_code_does() {
    let Some(case) = adapter_case(2) else { return };
    let expected = common::read_json(&case.join("expected.json"));
    let (_, pixels) = common::read_tensor(&case.join("expected.safetensors"), "pixels");
    let (shape, logits) = common::read_tensor(&case.join("expected.safetensors"), "logits");
    let engine = Engine::load(case.join("base"), Some(&case.join("adapter")), &cpu()).unwrap();
    assert!(!engine.has_tokenizer());
    let mut s = engine.session().unwrap();
    s.set_image(Image::Pixels(&pixels)).unwrap();
    s.prefill(&common::ids(&expected["tokens"])).unwrap();
    let vocab = shape[1];
    let last = &logits[(shape[0] - 1) * vocab..];
    let diff = common::max_abs_diff(s.logits().unwrap(), last);
    assert!(diff <= 1e-3, "last-position logits differ by {diff}");
    let (done, pieces) = generate_all(&mut s, &SamplingOptions::greedy(8));
    assert_eq!(done.ids, common::ids(&expected["greedy_with_image"]));
    assert!(done.text.is_empty() && pieces.iter().all(String::is_empty));

    // A JPEG through the CLIP preprocessing gives the command line's answer.
    let jpeg = case.join("../../clip-preprocess/franz-kafka.jpg");
    let ids = "1,156,197,76,57,57,180,104";
    s.reset().unwrap();
    s.set_image(Image::Encoded(&std::fs::read(&jpeg).unwrap()))
        .unwrap();
    s.prefill(&lav2::io::tokenizer::parse_token_ids(ids).unwrap())
        .unwrap();
    let (done, _) = generate_all(&mut s, &SamplingOptions::greedy(8));
    let base = case.join("base");
    let adapter = case.join("adapter");
    let cli = cli_generate(&[
        "--model",
        base.to_str().unwrap(),
        "--adapter",
        adapter.to_str().unwrap(),
        "--image",
        jpeg.to_str().unwrap(),
        "--prompt-ids",
        ids,
        "--temperature",
        "0",
        "--max-new-tokens",
        "8",
    ]);
    assert_eq!(done.ids, common::ids(&cli["ids"]));
    assert_ne!(
        done.ids,
        common::ids(&expected["greedy_with_image"]),
        "another image, another answer"
    );
}

#[test]
fn sessions_of_one_engine_on_two_threads_match_one_at_a_time() {
    let Some(dir) = stories() else { return };
    let engine = Engine::load(&dir, None, &cpu()).unwrap();
    let prompts = ["Once upon a time", "The little dog"];
    let run = |engine: &Engine, prompt: &str| {
        let mut s = engine.session().unwrap();
        s.prefill_text(prompt).unwrap();
        s.generate(&SamplingOptions::greedy(80), |_| ControlFlow::Continue(()))
            .unwrap()
            .text
    };
    let alone: Vec<String> = prompts.iter().map(|p| run(&engine, p)).collect();
    let together: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| {
                let engine = engine.clone();
                scope.spawn(move || run(&engine, p))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(alone, together);
    assert_ne!(alone[0], alone[1]);
}

#[test]
fn a_batch_session_decodes_its_sequences_as_single_ones() {
    let Some(dir) = stories() else { return };
    let single = Engine::load(&dir, None, &cpu()).unwrap();
    let batched = Engine::load(&dir, None, &EngineOptions { batch: 2, ..cpu() }).unwrap();
    let prompts = [
        single.tokenize("The cat sat", true).unwrap(),
        single.tokenize("A big dog", true).unwrap(),
    ];
    assert_eq!(
        prompts[0].len(),
        prompts[1].len(),
        "test prompts of one length"
    );
    let mut b = batched.session().unwrap();
    assert_eq!(
        b.prefill(&prompts[0]).unwrap_err().kind(),
        ErrorKind::BadInput,
        "a batch of two takes prefill_batch"
    );
    b.prefill_batch(&[&prompts[0], &prompts[1]]).unwrap();
    let greedy = SamplingOptions::greedy(0);
    let steps: Vec<Vec<u32>> = (0..12).map(|_| b.step_batch(&greedy).unwrap()).collect();
    for (i, p) in prompts.iter().enumerate() {
        let mut s = single.session().unwrap();
        s.prefill(p).unwrap();
        let alone: Vec<u32> = (0..12).map(|_| s.step(&greedy).unwrap()).collect();
        let together: Vec<u32> = steps.iter().map(|t| t[i]).collect();
        assert_eq!(alone, together, "sequence {i}");
    }
}

fn kind_of<T>(r: lav2::Result<T>) -> (ErrorKind, String) {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => (e.kind(), e.message().to_string()),
    }
}

#[test]
fn bad_input_is_an_error_of_its_kind_naming_what_is_wrong() {
    let Some(dir) = stories() else { return };
    let missing = Path::new("/nonexistent/model");
    let (kind, msg) = kind_of(Engine::load(missing, None, &cpu()));
    assert_eq!(kind, ErrorKind::ModelFile);
    assert!(
        msg.contains("/nonexistent/model") && msg.contains("no such file"),
        "{msg}"
    );
    let (kind, msg) = kind_of(Engine::load(
        &dir,
        None,
        &EngineOptions {
            max_seq_len: Some(0),
            ..cpu()
        },
    ));
    assert_eq!(kind, ErrorKind::BadInput);
    assert!(msg.contains("max_seq_len"), "{msg}");
    assert_eq!(
        kind_of(Engine::load(
            &dir,
            None,
            &EngineOptions { batch: 0, ..cpu() }
        ))
        .0,
        ErrorKind::BadInput
    );

    let engine = Engine::load(
        &dir,
        None,
        &EngineOptions {
            max_seq_len: Some(32),
            ..cpu()
        },
    )
    .unwrap();
    let mut s = engine.session().unwrap();
    let (kind, msg) = kind_of(s.prefill(&[1, 9999]));
    assert_eq!(kind, ErrorKind::BadInput);
    assert!(
        msg.contains("9999") && msg.contains("vocabulary of 512"),
        "{msg}"
    );
    assert_eq!(kind_of(s.prefill(&[])).0, ErrorKind::BadInput);
    assert_eq!(kind_of(s.logits().map(|l| l.len())).0, ErrorKind::BadInput);
    assert_eq!(
        kind_of(s.step(&SamplingOptions::greedy(1))).0,
        ErrorKind::BadInput
    );
    let (kind, msg) = kind_of(s.set_image(Image::Pixels(&[0.0; 12])));
    assert_eq!(kind, ErrorKind::BadInput);
    assert!(msg.contains("no vision tower"), "{msg}");
    let (kind, msg) = kind_of(s.prefill(&[1; 33]));
    assert_eq!(kind, ErrorKind::BadInput);
    assert!(msg.contains("context of 32"), "{msg}");
    s.prefill_text("Once").unwrap();
    let hot = SamplingOptions {
        temperature: -1.0,
        ..Default::default()
    };
    let (kind, msg) = kind_of(s.step(&hot));
    assert_eq!(kind, ErrorKind::BadInput);
    assert!(msg.contains("temperature"), "{msg}");
    // A full context ends generation, it does not fail it.
    let done = s
        .generate(
            &SamplingOptions {
                ignore_eos: true,
                ..SamplingOptions::greedy(100)
            },
            |_| ControlFlow::Continue(()),
        )
        .unwrap();
    assert_eq!(done.stop, StopReason::ContextFull);
    assert_eq!(
        s.len(),
        33,
        "32 positions run, and the token picked after them"
    );
    assert_eq!(
        kind_of(
            s.step(&SamplingOptions::greedy(1))
                .and_then(|_| s.step(&SamplingOptions::greedy(1)))
        )
        .0,
        ErrorKind::BadInput
    );
    assert_eq!(kind_of(engine.detokenize(&[600])).0, ErrorKind::BadInput);

    let Some(case) = adapter_case(2) else { return };
    let engine = Engine::load(case.join("base"), Some(&case.join("adapter")), &cpu()).unwrap();
    let mut s = engine.session().unwrap();
    let (kind, msg) = kind_of(s.set_image(Image::Pixels(&[0.5; 3 * 27 * 27])));
    assert_eq!(kind, ErrorKind::BadInput);
    assert!(msg.contains("[3, 28, 28]"), "{msg}");
    let (kind, msg) = kind_of(s.set_image(Image::Rgb8 {
        width: 4,
        height: 4,
        data: &[0; 10],
    }));
    assert_eq!(kind, ErrorKind::BadInput);
    assert!(msg.contains("4x4"), "{msg}");
    assert_eq!(
        kind_of(s.set_image(Image::Encoded(b"not an image"))).0,
        ErrorKind::BadInput
    );
    assert_eq!(
        kind_of(s.set_image(Image::File(Path::new("/nonexistent.jpg")))).0,
        ErrorKind::ModelFile
    );
    assert_eq!(
        kind_of(s.prefill_text("text")).0,
        ErrorKind::BadInput,
        "no tokenizer"
    );
    s.prefill(&[1, 2, 3]).unwrap();
    let (kind, msg) = kind_of(s.set_image(Image::Rgb8 {
        width: 2,
        height: 2,
        data: &[7; 12],
    }));
    assert_eq!(kind, ErrorKind::BadInput);
    assert!(msg.contains("before the prompt"), "{msg}");
}

/// `examples/rust/embed.rs` (built by `cargo test` with the tests) prints what `lav2 generate`
/// prints: the story, and the adapter's answer about an image.
#[test]
fn the_rust_example_streams_the_command_line_s_text() {
    let Some(dir) = stories() else { return };
    let Some(case) = adapter_case(2) else { return };
    let exe = std::env::current_exe().unwrap();
    let embed = exe.parent().unwrap().join("../examples/embed");
    assert!(embed.is_file(), "{} was not built", embed.display());
    let stdout = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let lav2 = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_lav2"));
        c.args(["generate", "--device", "auto", "--temperature", "0"]);
        c
    };
    let story = stdout(Command::new(&embed).args([
        dir.to_str().unwrap(),
        "One day",
        "--max-new-tokens",
        "30",
    ]));
    let want = stdout(lav2().args([
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        "One day",
        "--max-new-tokens",
        "30",
    ]));
    assert_eq!(story, want);

    let (base, adapter) = (case.join("base"), case.join("adapter"));
    let jpeg = case.join("../../clip-preprocess/franz-kafka.jpg");
    let ids = "1,156,197,76,57,57,180,104";
    let image_args = [
        "--adapter",
        adapter.to_str().unwrap(),
        "--image",
        jpeg.to_str().unwrap(),
    ];
    let answer = stdout(Command::new(&embed).arg(&base).args(image_args).args([
        "--ids",
        ids,
        "--max-new-tokens",
        "8",
    ]));
    let want = stdout(
        lav2()
            .args(["--model", base.to_str().unwrap()])
            .args(image_args)
            .args(["--prompt-ids", ids, "--max-new-tokens", "8"]),
    );
    assert_eq!(answer, want);
    assert_eq!(answer.split_whitespace().count(), 8);
}
