//! `lav2 convert` and the checkpoint reader, on the tiny checkpoints of
//! tests/fixtures/convert (written by scripts/make-convert-fixtures.py in the authors', Meta's
//! and OpenAI's exact formats; no Python is needed here).
//!
//! - converted folders load and give the logits of the same weights written directly as
//!   safetensors, and of a port of the authors' PyTorch forward pass (`expected_logits`);
//! - malicious and broken files give one clear error, never execution, never a panic;
//! - a mini fuzz mutates the fixtures and reads them back;
//! - sentencepiece models convert to tokenizer.json files that tokenize as sentencepiece does.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lav2::convert::adapter::{self, AdapterOptions};
use lav2::convert::pth::Checkpoint;
use lav2::convert::spm::{Piece, PieceType, SpModel, MODEL_BPE};
use lav2::convert::OutDType;
use lav2::model::weights::TensorFiles;
use lav2::model::{LoadOptions, Model};
use lav2::session::Session;

const TOKENS: [u32; 6] = [1, 17, 42, 99, 250, 7];

fn fx(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/convert")
        .join(rel)
}

/// A fresh folder under the target directory, unique per call (tests run in parallel).
fn scratch(name: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("convert-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn lav2(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lav2"))
        .args(args)
        .output()
        .expect("run lav2")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "lav2 failed: {stderr}");
    stderr
}

/// One `lav2: error:` line that mentions every needle; exit code 1; no panic.
fn assert_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("lav2: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    for n in needles {
        assert!(errors[0].contains(n), "'{n}' not in: {}", errors[0]);
    }
}

fn tensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let files = TensorFiles::open(&[path.to_path_buf()]).unwrap();
    let names: Vec<String> = files.names().map(str::to_string).collect();
    names
        .into_iter()
        .map(|n| {
            let t = files.get_any(&n).unwrap();
            (n, t.shape.clone(), t.to_f32().unwrap())
        })
        .collect()
}

fn read(path: &Path, name: &str) -> Vec<f32> {
    TensorFiles::open(&[path.to_path_buf()])
        .unwrap()
        .get_any(name)
        .unwrap()
        .to_f32()
        .unwrap()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn rel_l2(a: &[f32], b: &[f32]) -> f32 {
    let num: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f32 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

/// Logits with the image (when the adapter has a vision tower) and without it.
struct Run {
    logits: Vec<f32>,
    text_only: Option<Vec<f32>>,
    visual_query: Option<Vec<f32>>,
}

fn run(base: &Path, adapter: Option<&Path>) -> Run {
    let model = Model::load(base, adapter, &LoadOptions::default()).unwrap();
    let mut session = Session::new(model, Box::new(lav2::backend::cpu::CpuBackend::new())).unwrap();
    if session.image_size().is_some() {
        let pixels = read(&fx("direct/pixels.safetensors"), "pixels");
        let vq = session.visual_query(&pixels).unwrap();
        let text_only = session.forward(&TOKENS, 0, true).unwrap();
        session.set_visual_query(Some(&vq)).unwrap();
        let logits = session.forward(&TOKENS, 0, true).unwrap();
        Run {
            logits,
            text_only: Some(text_only),
            visual_query: Some(vq),
        }
    } else {
        Run {
            logits: session.forward(&TOKENS, 0, true).unwrap(),
            text_only: None,
            visual_query: None,
        }
    }
}

/// A direct (expected) adapter folder, with the CLIP tower added when its config has one.
fn direct_adapter(kind: &str) -> PathBuf {
    let src = fx(&format!("direct/{kind}"));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("adapter_config.json")).unwrap())
            .unwrap();
    if cfg["visual"].is_null() {
        return src;
    }
    let dir = scratch(&format!("direct-{kind}"));
    std::fs::copy(
        src.join("adapter_config.json"),
        dir.join("adapter_config.json"),
    )
    .unwrap();
    let mut all = tensors(&src.join("adapter.safetensors"));
    all.extend(tensors(&fx("direct/clip.safetensors")));
    write_f32(&dir.join("adapter.safetensors"), &all);
    dir
}

