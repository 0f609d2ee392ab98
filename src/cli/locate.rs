//! `locate`: where each phrase is in image files (`clip_perception::locate`), as a table or
//! one JSON object per image, with `--out-dir` an overlay PNG per image.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use super::{inputs_done, Batch, BatchArgs, ModelArgs, PhraseArgs};
use clip_perception::eval::overlay::write_overlay;
use clip_perception::locate::segment::ProposalSettings;
use clip_perception::locate::{CropScale, LocateSettings, Location, Method};
use clip_perception::{ClipEngine, EngineOptions};

#[derive(Args)]
pub struct LocateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Image files.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[command(flatten)]
    phrases: PhraseArgs,
    /// One JSON object per image on stdout: {"image", "locations": [{"label", "score",
    /// "point": [x, y], "box": [x0, y0, x1, y1]}, ...]}, pixels of the input image, best
    /// first.
    #[arg(long)]
    json: bool,
    /// Write an overlay PNG per image here (relevance map of the best phrase, every box).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// `proposals`: object boxes from the image's own segmentation, named by the encoder
    /// (boxes fit objects); `grid`: overlapping crops combined into a relevance map (coarse
    /// boxes, no object edges needed).
    #[arg(long, default_value = "proposals")]
    method: Method,
    /// proposals: candidate boxes encoded per image.
    #[arg(long, default_value_t = 8)]
    proposals: usize,
    /// grid: crop scales, `FRACTION:ACROSS` separated by commas: square crops of FRACTION
    /// of the short side, ACROSS of them along it (cost: one encoder pass per crop).
    #[arg(long, default_value = "0.5:3")]
    crops: String,
    /// grid: the relevant region: map cells at or above this fraction of the way from the map's
    /// lowest to its highest value (point and box).
    #[arg(long, default_value_t = 0.7)]
    region: f32,
    #[command(flatten)]
    batch: BatchArgs,
    /// Stop at the first image that cannot be read (default: report it and go on).
    #[arg(long)]
    fail_fast: bool,
}

/// `--crops` as crop scales.
fn parse_crops(spec: &str) -> Result<Vec<CropScale>> {
    let mut scales = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parsed = part.split_once(':').and_then(|(f, n)| {
            Some(CropScale {
                fraction: f.trim().parse().ok()?,
                across: n.trim().parse().ok()?,
            })
        });
        match parsed {
            Some(s) if s.fraction > 0.0 && s.fraction <= 1.0 && s.across >= 1 => scales.push(s),
            _ => bail!(
                "--crops: `{part}` is not FRACTION:ACROSS with 0 < FRACTION <= 1 and ACROSS >= 1"
            ),
        }
    }
    if scales.is_empty() {
        bail!("--crops: no crop scale given");
    }
    Ok(scales)
}

pub fn locate(args: LocateArgs, out: &mut impl Write) -> Result<()> {
    let (phrases, prompts) = args.phrases.phrases()?;
    if !(0.0..=1.0).contains(&args.region) {
        bail!("--region: {} is not within 0..=1", args.region);
    }
    if args.proposals == 0 {
        bail!("--proposals: at least 1");
    }
    let settings = LocateSettings {
        method: args.method,
        proposals: ProposalSettings {
            count: args.proposals,
            ..ProposalSettings::default()
        },
        scales: parse_crops(&args.crops)?,
        threshold: args.region,
        ..LocateSettings::default()
    };
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let options = EngineOptions {
        cache_dir: args.phrases.cache(),
        ..args.model.engine_options(args.batch.get())
    };
    let mut engine = ClipEngine::load(options)?;
    let labels = engine.label_matrix(&phrases, &prompts)?;
    let mut names = HashSet::new();
    let mut failed = 0;
    for paths in args.images.chunks(args.batch.get()) {
        let batch = Batch::load(paths, args.fail_fast, &mut failed)?;
        let mut found = Vec::with_capacity(batch.images.len());
        for image in &batch.images {
            found.push(engine.locate(image, &labels, &settings)?);
        }
        if let Some(dir) = &args.out_dir {
            for (path, i) in batch.loaded() {
                let file = dir.join(overlay_name(path, &mut names));
                write_overlay(&file, &batch.images[i], &found[i], &labels.labels)?;
            }
        }
        batch.write(args.json, out, |path, i, out| {
            print_locations(path, &found[i], &labels.labels, args.json, out)
        })?;
        out.flush().context("writing to stdout")?;
    }
    inputs_done(failed, args.images.len())
}

/// `<file stem>.png`, or `<file stem>-2.png`, ... when an earlier input had the stem.
fn overlay_name(path: &Path, used: &mut HashSet<String>) -> String {
    let stem = path
        .file_stem()
        .map_or_else(|| "image".to_string(), |s| s.to_string_lossy().into_owned());
    let mut name = format!("{stem}.png");
    let mut n = 1;
    while !used.insert(name.clone()) {
        n += 1;
        name = format!("{stem}-{n}.png");
    }
    name
}

fn print_locations(
    path: &Path,
    found: &[Location],
    labels: &[String],
    json_out: bool,
    out: &mut dyn Write,
) -> Result<()> {
    if json_out {
        let locations: Vec<_> = found.iter().map(|l| l.named(labels)).collect();
        writeln!(
            out,
            "{}",
            json!({"image": path.display().to_string(), "locations": locations})
        )?;
    } else {
        writeln!(out, "{}", path.display())?;
        let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        for (rank, l) in found.iter().enumerate() {
            let b = l.bbox;
            writeln!(
                out,
                "  {:>2}. {:<width$}  score={:.4}  point=({:.1}, {:.1})  box=[{}, {}, {}, {}]",
                rank + 1,
                labels[l.index],
                l.score,
                l.point[0],
                l.point[1],
                b.x0,
                b.y0,
                b.x1,
                b.y1
            )?;
        }
    }
    Ok(())
}
