//! Any bytes given to the PyTorch checkpoint reader give a checkpoint or an error, never a
//! panic, and reading every tensor of a checkpoint that opened does not panic either.
//! The entry is shared with tests/fuzz_regressions.rs (see ../entries.rs).
#![no_main]

#[path = "../entries.rs"]
mod entries;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| entries::pth_reader(data));