fn write_f32(path: &Path, all: &[(String, Vec<usize>, Vec<f32>)]) {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<Vec<u8>> = all
        .iter()
        .map(|(_, _, d)| d.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, TensorView)> = all
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Base models

#[test]
fn meta_shard_converts_losslessly_with_its_tokenizer() {
    let out = scratch("base-f32");
    let stderr = ok(&lav2(&[
        "convert",
        "base",
        "--from",
        s(&fx("meta/7B")),
        "--out",
        s(&out),
        "--dtype",
        "f32",
    ]));
    assert!(
        stderr.contains("rope.freqs"),
        "the RoPE table is mentioned as skipped: {stderr}"
    );
    let got = tensors(&out.join("consolidated.00.safetensors"));
    let want = tensors(&fx("direct/base/consolidated.00.safetensors"));
    assert_eq!(got.len(), want.len());
    for ((gn, gs, gd), (wn, ws, wd)) in got.iter().zip(&want) {
        assert_eq!((gn, gs), (wn, ws));
        assert!(
            gd.iter().zip(wd).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{gn} differs"
        );
    }
    assert_eq!(
        json(&out.join("params.json")),
        json(&fx("meta/7B/params.json"))
    );
    // tokenizer.model one folder up, as Meta ships it.
    let tok = tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
    assert_eq!(tok.get_vocab_size(true), 400);
    let a = run(&out, None).logits;
    let b = run(&fx("direct/base"), None).logits;
    assert!(max_abs(&a, &b) <= 1e-5, "{}", max_abs(&a, &b));
    // Converting again into the same folder would mix old and new shards: refused.
    assert_error(
        &lav2(&[
            "convert",
            "base",
            "--from",
            s(&fx("meta/7B")),
            "--out",
            s(&out),
        ]),
        &["already holds consolidated.00.safetensors"],
    );
}

#[test]
fn two_bf16_shards_join_to_the_same_model_in_f16() {
    let out = scratch("base-2shards");
    ok(&lav2(&[
        "convert",
        "base",
        "--from",
        s(&fx("meta/13B")),
        "--out",
        s(&out),
    ]));
    let files = TensorFiles::open(&[out.join("consolidated.00.safetensors")]).unwrap();
    assert_eq!(
        files.dtype("layers.0.attention.wo.weight"),
        Some(lav2::tensor::DType::F16)
    );
    let got = tensors(&out.join("consolidated.00.safetensors"));
    let want = tensors(&fx("direct/base/consolidated.00.safetensors"));
    for ((gn, gs, gd), (wn, ws, wd)) in got.iter().zip(&want) {
        assert_eq!((gn, gs), (wn, ws));
        // The fixture's values are exact in bfloat16 and float16.
        assert!(gd == wd, "{gn} differs after joining the shards");
    }
    let a = run(&out, None).logits;
    let b = run(&fx("direct/base"), None).logits;
    assert!(max_abs(&a, &b) <= 1e-5);
}

// ---------------------------------------------------------------------------------------------
// Adapters

struct Kind {
    name: &'static str,
    file: &'static str,
    clip: bool,
    extra: &'static [&'static str],
}

const KINDS: [Kind; 7] = [
    Kind {
        name: "bias",
        file: "BIAS-7B-tiny.pth",
        clip: true,
        extra: &[],
    },
    Kind {
        name: "lora_bias",
        file: "LORA-BIAS-7B-tiny.pth",
        clip: true,
        extra: &[],
    },
    Kind {
        name: "lora_bias_v21",
        file: "LORA-BIAS-7B-v21-tiny.pth",
        clip: true,
        extra: &[],
    },
    Kind {
        name: "caption",
        file: "CAPTION-7B-tiny.pth",
        clip: false,
        extra: &[],
    },
    Kind {
        name: "chat65b",
        file: "llama65b-tiny_bias_scale_norm_tuning.pth",
        clip: false,
        extra: &[],
    },
    Kind {
        name: "v1",
        file: "llama_adapter_len3_layer2_release.pth",
        clip: false,
        extra: &[],
    },
    Kind {
        name: "v1_scalar",
        file: "adapter_v1_scalar_gates.pth",
        clip: false,
        extra: &["--query-len", "3", "--base", "DIRECT_BASE"],
    },
];

