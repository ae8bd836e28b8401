//! Files in and out: tokenizers, images, safetensors written, output paths.

pub mod image;
pub mod output;
pub mod paths;
pub mod st_writer;
pub mod tokenizer;
