//! Any bytes given to the sentencepiece model reader give a model or an error, never a panic.
#![no_main]

use lav2::convert::spm::SpModel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = SpModel::parse(data) {
        let _ = m.to_hf_json();
        let _ = m.describe();
    }
});
