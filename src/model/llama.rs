//! The LLaMA decoder with the adapter's prompts, as graphs: the forward pass over T tokens
//! (prefill, or T = 1 for decode) and the once-per-request prompt K/V computation.

use super::vision::Builder;
use super::Model;
use crate::graph::{Elem, Graph, Op, PromptKv, StateDesc, TensorId};

/// Input names of the forward graph.
pub const TOKENS: &str = "tokens";
pub const START_POS: &str = "start_pos";
/// Input of a sampling forward graph: the uniform number in [0, 1) for top-p.
pub const UNIFORM: &str = "uniform";
/// Input of a sampling head: `[temperature, top_p]`.
pub const SAMPLING: &str = "sampling";

/// What a forward graph returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Head {
    /// Logits of every position.
    AllLogits,
    /// Logits of the last position.
    LastLogits,
    /// The next token, picked on the device from the last position's logits by the sampling
    /// setting in the [`SAMPLING`] input (one program serves every temperature and top-p).
    Sample,
}
/// Input of the prompt graph: the visual prompts `[query_len, dim]` (zeros without an image).
pub const VISUAL_QUERY: &str = "visual_query";

/// Indices into the session state.
fn k_cache(l: usize) -> usize {
    2 * l
}
fn v_cache(l: usize) -> usize {
    2 * l + 1
}

/// The persistent tensors of a session decoding `batch` sequences side by side: a KV cache per
/// layer (a block per sequence), then prompt K/V per prompted layer (shared by the batch: one
/// adapter and one image per session).
pub fn states(m: &Model, batch: usize) -> Vec<StateDesc> {
    let c = &m.config;
    let mut s = Vec::new();
    for l in 0..c.n_layers {
        for kind in ["k_cache", "v_cache"] {
            s.push(StateDesc {
                name: format!("layers.{l}.{kind}"),
                shape: vec![batch, c.max_seq_len, c.n_kv_heads, c.head_dim],
                elem: Elem::Act,
            });
        }
    }
    if let Some(a) = &m.adapter {
        for l in a.first_prompt_layer..c.n_layers {
            for kind in ["prompt_k", "prompt_v"] {
                s.push(StateDesc {
                    name: format!("layers.{l}.{kind}"),
                    shape: vec![a.config.query_len, c.n_kv_heads, c.head_dim],
                    elem: Elem::Act,
                });
            }
        }
    }
    s
}

fn prompt_state(m: &Model, l: usize) -> (usize, usize) {
    let a = m
        .adapter
        .as_ref()
        .expect("prompted layer implies an adapter");
    let base = 2 * m.config.n_layers + 2 * (l - a.first_prompt_layer);
    (base, base + 1)
}

fn is_prompted(m: &Model, l: usize) -> bool {
    m.adapter
        .as_ref()
        .is_some_and(|a| a.config.query_layer > 0 && l >= a.first_prompt_layer)
}

