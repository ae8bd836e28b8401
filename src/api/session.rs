//! [`Session`]: one conversation — an image, a prompt, tokens stepped or streamed.

use std::ops::ControlFlow;
use std::path::Path;

use super::engine::Engine;
use super::error::{Error, ErrorKind, Kind, Result};
use crate::generate::{SamplingOptions, StopReason};
use crate::io::image::{decode_image_bytes, load_image, preprocess, ChannelOrder};
use crate::ops::sample_token;
use crate::rng::Rng;

mod generation;
pub use generation::Generation;

/// An image for the vision tower, preprocessed as CLIP does unless given as pixels.
#[derive(Clone, Copy, Debug)]
pub enum Image<'a> {
    /// A JPEG or PNG file.
    File(&'a Path),
    /// The bytes of a JPEG or PNG file.
    Encoded(&'a [u8]),
    /// 8-bit RGB pixels, row-major, `width · height · 3` bytes.
    Rgb8 {
        width: usize,
        height: usize,
        data: &'a [u8],
    },
    /// Pixels already preprocessed: `[3, S, S]` floats, normalized with the CLIP mean and std,
    /// in the adapter's channel order, `S` = [`Engine::image_size`].
    Pixels(&'a [f32]),
}

/// One generated token: its id and the text that became final with it (possibly empty: a
/// character made of several byte tokens appears with its last one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub id: u32,
    pub text: String,
}

/// What [`Session::generate`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The generated ids (an end-of-sequence token that stopped generation is not among them).
    pub ids: Vec<u32>,
    /// Their text, exactly the concatenation of the streamed [`Token::text`] pieces (empty for
    /// an engine without a tokenizer; after a stop by the callback, without a character left
    /// unfinished by the last token).
    pub text: String,
    pub stop: StopReason,
}

/// A conversation on an [`Engine`]: its own KV cache, the engine's weights. `Send`, so it can
/// move to a worker thread; methods take `&mut self`, one call at a time.
///
/// A session is used in this order: [`Session::set_image`] (adapters with a vision tower),
/// then [`Session::prefill`] (one or more times), then [`Session::step`] or
/// [`Session::generate`] and [`Session::logits`] in any mix; [`Session::reset`] starts over.
///
/// ```
/// # fn main() -> Result<(), lav2::Error> {
/// # let Some(dir) = lav2::doc_support::conformance("stories260K") else { return Ok(()) };
/// use std::ops::ControlFlow;
/// use lav2::{Engine, EngineOptions, DeviceChoice, SamplingOptions, StopReason};
/// let engine = Engine::load(&dir, None, &EngineOptions { device: DeviceChoice::Cpu, ..Default::default() })?;
/// let mut session = engine.session()?;
/// session.prefill_text("Once upon a time")?;
/// let greedy = SamplingOptions { temperature: 0.0, max_new_tokens: 20, ..Default::default() };
/// let mut streamed = String::new();
/// let done = session.generate(&greedy, |token| {
///     streamed.push_str(&token.text);
///     ControlFlow::Continue(())
/// })?;
/// assert_eq!(done.text, streamed);
/// assert_eq!(done.stop, StopReason::MaxNewTokens);
///
/// // The same prompt again, stopped by the callback after three tokens.
/// session.reset()?;
/// session.prefill_text("Once upon a time")?;
/// let mut seen = 0;
/// let stopped = session.generate(&greedy, |_| {
///     seen += 1;
///     if seen == 3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
/// })?;
/// assert_eq!(stopped.stop, StopReason::Stopped);
/// assert_eq!(stopped.ids[..], done.ids[..3]);
/// # Ok(())
/// # }
/// ```
pub struct Session {
    engine: Engine,
    inner: crate::session::Session,
    /// Tokens of every sequence in the KV cache (the positions are shared).
    pos: usize,
    /// Per sequence: the tokens run or picked so far (prompt and generated).
    history: Vec<Vec<u32>>,
    /// The tokens picked by the last step, one per sequence, not yet run.
    pending: Option<Vec<u32>>,
    /// The logits `[batch, vocab]` after the last token run, when they were read back.
    logits: Option<Vec<f32>>,
    rng: Rng,
    has_image: bool,
}

