//! Prompt templates, sampling (greedy, temperature + top-p with the authors' rule) and the
//! generation loop over a [`Session`].

use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::notice::OptionError;
// Re-exported for the tests and benchmarks that import it from here; it lives in `crate::rng`.
use crate::rng::Rng;
use crate::sampling::check_sampling;
use crate::session::Session;

/// The prompt formats of the LLaMA-Adapter releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Template {
    /// The prompt as given.
    None,
    /// Stanford Alpaca's instruction format, as the authors' demos use it.
    Alpaca,
}

impl Template {
    /// The template the command line takes when none is named: the authors' Alpaca format with
    /// an adapter, or when there is context text for its input slot; the text as given otherwise.
    pub fn default_for(has_adapter: bool, has_context: bool) -> Template {
        if has_adapter || has_context {
            Template::Alpaca
        } else {
            Template::None
        }
    }
}

impl std::str::FromStr for Template {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Template::None),
            "alpaca" => Ok(Template::Alpaca),
            other => Err(format!(
                "unknown template '{other}' (expected none or alpaca)"
            )),
        }
    }
}

const ALPACA_NO_INPUT: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:";
const ALPACA_WITH_INPUT: &str = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:";

/// Formats the text the model sees. `context` fills the template's input slot.
pub fn format_prompt(
    template: Template,
    instruction: &str,
    context: Option<&str>,
) -> Result<String> {
    Ok(match (template, context) {
        (Template::None, None) => instruction.to_string(),
        (Template::None, Some(_)) => {
            bail!("context text needs a template with an input slot (Template::Alpaca)")
        }
        (Template::Alpaca, None) => ALPACA_NO_INPUT.replace("{instruction}", instruction),
        (Template::Alpaca, Some(input)) => ALPACA_WITH_INPUT
            .replace("{instruction}", instruction)
            .replace("{input}", input),
    })
}

/// How tokens are picked, and how many.
#[derive(Clone, Debug)]
pub struct SamplingOptions {
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    pub max_new_tokens: usize,
    /// Keep generating past EOS (benchmarks, and references that generate a fixed count).
    pub ignore_eos: bool,
}

impl Default for SamplingOptions {
    /// The authors' defaults.
    fn default() -> Self {
        SamplingOptions {
            temperature: 0.1,
            top_p: 0.75,
            seed: 0,
            max_new_tokens: 256,
            ignore_eos: false,
        }
    }
}

impl SamplingOptions {
    /// Greedy decoding (the most likely token each step) of up to `max_new_tokens`.
    pub fn greedy(max_new_tokens: usize) -> SamplingOptions {
        SamplingOptions {
            temperature: 0.0,
            max_new_tokens,
            ..Default::default()
        }
    }

    /// Refuses a temperature or top-p the sampler cannot use, naming it.
    pub fn validate(&self) -> Result<(), OptionError> {
        check_sampling(self.temperature, self.top_p)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced its end-of-sequence token.
    Eos,
    /// `max_new_tokens` were generated.
    MaxNewTokens,
    /// The context (`max_seq_len`) is full.
    ContextFull,
    /// The caller's token callback asked to stop.
    Stopped,
}

impl StopReason {
    pub fn name(&self) -> &'static str {
        match self {
            StopReason::Eos => "eos",
            StopReason::MaxNewTokens => "max_new_tokens",
            StopReason::ContextFull => "context_full",
            StopReason::Stopped => "stopped",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Generation {
    pub ids: Vec<u32>,
    pub stop: StopReason,
    pub prefill_ms: f64,
    pub decode_ms: f64,
}

/// Generates after `prompt_ids` (prompt K/V must already be set on the session), calling
/// `on_token` for every new id as soon as it is chosen. EOS ends generation and is not returned.
pub fn generate(
    session: &mut Session,
    prompt_ids: &[u32],
    opts: &SamplingOptions,
    mut on_token: impl FnMut(u32) -> Result<()>,
) -> Result<Generation> {
    opts.validate()?;
    if prompt_ids.is_empty() {
        bail!("the prompt is empty (not even BOS)");
    }
    let ctx = session.model().config.max_seq_len;
    let eos = session.model().config.eos_id;
    let mut rng = Rng::new(opts.seed);
    // The token is picked on the backend; only greedy decoding skips the random draw.
    let (temperature, top_p) = (opts.temperature, opts.top_p);
    let mut draw = || {
        if temperature == 0.0 {
            0.0
        } else {
            rng.uniform() as f32
        }
    };
    let t0 = Instant::now();
    let mut next = session
        .next_token(prompt_ids, 0, temperature, top_p, draw())
        .with_context(|| {
            format!(
                "generation step 0 (the prompt's {} tokens)",
                prompt_ids.len()
            )
        })?;
    let prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let mut ids = Vec::new();
    let mut pos = prompt_ids.len();
    let stop = loop {
        if ids.len() >= opts.max_new_tokens {
            break StopReason::MaxNewTokens;
        }
        if next == eos && !opts.ignore_eos {
            break StopReason::Eos;
        }
        ids.push(next);
        on_token(next)?;
        if ids.len() >= opts.max_new_tokens {
            break StopReason::MaxNewTokens;
        }
        if pos >= ctx {
            break StopReason::ContextFull;
        }
        next = session
            .next_token(&[next], pos, temperature, top_p, draw())
            .with_context(|| format!("generation step {} (position {pos})", ids.len()))?;
        pos += 1;
    };
    Ok(Generation {
        ids,
        stop,
        prefill_ms,
        decode_ms: t1.elapsed().as_secs_f64() * 1e3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpaca_strings_are_the_authors() {
        let p = format_prompt(Template::Alpaca, "Say hi", None).unwrap();
        assert!(p.starts_with("Below is an instruction that describes a task. Write"));
        assert!(p.ends_with("### Instruction:\nSay hi\n\n### Response:"));
        let p = format_prompt(Template::Alpaca, "Q", Some("ctx")).unwrap();
        assert!(p.contains("paired with an input that provides further context."));
        assert!(p.ends_with("### Instruction:\nQ\n\n### Input:\nctx\n\n### Response:"));
        assert!(format_prompt(Template::None, "x", Some("y")).is_err());
    }
}
