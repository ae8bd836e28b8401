//! Engines: options, load and free, what an engine holds, tokenize and detokenize.

use std::ffi::{c_char, c_int, CString};
use std::path::{Path, PathBuf};

use lav2_core::{DeviceChoice, Engine, EngineOptions, QuantFormat};

use crate::error::{c_slice, c_str, guard, opt_c_str, require_out, write_out, Failure, Res};
use crate::handles::{strings, ENGINES};
use crate::lav2_status::{self, *};

/// An engine: a model (and adapter) loaded once, its weights on the device. Opaque; made by
/// `lav2_engine_load`, freed by `lav2_engine_free`. Safe to share between threads.
pub struct lav2_engine {
    _opaque: [u8; 0],
}

/// Where an engine runs (the `device` of `lav2_engine_options`).
#[repr(i32)]
pub enum lav2_device {
    /// A CUDA GPU when one is usable, else the CPU.
    LAV2_DEVICE_AUTO = 0,
    /// The float32 CPU reference.
    LAV2_DEVICE_CPU = 1,
    /// A CUDA GPU (an error when there is none).
    LAV2_DEVICE_CUDA = 2,
}

/// Weight format of the linear layers, quantized at load (the `quant` of
/// `lav2_engine_options`).
#[repr(i32)]
pub enum lav2_quant {
    /// Weights as they are (f16 on the GPU, f32 on the CPU).
    LAV2_QUANT_NONE = 0,
    /// int8, one scale per output channel.
    LAV2_QUANT_INT8 = 1,
    /// int4 in groups, symmetric.
    LAV2_QUANT_INT4 = 2,
    /// int4 in groups with a zero point per group.
    LAV2_QUANT_INT4_ZERO_POINT = 3,
}

/// How `lav2_engine_load` loads a model; start from `lav2_engine_options_default()`.
#[repr(C)]
pub struct lav2_engine_options {
    /// A `lav2_device` value (another value is LAV2_ERR_BAD_INPUT).
    pub device: i32,
    /// A `lav2_quant` value (another value is LAV2_ERR_BAD_INPUT).
    pub quant: i32,
    /// Context length (tokens a session holds); 0: the model's own, lowered to what fits.
    pub max_seq_len: usize,
    /// Sequences each session decodes side by side; 0 means 1.
    pub batch: usize,
    /// tokenizer.json to use (UTF-8 path, copied during the call); NULL: the model folder's,
    /// if it has one (an engine without a tokenizer takes token ids only).
    pub tokenizer: *const c_char,
    /// Non-zero: skip the load-time scan refusing NaN / infinite weights (trusted files only).
    pub skip_finite_check: c_int,
}

/// What an engine holds (`lav2_engine_get_info`).
#[repr(C)]
pub struct lav2_engine_info {
    /// Tokens in the vocabulary: the length of a session's logits (times `batch`).
    pub vocab_size: usize,
    /// Tokens a session holds: prompt and generated together.
    pub context_len: usize,
    /// Sequences each session decodes side by side.
    pub batch: usize,
    pub bos_id: u32,
    pub eos_id: u32,
    /// Non-zero when the engine can tokenize text (else it takes token ids only).
    pub has_tokenizer: c_int,
    /// Non-zero when an adapter was loaded.
    pub has_adapter: c_int,
    /// The side of the square image the vision tower takes; 0 when there is no vision tower.
    pub image_size: usize,
}

/// The default options: LAV2_DEVICE_AUTO, LAV2_QUANT_NONE, the model's context, batch 1, the
/// model folder's tokenizer, the finite check on.
#[no_mangle]
pub extern "C" fn lav2_engine_options_default() -> lav2_engine_options {
    lav2_engine_options {
        device: lav2_device::LAV2_DEVICE_AUTO as i32,
        quant: lav2_quant::LAV2_QUANT_NONE as i32,
        max_seq_len: 0,
        batch: 1,
        tokenizer: std::ptr::null(),
        skip_finite_check: 0,
    }
}

