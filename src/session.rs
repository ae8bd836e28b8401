//! A model bound to a backend: weights uploaded once, the session state allocated once, and
//! the graphs planned once per shape.

use std::collections::HashMap;

use anyhow::{bail, Result};

use crate::backend::program::Program;
use crate::backend::{Backend, ProgramId, WeightOutOfRange};
use crate::graph::TensorId;
use crate::model::llama::Head;
use crate::model::{llama, vision, Model};
use crate::notice::{Notice, OptionError};

/// The inputs of a sampling head for one step.
#[derive(Clone, Copy)]
struct Sampling<'a> {
    temperature: f32,
    top_p: f32,
    uniforms: &'a [f32],
}

pub struct Session {
    model: Model,
    backend: Box<dyn Backend>,
    /// Sequences run side by side; every forward call takes this many.
    batch: usize,
    /// Forward programs by token count and head (one sampling program serves every setting).
    forward: HashMap<(usize, Head), Program>,
    vision: Option<Program>,
    prompt: Option<Program>,
    /// What the session did that its user should know (a context it lowered), until taken.
    notices: Vec<Notice>,
}

impl Session {
    /// A session for one sequence.
    pub fn new(model: Model, backend: Box<dyn Backend>) -> Result<Session> {
        Session::with_batch(model, backend, 1)
    }

    /// A session decoding `batch` sequences side by side, in lockstep: each has its own KV
    /// cache, all share the adapter prompts (one image per session) and the positions.
    pub fn with_batch(
        mut model: Model,
        mut backend: Box<dyn Backend>,
        batch: usize,
    ) -> Result<Session> {
        check_batch(batch)?;
        let notices = fit_and_upload(&mut model, backend.as_mut(), batch)?
            .into_iter()
            .collect();
        Session::on_weights(model, backend, batch, notices)
    }

    /// A session on a backend that already holds `model`'s weights ([`Backend::share_weights`]
    /// of the backend they were uploaded to): only its own state and activations are allocated.
    /// Its context is the model's; one that does not fit what is left is an error.
    pub fn sharing_weights(
        model: Model,
        backend: Box<dyn Backend>,
        batch: usize,
    ) -> Result<Session> {
        check_batch(batch)?;
        let mut model = model;
        // The context is the engine's: a session never quietly gets a shorter one.
        model.context_setting = Some(&["max_seq_len"]);
        fit_memory(&mut model, backend.as_ref(), batch, true)?;
        Session::on_weights(model, backend, batch, Vec::new())
    }

    fn on_weights(
        model: Model,
        mut backend: Box<dyn Backend>,
        batch: usize,
        notices: Vec<Notice>,
    ) -> Result<Session> {
        backend.alloc_states(&llama::states(&model, batch))?;
        let prompt = match llama::build_prompt_graph(&model) {
            Some(g) => Some(Program::new(backend.as_mut(), g)?),
            None => None,
        };
        let vision = match model
            .adapter
            .as_ref()
            .and_then(|a| a.config.visual.as_ref().map(|v| (a, v)))
        {
            Some((a, v)) => Some(Program::new(
                backend.as_mut(),
                vision::build_vision_graph(&model.weights, v, a.config.query_len),
            )?),
            None => None,
        };
        let mut s = Session {
            model,
            backend,
            batch,
            forward: HashMap::new(),
            vision,
            prompt,
            notices,
        };
        // An adapter always has prompts in place, even before any image is given.
        s.set_visual_query(None)?;
        Ok(s)
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Sequences per forward call.
    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    pub fn backend_mut(&mut self) -> &mut dyn Backend {
        self.backend.as_mut()
    }

    /// The notices of the session and its backend since the last call, oldest first.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        let mut all = std::mem::take(&mut self.notices);
        all.extend(self.backend.take_notices());
        all
    }

    /// Activation bytes the plans of this session need, largest plan first.
    pub fn planned_bytes(&self) -> Vec<(String, usize, usize)> {
        let mut v: Vec<_> = self
            .forward
            .values()
            .chain(self.vision.iter())
            .chain(self.prompt.iter())
            .map(|p| {
                (
                    p.graph.name.clone(),
                    p.plan.arena_bytes,
                    p.plan.unplanned_bytes,
                )
            })
            .collect();
        v.sort_by_key(|p| std::cmp::Reverse(p.1));
        v
    }

