//! Replays every file of the committed fuzz regression corpus (`fuzz/regressions/<target>/`)
//! through the same entry points the cargo-fuzz targets run (`fuzz/entries.rs`), and asserts
//! that none panics. Also checks that the fuzzers' fixed companion files load, so the fuzzers
//! reach the deep paths, and (ignored, on request) writes the seed corpora the campaign starts
//! from into `fuzz/corpus/<target>/` (not committed).

#[path = "../fuzz/entries.rs"]
mod entries;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

#[test]
fn fuzz_regression_corpus_replays_without_panics() {
    let root = fuzz_dir().join("regressions");
    let mut failures = Vec::new();
    let mut replayed = 0;
    for &(target, entry) in entries::TARGETS {
        let dir = root.join(target);
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files.into_iter().filter(|p| p.is_file()) {
            let data = std::fs::read(&file).unwrap();
            let start = Instant::now();
            if catch_unwind(AssertUnwindSafe(|| entry(&data))).is_err() {
                failures.push(format!("{}: panicked", file.display()));
            }
            // A regression that used to hang must stay fast (generous for debug builds).
            if start.elapsed() > Duration::from_secs(20) {
                failures.push(format!("{}: took {:?}", file.display(), start.elapsed()));
            }
            replayed += 1;
        }
    }
    entries::remove_scratch();
    assert!(
        failures.is_empty(),
        "fuzz regressions failed:\n{}",
        failures.join("\n")
    );
    eprintln!("replayed {replayed} fuzz regression inputs");
}

/// The fuzzers' companion files are valid, so a fuzzed file is the only thing wrong.
#[test]
fn fuzz_companion_files_load() {
    let dir = std::env::temp_dir().join(format!("lav2-fuzz-companions-{}", std::process::id()));
    let (base, adapter, hf) = (dir.join("base"), dir.join("adapter"), dir.join("hf"));
    for d in [&base, &adapter, &hf] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(base.join("params.json"), entries::TINY_PARAMS).unwrap();
    std::fs::write(
        base.join("model.safetensors"),
        entries::safetensors_bytes(&entries::tiny_meta_tensors()),
    )
    .unwrap();
    std::fs::write(hf.join("config.json"), entries::TINY_HF_CONFIG).unwrap();
    std::fs::write(
        hf.join("model.safetensors"),
        entries::safetensors_bytes(&entries::tiny_hf_tensors()),
    )
    .unwrap();
    std::fs::write(
        adapter.join("adapter_config.json"),
        entries::TINY_ADAPTER_CONFIG,
    )
    .unwrap();
    std::fs::write(
        adapter.join("adapter.safetensors"),
        entries::safetensors_bytes(&entries::tiny_adapter_tensors()),
    )
    .unwrap();
    let opts = lav2::model::LoadOptions::default();
    lav2::model::Model::load(&base, None, &opts).expect("tiny Meta base");
    lav2::model::Model::load(&hf, None, &opts).expect("tiny HF base");
    let m = lav2::model::Model::load(&base, Some(&adapter), &opts).expect("tiny adapter");
    assert!(m.adapter.is_some());
    std::fs::write(
        adapter.join("adapter_config.json"),
        entries::TINY_VISUAL_ADAPTER_CONFIG,
    )
    .unwrap();
    std::fs::write(
        adapter.join("adapter.safetensors"),
        entries::safetensors_bytes(&entries::tiny_visual_adapter_tensors()),
    )
    .unwrap();
    let m = lav2::model::Model::load(&base, Some(&adapter), &opts).expect("tiny visual adapter");
    assert!(m.has_visual());
    let _ = std::fs::remove_dir_all(&dir);
}

