//! An embedding index over an image folder, and text-to-image / image-to-image search.
//!
//! On disk an index is a folder other tools read directly:
//! ```text
//! INDEX/manifest.json        {"format": "clip_perception-index", "version": 1,
//!                             "model": {"name", "manifest_sha256", "embed_dim"},
//!                             "precision", "root", "count", "embeddings", "items",
//!                             "skipped": [{"path", "error"}]}
//! INDEX/embeddings-<G>.npy   f32 [count, embed_dim], one unit-length image embedding per row
//! INDEX/items-<G>.jsonl      one line per row, same order: {"path", "size", "mtime_ns"}
//!                            (`path` relative to `root`, `/`-separated)
//! ```
//! `<G>` is a generation number. An update writes the new generation's files first and then
//! replaces `manifest.json` by an atomic rename, so a crash at any point leaves the previous
//! manifest naming the previous, complete files; older generations are removed afterwards.
//!
//! An update re-encodes only files that are new or whose size or modification time changed,
//! drops rows of removed files, and keeps rows sorted by path, so it yields the index a fresh
//! run would (embeddings equal up to the encoder's batch-to-batch rounding, < 1e-5).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::ClipEngine;
use crate::error::{Error, Result};
use crate::image::load_image_file;
use crate::model::ModelBundle;

/// `manifest.json`'s `format`.
pub const FORMAT: &str = "clip_perception-index";
/// `manifest.json`'s `version`.
pub const VERSION: u32 = 1;
/// Image files the index takes (by extension, case-insensitive); a GIF gives its first frame.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "webp", "gif"];

/// The model an index was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexModel {
    pub name: String,
    /// sha256 of the bundle's `model.yaml` (which holds the sha256 of every model file).
    pub manifest_sha256: String,
    pub embed_dim: usize,
}

impl IndexModel {
    /// The model of `bundle`, as an index records it.
    pub fn of(bundle: &ModelBundle) -> IndexModel {
        IndexModel {
            name: bundle.manifest.name.clone(),
            manifest_sha256: bundle.manifest_sha256.clone(),
            embed_dim: bundle.manifest.embed_dim,
        }
    }
}

/// A file that could not be indexed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: String,
    pub error: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub model: IndexModel,
    /// The image encoder graph (`int8` or `fp32`).
    pub precision: String,
    /// The indexed folder (absolute).
    pub root: PathBuf,
    pub count: usize,
    /// File names, in the index folder, of the embeddings and the items.
    pub embeddings: String,
    pub items: String,
    pub skipped: Vec<Skipped>,
}

/// One indexed file: where it is and what it was when encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub path: String,
    pub size: u64,
    pub mtime_ns: i128,
}

/// A loaded index.
#[derive(Debug, Clone)]
pub struct Index {
    pub manifest: Manifest,
    pub items: Vec<Item>,
    /// `count x embed_dim`, row-major, unit rows.
    pub embeddings: Vec<f32>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub path: String,
    pub score: f32,
    pub rank: usize,
}

/// What an update did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateStats {
    pub encoded: usize,
    pub reused: usize,
    pub removed: usize,
    /// Files that could not be read or decoded (left out of the index).
    pub skipped: Vec<Skipped>,
}

fn corrupt(path: &Path, message: impl Into<String>) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        message: format!("not a usable index: {}", message.into()),
    }
}

/// Unit-length copy of `v` (a zero vector stays zero).
pub fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

impl Index {
    /// Refuses `model` unless this index (in `dir`) was made with it, naming both models
    /// and ending with `remedy` (what the caller should do instead).
    pub fn check_model(&self, dir: &Path, model: &IndexModel, remedy: &str) -> Result<()> {
        let made = &self.manifest.model;
        if made == model {
            return Ok(());
        }
        Err(Error::InvalidInput(format!(
            "{}: the index was made with model {:?} (manifest sha256 {}), not with {:?} \
             (manifest sha256 {}); {remedy}",
            dir.display(),
            made.name,
            made.manifest_sha256,
            model.name,
            model.manifest_sha256
        )))
    }

