//! Experts at inference (`--ocr`, `--caption-adapter`, `--expert-cmd`): the real Tesseract on a
//! rendered image, commands run without a shell, and the caption expert end to end on the
//! conformance adapter. The OCR fixture `fixtures/experts/ocr.png` is made by
//! `fixtures/experts/make.sh`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use common::*;
use lav2::experts::{self, combine, run_experts, ExpertArgs, ExpertContext, ExpertOutput};
use lav2::generate::{format_prompt, Template};
use lav2::io::image::load_image;
use lav2::io::tokenizer::Tokenizer;
use lav2::model::config::ChannelOrder;
use lav2::LoadOptions;

/// The words rendered in the fixture, line by line.
const WORDS: [&str; 2] = ["Hello Tesseract", "Quick brown fox 42"];

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/experts/ocr.png")
}

/// A context for experts that load no model.
fn no_model() -> ExpertContext {
    ExpertContext {
        model_dir: PathBuf::from("/nonexistent-model"),
        load: LoadOptions::default(),
        device: "cpu".into(),
        tokenizer: PathBuf::from("/nonexistent-tokenizer.json"),
        channel_order: None,
    }
}

fn cmds(list: &[&str]) -> ExpertArgs {
    ExpertArgs {
        expert_cmd: list.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn err(args: &ExpertArgs, image: Option<&Path>) -> String {
    format!("{:#}", run_experts(args, image, &no_model()).unwrap_err())
}

/// Whether `tesseract` runs here. Absent: a failure under CI (which installs it), a loud skip
/// elsewhere.
fn have_tesseract() -> bool {
    if Command::new("tesseract").arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("tesseract is not installed (CI=true: this is a failure; apt-get install tesseract-ocr)");
    }
    eprintln!(
        "SKIPPED: tesseract is not installed (apt-get install tesseract-ocr) — OCR not tested"
    );
    false
}

#[test]
fn ocr_reads_the_rendered_words_and_they_reach_the_prompt() {
    if !have_tesseract() {
        return;
    }
    let args = ExpertArgs {
        ocr: true,
        ..Default::default()
    };
    let out = run_experts(&args, Some(&fixture()), &no_model()).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name, "ocr");
    assert!(out[0].ms > 0.0);
    // Tesseract's line breaks and trailing form feed are normalized away.
    assert_eq!(
        out[0].text,
        WORDS.join(" "),
        "tesseract read {:?}",
        out[0].text
    );

    let context = combine(&out).unwrap();
    assert_eq!(context, format!("OCR: {}", WORDS.join(" ")));
    let prompt =
        format_prompt(Template::Alpaca, "What does the image say?", Some(&context)).unwrap();
    assert!(
        prompt.contains(&format!(
            "### Input:\nOCR: {}\n\n### Response:",
            WORDS.join(" ")
        )),
        "{prompt}"
    );

    // The language flag goes through to tesseract (English data ships with tesseract-ocr).
    let eng = ExpertArgs {
        ocr: true,
        ocr_lang: Some("eng".into()),
        ..Default::default()
    };
    assert_eq!(
        run_experts(&eng, Some(&fixture()), &no_model()).unwrap()[0].text,
        WORDS.join(" ")
    );
    // A language without data: the error says which package to install.
    let bad = ExpertArgs {
        ocr: true,
        ocr_lang: Some("xx_nonexistent".into()),
        ..Default::default()
    };
    let e = err(&bad, Some(&fixture()));
    assert!(
        e.contains("'xx_nonexistent'") && e.contains("tesseract-ocr-"),
        "{e}"
    );
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn ocr_on_a_file_tesseract_cannot_read_reports_its_error() {
    if !have_tesseract() {
        return;
    }
    let dir = scratch("experts-notimage");
    let bogus = dir.join("not-an-image.png");
    std::fs::write(&bogus, b"this is not a picture").unwrap();
    let args = ExpertArgs {
        ocr: true,
        ..Default::default()
    };
    let e = err(&args, Some(&bogus));
    assert!(e.starts_with("--ocr: tesseract failed on"), "{e}");
    assert!(e.contains("exit status"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

/// Runs only as a child of `ocr_without_tesseract_names_the_package`, with a PATH that has no
/// tesseract; the real lookup (spawn's NotFound) is what is tested, not a guess.
#[test]
fn child_ocr_without_tesseract() {
    if std::env::var_os("LAV2_EXPERTS_CHILD").is_none() {
        return;
    }
    let args = ExpertArgs {
        ocr: true,
        ..Default::default()
    };
    let e = err(&args, Some(&fixture()));
    println!("CHILD-ERROR: {e}");
}

#[test]
fn ocr_without_tesseract_names_the_package() {
    let empty = scratch("experts-empty-path");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_ocr_without_tesseract",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LAV2_EXPERTS_CHILD", "1")
        .env("PATH", &empty)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CHILD-ERROR: ").map(|(_, e)| e))
        .unwrap_or_else(|| panic!("the child printed no error: {stdout}"));
    assert!(
        line.contains("'tesseract' program is not installed"),
        "{line}"
    );
    assert!(line.contains("apt-get install tesseract-ocr"), "{line}");
}

#[test]
fn commands_get_the_image_path_as_one_argument_and_their_output_normalized() {
    // A path with spaces must reach the program as a single argument.
    let dir = scratch("experts cmd");
    let image = dir.join("my image.png");
    std::fs::copy(fixture(), &image).unwrap();
    let args = cmds(&[
        "printf '[%s]' {image}",
        "sh -c 'printf \"  dog,\\n\\n   cat  \\n\"; test -f \"$1\"' sh {image}",
        "sh -c 'test -s \"$1\" && echo \"$(basename \"$1\")\"' sh {image}",
    ]);
    let out = run_experts(&args, Some(&image), &no_model()).unwrap();
    let names: Vec<&str> = out.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["cmd:printf", "cmd:sh", "cmd:sh"]);
    assert_eq!(out[0].text, format!("[{}]", image.display()));
    assert_eq!(out[1].text, "dog, cat");
    assert_eq!(out[2].text, "my image.png");
    assert_eq!(
        combine(&out).unwrap(),
        format!(
            "printf: [{}]\nsh: dog, cat\nsh: my image.png",
            image.display()
        )
    );

    // `{image}` inside a word, and `cat` on a file named by the command itself.
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, "  a detector\tsaid\n\nthis\n").unwrap();
    let line = format!("cat '{}' --marker={{image}}", notes.display());
    let e = err(&cmds(&[&line]), Some(&image));
    // cat does not know --marker=…: a failure, reported with its status and stderr.
    assert!(
        e.contains("failed (exit status: 1)") && e.contains("cat:"),
        "{e}"
    );
    let line = format!(
        "sh -c 'cat \"$0\"; test -f \"$1\"' '{}' {{image}}",
        notes.display()
    );
    let out = run_experts(&cmds(&[&line]), Some(&image), &no_model()).unwrap();
    assert_eq!(out[0].text, "a detector said this");
}

#[test]
fn several_experts_concatenate_labelled_in_a_fixed_order() {
    if !have_tesseract() {
        return;
    }
    let args = ExpertArgs {
        ocr: true,
        expert_cmd: vec![
            "echo person, dog {image}".into(),
            "sh -c 'true' sh {image}".into(),
        ],
        ..Default::default()
    };
    let out = run_experts(&args, Some(&fixture()), &no_model()).unwrap();
    assert_eq!(out.len(), 3);
    // The silent command is listed (it ran) but adds nothing to the prompt.
    assert_eq!(out[2].text, "");
    assert_eq!(
        combine(&out).unwrap(),
        format!(
            "OCR: {}\necho: person, dog {}",
            WORDS.join(" "),
            fixture().display()
        )
    );
    // What the JSON output lists for each expert.
    let json = serde_json::to_value(&out[0]).unwrap();
    assert_eq!(json["name"], "ocr");
    assert_eq!(json["text"], WORDS.join(" "));
    assert!(json["ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn command_errors_are_one_clear_line() {
    let img = fixture();
    let e = err(&cmds(&["echo no image here"]), Some(&img));
    assert!(e.contains("has no {image}"), "{e}");
    // The missing {image} is found before any other expert runs.
    let args = ExpertArgs {
        ocr: true,
        ..cmds(&["echo {image}", "echo nothing"])
    };
    let t0 = std::time::Instant::now();
    let e = err(&args, Some(&img));
    assert!(e.contains("'echo nothing' has no {image}"), "{e}");
    assert!(t0.elapsed().as_secs_f64() < 1.0);

    let e = err(
        &cmds(&["sh -c 'echo first >&2; echo second >&2; exit 3' sh {image}"]),
        Some(&img),
    );
    assert!(e.contains("failed (exit status: 3): first"), "{e}");
    assert!(
        e.ends_with("exit status: 3): first"),
        "only stderr's first line: {e}"
    );
    let e = err(&cmds(&["sh -c 'exit 4' sh {image}"]), Some(&img));
    assert!(e.contains("(exit status: 4): (nothing on stderr)"), "{e}");

    let e = err(&cmds(&["lav2-no-such-program-here {image}"]), Some(&img));
    assert!(
        e.contains("program 'lav2-no-such-program-here' not found"),
        "{e}"
    );
    let e = err(&cmds(&["echo 'unclosed {image}"]), Some(&img));
    assert!(e.contains("unterminated single quote"), "{e}");
    let e = err(&cmds(&[""]), Some(&img));
    assert!(e.contains("--expert-cmd is empty"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn experts_need_an_image() {
    let e = err(&cmds(&["echo {image}"]), None);
    assert!(
        e.contains("--expert-cmd") && e.contains("give --image FILE"),
        "{e}"
    );
    let args = ExpertArgs {
        ocr: true,
        caption_adapter: Some("adapter".into()),
        ..Default::default()
    };
    let e = err(&args, None);
    assert!(
        e.starts_with("--ocr, --caption-adapter read(s) a picture"),
        "{e}"
    );
    let e = err(&args, Some(Path::new("/nonexistent/picture.png")));
    assert!(
        e.contains("image not found: /nonexistent/picture.png"),
        "{e}"
    );
    // No expert asked for: nothing runs, no image needed.
    assert!(run_experts(&ExpertArgs::default(), None, &no_model())
        .unwrap()
        .is_empty());
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    experts: ExpertArgs,
}

#[test]
fn flags_have_the_documented_spellings() {
    let c = Cli::try_parse_from([
        "lav2",
        "--ocr",
        "--ocr-lang",
        "eng",
        "--caption-adapter",
        "cap",
        "--caption-max-new-tokens",
        "30",
        "--expert-cmd",
        "a {image}",
        "--expert-cmd",
        "b '{image}'",
    ])
    .unwrap();
    let e = c.experts;
    assert!(e.ocr && e.any());
    assert_eq!(e.ocr_lang.as_deref(), Some("eng"));
    assert_eq!(e.caption_adapter.as_deref(), Some(Path::new("cap")));
    assert_eq!(e.caption_max_new_tokens, 30);
    assert_eq!(e.caption_temperature, 0.0);
    assert_eq!(e.expert_cmd, ["a {image}", "b '{image}'"]);
    // Defaults: nothing asked for, the authors' 256 tokens, greedy.
    let d = Cli::try_parse_from(["lav2"]).unwrap().experts;
    assert!(!d.any());
    assert_eq!(
        (d.caption_max_new_tokens, d.caption_temperature),
        (256, 0.0)
    );
    assert_eq!(
        d,
        ExpertArgs::default(),
        "Default matches the command line's defaults"
    );
    // Options of an expert need that expert.
    assert!(Cli::try_parse_from(["lav2", "--ocr-lang", "eng"]).is_err());
    assert!(Cli::try_parse_from(["lav2", "--caption-max-new-tokens", "3"]).is_err());
}

/// The tiny conformance adapter (vocabulary 199), its base, and the Llama tokenizer (whose
/// first 199 ids are the same special and byte tokens, so it decodes what the model makes).
struct Case2 {
    adapter: PathBuf,
    ctx: ExpertContext,
    expected: serde_json::Value,
    expected_st: PathBuf,
}

fn case2() -> Option<Case2> {
    let root = conformance()?;
    let dir = root.join("adapter-v2/case-2");
    Some(Case2 {
        adapter: dir.join("adapter"),
        ctx: ExpertContext {
            model_dir: dir.join("base"),
            load: LoadOptions::default(),
            device: "cpu".into(),
            tokenizer: root.join("llama-tokenizer/tokenizer.json"),
            channel_order: None,
        },
        expected: read_json(&dir.join("expected.json")),
        expected_st: dir.join("expected.safetensors"),
    })
}

#[test]
fn caption_core_reproduces_the_conformance_greedy_tokens() {
    let Some(c) = case2() else { return };
    let (_, pixels) = read_tensor(&c.expected_st, "pixels");
    let want = ids(&c.expected["greedy_with_image"]);
    let mut s = cpu_session(load(&c.ctx.model_dir, Some(&c.adapter)));
    let got = experts::caption_pixels(
        &mut s,
        &pixels,
        &ids(&c.expected["tokens"]),
        &greedy(want.len()),
    )
    .unwrap();
    assert_eq!(got, want);
}

#[test]
fn caption_expert_end_to_end_on_the_conformance_adapter() {
    let Some(c) = case2() else { return };
    let prompt = ids(&c.expected["tokens"]);
    let prompt_str: Vec<String> = prompt.iter().map(|i| i.to_string()).collect();
    let args = ExpertArgs {
        caption_adapter: Some(c.adapter.clone()),
        caption_max_new_tokens: 8,
        caption_prompt_ids: Some(prompt_str.join(",")),
        ..Default::default()
    };
    let out = run_experts(&args, Some(&fixture()), &c.ctx).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name, "caption");

    // The same steps by hand: the image preprocessed at the adapter's size (28) in its channel
    // order (bgr), visual prompts, greedy tokens, decoded and normalized.
    let pixels = load_image(&fixture(), 28, ChannelOrder::Bgr).unwrap();
    let mut s = cpu_session(load(&c.ctx.model_dir, Some(&c.adapter)));
    let vq = s.visual_query(&pixels).unwrap();
    s.set_visual_query(Some(&vq)).unwrap();
    let gen = lav2::generate::generate(&mut s, &prompt, &greedy(8), |_| Ok(())).unwrap();
    let tok = Tokenizer::load(&c.ctx.tokenizer).unwrap();
    let want = experts::normalize(&tok.decode(&gen.ids).unwrap());
    assert!(!want.is_empty());
    assert_eq!(out[0].text, want);
    assert_eq!(combine(&out).unwrap(), format!("Caption: {want}"));

    // The channel-order override reaches the caption expert: RGB pixels, RGB tokens.
    let rgb_ctx = ExpertContext {
        channel_order: Some(ChannelOrder::Rgb),
        ..c.ctx.clone()
    };
    let rgb = run_experts(&args, Some(&fixture()), &rgb_ctx).unwrap();
    let pixels = load_image(&fixture(), 28, ChannelOrder::Rgb).unwrap();
    let mut s = cpu_session(load(&c.ctx.model_dir, Some(&c.adapter)));
    let ids_rgb = experts::caption_pixels(&mut s, &pixels, &prompt, &greedy(8)).unwrap();
    assert_eq!(
        rgb[0].text,
        experts::normalize(&tok.decode(&ids_rgb).unwrap())
    );
}

#[test]
fn caption_expert_errors_are_clear() {
    let Some(c) = case2() else { return };
    let img = fixture();
    // The authors' text prompt tokenizes past this tiny model's 199-token vocabulary.
    let args = ExpertArgs {
        caption_adapter: Some(c.adapter.clone()),
        caption_max_new_tokens: 2,
        ..Default::default()
    };
    let e = format!("{:#}", run_experts(&args, Some(&img), &c.ctx).unwrap_err());
    assert!(e.starts_with("caption expert ("), "{e}");
    assert!(e.contains("outside the vocabulary of 199 tokens"), "{e}");

    let with = |f: &dyn Fn(&mut ExpertArgs, &mut ExpertContext)| {
        let (mut a, mut x) = (args.clone(), c.ctx.clone());
        a.caption_prompt_ids = Some("1,5".into());
        f(&mut a, &mut x);
        format!("{:#}", run_experts(&a, Some(&img), &x).unwrap_err())
    };
    let e = with(&|a, _| a.caption_prompt_ids = Some("1,x".into()));
    assert!(
        e.contains("--caption-prompt-ids: 'x' is not a token id"),
        "{e}"
    );
    let e = with(&|a, _| a.caption_temperature = -1.0);
    assert!(e.contains("--caption-temperature must be"), "{e}");
    let e = with(&|_, x| x.device = "tpu".into());
    assert!(e.contains("--device: unknown device 'tpu'"), "{e}");
    let e = with(&|_, x| x.tokenizer = "/nonexistent/tokenizer.json".into());
    assert!(e.contains("tokenizer not found"), "{e}");
    let e = with(&|a, _| a.caption_adapter = Some("/nonexistent/adapter".into()));
    assert!(
        e.starts_with("caption expert (/nonexistent/adapter)"),
        "{e}"
    );
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn expert_output_serializes_for_the_json_listing() {
    let o = ExpertOutput {
        name: "cmd:det".into(),
        text: "dog".into(),
        ms: 1.5,
    };
    assert_eq!(
        serde_json::to_string(&o).unwrap(),
        r#"{"name":"cmd:det","text":"dog","ms":1.5}"#
    );
}