    /// The image size the vision tower expects, if the adapter has one.
    pub fn image_size(&self) -> Option<usize> {
        self.model
            .adapter
            .as_ref()
            .and_then(|a| a.config.visual.as_ref())
            .map(|v| v.clip.image_size)
    }

    /// Visual prompts `[query_len, dim]` from normalized pixels `[3, S, S]`.
    pub fn visual_query(&mut self, pixels: &[f32]) -> Result<Vec<f32>> {
        let Some(size) = self.image_size() else {
            bail!("this model has no vision tower (the adapter has no 'visual' section)");
        };
        if pixels.len() != 3 * size * size {
            bail!(
                "pixels must be [3, {size}, {size}] ({} values), got {} values",
                3 * size * size,
                pixels.len()
            );
        }
        let p = self
            .vision
            .as_ref()
            .expect("vision program exists with a vision tower");
        p.set_f32(self.backend.as_mut(), vision::PIXELS, pixels)?;
        p.run(self.backend.as_mut())?;
        p.output(self.backend.as_mut(), 0)
    }

    /// Computes the prompt K/V of every prompted layer from `visual_query` (zeros: text only).
    pub fn set_visual_query(&mut self, visual_query: Option<&[f32]>) -> Result<()> {
        let Some(p) = &self.prompt else {
            if visual_query.is_some() {
                bail!("this model has no adapter prompts to add visual prompts to");
            }
            return Ok(());
        };
        let id = p.input_id(llama::VISUAL_QUERY)?;
        let n = p.graph.desc(id).numel();
        let zeros;
        let data = match visual_query {
            Some(v) if v.len() == n => v,
            Some(v) => bail!("visual_query has {} values, expected {n}", v.len()),
            None => {
                zeros = vec![0f32; n];
                &zeros
            }
        };
        p.set_f32(self.backend.as_mut(), llama::VISUAL_QUERY, data)?;
        p.run(self.backend.as_mut())
    }

    /// Runs `tokens` at positions `start_pos..`, filling the KV cache; returns logits
    /// `[tokens.len(), vocab]` when `all_logits`, else the last row of each sequence. With a
    /// batch, `tokens` holds the sequences one after another, all of the same length, and the
    /// logits come back in the same order.
    pub fn forward(
        &mut self,
        tokens: &[u32],
        start_pos: usize,
        all_logits: bool,
    ) -> Result<Vec<f32>> {
        let t = self.validate(tokens, start_pos)?;
        let head = if all_logits {
            Head::AllLogits
        } else {
            Head::LastLogits
        };
        let vocab = self.model.config.vocab_size;
        let chunks = chunk_lengths(t);
        let mut per_seq = vec![Vec::new(); self.batch];
        let (mut pos, mut done) = (start_pos, 0);
        for (i, &n) in chunks.iter().enumerate() {
            let chunk = chunk_tokens(tokens, t, done, n);
            let (program, out) = self.run_chunk(&chunk, n, pos, head, None)?;
            if all_logits || i + 1 == chunks.len() {
                let logits = self.backend.read_f32(program, out)?;
                let rows = logits.len() / vocab / self.batch;
                for (seq, rows) in per_seq.iter_mut().zip(logits.chunks(rows * vocab)) {
                    seq.extend_from_slice(rows);
                }
            }
            pos += n;
            done += n;
        }
        Ok(per_seq.concat())
    }

    /// Runs `tokens` like [`Session::forward`] and picks the next token on the backend (argmax
    /// when `temperature` is 0, else top-p with `uniform`), reading back one id, not the logits.
    /// A session of one sequence.
    pub fn next_token(
        &mut self,
        tokens: &[u32],
        start_pos: usize,
        temperature: f32,
        top_p: f32,
        uniform: f32,
    ) -> Result<u32> {
        Ok(self.next_tokens(tokens, start_pos, temperature, top_p, &[uniform])?[0])
    }

