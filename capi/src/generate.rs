//! Generation: sampling parameters, streaming generate with a token callback, single steps.

use std::ffi::{c_char, c_int, c_void};
use std::ops::ControlFlow;

use lav2_core::{SamplingOptions, StopReason};

use crate::error::{guard, require_out, write_out, Res};
use crate::handles::with_session;
use crate::lav2_status;
use crate::session::lav2_session;

/// How tokens are picked and when generation stops; start from `lav2_generate_params_default()`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct lav2_generate_params {
    /// Tokens to generate at most.
    pub max_new_tokens: usize,
    /// 0: greedy (the most likely token); else top-p sampling at this temperature.
    pub temperature: f32,
    /// Nucleus of top-p sampling, in (0, 1].
    pub top_p: f32,
    /// Seed of the random numbers of sampling (generate seeds the session with it).
    pub seed: u64,
    /// Non-zero: keep generating past the end-of-sequence token.
    pub ignore_eos: c_int,
}

/// Why generation stopped.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum lav2_stop_reason {
    /// The model produced its end-of-sequence token (not counted in `n_tokens`).
    LAV2_STOP_EOS = 0,
    /// `max_new_tokens` were generated.
    LAV2_STOP_MAX_NEW_TOKENS = 1,
    /// The context is full.
    LAV2_STOP_CONTEXT_FULL = 2,
    /// The token callback returned non-zero.
    LAV2_STOP_STOPPED = 3,
}

/// What `lav2_session_generate` produced.
#[repr(C)]
pub struct lav2_generation {
    /// Tokens generated (an end-of-sequence token that stopped generation is not counted).
    pub n_tokens: usize,
    pub stop_reason: lav2_stop_reason,
}

/// Called with each generated token as soon as it is picked: its id, and the text that became
/// final with it (`text_len` bytes of UTF-8, possibly 0; `text` is NUL-terminated, owned by
/// lav2 and valid only during the call). Return 0 to go on, non-zero to stop. After the last
/// token, one more call may carry the same id with text that was held back (an unfinished
/// character), unless the callback stopped generation.
pub type lav2_token_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        token: u32,
        text: *const c_char,
        text_len: usize,
    ) -> c_int,
>;

/// The defaults (the authors'): 256 new tokens, temperature 0.1, top-p 0.75, seed 0, stop at
/// the end-of-sequence token.
#[no_mangle]
pub extern "C" fn lav2_generate_params_default() -> lav2_generate_params {
    let d = SamplingOptions::default();
    lav2_generate_params {
        max_new_tokens: d.max_new_tokens,
        temperature: d.temperature,
        top_p: d.top_p,
        seed: d.seed,
        ignore_eos: c_int::from(d.ignore_eos),
    }
}

/// The sampling options of `params` (NULL: the defaults).
///
/// # Safety
/// `params` is NULL or valid for a read.
unsafe fn sampling_of(params: *const lav2_generate_params) -> SamplingOptions {
    // SAFETY: the caller promises `params` is NULL or valid for a read.
    let p = unsafe { params.as_ref() };
    let p = p.copied().unwrap_or_else(|| lav2_generate_params_default());
    SamplingOptions {
        temperature: p.temperature,
        top_p: p.top_p,
        seed: p.seed,
        max_new_tokens: p.max_new_tokens,
        ignore_eos: p.ignore_eos != 0,
    }
}

fn stop_reason(stop: &StopReason) -> lav2_stop_reason {
    match stop {
        StopReason::Eos => lav2_stop_reason::LAV2_STOP_EOS,
        StopReason::MaxNewTokens => lav2_stop_reason::LAV2_STOP_MAX_NEW_TOKENS,
        StopReason::ContextFull => lav2_stop_reason::LAV2_STOP_CONTEXT_FULL,
        StopReason::Stopped => lav2_stop_reason::LAV2_STOP_STOPPED,
    }
}

/// Generates after the prompt with `params` (NULL: the defaults), calling `callback` (unless
/// NULL) with each token and `user_data`. Ends at the end-of-sequence token, `max_new_tokens`,
/// a full context, or the callback's stop; `*out` (unless NULL) then says how many tokens and
/// why. With the same prompt and greedy params the text is `lav2 generate`'s.
///
/// # Safety
/// `params` is NULL or valid; `callback` is NULL or a function of that type, safe to call
/// with `user_data`; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn lav2_session_generate(
    session: *mut lav2_session,
    params: *const lav2_generate_params,
    callback: lav2_token_callback,
    user_data: *mut c_void,
    out: *mut lav2_generation,
) -> lav2_status {
    guard(|| {
        // SAFETY: the caller promises `params` is NULL or valid.
        let sampling = unsafe { sampling_of(params) };
        let done = with_session(session as usize, |s| {
            let mut piece = Vec::new();
            Ok(s.generate(&sampling, |token| {
                let Some(cb) = callback else {
                    return ControlFlow::Continue(());
                };
                piece.clear();
                piece.extend_from_slice(token.text.as_bytes());
                piece.push(0);
                // SAFETY: the caller promises `cb` may be called with `user_data`; the text is
                // NUL-terminated and lives until the call returns.
                let stop =
                    unsafe { cb(user_data, token.id, piece.as_ptr().cast(), token.text.len()) };
                if stop == 0 {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            })?)
        })?;
        if out.is_null() {
            return Ok(());
        }
        let generation = lav2_generation {
            n_tokens: done.ids.len(),
            stop_reason: stop_reason(&done.stop),
        };
        // SAFETY: `out` is non-NULL and, as the caller promises, valid for a write.
        unsafe { write_out(out, generation, "out") }
    })
}

/// Picks the next token by `params` (NULL: the defaults; greedy at temperature 0) and writes it
/// to `*token_out`; it is run at the next step. `max_new_tokens`, `seed` and `ignore_eos` are
/// not used here.
///
/// # Safety
/// `params` is NULL or valid; `token_out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn lav2_session_step(
    session: *mut lav2_session,
    params: *const lav2_generate_params,
    token_out: *mut u32,
) -> lav2_status {
    guard(|| -> Res<()> {
        require_out(token_out, "token_out")?;
        // SAFETY: the caller promises `params` is NULL or valid.
        let sampling = unsafe { sampling_of(params) };
        let id = with_session(session as usize, |s| Ok(s.step(&sampling)?))?;
        // SAFETY: `token_out` is non-NULL and valid for a write, as the caller promises.
        unsafe { write_out(token_out, id, "token_out") }
    })
}
