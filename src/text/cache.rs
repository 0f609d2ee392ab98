//! The on-disk text embedding cache: one small file per (template, phrase), under a folder
//! named by the bundle's manifest sha256, so a restart or a repeated query costs no
//! text-encoder call. Where it lives is decided by [`cache_root`].

use std::path::{Path, PathBuf};

use crate::model::bundle::{hex_sha256, ModelBundle};

/// The default root of the text embedding cache: `$XDG_CACHE_HOME/clip_perception`, else
/// `~/.cache/clip_perception` (`None` if neither variable is set).
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("clip_perception"))
}

/// The cache root every entry point uses: none when the cache is off, the folder asked
/// for, else [`default_cache_dir`].
pub fn cache_root(enabled: bool, dir: Option<&Path>) -> Option<PathBuf> {
    match (enabled, dir) {
        (false, _) => None,
        (true, Some(dir)) => Some(dir.to_path_buf()),
        (true, None) => default_cache_dir(),
    }
}

/// Text embeddings on disk, keyed by bundle, template and phrase.
#[derive(Debug, Clone)]
pub struct EmbeddingCache {
    dir: PathBuf,
    dim: usize,
}

const CACHE_MAGIC: &[u8; 4] = b"CLPE";

impl EmbeddingCache {
    pub fn new(root: &Path, bundle: &ModelBundle) -> Self {
        EmbeddingCache {
            dir: root.join(&bundle.manifest_sha256),
            dim: bundle.manifest.embed_dim,
        }
    }

    fn entry(&self, template: &str, phrase: &str) -> PathBuf {
        let key = hex_sha256(format!("{template}\0{phrase}").as_bytes());
        self.dir.join(format!("{key}.emb"))
    }

    /// The cached raw embedding, or `None` (missing or unreadable entries are misses).
    pub fn get(&self, template: &str, phrase: &str) -> Option<Vec<f32>> {
        let bytes = std::fs::read(self.entry(template, phrase)).ok()?;
        let body = bytes.strip_prefix(CACHE_MAGIC.as_slice())?;
        if body.len() != 4 + self.dim * 4
            || u32::from_le_bytes(body[..4].try_into().ok()?) as usize != self.dim
        {
            log::warn!("embedding cache: ignoring a corrupt entry for {phrase:?}");
            return None;
        }
        Some(
            body[4..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }

    /// Stores a raw embedding (write to a temporary file, then rename: readers never see
    /// half an entry). Failures are logged, not fatal: the cache is an optimisation.
    pub fn put(&self, template: &str, phrase: &str, embedding: &[f32]) {
        let path = self.entry(template, phrase);
        let result = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let mut bytes = Vec::with_capacity(8 + embedding.len() * 4);
            bytes.extend_from_slice(CACHE_MAGIC);
            bytes.extend_from_slice(&(embedding.len() as u32).to_le_bytes());
            embedding
                .iter()
                .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            log::warn!("embedding cache: cannot write {}: {e}", path.display());
        }
    }
}
