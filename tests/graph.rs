//! Properties of the executor on real models: incremental decode equals the full forward,
//! a zero-gated adapter is the base model, plans reuse memory.

mod common;

use common::*;

/// Prefill of the first token, then one decode step per token, against one forward of all.
fn check_incremental(s: &mut lav2::session::Session, tokens: &[u32], what: &str) {
    let full = s.forward(tokens, 0, true).unwrap();
    let vocab = full.len() / tokens.len();
    let mut step = s.forward(&tokens[..1], 0, true).unwrap();
    for (i, &t) in tokens.iter().enumerate().skip(1) {
        let row = &full[(i - 1) * vocab..i * vocab];
        assert!(
            max_abs_diff(&step, row) <= 1e-4,
            "{what}: position {}",
            i - 1
        );
        step = s.forward(&[t], i, false).unwrap();
    }
    let last = &full[(tokens.len() - 1) * vocab..];
    assert!(max_abs_diff(&step, last) <= 1e-4, "{what}: last position");
    // A prefill split in two chunks agrees as well.
    let half = tokens.len() / 2;
    s.forward(&tokens[..half], 0, false).unwrap();
    let second = s.forward(&tokens[half..], half, true).unwrap();
    assert!(
        max_abs_diff(&second, &full[half * vocab..]) <= 1e-4,
        "{what}: chunked prefill"
    );
}

#[test]
fn incremental_decode_equals_full_forward() {
    let Some(root) = conformance() else { return };
    let mut s = cpu_session(load(&root.join("stories260K"), None));
    check_incremental(
        &mut s,
        &[1, 403, 407, 261, 378, 432, 383, 286, 261],
        "stories260K",
    );
    let mut s = cpu_session(load(&root.join("tinystories656K"), None));
    check_incremental(
        &mut s,
        &[1, 80, 147, 201, 282, 57, 313, 598],
        "tinystories656K",
    );
    for case in ["case-2", "case-3", "case-5"] {
        let dir = root.join("adapter-v2").join(case);
        let mut s = cpu_session(load(&dir.join("base"), Some(&dir.join("adapter"))));
        let (_, pixels) = read_tensor(&dir.join("expected.safetensors"), "pixels");
        let vq = s.visual_query(&pixels).unwrap();
        s.set_visual_query(Some(&vq)).unwrap();
        let tokens = ids(&read_json(&dir.join("expected.json"))["tokens"]);
        check_incremental(&mut s, &tokens, case);
    }
}

/// Keeps only the prompt path of an adapter (no biases, LoRA, scales, tuned norms) and sets
/// every gate to zero: the result must be the base model, whatever the prompts and image.
#[test]
fn zero_gated_adapter_reproduces_the_base_model() {
    let Some(root) = conformance() else { return };
    let case = root.join("adapter-v2/case-3");
    let dir = scratch("zero-gate");
    let adapter = dir.join("adapter");
    std::fs::create_dir_all(&adapter).unwrap();
    let mut cfg = read_json(&case.join("adapter/adapter_config.json"));
    cfg["w_bias"] = false.into();
    cfg["w_lora"] = false.into();
    cfg["w_new_gate"] = false.into();
    std::fs::write(adapter.join("adapter_config.json"), cfg.to_string()).unwrap();
    let kept: Vec<_> = read_all(&case.join("adapter/adapter.safetensors"))
        .into_iter()
        .filter(|(n, _, _)| !n.starts_with("llama.") || n.ends_with(".gate"))
        .map(|(n, s, d)| {
            let d = if n.ends_with(".gate") {
                vec![0.0; d.len()]
            } else {
                d
            };
            (n, s, d)
        })
        .collect();
    write_all(&adapter.join("adapter.safetensors"), &kept);

    let tokens = ids(&read_json(&case.join("expected.json"))["tokens"]);
    let mut s = cpu_session(load(&case.join("base"), Some(&adapter)));
    let (_, pixels) = read_tensor(&case.join("expected.safetensors"), "pixels");
    let vq = s.visual_query(&pixels).unwrap();
    s.set_visual_query(Some(&vq)).unwrap();
    let with_adapter = s.forward(&tokens, 0, true).unwrap();
    let mut base = cpu_session(load(&case.join("base"), None));
    let base_logits = base.forward(&tokens, 0, true).unwrap();
    assert!(max_abs_diff(&with_adapter, &base_logits) <= 1e-5);
    let (_, want_base) = read_tensor(&case.join("expected.safetensors"), "logits_base");
    assert!(max_abs_diff(&base_logits, &want_base) <= 1e-3);

    // The gate is what switches it off: the same prompts with the case's gates change logits.
    let gated: Vec<_> = read_all(&case.join("adapter/adapter.safetensors"))
        .into_iter()
        .filter(|(n, _, _)| !n.starts_with("llama.") || n.ends_with(".gate"))
        .collect();
    write_all(&adapter.join("adapter.safetensors"), &gated);
    let mut s = cpu_session(load(&case.join("base"), Some(&adapter)));
    s.set_visual_query(Some(&vq)).unwrap();
    let gated_logits = s.forward(&tokens, 0, true).unwrap();
    assert!(max_abs_diff(&gated_logits, &base_logits) > 1e-3);
}

