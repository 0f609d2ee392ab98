//! `replay --report DIR`: `metrics.json`, `confusion.png`, `timeline.png`, `pr.png` and an
//! `index.html` showing them with the summary table (and, for several topics, the per-topic
//! tables; the timeline then has a line per topic, the other plots pool the topics). Plots
//! are drawn by `plotters` into a pixel buffer and encoded by `image`; text uses the bundled
//! DejaVu Sans (no system fonts needed).

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::metrics::Evaluation;

/// The bundled font's family name (see [`register_font`]).
pub(crate) const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// A report that could not be written: the file and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot write the report: {cause}")]
pub struct ReportError {
    pub path: String,
    pub cause: String,
}

/// A report error for `path` with the cause given later.
pub(crate) fn error(path: &Path) -> impl Fn(String) -> ReportError + '_ {
    move |cause| ReportError {
        path: path.display().to_string(),
        cause,
    }
}

/// The files of a report, in the order they are written.
pub const FILES: [&str; 5] = [
    "metrics.json",
    "confusion.png",
    "timeline.png",
    "pr.png",
    "index.html",
];

/// Writes the report into `dir` (created if missing). `title` names the recording.
pub fn write_report(
    dir: &Path,
    eval: &Evaluation,
    title: &str,
) -> Result<Vec<PathBuf>, ReportError> {
    register_font();
    std::fs::create_dir_all(dir).map_err(|e| error(dir)(e.to_string()))?;
    let path = |name: &str| dir.join(name);
    let json = serde_json::to_string_pretty(eval).expect("metrics serialize");
    std::fs::write(path("metrics.json"), json + "\n")
        .map_err(|e| error(&path("metrics.json"))(e.to_string()))?;
    draw_png(&path("confusion.png"), confusion_size(eval), |root| {
        confusion(root, eval)
    })?;
    draw_png(&path("timeline.png"), timeline_size(eval), |root| {
        timeline(root, eval)
    })?;
    draw_png(&path("pr.png"), (900, 640), |root| pr_curves(root, eval))?;
    std::fs::write(path("index.html"), html(eval, title))
        .map_err(|e| error(&path("index.html"))(e.to_string()))?;
    Ok(FILES.iter().map(|f| path(f)).collect())
}

/// Registers the bundled font with plotters (once per process).
pub(crate) fn register_font() {
    REGISTER.call_once(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES)
            .unwrap_or_else(|_| panic!("the bundled font parses"));
    });
}

pub(crate) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
pub(crate) type DrawResult = Result<(), String>;

/// Draws a `w x h` PNG at `path` on a white background.
pub(crate) fn draw_png(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&Area) -> DrawResult,
) -> Result<(), ReportError> {
    let mut pixels = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| error(path)(e.to_string()))?;
        draw(&root).map_err(error(path))?;
        root.present().map_err(|e| error(path)(e.to_string()))?;
    }
    let image = image::RgbImage::from_raw(w, h, pixels).expect("buffer of w * h * 3 bytes");
    image.save(path).map_err(|e| error(path)(e.to_string()))
}

pub(crate) fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn color(i: usize) -> RGBColor {
    // Palette99 as plain RGB, so lines and shading share it.
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// At most `n` characters of `s`, with an ellipsis when cut.
pub(crate) fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n.saturating_sub(1)).chain(['…']).collect()
    }
}

fn confusion_size(eval: &Evaluation) -> (u32, u32) {
    confusion_matrix_size(eval.phrases.len() + 1)
}

/// The picture size of an `n x n` confusion matrix (cells shrink for many classes).
pub(crate) fn confusion_matrix_size(n: usize) -> (u32, u32) {
    let n = n as u32;
    let cell = (1400 / n.max(1)).clamp(14, 70);
    (260 + n * cell, 140 + n * cell)
}

fn confusion(root: &Area, eval: &Evaluation) -> DrawResult {
    let Some(c) = &eval.confusion else {
        return message(
            root,
            "No truth given (--truth / --truth-topic): no confusion matrix.",
        );
    };
    confusion_matrix(
        root,
        "Confusion: rows truth, columns best matched phrase",
        &c.labels,
        &c.matrix,
    )
}