fn convert_kind(k: &Kind, dtype: &str) -> (PathBuf, String) {
    let out = scratch(&format!("adapter-{}-{dtype}", k.name));
    let from = fx(&format!("adapters/{}", k.file));
    let clip = fx("clip/ViT-tiny.pt");
    let base = fx("direct/base");
    let mut args = vec![
        "convert",
        "adapter",
        "--from",
        s(&from),
        "--out",
        s(&out),
        "--dtype",
        dtype,
    ];
    if k.clip {
        args.extend(["--clip", s(&clip)]);
    }
    for a in k.extra {
        args.push(if *a == "DIRECT_BASE" { s(&base) } else { a });
    }
    let stderr = ok(&lav2(&args));
    (out, stderr)
}

#[test]
fn every_adapter_kind_reproduces_the_authors_logits_in_f32() {
    let expected = fx("direct/expected_logits.safetensors");
    for k in &KINDS {
        let (out, _) = convert_kind(k, "f32");
        // The configuration is the one written directly.
        let mut want_cfg = json(&fx(&format!("direct/{}/adapter_config.json", k.name)));
        let got_cfg = json(&out.join("adapter_config.json"));
        if want_cfg["lora_rank"] == 0 && got_cfg["lora_rank"] != 0 {
            want_cfg["lora_rank"] = got_cfg["lora_rank"].clone();
        }
        assert_eq!(got_cfg, want_cfg, "{}: adapter_config.json", k.name);
        let got = run(&fx("direct/base"), Some(&out));
        let direct = run(&fx("direct/base"), Some(&direct_adapter(k.name)));
        let d = max_abs(&got.logits, &direct.logits);
        assert!(
            d <= 1e-5,
            "{}: converted vs direct logits differ by {d}",
            k.name
        );
        // And both are the authors' forward pass (a PyTorch port, float32).
        let want = read(&expected, &format!("{}.logits", k.name));
        let d = max_abs(&got.logits, &want);
        assert!(
            d <= 1e-4,
            "{}: logits differ from the authors' forward by {d}",
            k.name
        );
        if let Some(vq) = &got.visual_query {
            let want_vq = read(&expected, &format!("{}.visual_query", k.name));
            assert!(max_abs(vq, &want_vq) <= 1e-4, "{}: visual_query", k.name);
            let want_t = read(&expected, &format!("{}.logits_text_only", k.name));
            assert!(
                max_abs(got.text_only.as_ref().unwrap(), &want_t) <= 1e-4,
                "{}: text-only logits",
                k.name
            );
        }
    }
}

#[test]
fn f16_conversion_is_close() {
    for k in KINDS
        .iter()
        .filter(|k| matches!(k.name, "lora_bias" | "chat65b" | "v1"))
    {
        let (f16, _) = convert_kind(k, "f16");
        let files = TensorFiles::open(&[f16.join("adapter.safetensors")]).unwrap();
        assert!(files
            .names()
            .all(|n| files.dtype(n) == Some(lav2::tensor::DType::F16)));
        let got = run(&fx("direct/base"), Some(&f16)).logits;
        let want = read(
            &fx("direct/expected_logits.safetensors"),
            &format!("{}.logits", k.name),
        );
        let e = rel_l2(&got, &want);
        assert!(e <= 1e-2, "{}: f16 relative L2 error {e}", k.name);
    }
}

