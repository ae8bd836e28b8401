//! Generates lav2.h from the sources into OUT_DIR (the committed `include/lav2.h` is checked
//! against it by a test); with `LAV2_WRITE_HEADER=1` it also writes `include/lav2.h`.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("lav2.h");
    let config =
        cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("capi/cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen could not generate lav2.h");
    bindings.write_to_file(&out);
    if std::env::var("LAV2_WRITE_HEADER").as_deref() == Ok("1") {
        bindings.write_to_file(dir.join("../include/lav2.h"));
    }
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=LAV2_WRITE_HEADER");
}
