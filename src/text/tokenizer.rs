//! Text to token ids, as the bundle's family does it ([`TextTokenizer`]):
//!
//! - [`ClipTokenizer`] (CLIP, MobileCLIP): OpenAI's text cleaning
//!   ([`super::clean::clip_clean`]) followed by the byte-level BPE of a Hugging Face
//!   `tokenizer.json`, start/end tokens, and truncation to the context length that keeps the
//!   end token — the ids OpenAI's `clip.tokenize` produces. The `tokenizer.json` normalizer
//!   and post-processor are replaced: the normalizer of a Hugging Face CLIP tokenizer does
//!   not do OpenAI's cleaning (ftfy, HTML unescaping), so the cleaning here is the only
//!   normalisation, and the special tokens are added here.
//! - [`HfTokenizer`] (SigLIP's SentencePiece, SigLIP 2's Gemma BPE): the manifest's
//!   lower-casing and punctuation stripping (what `SiglipTokenizer` does in Python), then
//!   the `tokenizer.json`'s own pipeline with its special tokens, truncated as transformers'
//!   `truncation=True` does.
//!
//! Padding is the text encoder's job ([`TextSpec::padded_length`], `pad_id`).

use std::path::Path;

use std::sync::LazyLock;

use regex::Regex;
use tokenizers::{NormalizerWrapper, PostProcessorWrapper, Tokenizer, TruncationParams};

use super::clean::{python_lower, whitespace_clean};
use crate::error::{Error, Result};
use crate::model::family::{TextSpec, TokenizerKind};
use crate::model::ModelBundle;

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

/// A `tokenizer.json` run as Hugging Face runs it (normalizer, pre-tokenizer, model,
/// post-processor with its special tokens), after the manifest's Python-side text steps.
#[derive(Clone)]
pub struct HfTokenizer {
    inner: Tokenizer,
    lowercase: bool,
    strip_punctuation: bool,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("lowercase", &self.lowercase)
            .field("strip_punctuation", &self.strip_punctuation)
            .finish()
    }
}

impl HfTokenizer {
    /// Loads a `tokenizer.json` (its bytes; `path` names it in errors) for `spec`, truncating
    /// to `context_length` ids special tokens included.
    pub fn from_bytes(
        path: &Path,
        bytes: &[u8],
        spec: &TextSpec,
        context_length: usize,
    ) -> Result<Self> {
        let mut inner = Tokenizer::from_bytes(bytes).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: format!("not a Hugging Face tokenizer.json: {e}"),
        })?;
        inner
            .with_truncation(Some(TruncationParams {
                max_length: context_length,
                ..Default::default()
            }))
            .map_err(|e| Error::Config {
                path: path.to_path_buf(),
                message: format!("cannot truncate to {context_length} tokens: {e}"),
            })?;
        inner.with_padding(None);
        Ok(HfTokenizer {
            inner,
            lowercase: spec.lowercase,
            strip_punctuation: spec.strip_punctuation,
        })
    }

    /// Size of the vocabulary, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The text as the `tokenizer.json` gets it: lower-cased, then (SigLIP's
    /// `canonicalize_text`) ASCII punctuation removed, whitespace runs made one space and
    /// the ends stripped, as the manifest says.
    pub fn canonicalize(&self, text: &str) -> String {
        let text = if self.lowercase {
            python_lower(text)
        } else {
            text.to_string()
        };
        if !self.strip_punctuation {
            return text;
        }
        let kept: String = text.chars().filter(|c| !c.is_ascii_punctuation()).collect();
        // re.sub(r"\s+", " ", text).strip(): open_clip's whitespace_clean, the same thing.
        whitespace_clean(&kept)
    }

    /// Token ids of `text`, special tokens included, truncated to the context. Not padded.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let text = self.canonicalize(text);
        self.inner
            .encode_fast(text.as_str(), true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Tokenizer(format!("cannot encode {text:?}: {e}")))
    }
}

/// The bundle's tokenizer with its text conventions (padding id and length).
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    kind: Kind,
    spec: TextSpec,
    context_length: usize,
}