impl Session {
    pub(crate) fn new(engine: Engine, inner: crate::session::Session) -> Session {
        let batch = engine.batch();
        Session {
            engine,
            inner,
            pos: 0,
            history: vec![Vec::new(); batch],
            pending: None,
            logits: None,
            rng: Rng::new(0),
            has_image: false,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Tokens in the context so far (prompt and generated, the last picked one included).
    pub fn len(&self) -> usize {
        self.pos + usize::from(self.pending.is_some())
    }

    /// Whether nothing was prefilled since the session began or was reset.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tokens of sequence 0 so far: prompt and generated.
    pub fn tokens(&self) -> &[u32] {
        &self.history[0]
    }

    /// Gives the adapter's vision tower an image; its visual prompts then condition every
    /// token that follows. Must come before the prompt (after [`Session::reset`] to change it).
    pub fn set_image(&mut self, image: Image) -> Result<()> {
        let Some(size) = self.engine.image_size() else {
            return Err(Error::bad_input(
                "this model has no vision tower (the adapter has no 'visual' section, or there \
                 is no adapter)",
            ));
        };
        if !self.is_empty() {
            return Err(Error::bad_input(
                "set the image before the prompt: the tokens already in the session were \
                 computed without it (reset() first)",
            ));
        }
        let order = self.channel_order();
        let pixels = match image {
            Image::File(path) => load_image(path, size, order).kind(ErrorKind::ModelFile)?,
            Image::Encoded(bytes) => {
                let img = decode_image_bytes(bytes, "the image bytes").kind(ErrorKind::BadInput)?;
                preprocess(&img, size, order).kind(ErrorKind::BadInput)?
            }
            Image::Rgb8 {
                width,
                height,
                data,
            } => preprocess(&rgb8_image(width, height, data)?, size, order)
                .kind(ErrorKind::BadInput)?,
            Image::Pixels(p) => check_pixels(p, size)?.to_vec(),
        };
        let vq = self.inner.visual_query(&pixels).kind(self.run_kind())?;
        self.inner
            .set_visual_query(Some(&vq))
            .kind(self.run_kind())?;
        self.has_image = true;
        Ok(())
    }

    /// Runs `ids` as they are (no BOS is added) after what the session holds, filling the KV
    /// cache and keeping the logits of the last position for [`Session::logits`] and the next
    /// [`Session::step`]. A session of several sequences takes [`Session::prefill_batch`].
    pub fn prefill(&mut self, ids: &[u32]) -> Result<()> {
        self.single("prefill")?;
        self.prefill_batch(&[ids])
    }

    /// The text after BOS (when the session is empty) as the tokenizer splits it, then as
    /// [`Session::prefill`]. No template is applied: see [`crate::format_prompt`].
    pub fn prefill_text(&mut self, text: &str) -> Result<()> {
        let ids = self.engine.tokenize(text, self.is_empty())?;
        self.prefill(&ids)
    }

    /// [`Session::prefill`] for every sequence of the session: one prompt per sequence, all of
    /// the same length (the sequences share positions).
    pub fn prefill_batch(&mut self, prompts: &[&[u32]]) -> Result<()> {
        let batch = self.engine.batch();
        if prompts.len() != batch {
            return Err(Error::bad_input(format!(
                "{} prompts for a session of {batch} sequences",
                prompts.len()
            )));
        }
        let n = prompts[0].len();
        if n == 0 {
            return Err(Error::bad_input("the prompt is empty (no token ids)"));
        }
        if let Some(p) = prompts.iter().find(|p| p.len() != n) {
            return Err(Error::bad_input(format!(
                "the prompts of a batch must have one length (the sequences share positions): \
                 {n} and {} tokens",
                p.len()
            )));
        }
        for p in prompts {
            self.engine.check_ids(p, "prompt position")?;
        }
        self.flush_pending()?;
        self.check_room(n)?;
        let tokens: Vec<u32> = prompts.concat();
        let logits = self
            .inner
            .forward(&tokens, self.pos, false)
            .kind(self.run_kind())?;
        self.pos += n;
        for (h, p) in self.history.iter_mut().zip(prompts) {
            h.extend_from_slice(p);
        }
        self.logits = Some(logits);
        Ok(())
    }

    /// Picks the next token by `sampling` (greedy at temperature 0, else top-p with the
    /// session's random numbers, see [`Session::set_seed`]) and returns it; it is run at the
    /// next step. `max_new_tokens`, `seed` and `ignore_eos` are for [`Session::generate`].
    pub fn step(&mut self, sampling: &SamplingOptions) -> Result<u32> {
        self.single("step")?;
        Ok(self.step_batch(sampling)?[0])
    }

    /// [`Session::step`] for every sequence: one token per sequence.
    pub fn step_batch(&mut self, sampling: &SamplingOptions) -> Result<Vec<u32>> {
        sampling.validate().kind(ErrorKind::BadInput)?;
        if self.is_empty() {
            return Err(Error::bad_input(
                "nothing to continue: prefill a prompt first",
            ));
        }
        let (t, p) = (sampling.temperature, sampling.top_p);
        let batch = self.engine.batch();
        let uniforms: Vec<f32> = (0..batch).map(|_| self.draw(t)).collect();
        let picked = match (self.logits.take(), self.pending.take()) {
            (Some(logits), _) => host_sample(&logits, self.engine.vocab_size(), t, p, &uniforms)?,
            (None, Some(pending)) => {
                self.check_room(1)?;
                let ids = self
                    .inner
                    .next_tokens(&pending, self.pos, t, p, &uniforms)
                    .kind(self.run_kind())?;
                self.pos += 1;
                ids
            }
            (None, None) => unreachable!("a non-empty session has logits or a pending token"),
        };
        for (h, &id) in self.history.iter_mut().zip(&picked) {
            h.push(id);
        }
        self.pending = Some(picked.clone());
        Ok(picked)
    }

    /// The logits `[batch · vocab]` of the next position: what the next step picks from.
    /// After a step this runs the picked token (as the next step would anyway).
    pub fn logits(&mut self) -> Result<&[f32]> {
        if self.is_empty() {
            return Err(Error::bad_input("no logits yet: prefill a prompt first"));
        }
        self.flush_pending()?;
        Ok(self
            .logits
            .as_deref()
            .expect("flushed: the logits are read back"))
    }

    /// Seeds the random numbers of sampling steps ([`Session::generate`] seeds them with its
    /// options' `seed`).
    pub fn set_seed(&mut self, seed: u64) {
        self.rng = Rng::new(seed);
    }

    /// Generates after the prompt, streaming each token to `on_token` as soon as it is picked;
    /// `on_token` returns `ControlFlow::Break(())` to stop. Ends at the end-of-sequence token
    /// (not returned), `max_new_tokens`, a full context, or the callback's stop. With the same
    /// prompt and options the text is the command line's (`lav2 generate`). The same, one
    /// token per call: [`Session::start_generation`] and [`Session::next_token`].
    pub fn generate(
        &mut self,
        sampling: &SamplingOptions,
        mut on_token: impl FnMut(&Token) -> ControlFlow<()>,
    ) -> Result<Completion> {
        let mut generation = self.start_generation(sampling)?;
        while let Some(token) = self.next_token(&mut generation)? {
            if on_token(&token).is_break() {
                generation.stop();
            }
        }
        Ok(generation
            .completion()
            .expect("a generation that gives no more tokens has ended"))
    }

    /// Forgets the image, the prompt and everything generated: the session is as new (its
    /// memory stays allocated).
    pub fn reset(&mut self) -> Result<()> {
        if self.has_image {
            self.inner.set_visual_query(None).kind(self.run_kind())?;
            self.has_image = false;
        }
        self.pos = 0;
        self.history.iter_mut().for_each(Vec::clear);
        self.pending = None;
        self.logits = None;
        self.rng = Rng::new(0);
        Ok(())
    }

    /// Runs the picked tokens, if any, keeping their logits.
    fn flush_pending(&mut self) -> Result<()> {
        if let Some(pending) = self.pending.take() {
            if let Err(e) = self.check_room(1) {
                self.pending = Some(pending);
                return Err(e);
            }
            let logits = self
                .inner
                .forward(&pending, self.pos, false)
                .kind(self.run_kind())?;
            self.pos += 1;
            self.logits = Some(logits);
        }
        Ok(())
    }

    fn check_room(&self, n: usize) -> Result<()> {
        let ctx = self.engine.context_len();
        if self.pos + n > ctx {
            return Err(Error::bad_input(format!(
                "{n} more tokens after {} do not fit the context of {ctx} tokens (max_seq_len)",
                self.pos
            )));
        }
        Ok(())
    }

    fn single(&self, what: &str) -> Result<()> {
        match self.engine.batch() {
            1 => Ok(()),
            b => Err(Error::bad_input(format!(
                "{what} is for a session of one sequence; this one decodes {b} side by side \
                 (use the _batch methods)"
            ))),
        }
    }

    fn draw(&mut self, temperature: f32) -> f32 {
        // Greedy decoding takes no random number, as the command line's does not.
        if temperature == 0.0 {
            0.0
        } else {
            self.rng.uniform() as f32
        }
    }

    fn channel_order(&self) -> ChannelOrder {
        self.engine
            .inner
            .model
            .adapter
            .as_ref()
            .and_then(|a| a.config.visual.as_ref())
            .map_or(ChannelOrder::Bgr, |v| v.channel_order)
    }

    /// The kind of a fault while running: the GPU's, or ours on the CPU reference.
    fn run_kind(&self) -> ErrorKind {
        if self.inner.backend().act_bytes() == 4 {
            ErrorKind::Internal
        } else {
            ErrorKind::Device
        }
    }
}

/// Picks one token per row of `logits` on the host, by the rule the device's sampler follows.
fn host_sample(
    logits: &[f32],
    vocab: usize,
    temperature: f32,
    top_p: f32,
    uniforms: &[f32],
) -> Result<Vec<u32>> {
    logits
        .chunks(vocab)
        .zip(uniforms)
        .map(|(row, &u)| {
            let t = sample_token::reference(row, temperature, top_p, u as f64);
            u32::try_from(t).map_err(|_| {
                Error::new(
                    ErrorKind::ModelFile,
                    "the logits are NaN or infinite, so no token can be sampled (non-finite \
                     weights? they are refused at load unless skip_finite_check is set)",
                )
            })
        })
        .collect()
}

fn rgb8_image(width: usize, height: usize, data: &[u8]) -> Result<image::RgbImage> {
    let expected = width.checked_mul(height).and_then(|n| n.checked_mul(3));
    if expected != Some(data.len()) || width == 0 || height == 0 {
        return Err(Error::bad_input(format!(
            "an RGB8 image of {width}x{height} has {} bytes, got {}",
            expected.map_or("too many".to_string(), |n| n.to_string()),
            data.len()
        )));
    }
    let too_big = u32::try_from(width).is_err()
        || u32::try_from(height).is_err()
        || (width as u64) * (height as u64) > crate::io::image::MAX_PIXELS;
    if too_big {
        return Err(Error::bad_input(format!(
            "an RGB8 image of {width}x{height} is over the {} pixels an image may have",
            crate::io::image::MAX_PIXELS
        )));
    }
    image::RgbImage::from_raw(width as u32, height as u32, data.to_vec())
        .ok_or_else(|| Error::bad_input("the RGB8 pixels do not match their size"))
}

fn check_pixels(p: &[f32], size: usize) -> Result<&[f32]> {
    if p.len() != 3 * size * size {
        return Err(Error::bad_input(format!(
            "pixels must be [3, {size}, {size}] ({} values), got {} values",
            3 * size * size,
            p.len()
        )));
    }
    if let Some((i, v)) = p.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::bad_input(format!(
            "pixel {i} is {v}; pixels must be finite numbers"
        )));
    }
    Ok(p)
}
