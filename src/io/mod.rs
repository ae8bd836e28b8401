//! Files a user brings: tokenizers, images.

pub mod image;
pub mod tokenizer;
