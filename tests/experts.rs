//! Experts at inference (`--ocr`, `--caption-adapter`, `--expert-cmd`): the real Tesseract on a
//! rendered image, commands run without a shell, and the caption expert end to end on the
//! conformance adapter; and their bounds (`--expert-timeout`, `--expert-max-output`, failures
//! and crashes quoting stderr) on misbehaving programs and a fake tesseract written by the tests. The OCR fixture `fixtures/experts/ocr.png` is made by
//! `fixtures/experts/make.sh`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use lav2::backend::DeviceChoice;
use lav2::experts::{self, combine, run_experts, ExpertContext, ExpertOptions, ExpertOutput};
use lav2::generate::{format_prompt, Template};
use lav2::io::image::load_image;
use lav2::io::tokenizer::Tokenizer;
use lav2::model::config::ChannelOrder;
use lav2::model::LoadOptions;
use lav2::notice::render_error;

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
        device: DeviceChoice::Cpu,
        tokenizer: PathBuf::from("/nonexistent-tokenizer.json"),
        channel_order: None,
    }
}

fn cmds(list: &[&str]) -> ExpertOptions {
    ExpertOptions {
        expert_cmd: list.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// An error as the command line shows it: the options the library names called by their flags.
fn shown(e: &anyhow::Error) -> String {
    render_error(e, |o| format!("--{}", o.replace('_', "-")))
}

fn err(args: &ExpertOptions, image: Option<&Path>) -> String {
    shown(&run_experts(args, image, &no_model()).unwrap_err())
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
    let args = ExpertOptions {
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
    let eng = ExpertOptions {
        ocr: true,
        ocr_lang: Some("eng".into()),
        ..Default::default()
    };
    assert_eq!(
        run_experts(&eng, Some(&fixture()), &no_model()).unwrap()[0].text,
        WORDS.join(" ")
    );
    // A language without data: the error says which package to install.
    let bad = ExpertOptions {
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
fn a_file_that_is_not_a_picture_fails_before_any_expert_runs() {
    let dir = scratch("experts-notimage");
    let bogus = dir.join("not-an-image.png");
    std::fs::write(&bogus, b"this is not a picture").unwrap();
    // A truncated PNG: tesseract's decoder would read what is there; ours refuses it.
    let full = std::fs::read(fixture()).unwrap();
    let cut = dir.join("cut.png");
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    let marker = dir.join("ran");
    let args = ExpertOptions {
        ocr: true,
        ..cmds(&[&format!("touch '{}' {{image}}", marker.display())])
    };
    for (path, want) in [(&bogus, "not a JPEG or PNG"), (&cut, "corrupt PNG")] {
        let e = err(&args, Some(path));
        assert!(
            e.starts_with(&format!("cannot decode image {}", path.display())) && e.contains(want),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
    }
    assert!(!marker.exists(), "no expert ran");
}

/// A directory with an executable `tesseract` script running `body` (with `/bin/sh`), to put
/// first on PATH: the OCR expert's failures and bounds, tested on a program that misbehaves.
fn fake_tesseract(name: &str, body: &str) -> PathBuf {
    let dir = scratch(name);
    let script = dir.join("tesseract");
    std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs only as a child of `ocr_failures_and_bounds`, with a fake tesseract first on PATH.
#[test]
fn child_ocr_with_a_fake_tesseract() {
    if std::env::var_os("LAV2_EXPERTS_OCR_CHILD").is_none() {
        return;
    }
    let args = ExpertOptions {
        ocr: true,
        expert_timeout: 1.0,
        expert_max_output: 1000,
        ..Default::default()
    };
    match run_experts(&args, Some(&fixture()), &no_model()) {
        Ok(out) => println!("CHILD-OK: {}", out[0].text),
        Err(e) => println!("CHILD-ERROR: {}", shown(&e)),
    }
}

/// The child's result line and how long the child took.
fn ocr_child(fake: &Path) -> (String, std::time::Duration) {
    let path = format!(
        "{}:{}",
        fake.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let t0 = std::time::Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_ocr_with_a_fake_tesseract",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LAV2_EXPERTS_OCR_CHILD", "1")
        .env("PATH", path)
        .output()
        .unwrap();
    let took = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}");
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CHILD-").map(|(_, r)| format!("CHILD-{r}")))
        .unwrap_or_else(|| panic!("the child printed no result: {stdout}"));
    (line, took)
}

#[test]
fn ocr_failures_and_bounds() {
    // Tesseract's own answer goes through (so the fake is what runs).
    let (r, _) = ocr_child(&fake_tesseract("fake-ok", "echo '  fake   words '"));
    assert_eq!(r, "CHILD-OK: fake words");
    // A failure quotes stderr's last line, with the image and the status.
    let (r, _) = ocr_child(&fake_tesseract(
        "fake-fail",
        "echo 'Warning: something' >&2; echo 'Error: cannot read it' >&2; exit 2",
    ));
    assert!(
        r.starts_with("CHILD-ERROR: --ocr: tesseract failed on"),
        "{r}"
    );
    assert!(
        r.ends_with("(exit status: 2): Error: cannot read it"),
        "{r}"
    );
    // A crash.
    let (r, _) = ocr_child(&fake_tesseract(
        "fake-crash",
        "echo 'about to crash' >&2; kill -SEGV $$",
    ));
    assert!(r.contains("--ocr: tesseract crashed on"), "{r}");
    assert!(
        r.contains("SIGSEGV") && r.ends_with("about to crash"),
        "{r}"
    );
    // Hanging: killed at --expert-timeout (1 s in the child).
    let (r, took) = ocr_child(&fake_tesseract("fake-hang", "exec /bin/sleep 30"));
    assert_eq!(
        r,
        "CHILD-ERROR: --ocr: still running after 1 s (--expert-timeout), killed"
    );
    assert!(took.as_secs_f64() < 5.0, "{took:?}");
    // Flooding: cut off at --expert-max-output (1000 bytes in the child).
    let (r, took) = ocr_child(&fake_tesseract("fake-flood", "exec yes"));
    assert_eq!(
        r,
        "CHILD-ERROR: --ocr: printed more than 1000 bytes (--expert-max-output), killed"
    );
    assert!(took.as_secs_f64() < 5.0, "{took:?}");
}

/// Whether process `pid` is gone (no entry, or a zombie left for a reaper that is not ours).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            // The state follows the parenthesized command name.
            let state = stat.rsplit_once(") ").map(|(_, r)| r.chars().next());
            matches!(state, Some(Some('Z' | 'X')))
        }
    }
}

fn read_pid(path: &Path) -> u32 {
    let t0 = std::time::Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(p) = s.trim().parse() {
                return p;
            }
        }
        assert!(
            t0.elapsed().as_secs() < 5,
            "{} never written",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn wait_gone(pid: u32) -> bool {
    let t0 = std::time::Instant::now();
    while !gone(pid) {
        if t0.elapsed().as_secs_f64() > 2.0 {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn a_sleeping_expert_is_killed_at_the_timeout_with_what_it_started() {
    let dir = scratch("experts-sleep");
    let (me, kid) = (dir.join("me.pid"), dir.join("kid.pid"));
    // The expert starts a second sleeper, then sleeps itself: both must die.
    let s = script(
        &dir,
        "sleepy.sh",
        &format!(
            "echo $$ > '{}'\nsleep 30 &\necho $! > '{}'\nsleep 30",
            me.display(),
            kid.display()
        ),
    );
    let args = ExpertOptions {
        expert_timeout: 1.0,
        ..cmds(&[&format!("'{}' {{image}}", s.display())])
    };
    let t0 = std::time::Instant::now();
    let e = err(&args, Some(&fixture()));
    let took = t0.elapsed().as_secs_f64();
    eprintln!("sleeping expert with --expert-timeout 1: error after {took:.3} s");
    assert!((1.0..3.0).contains(&took), "{took}");
    assert!(
        e.ends_with("sleepy.sh' {image}': still running after 1 s (--expert-timeout), killed"),
        "{e}"
    );
    let (me, kid) = (read_pid(&me), read_pid(&kid));
    assert!(gone(me), "the expert ({me}) is still running");
    assert!(wait_gone(kid), "what it started ({kid}) is still running");

    // A plain `sleep 30`, and a fractional timeout.
    let args = ExpertOptions {
        expert_timeout: 0.3,
        ..cmds(&["sh -c 'exec sleep 30' sh {image}"])
    };
    let t0 = std::time::Instant::now();
    let e = err(&args, Some(&fixture()));
    assert!(e.contains("still running after 0.3 s"), "{e}");
    assert!(t0.elapsed().as_secs_f64() < 2.0);
}

#[test]
fn a_background_job_holding_the_output_does_not_hold_the_run() {
    let dir = scratch("experts-background");
    let kid = dir.join("kid.pid");
    let line = format!(
        "sh -c 'sleep 30 & echo $! > \"$0\"; echo found it' '{}' {{image}}",
        kid.display()
    );
    let t0 = std::time::Instant::now();
    let out = run_experts(&cmds(&[&line]), Some(&fixture()), &no_model()).unwrap();
    assert!(t0.elapsed().as_secs_f64() < 3.0, "{:?}", t0.elapsed());
    assert_eq!(out[0].text, "found it");
    let kid = read_pid(&kid);
    assert!(
        wait_gone(kid),
        "the background job ({kid}) is still running"
    );
}

#[test]
fn a_flooding_expert_is_cut_off_at_the_cap() {
    for line in [
        "yes {image}",
        "sh -c 'head -c 10M /dev/zero' sh {image}",
        "sh -c 'head -c 1048577 /dev/zero | tr \"\\0\" x' sh {image}",
    ] {
        let t0 = std::time::Instant::now();
        let e = err(&cmds(&[line]), Some(&fixture()));
        let took = t0.elapsed().as_secs_f64();
        eprintln!("flooding expert {line:?}: error after {took:.3} s");
        assert!(took < 5.0, "{took}");
        assert!(
            e.ends_with(&format!(
                "--expert-cmd '{line}': printed more than 1048576 bytes (--expert-max-output), killed"
            )),
            "{e}"
        );
    }
    // Exactly the cap is fine; one byte more is not.
    let ok = cmds(&["sh -c 'head -c 1048576 /dev/zero | tr \"\\0\" x' sh {image}"]);
    let out = run_experts(&ok, Some(&fixture()), &no_model()).unwrap();
    assert_eq!(out[0].text.len(), 1 << 20);
    let small = |line: &str| ExpertOptions {
        expert_max_output: 10,
        ..cmds(&[line])
    };
    let out = run_experts(
        &small("sh -c 'printf 0123456789' sh {image}"),
        Some(&fixture()),
        &no_model(),
    )
    .unwrap();
    assert_eq!(out[0].text, "0123456789");
    let e = err(
        &small("sh -c 'printf 01234567890' sh {image}"),
        Some(&fixture()),
    );
    assert!(e.contains("printed more than 10 bytes"), "{e}");
    // NULs and other control bytes are blanks in the prompt.
    let out = run_experts(
        &cmds(&["sh -c 'printf \"a\\000b\\033[1mc\"' sh {image}"]),
        Some(&fixture()),
        &no_model(),
    )
    .unwrap();
    assert_eq!(out[0].text, "a b [1mc");
}

#[test]
fn a_failing_or_crashing_expert_quotes_its_last_stderr_line() {
    let img = fixture();
    let e = err(
        &cmds(&["sh -c 'echo loading >&2; echo \"model missing: x.bin\" >&2; exit 3' sh {image}"]),
        Some(&img),
    );
    assert!(
        e.ends_with("failed (exit status: 3): model missing: x.bin"),
        "{e}"
    );
    for (sig, name) in [
        ("SEGV", "SIGSEGV"),
        ("KILL", "SIGKILL"),
        ("ABRT", "SIGABRT"),
    ] {
        let line = format!("sh -c 'echo going down >&2; kill -{sig} $$' sh {{image}}");
        let e = err(&cmds(&[&line]), Some(&img));
        assert!(
            e.starts_with(&format!("--expert-cmd '{line}' crashed (signal: ")),
            "{e}"
        );
        assert!(e.contains(name) && e.ends_with("): going down"), "{e}");
    }
    // A huge stderr: only its end is kept, and its last line is quoted, cut to one short line.
    let e = err(
        &cmds(&["sh -c 'head -c 5M /dev/zero | tr \"\\0\" y >&2; echo >&2; echo the end >&2; exit 1' sh {image}"]),
        Some(&img),
    );
    assert!(
        e.ends_with("(exit status: 1): the end"),
        "{}",
        &e[..200.min(e.len())]
    );
    let e = err(
        &cmds(&["sh -c 'head -c 5000 /dev/zero | tr \"\\0\" y >&2; exit 1' sh {image}"]),
        Some(&img),
    );
    assert!(e.ends_with("y…") && e.len() < 600, "{e}");
}
/// Runs only as a child of `ocr_without_tesseract_names_the_package`, with a PATH that has no
/// tesseract; the real lookup (spawn's NotFound) is what is tested, not a guess.
#[test]
fn child_ocr_without_tesseract() {
    if std::env::var_os("LAV2_EXPERTS_CHILD").is_none() {
        return;
    }
    let args = ExpertOptions {
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
    let args = ExpertOptions {
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
    let args = ExpertOptions {
        ocr: true,
        ..cmds(&["echo {image}", "echo nothing"])
    };
    let t0 = std::time::Instant::now();
    let e = err(&args, Some(&img));
    assert!(e.contains("'echo nothing' has no {image}"), "{e}");
    assert!(t0.elapsed().as_secs_f64() < 1.0);

    let e = err(
        &cmds(&["sh -c 'echo first >&2; echo second >&2; echo >&2; exit 3' sh {image}"]),
        Some(&img),
    );
    assert!(e.contains("failed (exit status: 3): second"), "{e}");
    assert!(
        e.ends_with("exit status: 3): second"),
        "only stderr's last non-blank line: {e}"
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
    let args = ExpertOptions {
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
    assert!(run_experts(&ExpertOptions::default(), None, &no_model())
        .unwrap()
        .is_empty());
}

#[test]
fn options_built_in_code_are_checked() {
    let bad = ExpertOptions {
        expert_timeout: f64::NAN,
        ..cmds(&["echo {image}"])
    };
    assert!(err(&bad, Some(&fixture())).contains("--expert-timeout"));
    let bad = ExpertOptions {
        expert_max_output: 0,
        ..cmds(&["echo {image}"])
    };
    assert!(err(&bad, Some(&fixture())).contains("--expert-max-output"));
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
            device: DeviceChoice::Cpu,
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
    let args = ExpertOptions {
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
    let args = ExpertOptions {
        caption_adapter: Some(c.adapter.clone()),
        caption_max_new_tokens: 2,
        ..Default::default()
    };
    let e = shown(&run_experts(&args, Some(&img), &c.ctx).unwrap_err());
    assert!(e.starts_with("caption expert ("), "{e}");
    assert!(e.contains("outside the vocabulary of 199 tokens"), "{e}");

    let with = |f: &dyn Fn(&mut ExpertOptions, &mut ExpertContext)| {
        let (mut a, mut x) = (args.clone(), c.ctx.clone());
        a.caption_prompt_ids = Some("1,5".into());
        f(&mut a, &mut x);
        shown(&run_experts(&a, Some(&img), &x).unwrap_err())
    };
    let e = with(&|a, _| a.caption_prompt_ids = Some("1,x".into()));
    assert!(
        e.contains("--caption-prompt-ids: 'x' is not a token id"),
        "{e}"
    );
    let e = with(&|a, _| a.caption_temperature = -1.0);
    assert!(e.contains("--caption-temperature must be"), "{e}");
    let e = with(&|_, x| x.tokenizer = "/nonexistent/tokenizer.json".into());
    assert!(e.contains("tokenizer not found"), "{e}");
    // The caption expert runs in this process: it is stopped at the deadline, between tokens.
    let e = with(&|a, _| {
        a.caption_max_new_tokens = 1000;
        a.expert_timeout = 1e-6;
    });
    assert!(
        e.ends_with("still running after 0.000001 s (--expert-timeout), stopped"),
        "{e}"
    );
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
