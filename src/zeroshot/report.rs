//! `eval --report DIR`: `metrics.json` (what `--json` prints), `confusion.png`,
//! `per_template.png` (with `--per-template`), `mistakes.png` (a contact sheet of the most
//! confident mistakes with their captions) and an `index.html` showing them with the tables.
//! Drawn like replay's report: plotters into a pixel buffer, the bundled font, PNG by `image`.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{Mistake, ZeroShot};
use crate::eval::report::{
    confusion_matrix, confusion_matrix_size, draw_png, error, escape, register_font, short, text,
    Area, DrawResult, ReportError, FONT,
};
use crate::image::RgbImage;

const THUMB: u32 = 160;
const COLUMNS: u32 = 4;

/// What the report shows.
pub struct ReportInput<'a> {
    pub title: &'a str,
    pub classes: &'a [String],
    pub prompts: &'a str,
    pub result: &'a ZeroShot,
    /// (template, top-1) per template, with `--per-template`.
    pub per_template: Option<&'a [(String, f64)]>,
    /// The mistakes' pixels, in the order of `result.mistakes` (`None`: unreadable now).
    pub mistake_images: Vec<Option<RgbImage<'static>>>,
    /// Everything, as `--json` prints it.
    pub metrics: &'a serde_json::Value,
}

/// Writes the report into `dir` (created if missing); returns the files written.
pub fn write_report(dir: &Path, input: &ReportInput) -> Result<Vec<PathBuf>, ReportError> {
    register_font();
    std::fs::create_dir_all(dir).map_err(|e| error(dir)(e.to_string()))?;
    let mut written = Vec::new();
    let mut put = |name: &str, bytes: String| -> Result<(), ReportError> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| error(&path)(e.to_string()))?;
        written.push(path);
        Ok(())
    };
    put(
        "metrics.json",
        serde_json::to_string_pretty(input.metrics).expect("metrics serialize") + "\n",
    )?;
    let confusion = dir.join("confusion.png");
    draw_png(
        &confusion,
        confusion_matrix_size(input.classes.len()),
        |root| {
            confusion_matrix(
                root,
                "Confusion: rows truth, columns predicted class",
                input.classes,
                &input.result.confusion,
            )
        },
    )?;
    let mut pictures = vec![("confusion.png", "Confusion matrix")];
    if let Some(rows) = input.per_template {
        let path = dir.join("per_template.png");
        let h = 110 + 26 * rows.len() as u32;
        draw_png(&path, (1000, h), |root| {
            per_template(root, rows, input.result.top1, input.prompts)
        })?;
        pictures.push(("per_template.png", "Top-1 per template"));
    }
    if !input.result.mistakes.is_empty() {
        let path = dir.join("mistakes.png");
        contact_sheet(&path, &input.result.mistakes, &input.mistake_images)?;
        pictures.push(("mistakes.png", "Most confident mistakes"));
    }
    put("index.html", html(input, &pictures))?;
    let mut files: Vec<PathBuf> = pictures.iter().map(|(f, _)| dir.join(f)).collect();
    files.extend(written);
    Ok(files)
}

fn per_template(root: &Area, rows: &[(String, f64)], all: f64, prompts: &str) -> DrawResult {
    let n = rows.len();
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("Top-1 of each template alone (dashed: all {n} together, {prompts})"),
            (FONT, 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(330)
        .build_cartesian_2d(0f64..1f64, (0..n - 1).into_segmented())
        .map_err(text)?;
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if *i < n => short(&rows[n - 1 - *i].0, 48),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .y_labels(n)
        .y_label_formatter(&label)
        .x_desc("top-1 accuracy")
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 14))
        .draw()
        .map_err(text)?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, (_, acc))| {
            let y = n - 1 - i;
            Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(y)),
                    (*acc, SegmentValue::Exact(y + 1)),
                ],
                RGBColor(70, 120, 190).filled(),
            )
        }))
        .map_err(text)?;
    chart
        .draw_series(DashedLineSeries::new(
            [(all, SegmentValue::Exact(0)), (all, SegmentValue::Exact(n))],
            6,
            4,
            RED.stroke_width(2),
        ))
        .map_err(text)?;
    Ok(())
}

