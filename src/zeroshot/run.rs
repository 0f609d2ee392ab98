//! One zero-shot benchmark run as `clip_perception eval` does it: encode a labelled set
//! (unreadable images reported and counted, or fatal with `fail_fast`), score it against
//! the class names, optionally each template alone, and summarise the result as the JSON
//! metrics and the text table the CLI prints.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::{evaluate, spread, Dataset, ZeroShot};
use crate::engine::ClipEngine;
use crate::error::{Error, Result};
use crate::text::Prompts;

/// How a benchmark runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Use only the first N images.
    pub limit: Option<usize>,
    /// Images per image-encoder pass.
    pub batch_size: usize,
    /// How many of the most confident mistakes to keep.
    pub failures: usize,
    /// Also the accuracy of each template alone.
    pub per_template: bool,
    /// Stop at the first unreadable image.
    pub fail_fast: bool,
}

impl RunOptions {
    /// How many images of `data` a run reads: the first `limit`, or all.
    pub fn images(&self, data: &Dataset) -> usize {
        self.limit.unwrap_or(usize::MAX).min(data.len())
    }
}

/// The result of one run over a data set.
#[derive(Debug)]
pub struct Benchmark {
    /// The data set's name as given (a path).
    pub data: String,
    pub classes: Vec<String>,
    pub prompts: Prompts,
    pub result: ZeroShot,
    /// The images asked for (after `limit`).
    pub requested: usize,
    /// Of them, unreadable (each was reported to `on_error`).
    pub failed: usize,
    /// (template, top-1) per template, with `per_template`.
    pub per_template: Option<Vec<(String, f64)>>,
    /// The data set index of each scored image (`result.mistakes[i].index` points here).
    pub positions: Vec<usize>,
}

/// Encodes the first `options.limit` images of `data` with `engine` and scores them
/// against its classes under `prompts`. Each unreadable image goes to `on_error` (or ends
/// the run with `fail_fast`); `progress` is told after each batch how many were read.
pub fn run(
    engine: &mut ClipEngine,
    data: &Dataset,
    data_name: &Path,
    prompts: &Prompts,
    options: &RunOptions,
    mut on_error: impl FnMut(&Error),
    mut progress: impl FnMut(usize),
) -> Result<Benchmark> {
    let labels = engine.label_matrix(&data.classes, prompts)?;
    let n = options.images(data);
    let (mut embeddings, mut truth, mut names) = (Vec::new(), Vec::new(), Vec::new());
    let mut positions = Vec::new();
    let mut failed = 0;
    let indices: Vec<usize> = (0..n).collect();
    for chunk in indices.chunks(options.batch_size.max(1)) {
        let mut images = Vec::new();
        for &i in chunk {
            let sample = data.sample(i);
            match sample.image {
                Ok(image) => {
                    images.push(image);
                    truth.push(sample.label);
                    names.push(sample.name);
                    positions.push(i);
                }
                Err(e) if options.fail_fast => return Err(e),
                Err(e) => {
                    on_error(&e);
                    failed += 1;
                }
            }
        }
        embeddings.extend(engine.embed_images(&images)?);
        progress(chunk.len());
    }
    let result = evaluate(&labels, &embeddings, &truth, &names, options.failures);
    let per_template = if options.per_template {
        let mut rows = Vec::new();
        for template in prompts.templates() {
            let alone = engine.label_matrix(&data.classes, &Prompts::single(template)?)?;
            rows.push((
                template.clone(),
                evaluate(&alone, &embeddings, &truth, &names, 0).top1,
            ));
        }
        Some(rows)
    } else {
        None
    };
    Ok(Benchmark {
        data: data_name.display().to_string(),
        classes: data.classes.clone(),
        prompts: prompts.clone(),
        result,
        requested: n,
        failed,
        per_template,
        positions,
    })
}

impl Benchmark {
    /// (min, max, mean, std) of the per-template accuracies.
    fn template_spread(rows: &[(String, f64)]) -> (f64, f64, f64, f64) {
        spread(&rows.iter().map(|r| r.1).collect::<Vec<_>>())
    }

    /// Every number, as `eval --json` prints it and the report's `metrics.json` holds it.
    pub fn metrics(&self) -> serde_json::Value {
        let result = &self.result;
        let per_template = self.per_template.as_ref().map(|rows| {
            let (min, max, mean, std) = Self::template_spread(rows);
            json!({
                "templates": rows.iter().map(|(t, a)| json!({"template": t, "top1": a})).collect::<Vec<_>>(),
                "prompts_top1": result.top1, "min": min, "max": max, "mean": mean, "std": std,
            })
        });
        json!({
            "data": self.data, "classes": self.classes,
            "prompts": self.prompts.name(), "templates": self.prompts.templates().len(),
            "images": result.images, "failed": self.failed, "top1": result.top1,
            "top5": result.top5, "mean_per_class_recall": result.mean_per_class_recall,
            "per_class": result.per_class, "confusion": result.confusion,
            "mistakes": result.mistakes, "per_template": per_template,
        })
    }

    /// The text summary `eval` prints: totals, per-class recall, prompt sensitivity and
    /// the most confident mistakes.
    pub fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let result = &self.result;
        let prompts = &self.prompts;
        writeln!(
            out,
            "{}: {} images, {} classes, prompts {} ({} templates)",
            self.data,
            result.images,
            self.classes.len(),
            prompts.name(),
            prompts.templates().len()
        )?;
        writeln!(
            out,
            "top-1 {:.4}   top-5 {:.4}   mean per-class recall {:.4}\n",
            result.top1, result.top5, result.mean_per_class_recall
        )?;
        let width = self
            .classes
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(out, "{:<width$}  images  correct  recall", "class")?;
        for c in &result.per_class {
            writeln!(
                out,
                "{:<width$}  {:>6}  {:>7}  {:.4}",
                c.class, c.count, c.correct, c.recall
            )?;
        }
        if let Some(rows) = &self.per_template {
            let (min, max, mean, std) = Self::template_spread(rows);
            writeln!(out, "\ntop-1 per template (prompt sensitivity):")?;
            for (template, top1) in rows {
                writeln!(out, "  {top1:.4}  {template}")?;
            }
            writeln!(
                out,
                "  min {min:.4}  max {max:.4}  mean {mean:.4}  std {std:.4}; all together ({}): {:.4}",
                prompts.name(),
                result.top1
            )?;
        }
        if !result.mistakes.is_empty() {
            writeln!(
                out,
                "\nmost confident mistakes (truth -> predicted, cosine, margin):"
            )?;
            for m in &result.mistakes {
                writeln!(
                    out,
                    "  {}  {} -> {}  {:.4}  {:.4}",
                    m.image, m.truth, m.predicted, m.cosine, m.margin
                )?;
            }
        }
        Ok(())
    }
}