/// A confusion matrix: rows truth, columns predicted, counts in the cells (while they fit).
pub(crate) fn confusion_matrix(
    root: &Area,
    caption: &str,
    labels: &[String],
    matrix: &[Vec<u64>],
) -> DrawResult {
    let n = labels.len();
    let max = matrix.iter().flatten().copied().max().unwrap_or(0).max(1);
    let (_, height) = root.dim_in_pixel();
    let cell = (height.saturating_sub(140) / n.max(1) as u32).max(1);
    let mut chart = ChartBuilder::on(root)
        .caption(caption, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(200)
        // Integer segments include their range's end: 0..n-1 is n cells.
        .build_cartesian_2d((0..n - 1).into_segmented(), (0..n - 1).into_segmented())
        .map_err(text)?;
    // Labels only where the cells leave room for them.
    let name = |v: &SegmentValue<usize>, len: usize| match v {
        SegmentValue::CenterOf(i) if *i < n && cell >= 12 => short(&labels[n - 1 - *i], len),
        _ => String::new(),
    };
    let column = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if *i < n && cell >= 24 => short(&labels[*i], 9),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(n)
        .y_labels(n)
        .x_label_formatter(&column)
        .y_label_formatter(&|v| name(v, 28))
        .x_desc("predicted")
        .y_desc("truth")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(text)?;
    let cells = matrix.iter().enumerate().flat_map(|(row, counts)| {
        counts.iter().enumerate().map(move |(col, &count)| {
            let y = n - 1 - row;
            let shade = 1.0 - count as f64 / max as f64;
            let fill = RGBColor(
                (40.0 + 215.0 * shade) as u8,
                (90.0 + 165.0 * shade) as u8,
                (170.0 + 85.0 * shade) as u8,
            );
            Rectangle::new(
                [
                    (SegmentValue::Exact(col), SegmentValue::Exact(y)),
                    (SegmentValue::Exact(col + 1), SegmentValue::Exact(y + 1)),
                ],
                fill.filled(),
            )
        })
    });
    chart.draw_series(cells).map_err(text)?;
    let counts = matrix.iter().enumerate().flat_map(|(row, counts)| {
        counts.iter().enumerate().map(move |(col, &count)| {
            let ink = if count as f64 > max as f64 * 0.6 {
                WHITE
            } else {
                BLACK
            };
            Text::new(
                count.to_string(),
                (
                    SegmentValue::CenterOf(col),
                    SegmentValue::CenterOf(n - 1 - row),
                ),
                (FONT, 16)
                    .into_font()
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            )
        })
    });
    if cell >= 24 {
        chart.draw_series(counts).map_err(text)?;
    }
    Ok(())
}

fn timeline_size(eval: &Evaluation) -> (u32, u32) {
    (1100, 60 + 120 * eval.phrases.len().max(1) as u32)
}

/// A timeline's frames, with the colour and name of their topic when there are several.
type TimelineSeries<'a> = (
    &'a [super::metrics::FrameScores],
    Option<(RGBColor, String)>,
);