    /// [`Session::next_token`] for every sequence of the batch: `tokens` as for
    /// [`Session::forward`], one uniform number per sequence; one token per sequence back.
    pub fn next_tokens(
        &mut self,
        tokens: &[u32],
        start_pos: usize,
        temperature: f32,
        top_p: f32,
        uniforms: &[f32],
    ) -> Result<Vec<u32>> {
        crate::sampling::check_sampling(temperature, top_p)?;
        let t = self.validate(tokens, start_pos)?;
        if uniforms.len() != self.batch {
            bail!(
                "{} uniform numbers for a batch of {} sequences",
                uniforms.len(),
                self.batch
            );
        }
        let chunks = chunk_lengths(t);
        let (mut pos, mut done) = (start_pos, 0);
        for &n in &chunks[..chunks.len() - 1] {
            let chunk = chunk_tokens(tokens, t, done, n);
            self.run_chunk(&chunk, n, pos, Head::LastLogits, None)?;
            pos += n;
            done += n;
        }
        let n = t - done;
        let chunk = chunk_tokens(tokens, t, done, n);
        let sampling = Sampling {
            temperature,
            top_p,
            uniforms,
        };
        let (program, out) = self.run_chunk(&chunk, n, pos, Head::Sample, Some(sampling))?;
        self.backend
            .read_i32(program, out)?
            .into_iter()
            .map(|token| match token {
                -1 => Err(OptionError::new(
                    &["skip_finite_check"],
                    "the logits are NaN or infinite, so no token can be sampled (non-finite \
                     weights? they are refused at load unless {skip_finite_check} is given)",
                )
                .into()),
                t => u32::try_from(t)
                    .map_err(|_| anyhow::anyhow!("the backend sampled token {token}")),
            })
            .collect()
    }

    /// Checks a call's tokens and positions; returns the tokens per sequence.
    fn validate(&self, tokens: &[u32], start_pos: usize) -> Result<usize> {
        let c = &self.model.config;
        if tokens.is_empty() {
            bail!("no tokens to run");
        }
        if !tokens.len().is_multiple_of(self.batch) {
            bail!(
                "{} tokens do not split into {} sequences of equal length",
                tokens.len(),
                self.batch
            );
        }
        let t = tokens.len() / self.batch;
        if let Some((i, id)) = tokens
            .iter()
            .enumerate()
            .find(|(_, &t)| t as usize >= c.vocab_size)
        {
            bail!(
                "token id {id} (at prompt position {i}) is outside the vocabulary of {} tokens",
                c.vocab_size
            );
        }
        if start_pos + t > c.max_seq_len {
            bail!(
                "{t} tokens from position {start_pos} do not fit the context of {} tokens",
                c.max_seq_len
            );
        }
        Ok(t)
    }

    /// Runs one chunk of `t` tokens per sequence (a planned shape) and returns the program and
    /// its output tensor.
    fn run_chunk(
        &mut self,
        tokens: &[u32],
        t: usize,
        start_pos: usize,
        head: Head,
        sampling: Option<Sampling>,
    ) -> Result<(ProgramId, TensorId)> {
        // A single token's last row is all its rows: share the program.
        let head = if t == 1 && head == Head::AllLogits {
            Head::LastLogits
        } else {
            head
        };
        let key = (t, head);
        if !self.forward.contains_key(&key) {
            let g = llama::build_forward(&self.model, self.batch, t, head);
            let p = Program::new(self.backend.as_mut(), g)?;
            self.forward.insert(key, p);
        }
        let p = &self.forward[&key];
        let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
        p.set_i32(self.backend.as_mut(), llama::TOKENS, &ids)?;
        p.set_i32(self.backend.as_mut(), llama::START_POS, &[start_pos as i32])?;
        if let Some(s) = sampling {
            p.set_f32(self.backend.as_mut(), llama::UNIFORM, s.uniforms)?;
            p.set_f32(
                self.backend.as_mut(),
                llama::SAMPLING,
                &[s.temperature, s.top_p],
            )?;
        }
        p.run(self.backend.as_mut())?;
        Ok((p.id, p.graph.outputs[0]))
    }
}

fn check_batch(batch: usize) -> Result<()> {
    if batch == 0 {
        bail!("a session needs at least one sequence (batch 0)");
    }
    Ok(())
}

