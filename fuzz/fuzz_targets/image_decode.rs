//! Any bytes as an image file give CLIP pixels or an error, never a panic
//! (lav2::io::image::load_image: decode, resize, crop).
//! The entry is shared with tests/fuzz_regressions.rs (see ../entries.rs).
#![no_main]

#[path = "../entries.rs"]
mod entries;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| entries::image_decode(data));
