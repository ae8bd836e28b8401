//! `tokenizer.json` through the tokenizers crate; BOS is ours to prepend, and decoding can
//! stream piece by piece (byte-fallback pieces are held until they form whole characters).

use std::path::Path;

use anyhow::{anyhow, Result};

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    pub fn load(path: &Path) -> Result<Tokenizer> {
        if !path.is_file() {
            return Err(anyhow!("tokenizer not found: {}", path.display()));
        }
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| anyhow!("cannot load tokenizer {}: {e}", path.display()))?;
        Ok(Tokenizer { inner })
    }

    /// Ids of `text` without BOS.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("cannot tokenize the prompt: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| anyhow!("cannot decode tokens: {e}"))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Incremental decoding: call `step` for each new id; it returns the text that became final.
    pub fn stream(&self) -> TextStream<'_> {
        TextStream {
            tok: self,
            ids: Vec::new(),
            emitted: 0,
        }
    }
}

/// Decodes the whole suffix each step and emits what extends the text already printed, so the
/// concatenation of all steps equals one `decode` of all ids (even for byte-fallback pieces
/// and the leading-space rule of sentencepiece decoders).
pub struct TextStream<'a> {
    tok: &'a Tokenizer,
    ids: Vec<u32>,
    emitted: usize,
}

impl TextStream<'_> {
    pub fn step(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = self.tok.decode(&self.ids)?;
        // An incomplete UTF-8 sequence decodes to U+FFFD at the end; wait for the rest.
        if text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        if text.len() < self.emitted || !text.is_char_boundary(self.emitted) {
            return Ok(String::new());
        }
        let new = text[self.emitted..].to_string();
        self.emitted = text.len();
        Ok(new)
    }

    /// Whatever is still held back (an unfinished byte sequence at the very end).
    pub fn finish(&mut self) -> Result<String> {
        let text = self.tok.decode(&self.ids)?;
        if text.len() > self.emitted && text.is_char_boundary(self.emitted) {
            let rest = text[self.emitted..].to_string();
            self.emitted = text.len();
            return Ok(rest);
        }
        Ok(String::new())
    }
}