    /// Reads an index folder, checking that its files agree with its manifest.
    pub fn open(dir: &Path) -> Result<Index> {
        let manifest_path = dir.join("manifest.json");
        let text = crate::config::read_text_limited(
            &manifest_path,
            crate::config::limits::TABLE_BYTES,
            "an index manifest",
        )
        .map_err(|e| Error::io(&manifest_path, e))?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| corrupt(&manifest_path, e.to_string()))?;
        if manifest.format != FORMAT || manifest.version != VERSION {
            return Err(corrupt(
                &manifest_path,
                format!(
                    "format {:?} version {} (expected {FORMAT:?} version {VERSION})",
                    manifest.format, manifest.version
                ),
            ));
        }
        let npy_path = dir.join(&manifest.embeddings);
        let (shape, embeddings) = crate::npy::read_f32(&npy_path)?;
        let want = [manifest.count, manifest.model.embed_dim];
        if shape != want {
            return Err(corrupt(
                &npy_path,
                format!("shape {shape:?}, the manifest says {want:?}"),
            ));
        }
        let items_path = dir.join(&manifest.items);
        let items_text = crate::config::read_text_limited(
            &items_path,
            crate::config::limits::DATA_FILE_BYTES,
            "an index item list",
        )
        .map_err(|e| Error::io(&items_path, e))?;
        let items = items_text
            .lines()
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str::<Item>(line)
                    .map_err(|e| corrupt(&items_path, format!("line {}: {e}", i + 1)))
            })
            .collect::<Result<Vec<Item>>>()?;
        if items.len() != manifest.count {
            return Err(corrupt(
                &items_path,
                format!(
                    "{} items, the manifest says {}",
                    items.len(),
                    manifest.count
                ),
            ));
        }
        Ok(Index {
            manifest,
            items,
            embeddings,
        })
    }

    /// The row of item `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        let d = self.manifest.model.embed_dim;
        &self.embeddings[i * d..(i + 1) * d]
    }

    /// The `k` rows most similar to `query` (any length-`embed_dim` vector; it is
    /// normalised here), best first: score = cosine.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        let d = self.manifest.model.embed_dim;
        if query.len() != d {
            return Err(Error::InvalidInput(format!(
                "query has {} dimensions, the index {d}",
                query.len()
            )));
        }
        Ok(nearest(&self.embeddings, d, query, k)
            .into_iter()
            .enumerate()
            .map(|(rank, (i, score))| Hit {
                path: self.items[i].path.clone(),
                score,
                rank: rank + 1,
            })
            .collect())
    }
}

/// The `k` rows of `rows` (`d` wide, unit length) nearest to `query` by cosine: (row,
/// cosine), best first.
pub fn nearest(rows: &[f32], d: usize, query: &[f32], k: usize) -> Vec<(usize, f32)> {
    let q = normalized(query);
    let scores = scores(rows, d, &q);
    top_k(&scores, k)
        .into_iter()
        .map(|i| (i, scores[i]))
        .collect()
}

/// The dot product of every `d`-wide row of `rows` with `q`, rows split across the rayon
/// pool, each dot product in 8 independent lanes (vectorised by the compiler).
pub fn scores(rows: &[f32], d: usize, q: &[f32]) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out = vec![0f32; rows.len() / d.max(1)];
    out.par_chunks_mut(4096)
        .zip(rows.par_chunks(4096 * d))
        .for_each(|(out, rows)| {
            for (o, row) in out.iter_mut().zip(rows.chunks_exact(d)) {
                *o = dot(row, q);
            }
        });
    out
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// Indices of the `k` largest scores, largest first (ties: lower index first).
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let k = k.min(scores.len());
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    let by_score = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b));
    if k < idx.len() && k > 0 {
        idx.select_nth_unstable_by(k - 1, by_score);
        idx.truncate(k);
    }
    idx.truncate(k);
    idx.sort_by(by_score);
    idx
}