/// The forward pass over `t` tokens of each of `batch` sequences, all starting at the position
/// in `start_pos`; token rows are sequence-major (`batch` blocks of `t`).
pub fn build_forward(m: &Model, batch: usize, t: usize, head: Head) -> Graph {
    let all_logits = head == Head::AllLogits;
    let c = &m.config;
    let states = states(m, batch);
    let mut name = if t == 1 {
        "decode".to_string()
    } else {
        format!("prefill_{t}")
    };
    if batch > 1 {
        name += &format!("_x{batch}");
    }
    let rows = batch * t;
    let mut b = Builder::new(&name, &m.weights);
    b.g.per_token = t == 1;
    let tokens = b.g.input(TOKENS, &[rows], Elem::I32);
    let start_pos = b.g.input(START_POS, &[1], Elem::I32);
    let (d, hd) = (c.dim, c.head_dim);
    let table = b.w("tok_embeddings");
    let residual = b.g.activation("residual", &[rows, d]);
    b.g.push(Op::Embedding {
        ids: tokens,
        table,
        out: residual,
    });
    let mut pending: Option<TensorId> = None;
    for l in 0..c.n_layers {
        let p = |s: &str| format!("layers.{l}.{s}");
        let xn = rmsnorm(
            &mut b,
            pending,
            residual,
            &p("attention_norm"),
            c.norm_eps,
            rows,
            d,
        );
        let q = b.linear(xn, &p("wq"), Some(&p("wq.bias")), &p("q"));
        let k = b.linear(xn, &p("wk"), Some(&p("wk.bias")), &p("k"));
        let v = b.linear(xn, &p("wv"), Some(&p("wv.bias")), &p("v"));
        let kc = b.g.state(&states[k_cache(l)], k_cache(l));
        let vc = b.g.state(&states[v_cache(l)], v_cache(l));
        b.g.push(Op::RopeKvWrite {
            q,
            k,
            v,
            k_cache: kc,
            v_cache: vc,
            start_pos,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
            theta: c.rope_theta,
            interleaved: c.layout == super::config::Layout::Meta,
            batch,
        });
        let prompt = is_prompted(m, l).then(|| {
            let (ks, vs) = prompt_state(m, l);
            PromptKv {
                k: b.g.state(&states[ks], ks),
                v: b.g.state(&states[vs], vs),
                gate: b.w_elem(&p("gate"), Elem::F32),
            }
        });
        let att = b.g.activation(&p("attn"), &[rows, c.n_heads * hd]);
        b.g.push(Op::AdapterAttention {
            q,
            k_cache: kc,
            v_cache: vc,
            prompt,
            start_pos,
            out: att,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
            batch,
        });
        let o = b.linear(att, &p("wo"), Some(&p("wo.bias")), &p("attn_out"));
        let xn = rmsnorm(
            &mut b,
            Some(o),
            residual,
            &p("ffn_norm"),
            c.norm_eps,
            rows,
            d,
        );
        let gate = b.linear(xn, &p("w1"), Some(&p("w1.bias")), &p("ffn_gate"));
        let up = b.linear(xn, &p("w3"), Some(&p("w3.bias")), &p("ffn_up"));
        let act = b.g.activation(&p("ffn_act"), &[rows, c.ffn_dim]);
        b.g.push(Op::SiluMul { gate, up, out: act });
        pending = Some(b.linear(act, &p("w2"), Some(&p("w2.bias")), &p("ffn_out")));
    }
    let xn = rmsnorm(&mut b, pending, residual, "norm", c.norm_eps, rows, d);
    // With one token per sequence every row is a last row.
    let head_in = if all_logits || t == 1 {
        xn
    } else {
        let last = b.g.activation("last_rows", &[batch, d]);
        b.g.push(Op::SliceRows {
            x: xn,
            start: t - 1,
            step: t,
            out: last,
        });
        last
    };
    let head_rows = if all_logits { rows } else { batch };
    let (w, quant) = b.matrix("output");
    let logits = b.g.activation_f32("logits", &[head_rows, c.vocab_size]);
    b.g.push(Op::Linear {
        x: head_in,
        w,
        quant,
        bias: None,
        out: logits,
    });
    match head {
        Head::Sample => {
            let uniform = b.g.input(UNIFORM, &[batch], Elem::F32);
            let params = b.g.input(SAMPLING, &[2], Elem::F32);
            let token = b.g.activation_i32("token", &[batch]);
            b.g.push(Op::SampleToken {
                logits,
                uniform,
                params,
                out: token,
            });
            b.g.mark_output(token);
        }
        _ => b.g.mark_output(logits),
    }
    b.g
}

fn rmsnorm(
    b: &mut Builder,
    x: Option<TensorId>,
    residual: TensorId,
    weight: &str,
    eps: f32,
    t: usize,
    d: usize,
) -> TensorId {
    let w = b.w(weight);
    let out = b.g.activation(&format!("{weight}.out"), &[t, d]);
    b.g.push(Op::RmsNorm {
        x,
        residual,
        weight: w,
        out,
        eps,
    });
    out
}

/// `P_l = adapter_query[l] + visual_query`, then `K_P = P_l·wkᵀ (+b)`, `V_P = P_l·wvᵀ (+b)`
/// into the session's prompt state, for every prompted layer. `None` without prompts.
pub fn build_prompt_graph(m: &Model) -> Option<Graph> {
    let a = m.adapter.as_ref()?;
    if a.config.query_layer == 0 {
        return None;
    }
    let c = &m.config;
    // The prompt states do not depend on the batch.
    let states = states(m, 1);
    let mut b = Builder::new("prompt_kv", &m.weights);
    let vq =
        b.g.input(VISUAL_QUERY, &[a.config.query_len, c.dim], Elem::Act);
    for l in a.first_prompt_layer..c.n_layers {
        let p = |s: &str| format!("layers.{l}.{s}");
        let query = b.w(&format!("adapter_query.{l}"));
        let prompts = b.g.activation(&p("prompts"), &[a.config.query_len, c.dim]);
        b.g.push(Op::Add {
            a: query,
            b: vq,
            out: prompts,
        });
        let (ks, vs) = prompt_state(m, l);
        for (which, state) in [("wk", ks), ("wv", vs)] {
            // LoRA is folded into the token path's weight only; prompts use the plain one.
            let plain = p(&format!("{which}.prompt"));
            let wname = if b.store.contains(&plain) {
                plain
            } else {
                p(which)
            };
            let (w, quant) = b.matrix(&wname);
            let bias = b.w_opt(&p(&format!("{which}.bias")));
            let desc = &states[state];
            let flat = StateDesc {
                name: desc.name.clone(),
                shape: vec![a.config.query_len, c.kv_dim()],
                elem: desc.elem,
            };
            let out = b.g.state(&flat, state);
            b.g.push(Op::Linear {
                x: prompts,
                w,
                quant,
                bias,
                out,
            });
        }
    }
    Some(b.g)
}
