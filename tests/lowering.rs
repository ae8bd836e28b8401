//! Every CUDA lowering path, checked on any machine: the graphs of the synthetic models (every
//! weight format, one sequence and a batch, decode, prefill, prompt K/V, vision) are lowered
//! without a device, and each launch is checked against its kernel's PTX parameters, the grid,
//! block and shared-memory limits of an H100, and the element types and sizes its op needs.

use std::collections::BTreeSet;

use lav2::backend::cuda::{dry_lower, kernels, DryDevice, Variants};
use lav2::model::llama::{self, Head};
use lav2::model::{synthetic, vision, Model};
use lav2::ops::Sizes;
use lav2::quant::QuantFormat;

fn kernels_compiled() -> bool {
    if kernels::compiled() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "kernels were not compiled: CI must build with nvcc (scripts/install-nvcc.sh)"
    );
    eprintln!(
        "SKIPPED: kernels were not compiled (no nvcc at build time), nothing to check against"
    );
    false
}

/// Lowers `graph` for an H100 with the default kernels and returns the kernels it launches.
fn lower(model: &Model, graph: lav2::graph::Graph, batch: usize) -> Vec<String> {
    lower_on(model, graph, batch, DryDevice::H100)
}

fn lower_on(
    model: &Model,
    graph: lav2::graph::Graph,
    batch: usize,
    device: DryDevice,
) -> Vec<String> {
    let name = graph.name.clone();
    let states = llama::states(model, batch);
    let steps = dry_lower(&graph, &model.weights.tensors, &states, &device)
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    kernel_names(&steps)
}

fn lower_model(model: &Model, used: &mut BTreeSet<String>) {
    for batch in [1, 3] {
        for (t, head) in [
            (1, Head::AllLogits),
            (1, Head::Sample),
            (7, Head::LastLogits),
            (64, Head::AllLogits),
            (512, Head::LastLogits),
        ] {
            let g = llama::build_forward(model, batch, t, head);
            used.extend(lower(model, g, batch));
        }
    }
    if let Some(g) = llama::build_prompt_graph(model) {
        used.extend(lower(model, g, 1));
    }
    if let Some(a) = &model.adapter {
        if let Some(v) = &a.config.visual {
            let g = vision::build_vision_graph(&model.weights, v, a.config.query_len);
            used.extend(lower(model, g, 1));
        }
    }
}

#[test]
fn every_graph_lowers_to_launches_that_match_their_kernels() {
    if !kernels_compiled() {
        return;
    }
    let mut used = BTreeSet::new();
    for preset in ["tiny", "7b"] {
        let p = synthetic::preset(preset, 2048).unwrap();
        for quant in [
            QuantFormat::None,
            QuantFormat::Int8,
            QuantFormat::Int4 { zero_point: false },
            QuantFormat::Int4 { zero_point: true },
        ] {
            for with_adapter in [false, true] {
                lower_model(&synthetic::build(&p, 1, quant, with_adapter), &mut used);
            }
        }
    }
    // Every kernel family the model path needs was reached (and so checked).
    for k in [
        "embedding_f16",
        "rmsnorm_fused_f16",
        "linear_gemv_f16",
        "linear_gemv_f16f32",
        "linear_gemm128_f16",
        "linear_gemm64_f16",
        "linear_quant_gemv_int8_f16",
        "linear_quant_gemv_int4_f16",
        "linear_quant_gemm128_int8_f16",
        "linear_quant_gemm64_int4_f16",
        "silu_mul_f16",
        "rope_kv_write_f16",
        "adapter_attention_prefill_f16",
        "adapter_attention_decode_split_f16",
        "adapter_attention_decode_reduce_f16",
        "sample_token_f32",
        "im2col_patches_f32_to_f16",
        "layernorm_f16",
        "vision_attention_f16",
    ] {
        assert!(used.contains(k), "{k} was never lowered; lowered: {used:?}");
    }
}