#[derive(Debug, Clone)]
enum Kind {
    Clip(ClipTokenizer),
    Hf(HfTokenizer),
}

impl TextTokenizer {
    /// The tokenizer of `bundle`, from the checksummed bytes of `files.tokenizer`, checked
    /// against the manifest: its vocabulary must fit the text encoder's
    /// (`architecture.text.vocab_size` where the manifest records it). A CLIP tokenizer's
    /// vocabulary is the encoder's, with the end token, where CLIP's text tower pools, as
    /// its last id.
    pub fn for_bundle(bundle: &ModelBundle) -> Result<TextTokenizer> {
        let path = bundle.tokenizer_path();
        let bytes = bundle.read_verified(&bundle.manifest.files.tokenizer.path)?;
        let spec = bundle.spec().text;
        let context = bundle.manifest.context_length;
        let tokenizer = match spec.tokenizer {
            TokenizerKind::Clip => {
                let clip = ClipTokenizer::from_bytes(&path, &bytes, context)?;
                if let Some(expected) = bundle.text_vocab_size() {
                    check_clip_vocab(bundle, &path, &clip, expected)?;
                }
                TextTokenizer::clip(clip, spec)
            }
            TokenizerKind::Hf => {
                let hf = HfTokenizer::from_bytes(&path, &bytes, &spec, context)?;
                if let Some(expected) = bundle.text_vocab_size() {
                    let actual = hf.vocab_size();
                    if actual > expected {
                        return Err(Error::Config {
                            path,
                            message: format!(
                                "has {actual} tokens but {} says the text encoder has {expected} \
                                 (field `architecture.text.vocab_size`): tokenizer and encoder \
                                 are from different models",
                                bundle.manifest_path().display()
                            ),
                        });
                    }
                }
                TextTokenizer::hf(hf, spec)
            }
        };
        if let Some(vocab) = bundle.text_vocab_size() {
            if spec.pad_id as usize >= vocab {
                return Err(bundle.field_error(
                    "text.pad_id",
                    format!(
                        "{} is not an id of the {vocab}-token vocabulary",
                        spec.pad_id
                    ),
                ));
            }
        }
        Ok(tokenizer)
    }
}

/// A CLIP tokenizer must have exactly the text encoder's vocabulary, its end token last.
fn check_clip_vocab(
    bundle: &ModelBundle,
    path: &Path,
    tokenizer: &ClipTokenizer,
    expected: usize,
) -> Result<()> {
    let actual = tokenizer.vocab_size();
    if actual != expected {
        return Err(Error::Config {
            path: path.to_path_buf(),
            message: format!(
                "has {actual} tokens but {} says the text encoder has {expected} \
                 (field `architecture.text.vocab_size`): tokenizer and encoder are \
                 from different models",
                bundle.manifest_path().display()
            ),
        });
    }
    let end = tokenizer.end_id() as usize;
    if end + 1 != expected {
        return Err(Error::Config {
            path: path.to_path_buf(),
            message: format!(
                "`{}` has id {end}, not the last id {} of the text encoder's \
                 vocabulary: CLIP's text tower would pool at the wrong token",
                END_TOKEN,
                expected - 1
            ),
        });
    }
    Ok(())
}

impl TextTokenizer {
    /// A CLIP tokenizer under `spec` (its context length is the tokenizer's).
    pub fn clip(tokenizer: ClipTokenizer, spec: TextSpec) -> Self {
        debug_assert_eq!(spec.tokenizer, TokenizerKind::Clip);
        TextTokenizer {
            context_length: tokenizer.context_length(),
            kind: Kind::Clip(tokenizer),
            spec,
        }
    }

    /// A `tokenizer.json` pipeline under `spec`.
    pub fn hf(tokenizer: HfTokenizer, spec: TextSpec) -> Self {
        debug_assert_eq!(spec.tokenizer, TokenizerKind::Hf);
        let context_length = tokenizer
            .inner
            .get_truncation()
            .map(|t| t.max_length)
            .unwrap_or(usize::MAX);
        TextTokenizer {
            kind: Kind::Hf(tokenizer),
            spec,
            context_length,
        }
    }

