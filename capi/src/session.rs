//! Sessions: new and free, the image, the prompt, logits, reset.

use std::ffi::c_char;
use std::path::Path;

use lav2_core::Image;

use crate::engine::{copy_out, lav2_engine};
use crate::error::{c_slice, c_str, guard, require_out, write_out, Failure};
use crate::handles::{with_session, ENGINES, SESSIONS};
use crate::lav2_status;

/// A session: one conversation on an engine (its own KV cache, the engine's weights). Opaque;
/// made by `lav2_session_new`, freed by `lav2_session_free`. One call at a time: a call while
/// another runs on it (another thread, or its own token callback) is LAV2_ERR_BUSY.
///
/// Order of use: an image (adapters with a vision tower), then the prompt (prefill, one or
/// more times), then generate / step / logits in any mix; reset starts over.
pub struct lav2_session {
    _opaque: [u8; 0],
}

/// Opens a session on `engine`.
///
/// Ownership: on LAV2_OK `*out` is a new session, freed with `lav2_session_free`; it keeps the
/// model alive, so it may outlive `lav2_engine_free` of its engine. On failure `*out` is NULL.
///
/// # Safety
/// `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn lav2_session_new(
    engine: *const lav2_engine,
    out: *mut *mut lav2_session,
) -> lav2_status {
    guard(|| {
        require_out(out, "out")?;
        // SAFETY: `out` is non-NULL and valid for a write, as the caller promises.
        unsafe { out.write(std::ptr::null_mut()) };
        let session = ENGINES.get(engine as usize)?.session()?;
        let id = SESSIONS.insert(std::sync::Mutex::new(session));
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, id as *mut lav2_session, "out") }
    })
}

/// Frees a session handle. A NULL, freed or unknown handle is LAV2_ERR_INVALID_HANDLE. Freed
/// from inside its own token callback, the session ends when that generation returns.
#[no_mangle]
pub extern "C" fn lav2_session_free(session: *mut lav2_session) -> lav2_status {
    guard(|| SESSIONS.remove(session as usize))
}

/// Gives the vision tower the JPEG or PNG file at `path` (UTF-8), preprocessed as CLIP does.
/// Must come before the prompt.
///
/// # Safety
/// `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn lav2_session_set_image_file(
    session: *mut lav2_session,
    path: *const c_char,
) -> lav2_status {
    guard(|| {
        // SAFETY: the caller promises a NUL-terminated string or NULL.
        let path = unsafe { c_str(path, "path") }?;
        with_session(session as usize, |s| {
            Ok(s.set_image(Image::File(Path::new(path)))?)
        })
    })
}

/// Gives the vision tower the `n` bytes of a JPEG or PNG file at `data` (read during the call).
///
/// # Safety
/// `data` is NULL (with `n` 0) or points to `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn lav2_session_set_image_encoded(
    session: *mut lav2_session,
    data: *const u8,
    n: usize,
) -> lav2_status {
    guard(|| {
        // SAFETY: the caller promises `n` bytes at `data`.
        let bytes = unsafe { c_slice(data, n, "data") }?;
        with_session(
            session as usize,
            |s| Ok(s.set_image(Image::Encoded(bytes))?),
        )
    })
}

/// Gives the vision tower 8-bit RGB pixels, row-major: `width * height * 3` bytes at `data`
/// (read during the call), preprocessed as CLIP does.
///
/// # Safety
/// `data` points to `width * height * 3` bytes.
#[no_mangle]
pub unsafe extern "C" fn lav2_session_set_image_rgb8(
    session: *mut lav2_session,
    data: *const u8,
    width: usize,
    height: usize,
) -> lav2_status {
    guard(|| {
        let n = width
            .checked_mul(height)
            .and_then(|p| p.checked_mul(3))
            .ok_or_else(|| {
                Failure::bad_input(format!("an image of {width}x{height} is too big"))
            })?;
        if n == 0 {
            return Err(Failure::bad_input(format!(
                "an image of {width}x{height} is empty"
            )));
        }
        // SAFETY: the caller promises `n` bytes at `data`.
        let data = unsafe { c_slice(data, n, "data") }?;
        with_session(session as usize, |s| {
            Ok(s.set_image(Image::Rgb8 {
                width,
                height,
                data,
            })?)
        })
    })
}

/// Gives the vision tower preprocessed pixels: `n` = 3 * S * S floats `[3, S, S]`, normalized
/// with the CLIP mean and std, in the adapter's channel order (S: `image_size` of
/// `lav2_engine_info`). Read during the call.
///
/// # Safety
/// `data` is NULL (with `n` 0) or points to `n` floats.
#[no_mangle]
pub unsafe extern "C" fn lav2_session_set_image_pixels(
    session: *mut lav2_session,
    data: *const f32,
    n: usize,
) -> lav2_status {
    guard(|| {
        // SAFETY: the caller promises `n` floats at `data`.
        let pixels = unsafe { c_slice(data, n, "data") }?;
        with_session(
            session as usize,
            |s| Ok(s.set_image(Image::Pixels(pixels))?),
        )
    })
}

/// Runs the UTF-8 `text` after what the session holds, as the tokenizer splits it (after BOS
/// when the session is empty). No template is applied.
///
/// # Safety
/// `text` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn lav2_session_prefill_text(
    session: *mut lav2_session,
    text: *const c_char,
) -> lav2_status {
    guard(|| {
        // SAFETY: the caller promises a NUL-terminated string or NULL.
        let text = unsafe { c_str(text, "text") }?;
        with_session(session as usize, |s| Ok(s.prefill_text(text)?))
    })
}

/// Runs the `n` token ids at `ids` as they are (no BOS added) after what the session holds.
/// An empty prompt, or an id outside the vocabulary, is LAV2_ERR_BAD_INPUT.
///
/// # Safety
/// `ids` is NULL (with `n` 0) or points to `n` ids.
#[no_mangle]
pub unsafe extern "C" fn lav2_session_prefill_ids(
    session: *mut lav2_session,
    ids: *const u32,
    n: usize,
) -> lav2_status {
    guard(|| {
        // SAFETY: the caller promises `n` ids at `ids`.
        let ids = unsafe { c_slice(ids, n, "ids") }?;
        with_session(session as usize, |s| Ok(s.prefill(ids)?))
    })
}

/// The logits of the next position (`vocab_size * batch` floats): what the next step picks
/// from. Two calls, as `lav2_tokenize`: `*len_out` is always set; the logits are copied to
/// `out` (owned by the caller) unless it is NULL; `capacity` below `*len_out` is
/// LAV2_ERR_BAD_INPUT.
///
/// # Safety
/// `out` is NULL or valid for `capacity` writes; `len_out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn lav2_session_logits(
    session: *mut lav2_session,
    out: *mut f32,
    capacity: usize,
    len_out: *mut usize,
) -> lav2_status {
    guard(|| {
        require_out(len_out, "len_out")?;
        with_session(session as usize, |s| {
            let logits = s.logits()?;
            // SAFETY: the caller promises `out` and `len_out` as documented.
            unsafe { copy_out(logits, out, capacity, len_out, "logits") }
        })
    })
}

/// Forgets the image, the prompt and everything generated: the session is as new.
#[no_mangle]
pub extern "C" fn lav2_session_reset(session: *mut lav2_session) -> lav2_status {
    guard(|| with_session(session as usize, |s| Ok(s.reset()?)))
}