#[test]
fn fills_and_warnings_are_reported() {
    let (out, stderr) = convert_kind(&KINDS[2], "f32");
    assert!(
        stderr.contains("no new_gate") && stderr.contains("filled with 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bias vectors are missing") && stderr.contains("filled with 0"),
        "{stderr}"
    );
    assert_eq!(
        read(
            &out.join("adapter.safetensors"),
            "llama.layers.2.attention.new_gate"
        ),
        vec![1.0]
    );
    // An unexpected key is named and ignored.
    let (_, stderr) = convert_kind(&KINDS[3], "f32");
    assert!(
        stderr.contains("unexpected tensor 'extra.unused'"),
        "{stderr}"
    );
    // V1: the raw gate, as the authors' V1 inference script; tanh on request.
    let (_, stderr) = convert_kind(&KINDS[5], "f32");
    assert!(stderr.contains("identity"), "{stderr}");
    let out = scratch("v1-tanh");
    ok(&lav2(&[
        "convert",
        "adapter",
        "--from",
        s(&fx("adapters/llama_adapter_len3_layer2_release.pth")),
        "--out",
        s(&out),
        "--gate-activation",
        "tanh",
    ]));
    assert_eq!(
        json(&out.join("adapter_config.json"))["gate_activation"],
        "tanh"
    );
}

#[test]
fn openai_torchscript_and_hugging_face_clip_give_identical_tensors() {
    let from = fx("adapters/BIAS-7B-tiny.pth");
    let a = scratch("clip-pt");
    ok(&lav2(&[
        "convert",
        "adapter",
        "--from",
        s(&from),
        "--clip",
        s(&fx("clip/ViT-tiny.pt")),
        "--out",
        s(&a),
        "--dtype",
        "f32",
    ]));
    let ta = tensors(&a.join("adapter.safetensors"));
    assert!(ta.iter().any(|t| t.0 == "clip.visual.proj"));
    // Hugging Face folders, with model.safetensors (float32) or pytorch_model.bin (float16).
    for hf in ["clip/hf-clip-tiny", "clip/hf-clip-tiny-bin"] {
        let b = scratch(&format!("clip-{}", hf.replace('/', "-")));
        ok(&lav2(&[
            "convert",
            "adapter",
            "--from",
            s(&from),
            "--clip",
            s(&fx(hf)),
            "--out",
            s(&b),
            "--dtype",
            "f32",
        ]));
        let tb = tensors(&b.join("adapter.safetensors"));
        assert_eq!(ta.len(), tb.len());
        for (x, y) in ta.iter().zip(&tb) {
            assert_eq!(x, y, "{} differs between ViT-tiny.pt and {hf}", x.0);
        }
        assert_eq!(
            json(&a.join("adapter_config.json")),
            json(&b.join("adapter_config.json"))
        );
    }
    // And they are the CLIP weights as written directly.
    for (n, shape, data) in tensors(&fx("direct/clip.safetensors")) {
        let t = ta
            .iter()
            .find(|t| t.0 == n)
            .unwrap_or_else(|| panic!("{n} missing"));
        assert_eq!((&t.1, &t.2), (&shape, &data), "{n}");
    }
}

