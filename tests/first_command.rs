//! The README's first command, exactly as written there, on the model shipped in
//! `models/stories260K`: it must work from a bare clone, so the model comes from the repository
//! and only the expected story comes from the conformance data (when it is there).

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
fn readme_first_command_prints_the_greedy_story() {
    let args = readme_lav2_args();
    let want_args = [
        "generate",
        "--model",
        "models/stories260K",
        "--prompt",
        "",
        "--temperature",
        "0",
        "--max-new-tokens",
        "200",
    ];
    // What the README promises (the shipped model, greedy, 200 tokens) is what is checked below.
    assert_eq!(args, want_args, "README.md's first command changed");

    let out = Command::new(env!("CARGO_BIN_EXE_lav2"))
        .args(&args)
        .current_dir(REPO)
        .output()
        .expect("run lav2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 story");
    assert!(
        stdout.trim().len() > 100,
        "a 200-token story expected, got {stdout:?}"
    );

    let Some(root) = conformance() else {
        eprintln!("SKIPPED: the story is not compared with llama2.c's (no conformance data)");
        return;
    };
    let want = read_json(&root.join("stories260K/expected.json"))["text"]
        .as_str()
        .expect("expected.json has a text")
        .to_string()
        + "\n";
    assert_eq!(stdout, want);
}

/// The shipped model is part of the repository: neither ignored nor turned into an LFS pointer.
#[test]
fn shipped_model_is_tracked_as_plain_files() {
    let dir = Path::new(REPO).join("models/stories260K");
    for file in [
        "params.json",
        "consolidated.00.safetensors",
        "tokenizer.json",
    ] {
        let path = dir.join(file);
        assert!(path.is_file(), "{} is missing", path.display());
        let rel = format!("models/stories260K/{file}");
        let git = |args: &[&str]| Command::new("git").args(args).current_dir(REPO).output();
        let Ok(ignored) = git(&["check-ignore", "-q", &rel]) else {
            eprintln!("SKIPPED: git is not installed; .gitignore not checked");
            return;
        };
        // check-ignore: 0 ignored, 1 not ignored, 128 no repository (a source tarball).
        match ignored.status.code() {
            Some(1) => {}
            Some(0) => panic!("{rel} is ignored by git"),
            _ => {
                eprintln!("SKIPPED: not a git checkout; .gitignore not checked");
                return;
            }
        }
        let attrs = git(&["check-attr", "filter", "--", &rel]).expect("git ran above");
        let attrs = String::from_utf8_lossy(&attrs.stdout);
        assert!(
            attrs.trim_end().ends_with(": unspecified"),
            "{rel} has a git filter (LFS?): {attrs}"
        );
    }
    // An LFS pointer is a short text file; the weights are 1.2 MB of f32.
    let weights = std::fs::metadata(dir.join("consolidated.00.safetensors")).unwrap();
    assert!(weights.len() > 1_000_000, "{} bytes", weights.len());
}
