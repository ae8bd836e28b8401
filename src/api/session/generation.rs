//! Generation one token at a time ([`Session::start_generation`], [`Session::next_token`]):
//! what [`Session::generate`] runs, for callers that pull tokens (an iterator in another
//! language, an event loop) instead of being called back.

use super::{Completion, Session, Token};
use crate::api::error::{Error, ErrorKind, Kind, Result};
use crate::generate::{SamplingOptions, StopReason};
use crate::io::tokenizer::StreamState;

/// A generation in progress on a [`Session`]: its options, what it produced so far, and why it
/// ended once it has. Made by [`Session::start_generation`]; advanced by
/// [`Session::next_token`].
#[derive(Clone, Debug)]
pub struct Generation {
    sampling: SamplingOptions,
    stream: StreamState,
    ids: Vec<u32>,
    text: String,
    stop: Option<StopReason>,
    /// Whether the held-back end of the text was handed out (or there is none to hand out).
    flushed: bool,
}

impl Generation {
    /// Why the generation ended, once it has.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// Ends the generation now ([`StopReason::Stopped`]); the next [`Session::next_token`]
    /// gives nothing. A generation that ended already keeps its reason.
    pub fn stop(&mut self) {
        if self.stop.is_none() {
            self.stop = Some(StopReason::Stopped);
            self.flushed = true;
        }
    }

    /// The ids generated so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// What the generation produced: its ids, the concatenation of the tokens' text, and why it
    /// ended (`None` while it goes on).
    pub fn completion(&self) -> Option<Completion> {
        self.stop.map(|stop| Completion {
            ids: self.ids.clone(),
            text: self.text.clone(),
            stop,
        })
    }
}

impl Session {
    /// Begins generating after the prompt with `sampling` (seeding the session's random
    /// numbers with its `seed`); refuses options the sampler cannot use and an empty session.
    pub fn start_generation(&mut self, sampling: &SamplingOptions) -> Result<Generation> {
        self.single("generation")?;
        sampling.validate().kind(ErrorKind::BadInput)?;
        if self.is_empty() {
            return Err(Error::bad_input(
                "nothing to continue: prefill a prompt first",
            ));
        }
        self.set_seed(sampling.seed);
        Ok(Generation {
            sampling: sampling.clone(),
            stream: StreamState::after(&self.history[0]),
            ids: Vec::new(),
            text: String::new(),
            stop: None,
            flushed: false,
        })
    }

    /// The next token of `generation`, or `None` once it has ended (at the end-of-sequence
    /// token, which is not returned, `max_new_tokens`, a full context, or
    /// [`Generation::stop`]). The last token may be followed by one more with the same id that
    /// carries the text an unfinished character held back, so the pieces always add up to the
    /// text.
    pub fn next_token(&mut self, generation: &mut Generation) -> Result<Option<Token>> {
        let g = generation;
        if g.stop.is_none() {
            match self.pick(g)? {
                Some(token) => return Ok(Some(token)),
                None => debug_assert!(g.stop.is_some()),
            }
        }
        if g.flushed {
            return Ok(None);
        }
        g.flushed = true;
        let (Some(tokenizer), Some(&last)) = (self.engine.tokenizer_if_any(), g.ids.last()) else {
            return Ok(None);
        };
        let rest = g.stream.finish(tokenizer).kind(ErrorKind::Internal)?;
        if rest.is_empty() {
            return Ok(None);
        }
        g.text.push_str(&rest);
        Ok(Some(Token {
            id: last,
            text: rest,
        }))
    }

    /// Picks the next token of `g`, or sets why it ends.
    fn pick(&mut self, g: &mut Generation) -> Result<Option<Token>> {
        if g.ids.len() >= g.sampling.max_new_tokens {
            g.stop = Some(StopReason::MaxNewTokens);
            return Ok(None);
        }
        if self.logits.is_none() && self.pos >= self.engine.context_len() {
            g.stop = Some(StopReason::ContextFull);
            return Ok(None);
        }
        let id = self.step(&g.sampling)?;
        if id == self.engine.eos_id() && !g.sampling.ignore_eos {
            g.stop = Some(StopReason::Eos);
            return Ok(None);
        }
        g.ids.push(id);
        let text = match self.engine.tokenizer_if_any() {
            Some(t) => g.stream.step(t, id).kind(ErrorKind::Internal)?,
            None => String::new(),
        };
        g.text.push_str(&text);
        Ok(Some(Token { id, text }))
    }
}