#[test]
fn refuses_prompts_without_gates_and_vision_without_clip() {
    let out = scratch("refusals");
    assert_error(
        &lav2(&[
            "convert",
            "adapter",
            "--from",
            s(&fx("bad/prompts_without_gate.pth")),
            "--out",
            s(&out),
        ]),
        &["llama.layers.2.attention.gate", "silently"],
    );
    assert_error(
        &lav2(&[
            "convert",
            "adapter",
            "--from",
            s(&fx("adapters/BIAS-7B-tiny.pth")),
            "--out",
            s(&out),
        ]),
        &["--clip", "ViT-L-14.pt", "--text-only"],
    );
    // The scalar-gate V1 file says neither its head count (scalar gates) nor its prompt length
    // (no len/layer in its name): 6 rows = 2 layers x 3 with --query-len 3, while the default
    // (10) does not divide them.
    let v1 = fx("adapters/adapter_v1_scalar_gates.pth");
    assert_error(
        &lav2(&["convert", "adapter", "--from", s(&v1), "--out", s(&out)]),
        &["head count", "--base"],
    );
    assert_error(
        &lav2(&[
            "convert",
            "adapter",
            "--from",
            s(&v1),
            "--out",
            s(&out),
            "--base",
            s(&fx("direct/base")),
        ]),
        &["not a multiple of the prompt length 10"],
    );
    // A base of the wrong size is caught.
    let small = out.join("params.json");
    std::fs::write(
        &small,
        r#"{"dim": 48, "n_layers": 2, "n_heads": 4, "multiple_of": 32}"#,
    )
    .unwrap();
    assert_error(
        &lav2(&[
            "convert",
            "adapter",
            "--from",
            s(&fx("adapters/llama65b-tiny_bias_scale_norm_tuning.pth")),
            "--out",
            s(&out),
            "--base",
            s(&small),
        ]),
        &["layer 2", "2 layers"],
    );
    // --text-only drops the visual path.
    let t = scratch("text-only");
    ok(&lav2(&[
        "convert",
        "adapter",
        "--from",
        s(&fx("adapters/BIAS-7B-tiny.pth")),
        "--out",
        s(&t),
        "--text-only",
        "--dtype",
        "f32",
    ]));
    assert!(json(&t.join("adapter_config.json"))["visual"].is_null());
    let r = run(&fx("direct/base"), Some(&t)).logits;
    let want = read(
        &fx("direct/expected_logits.safetensors"),
        "bias.logits_text_only",
    );
    assert!(max_abs(&r, &want) <= 1e-4);
}

// ---------------------------------------------------------------------------------------------
// Malicious and broken files

#[test]
fn malicious_and_broken_files_give_clear_errors_and_run_nothing() {
    let out = scratch("bad");
    let marker = Path::new(env!("CARGO_MANIFEST_DIR")).join("lav2_pwned_marker");
    let cases: [(&str, &[&str]); 10] = [
        (
            "bad/os_system.pth",
            &["refusing pickle global 'posix.system'"],
        ),
        (
            "bad/builtins_eval.pth",
            &["refusing pickle global 'builtins.eval'"],
        ),
        ("bad/truncated.pth", &["truncated or corrupt"]),
        (
            "bad/lying_storage_size.pth",
            &[
                "declares 1000 elements of float32 (4000 bytes)",
                "holds 64 bytes",
            ],
        ),
        (
            "bad/view_past_storage.pth",
            &["reaches element 99", "declares only 16 elements"],
        ),
        (
            "bad/missing_storage.pth",
            &["archive/data/7", "not in the archive"],
        ),
        (
            "bad/float64_adapter.pth",
            &["float64", "float32, float16 and bfloat16"],
        ),
        ("bad/legacy_format.pth", &["legacy (pre-1.6) format"]),
        ("bad/compressed.pth", &["compressed"]),
        ("bad/not_a_checkpoint.pth", &["not a PyTorch checkpoint"]),
    ];
    for (file, needles) in cases {
        let o = lav2(&[
            "convert",
            "adapter",
            "--from",
            s(&fx(file)),
            "--out",
            s(&out),
        ]);
        assert_error(&o, needles);
        // lav2 info explains the same problem (as an error, or in its report).
        let msg = match lav2::convert::describe(&fx(file)) {
            Ok(text) => text,
            Err(e) => format!("{e:#}"),
        };
        assert!(needles.iter().all(|n| msg.contains(n)), "{file}: {msg}");
    }
    assert!(!marker.exists(), "a pickle's code ran");
    assert_error(
        &lav2(&[
            "convert",
            "base",
            "--from",
            s(&fx("bad/int64_meta")),
            "--out",
            s(&out),
        ]),
        &["int64", "float32, float16 and bfloat16"],
    );
}

