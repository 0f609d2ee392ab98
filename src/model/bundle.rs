//! The model bundle: a folder with `model.yaml` (the manifest), the ONNX image and text
//! encoders and a CLIP `tokenizer.json`. This module reads and validates the manifest,
//! checks that every file it lists exists, checks the sha256 of each file's bytes as they
//! are read for loading ([`ModelBundle::read_verified`]; all of them at once:
//! [`ModelBundle::verify_checksums`]), and checks the manifest against the graphs' inputs and
//! outputs, so a broken bundle stops start-up with one line naming the file and field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::family::{
    CropOffset, Family, ModelSpec, PadTo, Pooling, PreprocessSpec, Resize, Scoring, ScoringKind,
    ScoringSection, TextSpec, TokenizerKind,
};
use crate::config;
use crate::error::{Error, Result};
use crate::image::preprocess::Preprocessor;
pub use crate::precision::{Precision, UnknownPrecision};

/// The manifest file name inside a bundle folder.
pub const MANIFEST_FILE: &str = "model.yaml";
/// The newest manifest format this build reads (format 1 is read too: a CLIP bundle).
pub const FORMAT_VERSION: u32 = 2;

/// `model.yaml`: what a bundle is and how to feed its graphs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    pub source: Source,
    /// Dimension D of the joint embedding space.
    pub embed_dim: usize,
    /// Side S of the square image the image encoder takes.
    pub image_size: usize,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    /// The learned temperature, already exponentiated (100.0 for OpenAI CLIP).
    pub logit_scale: f32,
    /// Token context of the text encoder (77 for CLIP).
    pub context_length: usize,
    pub files: Files,
    /// How the quantized graphs were made (required for each one `files` lists).
    #[serde(default)]
    pub quantization: Option<Quantization>,
    /// Everything else the exporter recorded (architecture, training, metrics, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Where the weights came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    /// `transformers`, `open_clip`, `random-init` or `trained`.
    pub kind: String,
    pub checkpoint: String,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The files of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Files {
    pub image_encoder: GraphFile,
    pub text_encoder: GraphFile,
    pub tokenizer: BundleFile,
    /// The int8 image encoder (written by `models/quantize.py`), if the bundle has one.
    #[serde(default)]
    pub image_encoder_int8: Option<GraphFile>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The `quantization:` section: one entry per quantized graph.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Quantization {
    #[serde(default)]
    pub image_encoder_int8: Option<QuantizedGraph>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// How one quantized graph was made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuantizedGraph {
    /// One of [`QuantForm`]'s names (typed by validation: [`ModelBundle::int8_form`]).
    pub form: String,
    /// Where static activation scales came from (required by static forms).
    #[serde(default)]
    pub calibration: Option<serde_json::Value>,
    /// Settings and measured accuracy recorded by the quantizer.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The quantized forms this engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantForm {
    /// int8 weights per output channel; activation scales per token row, computed at run
    /// time (no calibration).
    DynamicSymmetric,
    /// int8 weights per output channel; one activation scale per tensor, fixed by
    /// calibration images.
    StaticSymmetric,
}

impl QuantForm {
    pub const ALL: [QuantForm; 2] = [QuantForm::DynamicSymmetric, QuantForm::StaticSymmetric];

    pub fn name(self) -> &'static str {
        match self {
            QuantForm::DynamicSymmetric => "dynamic-symmetric",
            QuantForm::StaticSymmetric => "static-symmetric",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether the form's activation scales come from calibration data.
    pub fn needs_calibration(self) -> bool {
        matches!(self, QuantForm::StaticSymmetric)
    }
}

/// A plain file of the bundle with its checksum.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleFile {
    pub path: String,
    pub sha256: String,
}

/// An ONNX graph of the bundle: its file, checksum and the names of its one input and output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GraphFile {
    pub path: String,
    pub sha256: String,
    pub input: String,
    pub output: String,
}

