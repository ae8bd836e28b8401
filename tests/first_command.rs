//! The README's first command, exactly as written there: it must work from a bare clone (a
//! synthetic model, nothing read from outside the repository). The second, the conformance
//! model's greedy story, runs when that data is there.

mod common;

use std::path::Path;
use std::process::Command;

use common::{conformance, read_json};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The first line of the first ```sh block in README.md.
fn readme_first_command() -> String {
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).expect("README.md");
    let mut lines = readme.lines().skip_while(|l| l.trim() != "```sh");
    assert!(lines.next().is_some(), "README.md has no ```sh block");
    lines
        .next()
        .filter(|l| !l.starts_with("```"))
        .expect("README.md's first ```sh block is empty")
        .trim()
        .to_string()
}

/// Splits a command line as sh would for what a README command may hold: words separated by
/// blanks, single or double quotes around parts of a word. Anything whose meaning depends on a
/// shell (a variable, an escape, a pipe) is refused, so the test never runs something other
/// than what a reader would.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '"' | '\'') => {
                quote = Some(ch);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, '$' | '\\' | '`' | '|' | '&' | ';' | '<' | '>' | '*' | '?' | '#') => {
                panic!("the README command uses shell syntax ('{ch}') this test does not model: {line}")
            }
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    assert!(quote.is_none(), "unclosed quote in: {line}");
    words.extend(word);
    words
}

#[test]
fn shell_words_splits_like_sh() {
    assert_eq!(
        shell_words(r#"a --prompt "" --x 'b c' d"e"f"#),
        ["a", "--prompt", "", "--x", "b c", "def"]
    );
}

/// The arguments lav2 itself gets from the README's first command (`cargo run --release -- …`).
fn readme_lav2_args() -> Vec<String> {
    let line = readme_first_command();
    let words = shell_words(&line);
    let cargo_run = ["cargo", "run", "--release", "--"];
    assert_eq!(
        words[..cargo_run.len().min(words.len())],
        cargo_run,
        "the README's first command is not `cargo run --release -- …`: {line}"
    );
    words[cargo_run.len()..].to_vec()
}

#[test]
fn readme_first_command_benchmarks_the_synthetic_model() {
    let args = readme_lav2_args();
    // What the README promises (the tiny synthetic preset, nothing from outside the clone).
    assert_eq!(
        args,
        ["bench", "--preset", "tiny"],
        "README.md's first command changed"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lav2"))
        .args(&args)
        .current_dir(REPO)
        // A bare clone has no conformance data: the command must not look for it.
        .env("LAV2_CONFORMANCE", "/nonexistent")
        .output()
        .expect("run lav2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 report");
    assert!(stdout.starts_with("# lav2 bench — tiny preset"), "{stdout}");
    // Float weights are f16 on a GPU and f32 on the CPU reference.
    for formats in [&["f16", "f32"][..], &["int8"], &["int4"]] {
        for step in ["prefill", "decode"] {
            let rows: Vec<String> = formats
                .iter()
                .map(|f| format!("| {f} | yes | {step} |"))
                .collect();
            assert!(
                rows.iter().any(|r| stdout.contains(r)),
                "no row {rows:?} in:\n{stdout}"
            );
        }
    }
    assert!(stdout.contains("Copy bandwidth"), "{stdout}");
}

/// The second command, the real model, when the conformance data is there.
#[test]
fn readme_second_command_prints_the_greedy_story() {
    let Some(root) = conformance() else {
        eprintln!("SKIPPED: no conformance data for the README's second command");
        return;
    };
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| {
            l.starts_with(
                "cargo run --release -- generate --model ../shared/conformance/stories260K",
            )
        })
        .expect("README.md's second command");
    let words = shell_words(line);
    let mut args = words[4..].to_vec();
    args[2] = root.join("stories260K").display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_lav2"))
        .args(&args)
        .output()
        .expect("run lav2");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = read_json(&root.join("stories260K/expected.json"))["text"]
        .as_str()
        .expect("expected.json has a text")
        .to_string()
        + "\n";
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
}