// ---------------------------------------------------------------------------------------------
// The reader itself

#[test]
fn torchscript_archives_are_read_as_module_attributes() {
    let c = Checkpoint::open(&fx("clip/ViT-tiny.pt")).unwrap();
    assert_eq!(c.kind, lav2::convert::pth::ArchiveKind::TorchScript);
    let names: Vec<String> = c.tensors().into_iter().map(|(n, _)| n).collect();
    for n in [
        "visual.conv1.weight",
        "visual.transformer.resblocks.0.attn.in_proj_weight",
        "visual.proj",
        "token_embedding.weight",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} not in {names:?}");
    }
    let (_, t) = c
        .tensors()
        .into_iter()
        .find(|(n, _)| n == "visual.proj")
        .unwrap();
    assert_eq!(t.dtype(), lav2::convert::pickle::TorchDType::F16);
}

#[test]
fn plan_does_not_need_the_cli() {
    // The library path: plan an adapter and check what it would write.
    let c = Checkpoint::open(&fx("adapters/llama65b-tiny_bias_scale_norm_tuning.pth")).unwrap();
    let plan = adapter::plan(&c, None, &AdapterOptions::default()).unwrap();
    assert_eq!(plan.config["scale_form"], "input");
    assert_eq!(plan.config["query_layer"], 0);
    assert!(plan
        .tensors
        .iter()
        .any(|t| t.name == "llama.layers.0.attention.wq_scale"));
    assert!(plan.tensors.iter().all(|t| t.name.starts_with("llama.")));
    let _ = OutDType::F16;
}

#[test]
fn describe_names_kinds_shapes_and_problems() {
    let d = lav2::convert::describe(&fx("adapters/LORA-BIAS-7B-tiny.pth")).unwrap();
    assert!(d.contains("LLaMA-Adapter V2 multimodal"), "{d}");
    assert!(
        d.contains("model.llama.layers.0.attention.lora_wq_l1.weight"),
        "{d}"
    );
    assert!(d.contains("[4, 48]"), "{d}");
    assert!(d.contains("entry \"config\""), "{d}");
    assert!(
        d.contains("CLIP"),
        "what is missing for conversion is said: {d}"
    );
    let d = lav2::convert::describe(&fx("bad/prompts_without_gate.pth")).unwrap();
    assert!(d.contains("llama.layers.2.attention.gate"), "{d}");
    let d = lav2::convert::describe(&fx("meta/13B")).unwrap();
    assert!(
        d.contains("Meta LLaMA checkpoint folder (2 shard(s)"),
        "{d}"
    );
    assert!(
        d.contains("layers.0.attention.wo.weight") && d.contains("[48, 48] joined on axis 1"),
        "{d}"
    );
    let d = lav2::convert::describe(&fx("clip/ViT-tiny.pt")).unwrap();
    assert!(
        d.contains("TorchScript") && d.contains("OpenAI CLIP"),
        "{d}"
    );
    let d = lav2::convert::describe(&fx("tokenizer/llama_like.model")).unwrap();
    assert!(
        d.contains("400 pieces") && d.contains("byte_fallback true"),
        "{d}"
    );
    let d = lav2::convert::describe(&fx("direct/base/consolidated.00.safetensors")).unwrap();
    assert!(
        d.contains("Meta LLaMA weights (3 layers)") && !d.contains("missing"),
        "{d}"
    );
    let d = lav2::convert::describe(&fx("bad/int64_meta/consolidated.00.pth")).unwrap();
    assert!(
        d.contains("missing: 1 tensor(s): output.weight") && d.contains("int64"),
        "{d}"
    );
    let d = lav2::convert::describe(&fx("bad/int64_meta")).unwrap();
    assert!(d.contains("problem:") && d.contains("int64"), "{d}");
    let d = lav2::convert::describe(&fx("direct/v1")).unwrap();
    assert!(
        d.contains("LLaMA-Adapter folder") && d.contains("adapter_query.weight"),
        "{d}"
    );
}

