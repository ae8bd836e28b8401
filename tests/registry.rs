//! The op registry is complete: every op of the IR has an entry with every part (shape rule,
//! CPU reference, CUDA lowering, kernel files, variants, cases), every kernel file belongs to one
//! op (or is one of the backend's own utilities), and every case is a valid, alias-free graph the
//! CPU reference runs. The GPU side of every case runs in tests/gpu.rs and tests/lowering.rs.

use std::collections::BTreeSet;

use lav2::backend::cpu::CpuBackend;
use lav2::backend::program::Program;
use lav2::graph::plan::Plan;
use lav2::graph::Op;
use lav2::ops::case::Case;
use lav2::ops::{Sizes, Variants, REGISTRY};
use lav2::rng::Rng;

/// Kernel files that are the CUDA backend's own (uploads, synthetic weights), not an op's.
const BACKEND_KERNEL_FILES: &[&str] = &["convert", "synthetic"];

fn kernels_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels")
}

#[test]
fn every_op_of_the_ir_has_one_registry_entry() {
    let names: Vec<&str> = REGISTRY.iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        Op::NAMES,
        "the registry must list Op::NAMES, in order"
    );
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "an op is registered twice");
}

#[test]
fn every_kernel_file_belongs_to_exactly_one_op() {
    let mut owned = BTreeSet::new();
    for e in REGISTRY {
        for f in e.kernel_files {
            assert!(
                *f == e.name || f.starts_with(&format!("{}_", e.name)),
                "{}: kernel file '{f}' is not named after the op",
                e.name
            );
            assert!(
                kernels_dir().join(format!("{f}.cu")).is_file(),
                "{}: kernels/{f}.cu does not exist",
                e.name
            );
            assert!(owned.insert(f.to_string()), "kernels/{f}.cu has two owners");
        }
    }
    for entry in std::fs::read_dir(kernels_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("cu") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        assert!(
            owned.contains(&stem) || BACKEND_KERNEL_FILES.contains(&stem.as_str()),
            "kernels/{stem}.cu belongs to no op of the registry"
        );
    }
    // Entry points are named `<op>_<variant>_<dtype>` after their file's op.
    for m in lav2::ops::kernels::KERNEL_MODULES {
        if BACKEND_KERNEL_FILES.contains(&m.name) {
            continue;
        }
        let op = REGISTRY
            .iter()
            .find(|e| e.kernel_files.contains(&m.name))
            .unwrap();
        for ep in m.entry_points {
            assert!(
                ep.starts_with(&format!("{}_", op.name)),
                "kernels/{}.cu: entry point {ep} is not named after {}",
                m.name,
                op.name
            );
        }
    }
}

#[test]
fn variants_are_named_once_and_parse() {
    for e in REGISTRY {
        let names: BTreeSet<&str> = e.variants.iter().map(|v| v.name).collect();
        assert_eq!(names.len(), e.variants.len(), "{}: a variant twice", e.name);
        assert!(
            e.variants.len() != 1,
            "{}: a lone variant is no choice",
            e.name
        );
        for v in e.variants {
            let spec = format!("{}={}", e.name, v.name);
            let parsed = Variants::parse(&spec).unwrap();
            assert_eq!(parsed.of(e.name), v.name);
            assert!(!v.about.is_empty());
        }
    }
    let err = Variants::parse("rmsnorm=fast").unwrap_err().to_string();
    assert!(err.contains("rmsnorm=fused|naive"), "{err}");
}

fn all_cases(sizes: Sizes) -> Vec<(&'static str, Case)> {
    let mut rng = Rng::new(7);
    REGISTRY
        .iter()
        .flat_map(|e| {
            let cases = (e.cases)(&mut rng, sizes);
            assert!(!cases.is_empty(), "{} has no {sizes:?} cases", e.name);
            cases.into_iter().map(move |c| (e.name, c))
        })
        .collect()
}

/// Each case is a graph of its op that the shape rules accept and the planner places without
/// aliasing, with a stated tolerance and bytes to move.
#[test]
fn every_case_is_a_valid_graph_of_its_op() {
    for sizes in [Sizes::Emulator, Sizes::Gpu] {
        for (op, c) in all_cases(sizes) {
            assert!(
                c.graph.ops.iter().any(|o| o.name() == op),
                "{}: no {op} op in the case",
                c.name
            );
            lav2::ops::validate(&c.graph).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            for act_bytes in [2, 4] {
                Plan::new(&c.graph, act_bytes)
                    .check_no_alias(&c.graph)
                    .unwrap_or_else(|e| panic!("{}: {e}", c.name));
            }
            assert!(c.tolerance >= 0.0 && c.tolerance <= 0.05, "{}", c.name);
            assert!(c.bytes_moved() > 0, "{}", c.name);
        }
    }
}

/// The shape rule of every op can fail: widening the first tensor the op writes by one column
/// must be refused, with the op named.
#[test]
fn every_shape_rule_refuses_a_wrong_output() {
    for (op, c) in all_cases(Sizes::Emulator) {
        let mut g = c.graph.clone();
        let target = g.ops.iter().find(|o| o.name() == op).unwrap().writes()[0];
        let shape = &mut g.tensors[target.0].shape;
        *shape.last_mut().unwrap() += 1;
        let err = lav2::ops::validate(&g)
            .err()
            .unwrap_or_else(|| panic!("{}: a widened output was accepted", c.name));
        assert!(err.contains(op), "{}: {err}", c.name);
    }
}

/// The CPU reference runs every case (the emulator-sized list) to finite outputs.
#[test]
fn the_cpu_reference_runs_every_case() {
    for (_, c) in all_cases(Sizes::Emulator) {
        let mut b = CpuBackend::new();
        let p = Program::for_case(&mut b, &c).unwrap_or_else(|e| panic!("{}: {e:#}", c.name));
        p.run(&mut b)
            .unwrap_or_else(|e| panic!("{}: {e:#}", c.name));
        for i in 0..c.graph.outputs.len() {
            let out = p.output(&mut b, i).unwrap();
            assert!(
                out.iter().all(|v| v.is_finite()),
                "{}: output {i} is not finite",
                c.name
            );
        }
    }
}