/// Fits `batch` sequences of `model` to what `backend` has (see [`fit_memory`]), then uploads
/// the weights: what a backend needs before sessions can run on it. Returns the notice of a
/// lowered context.
pub fn fit_and_upload(
    model: &mut Model,
    backend: &mut dyn Backend,
    batch: usize,
) -> Result<Option<Notice>> {
    let notice = fit_memory(model, backend, batch, false)?;
    upload_weights(model, backend)?;
    Ok(notice)
}

/// Uploads `model`'s weights to `backend`; a weight f16 cannot hold is an error naming it.
fn upload_weights(model: &Model, backend: &mut dyn Backend) -> Result<()> {
    backend.load_weights(&model.weights.tensors).map_err(|e| {
        match e.downcast_ref::<WeightOutOfRange>() {
            Some(w) => OptionError::new(
                &["device"],
                format!(
                    "weight '{}' holds {}, beyond the ±65504 that {} stores weights in \
                     (f16): run this model on the CPU ({{device}} cpu)",
                    model.weights.names[w.index],
                    w.value,
                    backend.describe()
                ),
            )
            .into(),
            None => e,
        }
    })
}

/// What a session needs on its device, in bytes, by part (u128: sizes from files never wrap).
#[derive(Clone, Copy, Debug)]
pub struct MemoryPlan {
    /// Every weight as the backend stores it.
    pub weights: u128,
    /// The prompt K/V of the adapter.
    pub prompts: u128,
    /// KV cache bytes per token of context (all layers, all sequences).
    pub kv_per_token: u128,
    /// The activation arenas of the prefill, decode, prompt and vision graphs.
    pub activations: u128,
}

impl MemoryPlan {
    /// The plan of `batch` sequences of `model` on a backend with `act_bytes` activations.
    pub fn of(model: &mut Model, act_bytes: usize, batch: usize) -> MemoryPlan {
        let act = act_bytes as u128;
        let weights = model
            .weights
            .tensors
            .iter()
            .map(|t| match t.dtype {
                crate::tensor::DType::I8 | crate::tensor::DType::U8 => t.numel() as u128,
                _ => t.numel() as u128 * act,
            })
            .sum();
        let c = &model.config;
        let kv_per_token = 2 * c.n_layers as u128 * c.kv_dim() as u128 * batch as u128 * act;
        let prompts = model.adapter.as_ref().map_or(0, |a| {
            2 * (c.n_layers - a.first_prompt_layer) as u128
                * a.config.query_len as u128
                * c.kv_dim() as u128
                * act
        });
        // Arenas do not grow with the context: plan them on a short one, so that a context
        // that does not fit is never turned into shapes.
        let ctx = c.max_seq_len;
        model.config.max_seq_len = ctx.min(MAX_CHUNK);
        let mut graphs = vec![
            llama::build_forward(model, batch, ctx.min(MAX_CHUNK), Head::LastLogits),
            llama::build_forward(model, batch, 1, Head::LastLogits),
        ];
        graphs.extend(llama::build_prompt_graph(model));
        if let Some((a, v)) = model
            .adapter
            .as_ref()
            .and_then(|a| a.config.visual.as_ref().map(|v| (a, v)))
        {
            graphs.push(vision::build_vision_graph(
                &model.weights,
                v,
                a.config.query_len,
            ));
        }
        model.config.max_seq_len = ctx;
        let activations = graphs
            .iter()
            .map(|g| crate::graph::plan::Plan::new(g, act_bytes).arena_bytes as u128)
            .sum();
        MemoryPlan {
            weights,
            prompts,
            kv_per_token,
            activations,
        }
    }

    /// Total bytes for a context of `ctx` tokens.
    pub fn total(&self, ctx: usize) -> u128 {
        self.weights + self.prompts + self.activations + self.kv_per_token * ctx as u128
    }
}