fn png(w: u32, h: u32, color: image::ColorType) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let rgb = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 40) as u8, (y * 30) as u8, 99])
    });
    let img = image::DynamicImage::ImageRgb8(rgb);
    let img = match color {
        image::ColorType::L8 => image::DynamicImage::ImageLuma8(img.to_luma8()),
        image::ColorType::Rgba8 => image::DynamicImage::ImageRgba8(img.to_rgba8()),
        image::ColorType::Rgb16 => image::DynamicImage::ImageRgb16(img.to_rgb16()),
        _ => img,
    };
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let rgb =
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 20) as u8, (y * 10) as u8, 7]));
    image::DynamicImage::ImageRgb8(rgb)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

fn with_mode(mode: u8, bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(bytes);
    v
}

/// Writes the seed corpora: `LAV2_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_regressions --
/// --ignored write_fuzz_seeds`. The pth and sentencepiece targets start from
/// `tests/fixtures/convert/{adapters,clip,tokenizer}` instead.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let corpus = fuzz_dir().join("corpus");
    let meta = entries::safetensors_bytes(&entries::tiny_meta_tensors());
    let adapter = entries::safetensors_bytes(&entries::tiny_adapter_tensors());
    let visual_st = entries::safetensors_bytes(&entries::tiny_visual_adapter_tensors());
    let visual = r#"{ "format": "llama-adapter-v2", "query_len": 10, "query_layer": 1,
  "w_bias": true, "w_lora": false, "lora_rank": 16, "w_new_gate": false,
  "scale_form": null, "gate_activation": "tanh",
  "visual": { "clip": { "image_size": 224, "patch_size": 14, "width": 1024, "layers": 24,
                        "heads": 16, "output_dim": 768, "ln_eps": 1e-5 },
              "v_embed_dim": 768, "v_depth": 8, "v_num_heads": 16, "v_mlp_ratio": 4.0,
              "ln_eps": 1e-5, "channel_order": "bgr" } }"#;
    let seeds: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "safetensors_load",
            vec![
                with_mode(0, &meta),
                with_mode(1, &adapter),
                with_mode(2, &meta),
                with_mode(2, &entries::safetensors_bytes(&[])),
                with_mode(3, &visual_st),
            ],
        ),
        (
            "config_json",
            vec![
                with_mode(0, entries::TINY_PARAMS.as_bytes()),
                with_mode(1, entries::TINY_HF_CONFIG.as_bytes()),
                with_mode(2, entries::TINY_ADAPTER_CONFIG.as_bytes()),
                with_mode(2, visual.as_bytes()),
                with_mode(3, entries::TINY_VISUAL_ADAPTER_CONFIG.as_bytes()),
                with_mode(3, visual.as_bytes()),
            ],
        ),
        (
            "image_decode",
            vec![
                with_mode(7, &png(5, 3, image::ColorType::Rgb8)),
                with_mode(70, &png(2, 9, image::ColorType::L8)),
                with_mode(15, &png(4, 4, image::ColorType::Rgba8)),
                with_mode(3, &png(3, 2, image::ColorType::Rgb16)),
                with_mode(80, &jpeg(9, 13)),
                with_mode(20, &jpeg(17, 8)),
            ],
        ),
    ];
    for (target, files) in seeds {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, bytes) in files.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), bytes).unwrap();
        }
    }
}

/// The first finding: a 691-byte checkpoint whose tensor is a zero-stride view of 2^34
/// elements over a 16-element storage made the reader allocate 64 GiB. It is refused by name.
#[test]
fn broadcast_view_is_refused_before_allocating() {
    let path = fuzz_dir().join("regressions/pth_reader/broadcast-view-64GiB.pth");
    let data = std::fs::read(path).unwrap();
    let err = match lav2::convert::pth::Checkpoint::from_bytes("broadcast.pth", data) {
        Err(e) => e,
        Ok(c) => {
            let (path, t) = c.tensors().into_iter().next().expect("one tensor");
            c.read_f32(&path, t)
                .expect_err("a broadcast view must not be read")
        }
    };
    let msg = format!("{err:#}");
    assert!(msg.contains("broadcast"), "{msg}");
}
