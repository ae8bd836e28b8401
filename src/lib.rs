//! lav2: LLaMA-Adapter V2 served by a small graph executor, with a float32 CPU reference
//! backend and hand-written CUDA kernels.
//!
//! Flow: files → [`model`] (validated weights) → [`graph`] (ops over tensor ids, planned
//! buffers) → [`backend`] (CPU or CUDA) → [`session::Session`] → [`generate`].

pub mod backend;
pub mod bench;
pub mod convert;
pub mod experts;
pub mod generate;
pub mod graph;
pub mod io;
pub mod limits;
pub mod model;
pub mod notice;
pub mod ops;
pub mod quant;
pub mod rng;
pub mod sampling;
pub mod session;
pub mod tensor;

pub use backend::DeviceChoice;
pub use model::{LoadOptions, Model};
pub use notice::{Notice, OptionError};
pub use session::Session;