fn timeline(root: &Area, eval: &Evaluation) -> DrawResult {
    let frames = &eval.frame_scores;
    if frames.is_empty() {
        return message(root, "No frame was scored.");
    }
    let base = eval.time_base;
    // One line per topic when there are several (each in its colour), else one per phrase
    // in the phrase's colour.
    let series: Vec<TimelineSeries> = if eval.per_topic.is_empty() {
        vec![(frames.as_slice(), None)]
    } else {
        eval.per_topic
            .iter()
            .enumerate()
            .map(|(k, t)| {
                // The camera (the page's per-topic table names its topic).
                let name = t.camera.as_deref().unwrap_or(&t.topic);
                (
                    t.evaluation.frame_scores.as_slice(),
                    Some((color(k), short(name, 40))),
                )
            })
            .collect()
    };
    let t0 = frames
        .iter()
        .map(|f| f.time_ns(base))
        .min()
        .expect("frames");
    let t1 = frames
        .iter()
        .map(|f| f.time_ns(base))
        .max()
        .expect("frames");
    let seconds = |t: i64| (t.saturating_sub(t0)) as f64 * 1e-9;
    let x_end = seconds(t1).max(1e-3);
    let all = frames.iter().flat_map(|f| f.score.iter().copied());
    let (lo, hi) = all
        .chain(eval.thresholds.iter().copied())
        .fold((f32::MAX, f32::MIN), |(lo, hi), c| (lo.min(c), hi.max(c)));
    let pad = ((hi - lo) * 0.08).max(0.01);
    let (y0, y1) = (f64::from(lo - pad), f64::from(hi + pad));
    let (title, rows) = root.split_vertically(50);
    title
        .titled(
            if series.len() > 1 {
                "Score per phrase over time, a line per topic (shaded: truth; dashed: threshold)"
            } else {
                "Score per phrase over time (shaded: truth; dashed: threshold)"
            },
            (FONT, 20),
        )
        .map_err(text)?;
    let rows = rows.split_evenly((eval.phrases.len(), 1));
    for (i, (row, phrase)) in rows.iter().zip(&eval.phrases).enumerate() {
        let last = i + 1 == eval.phrases.len();
        let mut chart = ChartBuilder::on(row)
            .margin_left(10)
            .margin_right(20)
            .margin_top(4)
            .x_label_area_size(if last { 36 } else { 6 })
            .y_label_area_size(180)
            .build_cartesian_2d(0.0..x_end, y0..y1)
            .map_err(text)?;
        let mut mesh = chart.configure_mesh();
        mesh.y_labels(3)
            .y_desc(short(phrase, 24))
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 14))
            .disable_y_mesh()
            .light_line_style(WHITE);
        if last {
            mesh.x_desc("seconds since the first frame");
        } else {
            mesh.x_labels(0);
        }
        mesh.draw().map_err(text)?;
        let c = color(i);
        // With a line per topic the colours are the topics': truth is shaded grey.
        let shade = if series.len() > 1 {
            RGBColor(110, 110, 110)
        } else {
            c
        };
        let spans = eval
            .truth_spans
            .iter()
            .filter(|(_, _, p)| *p == i)
            .map(|&(s, e, _)| {
                let (s, e) = (seconds(s.max(t0)), seconds(e.min(t1 + 1)).min(x_end));
                Rectangle::new([(s, y0), (e, y1)], shade.mix(0.18).filled())
            });
        chart.draw_series(spans).map_err(text)?;
        let threshold = f64::from(eval.thresholds[i]);
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, threshold), (x_end, threshold)],
                6,
                4,
                RGBColor(90, 90, 90).stroke_width(1),
            ))
            .map_err(text)?;
        for (frames, topic) in &series {
            let c = topic.as_ref().map_or(c, |(c, _)| *c);
            let points: Vec<(f64, f64)> = frames
                .iter()
                .map(|f| (seconds(f.time_ns(base)), f64::from(f.score[i])))
                .collect();
            let line = chart
                .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
                .map_err(text)?;
            if let (Some((_, name)), 0) = (topic, i) {
                line.label(name.as_str()).legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], c.stroke_width(3))
                });
            }
            if points.len() < 200 {
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 2, c.filled())))
                    .map_err(text)?;
            }
        }
        if series.len() > 1 && i == 0 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font((FONT, 12))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(text)?;
        }
    }
    Ok(())
}