    /// The text conventions (padding, pooling) of the bundle.
    pub fn spec(&self) -> &TextSpec {
        &self.spec
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Size of the vocabulary, special tokens included.
    pub fn vocab_size(&self) -> usize {
        match &self.kind {
            Kind::Clip(t) => t.vocab_size(),
            Kind::Hf(t) => t.vocab_size(),
        }
    }

    /// The CLIP tokenizer, for a CLIP-family bundle.
    pub fn as_clip(&self) -> Option<&ClipTokenizer> {
        match &self.kind {
            Kind::Clip(t) => Some(t),
            Kind::Hf(_) => None,
        }
    }

    /// Token ids of `text` as the text encoder gets them, before padding.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.kind {
            Kind::Clip(t) => t.encode(text),
            Kind::Hf(t) => t.encode(text),
        }
    }

    /// Encodes a batch of texts.
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        texts.iter().map(|t| self.encode(t.as_ref())).collect()
    }

    /// `ids` padded with the bundle's pad id to the length the text encoder needs for a
    /// batch whose longest sequence is `longest` (the context, where the tower reads
    /// padding).
    pub fn padded(&self, ids: &[u32], longest: usize) -> Vec<u32> {
        let len = self
            .spec
            .padded_length(longest, self.context_length)
            .max(ids.len());
        let mut row = ids.to_vec();
        row.resize(len, self.spec.pad_id);
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::family::{PadTo, Pooling};

    /// A word-level tokenizer.json (no normalizer), so canonicalisation alone decides the
    /// ids, with `$A </s>` appended as SigLIP's post-processor does.
    fn tokenizer(lowercase: bool, strip_punctuation: bool) -> TextTokenizer {
        let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[
            {"id":1,"content":"</s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
          "normalizer":null,"pre_tokenizer":{"type":"WhitespaceSplit"},
          "post_processor":{"type":"TemplateProcessing","single":[{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"</s>","type_id":0}}],
            "pair":[{"Sequence":{"id":"A","type_id":0}}],"special_tokens":{"</s>":{"id":"</s>","ids":[1],"tokens":["</s>"]}}},
          "decoder":null,
          "model":{"type":"WordLevel","vocab":{"<unk>":0,"</s>":1,"red":2,"cup":3,"Red":4,"cup!":5},"unk_token":"<unk>"}}"#;
        let spec = TextSpec {
            tokenizer: TokenizerKind::Hf,
            lowercase,
            strip_punctuation,
            pad_id: 1,
            pad_to: PadTo::Context,
            pooling: Pooling::Last,
        };
        let hf = HfTokenizer::from_bytes(Path::new("t.json"), json.as_bytes(), &spec, 4).unwrap();
        TextTokenizer::hf(hf, spec)
    }

    #[test]
    fn siglip_canonicalisation_then_the_json_pipeline() {
        let raw = tokenizer(false, false);
        assert_eq!(raw.encode("Red cup!").unwrap(), vec![4, 5, 1]);
        let siglip = tokenizer(true, true);
        // Lower-cased, punctuation dropped, whitespace runs (Python's, \x1c included) one space.
        let Kind::Hf(hf) = &siglip.kind else {
            unreachable!()
        };
        assert_eq!(hf.canonicalize(" Red,\t\x1c CUP!! "), "red cup");
        assert_eq!(siglip.encode("Red cup!").unwrap(), vec![2, 3, 1]);
        assert_eq!(siglip.encode("?!").unwrap(), vec![1]);
        // Truncated to the context with the end token kept, padded with the pad id.
        assert_eq!(
            siglip.encode("red red red red red").unwrap(),
            vec![2, 2, 2, 1]
        );
        assert_eq!(siglip.padded(&[2, 1], 2), vec![2, 1, 1, 1]);
        assert_eq!(siglip.context_length(), 4);
    }
}