/// The comparison kernels lower as consistently as the model's, for every graph.
#[test]
fn kernel_variants_lower_to_launches_that_match_their_kernels() {
    if !kernels_compiled() {
        return;
    }
    let device = DryDevice {
        variants: Variants::parse("rmsnorm=naive,adapter_attention=unfused").unwrap(),
        ..DryDevice::H100
    };
    let mut used = BTreeSet::new();
    for quant in [QuantFormat::None, QuantFormat::Int4 { zero_point: true }] {
        for preset in ["tiny", "7b"] {
            let p = synthetic::preset(preset, 2048).unwrap();
            let model = synthetic::build(&p, 1, quant, true);
            for batch in [1, 3] {
                for t in [1, 7, 512] {
                    let g = llama::build_forward(&model, batch, t, Head::LastLogits);
                    used.extend(lower_on(&model, g, batch, device.clone()));
                }
            }
        }
    }
    for k in [
        "rmsnorm_naive_f16",
        "adapter_attention_causal_prefill_f16",
        "adapter_attention_prompt_f16",
        "adapter_attention_decode_split_f16",
    ] {
        assert!(used.contains(k), "{k} was never lowered; lowered: {used:?}");
    }
    for k in ["rmsnorm_fused_f16", "adapter_attention_prefill_f16"] {
        assert!(
            !used.contains(k),
            "{k} lowered although a variant replaces it"
        );
    }
    let err = Variants::parse("rmsnorm=fast").unwrap_err();
    assert!(format!("{err}").contains("rmsnorm=fused|naive"), "{err}");
}

/// The signatures the launches are checked against are the kernels' own, read from the PTX.
#[test]
fn kernel_signatures_come_from_the_ptx() {
    if !kernels_compiled() {
        return;
    }
    let sigs = kernels::signatures();
    let rope = &sigs["rope_kv_write_f16"];
    assert_eq!(rope.len(), 14, "{rope:?}");
    assert_eq!(rope[10], kernels::ParamKind::Float32);
    assert_eq!(sigs["sample_token_f32"].len(), 5);
    // The launch bounds the launches are checked against come from the same PTX.
    assert_eq!(kernels::launch_bounds()["sample_token_f32"], 1024);
}

/// Every case of every registry op lowers for an H100 with each of its kernel variants, through
/// the same placement and lowering code `CudaBackend::prepare` runs; together the cases reach
/// every entry point of the op's kernel files, and no op launches a kernel from another's file.
#[test]
fn every_registry_case_lowers_with_every_variant() {
    if !kernels_compiled() {
        return;
    }
    let mut rng = lav2::rng::Rng::new(1);
    for entry in lav2::ops::REGISTRY {
        let mut used = BTreeSet::new();
        let mut variants = vec![String::new()];
        variants.extend(
            entry
                .variants
                .iter()
                .skip(1)
                .map(|v| format!("{}={}", entry.name, v.name)),
        );
        for sizes in [Sizes::Emulator, Sizes::Gpu] {
            for c in (entry.cases)(&mut rng, sizes) {
                for spec in &variants {
                    let device = DryDevice {
                        variants: Variants::parse(spec).unwrap(),
                        ..DryDevice::H100
                    };
                    let steps = dry_lower(&c.graph, &c.weights, &c.states, &device)
                        .unwrap_or_else(|e| panic!("{} [{spec}]: {e:#}", c.name));
                    used.extend(kernel_names(&steps));
                }
            }
        }
        let owned: BTreeSet<String> = kernels::KERNEL_MODULES
            .iter()
            .filter(|m| entry.kernel_files.contains(&m.name))
            .flat_map(|m| m.entry_points.iter().map(|e| e.to_string()))
            .collect();
        assert_eq!(
            used, owned,
            "{}: the kernels its cases lower to are not exactly those of kernels/{:?}.cu",
            entry.name, entry.kernel_files
        );
    }
}

fn kernel_names(steps: &[String]) -> Vec<String> {
    steps
        .iter()
        .filter_map(|s| s.split_once("→ ").map(|(_, k)| k))
        .filter(|k| !k.starts_with("device copy"))
        .filter_map(|k| k.split_whitespace().next())
        .map(str::to_string)
        .collect()
}
