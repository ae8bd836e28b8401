//! Shared test helpers: where the conformance data is, reading expected tensors, comparisons.
#![allow(dead_code)]

use std::path::PathBuf;

use lav2::generate::SamplingOptions;
use lav2::model::weights::TensorFiles;
use lav2::model::{LoadOptions, Model};

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
        panic!(
            "conformance data not found at {} (CI=true: this is a failure)",
            dir.display()
        );
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

pub fn cpu_session(model: Model) -> lav2::session::Session {
    lav2::session::Session::new(model, Box::new(lav2::backend::cpu::CpuBackend::new())).unwrap()
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

/// All tensors of a safetensors file as (name, shape, f32 data).
pub fn read_all(path: &std::path::Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let files = TensorFiles::open(&[path.to_path_buf()]).unwrap();
    let names: Vec<String> = files.names().map(|s| s.to_string()).collect();
    names
        .into_iter()
        .map(|n| {
            let t = files.get_any(&n).unwrap();
            (n, t.shape.clone(), t.to_f32().unwrap())
        })
        .collect()
}

pub fn write_all(path: &std::path::Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    use safetensors::tensor::{Dtype, TensorView};
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), bytemuck::cast_slice(d)).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// Copies every file of `src` into `dst`.
pub fn copy_dir(src: &std::path::Path, dst: &std::path::Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
}

/// Relative L2 error ‖a − b‖ / ‖b‖.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f32 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt() as f32
}

/// Greedy decoding of `n` new tokens, stopping at EOS.
pub fn greedy(n: usize) -> SamplingOptions {
    SamplingOptions {
        temperature: 0.0,
        max_new_tokens: n,
        ..Default::default()
    }
}
