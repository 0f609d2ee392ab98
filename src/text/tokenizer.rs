//! CLIP tokenization: OpenAI's text cleaning ([`super::clean::clip_clean`]) followed by the
//! byte-level BPE of a Hugging Face `tokenizer.json`, start/end tokens, and truncation to the
//! context length that keeps the end token — the ids OpenAI's `clip.tokenize` produces.
//!
//! The `tokenizer.json` normalizer and post-processor are replaced: the normalizer of a
//! Hugging Face CLIP tokenizer does not do OpenAI's cleaning (ftfy, HTML unescaping), so
//! the cleaning here is the only normalisation, and the special tokens are added here.

use std::path::Path;

use std::sync::LazyLock;

use regex::Regex;
use tokenizers::{NormalizerWrapper, PostProcessorWrapper, Tokenizer};

use crate::error::{Error, Result};

/// The start-of-text token of CLIP's vocabulary.
pub const START_TOKEN: &str = "<|startoftext|>";
/// The end-of-text token of CLIP's vocabulary (its id is where CLIP's text tower pools).
pub const END_TOKEN: &str = "<|endoftext|>";

/// OpenAI's pre-tokenization pattern (`clip/simple_tokenizer.py`). A special token counts
/// only where this pattern matches it as a whole piece: in `;<|endoftext|>` the punctuation
/// run swallows the `<|` and the rest is ordinary text. Hugging Face's added-token
/// extraction would make it special, so pieces are cut here and BPE-encoded one by one.
static OPENAI_PATTERN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")
        .expect("valid pattern")
});

/// A CLIP tokenizer with a fixed context length.
#[derive(Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
    start_id: u32,
    end_id: u32,
    context_length: usize,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("start_id", &self.start_id)
            .field("end_id", &self.end_id)
            .field("context_length", &self.context_length)
            .finish()
    }
}

impl ClipTokenizer {
    /// Loads a CLIP `tokenizer.json` (it must know `<|startoftext|>` and `<|endoftext|>`).
    pub fn from_file(path: &Path, context_length: usize) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(path, &bytes, context_length)
    }

    /// [`ClipTokenizer::from_file`] on the file's bytes (read once, e.g. checksummed);
    /// `path` names the file in errors.
    pub fn from_bytes(path: &Path, bytes: &[u8], context_length: usize) -> Result<Self> {
        let mut inner = Tokenizer::from_bytes(bytes).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: format!("not a Hugging Face tokenizer.json: {e}"),
        })?;
        let id = |token: &str| {
            inner.token_to_id(token).ok_or_else(|| Error::Config {
                path: path.to_path_buf(),
                message: format!("not a CLIP tokenizer: the vocabulary has no `{token}`"),
            })
        };
        let (start_id, end_id) = (id(START_TOKEN)?, id(END_TOKEN)?);
        inner
            .with_normalizer(None::<NormalizerWrapper>)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        inner.with_post_processor(None::<PostProcessorWrapper>);
        inner
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        inner.with_padding(None);
        if context_length < 2 {
            return Err(Error::InvalidInput(format!(
                "context length {context_length} cannot hold the start and end tokens"
            )));
        }
        Ok(ClipTokenizer {
            inner,
            start_id,
            end_id,
            context_length,
        })
    }

    pub fn start_id(&self) -> u32 {
        self.start_id
    }

    pub fn end_id(&self) -> u32 {
        self.end_id
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Size of the vocabulary, special tokens included (the text encoder's embedding rows).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text` as the text encoder gets them: start token, BPE ids of the
    /// cleaned text, end token; cut to the context length with the end token kept last.
    /// Not padded.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let cleaned = super::clean::clip_clean(text);
        let bpe = |piece: &str| {
            self.inner
                .encode_fast(piece, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| Error::Tokenizer(format!("cannot encode {text:?}: {e}")))
        };
        let body = if cleaned.contains(START_TOKEN) || cleaned.contains(END_TOKEN) {
            let mut ids = Vec::new();
            for piece in OPENAI_PATTERN.find_iter(&cleaned).map(|m| m.as_str()) {
                match piece {
                    START_TOKEN => ids.push(self.start_id),
                    END_TOKEN => ids.push(self.end_id),
                    _ => ids.extend(bpe(piece)?),
                }
            }
            ids
        } else {
            // No literal special token: one pass, the tokenizer's own pre-tokenizer splits
            // with the same pattern.
            bpe(&cleaned)?
        };
        let keep = body.len().min(self.context_length - 2);
        let mut ids = Vec::with_capacity(keep + 2);
        ids.push(self.start_id);
        ids.extend_from_slice(&body[..keep]);
        ids.push(self.end_id);
        Ok(ids)
    }

    /// Encodes a batch of texts.
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        texts.iter().map(|t| self.encode(t.as_ref())).collect()
    }
}