/// A loaded, validated bundle: the manifest plus resolved paths. Graphs are not parsed
/// here but by the encoders, which validate them against this manifest as they load.
#[derive(Debug, Clone)]
pub struct ModelBundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// sha256 of `model.yaml` itself: the key under which derived data (text embeddings)
    /// is cached, so any change to any file of the bundle invalidates the cache.
    pub manifest_sha256: String,
    /// The int8 image encoder's form, typed once the manifest is validated.
    int8_form: Option<QuantForm>,
    /// The family's preprocessing, tokenizer and scoring (format 1: CLIP's).
    spec: ModelSpec,
}

impl ModelBundle {
    /// Reads `DIR/model.yaml`, validates its fields and checks that every file it lists
    /// exists. The sha256 of a file is checked on the bytes read when it is loaded
    /// ([`ModelBundle::read_verified`]), not here: a node with its phrases cached loads one
    /// image graph and the tokenizer, and hashing the bundle's other graphs too (the fp32
    /// image tower and the text tower, 600 MB for ViT-B/32) took 0.7 s of its start-up.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(Error::Config {
                path: dir,
                message: "is not a model bundle folder (expected a directory with model.yaml)"
                    .into(),
            });
        }
        let manifest_path = dir.join(MANIFEST_FILE);
        let bytes =
            config::read_limited(&manifest_path, config::limits::CONFIG_BYTES, MANIFEST_FILE)
                .map_err(|e| Error::io(&manifest_path, e))?;
        let text = String::from_utf8(bytes.clone()).map_err(|_| Error::Config {
            path: manifest_path.clone(),
            message: "is not UTF-8 text".into(),
        })?;
        let manifest: Manifest = config::parse_yaml(&text, &manifest_path)?;
        let spec = ModelSpec::clip(manifest.logit_scale);
        let mut bundle = ModelBundle {
            dir,
            manifest,
            manifest_sha256: hex_sha256(&bytes),
            int8_form: None,
            spec,
        };
        bundle.validate_fields()?;
        bundle.spec = bundle.read_spec()?;
        bundle.int8_form = bundle.validate_quantization()?;
        bundle.check_files_exist()?;
        Ok(bundle)
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }

    pub fn image_encoder_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.files.image_encoder.path)
    }

    pub fn text_encoder_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.files.text_encoder.path)
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.files.tokenizer.path)
    }

    pub(crate) fn field_error(&self, field: &str, message: impl Into<String>) -> Error {
        Error::field(self.manifest_path(), field, message)
    }

    fn validate_fields(&self) -> Result<()> {
        let m = &self.manifest;
        if !(1..=FORMAT_VERSION).contains(&m.format_version) {
            return Err(self.field_error(
                "format_version",
                format!(
                    "this build reads formats 1 to {FORMAT_VERSION}, the bundle is format {}",
                    m.format_version
                ),
            ));
        }
        if m.embed_dim == 0 || m.embed_dim > 65536 {
            return Err(self.field_error(
                "embed_dim",
                format!("{} is not a sane dimension", m.embed_dim),
            ));
        }
        if !(16..=4096).contains(&m.image_size) {
            return Err(self.field_error(
                "image_size",
                format!("{} is outside 16..=4096 pixels", m.image_size),
            ));
        }
        if m.image_mean
            .iter()
            .any(|v| !v.is_finite() || !(0.0..=1.0).contains(v))
        {
            return Err(self.field_error("image_mean", "expected three values in [0, 1]"));
        }
        if m.image_std.iter().any(|v| !v.is_finite() || *v <= 0.0) {
            return Err(self.field_error("image_std", "expected three positive values"));
        }
        if !m.logit_scale.is_finite() || m.logit_scale <= 0.0 {
            return Err(self.field_error(
                "logit_scale",
                "expected a positive number (the exponentiated temperature, 100 for CLIP)",
            ));
        }
        if !(3..=4096).contains(&m.context_length) {
            return Err(self.field_error(
                "context_length",
                format!("{} is outside 3..=4096 tokens", m.context_length),
            ));
        }
        for (field, file) in self.listed_files() {
            if file.path.is_empty()
                || Path::new(&file.path).is_absolute()
                || file.path.contains("..")
            {
                return Err(self.field_error(
                    &format!("{field}.path"),
                    format!("`{}` must be a relative path inside the bundle", file.path),
                ));
            }
            let sha_ok =
                file.sha256.len() == 64 && file.sha256.chars().all(|c| c.is_ascii_hexdigit());
            if !sha_ok {
                return Err(
                    self.field_error(&format!("{field}.sha256"), "expected 64 hexadecimal digits")
                );
            }
        }
        let mut graphs = vec![
            ("files.image_encoder", &m.files.image_encoder),
            ("files.text_encoder", &m.files.text_encoder),
        ];
        if let Some(g) = &m.files.image_encoder_int8 {
            graphs.push(("files.image_encoder_int8", g));
        }
        for (field, g) in graphs {
            if g.input.is_empty() {
                return Err(self.field_error(&format!("{field}.input"), "empty input name"));
            }
            if g.output.is_empty() {
                return Err(self.field_error(&format!("{field}.output"), "empty output name"));
            }
        }
        Ok(())
    }

    /// The family's sections: CLIP's for format 1; for format 2, `family`, `preprocess`,
    /// `text` and `scoring`, each required and checked field by field.
    fn read_spec(&self) -> Result<ModelSpec> {
        let m = &self.manifest;
        if m.format_version < 2 {
            return Ok(ModelSpec::clip(m.logit_scale));
        }
        fn section<T: serde::de::DeserializeOwned>(bundle: &ModelBundle, name: &str) -> Result<T> {
            let value = bundle.manifest.extra.get(name).ok_or_else(|| {
                bundle.field_error(
                    name,
                    "missing: a format-2 manifest states the family's `family`, `preprocess`, \
                     `text` and `scoring` (docs/bundle-format.md)",
                )
            })?;
            serde_json::from_value(value.clone())
                .map_err(|e| bundle.field_error(name, e.to_string()))
        }
        // Format 1 may carry informational `preprocess` / `text` sections; only format 2's
        // are read.
        let family: Family = section(self, "family")?;
        let preprocess: PreprocessSpec = section(self, "preprocess")?;
        let text: TextSpec = section(self, "text")?;
        let scoring: ScoringSection = section(self, "scoring")?;
        if text.pooling == Pooling::Last && text.pad_to != PadTo::Context {
            return Err(self.field_error(
                "text.pad_to",
                "must be `context`: a text tower that pools the last position reads the padding",
            ));
        }
        if text.tokenizer == TokenizerKind::Clip && (text.lowercase || text.strip_punctuation) {
            return Err(self.field_error(
                "text.tokenizer",
                "`clip` does its own cleaning (lower-cased): `lowercase` and \
                 `strip_punctuation` are for `hf` tokenizers",
            ));
        }
        if preprocess.resize == Resize::Squash && preprocess.crop_offset != CropOffset::Floor {
            return Err(self.field_error(
                "preprocess.crop_offset",
                "applies to `shortest_edge_crop` only: `squash` does not crop",
            ));
        }
        let scoring = match (scoring.kind, scoring.logit_bias) {
            (ScoringKind::Softmax, None) => Scoring::softmax(m.logit_scale),
            (ScoringKind::Softmax, Some(_)) => {
                return Err(self.field_error(
                    "scoring.logit_bias",
                    "is for `sigmoid` scoring; softmax over phrases has no bias",
                ))
            }
            (ScoringKind::Sigmoid, Some(bias)) if bias.is_finite() => {
                Scoring::sigmoid(m.logit_scale, bias)
            }
            (ScoringKind::Sigmoid, _) => {
                return Err(self.field_error(
                    "scoring.logit_bias",
                    "missing or not a finite number: sigmoid scoring is \
                     sigmoid(logit_scale * cos + logit_bias)",
                ))
            }
        };
        Ok(ModelSpec {
            family,
            preprocess,
            text,
            scoring,
        })
    }

    /// The family's preprocessing, tokenizer and scoring.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The bundle's exact image preprocessing (size, geometry, filter, mean/std).
    pub fn preprocessor(&self) -> Preprocessor {
        let m = &self.manifest;
        Preprocessor::with_spec(
            self.spec.preprocess,
            m.image_size,
            m.image_mean,
            m.image_std,
        )
    }

    /// The int8 image encoder needs its `quantization.image_encoder_int8` entry with a
    /// form this engine knows (and calibration where the form needs it), and vice versa.
    fn validate_quantization(&self) -> Result<Option<QuantForm>> {
        const FIELD: &str = "quantization.image_encoder_int8";
        let m = &self.manifest;
        let entry = m
            .quantization
            .as_ref()
            .and_then(|q| q.image_encoder_int8.as_ref());
        match (&m.files.image_encoder_int8, entry) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(self.field_error(
                FIELD,
                "describes an int8 image encoder but files.image_encoder_int8 lists none",
            )),
            (Some(_), None) => Err(self.field_error(
                FIELD,
                "missing: files.image_encoder_int8 is listed, so its quantization form must be \
                 recorded (models/quantize.py writes it)",
            )),
            (Some(_), Some(q)) => {
                let known: Vec<&str> = QuantForm::ALL.iter().map(|f| f.name()).collect();
                let form = QuantForm::from_name(&q.form).ok_or_else(|| {
                    self.field_error(
                        &format!("{FIELD}.form"),
                        format!(
                            "unknown form `{}` (this engine runs: {})",
                            q.form,
                            known.join(", ")
                        ),
                    )
                })?;
                let calibrated = q
                    .calibration
                    .as_ref()
                    .is_some_and(|c| !c.is_null() && c.as_object().is_none_or(|o| !o.is_empty()));
                if form.needs_calibration() && !calibrated {
                    return Err(self.field_error(
                        &format!("{FIELD}.calibration"),
                        format!(
                            "missing: form `{}` takes its activation scales from calibration \
                             images; re-run models/quantize.py with --calibration-images",
                            q.form
                        ),
                    ));
                }
                Ok(Some(form))
            }
        }
    }

    /// The quantized form of the int8 image encoder, if the bundle has one.
    pub fn int8_form(&self) -> Option<QuantForm> {
        self.int8_form
    }

    /// The precision used when none is asked for: int8 where the bundle has it.
    pub fn default_precision(&self) -> Precision {
        if self.int8_form().is_some() {
            Precision::Int8
        } else {
            Precision::Fp32
        }
    }

    /// The image encoder graph of `precision`: its manifest entry and path.
    pub fn image_encoder_graph(&self, precision: Precision) -> Result<(&GraphFile, PathBuf)> {
        let files = &self.manifest.files;
        let g =
            match precision {
                Precision::Fp32 => &files.image_encoder,
                Precision::Int8 => files.image_encoder_int8.as_ref().ok_or_else(|| {
                    Error::PrecisionUnavailable {
                        manifest: self.manifest_path(),
                        precision,
                    }
                })?,
            };
        Ok((g, self.dir.join(&g.path)))
    }

    /// (manifest field, file) for every file the manifest lists.
    fn listed_files(&self) -> Vec<(&'static str, BundleFile)> {
        let f = &self.manifest.files;
        let graph = |g: &GraphFile| BundleFile {
            path: g.path.clone(),
            sha256: g.sha256.clone(),
        };
        let mut files = vec![
            ("files.image_encoder", graph(&f.image_encoder)),
            ("files.text_encoder", graph(&f.text_encoder)),
            ("files.tokenizer", f.tokenizer.clone()),
        ];
        if let Some(g) = &f.image_encoder_int8 {
            files.push(("files.image_encoder_int8", graph(g)));
        }
        files
    }

    /// Reads a bundle file (a path under the bundle folder, as the manifest lists it) and
    /// checks the bytes read against the sha256 the manifest records for it. Every loader
    /// parses these same bytes, so a file replaced after [`ModelBundle::open`] (a bundle
    /// updated under a running node) is refused at its next load, never half used.
    pub fn read_verified(&self, relative: &str) -> Result<Vec<u8>> {
        let (path, file) = self.listed_file(relative)?;
        let bytes = config::read_limited(&path, config::limits::BUNDLE_FILE_BYTES, "a bundle file")
            .map_err(|e| Error::io(&path, e))?;
        check_sha256(path, file, hex_sha256(&bytes))?;
        Ok(bytes)
    }

    /// Runs `decode` on a bundle file read in blocks ([`VerifyingReader`], a
    /// [`bytes::Buf`]: protobuf's decoder reads it as it would the whole file in memory),
    /// hashing every byte as it passes, and returns what `decode` returned once the whole
    /// file's sha256 matches the manifest (a `decode` that stopped early, on a corrupt file,
    /// gets the checksum error when the checksum is what is wrong). Only the decoded form
    /// is ever held: an ONNX graph's weights once, not twice, while it is decoded.
    pub fn decode_verified<R>(
        &self,
        relative: &str,
        decode: impl FnOnce(&mut VerifyingReader) -> R,
    ) -> Result<R> {
        let (path, file) = self.listed_file(relative)?;
        let mut reader = VerifyingReader::open(&path)?;
        let decoded = decode(&mut reader);
        let actual = reader.finish().map_err(|e| Error::io(&path, e))?;
        check_sha256(path, file, actual)?;
        Ok(decoded)
    }

    /// A file the manifest lists, by its path under the bundle folder.
    fn listed_file(&self, relative: &str) -> Result<(PathBuf, BundleFile)> {
        let path = self.dir.join(relative);
        match self
            .listed_files()
            .into_iter()
            .find(|(_, f)| f.path == relative)
        {
            Some((_, file)) => Ok((path, file)),
            None => Err(Error::Config {
                path,
                message: format!("is not listed in {}", self.manifest_path().display()),
            }),
        }
    }

    /// `architecture.text.vocab_size` from the manifest, where the exporter recorded it.
    pub fn text_vocab_size(&self) -> Option<usize> {
        self.manifest
            .extra
            .get("architecture")?
            .get("text")?
            .get("vocab_size")?
            .as_u64()
            .map(|v| v as usize)
    }

    /// Checks that every listed file is a readable file (its metadata), naming the first
    /// that is not.
    fn check_files_exist(&self) -> Result<()> {
        for (_field, file) in self.listed_files() {
            let path = self.dir.join(&file.path);
            match std::fs::metadata(&path) {
                Ok(md) if md.is_file() => {}
                Ok(_) => {
                    return Err(Error::Config {
                        path,
                        message: "is not a file".into(),
                    })
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Ok(())
    }

    /// Checks that every listed file exists and hashes to its recorded sha256 (`info`;
    /// loaders check the bytes they read instead).
    pub fn verify_checksums(&self) -> Result<()> {
        for (_field, file) in self.listed_files() {
            let path = self.dir.join(&file.path);
            let actual = sha256_file(&path)?;
            if !actual.eq_ignore_ascii_case(&file.sha256) {
                return Err(Error::Checksum {
                    path,
                    expected: file.sha256.to_ascii_lowercase(),
                    actual,
                });
            }
        }
        Ok(())
    }
}

/// `actual` (lower-case hex) against the sha256 the manifest records for `file`.
fn check_sha256(path: PathBuf, file: BundleFile, actual: String) -> Result<()> {
    if actual.eq_ignore_ascii_case(&file.sha256) {
        Ok(())
    } else {
        Err(Error::Checksum {
            path,
            expected: file.sha256.to_ascii_lowercase(),
            actual,
        })
    }
}

/// A bundle file as a [`bytes::Buf`]: read in blocks of [`VerifyingReader::BLOCK`] bytes,
/// each hashed as it is read ([`ModelBundle::decode_verified`]).
pub struct VerifyingReader {
    file: std::fs::File,
    block: Vec<u8>,
    /// The unread part of `block` is `pos..filled`.
    pos: usize,
    filled: usize,
    /// Bytes of the file not yet consumed (the file's length when opened, less what was).
    remaining: usize,
    hasher: Sha256,
    /// A read error, or the file ending before its length: reported by `finish`.
    error: Option<std::io::Error>,
}

impl VerifyingReader {
    const BLOCK: usize = 1 << 20;

    fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let limit = config::limits::BUNDLE_FILE_BYTES;
        if len > limit {
            return Err(Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{len} bytes is over the limit of {limit} bytes for a bundle file"),
                ),
            ));
        }
        let mut reader = VerifyingReader {
            file,
            block: vec![0; Self::BLOCK],
            pos: 0,
            filled: 0,
            remaining: len as usize,
            hasher: Sha256::new(),
            error: None,
        };
        reader.refill();
        Ok(reader)
    }

    /// Reads the next block (up to what remains), hashing it; on an error or an early end
    /// of file, records it and ends the stream.
    fn refill(&mut self) {
        use std::io::Read;
        self.pos = 0;
        self.filled = 0;
        let want = self.remaining.min(Self::BLOCK);
        while self.filled < want {
            match self.file.read(&mut self.block[self.filled..want]) {
                Ok(0) => {
                    self.error = Some(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file became shorter while it was read",
                    ));
                    break;
                }
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.error = Some(e);
                    break;
                }
            }
        }
        if self.error.is_some() {
            self.remaining = 0;
            self.filled = 0;
        }
        self.hasher.update(&self.block[..self.filled]);
    }

    /// Reads (and hashes) what the decoder left, and returns the file's sha256.
    fn finish(mut self) -> std::io::Result<String> {
        let left = self.remaining;
        bytes::Buf::advance(&mut self, left);
        match self.error {
            Some(e) => Err(e),
            None => Ok(to_hex(&self.hasher.finalize())),
        }
    }
}

