//! The house is one-way: every module of `src/` imports only modules of lower layers (reading
//! each file's `crate::` paths, test modules excluded), so there is no import cycle between
//! `graph`, `ops`, `backend`, `model`, `session` and `generate`, the IR knows no backend, a model
//! never mentions a backend, and the CLI is the only place that prints.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level modules by layer, lowest first; a module may import its own layer's module and any
/// lower layer's, never a sibling of its layer or anything above.
const LAYERS: &[&[&str]] = &[
    &["rng", "notice"],
    &["tensor", "sampling"],
    &["quant", "limits"],
    &["io"],
    &["graph"],
    &["ops"],
    &["backend", "model"],
    &["convert", "session"],
    &["generate"],
    &["experts", "bench", "api"],
];

/// Items of the crate root (`lib.rs` re-exports) and where they live.
const ROOT_ITEMS: &[(&str, &str)] = &[
    ("Session", "session"),
    ("Model", "model"),
    ("LoadOptions", "model"),
    ("DeviceChoice", "backend"),
];

fn layer_of(module: &str) -> usize {
    let module = ROOT_ITEMS
        .iter()
        .find(|(item, _)| *item == module)
        .map_or(module, |(_, m)| m);
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module '{module}' is in no layer of tests/layers.rs"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a source names through `crate::…` (single paths and `{…}` groups),
/// outside its `#[cfg(test)]` module.
fn imports(src: &str) -> BTreeSet<String> {
    let before_tests = src.split("#[cfg(test)]").next().unwrap_or("");
    let code: String = before_tests
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let code = code.as_str();
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = &group[..group.find('}').unwrap_or(group.len())];
            for item in body.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

/// The library's top-level modules (`pub mod` in lib.rs); the binary's own (main.rs and its
/// `mod`s: the CLI) are above every layer and may print.
fn library_modules() -> BTreeSet<String> {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs");
    std::fs::read_to_string(lib)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect()
}

#[test]
fn every_module_imports_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if !library_modules().contains(&top) {
            continue;
        }
        let mine = layer_of(&top);
        for m in imports(&std::fs::read_to_string(f).unwrap()) {
            if m == top {
                continue;
            }
            let theirs = layer_of(&m);
            if theirs >= mine {
                violations.push(format!(
                    "{} ({top}, layer {mine}) imports crate::{m} (layer {theirs})",
                    rel.display()
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// Only the CLI prints: the library returns values and typed errors.
#[test]
fn the_library_never_prints() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut prints = Vec::new();
    let modules = library_modules();
    for f in files.iter().filter(|f| {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        modules.contains(top.trim_end_matches(".rs"))
    }) {
        let text = std::fs::read_to_string(f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (i, line) in code.lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") {
                continue;
            }
            let printing = ["eprintln!", "println!", "eprint!(", "print!(", "dbg!("];
            if printing.iter().any(|m| l.contains(m)) {
                prints.push(format!("{}:{}: {}", f.display(), i + 1, l));
            }
        }
    }
    assert!(prints.is_empty(), "{}", prints.join("\n"));
}

#[test]
fn imports_are_read_from_paths_and_groups() {
    let src = "use crate::graph::{Graph, Op};\nuse crate::{io, model::Model};\nfn f() { crate::ops::find(\"x\"); } // crate::bench\n#[cfg(test)]\nmod tests { use crate::session; }";
    let got: Vec<String> = imports(src).into_iter().collect();
    assert_eq!(got, ["graph", "io", "model", "ops"]);
}
