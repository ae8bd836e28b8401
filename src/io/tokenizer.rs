//! `tokenizer.json` through the tokenizers crate; BOS is ours to prepend, and decoding can
//! stream piece by piece (byte-fallback pieces are held until they form whole characters).

use std::collections::HashSet;
use std::path::Path;

use anyhow::{anyhow, Result};

/// Token ids written as comma-separated numbers (`1,2,3`), used as given: blanks around an id
/// and empty parts are skipped, so `""` is no ids.
pub fn parse_token_ids(s: &str) -> Result<Vec<u32>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u32>()
                .map_err(|_| anyhow!("'{p}' is not a token id (expected e.g. 1,2,3)"))
        })
        .collect()
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Set for the sentencepiece decoder (`▁` → space, byte fallback, fuse, strip): the text
    /// is then built from the pieces' bytes by us, so that it only ever grows as tokens come.
    pieces: Option<PieceDecoder>,
}

/// The sentencepiece-style decoder, done on bytes: pieces with `▁` as a space, `<0xNN>` pieces
/// as raw bytes, one UTF-8 decode over the whole, `strip` leading spaces removed. Unlike the
/// tokenizers crate's byte fallback (which turns a whole run of byte pieces into U+FFFD when
/// the run is not valid UTF-8, even its complete characters), an invalid sequence becomes one
/// U+FFFD per maximal invalid part, as `String::from_utf8_lossy` does, so that the text of a
/// prefix of the ids is a prefix of the text of all of them (up to an unfinished character).
struct PieceDecoder {
    strip: usize,
    special: HashSet<u32>,
}

impl PieceDecoder {
    /// Recognizes exactly the decoder of the LLaMA tokenizers:
    /// `Replace(▁ → " "), ByteFallback, Fuse[, Strip(" ", n, 0)]`.
    fn detect(json: &serde_json::Value, inner: &tokenizers::Tokenizer) -> Option<PieceDecoder> {
        if json["model"]["byte_fallback"] != serde_json::Value::Bool(true) {
            return None;
        }
        let d = &json["decoder"];
        if d["type"] != "Sequence" {
            return None;
        }
        let steps = d["decoders"].as_array()?;
        let kinds: Vec<&str> = steps.iter().filter_map(|s| s["type"].as_str()).collect();
        let strip = match kinds.as_slice() {
            ["Replace", "ByteFallback", "Fuse"] => 0,
            ["Replace", "ByteFallback", "Fuse", "Strip"] => {
                let st = &steps[3];
                if st["content"] != " " || st["stop"] != 0 {
                    return None;
                }
                st["start"].as_u64()? as usize
            }
            _ => return None,
        };
        let r = &steps[0];
        if r["pattern"]["String"] != "\u{2581}" || r["content"] != " " {
            return None;
        }
        let special = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        Some(PieceDecoder { strip, special })
    }

    fn bytes(&self, inner: &tokenizers::Tokenizer, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        for &id in ids {
            if self.special.contains(&id) {
                continue;
            }
            // Unknown ids are dropped, as the tokenizers crate's decode drops them.
            let Some(piece) = inner.id_to_token(id) else {
                continue;
            };
            match byte_piece(&piece) {
                Some(b) => out.push(b),
                None => out.extend_from_slice(piece.replace('\u{2581}', " ").as_bytes()),
            }
        }
        let cut = out
            .iter()
            .take(self.strip)
            .take_while(|&&b| b == b' ')
            .count();
        out.drain(..cut);
        out
    }
}

/// `<0xNN>` → the byte NN.
fn byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Lossy UTF-8 decoding (one U+FFFD per maximal invalid part, as `String::from_utf8_lossy`)
/// of everything but an unfinished character at the end; returns the text and the number of
/// bytes of that unfinished character (0 when there is none).
fn decode_complete(mut b: &[u8]) -> (String, usize) {
    let mut s = String::new();
    loop {
        match std::str::from_utf8(b) {
            Ok(v) => {
                s.push_str(v);
                return (s, 0);
            }
            Err(e) => {
                let (valid, rest) = b.split_at(e.valid_up_to());
                s.push_str(std::str::from_utf8(valid).unwrap_or_default());
                match e.error_len() {
                    Some(n) => {
                        s.push('\u{FFFD}');
                        b = &rest[n..];
                    }
                    None => return (s, rest.len()),
                }
            }
        }
    }
}

/// Byte length of the longest common prefix of two strings, on a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i)
}