impl bytes::Buf for VerifyingReader {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        &self.block[self.pos..self.filled]
    }

    /// Across blocks too (a decoder skipping a long field).
    fn advance(&mut self, mut cnt: usize) {
        assert!(
            cnt <= self.remaining,
            "advance past the end ({cnt} of {} bytes)",
            self.remaining
        );
        while cnt > 0 {
            let step = cnt.min(self.filled - self.pos);
            self.pos += step;
            self.remaining -= step;
            cnt -= step;
            if self.pos == self.filled && self.remaining > 0 {
                self.refill();
            }
            if self.remaining == 0 {
                // The end, or a read error that ended the stream (`finish` reports it).
                break;
            }
        }
    }
}

/// Lower-case hex sha256 of a byte slice.
pub fn hex_sha256(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// Lower-case hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(to_hex(&hasher.finalize()))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use bytes::Buf;

    use super::*;

    /// A file of three and a half blocks, consumed as a decoder would (chunk reads, then
    /// skips that cross blocks), yields its bytes in order and their sha256; a reader
    /// that stops early still hashes the whole file.
    #[test]
    fn the_verifying_reader_yields_and_hashes_the_whole_file_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let len = VerifyingReader::BLOCK * 7 / 2;
        let data: Vec<u8> = (0..len as u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let mut reader = VerifyingReader::open(&path).unwrap();
        let mut seen = Vec::new();
        let mut step = 1;
        while reader.remaining() > 0 {
            // Read a few bytes from the chunk, then skip ahead by a growing amount.
            let chunk = reader.chunk();
            let take = chunk.len().min(7);
            seen.extend_from_slice(&chunk[..take]);
            reader.advance(take);
            let skip = (step * 104_729).min(reader.remaining());
            let at = len - reader.remaining();
            seen.extend_from_slice(&data[at..at + skip]);
            reader.advance(skip);
            step += 1;
        }
        assert_eq!(seen, data);
        assert_eq!(reader.finish().unwrap(), hex_sha256(&data));
        let mut early = VerifyingReader::open(&path).unwrap();
        early.advance(10);
        assert_eq!(early.finish().unwrap(), hex_sha256(&data));
    }
}
