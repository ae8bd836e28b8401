//! The `lav2` binary end to end: conformance from the command line, and every kind of bad
//! input giving one clear line on stderr and a non-zero exit, never a panic.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn lav2(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lav2"))
        .args(args)
        .output()
        .expect("run lav2")
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The command fails with exit code 1 and one `lav2: error:` line mentioning every `needle`.
fn assert_clean_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let errors: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("lav2: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    for n in needles {
        assert!(errors[0].contains(n), "'{n}' not in: {}", errors[0]);
    }
}

#[test]
fn generate_prints_the_llama2c_story() {
    let Some(root) = conformance() else { return };
    let dir = root.join("stories260K");
    let out = lav2(&[
        "generate",
        "--model",
        p(&dir),
        "--prompt",
        "",
        "--temperature",
        "0",
        "--max-new-tokens",
        "200",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = read_json(&dir.join("expected.json"))["text"]
        .as_str()
        .unwrap()
        .to_string()
        + "\n";
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
}

#[test]
fn generate_json_reports_ids_text_and_timings() {
    let Some(root) = conformance() else { return };
    let dir = root.join("tinystories656K");
    let out = lav2(&[
        "generate",
        "--model",
        p(&dir),
        "--prompt",
        "Once upon a time",
        "--temperature",
        "0",
        "--max-new-tokens",
        "40",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let case = &read_json(&dir.join("expected.json"))["cases"][0];
    assert_eq!(v["prompt_ids"], case["prompt_ids"]);
    assert_eq!(v["ids"], case["greedy_ids"]);
    assert_eq!(v["text"], case["text"]);
    assert!(v["timings"]["prefill_ms"].as_f64().unwrap() > 0.0);
    assert!(v["timings"]["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn sampling_is_reproducible_with_a_seed() {
    let Some(root) = conformance() else { return };
    let dir = root.join("stories260K");
    let run = |seed: &str| {
        let out = lav2(&[
            "generate",
            "--model",
            p(&dir),
            "--prompt",
            "Once",
            "--temperature",
            "0.9",
            "--top-p",
            "0.9",
            "--seed",
            seed,
            "--max-new-tokens",
            "40",
            "--json",
        ]);
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["ids"].clone()
    };
    assert_eq!(run("7"), run("7"));
    assert_ne!(run("7"), run("8"));
}

#[test]
fn forward_matches_the_adapter_cases_from_the_cli() {
    let Some(root) = conformance() else { return };
    for case in ["case-2", "case-3", "case-5"] {
        let dir = root.join("adapter-v2").join(case);
        let exp = dir.join("expected.safetensors");
        let tokens: Vec<String> = ids(&read_json(&dir.join("expected.json"))["tokens"])
            .iter()
            .map(|t| t.to_string())
            .collect();
        let out_file = scratch(&format!("forward-{case}")).join("out.safetensors");
        let out = lav2(&[
            "forward",
            "--model",
            p(&dir.join("base")),
            "--adapter",
            p(&dir.join("adapter")),
            "--pixels",
            p(&exp),
            "--prompt-ids",
            &tokens.join(","),
            "--out",
            p(&out_file),
        ]);
        assert!(
            out.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for name in ["logits", "visual_query"] {
            let (shape, got) = read_tensor(&out_file, name);
            let (want_shape, want) = read_tensor(&exp, name);
            assert_eq!(shape, want_shape, "{case} {name}");
            assert!(max_abs_diff(&got, &want) <= 1e-3, "{case} {name}");
        }
    }
}

#[test]
fn info_describes_model_and_adapter() {
    let Some(root) = conformance() else { return };
    let dir = root.join("adapter-v2/case-3");
    let out = lav2(&[
        "info",
        "--model",
        p(&dir.join("base")),
        "--adapter",
        p(&dir.join("adapter")),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "layout: meta",
        "decode activations",
        "prefill_",
        "LoRA rank 16",
        "new_gate",
        "vision: CLIP",
        "prompts: 3 tokens in the last 3 layers",
    ] {
        assert!(text.contains(needle), "'{needle}' missing from:\n{text}");
    }
}

/// Whether the real Tesseract can run here; CI must have it, elsewhere its tests skip loudly.
fn tesseract_available() -> bool {
    if Command::new("tesseract").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI must have tesseract installed"
    );
    eprintln!("SKIPPED: tesseract is not installed");
    false
}

/// A copy of stories260K whose weights file is rewritten by `edit`.
fn broken_stories(
    root: &Path,
    name: &str,
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>),
) -> std::path::PathBuf {
    let dir = scratch(name);
    copy_dir(&root.join("stories260K"), &dir);
    let file = dir.join("consolidated.00.safetensors");
    let mut tensors = read_all(&file);
    edit(&mut tensors);
    std::fs::remove_file(&file).unwrap();
    write_all(&file, &tensors);
    dir
}

#[test]
fn bad_model_files_give_clear_errors() {
    let Some(root) = conformance() else { return };
    let missing = broken_stories(&root, "missing", |t| {
        t.retain(|(n, _, _)| n != "layers.2.attention.wk.weight")
    });
    assert_clean_error(
        &lav2(&["info", "--model", p(&missing)]),
        &["missing tensor 'layers.2.attention.wk.weight'"],
    );

    let misshaped = broken_stories(&root, "misshaped", |t| {
        for (n, s, d) in t.iter_mut() {
            if n == "layers.1.feed_forward.w2.weight" {
                *s = vec![64, 171];
                d.truncate(64 * 171);
            }
        }
    });
    assert_clean_error(
        &lav2(&["info", "--model", p(&misshaped)]),
        &[
            "layers.1.feed_forward.w2.weight",
            "[64, 171]",
            "expected [64, 172]",
        ],
    );

    let truncated = scratch("truncated");
    copy_dir(&root.join("stories260K"), &truncated);
    let file = truncated.join("consolidated.00.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    assert_clean_error(
        &lav2(&["info", "--model", p(&truncated)]),
        &["consolidated.00.safetensors", "truncated"],
    );

    let no_config = scratch("no-config");
    assert_clean_error(
        &lav2(&["info", "--model", p(&no_config)]),
        &["params.json", "config.json"],
    );
}

#[test]
fn bad_adapters_give_clear_errors() {
    let Some(root) = conformance() else { return };
    let case = root.join("adapter-v2/case-2");
    let base = case.join("base");

    let no_gate = scratch("no-gate");
    copy_dir(&case.join("adapter"), &no_gate);
    let file = no_gate.join("adapter.safetensors");
    let mut t = read_all(&file);
    t.retain(|(n, _, _)| n != "llama.layers.3.attention.gate");
    write_all(&file, &t);
    assert_clean_error(
        &lav2(&["info", "--model", p(&base), "--adapter", p(&no_gate)]),
        &["llama.layers.3.attention.gate", "receives adapter prompts"],
    );

    let bad_cfg = scratch("bad-config");
    copy_dir(&case.join("adapter"), &bad_cfg);
    let cfg_path = bad_cfg.join("adapter_config.json");
    let mut cfg = read_json(&cfg_path);
    cfg["scale_form"] = "output".into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    assert_clean_error(
        &lav2(&["info", "--model", p(&base), "--adapter", p(&bad_cfg)]),
        &["scale_form", "output"],
    );

    let bad_shape = scratch("bad-query");
    copy_dir(&case.join("adapter"), &bad_shape);
    let file = bad_shape.join("adapter.safetensors");
    let mut t = read_all(&file);
    for (n, s, d) in t.iter_mut() {
        if n == "adapter_query.weight" {
            s[0] -= 1;
            d.truncate(s[0] * s[1]);
        }
    }
    write_all(&file, &t);
    assert_clean_error(
        &lav2(&["info", "--model", p(&base), "--adapter", p(&bad_shape)]),
        &["adapter_query.weight", "expected [12, 64]"],
    );
}

#[test]
fn bad_run_inputs_give_clear_errors() {
    let Some(root) = conformance() else { return };
    let stories = root.join("stories260K");
    let s = p(&stories);
    assert_clean_error(
        &lav2(&[
            "generate",
            "--model",
            s,
            "--prompt-ids",
            "1,600,3",
            "--max-new-tokens",
            "2",
        ]),
        &["token id 600", "vocabulary of 512"],
    );
    assert_clean_error(
        &lav2(&[
            "generate",
            "--model",
            s,
            "--prompt-ids",
            "1,2,3,4,5",
            "--max-seq-len",
            "4",
        ]),
        &["5 tokens", "context of 4"],
    );
    assert_clean_error(
        &lav2(&["generate", "--model", s, "--prompt-ids", "1,x"]),
        &["'x' is not a token id"],
    );
    assert_clean_error(
        &lav2(&["generate", "--model", s, "--prompt", "a", "--top-p", "0"]),
        &["--top-p"],
    );
    assert_clean_error(
        &lav2(&["generate", "--model", s, "--prompt", "a", "--device", "tpu"]),
        &["unknown device 'tpu'"],
    );

    let case = root.join("adapter-v2/case-2");
    let junk = scratch("junk-image").join("photo.jpg");
    std::fs::write(&junk, b"this is not a JPEG").unwrap();
    let (base, adapter) = (case.join("base"), case.join("adapter"));
    let args = ["--model", p(&base), "--adapter", p(&adapter)];
    let mut cmd = vec!["forward"];
    cmd.extend(args);
    cmd.extend([
        "--image",
        p(&junk),
        "--prompt-ids",
        "1,2",
        "--out",
        "/dev/null",
    ]);
    assert_clean_error(&lav2(&cmd), &["cannot decode image", "photo.jpg"]);
    let mut cmd = vec!["forward"];
    cmd.extend(args);
    cmd.extend([
        "--image",
        "/nonexistent/x.png",
        "--prompt-ids",
        "1,2",
        "--out",
        "/dev/null",
    ]);
    assert_clean_error(
        &lav2(&cmd),
        &["--image /nonexistent/x.png: no such file or directory"],
    );
    // An image for a model without a vision tower.
    let pixels = case.join("expected.safetensors");
    assert_clean_error(
        &lav2(&[
            "forward",
            "--model",
            s,
            "--pixels",
            p(&pixels),
            "--prompt-ids",
            "1",
            "--out",
            "/dev/null",
        ]),
        &["no vision tower"],
    );
}

#[test]
fn ocr_text_reaches_the_prompt_of_a_text_only_model() {
    let Some(root) = conformance() else { return };
    if !tesseract_available() {
        return;
    }
    let png =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/experts/ocr.png");
    let out = lav2(&[
        "generate",
        "--model",
        p(&root.join("stories260K")),
        "--prompt",
        "What does it say?",
        "--image",
        p(&png),
        "--ocr",
        "--temperature",
        "0",
        "--max-new-tokens",
        "3",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["experts"][0]["name"], "ocr");
    assert!(v["experts"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Hello Tesseract"));
    let tok =
        lav2::io::tokenizer::Tokenizer::load(&root.join("stories260K/tokenizer.json")).unwrap();
    let prompt: Vec<u32> = ids(&v["prompt_ids"]);
    let text = tok.decode(&prompt).unwrap();
    assert!(text.contains("### Input:\nOCR: Hello Tesseract"), "{text}");
}

/// `lav2 bench --json` on the CPU with short runs (8-token prefill, 2 decode steps, 1 repeat)
/// and the whitespace-separated `args`; its parsed output.
fn bench_json(args: &str) -> serde_json::Value {
    let short = ["--prefill", "8", "--decode-tokens", "2", "--repeats", "1"];
    let all: Vec<&str> = ["bench", "--device", "cpu", "--json"]
        .into_iter()
        .chain(short)
        .chain(args.split_whitespace())
        .collect();
    let out = lav2(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn bench_reports_every_field_with_roofline_ratios() {
    let v = bench_json("--preset tiny --quant f16,int4 --contexts 16,64");
    assert!(v["copy_bandwidth_gb_s"].as_f64().unwrap() > 0.0);
    assert!(v["matmul_tflop_s"].as_f64().unwrap() > 0.0);
    // Real timings: only an emulated device labels them.
    assert_eq!(v["emulated"], false);
    assert!(v["note"].is_null(), "{}", v["note"]);
    let rows = v["rows"].as_array().unwrap();
    assert!(rows
        .iter()
        .all(|r| r["emulated"] == false && r["note"].is_null()));
    // 2 formats × 2 adapter choices × (1 prefill + 2 decode contexts).
    assert_eq!(rows.len(), 12);
    for r in rows {
        for field in [
            "format",
            "adapter",
            "step",
            "tokens",
            "context",
            "ms",
            "ms_min",
            "ms_max",
            "repeats",
            "tokens_per_s",
            "bytes_per_token",
            "roofline_fraction",
        ] {
            assert!(!r[field].is_null(), "{field} missing in {r}");
        }
        let (ms, lo, hi) = (
            r["ms"].as_f64().unwrap(),
            r["ms_min"].as_f64().unwrap(),
            r["ms_max"].as_f64().unwrap(),
        );
        assert!(
            lo > 0.0 && lo <= ms && ms <= hi,
            "median outside its spread in {r}"
        );
        let f = r["roofline_fraction"].as_f64().unwrap();
        assert!(
            f > 0.0 && f < 2.0,
            "implausible roofline fraction {f} in {r}"
        );
    }
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    // Each format's three steps, with the adapter against without.
    let overhead = v["adapter_overhead"].as_array().unwrap();
    assert_eq!(overhead.len(), 6, "{overhead:?}");
    // One repeat is one interleaved pair: no spread, so nothing resolves from noise.
    for o in overhead {
        assert_eq!(o["per_pair"]["samples"], 1, "{o}");
        assert_eq!(o["within_noise"], true, "{o}");
        assert!(o["fraction"].is_null(), "{o}");
        assert!(
            o["per_pair"]["median"].as_f64().is_some_and(f64::is_finite),
            "{o}"
        );
    }
    assert!(runs
        .iter()
        .any(|r| r["vision_ms"].as_f64().is_some_and(|ms| ms > 0.0)));
    let bad = lav2(&["bench", "--preset", "70b", "--device", "cpu"]);
    assert_clean_error(&bad, &["unknown preset '70b'"]);
    assert_clean_error(
        &lav2(&["bench", "--batch", "0", "--device", "cpu"]),
        &["--batch"],
    );
    assert_clean_error(
        &lav2(&["bench", "--dim", "130", "--heads", "4", "--device", "cpu"]),
        &["--dim 130", "4 heads"],
    );
    assert_clean_error(
        &lav2(&[
            "bench",
            "--heads",
            "8",
            "--kv-heads",
            "3",
            "--device",
            "cpu",
        ]),
        &["--kv-heads 3"],
    );
    assert_clean_error(
        &lav2(&["bench", "--kernels", "rmsnorm=naive", "--device", "cpu"]),
        &["rmsnorm=naive", "CUDA option"],
    );
}

/// `--batch` decodes several sequences per step, and explicit dimensions replace the preset's:
/// a batch of 3 moves 3 tokens per step for one read of the weights.
#[test]
fn bench_takes_a_batch_and_an_explicit_shape() {
    let v = bench_json(
        "--quant int8 --adapter with --batch 3 --dim 128 --layers 3 --heads 4 --kv-heads 2 \
         --ffn 320 --vocab 1000 --contexts 16",
    );
    assert_eq!(
        v["shape"],
        "dim 128, 3 layers, 4 heads (2 kv), ffn 320, vocab 1000"
    );
    assert_eq!(v["preset"], "tiny (custom)");
    assert_eq!(v["kernels"], "default");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r["batch"], 3, "{r}");
        let (ms, tps) = (
            r["ms"].as_f64().unwrap(),
            r["tokens_per_s"].as_f64().unwrap(),
        );
        let tokens = 3.0 * r["tokens"].as_f64().unwrap();
        assert!((tps * ms / 1e3 - tokens).abs() < 1e-6 * tokens, "{r}");
    }
}

/// The whole path a user with the authors' files takes: convert the Meta base (with its
/// tokenizer.model) and a V2 adapter with its CLIP, then generate about an image with OCR.
#[test]
fn authors_files_convert_then_generate_with_an_image_and_ocr() {
    if !tesseract_available() {
        return;
    }
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let fx = root.join("tests/fixtures/convert");
    let dir = scratch("authors-e2e");
    let (base, adapter) = (dir.join("base"), dir.join("adapter"));
    let out = lav2(&[
        "convert",
        "base",
        "--from",
        p(&fx.join("meta/7B")),
        "--out",
        p(&base),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = lav2(&[
        "convert",
        "adapter",
        "--from",
        p(&fx.join("adapters/BIAS-7B-tiny.pth")),
        "--clip",
        p(&fx.join("clip/ViT-tiny.pt")),
        "--base",
        p(&base),
        "--out",
        p(&adapter),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = root.join("tests/fixtures/experts/ocr.png");
    let out = lav2(&[
        "generate",
        "--model",
        p(&base),
        "--adapter",
        p(&adapter),
        "--image",
        p(&png),
        "--ocr",
        "--prompt",
        "What is written here?",
        "--max-new-tokens",
        "5",
        "--seed",
        "3",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["experts"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Quick brown fox"));
    assert!(v["timings"]["vision_ms"].as_f64().unwrap() > 0.0);
    assert!(!v["ids"].as_array().unwrap().is_empty());
    let tok = lav2::io::tokenizer::Tokenizer::load(&base.join("tokenizer.json")).unwrap();
    let prompt = tok.decode(&ids(&v["prompt_ids"])).unwrap();
    assert!(prompt.contains("OCR: Hello Tesseract"), "{prompt}");
}

/// A usage error clap reports (unknown flag, missing or malformed value): exit status 2 and
/// clap's `error:` line naming the flag.
fn assert_usage_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "'{needle}' not in: {stderr}");
}

/// Negative numbers are values: our own validation answers them (exit 1), and a value of the
/// wrong type is clap's usage error (exit 2), as is an unknown flag.
#[test]
fn negative_numbers_are_values_and_usage_errors_exit_2() {
    let dir = scratch("cli-negative");
    let model = p(&dir);
    let gen = |extra: &[&str]| {
        let mut args = vec!["generate", "--model", model, "--prompt", "x"];
        args.extend_from_slice(extra);
        lav2(&args)
    };
    assert_clean_error(
        &gen(&["--temperature", "-1"]),
        &["--temperature must be a finite number ≥ 0, got -1"],
    );
    assert_clean_error(&gen(&["--top-p", "-0.5"]), &["--top-p must be in (0, 1]"]);
    assert_usage_error(
        &gen(&["--max-new-tokens", "-1"]),
        "invalid value '-1' for '--max-new-tokens",
    );
    assert_usage_error(&gen(&["--seed", "-3"]), "invalid value '-3' for '--seed");
    assert_usage_error(&gen(&["--bogus"]), "unexpected argument '--bogus'");
    assert_usage_error(&lav2(&["generate", "--prompt", "x"]), "--model");
    let bench = |extra: &[&str]| {
        let mut args = vec!["bench", "--device", "cpu", "--preset", "tiny"];
        args.extend_from_slice(extra);
        lav2(&args)
    };
    assert_clean_error(&bench(&["--prefill", "-5"]), &["--prefill: '-5'"]);
    assert_clean_error(&bench(&["--contexts", "-1,8"]), &["--contexts: '-1'"]);
    assert_usage_error(
        &bench(&["--batch", "-2"]),
        "invalid value '-2' for '--batch",
    );
}

/// `--template none` is what `--prompt-ids` means; a template that adds text is refused, and
/// a negative id is our error naming it.
#[test]
fn template_none_goes_with_prompt_ids() {
    let Some(root) = conformance() else { return };
    let model = root.join("stories260K");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--model",
            p(&model),
            "--temperature",
            "0",
            "--max-new-tokens",
            "4",
            "--json",
        ];
        args.extend_from_slice(extra);
        lav2(&args)
    };
    let with_none = run(&["--prompt-ids", "1,403", "--template", "none"]);
    assert!(
        with_none.status.success(),
        "{}",
        String::from_utf8_lossy(&with_none.stderr)
    );
    let without = run(&["--prompt-ids", "1,403"]);
    assert!(without.status.success());
    let ids_of = |o: &Output| {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v["prompt_ids"].clone(), v["ids"].clone())
    };
    assert_eq!(ids_of(&with_none), ids_of(&without));
    assert_eq!(ids_of(&with_none).0, serde_json::json!([1, 403]));
    assert_clean_error(
        &run(&["--prompt-ids", "1,403", "--template", "alpaca"]),
        &["--prompt-ids", "--template alpaca"],
    );
    assert_clean_error(
        &run(&["--prompt-ids", "1,403", "--context", "c"]),
        &["--context"],
    );
    assert_clean_error(
        &run(&["--prompt-ids", "-1,2"]),
        &["--prompt-ids: '-1' is not a token id"],
    );
}

/// A missing path, a folder where a file is expected and a file where a folder is expected
/// are each reported with the flag and the path.
#[test]
fn wrong_paths_are_named_for_what_they_are() {
    let dir = scratch("cli-paths");
    let file = dir.join("file.txt");
    std::fs::write(&file, "x").unwrap();
    let missing = dir.join("missing");
    let gen = |extra: &[&str]| {
        let mut args = vec!["generate", "--prompt", "x"];
        args.extend_from_slice(extra);
        lav2(&args)
    };
    let no_such = format!("{}: no such file or directory", missing.display());
    let is_dir = format!("{}: is a directory", dir.display());
    let is_file = format!("{}: is a file, expected a folder", file.display());
    assert_clean_error(
        &gen(&["--model", p(&missing)]),
        &[&format!("--model {no_such}")],
    );
    assert_clean_error(
        &gen(&["--model", p(&file)]),
        &[&format!("--model {is_file}")],
    );
    let model = p(&dir);
    assert_clean_error(
        &gen(&["--model", model, "--adapter", p(&missing)]),
        &[&format!("--adapter {no_such}")],
    );
    assert_clean_error(
        &gen(&["--model", model, "--adapter", p(&file)]),
        &[&format!("--adapter {is_file}")],
    );
    assert_clean_error(
        &gen(&["--model", model, "--quantized", model]),
        &[&format!("--quantized {is_dir}")],
    );
    assert_clean_error(
        &gen(&["--model", model, "--image", model]),
        &[&format!("--image {is_dir}")],
    );
    assert_clean_error(
        &gen(&["--model", model, "--pixels", p(&missing)]),
        &[&format!("--pixels {no_such}")],
    );
    assert_clean_error(
        &lav2(&[
            "forward",
            "--model",
            model,
            "--image",
            p(&missing),
            "--prompt-ids",
            "1",
            "--out",
            p(&dir.join("o.safetensors")),
        ]),
        &[&format!("--image {no_such}")],
    );
    let out_dir = dir.join("out");
    let out = p(&out_dir);
    for (args, needle) in [
        (
            vec!["convert", "tokenizer", "--from", model, "--out", out],
            format!("--from {is_dir}"),
        ),
        (
            vec!["convert", "tokenizer", "--from", p(&missing), "--out", out],
            format!("--from {no_such}"),
        ),
        (
            vec!["convert", "adapter", "--from", model, "--out", out],
            format!("--from {is_dir}"),
        ),
        (
            vec!["convert", "base", "--from", p(&file), "--out", out],
            format!("--from {is_file}"),
        ),
    ] {
        assert_clean_error(&lav2(&args), &[&needle]);
    }
    if let Some(root) = conformance() {
        let m = root.join("stories260K");
        assert_clean_error(
            &gen(&["--model", p(&m), "--tokenizer", model]),
            &[&format!("tokenizer {is_dir}")],
        );
        assert_clean_error(
            &gen(&["--model", p(&m), "--tokenizer", p(&missing)]),
            &["tokenizer not found", &no_such],
        );
    }
}
