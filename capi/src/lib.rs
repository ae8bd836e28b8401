//! The C ABI of lav2: `liblav2.so` / `liblav2.a`, declared by `include/lav2.h` (generated from
//! these files by cbindgen). It is a thin layer over the public Rust API ([`lav2_core::Engine`],
//! [`lav2_core::Session`]) and nothing else.
//!
//! Conventions of every entry point:
//! - It returns a [`lav2_status`]; on anything but `LAV2_OK`, [`lav2_last_error`] says what.
//! - Handles are ids looked up in a registry, never dereferenced: a NULL, freed or wrong handle
//!   is `LAV2_ERR_INVALID_HANDLE`, never a crash; so is a second free.
//! - A panic inside lav2 is caught and becomes `LAV2_ERR_INTERNAL`.
//! - C strings are UTF-8; NULL for a required argument, or invalid UTF-8, is
//!   `LAV2_ERR_BAD_INPUT` naming the argument.
#![allow(non_camel_case_types)]

mod engine;
mod error;
mod generate;
mod handles;
mod session;

pub use engine::*;
pub use error::*;
pub use generate::*;
pub use session::*;

use std::ffi::c_char;

/// The version of this C ABI: it changes when a declaration of lav2.h changes incompatibly.
pub const LAV2_ABI_VERSION: u32 = 1;

/// [`LAV2_ABI_VERSION`] of the library linked at run time (compare it with the header's).
#[no_mangle]
pub extern "C" fn lav2_abi_version() -> u32 {
    LAV2_ABI_VERSION
}

/// The version of lav2, such as "0.1.0": a static string, never to be freed. Does not change
/// `lav2_last_error`.
#[no_mangle]
pub extern "C" fn lav2_version() -> *const c_char {
    const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    V.as_ptr().cast()
}

/// How many engines, sessions and strings lav2 handed out are not freed yet: 0 once a program
/// freed everything (a leak check; the registries keep leaked handles reachable, so a leak
/// detector cannot see them). Does not change `lav2_last_error`.
#[no_mangle]
pub extern "C" fn lav2_live_handles() -> usize {
    handles::ENGINES.len() + handles::SESSIONS.len() + handles::strings().len()
}

#[cfg(test)]
mod tests {
    /// The committed `include/lav2.h` must be the one cbindgen generates from these sources.
    #[test]
    fn committed_header_is_up_to_date() {
        let generated = include_str!(concat!(env!("OUT_DIR"), "/lav2.h"));
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../include/lav2.h");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "include/lav2.h is out of date with capi/src; regenerate it with\n    \
             LAV2_WRITE_HEADER=1 cargo build -p lav2-capi\n(or copy {}/lav2.h over it)",
            env!("OUT_DIR")
        );
    }
}
