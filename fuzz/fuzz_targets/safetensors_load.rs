//! Any bytes as a model folder's or an adapter folder's safetensors file give a model or an
//! error naming the problem, never a panic (header parse, our offset / dtype / shape checks).
//! The entry is shared with tests/fuzz_regressions.rs (see ../entries.rs).
#![no_main]

#[path = "../entries.rs"]
mod entries;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| entries::safetensors_load(data));