fn engine_options(o: &lav2_engine_options, tokenizer: Option<&str>) -> Res<EngineOptions> {
    let device = match o.device {
        0 => DeviceChoice::Auto,
        1 => DeviceChoice::Cpu,
        2 => DeviceChoice::Cuda,
        d => {
            return Err(Failure::bad_input(format!(
                "options->device: {d} is not a lav2_device"
            )))
        }
    };
    let quant = match o.quant {
        0 => QuantFormat::None,
        1 => QuantFormat::Int8,
        2 => QuantFormat::Int4 { zero_point: false },
        3 => QuantFormat::Int4 { zero_point: true },
        q => {
            return Err(Failure::bad_input(format!(
                "options->quant: {q} is not a lav2_quant"
            )))
        }
    };
    Ok(EngineOptions {
        device,
        quant,
        max_seq_len: (o.max_seq_len != 0).then_some(o.max_seq_len),
        batch: o.batch.max(1),
        tokenizer: tokenizer.map(PathBuf::from),
        skip_finite_check: o.skip_finite_check != 0,
    })
}

/// Loads the base model folder `model_dir` and, unless NULL, the adapter folder `adapter_dir`
/// (UTF-8 paths), with `options` (NULL: the defaults), and puts the weights on the device.
///
/// Ownership: on LAV2_OK `*out` is a new engine, freed with `lav2_engine_free`; on failure
/// `*out` is set to NULL. The strings are only read during the call.
///
/// # Safety
/// The strings are NULL or NUL-terminated; `options` is NULL or valid; `out` is NULL or valid
/// for a write.
#[no_mangle]
pub unsafe extern "C" fn lav2_engine_load(
    model_dir: *const c_char,
    adapter_dir: *const c_char,
    options: *const lav2_engine_options,
    out: *mut *mut lav2_engine,
) -> lav2_status {
    guard(|| {
        require_out(out, "out")?;
        // SAFETY: `out` is non-NULL and, as the caller promises, valid for a write.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller promises NUL-terminated strings or NULL.
        let model = unsafe { c_str(model_dir, "model_dir") }?;
        // SAFETY: as above.
        let adapter = unsafe { opt_c_str(adapter_dir, "adapter_dir") }?;
        let defaults = lav2_engine_options_default();
        // SAFETY: the caller promises `options` is NULL or points to valid options.
        let o = unsafe { options.as_ref() }.unwrap_or(&defaults);
        // SAFETY: as above, for the tokenizer string inside the options.
        let tokenizer = unsafe { opt_c_str(o.tokenizer, "options->tokenizer") }?;
        let opts = engine_options(o, tokenizer)?;
        let engine = Engine::load(model, adapter.map(Path::new), &opts)?;
        let id = ENGINES.insert(engine);
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, id as *mut lav2_engine, "out") }
    })
}

/// Frees an engine handle. Sessions opened on it keep working (they hold the model) until they
/// are freed. A NULL, freed or unknown handle is LAV2_ERR_INVALID_HANDLE (so a double free is
/// an error, not a crash).
#[no_mangle]
pub extern "C" fn lav2_engine_free(engine: *mut lav2_engine) -> lav2_status {
    guard(|| ENGINES.remove(engine as usize))
}

/// Fills `*out` with what `engine` holds (vocabulary size, context, special ids, …).
///
/// # Safety
/// `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn lav2_engine_get_info(
    engine: *const lav2_engine,
    out: *mut lav2_engine_info,
) -> lav2_status {
    guard(|| {
        let e = ENGINES.get(engine as usize)?;
        let info = lav2_engine_info {
            vocab_size: e.vocab_size(),
            context_len: e.context_len(),
            batch: e.batch(),
            bos_id: e.bos_id(),
            eos_id: e.eos_id(),
            has_tokenizer: c_int::from(e.has_tokenizer()),
            has_adapter: c_int::from(e.has_adapter()),
            image_size: e.image_size().unwrap_or(0),
        };
        // SAFETY: the caller promises `out` is NULL (refused) or valid for a write.
        unsafe { write_out(out, info, "out") }
    })
}

