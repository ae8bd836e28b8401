//! Any bytes given to the PyTorch checkpoint reader give a checkpoint or an error, never a
//! panic, and reading every tensor of a checkpoint that opened does not panic either.
#![no_main]

use lav2::convert::adapter::{self, AdapterOptions};
use lav2::convert::pickle;
use lav2::convert::pth::Checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The pickle machine alone, in both modes.
    let _ = pickle::parse(data, pickle::Options { torchscript: false });
    let _ = pickle::parse(data, pickle::Options { torchscript: true });
    // The whole archive reader.
    if let Ok(c) = Checkpoint::from_bytes("fuzz", data.to_vec()) {
        for (path, t) in c.tensors() {
            let _ = c.raw(t);
            let _ = c.read_f32(&path, t);
        }
        let _ = adapter::plan(&c, None, &AdapterOptions::default());
        let _ = lav2::convert::describe::describe_checkpoint(&c);
    }
});