/// Every image file under `dir` (recursive, symlinks followed), by relative `/` path, sorted.
pub fn image_files(dir: &Path) -> Result<Vec<(String, PathBuf, std::fs::Metadata)>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(true) {
        let entry = entry.map_err(|e| Error::InvalidInput(format!("{}: {e}", dir.display())))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let is_image = entry
            .path()
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if !is_image {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(dir)
            .unwrap_or(entry.path())
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let meta = entry
            .metadata()
            .map_err(|e| Error::InvalidInput(format!("{}: {e}", entry.path().display())))?;
        files.push((rel, entry.into_path(), meta));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Builds or updates the index of `root` in `out` with `engine`: files unchanged since the
/// existing index (same path, size and mtime) keep their rows, the others are encoded in
/// batches of `batch_size` (`progress` is told after each file), removed files are
/// dropped. An existing index made with another model is refused, naming both.
pub fn update(
    engine: &mut ClipEngine,
    root: &Path,
    out: &Path,
    batch_size: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<UpdateStats> {
    let root = std::fs::canonicalize(root).map_err(|e| Error::io(root, e))?;
    let model = IndexModel::of(&engine.bundle);
    let previous = if out.join("manifest.json").exists() {
        let old = Index::open(out)?;
        old.check_model(out, &model, "use another --out or delete the index")?;
        Some(old)
    } else {
        None
    };
    let files = image_files(&root)?;
    let known: HashMap<(&str, u64, i128), usize> = previous
        .iter()
        .flat_map(|p| {
            p.items
                .iter()
                .enumerate()
                .map(|(i, it)| ((it.path.as_str(), it.size, it.mtime_ns), i))
        })
        .collect();
    let d = model.embed_dim;
    let mut stats = UpdateStats::default();
    let mut items = Vec::with_capacity(files.len());
    let mut rows: Vec<Option<Vec<f32>>> = Vec::with_capacity(files.len());
    let mut todo = Vec::new();
    for (rel, path, meta) in &files {
        let item = Item {
            path: rel.clone(),
            size: meta.len(),
            mtime_ns: mtime_ns(meta),
        };
        let reuse = known
            .get(&(item.path.as_str(), item.size, item.mtime_ns))
            .and_then(|&i| previous.as_ref().map(|p| p.row(i).to_vec()));
        if reuse.is_some() {
            stats.reused += 1;
        } else {
            todo.push((items.len(), path.clone()));
        }
        rows.push(reuse);
        items.push(item);
    }
    let present: std::collections::HashSet<&str> = items.iter().map(|i| i.path.as_str()).collect();
    stats.removed = previous.as_ref().map_or(0, |p| {
        p.items
            .iter()
            .filter(|i| !present.contains(i.path.as_str()))
            .count()
    });
    let mut skipped = Vec::new();
    let mut done = 0;
    for chunk in todo.chunks(batch_size.max(1)) {
        let mut images = Vec::new();
        let mut slots = Vec::new();
        for (slot, path) in chunk {
            match load_image_file(path) {
                Ok(image) => {
                    images.push(image);
                    slots.push(*slot);
                }
                Err(e) => {
                    skipped.push(Skipped {
                        path: items[*slot].path.clone(),
                        error: e.to_string(),
                    });
                }
            }
        }
        for (slot, e) in slots.iter().zip(engine.embed_images(&images)?) {
            rows[*slot] = Some(normalized(&e));
            stats.encoded += 1;
        }
        done += chunk.len();
        progress(done, todo.len());
    }
    stats.skipped = skipped.clone();
    let (items, rows): (Vec<Item>, Vec<Vec<f32>>) = items
        .into_iter()
        .zip(rows)
        .filter_map(|(item, row)| row.map(|r| (item, r)))
        .unzip();
    let embeddings: Vec<f32> = rows.concat();
    debug_assert_eq!(embeddings.len(), items.len() * d);
    write(
        out,
        previous.as_ref().map(|p| &p.manifest),
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            model,
            precision: engine.image.precision().name().into(),
            root,
            count: items.len(),
            embeddings: String::new(),
            items: String::new(),
            skipped,
        },
        &items,
        &embeddings,
    )?;
    Ok(stats)
}

/// Writes a new generation of the index files, then the manifest (atomic rename), then
/// removes the previous generation's files.
fn write(
    out: &Path,
    previous: Option<&Manifest>,
    mut manifest: Manifest,
    items: &[Item],
    embeddings: &[f32],
) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|cause| Error::Write {
        path: out.to_path_buf(),
        cause,
    })?;
    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    manifest.embeddings = format!("embeddings-{generation}.npy");
    manifest.items = format!("items-{generation}.jsonl");
    let synced = |path: &Path, bytes: &[u8]| -> Result<()> {
        let werr = |cause| Error::Write {
            path: path.to_path_buf(),
            cause,
        };
        let mut f = std::fs::File::create(path).map_err(werr)?;
        f.write_all(bytes).map_err(werr)?;
        f.sync_all().map_err(werr)
    };
    synced(
        &out.join(&manifest.embeddings),
        &crate::npy::encode_f32(&[manifest.count, manifest.model.embed_dim], embeddings),
    )?;
    let mut lines = String::new();
    for item in items {
        lines.push_str(&serde_json::to_string(item).expect("items serialize"));
        lines.push('\n');
    }
    synced(&out.join(&manifest.items), lines.as_bytes())?;
    let tmp = out.join("manifest.json.tmp");
    synced(
        &tmp,
        serde_json::to_string_pretty(&manifest)
            .expect("the manifest serializes")
            .as_bytes(),
    )?;
    let target = out.join("manifest.json");
    std::fs::rename(&tmp, &target).map_err(|cause| Error::Write {
        path: target.clone(),
        cause,
    })?;
    if let Some(old) = previous {
        for name in [&old.embeddings, &old.items] {
            if *name != manifest.embeddings && *name != manifest.items {
                let _ = std::fs::remove_file(out.join(name));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_and_top_k_equal_a_plain_loop() {
        let d = 19;
        let rows: Vec<f32> = (0..d * 1000)
            .map(|i| ((i * 37 % 101) as f32) - 50.0)
            .collect();
        let q: Vec<f32> = (0..d).map(|i| (i as f32 * 0.7).sin()).collect();
        let fast = scores(&rows, d, &q);
        for (i, row) in rows.chunks(d).enumerate() {
            let plain: f32 = row.iter().zip(&q).map(|(a, b)| a * b).sum();
            assert!(
                (fast[i] - plain).abs() <= 1e-3 * plain.abs().max(1.0),
                "{i}"
            );
        }
        let top = top_k(&fast, 5);
        let mut all: Vec<usize> = (0..fast.len()).collect();
        all.sort_by(|a, b| fast[*b].total_cmp(&fast[*a]).then(a.cmp(b)));
        assert_eq!(top, all[..5]);
        assert_eq!(top_k(&fast, 5000).len(), 1000);
        assert!(top_k(&fast, 0).is_empty());
    }
}
