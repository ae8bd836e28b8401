//! The embedding API: [`Engine`] (a model on a device, loaded once) and [`Session`] (one
//! conversation on it), with one error type, [`Error`]. The C ABI (`capi/`, `include/lav2.h`)
//! and the Python package (`python/`) are thin layers over exactly these calls.

mod engine;
mod error;
mod session;

pub use engine::{Engine, EngineOptions};
pub use error::{Error, ErrorKind, Result};
pub use session::{Completion, Generation, Image, Session, Token};

/// The text the model sees for `instruction` in `template`, with `context` (an image's caption,
/// OCR lines, any extra input) in its input slot.
///
/// ```
/// let p = lav2::format_prompt(lav2::Template::Alpaca, "Describe the image.", None).unwrap();
/// assert!(p.ends_with("### Instruction:\nDescribe the image.\n\n### Response:"));
/// assert!(lav2::format_prompt(lav2::Template::None, "x", Some("y")).is_err());
/// ```
pub fn format_prompt(
    template: crate::Template,
    instruction: &str,
    context: Option<&str>,
) -> Result<String> {
    use error::Kind;
    crate::generate::format_prompt(template, instruction, context).kind(ErrorKind::BadInput)
}

/// Where the examples in these docs find their models (internal: not part of the API).
#[doc(hidden)]
pub mod doc_support {
    use std::path::PathBuf;

    /// The conformance folder `name` (`LAV2_CONFORMANCE`, else `../shared/conformance` beside
    /// the crate); `None`, said on stderr, where it is missing — a failure under `CI=true`.
    pub fn conformance(name: &str) -> Option<PathBuf> {
        let root = std::env::var_os("LAV2_CONFORMANCE").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"),
            PathBuf::from,
        );
        let dir = root.join(name);
        if dir.is_dir() {
            return Some(dir);
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "conformance data {} is missing (CI=true)",
            dir.display()
        );
        eprintln!("SKIPPED: conformance data {} is missing", dir.display());
        None
    }
}

#[cfg(test)]
mod tests {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn engines_are_shared_across_threads_and_sessions_move_between_them() {
        send_sync::<super::Engine>();
        send::<super::Session>();
        send_sync::<super::Error>();
    }
}