#[test]
fn plans_reuse_activation_memory() {
    let Some(root) = conformance() else { return };
    let mut s = cpu_session(load(&root.join("stories260K"), None));
    s.forward(&[1; 64], 0, true).unwrap();
    let plans = s.planned_bytes();
    let (name, arena, unplanned) = &plans[0];
    assert_eq!(name, "prefill_64");
    assert!(
        *arena * 4 < *unplanned,
        "arena {arena} vs {unplanned} without reuse"
    );
}

/// Hugging Face's `permute` from its LLaMA conversion script:
/// `w.view(heads, rows / heads / 2, 2, cols).transpose(1, 2).reshape(rows, cols)`.
fn hf_permute(w: &[f32], heads: usize, rows: usize, cols: usize) -> Vec<f32> {
    let half = rows / heads / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = (h * half + i) * 2 + j; // view index (h, i, j)
                let dst = (h * 2 + j) * half + i; // after transpose: (h, j, i)
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// The Meta-layout base of an adapter case, rewritten as a Hugging Face folder: the adapter
/// (authors' Meta row order for wq/wk biases and LoRA) must give the same logits on it.
#[test]
fn adapter_on_a_hugging_face_base_matches_the_meta_base() {
    let Some(root) = conformance() else { return };
    let case = root.join("adapter-v2/case-3");
    let params = read_json(&case.join("base/params.json"));
    let dim = params["dim"].as_u64().unwrap() as usize;
    let heads = params["n_heads"].as_u64().unwrap() as usize;
    let kv_heads = params["n_kv_heads"].as_u64().unwrap() as usize;
    let layers = params["n_layers"].as_u64().unwrap() as usize;
    let hd = dim / heads;
    let mut ffn = 0;
    let mut vocab = 0;
    let hf: Vec<_> = read_all(&case.join("base/consolidated.00.safetensors"))
        .into_iter()
        .map(|(n, s, d)| {
            let rename = [
                ("attention.wq.weight", "self_attn.q_proj.weight"),
                ("attention.wk.weight", "self_attn.k_proj.weight"),
                ("attention.wv.weight", "self_attn.v_proj.weight"),
                ("attention.wo.weight", "self_attn.o_proj.weight"),
                ("feed_forward.w1.weight", "mlp.gate_proj.weight"),
                ("feed_forward.w2.weight", "mlp.down_proj.weight"),
                ("feed_forward.w3.weight", "mlp.up_proj.weight"),
                ("attention_norm.weight", "input_layernorm.weight"),
                ("ffn_norm.weight", "post_attention_layernorm.weight"),
            ];
            let d = if n.ends_with("wq.weight") {
                hf_permute(&d, heads, s[0], s[1])
            } else if n.ends_with("wk.weight") {
                hf_permute(&d, kv_heads, s[0], s[1])
            } else {
                d
            };
            if n.ends_with("w1.weight") {
                ffn = s[0];
            }
            let name = match n.as_str() {
                "tok_embeddings.weight" => {
                    vocab = s[0];
                    "model.embed_tokens.weight".to_string()
                }
                "output.weight" => "lm_head.weight".to_string(),
                "norm.weight" => "model.norm.weight".to_string(),
                _ => {
                    let (from, to) = rename.iter().find(|(m, _)| n.ends_with(m)).unwrap();
                    format!("model.{}{to}", &n[..n.len() - from.len()])
                }
            };
            (name, s, d)
        })
        .collect();
    let dir = scratch("hf-base");
    write_all(&dir.join("model.safetensors"), &hf);
    let config = serde_json::json!({
        "model_type": "llama", "hidden_act": "silu", "hidden_size": dim,
        "intermediate_size": ffn, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "num_hidden_layers": layers, "vocab_size": vocab, "rms_norm_eps": params["norm_eps"],
        "rope_theta": params["rope_theta"], "tie_word_embeddings": false, "rope_scaling": null
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    assert_eq!(hd % 2, 0);

    let tokens = ids(&read_json(&case.join("expected.json"))["tokens"]);
    let exp = case.join("expected.safetensors");
    let mut s = cpu_session(load(&dir, Some(&case.join("adapter"))));
    assert_eq!(
        s.model().config.layout,
        lav2::model::config::Layout::HuggingFace
    );
    let (_, pixels) = read_tensor(&exp, "pixels");
    let vq = s.visual_query(&pixels).unwrap();
    s.set_visual_query(Some(&vq)).unwrap();
    let (_, want) = read_tensor(&exp, "logits");
    let err = max_abs_diff(&s.forward(&tokens, 0, true).unwrap(), &want);
    assert!(
        err <= 1e-3,
        "HF-layout base with adapter: logits differ by {err}"
    );
}

/// A checkpoint split over several safetensors files loads as one.
#[test]
fn sharded_safetensors_load_as_one_model() {
    let Some(root) = conformance() else { return };
    let src = root.join("stories260K");
    let dir = scratch("sharded");
    for f in ["params.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let all = read_all(&src.join("consolidated.00.safetensors"));
    let (a, b): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|(n, _, _)| n.starts_with("layers.1") || n.starts_with("tok"));
    write_all(&dir.join("model-00001-of-00002.safetensors"), &a);
    write_all(&dir.join("model-00002-of-00002.safetensors"), &b);
    let tokens = [1, 403, 407, 261];
    let want = cpu_session(load(&src, None))
        .forward(&tokens, 0, true)
        .unwrap();
    let got = cpu_session(load(&dir, None))
        .forward(&tokens, 0, true)
        .unwrap();
    assert_eq!(got, want);
}

/// Prompts of every length share a handful of planned shapes (power-of-two chunks).
#[test]
fn prompts_of_any_length_plan_a_bounded_number_of_graphs() {
    let Some(root) = conformance() else { return };
    let mut s = cpu_session(load(&root.join("stories260K"), None));
    for n in 1..=100usize {
        let tokens: Vec<u32> = (0..n as u32).map(|i| 1 + i % 500).collect();
        s.forward(&tokens, 0, false).unwrap();
    }
    // 1, 2, 4, …, 64 tokens with a last-row head: seven forward graphs, whatever the lengths.
    let forward_graphs = s
        .planned_bytes()
        .iter()
        .filter(|p| p.0 != "prompt_kv" && p.0 != "vision")
        .count();
    assert_eq!(forward_graphs, 7);
}

/// A batched session runs its sequences exactly as separate sessions would: prefill (in
/// chunks, with all logits), decode steps, and device-side sampling, with an adapter and image.
#[test]
fn a_batch_equals_its_sequences_run_alone() {
    let Some(root) = conformance() else { return };
    let dir = root.join("adapter-v2").join("case-2");
    let model = || load(&dir.join("base"), Some(&dir.join("adapter")));
    let cpu = || Box::new(lav2::backend::cpu::CpuBackend::new());
    let (_, pixels) = read_tensor(&dir.join("expected.safetensors"), "pixels");
    let tokens = ids(&read_json(&dir.join("expected.json"))["tokens"]);
    let vocab = model().config.vocab_size;
    // Three prompts of the same length (a 3-token prompt needs two chunks: 2 + 1).
    let prompts: Vec<Vec<u32>> = (0..3)
        .map(|b| (0..3).map(|i| tokens[(b * 3 + i) % tokens.len()]).collect())
        .collect();
    let mut batched = lav2::session::Session::with_batch(model(), cpu(), 3).unwrap();
    let vq = batched.visual_query(&pixels).unwrap();
    batched.set_visual_query(Some(&vq)).unwrap();
    let all = batched.forward(&prompts.concat(), 0, true).unwrap();
    let next = batched
        .next_tokens(&[5, 6, 7], 3, 0.0, 1.0, &[0.0; 3])
        .unwrap();
    let sampled = batched
        .next_tokens(&next, 4, 0.9, 0.8, &[0.1, 0.5, 0.9])
        .unwrap();
    let last = batched.forward(&sampled, 5, false).unwrap();
    assert_eq!(all.len(), 3 * 3 * vocab);
    assert_eq!(last.len(), 3 * vocab);
    for (b, prompt) in prompts.iter().enumerate() {
        let mut alone = cpu_session(model());
        alone.set_visual_query(Some(&vq)).unwrap();
        let want = alone.forward(prompt, 0, true).unwrap();
        let got = &all[b * 3 * vocab..(b + 1) * 3 * vocab];
        assert!(max_abs_diff(got, &want) <= 1e-5, "sequence {b}: prefill");
        let t = alone.next_token(&[5 + b as u32], 3, 0.0, 1.0, 0.0).unwrap();
        assert_eq!(next[b], t, "sequence {b}: greedy token");
        let u = [0.1, 0.5, 0.9][b];
        let t = alone.next_token(&[t], 4, 0.9, 0.8, u).unwrap();
        assert_eq!(sampled[b], t, "sequence {b}: sampled token");
        let want = alone.forward(&[t], 5, false).unwrap();
        let got = &last[b * vocab..(b + 1) * vocab];
        assert!(max_abs_diff(got, &want) <= 1e-5, "sequence {b}: decode");
    }
    // Last rows of a multi-token step (every sequence's last token), as logits and sampled.
    let pairs: Vec<u32> = prompts.iter().flat_map(|p| p[..2].to_vec()).collect();
    let last = batched.forward(&pairs, 0, false).unwrap();
    let picked = batched.next_tokens(&pairs, 0, 0.0, 1.0, &[0.0; 3]).unwrap();
    for (b, prompt) in prompts.iter().enumerate() {
        let mut alone = cpu_session(model());
        alone.set_visual_query(Some(&vq)).unwrap();
        let want = alone.forward(&prompt[..2], 0, false).unwrap();
        let got = &last[b * vocab..(b + 1) * vocab];
        assert!(max_abs_diff(got, &want) <= 1e-5, "sequence {b}: last row");
        assert_eq!(
            Some(picked[b]),
            lav2::ops::sample_token::argmax(&want),
            "sequence {b}"
        );
    }
    // Inputs that do not split over the batch are refused with the reason.
    let err = batched.forward(&[1, 2], 0, false).unwrap_err();
    assert!(format!("{err:#}").contains("3 sequences"), "{err:#}");
    let err = batched
        .next_tokens(&[1, 2, 3], 0, 0.0, 1.0, &[0.0])
        .unwrap_err();
    assert!(format!("{err:#}").contains("uniform"), "{err:#}");
    assert!(lav2::session::Session::with_batch(model(), cpu(), 0).is_err());
}

fn tiny_model(with_adapter: bool) -> lav2::model::Model {
    let p = lav2::model::synthetic::preset("tiny", 64).unwrap();
    lav2::model::synthetic::build(&p, 3, lav2::quant::QuantFormat::None, with_adapter)
}

/// Temperature and top-p are inputs of the sampling graph, like the uniform draw: three settings
/// run through one decode program (one CUDA graph on a GPU), and each picks the reference's token
/// for the logits of the same step.
#[test]
fn one_decode_program_serves_three_sampling_settings() {
    let cpu = || Box::new(lav2::backend::cpu::CpuBackend::new());
    let mut s = lav2::session::Session::new(tiny_model(true), cpu()).unwrap();
    s.forward(&[1, 2, 3, 4], 0, false).unwrap();
    let mut reference = lav2::session::Session::new(tiny_model(true), cpu()).unwrap();
    reference.forward(&[1, 2, 3, 4], 0, false).unwrap();
    let logits = reference.forward(&[5], 4, false).unwrap();
    let settings = [(0.0f32, 1.0f32, 0.3f32), (0.7, 0.9, 0.6), (1.3, 0.5, 0.95)];
    for (temperature, top_p, u) in settings {
        let got = s.next_token(&[5], 4, temperature, top_p, u).unwrap();
        let want = lav2::ops::sample_token::reference(&logits, temperature, top_p, u as f64);
        assert_eq!(got as i32, want, "T {temperature} p {top_p} u {u}");
    }
    let decode = s
        .planned_bytes()
        .iter()
        .filter(|p| p.0.starts_with("decode"))
        .count();
    assert_eq!(decode, 1, "programs: {:?}", s.planned_bytes());
    // A bad setting is refused before anything runs.
    let err = s.next_token(&[5], 4, -1.0, 0.9, 0.5).unwrap_err();
    assert!(format!("{err:#}").contains("temperature"), "{err:#}");
}

/// Every graph the models build is planned so that tensors alive at the same time never share a
/// byte — checked here from first principles (liveness of each activation, then every pair) —
/// which implies what the CPU executor's borrow splitting needs: no op's output overlaps what it
/// reads. The planner's own proof (`check_no_alias`) agrees.
#[test]
fn planned_outputs_never_alias_inputs() {
    use lav2::graph::plan::Plan;
    use lav2::graph::Storage;
    use lav2::model::{llama, vision};
    let model = tiny_model(true);
    let mut graphs = Vec::new();
    for batch in [1, 3] {
        for t in [1, 7, 64] {
            for head in [
                llama::Head::AllLogits,
                llama::Head::LastLogits,
                llama::Head::Sample,
            ] {
                graphs.push(llama::build_forward(&model, batch, t, head));
            }
        }
    }
    graphs.extend(llama::build_prompt_graph(&model));
    if let Some(v) = model
        .adapter
        .as_ref()
        .and_then(|a| a.config.visual.as_ref())
    {
        let q = model.adapter.as_ref().unwrap().config.query_len;
        graphs.push(vision::build_vision_graph(&model.weights, v, q));
    }
    for g in &graphs {
        for act_bytes in [2, 4] {
            let plan = Plan::new(g, act_bytes);
            plan.check_no_alias(g).unwrap();
            let n = g.tensors.len();
            let (mut first, mut last) = (vec![usize::MAX; n], vec![0; n]);
            for (i, op) in g.ops.iter().enumerate() {
                for id in op.reads().into_iter().chain(op.writes()) {
                    first[id.0] = first[id.0].min(i);
                    last[id.0] = last[id.0].max(i);
                }
            }
            for id in &g.outputs {
                last[id.0] = usize::MAX;
            }
            let acts: Vec<usize> = (0..n)
                .filter(|&i| g.tensors[i].storage == Storage::Activation)
                .filter(|&i| plan.offsets[i].is_some())
                .collect();
            for (x, &a) in acts.iter().enumerate() {
                for &b in &acts[x + 1..] {
                    let live_together = first[a] <= last[b] && first[b] <= last[a];
                    let (oa, ob) = (plan.offsets[a].unwrap(), plan.offsets[b].unwrap());
                    let share = oa < ob + plan.bytes[b] && ob < oa + plan.bytes[a];
                    assert!(
                        !(live_together && share),
                        "graph '{}': '{}' and '{}' are alive together in the same bytes",
                        g.name,
                        g.tensors[a].name,
                        g.tensors[b].name
                    );
                }
            }
        }
    }
}

/// A plan that puts an op's output over its input is refused by the planner's proof, and the
/// CPU executor, given it anyway, reports the overlap instead of reading through it.
#[test]
fn an_aliasing_plan_is_an_error_not_undefined_behaviour() {
    use lav2::backend::Backend;
    use lav2::graph::plan::Plan;
    use lav2::graph::{Elem, Graph, Op};
    let mut g = Graph::new("chain");
    let x = g.input("x", &[64], Elem::Act);
    let a = g.activation("a", &[64]);
    let b = g.activation("b", &[64]);
    g.push(Op::Gelu { x, out: a });
    g.push(Op::Gelu { x: a, out: b });
    g.mark_output(b);
    let mut plan = Plan::new(&g, 4);
    plan.check_no_alias(&g).unwrap();
    plan.offsets[b.0] = plan.offsets[a.0];
    let err = plan.check_no_alias(&g).unwrap_err();
    assert!(err.contains("'b' is placed over 'a'"), "{err}");
    let mut cpu = lav2::backend::cpu::CpuBackend::new();
    cpu.load_weights(&[]).unwrap();
    cpu.alloc_states(&[]).unwrap();
    let id = cpu.prepare(&g, &plan).unwrap();
    cpu.write_input(id, x, lav2::backend::HostData::F32(&[0.5; 64]))
        .unwrap();
    let err = cpu.run(id).unwrap_err();
    assert!(format!("{err:#}").contains("overlaps"), "{err:#}");
}
