//! SentencePiece `tokenizer.model` (a `ModelProto` protobuf) read natively, and turned into the
//! Hugging Face `tokenizer.json` that `transformers`' LLaMA converter produces: a byte-fallback
//! BPE whose merges are derived from the piece scores, the `Prepend ▁` + `Replace " " → ▁`
//! normalizer, and the `Replace / ByteFallback / Fuse / Strip` decoder.
//!
//! As in that file, control pieces (`<s>`, `</s>`) become added tokens, so their text written
//! literally in a prompt is read as the token; sentencepiece itself would spell it out. Prompts
//! from the command line go through the template, where this does not arise.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::{anyhow, bail, Context, Result};

/// `ModelProto.SentencePiece.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceType {
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

impl PieceType {
    fn from_i64(v: i64) -> Result<PieceType> {
        Ok(match v {
            1 => PieceType::Normal,
            2 => PieceType::Unknown,
            3 => PieceType::Control,
            4 => PieceType::UserDefined,
            5 => PieceType::Unused,
            6 => PieceType::Byte,
            other => bail!("unknown sentencepiece piece type {other}"),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceType,
}

/// `TrainerSpec.ModelType`.
pub const MODEL_UNIGRAM: i64 = 1;
pub const MODEL_BPE: i64 = 2;

/// The parts of a sentencepiece model that decide how text is tokenized.
#[derive(Clone, Debug, PartialEq)]
pub struct SpModel {
    pub pieces: Vec<Piece>,
    pub model_type: i64,
    pub byte_fallback: bool,
    pub unk_id: i64,
    pub bos_id: i64,
    pub eos_id: i64,
    pub pad_id: i64,
    pub treat_whitespace_as_suffix: bool,
    pub normalizer_name: String,
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

impl Default for SpModel {
    /// The protobuf defaults.
    fn default() -> Self {
        SpModel {
            pieces: Vec::new(),
            model_type: MODEL_UNIGRAM,
            byte_fallback: false,
            unk_id: 0,
            bos_id: 1,
            eos_id: 2,
            pad_id: -1,
            treat_whitespace_as_suffix: false,
            normalizer_name: String::new(),
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| anyhow!("truncated protobuf varint at byte {}", self.pos))?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("protobuf varint longer than 10 bytes at byte {}", self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| anyhow!("truncated protobuf: {n} bytes needed at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let (num, wire) = (key >> 3, key & 7);
        let f = match wire {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let n = self.varint()?;
                let n = usize::try_from(n).map_err(|_| anyhow!("protobuf length too large"))?;
                Field::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Field::Fixed32(u32::from_le_bytes(b.try_into().unwrap()))
            }
            w => bail!("protobuf wire type {w} (field {num}) is not supported"),
        };
        Ok(Some((num, f)))
    }
}

fn int(f: &Field) -> Result<i64> {
    match f {
        Field::Varint(v) => Ok(*v as i64),
        _ => bail!("protobuf field has the wrong wire type (integer expected)"),
    }
}

fn string(f: &Field) -> Result<String> {
    match f {
        Field::Bytes(b) => {
            String::from_utf8(b.to_vec()).map_err(|_| anyhow!("protobuf string is not UTF-8"))
        }
        _ => bail!("protobuf field has the wrong wire type (string expected)"),
    }
}

impl SpModel {
    /// Parses a serialized `ModelProto`.
    pub fn parse(bytes: &[u8]) -> Result<SpModel> {
        let mut m = SpModel::default();
        let mut r = Reader::new(bytes);
        while let Some((num, f)) = r.next()? {
            match (num, &f) {
                (1, Field::Bytes(b)) => m
                    .pieces
                    .push(parse_piece(b).with_context(|| format!("piece {}", m.pieces.len()))?),
                (2, Field::Bytes(b)) => parse_trainer(b, &mut m).context("trainer_spec")?,
                (3, Field::Bytes(b)) => parse_normalizer(b, &mut m).context("normalizer_spec")?,
                (1..=3, _) => bail!("ModelProto field {num} has the wrong wire type"),
                _ => {}
            }
        }
        if m.pieces.is_empty() {
            bail!("no pieces: not a sentencepiece model");
        }
        Ok(m)
    }

    /// Serializes the fields this module reads (enough for sentencepiece itself to load the
    /// model; used to build test models).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.pieces {
            let mut b = Vec::new();
            put_bytes(&mut b, 1, p.piece.as_bytes());
            put_key(&mut b, 2, 5);
            b.extend_from_slice(&p.score.to_le_bytes());
            put_varint_field(&mut b, 3, p.kind as i64);
            put_bytes(&mut out, 1, &b);
        }
        let mut t = Vec::new();
        put_varint_field(&mut t, 3, self.model_type);
        if self.treat_whitespace_as_suffix {
            put_varint_field(&mut t, 24, 1);
        }
        put_varint_field(&mut t, 35, self.byte_fallback as i64);
        put_varint_field(&mut t, 40, self.unk_id);
        put_varint_field(&mut t, 41, self.bos_id);
        put_varint_field(&mut t, 42, self.eos_id);
        put_varint_field(&mut t, 43, self.pad_id);
        put_bytes(&mut out, 2, &t);
        let mut n = Vec::new();
        put_bytes(&mut n, 1, self.normalizer_name.as_bytes());
        if !self.precompiled_charsmap.is_empty() {
            put_bytes(&mut n, 2, &self.precompiled_charsmap);
        }
        put_varint_field(&mut n, 3, self.add_dummy_prefix as i64);
        put_varint_field(&mut n, 4, self.remove_extra_whitespaces as i64);
        put_varint_field(&mut n, 5, self.escape_whitespaces as i64);
        put_bytes(&mut out, 3, &n);
        out
    }

    fn id(&self, i: i64) -> Option<&Piece> {
        usize::try_from(i).ok().and_then(|i| self.pieces.get(i))
    }

    pub fn model_type_name(&self) -> &'static str {
        match self.model_type {
            1 => "unigram",
            2 => "bpe",
            3 => "word",
            4 => "char",
            _ => "unknown",
        }
    }

    /// A few lines for `lav2 info`.
    pub fn describe(&self) -> String {
        let count = |k: PieceType| self.pieces.iter().filter(|p| p.kind == k).count();
        let name = |i: i64| {
            self.id(i)
                .map(|p| p.piece.clone())
                .unwrap_or_else(|| "-".into())
        };
        format!(
            "sentencepiece model: {} pieces ({} byte, {} control, {} user-defined, {} unused), type {}, byte_fallback {}\n  \
             unk {} ({}), bos {} ({}), eos {} ({}), pad {}\n  normalizer '{}' (add_dummy_prefix {}, remove_extra_whitespaces {})",
            self.pieces.len(),
            count(PieceType::Byte),
            count(PieceType::Control),
            count(PieceType::UserDefined),
            count(PieceType::Unused),
            self.model_type_name(),
            self.byte_fallback,
            self.unk_id,
            name(self.unk_id),
            self.bos_id,
            name(self.bos_id),
            self.eos_id,
            name(self.eos_id),
            self.pad_id,
            if self.normalizer_name.is_empty() { "identity" } else { &self.normalizer_name },
            self.add_dummy_prefix,
            self.remove_extra_whitespaces
        )
    }

    /// Merges as `transformers` derives them from a BPE model: for every piece (in id order),
    /// each split into two pieces of the vocabulary, splits ordered by the ids of their halves;
    /// then a stable sort by (piece score, length of the left half, length of the right half),
    /// highest first.
    pub fn merges(&self) -> Vec<(&str, &str)> {
        let vocab: HashMap<&str, usize> = self
            .pieces
            .iter()
            .enumerate()
            .rev()
            .map(|(i, p)| (p.piece.as_str(), i))
            .collect();
        let mut merges: Vec<(&str, &str, f32)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for p in &self.pieces {
            let s = p.piece.as_str();
            if !seen.insert(s) {
                continue;
            }
            let mut local: Vec<(&str, &str, f32)> = s
                .char_indices()
                .skip(1)
                .filter_map(|(i, _)| {
                    let (l, r) = s.split_at(i);
                    (vocab.contains_key(l) && vocab.contains_key(r)).then_some((l, r, p.score))
                })
                .collect();
            local.sort_by_key(|&(l, r, _)| (vocab[l], vocab[r]));
            merges.extend(local);
        }
        let chars = |s: &str| s.chars().count();
        merges.sort_by(|a, b| {
            b.2.total_cmp(&a.2)
                .then_with(|| chars(b.0).cmp(&chars(a.0)))
                .then_with(|| chars(b.1).cmp(&chars(a.1)))
        });
        merges.into_iter().map(|(l, r, _)| (l, r)).collect()
    }

    /// The Hugging Face `tokenizer.json` text equivalent to this model.
    pub fn to_hf_json(&self) -> Result<String> {
        if self.model_type != MODEL_BPE {
            bail!(
                "sentencepiece model type '{}' is not supported; only BPE models (LLaMA's) convert",
                self.model_type_name()
            );
        }
        if !self.precompiled_charsmap.is_empty() {
            bail!(
                "sentencepiece normalization '{}' (a precompiled character map) is not supported; \
                 LLaMA's tokenizer uses the identity normalization",
                self.normalizer_name
            );
        }
        if !self.escape_whitespaces {
            bail!("sentencepiece models with escape_whitespaces = false are not supported");
        }
        if self.treat_whitespace_as_suffix {
            bail!("sentencepiece models with treat_whitespace_as_suffix = true are not supported");
        }
        let unk = self
            .id(self.unk_id)
            .ok_or_else(|| anyhow!("unk_id {} is not a piece", self.unk_id))?;
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (i, p) in self.pieces.iter().enumerate() {
            if let Some(j) = ids.insert(&p.piece, i) {
                bail!("piece '{}' appears twice (ids {j} and {i})", p.piece);
            }
        }
        let q = |s: &str| serde_json::to_string(s).expect("strings serialize");
        let mut out = String::with_capacity(64 * self.pieces.len());
        out.push_str("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [");
        let added: Vec<(usize, &Piece)> = self
            .pieces
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p.kind, PieceType::Control | PieceType::UserDefined))
            .collect();
        for (n, (i, p)) in added.iter().enumerate() {
            let _ = write!(
                out,
                "{}\n    {{\n      \"id\": {i},\n      \"content\": {},\n      \"single_word\": false,\n      \
                 \"lstrip\": false,\n      \"rstrip\": false,\n      \"normalized\": false,\n      \"special\": {}\n    }}",
                if n > 0 { "," } else { "" },
                q(&p.piece),
                p.kind == PieceType::Control
            );
        }
        out.push_str(if added.is_empty() { "],\n" } else { "\n  ],\n" });
        let mut norms: Vec<String> = Vec::new();
        if self.remove_extra_whitespaces {
            // sentencepiece skips leading spaces and squeezes runs of them while it escapes them
            // as ▁; at the end it drops every trailing ▁ (an escaped space or a literal one).
            norms.push(
                r#"{"type": "Replace", "pattern": {"Regex": "\\A +"}, "content": ""}"#.into(),
            );
            norms.push(
                r#"{"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}"#.into(),
            );
        }
        if self.add_dummy_prefix {
            norms.push(r#"{"type": "Prepend", "prepend": "▁"}"#.into());
        }
        norms.push(r#"{"type": "Replace", "pattern": {"String": " "}, "content": "▁"}"#.into());
        if self.remove_extra_whitespaces {
            norms.push(
                r#"{"type": "Replace", "pattern": {"Regex": "▁+\\z"}, "content": ""}"#.into(),
            );
        }
        let _ = writeln!(
            out,
            "  \"normalizer\": {{\"type\": \"Sequence\", \"normalizers\": [{}]}},",
            norms.join(", ")
        );
        out.push_str("  \"pre_tokenizer\": null,\n  \"post_processor\": null,\n");
        let mut decoders = vec![
            r#"{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}"#,
            r#"{"type": "ByteFallback"}"#,
            r#"{"type": "Fuse"}"#,
        ];
        if self.add_dummy_prefix {
            decoders.push(r#"{"type": "Strip", "content": " ", "start": 1, "stop": 0}"#);
        }
        let _ = writeln!(
            out,
            "  \"decoder\": {{\"type\": \"Sequence\", \"decoders\": [{}]}},",
            decoders.join(", ")
        );
        let _ = write!(
            out,
            "  \"model\": {{\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": {},\n    \
             \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": true,\n    \
             \"byte_fallback\": {},\n    \"ignore_merges\": false,\n    \"vocab\": {{",
            q(&unk.piece),
            self.byte_fallback
        );
        for (i, p) in self.pieces.iter().enumerate() {
            let _ = write!(
                out,
                "{}\n      {}: {i}",
                if i > 0 { "," } else { "" },
                q(&p.piece)
            );
        }
        out.push_str("\n    },\n    \"merges\": [");
        for (n, (l, r)) in self.merges().iter().enumerate() {
            let _ = write!(
                out,
                "{}\n      [{}, {}]",
                if n > 0 { "," } else { "" },
                q(l),
                q(r)
            );
        }
        out.push_str("\n    ]\n  }\n}\n");
        Ok(out)
    }
}

fn parse_piece(b: &[u8]) -> Result<Piece> {
    let mut r = Reader::new(b);
    let mut p = Piece {
        piece: String::new(),
        score: 0.0,
        kind: PieceType::Normal,
    };
    while let Some((num, f)) = r.next()? {
        match (num, &f) {
            (1, _) => p.piece = string(&f)?,
            (2, Field::Fixed32(v)) => p.score = f32::from_bits(*v),
            (2, _) => bail!("piece score has the wrong wire type"),
            (3, _) => p.kind = PieceType::from_i64(int(&f)?)?,
            _ => {}
        }
    }
    Ok(p)
}

fn parse_trainer(b: &[u8], m: &mut SpModel) -> Result<()> {
    let mut r = Reader::new(b);
    while let Some((num, f)) = r.next()? {
        match num {
            3 => m.model_type = int(&f)?,
            24 => m.treat_whitespace_as_suffix = int(&f)? != 0,
            35 => m.byte_fallback = int(&f)? != 0,
            // int32 fields: negative values are 10-byte varints of the sign-extended value.
            40 => m.unk_id = int(&f)? as i32 as i64,
            41 => m.bos_id = int(&f)? as i32 as i64,
            42 => m.eos_id = int(&f)? as i32 as i64,
            43 => m.pad_id = int(&f)? as i32 as i64,
            _ => {}
        }
    }
    Ok(())
}

fn parse_normalizer(b: &[u8], m: &mut SpModel) -> Result<()> {
    let mut r = Reader::new(b);
    while let Some((num, f)) = r.next()? {
        match (num, &f) {
            (1, _) => m.normalizer_name = string(&f)?,
            (2, Field::Bytes(b)) => m.precompiled_charsmap = b.to_vec(),
            (3, _) => m.add_dummy_prefix = int(&f)? != 0,
            (4, _) => m.remove_extra_whitespaces = int(&f)? != 0,
            (5, _) => m.escape_whitespaces = int(&f)? != 0,
            _ => {}
        }
    }
    Ok(())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_key(out: &mut Vec<u8>, num: u64, wire: u64) {
    put_varint(out, (num << 3) | wire);
}

fn put_varint_field(out: &mut Vec<u8>, num: u64, v: i64) {
    put_key(out, num, 0);
    put_varint(out, v as u64);
}

fn put_bytes(out: &mut Vec<u8>, num: u64, b: &[u8]) {
    put_key(out, num, 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(s: &str, score: f32, kind: PieceType) -> Piece {
        Piece {
            piece: s.into(),
            score,
            kind,
        }
    }

    #[test]
    fn round_trips_through_protobuf() {
        let m = SpModel {
            pieces: vec![
                piece("<unk>", 0.0, PieceType::Unknown),
                piece("<s>", 0.0, PieceType::Control),
                piece("ab", -1.5, PieceType::Normal),
            ],
            model_type: MODEL_BPE,
            byte_fallback: true,
            pad_id: -1,
            ..SpModel::default()
        };
        assert_eq!(SpModel::parse(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn merges_follow_scores_then_left_length() {
        let m = SpModel {
            pieces: vec![
                piece("<unk>", 0.0, PieceType::Unknown),
                piece("a", -10.0, PieceType::Normal),
                piece("b", -11.0, PieceType::Normal),
                piece("c", -12.0, PieceType::Normal),
                piece("ab", -1.0, PieceType::Normal),
                piece("bc", -2.0, PieceType::Normal),
                piece("abc", -3.0, PieceType::Normal),
            ],
            model_type: MODEL_BPE,
            ..SpModel::default()
        };
        assert_eq!(
            m.merges(),
            vec![("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")]
        );
    }
}
