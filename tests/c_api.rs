//! The C ABI end to end (`capi/`, `include/lav2.h`): builds liblav2.so and liblav2.a, compiles
//! examples/c/generate.c and tests/c/abi_checks.c with the system C compiler against the
//! committed header, linked to each library, plain and under AddressSanitizer + UBSan, and
//! checks that the C example prints what `lav2 generate` prints for the same greedy request.
//!
//! Needs a C compiler (`cc`) and the conformance data: a loud skip without them, a failure
//! under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const IDS: &str = "1,156,197,76,57,57,180,104";

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Skips the test (a failure under CI) for `why`.
fn skip(why: &str) {
    assert!(!ci(), "{why} (CI=true: this is a failure)");
    eprintln!("SKIPPED: {why}");
}

/// `$LAV2_CONFORMANCE`, else `../shared/conformance` beside the crate, when it holds every
/// input this test uses.
fn conformance() -> Option<PathBuf> {
    let root = std::env::var_os("LAV2_CONFORMANCE").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"),
        PathBuf::from,
    );
    let needed = [
        "stories260K/tokenizer.json",
        "adapter-v2/case-2/base",
        "adapter-v2/case-2/adapter",
        "clip-preprocess/franz-kafka.jpg",
    ];
    match needed.iter().find(|p| !root.join(p).exists()) {
        None => Some(root),
        Some(p) => {
            skip(&format!(
                "conformance data {} is missing",
                root.join(p).display()
            ));
            None
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The libraries of a nested `cargo build -p lav2-capi` in this test's target dir and profile,
/// and the header cbindgen generated there.
struct Built {
    shared: PathBuf,
    static_lib: PathBuf,
    generated_header: PathBuf,
    dir: PathBuf,
}

fn build_capi() -> Built {
    let exe = std::env::current_exe().expect("the test's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target/");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "-p",
        "lav2-capi",
        "--message-format=json-render-diagnostics",
    ])
    .arg("--target-dir")
    .arg(target_dir)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let out = run(&mut cmd);
    let (mut shared, mut static_lib, mut out_dir) = (None, None, None);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if !msg["package_id"]
            .as_str()
            .is_some_and(|p| p.contains("lav2-capi"))
        {
            continue;
        }
        match msg["reason"].as_str() {
            Some("build-script-executed") => out_dir = msg["out_dir"].as_str().map(PathBuf::from),
            Some("compiler-artifact") => {
                for f in msg["filenames"].as_array().into_iter().flatten() {
                    let f = PathBuf::from(f.as_str().unwrap_or_default());
                    match f.extension().and_then(|e| e.to_str()) {
                        Some("so") => shared = Some(f),
                        Some("a") => static_lib = Some(f),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let dir = profile_dir.join("c_api");
    std::fs::create_dir_all(&dir).unwrap();
    Built {
        shared: shared.expect("cargo built no liblav2.so"),
        static_lib: static_lib.expect("cargo built no liblav2.a"),
        generated_header: out_dir
            .expect("lav2-capi's build script did not run")
            .join("lav2.h"),
        dir,
    }
}

fn cc_available() -> bool {
    Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// How a C program is linked and built.
#[derive(Clone, Copy, Debug)]
struct Variant {
    static_link: bool,
    sanitize: bool,
}

impl Variant {
    fn name(self) -> String {
        let link = if self.static_link { "static" } else { "shared" };
        format!("{link}{}", if self.sanitize { "-asan-ubsan" } else { "" })
    }
}

/// Compiles `source` (relative to the crate) into `built.dir`, as `variant` says.
fn compile(built: &Built, source: &str, variant: Variant) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stem = Path::new(source).file_stem().unwrap().to_string_lossy();
    let exe = built.dir.join(format!("{stem}-{}", variant.name()));
    let mut cmd = Command::new("cc");
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g"])
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join(source))
        .arg("-o")
        .arg(&exe);
    if variant.sanitize {
        cmd.args(["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]);
    }
    if variant.static_link {
        // What rustc's `--print native-static-libs` lists for liblav2.a on Linux.
        cmd.arg(&built.static_lib).args([
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-lc",
        ]);
    } else {
        let lib_dir = built.shared.parent().unwrap();
        cmd.arg("-L").arg(lib_dir).arg("-llav2");
        cmd.arg(format!("-Wl,-rpath,{}", lib_dir.display()));
    }
    run(&mut cmd);
    exe
}

/// Runs a compiled C program; under the sanitizers, any report fails.
fn run_c(exe: &Path, args: &[&str], variant: Variant) -> String {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1")
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1");
    let out = run(&mut cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if variant.sanitize {
        for report in ["Sanitizer", "runtime error:"] {
            assert!(
                !stderr.contains(report),
                "{} {args:?}: a sanitizer report:\n{stderr}",
                exe.display()
            );
        }
    }
    String::from_utf8(out.stdout).expect("the C program's stdout is UTF-8")
}

/// `lav2 generate` (greedy) with `args`: its stdout.
fn cli(args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lav2"));
    cmd.arg("generate")
        .args(["--temperature", "0", "--device", "auto"])
        .args(args);
    String::from_utf8(run(&mut cmd).stdout).expect("lav2's stdout is UTF-8")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[test]
fn c_programs_generate_through_the_c_api_as_the_cli_does() {
    let Some(data) = conformance() else { return };
    if !cc_available() {
        return skip("no C compiler: `cc` is not on PATH");
    }
    let t0 = Instant::now();
    let built = build_capi();
    let generated = std::fs::read_to_string(&built.generated_header).unwrap();
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/lav2.h"))
            .unwrap_or_default();
    assert!(
        generated == committed,
        "include/lav2.h differs from what cbindgen generates from capi/src; regenerate it with\n    \
         LAV2_WRITE_HEADER=1 cargo build -p lav2-capi"
    );
    eprintln!("c_api: nested build {:.1} s", t0.elapsed().as_secs_f64());

    let stories = data.join("stories260K");
    let case = data.join("adapter-v2/case-2");
    let (base, adapter) = (case.join("base"), case.join("adapter"));
    let image = data.join("clip-preprocess/franz-kafka.jpg");
    let story_args = [path(&stories), "Once upon a time", "--max-new-tokens", "40"];
    let adapter_args = [
        path(&base),
        "--adapter",
        path(&adapter),
        "--image",
        path(&image),
        "--ids",
        IDS,
        "--max-new-tokens",
        "8",
    ];
    let story = cli(&[
        "--model",
        path(&stories),
        "--prompt",
        "Once upon a time",
        "--max-new-tokens",
        "40",
    ]);
    assert!(
        story.len() > 40 && story.ends_with('\n'),
        "lav2 generate printed {story:?}"
    );
    // The case has no tokenizer: both print the generated ids.
    let answer = cli(&[
        "--model",
        path(&base),
        "--adapter",
        path(&adapter),
        "--image",
        path(&image),
        "--prompt-ids",
        IDS,
        "--max-new-tokens",
        "8",
    ]);
    assert!(
        answer.split_whitespace().count() == 8,
        "lav2 generate printed {answer:?}"
    );

    for static_link in [false, true] {
        for sanitize in [false, true] {
            let t = Instant::now();
            let variant = Variant {
                static_link,
                sanitize,
            };
            let generate = compile(&built, "examples/c/generate.c", variant);
            let checks = compile(&built, "tests/c/abi_checks.c", variant);
            let c_story = run_c(&generate, &story_args, variant);
            assert_eq!(
                c_story,
                story,
                "{}: the C example's story differs from lav2 generate's",
                variant.name()
            );
            let c_answer = run_c(&generate, &adapter_args, variant);
            assert_eq!(
                c_answer,
                answer,
                "{}: the C example's adapter answer differs from lav2 generate's",
                variant.name()
            );
            let summary = run_c(&checks, &[path(&stories), path(&case)], variant);
            assert!(
                summary.contains(" 0 failed"),
                "{}: {summary}",
                variant.name()
            );
            eprintln!(
                "c_api: {} ({}) {:.1} s",
                variant.name(),
                summary.trim(),
                t.elapsed().as_secs_f64()
            );
        }
    }
}
