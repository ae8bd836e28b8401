//! Shared test helpers: where the conformance data is, reading expected tensors, comparisons.
#![allow(dead_code)]

use std::path::PathBuf;

use lav2::model::weights::TensorFiles;
use lav2::{LoadOptions, Model};

/// `$LAV2_CONFORMANCE`, else `../shared/conformance`. Missing: a failure under CI, a loud skip
/// elsewhere.
pub fn conformance() -> Option<PathBuf> {
    let dir = std::env::var_os("LAV2_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"));
    if dir.join("README.md").is_file() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("conformance data not found at {} (CI=true: this is a failure)", dir.display());
    }
    eprintln!(
        "SKIPPED: conformance data not found at {}; set LAV2_CONFORMANCE to run this test",
        dir.display()
    );
    None
}

pub fn read_tensor(path: &std::path::Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let files = TensorFiles::open(&[path.to_path_buf()]).unwrap();
    let t = files.get_any(name).unwrap();
    (t.shape.clone(), t.to_f32().unwrap())
}

pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn load(dir: &std::path::Path, adapter: Option<&std::path::Path>) -> Model {
    Model::load(dir, adapter, &LoadOptions::default()).unwrap()
}

pub fn cpu_session(model: Model) -> lav2::Session {
    lav2::Session::new(model, Box::new(lav2::backend::cpu::CpuBackend::new())).unwrap()
}

/// A scratch folder under the target directory, fresh for each call.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
