//! The one error type of the public API: a kind to branch on and the message to show.

use std::fmt;

/// What went wrong, coarsely enough to branch on; the message says exactly what.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument the caller gave is refused: an option's value, a token id outside the
    /// vocabulary, a prompt that does not fit the context, an image of the wrong size, a call
    /// made out of order (an image after the prompt).
    BadInput,
    /// A model, adapter, tokenizer or image file is missing, unreadable or malformed.
    ModelFile,
    /// The device could not be opened or failed while running (no driver, no GPU, a CUDA error).
    Device,
    /// Host or device memory is short for what was asked (weights, KV cache, activations).
    OutOfMemory,
    /// A fault inside lav2 (a bug): please report it with the message.
    Internal,
}

impl ErrorKind {
    /// A short lower-case name (`bad_input`, `model_file`, …), as the C and Python surfaces
    /// spell it.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::BadInput => "bad_input",
            ErrorKind::ModelFile => "model_file",
            ErrorKind::Device => "device",
            ErrorKind::OutOfMemory => "out_of_memory",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error of the public API. Its message is the command line's message for the same fault,
/// with options called by their names in [`crate::EngineOptions`] and
/// [`crate::SamplingOptions`] (`max_seq_len`, not `--max-seq-len`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn bad_input(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadInput, message)
    }

    /// An internal error of kind `default`, unless its causes show it is something more
    /// specific: memory that is not there, or an option's value refused.
    pub(crate) fn from_internal(e: anyhow::Error, default: ErrorKind) -> Error {
        let refused_option = e.chain().any(|c| {
            c.downcast_ref::<crate::notice::OptionError>()
                .is_some_and(|o| !o.is_out_of_memory())
        });
        let kind = if crate::limits::is_out_of_memory(&e) {
            ErrorKind::OutOfMemory
        } else if refused_option && default != ErrorKind::Device {
            ErrorKind::BadInput
        } else {
            default
        };
        Error::new(kind, crate::notice::render_error(&e, str::to_string))
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Maps an internal result to the public error with `kind` as its default kind.
pub(crate) trait Kind<T> {
    fn kind(self, kind: ErrorKind) -> Result<T>;
}

impl<T> Kind<T> for anyhow::Result<T> {
    fn kind(self, kind: ErrorKind) -> Result<T> {
        self.map_err(|e| Error::from_internal(e, kind))
    }
}

impl<T> Kind<T> for std::result::Result<T, crate::notice::OptionError> {
    fn kind(self, kind: ErrorKind) -> Result<T> {
        self.map_err(|e| Error::from_internal(e.into(), kind))
    }
}