/// Thumbnails of the mistakes in a grid, each with its image name, truth, prediction and
/// margin below it.
fn contact_sheet(
    path: &Path,
    mistakes: &[Mistake],
    images: &[Option<RgbImage<'static>>],
) -> Result<(), ReportError> {
    let columns = (mistakes.len() as u32).clamp(1, COLUMNS);
    let rows = (mistakes.len() as u32).div_ceil(columns);
    let (cw, ch) = (THUMB + 90, THUMB + 70);
    let (w, h) = (columns * cw, rows * ch + 10);
    let mut sheet = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    for (k, img) in images.iter().enumerate() {
        let Some(img) = img else { continue };
        let packed: Vec<u8> = (0..img.height as usize)
            .flat_map(|y| img.row(y).to_vec())
            .collect();
        let Some(rgb) = image::RgbImage::from_raw(img.width, img.height, packed) else {
            continue;
        };
        let scale = THUMB as f64 / img.width.max(img.height) as f64;
        let (tw, th) = (
            ((img.width as f64 * scale).round() as u32).max(1),
            ((img.height as f64 * scale).round() as u32).max(1),
        );
        let thumb = image::imageops::resize(&rgb, tw, th, image::imageops::FilterType::Triangle);
        let (x, y) = ((k as u32 % columns) * cw, (k as u32 / columns) * ch);
        image::imageops::overlay(
            &mut sheet,
            &thumb,
            (x + (cw - tw) / 2) as i64,
            (y + 6 + (THUMB - th)) as i64,
        );
    }
    let mut raw = sheet.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut raw, (w, h)).into_drawing_area();
        for (k, m) in mistakes.iter().enumerate() {
            let (x, y) = (
                ((k as u32 % columns) * cw + cw / 2) as i32,
                ((k as u32 / columns) * ch + THUMB + 10) as i32,
            );
            let name = Path::new(&m.image)
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| m.image.clone());
            let lines = [
                short(&name, 34),
                format!("{} -> {}", short(&m.truth, 16), short(&m.predicted, 16)),
                format!("cos {:.3}, margin {:.3}", m.cosine, m.margin),
            ];
            for (l, line) in lines.iter().enumerate() {
                root.draw(&Text::new(
                    line.clone(),
                    (x, y + 17 * l as i32),
                    (FONT, 13)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Top)),
                ))
                .map_err(|e| error(path)(e.to_string()))?;
            }
        }
        root.present().map_err(|e| error(path)(e.to_string()))?;
    }
    image::RgbImage::from_raw(w, h, raw)
        .expect("buffer of w * h * 3 bytes")
        .save(path)
        .map_err(|e| error(path)(e.to_string()))
}

fn html(input: &ReportInput, pictures: &[(&str, &str)]) -> String {
    let r = input.result;
    let mut classes = String::new();
    for c in &r.per_class {
        classes += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td></tr>\n",
            escape(&c.class),
            c.count,
            c.correct,
            c.recall
        );
    }
    let mut templates = String::new();
    if let Some(rows) = input.per_template {
        let (min, max, mean, std) = super::spread(&rows.iter().map(|r| r.1).collect::<Vec<_>>());
        templates = format!(
            "<h2>Prompt sensitivity</h2><p>Each template alone: min {min:.4}, max {max:.4}, \
             mean {mean:.4}, std {std:.4}; all together ({}): {:.4}</p><table>\
             <tr><th>template</th><th>top-1</th></tr>",
            escape(input.prompts),
            r.top1
        );
        for (t, a) in rows {
            templates += &format!("<tr><td>{}</td><td>{a:.4}</td></tr>", escape(t));
        }
        templates += "</table>";
    }
    let mut mistakes = String::new();
    for m in &r.mistakes {
        mistakes += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td></tr>",
            escape(&m.image),
            escape(&m.truth),
            escape(&m.predicted),
            m.cosine,
            m.margin
        );
    }
    let figures: String = pictures
        .iter()
        .map(|(file, caption)| {
            format!("<figure><img src=\"{file}\" alt=\"{caption}\"><figcaption>{caption}</figcaption></figure>")
        })
        .collect();
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Zero-shot: {title}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;\
         padding:3px 8px;text-align:left}}img{{max-width:100%}}</style></head><body>\
         <h1>Zero-shot benchmark: {title}</h1>\
         <table><tr><th>images</th><td>{}</td></tr><tr><th>classes</th><td>{}</td></tr>\
         <tr><th>prompts</th><td>{}</td></tr><tr><th>top-1</th><td>{:.4}</td></tr>\
         <tr><th>top-5</th><td>{:.4}</td></tr><tr><th>mean per-class recall</th><td>{:.4}</td></tr>\
         </table>{figures}<h2>Per class</h2><table><tr><th>class</th><th>images</th>\
         <th>correct</th><th>recall</th></tr>{classes}</table>{templates}\
         <h2>Most confident mistakes</h2><table><tr><th>image</th><th>truth</th>\
         <th>predicted</th><th>cosine</th><th>margin</th></tr>{mistakes}</table></body></html>\n",
        r.images,
        input.classes.len(),
        escape(input.prompts),
        r.top1,
        r.top5,
        r.mean_per_class_recall,
        title = escape(input.title),
    )
}
