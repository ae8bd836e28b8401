//! Any bytes as params.json, config.json or adapter_config.json give a model or an error,
//! never a panic (parse, validation, and the loader's use of the sizes).
//! The entry is shared with tests/fuzz_regressions.rs (see ../entries.rs).
#![no_main]

#[path = "../entries.rs"]
mod entries;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| entries::config_json(data));