fn pr_curves(root: &Area, eval: &Evaluation) -> DrawResult {
    if eval.per_phrase.iter().all(|m| m.sweep.is_none()) {
        return message(
            root,
            "No precision-recall curve: no truth, or no frame shows any phrase.",
        );
    }
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Precision-recall of each phrase's score (dot: F1-best threshold)",
            (FONT, 20),
        )
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..1.0, 0.0..1.05)
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_desc("recall")
        .y_desc("precision")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(text)?;
    for (i, m) in eval.per_phrase.iter().enumerate() {
        let Some(sweep) = &m.sweep else { continue };
        let c = color(i);
        chart
            .draw_series(LineSeries::new(
                sweep.curve.iter().map(|p| (p.recall, p.precision)),
                c.stroke_width(2),
            ))
            .map_err(text)?
            .label(format!(
                "{} (best F1 {:.2} at {:.3})",
                short(&m.phrase, 30),
                sweep.best_f1,
                sweep.best_threshold
            ))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(3)));
        chart
            .draw_series([Circle::new(
                (sweep.best_recall, sweep.best_precision),
                5,
                c.filled(),
            )])
            .map_err(text)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(text)
}

fn message(root: &Area, text_: &str) -> DrawResult {
    root.draw(&Text::new(text_, (20, 20), (FONT, 18)))
        .map_err(text)
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html(eval: &Evaluation, title: &str) -> String {
    let f = &eval.frames;
    let mut rows = String::new();
    for m in &eval.per_phrase {
        let (bt, bf) = m.sweep.as_ref().map_or(("–".into(), "–".into()), |s| {
            (
                format!("{:.4}", s.best_threshold),
                format!("{:.3}", s.best_f1),
            )
        });
        rows += &format!(
            "<tr><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{bt}</td><td>{bf}</td></tr>\n",
            escape(&m.phrase),
            m.threshold,
            m.support,
            m.tp,
            m.fp,
            m.fn_,
            m.precision,
            m.recall,
            m.f1
        );
    }
    let mut facts = format!(
        "<tr><th>frames scored</th><td>{}</td></tr>\
         <tr><th>frames skipped</th><td>{}</td></tr>\
         <tr><th>frames with truth</th><td>{}</td></tr>\
         <tr><th>frames without truth</th><td>{}</td></tr>",
        f.scored, f.skipped, f.with_truth, f.unlabelled
    );
    if let Some(t) = &eval.top1 {
        facts += &format!(
            "<tr><th>top-1 accuracy</th><td>{:.4} ({} of {} single-phrase frames)</td></tr>",
            t.accuracy, t.correct, t.frames
        );
    }
    if let Some(m) = eval.macro_f1 {
        facts += &format!("<tr><th>macro F1 (matched)</th><td>{m:.4}</td></tr>");
    }
    for (name, p) in [
        ("encoder ms / frame", &eval.timing_ms.encoder),
        ("end-to-end ms / frame", &eval.timing_ms.end_to_end),
    ] {
        if let Some(p) = p {
            facts += &format!(
                "<tr><th>{name}</th><td>p50 {:.2}, p99 {:.2}</td></tr>",
                p.p50, p.p99
            );
        }
    }
    let localization = localization_html(eval);
    let topics = topics_html(eval);
    let pooled = if eval.per_topic.is_empty() {
        ""
    } else {
        ", all topics together"
    };
    let phrase_table = if eval.per_phrase.is_empty() {
        "<p>No truth was given (<code>--truth</code> or <code>--truth-topic</code>): \
         no accuracy metrics.</p>"
            .to_string()
    } else {
        format!(
            "<table><tr><th>phrase</th><th>threshold</th><th>support</th><th>TP</th>\
             <th>FP</th><th>FN</th><th>precision</th><th>recall</th><th>F1</th>\
             <th>F1-best threshold</th><th>best F1</th></tr>\n{rows}</table>\
             <p>F1-best thresholds, for <code>config/clip_node.yaml</code>:</p>\
             <pre>{}</pre>",
            escape(&eval.thresholds_yaml())
        )
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>clip_perception replay: {title}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th {{ background: #f2f2f2; }} td:first-child, th:first-child {{ text-align: left; }}
pre {{ background: #f6f6f6; padding: 8px; }} img {{ max-width: 100%; border: 1px solid #ddd; }}
</style></head><body>
<h1>Replay of {title}</h1>
<table>{facts}</table>
{topics}<h2>Per phrase{pooled} (the published <code>matched</code> flag)</h2>
{phrase_table}
{localization}<h2>Scores over time</h2><img src="timeline.png" alt="score per phrase over time">
<h2>Confusion matrix{pooled}</h2><img src="confusion.png" alt="confusion matrix">
<h2>Precision-recall{pooled}</h2><img src="pr.png" alt="precision-recall curves">
<p>All numbers: <a href="metrics.json">metrics.json</a>.</p>
</body></html>
"#,
        title = escape(title)
    )
}

/// The file of the localisation strip (written by the replay command next to the report).
pub const LOCATE_STRIP: &str = "locate.png";

/// With true boxes: pointing accuracy and mean IoU, overall and per phrase, and the strip of
/// frames with their located and true boxes; empty without.
fn localization_html(eval: &Evaluation) -> String {
    let Some(l) = &eval.localization else {
        return String::new();
    };
    let mut rows = String::new();
    for p in &l.per_phrase {
        rows += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td></tr>\n",
            escape(&p.phrase),
            p.objects,
            p.pointed,
            p.pointing,
            p.mean_iou
        );
    }
    let strip = if l.objects > 0 {
        format!(
            "<p>Frames with true boxes (thin green) and where each phrase was located \
             (box, point, score):</p><img src=\"{LOCATE_STRIP}\" alt=\"located phrases on frames\">"
        )
    } else {
        String::new()
    };
    format!(
        "<h2>Where (localization against the true boxes)</h2>\
         <p>Pointing accuracy {:.4} ({} of {} objects: the phrase's point inside its true box), \
         mean IoU {:.4}.</p>\
         <table><tr><th>phrase</th><th>objects</th><th>pointed at</th><th>pointing</th>\
         <th>mean IoU</th></tr>\n{rows}</table>{strip}\n",
        l.pointing, l.pointed, l.objects, l.mean_iou
    )
}

/// For several topics: a table of each topic's frames, top-1, macro F1 and timing, and one
/// of each phrase's F1 per topic; empty for one topic.
fn topics_html(eval: &Evaluation) -> String {
    if eval.per_topic.is_empty() {
        return String::new();
    }
    let opt =
        |v: Option<f64>, digits: usize| v.map_or("–".to_string(), |v| format!("{v:.digits$}"));
    let mut rows = String::new();
    for t in &eval.per_topic {
        let cells: String = t
            .cells("–")
            .iter()
            .map(|c| format!("<td>{c}</td>"))
            .collect();
        rows += &format!(
            "<tr><td><code>{}</code></td><td style=\"text-align: left\">{}</td>{cells}</tr>\n",
            escape(&t.topic),
            escape(t.camera.as_deref().unwrap_or("–")),
        );
    }
    let mut html = format!(
        "<h2>Per topic (each topic's frames alone)</h2>\n\
         <table><tr><th>topic</th><th style=\"text-align: left\">camera</th><th>frames scored</th><th>skipped</th>\
         <th>with truth</th><th>top-1 accuracy</th><th>macro F1</th>\
         <th>encoder ms p50</th><th>end-to-end ms p50</th></tr>\n{rows}</table>\n"
    );
    if !eval.per_phrase.is_empty() {
        let names: Vec<String> = eval
            .per_topic
            .iter()
            .map(|t| t.camera.clone().unwrap_or_else(|| t.topic.clone()))
            .collect();
        let heads: String = names
            .iter()
            .map(|n| format!("<th>{}</th>", escape(n)))
            .collect();
        let mut rows = String::new();
        for (i, m) in eval.per_phrase.iter().enumerate() {
            let cells: String = eval
                .per_topic
                .iter()
                .map(|t| {
                    let f1 = t.evaluation.per_phrase.get(i).map(|m| m.f1);
                    format!("<td>{}</td>", opt(f1, 3))
                })
                .collect();
            rows += &format!(
                "<tr><td>{}</td><td>{:.3}</td>{cells}</tr>\n",
                escape(&m.phrase),
                m.f1
            );
        }
        html += &format!(
            "<h3>F1 of <code>matched</code> per phrase and camera</h3>\n\
             <table><tr><th>phrase</th><th>all topics</th>{heads}</tr>\n{rows}</table>\n"
        );
    }
    html
}
