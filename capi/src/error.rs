//! Status codes, the thread's last error message, the panic guard of every entry point, and the
//! checks of C arguments (strings, arrays, out-pointers).

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use lav2_core::ErrorKind;

/// What an entry point returns: `LAV2_OK`, or why it failed (then `lav2_last_error` says what).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum lav2_status {
    /// Success.
    LAV2_OK = 0,
    /// An argument is refused: NULL where one is required, invalid UTF-8, a token id outside
    /// the vocabulary, an empty prompt, a buffer too small, a call out of order.
    LAV2_ERR_BAD_INPUT = 1,
    /// A model, adapter, tokenizer or image file is missing, unreadable or malformed.
    LAV2_ERR_MODEL_FILE = 2,
    /// The device could not be opened or failed while running.
    LAV2_ERR_DEVICE = 3,
    /// Host or device memory is short for what was asked.
    LAV2_ERR_OUT_OF_MEMORY = 4,
    /// A fault inside lav2 (a bug, a caught panic): please report it with the message.
    LAV2_ERR_INTERNAL = 5,
    /// A handle is NULL, already freed, or not of the kind the function takes.
    LAV2_ERR_INVALID_HANDLE = 6,
    /// The session is in use by another call: one running on another thread, or a call made
    /// from inside its own token callback.
    LAV2_ERR_BUSY = 7,
}

use lav2_status::*;

/// A failed call: its status and message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: lav2_status,
    pub(crate) message: String,
}

pub(crate) type Res<T> = Result<T, Failure>;

impl Failure {
    pub(crate) fn new(status: lav2_status, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_input(message: impl Into<String>) -> Failure {
        Failure::new(LAV2_ERR_BAD_INPUT, message)
    }
}

impl From<lav2_core::Error> for Failure {
    fn from(e: lav2_core::Error) -> Failure {
        let status = match e.kind() {
            ErrorKind::BadInput => LAV2_ERR_BAD_INPUT,
            ErrorKind::ModelFile => LAV2_ERR_MODEL_FILE,
            ErrorKind::Device => LAV2_ERR_DEVICE,
            ErrorKind::OutOfMemory => LAV2_ERR_OUT_OF_MEMORY,
            _ => LAV2_ERR_INTERNAL,
        };
        Failure::new(status, e.message())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = c);
}

/// The message of the last failed lav2 call on this thread; "" when the last call succeeded.
///
/// Ownership: the string belongs to lav2 and stays valid until the next lav2 call on this
/// thread (other than `lav2_last_error`, `lav2_version`, `lav2_abi_version` and the `_default`
/// functions); copy it to keep it. Never NULL, never to be freed.
#[no_mangle]
pub extern "C" fn lav2_last_error() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

/// Runs the body of an entry point, catching a panic; then records its message as the last
/// error, or "" on success (after any lav2 call a token callback made).
pub(crate) fn guard(body: impl FnOnce() -> Res<()>) -> lav2_status {
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            set_last_error("");
            return LAV2_OK;
        }
        Ok(Err(f)) => f,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            Failure::new(LAV2_ERR_INTERNAL, format!("internal error in lav2: {what}"))
        }
    };
    set_last_error(&failure.message);
    failure.status
}

/// The UTF-8 string `p` (argument `what`), required.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn c_str<'a>(p: *const c_char, what: &str) -> Res<&'a str> {
    // SAFETY: the caller promises `p` is NULL or a live NUL-terminated string.
    unsafe { opt_c_str(p, what) }?.ok_or_else(|| Failure::bad_input(format!("{what} is NULL")))
}

/// The UTF-8 string `p` (argument `what`), or `None` for NULL.
///
/// # Safety
/// As [`c_str`].
pub(crate) unsafe fn opt_c_str<'a>(p: *const c_char, what: &str) -> Res<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: `p` is not NULL and, as the caller promises, NUL-terminated and live for 'a.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    std::str::from_utf8(bytes).map(Some).map_err(|e| {
        Failure::bad_input(format!(
            "{what} is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })
}

/// The `n` elements at `p` (argument `what`); `p` may be NULL when `n` is 0.
///
/// # Safety
/// `p` is NULL or points to `n` initialized elements that outlive `'a`.
pub(crate) unsafe fn c_slice<'a, T>(p: *const T, n: usize, what: &str) -> Res<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Failure::bad_input(format!(
            "{what} is NULL (with {n} elements)"
        )));
    }
    if n.checked_mul(std::mem::size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(Failure::bad_input(format!(
            "{what}: {n} elements is too many"
        )));
    }
    if !(p as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Failure::bad_input(format!(
            "{what} is not aligned for its type"
        )));
    }
    // SAFETY: `p` is non-NULL and aligned, the size fits isize, and the caller promises `n`
    // initialized elements live for 'a.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// Writes `value` to the out-pointer `p` (argument `what`), required.
///
/// # Safety
/// `p` is NULL or valid for a write of one `T`.
pub(crate) unsafe fn write_out<T>(p: *mut T, value: T, what: &str) -> Res<()> {
    if p.is_null() {
        return Err(Failure::bad_input(format!("{what} is NULL")));
    }
    // SAFETY: `p` is non-NULL and, as the caller promises, valid for a write; `write` does not
    // read (or drop) what was there, which may be uninitialized.
    unsafe { p.write(value) };
    Ok(())
}

/// Refuses a NULL out-pointer (argument `what`) before any work is done.
pub(crate) fn require_out<T>(p: *mut T, what: &str) -> Res<()> {
    if p.is_null() {
        return Err(Failure::bad_input(format!("{what} is NULL")));
    }
    Ok(())
}