/// A tiny deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, src: &[u8]) -> Vec<u8> {
    let mut b = src.to_vec();
    let n = 1 + rng.below(4);
    for _ in 0..n {
        // Mostly near the ends (the pickle and the zip directories), sometimes anywhere.
        let pos = match rng.below(3) {
            0 => rng.below(b.len().min(1500)),
            1 => b.len() - 1 - rng.below(b.len().min(1500)),
            _ => rng.below(b.len()),
        };
        match rng.below(6) {
            0 => b[pos] ^= 1 << rng.below(8),
            1 => b[pos] = rng.next() as u8,
            2 => b[pos] = [0, 0xff, 0x7f, 0x80, b'(', b'.', b'q', b'h'][rng.below(8)],
            3 => b.truncate(pos.max(1)),
            4 => {
                let x = rng.next() as u8;
                b.insert(pos, x);
            }
            _ => {
                b.remove(pos);
            }
        }
        if b.is_empty() {
            b.push(0);
        }
    }
    b
}

#[test]
fn mini_fuzz_never_panics() {
    let iterations: usize = std::env::var("LAV2_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let seeds = [
        fx("adapters/llama_adapter_len3_layer2_release.pth"),
        fx("adapters/llama65b-tiny_bias_scale_norm_tuning.pth"),
        fx("clip/ViT-tiny.pt"),
        fx("bad/lying_storage_size.pth"),
    ];
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut parsed = 0;
    for (si, seed) in seeds.iter().enumerate() {
        let src = std::fs::read(seed).unwrap();
        for i in 0..iterations {
            let data = mutate(&mut rng, &src);
            let r = std::panic::catch_unwind(|| {
                let Ok(c) = Checkpoint::from_bytes("fuzz", data.clone()) else {
                    return false;
                };
                for (p, t) in c.tensors() {
                    let _ = c.raw(t);
                    let _ = c.read_f32(&p, t);
                }
                let _ = adapter::plan(&c, None, &AdapterOptions::default());
                let _ = lav2::convert::describe::describe_checkpoint(&c);
                true
            });
            match r {
                Ok(p) => parsed += p as usize,
                Err(_) => {
                    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                        .join(format!("fuzz-crash-{si}-{i}.pth"));
                    std::fs::write(&path, &data).unwrap();
                    panic!(
                        "reader panicked on a mutation of {}; input saved to {}",
                        seed.display(),
                        path.display()
                    );
                }
            }
        }
    }
    assert!(parsed > 0, "some mutations should still parse");
    // The sentencepiece reader too.
    let src = std::fs::read(fx("tokenizer/llama_like.model")).unwrap();
    for i in 0..iterations {
        let data = mutate(&mut rng, &src);
        let r = std::panic::catch_unwind(|| {
            if let Ok(m) = SpModel::parse(&data) {
                let _ = m.to_hf_json();
            }
        });
        assert!(r.is_ok(), "sentencepiece reader panicked on mutation {i}");
    }
}

// ---------------------------------------------------------------------------------------------
// Tokenizers

