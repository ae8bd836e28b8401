//! Files a user brings: tokenizers, images.

pub mod image;
pub mod output;
pub mod paths;
pub mod tokenizer;