impl Tokenizer {
    pub fn load(path: &Path) -> Result<Tokenizer> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                return Err(anyhow!(
                    "tokenizer {}: is a directory, expected a tokenizer.json file",
                    path.display()
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(anyhow!(
                    "tokenizer not found: {}: no such file or directory",
                    path.display()
                ))
            }
            Err(e) => return Err(anyhow!("tokenizer {}: {e}", path.display())),
        }
        let bytes =
            std::fs::read(path).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| anyhow!("cannot load tokenizer {}: {e}", path.display()))?;
        let pieces = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|json| PieceDecoder::detect(&json, &inner));
        Ok(Tokenizer { inner, pieces })
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

    /// The text generated after `prompt`: the decode of prompt + `generated` minus the decode
    /// of the prompt (so the first piece keeps its leading space after a non-empty prompt). An
    /// unfinished character at the very end is one U+FFFD. What [`TextStream`] prints, in full.
    pub fn continuation(&self, prompt: &[u32], generated: &[u32]) -> Result<String> {
        let (mut text, pending) = self.continuation_parts(prompt, generated)?;
        if pending {
            text.push('\u{FFFD}');
        }
        Ok(text)
    }

    /// The continuation without what may still change when more tokens come (an unfinished
    /// character), and whether something was held back.
    fn continuation_parts(&self, prompt: &[u32], generated: &[u32]) -> Result<(String, bool)> {
        let all: Vec<u32> = prompt.iter().chain(generated).copied().collect();
        if let Some(pd) = &self.pieces {
            let before = pd.bytes(&self.inner, prompt);
            let full = pd.bytes(&self.inner, &all);
            // The prompt's own unfinished character, if any, is completed by what follows.
            let (_, unfinished) = decode_complete(&before);
            let start = if full.starts_with(&before) {
                before.len() - unfinished
            } else {
                0
            };
            let (text, held) = decode_complete(&full[start..]);
            return Ok((text, held > 0));
        }
        let before = self.decode(prompt)?;
        let full = self.decode(&all)?;
        let text = full[common_prefix(&full, &before)..].to_string();
        // A byte-level decoder shows an unfinished character as U+FFFD at the end: hold it.
        let kept = text.trim_end_matches('\u{FFFD}').len();
        Ok((text[..kept].to_string(), kept < text.len()))
    }

    /// Incremental decoding of what is generated after nothing (see [`Tokenizer::stream_after`]).
    pub fn stream(&self) -> TextStream<'_> {
        self.stream_after(&[])
    }

    /// Incremental decoding of what is generated after `prompt`: call `step` for each new id;
    /// it returns the text that became final. All steps plus `finish` concatenate to exactly
    /// [`Tokenizer::continuation`] of the ids given.
    pub fn stream_after(&self, prompt: &[u32]) -> TextStream<'_> {
        TextStream {
            tok: self,
            state: StreamState::after(prompt),
        }
    }
}

/// [`StreamState`] with the tokenizer it decodes with.
pub struct TextStream<'a> {
    tok: &'a Tokenizer,
    state: StreamState,
}

impl TextStream<'_> {
    pub fn step(&mut self, id: u32) -> Result<String> {
        self.state.step(self.tok, id)
    }

    /// Whatever is still held back (an unfinished byte sequence at the very end).
    pub fn finish(&mut self) -> Result<String> {
        self.state.finish(self.tok)
    }
}

/// Incremental decoding that owns no tokenizer (for a session that outlives any borrow of
/// one). Recomputes the continuation each step and emits what extends the text already
/// printed; an unfinished UTF-8 sequence is held back until the next token completes it or
/// shows that it cannot be completed (then it is U+FFFD, as in the final text).
#[derive(Clone, Debug, Default)]
pub struct StreamState {
    prompt: Vec<u32>,
    ids: Vec<u32>,
    emitted: String,
}

impl StreamState {
    /// A stream of what follows `prompt`.
    pub fn after(prompt: &[u32]) -> StreamState {
        StreamState {
            prompt: prompt.to_vec(),
            ids: Vec::new(),
            emitted: String::new(),
        }
    }

    /// The ids streamed so far (after the prompt).
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    pub fn step(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let (text, _) = tok.continuation_parts(&self.prompt, &self.ids)?;
        Ok(self.advance(&text))
    }

    /// Whatever is still held back (an unfinished byte sequence at the very end).
    pub fn finish(&mut self, tok: &Tokenizer) -> Result<String> {
        let text = tok.continuation(&self.prompt, &self.ids)?;
        Ok(self.advance(&text))
    }
    fn advance(&mut self, text: &str) -> String {
        // By construction the text only grows; should a decoder ever rewrite what was printed,
        // nothing more is printed until the text passes it again.
        match text.strip_prefix(self.emitted.as_str()) {
            Some(new) if !new.is_empty() => {
                let new = new.to_string();
                self.emitted.push_str(&new);
                new
            }
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_token_ids;

    #[test]
    fn token_ids_are_comma_separated_numbers() {
        assert_eq!(parse_token_ids(" 1, 2,,3 ").unwrap(), [1, 2, 3]);
        assert!(parse_token_ids("").unwrap().is_empty());
        let e = parse_token_ids("1,-1").unwrap_err().to_string();
        assert_eq!(e, "'-1' is not a token id (expected e.g. 1,2,3)");
    }
}
