//! Any bytes given to the sentencepiece model reader give a model or an error, never a panic.
//! The entry is shared with tests/fuzz_regressions.rs (see ../entries.rs).
#![no_main]

#[path = "../entries.rs"]
mod entries;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| entries::sentencepiece(data));