/// Token ids of the UTF-8 `text`, after the BOS id when `add_bos` is non-zero.
///
/// Two calls: `*len_out` is always set to the number of ids; they are copied to `out` when it
/// is not NULL. `capacity` (elements of `out`) below that number is LAV2_ERR_BAD_INPUT, with
/// `*len_out` still set, so a first call with `out` NULL sizes the buffer. The caller owns `out`.
///
/// # Safety
/// `text` is NULL or NUL-terminated; `out` is NULL or valid for `capacity` writes; `len_out` is
/// NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn lav2_tokenize(
    engine: *const lav2_engine,
    text: *const c_char,
    add_bos: c_int,
    out: *mut u32,
    capacity: usize,
    len_out: *mut usize,
) -> lav2_status {
    guard(|| {
        require_out(len_out, "len_out")?;
        let e = ENGINES.get(engine as usize)?;
        // SAFETY: the caller promises a NUL-terminated string or NULL.
        let text = unsafe { c_str(text, "text") }?;
        let ids = e.tokenize(text, add_bos != 0)?;
        // SAFETY: the caller promises `out`/`len_out` as documented.
        unsafe { copy_out(&ids, out, capacity, len_out, "ids") }
    })
}

/// Sets `*len_out` to `values.len()` and copies them to `out` (unless NULL) when they fit.
///
/// # Safety
/// `out` is NULL or valid for `capacity` writes; `len_out` is valid for a write.
pub(crate) unsafe fn copy_out<T: Copy>(
    values: &[T],
    out: *mut T,
    capacity: usize,
    len_out: *mut usize,
    what: &str,
) -> Res<()> {
    // SAFETY: the caller promises `len_out` is valid for a write.
    unsafe { write_out(len_out, values.len(), "len_out") }?;
    if out.is_null() {
        return Ok(());
    }
    if capacity < values.len() {
        return Err(Failure::bad_input(format!(
            "the buffer holds {capacity} elements; the {} {what} need more (*len_out is set)",
            values.len()
        )));
    }
    // SAFETY: `out` is valid for `capacity >= values.len()` writes, as the caller promises, and
    // cannot overlap `values`, which lav2 owns.
    unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), out, values.len()) };
    Ok(())
}

/// The text of the `n` token ids at `ids` (special tokens such as BOS left out).
///
/// Ownership: on LAV2_OK `*out` is a NUL-terminated UTF-8 string allocated by lav2, to be freed
/// with `lav2_string_free` (not `free`); on failure `*out` is set to NULL.
///
/// # Safety
/// `ids` is NULL (with `n` 0) or points to `n` ids; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn lav2_detokenize(
    engine: *const lav2_engine,
    ids: *const u32,
    n: usize,
    out: *mut *mut c_char,
) -> lav2_status {
    guard(|| {
        require_out(out, "out")?;
        // SAFETY: `out` is non-NULL and valid for a write, as the caller promises.
        unsafe { out.write(std::ptr::null_mut()) };
        let e = ENGINES.get(engine as usize)?;
        // SAFETY: the caller promises `n` ids at `ids`.
        let ids = unsafe { c_slice(ids, n, "ids") }?;
        let text = e.detokenize(ids)?;
        let c = CString::new(text)
            .map_err(|_| Failure::bad_input("the text of these ids holds a NUL character"))?;
        let p = c.into_raw();
        strings().insert(p as usize);
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, p, "out") }
    })
}

/// Frees a string lav2 returned (`lav2_detokenize`). NULL is accepted and does nothing; a
/// pointer lav2 did not hand out, or one already freed, is LAV2_ERR_INVALID_HANDLE and is left
/// alone.
// Safe for any pointer value: it is only turned back into a string when lav2 handed it out.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
#[no_mangle]
pub extern "C" fn lav2_string_free(s: *mut c_char) -> lav2_status {
    guard(|| {
        if s.is_null() {
            return Ok(());
        }
        if !strings().remove(&(s as usize)) {
            return Err(Failure::new(
                LAV2_ERR_INVALID_HANDLE,
                "lav2_string_free: this string was not returned by lav2, or was already freed",
            ));
        }
        // SAFETY: `s` came from `CString::into_raw` in lav2_detokenize (it was registered) and
        // is freed once: it was just unregistered.
        drop(unsafe { CString::from_raw(s) });
        Ok(())
    })
}