/// Compares the planned bytes with what the device (and `LAV2_MEMORY_LIMIT`) allows before
/// anything is allocated. A model's own context that does not fit becomes the largest that
/// does, with the notice returned; a context that was asked for is an error naming the option
/// to lower.
/// With `weights_resident` the weights are on the device already (a session sharing them), so
/// only the rest must fit.
pub fn fit_memory(
    model: &mut Model,
    backend: &dyn Backend,
    batch: usize,
    weights_resident: bool,
) -> Result<Option<Notice>> {
    use crate::limits::human_bytes as hb;
    let limit = crate::limits::memory_limit_env()?;
    let (budget, source) = match (backend.memory_available(), limit) {
        (Some(d), Some(l)) if l < d => (l, crate::limits::MEMORY_LIMIT_ENV.to_string()),
        (Some(d), _) => (d, backend.describe()),
        (None, Some(l)) => (l, crate::limits::MEMORY_LIMIT_ENV.to_string()),
        (None, None) => return Ok(None),
    };
    let mut plan = MemoryPlan::of(model, backend.act_bytes(), batch);
    if weights_resident {
        plan.weights = 0;
    }
    let ctx = model.config.max_seq_len;
    let budget = budget as u128;
    if plan.total(ctx) <= budget {
        return Ok(None);
    }
    let fixed = plan.weights + plan.prompts + plan.activations;
    let seqs = if batch > 1 {
        format!(" × {batch} sequences")
    } else {
        String::new()
    };
    if fixed + plan.kv_per_token > budget {
        let text = format!(
            "the model needs {} before any context (weights {}, activations {}, prompt K/V {}) but {source} has {} available: use {{quant}} int8 or int4, or a smaller model",
            hb(fixed + plan.kv_per_token),
            hb(plan.weights),
            hb(plan.activations),
            hb(plan.prompts),
            hb(budget)
        );
        return Err(OptionError::out_of_memory(&["quant"], text).into());
    }
    let fit = ((budget - fixed) / plan.kv_per_token).min(ctx as u128) as usize;
    if let Some(setting) = model.context_setting {
        let batch_hint = if batch > 1 { " (or the batch)" } else { "" };
        let setting_names = setting
            .iter()
            .map(|o| format!("{{{o}}}"))
            .collect::<Vec<_>>()
            .join(" / ");
        let text = format!(
            "a context of {ctx} tokens{seqs} needs {} (KV cache {}, weights {}, activations {}) but {source} has {} available: lower {setting_names}{batch_hint} to at most {fit} tokens",
            hb(plan.total(ctx)),
            hb(plan.kv_per_token * ctx as u128),
            hb(plan.weights),
            hb(plan.activations + plan.prompts),
            hb(budget)
        );
        return Err(OptionError::out_of_memory(setting, text).into());
    }
    let notice = Notice::naming(
        &["max_seq_len"],
        format!(
            "the model's context of {ctx} tokens needs {} of KV cache{seqs}; {source} has {} available: using {fit} tokens, the largest that fits ({{max_seq_len}} sets it)",
            hb(plan.kv_per_token * ctx as u128),
            hb(budget)
        ),
    );
    model.config.max_seq_len = fit;
    Ok(Some(notice))
}

/// Tokens `done .. done + n` of every sequence (each `t` long), sequence-major.
fn chunk_tokens(tokens: &[u32], t: usize, done: usize, n: usize) -> Vec<u32> {
    tokens
        .chunks(t)
        .flat_map(|seq| &seq[done..done + n])
        .copied()
        .collect()
}

pub use crate::model::memory::MAX_CHUNK;

/// Splits a prompt into power-of-two chunks of at most [`MAX_CHUNK`] tokens, largest first, so
/// a session plans at most a handful of prefill shapes whatever the prompt lengths it sees
/// (a chunked prefill equals one pass: the KV cache carries the earlier chunks).
pub fn chunk_lengths(n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut left = n;
    while left > 0 {
        let c = if left >= MAX_CHUNK {
            MAX_CHUNK
        } else {
            1 << (usize::BITS - 1 - left.leading_zeros())
        };
        out.push(c);
        left -= c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::chunk_lengths;

    #[test]
    fn chunks_are_powers_of_two_that_sum_to_the_prompt() {
        assert_eq!(chunk_lengths(1), vec![1]);
        assert_eq!(chunk_lengths(300), vec![256, 32, 8, 4]);
        assert_eq!(chunk_lengths(1100), vec![512, 512, 64, 8, 4]);
        for n in 1..2000 {
            let c = chunk_lengths(n);
            assert_eq!(c.iter().sum::<usize>(), n);
            assert!(c
                .iter()
                .all(|x| x.is_power_of_two() && *x <= super::MAX_CHUNK));
        }
    }
}
