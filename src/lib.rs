//! lav2: LLaMA-Adapter V2 — a frozen LLaMA with adapter prompts, unlocked biases and scales,
//! and visual prompts from a CLIP encoder — served by a float32 CPU reference and hand-written
//! CUDA kernels.
//!
//! The stable API is what this page lists at the crate root: [`Engine`] loads a model (and
//! adapter) once and puts its weights on the device; each [`Session`] is a conversation on
//! it (an image, a prompt, tokens stepped or streamed); every fault is an [`Error`] with an
//! [`ErrorKind`].
//!
//! ```
//! # fn main() -> Result<(), lav2::Error> {
//! # let Some(dir) = lav2::doc_support::conformance("stories260K") else { return Ok(()) };
//! use lav2::{DeviceChoice, Engine, EngineOptions, SamplingOptions};
//! let engine = Engine::load(&dir, None, &EngineOptions { device: DeviceChoice::Cpu, ..Default::default() })?;
//! let mut session = engine.session()?;
//! session.prefill_text("Once upon a time")?;
//! let story = session.generate(&SamplingOptions::greedy(30), |token| {
//!     print!("{}", token.text); // streamed as it is generated
//!     std::ops::ControlFlow::Continue(())
//! })?;
//! assert_eq!(story.ids.len(), 30);
//! # Ok(())
//! # }
//! ```
//!
//! The modules hidden from these docs (`backend`, `graph`, `ops`, `model`, …) are the
//! runtime's internals: the command line, the tests and the benchmarks use them, and they
//! change without notice. Flow: files → `model` (validated weights) → `graph` (ops over tensor
//! ids, planned buffers) → `backend` (CPU or CUDA) → `session` → `generate` → [`Engine`].

mod api;
#[doc(hidden)]
pub mod backend;
#[doc(hidden)]
pub mod bench;
#[doc(hidden)]
pub mod convert;
#[doc(hidden)]
pub mod experts;
#[doc(hidden)]
pub mod generate;
#[doc(hidden)]
pub mod graph;
#[doc(hidden)]
pub mod io;
#[doc(hidden)]
pub mod limits;
#[doc(hidden)]
pub mod model;
#[doc(hidden)]
pub mod notice;
#[doc(hidden)]
pub mod ops;
#[doc(hidden)]
pub mod quant;
#[doc(hidden)]
pub mod rng;
#[doc(hidden)]
pub mod sampling;
#[doc(hidden)]
pub mod session;
#[doc(hidden)]
pub mod tensor;

#[doc(hidden)]
pub use api::doc_support;
pub use api::{
    format_prompt, Completion, Engine, EngineOptions, Error, ErrorKind, Generation, Image, Result,
    Session, Token,
};
pub use backend::DeviceChoice;
pub use generate::{SamplingOptions, StopReason, Template};
pub use quant::QuantFormat;

/// The version of the API (this crate's version), as the C ABI's `lav2_version` reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