#[test]
fn sentencepiece_models_tokenize_as_sentencepiece_does() {
    let cases = json(&fx("tokenizer/cases.json"));
    for model in ["llama_like", "squeeze_spaces"] {
        let out = scratch(&format!("tok-{model}")).join("tokenizer.json");
        ok(&lav2(&[
            "convert",
            "tokenizer",
            "--from",
            s(&fx(&format!("tokenizer/{model}.model"))),
            "--out",
            s(&out),
        ]));
        let tok = tokenizers::Tokenizer::from_file(&out).unwrap();
        for c in cases["cases"][model].as_array().unwrap() {
            let text = c["text"].as_str().unwrap();
            let want: Vec<u32> = c["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            let got = tok.encode(text, false).unwrap().get_ids().to_vec();
            assert_eq!(got, want, "{model}: {text:?}");
        }
    }
}

fn fnv1a64(b: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// The LLaMA vocabulary as a sentencepiece model, rebuilt from the conformance tokenizer.json
/// exactly as scripts/make-convert-fixtures.py does (it checked those bytes against
/// sentencepiece on every conformance case).
fn llama_model(tok: &serde_json::Value) -> SpModel {
    let vocab = tok["model"]["vocab"].as_object().unwrap();
    let mut pieces: Vec<(&str, u64)> = vocab
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_u64().unwrap()))
        .collect();
    pieces.sort_by_key(|p| p.1);
    let special: Vec<&str> = tok["added_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["content"].as_str().unwrap())
        .collect();
    let unk = tok["model"]["unk_token"].as_str().unwrap();
    let mut first_normal = None;
    let pieces = pieces
        .into_iter()
        .map(|(p, i)| {
            let (score, kind) = if p == unk {
                (0.0, PieceType::Unknown)
            } else if special.contains(&p) {
                (0.0, PieceType::Control)
            } else if p.len() == 6 && p.starts_with("<0x") && p.ends_with('>') {
                (0.0, PieceType::Byte)
            } else {
                let f = *first_normal.get_or_insert(i);
                let ws = p.chars().count() >= 2 && p.chars().all(|c| c == '\u{2581}');
                (if ws { -1e9 } else { -((i - f) as f32) }, PieceType::Normal)
            };
            Piece {
                piece: p.to_string(),
                score,
                kind,
            }
        })
        .collect();
    SpModel {
        pieces,
        model_type: MODEL_BPE,
        byte_fallback: true,
        normalizer_name: "identity".into(),
        remove_extra_whitespaces: false,
        ..SpModel::default()
    }
}

#[test]
fn llama_tokenizer_model_converts_to_hugging_faces_tokenizer_json() {
    let Some(root) = common::conformance() else {
        return;
    };
    let want = json(&root.join("llama-tokenizer/tokenizer.json"));
    let model = llama_model(&want);
    let bytes = model.to_bytes();
    let record = json(&fx("tokenizer/llama_reconstruction.json"));
    assert_eq!(
        fnv1a64(&bytes),
        record["fnv1a64"].as_str().unwrap(),
        "the rebuilt model differs from the one sentencepiece checked"
    );
    let dir = scratch("llama-tok");
    std::fs::write(dir.join("tokenizer.model"), &bytes).unwrap();
    ok(&lav2(&[
        "convert",
        "tokenizer",
        "--from",
        s(&dir.join("tokenizer.model")),
        "--out",
        s(&dir.join("tokenizer.json")),
    ]));
    let got = json(&dir.join("tokenizer.json"));
    for key in [
        "added_tokens",
        "normalizer",
        "pre_tokenizer",
        "post_processor",
        "decoder",
        "truncation",
        "padding",
    ] {
        assert_eq!(got[key], want[key], "{key}");
    }
    assert_eq!(got["model"]["vocab"], want["model"]["vocab"]);
    let (gm, wm) = (
        got["model"]["merges"].as_array().unwrap(),
        want["model"]["merges"].as_array().unwrap(),
    );
    assert_eq!(gm.len(), wm.len());
    if let Some(i) = (0..gm.len()).find(|&i| gm[i] != wm[i]) {
        panic!("merge {i} differs: {} vs {}", gm[i], wm[i]);
    }
    assert_eq!(got["model"], want["model"]);
    // And it tokenizes the conformance cases as sentencepiece does.
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let cases = json(&root.join("llama-tokenizer/cases.json"));
    for c in cases["cases"].as_array().unwrap() {
        let mut ids = if c["bos"].as_bool().unwrap() {
            vec![1u32]
        } else {
            vec![]
        };
        ids.extend(
            tok.encode(c["text"].as_str().unwrap(), false)
                .unwrap()
                .get_ids(),
        );
        let want: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids, want, "{:?}", c["text"]);
    }
}
