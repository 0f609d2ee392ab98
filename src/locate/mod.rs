//! Where each phrase is in an image, with any image encoder: candidate regions are encoded
//! like whole images and scored against the phrases. Two methods:
//!
//! - **proposals** (default): the image alone proposes object boxes ([`segment`]: graph
//!   segmentation and a merge hierarchy, the 8 most distinct regions); each is encoded as a
//!   square crop around it with some context, and each phrase takes the candidate it wins
//!   most clearly against the other phrases (the softmax over the phrases of
//!   `100 * cosine`; a single phrase: the highest cosine). Point: the box's centre.
//! - **grid**: overlapping square crops (by default 9: half the short side, 3x3 at a
//!   quarter-side stride); each phrase's relevance map takes in every cell the best score of
//!   the crops covering it; point: the weighted centre of the map's most relevant region
//!   (cells at or above `threshold` of the way from the map's lowest to its highest value,
//!   the 4-connected part holding the peak); box: that region's extent. Needs no object
//!   edges, but its boxes are coarse.
//!
//! Either way the cost is one encoder pass per candidate, whatever the number of phrases,
//! and a location's score is its candidate's score in the unit the node's `Classification`
//! uses (the cosine, or a sigmoid-scored bundle's per-phrase probability). Each phrase's
//! relevance map (cells take the best score of the candidates covering them) is the heat
//! map of overlays and `~/heatmap`.
//!
//! Coordinates are the input image's pixels: x right, y down, `(0, 0)` the top-left
//! corner of the top-left pixel, boxes `[x0, y0, x1, y1]` with `x1`, `y1` exclusive (a
//! box of the whole image is `[0, 0, width, height]`).
//!
//! This module is the geometry, the proposals and the maps: which regions, and what their
//! scores mean. Encoding them is the caller's (`engine::locate`), so any encoder and any
//! scoring fits.

pub mod segment;

use serde::Serialize;

use crate::image::RgbImage;

/// A pixel rectangle, `x1`/`y1` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rect {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

impl Rect {
    pub fn width(&self) -> u32 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> u32 {
        self.y1 - self.y0
    }

    /// Whether the point `(x, y)` (pixel coordinates) lies in the rectangle.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.x0 as f32 && x < self.x1 as f32 && y >= self.y0 as f32 && y < self.y1 as f32
    }
}

/// One crop scale: square crops of side `fraction` of the image's short side, `across`
/// of them along the short side (evenly spaced from edge to edge; one crop is centred),
/// and along the long side as many as keep about the same stride (the nearest whole
/// number of strides: a 4:3 image gets 4 x 3 crops of a 3-across scale).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CropScale {
    pub fraction: f32,
    pub across: usize,
}

/// Which candidates an image's phrases are located among (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Proposals,
    Grid,
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "proposals" => Ok(Method::Proposals),
            "grid" => Ok(Method::Grid),
            _ => Err(format!("`{s}` is not `proposals` or `grid`")),
        }
    }
}

/// How an image is localised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocateSettings {
    pub method: Method,
    pub proposals: segment::ProposalSettings,
    /// A proposal's crop: a square of this times the box's longer side, centred on it
    /// (black beyond the image's borders).
    pub context: f32,
    /// The grid method's crop scales.
    pub scales: Vec<CropScale>,
    /// The relevant region: cells at or above this fraction of the way from the map's
    /// lowest to its highest value.
    pub threshold: f32,
    /// Map cells along the image's short side.
    pub cells: usize,
}

impl Default for LocateSettings {
    /// Proposals (8), context 1.2; for the grid, 9 crops of half the short side on a 3x3
    /// grid (a square image; a 4:3 one gets 4x3) and the region at 0.7; maps of 28 cells
    /// along the short side.
    fn default() -> Self {
        LocateSettings {
            method: Method::Proposals,
            proposals: segment::ProposalSettings::default(),
            context: 1.2,
            scales: vec![CropScale {
                fraction: 0.5,
                across: 3,
            }],
            threshold: 0.7,
            cells: 28,
        }
    }
}

/// Positions of `n` windows of length `side` spread evenly over `0..len`, the first at 0
/// and the last flush with the end (one window: centred).
fn spread(len: u32, side: u32, n: usize) -> Vec<u32> {
    let room = len - side;
    if n <= 1 {
        return vec![room / 2];
    }
    (0..n)
        .map(|i| ((i as f64 * room as f64) / (n - 1) as f64).round() as u32)
        .collect()
}

impl LocateSettings {
    /// The crops of a `width` x `height` image, row by row, scale by scale.
    pub fn crops(&self, width: u32, height: u32) -> Vec<Rect> {
        let short = width.min(height);
        let mut out = Vec::new();
        for scale in &self.scales {
            let side = ((scale.fraction * short as f32).round() as u32).clamp(1, short);
            let across = scale.across.max(1);
            if across == 1 {
                out.push(Rect {
                    x0: (width - side) / 2,
                    y0: (height - side) / 2,
                    x1: (width - side) / 2 + side,
                    y1: (height - side) / 2 + side,
                });
                continue;
            }
            // The stride that puts `across` crops on the short side (half a crop when one
            // crop spans it), kept on the long side.
            let stride = if side < short {
                (short - side) as f64 / (across - 1) as f64
            } else {
                side as f64 / (across - 1) as f64
            };
            let along = |len: u32| {
                if len == side {
                    1
                } else {
                    ((len - side) as f64 / stride).round().max(1.0) as usize + 1
                }
            };
            let xs = spread(width, side, along(width));
            let ys = spread(height, side, along(height));
            for &y in &ys {
                for &x in &xs {
                    out.push(Rect {
                        x0: x,
                        y0: y,
                        x1: x + side,
                        y1: y + side,
                    });
                }
            }
        }
        out
    }

    /// The candidate regions of `image` this method encodes, in the image's pixels.
    pub fn regions(&self, image: &RgbImage) -> Vec<Rect> {
        match self.method {
            Method::Grid => self.crops(image.width, image.height),
            Method::Proposals => {
                // Segment a copy at most `side` on its short side; boxes scaled back.
                let short = image.width.min(image.height);
                let f = (self.proposals.side as f64 / short as f64).min(1.0);
                let (w, h) = (
                    ((image.width as f64 * f).round() as u32).max(1),
                    ((image.height as f64 * f).round() as u32).max(1),
                );
                let packed = image.to_packed();
                let small = if (w, h) == (image.width, image.height) {
                    packed
                } else {
                    let full = ::image::RgbImage::from_raw(image.width, image.height, packed)
                        .expect("packed RGB of the image's size");
                    ::image::imageops::resize(&full, w, h, ::image::imageops::FilterType::Triangle)
                        .into_raw()
                };
                let (sx, sy) = (
                    image.width as f64 / w as f64,
                    image.height as f64 / h as f64,
                );
                segment::proposals(&small, w as usize, h as usize, &self.proposals)
                    .into_iter()
                    .map(|r| Rect {
                        x0: ((r.x0 as f64 * sx).floor() as u32).min(image.width - 1),
                        y0: ((r.y0 as f64 * sy).floor() as u32).min(image.height - 1),
                        x1: ((r.x1 as f64 * sx).ceil() as u32).min(image.width),
                        y1: ((r.y1 as f64 * sy).ceil() as u32).min(image.height),
                    })
                    .collect()
            }
        }
    }

    /// What the encoder sees of `region`: the grid's crop itself, or a proposal's square
    /// with context.
    pub fn crop<'a>(&self, image: &'a RgbImage, region: Rect) -> RgbImage<'a> {
        match self.method {
            Method::Grid => crop(image, region),
            Method::Proposals => context_crop(image, region, self.context),
        }
    }
}

/// A square of `context` times `rect`'s longer side centred on it, corners rounded to
/// whole pixels, black where it leaves the image (an owned copy).
pub fn context_crop(image: &RgbImage, rect: Rect, context: f32) -> RgbImage<'static> {
    let side = rect.width().max(rect.height()) as f64 * context as f64;
    let (cx, cy) = (
        (rect.x0 + rect.x1) as f64 / 2.0,
        (rect.y0 + rect.y1) as f64 / 2.0,
    );
    let x0 = (cx - side / 2.0).round() as i64;
    let y0 = (cy - side / 2.0).round() as i64;
    let n = (((cx + side / 2.0).round() as i64 - x0).max(1)) as usize;
    let m = (((cy + side / 2.0).round() as i64 - y0).max(1)) as usize;
    let mut data = vec![0u8; n * m * 3];
    for j in 0..m {
        let y = y0 + j as i64;
        if y < 0 || y >= image.height as i64 {
            continue;
        }
        let row = image.row(y as usize);
        let (from, to) = (x0.max(0), (x0 + n as i64).min(image.width as i64));
        if from >= to {
            continue;
        }
        let dst = (j * n + (from - x0) as usize) * 3;
        data[dst..dst + (to - from) as usize * 3]
            .copy_from_slice(&row[from as usize * 3..to as usize * 3]);
    }
    RgbImage::from_packed(n as u32, m as u32, data).expect("a crop within the size limits")
}

/// A borrowed view of `rect` of `image` (no copy).
pub fn crop<'a>(image: &'a RgbImage, rect: Rect) -> RgbImage<'a> {
    assert!(
        rect.x1 <= image.width && rect.y1 <= image.height && rect.x0 < rect.x1 && rect.y0 < rect.y1
    );
    let start = rect.y0 as usize * image.stride + rect.x0 as usize * 3;
    let end = (rect.y1 as usize - 1) * image.stride + rect.x1 as usize * 3;
    RgbImage {
        width: rect.width(),
        height: rect.height(),
        stride: image.stride,
        data: std::borrow::Cow::Borrowed(&image.data[start..end]),
    }
}

/// One phrase's relevance over the image: `cols` x `rows` cells, row-major, each covering
/// `width / cols` x `height / rows` pixels, valued in the score's unit.
#[derive(Debug, Clone, PartialEq)]
pub struct RelevanceMap {
    pub cols: usize,
    pub rows: usize,
    /// The image's size in pixels.
    pub width: u32,
    pub height: u32,
    pub values: Vec<f32>,
}

impl RelevanceMap {
    /// The map of one phrase: each cell takes the best score of the crops whose area holds
    /// the cell's centre (a cell no crop holds takes the lowest score).
    pub fn from_crops(
        width: u32,
        height: u32,
        cells: usize,
        crops: &[Rect],
        scores: &[f32],
    ) -> RelevanceMap {
        assert_eq!(crops.len(), scores.len(), "one score per crop");
        let short = width.min(height) as f64;
        let cell = short / cells.max(1) as f64;
        let cols = ((width as f64 / cell).round() as usize).max(1);
        let rows = ((height as f64 / cell).round() as usize).max(1);
        let lowest = scores.iter().copied().fold(f32::INFINITY, f32::min);
        let lowest = if lowest.is_finite() { lowest } else { 0.0 };
        let mut values = vec![f32::NEG_INFINITY; cols * rows];
        for r in 0..rows {
            let y = (r as f64 + 0.5) * height as f64 / rows as f64;
            for c in 0..cols {
                let x = (c as f64 + 0.5) * width as f64 / cols as f64;
                let v = &mut values[r * cols + c];
                for (rect, &s) in crops.iter().zip(scores) {
                    if rect.contains(x as f32, y as f32) && s > *v {
                        *v = s;
                    }
                }
                if *v == f32::NEG_INFINITY {
                    *v = lowest;
                }
            }
        }
        RelevanceMap {
            cols,
            rows,
            width,
            height,
            values,
        }
    }

    /// The pixel rectangle of cell `(col, row)` (edges rounded to whole pixels).
    pub fn cell_rect(&self, col: usize, row: usize) -> Rect {
        let x = |c: usize| ((c as f64 * self.width as f64) / self.cols as f64).round() as u32;
        let y = |r: usize| ((r as f64 * self.height as f64) / self.rows as f64).round() as u32;
        Rect {
            x0: x(col),
            y0: y(row),
            x1: x(col + 1),
            y1: y(row + 1),
        }
    }

    /// The lowest and the highest value (infinities for an empty map).
    pub fn range(&self) -> (f32, f32) {
        self.values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            })
    }

    /// The value at pixel `(x, y)` (the cell holding it).
    pub fn at(&self, x: f32, y: f32) -> f32 {
        let c = ((x as f64 * self.cols as f64 / self.width as f64) as usize).min(self.cols - 1);
        let r = ((y as f64 * self.rows as f64 / self.height as f64) as usize).min(self.rows - 1);
        self.values[r * self.cols + c]
    }

    /// The most relevant region at `threshold` (see the module doc): its weighted centre in
    /// pixels and its box. A flat map (no cell above another) gives the image's centre and
    /// the whole image.
    pub fn region(&self, threshold: f32) -> ([f32; 2], Rect) {
        let (lo, hi) = self.range();
        let whole = Rect {
            x0: 0,
            y0: 0,
            x1: self.width,
            y1: self.height,
        };
        if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
            return ([self.width as f32 / 2.0, self.height as f32 / 2.0], whole);
        }
        let cut = lo + threshold.clamp(0.0, 1.0) * (hi - lo);
        let peak =
            self.values.iter().enumerate().fold(
                0,
                |best, (i, &v)| if v > self.values[best] { i } else { best },
            );
        // The 4-connected cells at or above the cut that hold the peak.
        let mut inside = vec![false; self.values.len()];
        let mut stack = vec![peak];
        inside[peak] = true;
        let (mut sx, mut sy, mut sw) = (0f64, 0f64, 0f64);
        let (mut c0, mut r0, mut c1, mut r1) = (usize::MAX, usize::MAX, 0, 0);
        while let Some(i) = stack.pop() {
            let (c, r) = (i % self.cols, i / self.cols);
            let cell = self.cell_rect(c, r);
            // Weight: how far above the cut; the peak's cell always weighs.
            let w = ((self.values[i] - cut) as f64).max(0.0) + 1e-6;
            sx += w * (cell.x0 + cell.x1) as f64 / 2.0;
            sy += w * (cell.y0 + cell.y1) as f64 / 2.0;
            sw += w;
            (c0, r0, c1, r1) = (c0.min(c), r0.min(r), c1.max(c), r1.max(r));
            let mut visit = |j: usize| {
                if !inside[j] && self.values[j] >= cut {
                    inside[j] = true;
                    stack.push(j);
                }
            };
            if c > 0 {
                visit(i - 1);
            }
            if c + 1 < self.cols {
                visit(i + 1);
            }
            if r > 0 {
                visit(i - self.cols);
            }
            if r + 1 < self.rows {
                visit(i + self.cols);
            }
        }
        let first = self.cell_rect(c0, r0);
        let last = self.cell_rect(c1, r1);
        (
            [(sx / sw) as f32, (sy / sw) as f32],
            Rect {
                x0: first.x0,
                y0: first.y0,
                x1: last.x1,
                y1: last.y1,
            },
        )
    }
}

/// Where one phrase is.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// The phrase's index in the label set.
    pub index: usize,
    /// The best crop's score for the phrase (the node's score unit).
    pub score: f32,
    /// The most relevant location, pixels.
    pub point: [f32; 2],
    pub bbox: Rect,
    pub map: RelevanceMap,
}

/// The temperature of the proposals' softmax over the phrases.
pub const PICK_SCALE: f32 = 100.0;

/// The candidate each phrase takes among the proposals: the highest softmax over the
/// phrases of `PICK_SCALE * cosine` (a single phrase: the highest cosine); ties go to the
/// earlier (more distinct) candidate. `cosines[candidate][phrase]`.
pub fn pick(cosines: &[Vec<f32>]) -> Vec<usize> {
    let phrases = cosines.first().map_or(0, Vec::len);
    let share = |row: &[f32], p: usize| -> f32 {
        if phrases == 1 {
            return row[p];
        }
        let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|c| (PICK_SCALE * (c - top)).exp()).sum();
        (PICK_SCALE * (row[p] - top)).exp() / sum
    };
    (0..phrases)
        .map(|p| {
            let mut best = 0;
            for (c, row) in cosines.iter().enumerate() {
                if share(row, p) > share(&cosines[best], p) {
                    best = c;
                }
            }
            best
        })
        .collect()
}

/// A location with its phrase, as `locate --json`, replay's JSON lines and the node's
/// detections carry it: `{"label", "score", "point": [x, y], "box": [x0, y0, x1, y1]}`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LocatedPhrase {
    pub label: String,
    pub score: f32,
    pub point: [f32; 2],
    #[serde(rename = "box")]
    pub bbox: [u32; 4],
}

impl Location {
    /// This location with its phrase's name (`labels[self.index]`).
    pub fn named(&self, labels: &[String]) -> LocatedPhrase {
        let b = self.bbox;
        LocatedPhrase {
            label: labels[self.index].clone(),
            score: self.score,
            point: self.point,
            bbox: [b.x0, b.y0, b.x1, b.y1],
        }
    }
}

impl LocatedPhrase {
    /// Its box as a [`Rect`].
    pub fn rect(&self) -> Rect {
        let [x0, y0, x1, y1] = self.bbox;
        Rect { x0, y0, x1, y1 }
    }
}

/// Every phrase's location in a `width` x `height` image from its candidate `regions`
/// (what [`LocateSettings::regions`] chose) and their `scores` (node unit) and `cosines`,
/// `[region][phrase]`; best score first (ties keep phrase order). No region: no location.
pub fn locate(
    settings: &LocateSettings,
    width: u32,
    height: u32,
    regions: &[Rect],
    scores: &[Vec<f32>],
    cosines: &[Vec<f32>],
) -> Vec<Location> {
    assert_eq!(regions.len(), scores.len(), "one score row per region");
    assert_eq!(regions.len(), cosines.len(), "one cosine row per region");
    let phrases = scores.first().map_or(0, Vec::len);
    let picks = match settings.method {
        Method::Proposals => pick(cosines),
        Method::Grid => Vec::new(),
    };
    let mut out: Vec<Location> = (0..phrases)
        .map(|p| {
            let column: Vec<f32> = scores.iter().map(|row| row[p]).collect();
            let map = RelevanceMap::from_crops(width, height, settings.cells, regions, &column);
            match settings.method {
                Method::Grid => {
                    let (point, bbox) = map.region(settings.threshold);
                    Location {
                        index: p,
                        score: column.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                        point,
                        bbox,
                        map,
                    }
                }
                Method::Proposals => {
                    let bbox = regions[picks[p]];
                    Location {
                        index: p,
                        score: column[picks[p]],
                        point: [
                            (bbox.x0 + bbox.x1) as f32 / 2.0,
                            (bbox.y0 + bbox.y1) as f32 / 2.0,
                        ],
                        bbox,
                        map,
                    }
                }
            }
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// Intersection over union of two boxes (0 when both are empty).
pub fn iou(a: Rect, b: Rect) -> f32 {
    let w = a.x1.min(b.x1).saturating_sub(a.x0.max(b.x0)) as f64;
    let h = a.y1.min(b.y1).saturating_sub(a.y0.max(b.y0)) as f64;
    let inter = w * h;
    let area = |r: Rect| r.width() as f64 * r.height() as f64;
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        (inter / union) as f32
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x0: u32, y0: u32, x1: u32, y1: u32) -> Rect {
        Rect { x0, y0, x1, y1 }
    }

    #[test]
    fn a_square_image_gets_a_3x3_grid_flush_with_its_borders() {
        let crops = LocateSettings::default().crops(224, 224);
        assert_eq!(crops.len(), 9);
        let xs: Vec<u32> = crops[..3].iter().map(|r| r.x0).collect();
        assert_eq!(xs, [0, 56, 112]);
        assert!(crops.iter().all(|r| r.width() == 112 && r.height() == 112));
        assert_eq!(crops[8], rect(112, 112, 224, 224));
    }

    #[test]
    fn a_wide_or_odd_image_keeps_the_stride_on_its_long_side() {
        // VGA: side 240, stride 120 on the short side; the long side needs 4 crops.
        let crops = LocateSettings::default().crops(640, 480);
        assert_eq!(crops.len(), 12);
        let xs: Vec<u32> = crops[..4].iter().map(|r| r.x0).collect();
        assert_eq!(xs, [0, 133, 267, 400]);
        assert_eq!(crops.last().copied(), Some(rect(400, 240, 640, 480)));
        // Odd sizes: every crop inside the image, the last flush with both edges.
        let crops = LocateSettings::default().crops(301, 97);
        for r in &crops {
            assert!(r.x1 <= 301 && r.y1 <= 97 && r.width() == 49 && r.height() == 49);
        }
        assert_eq!(crops.last().map(|r| (r.x1, r.y1)), Some((301, 97)));
        assert_eq!(crops.first().map(|r| (r.x0, r.y0)), Some((0, 0)));
        // A tall image: the crops run down, not across.
        let crops = LocateSettings::default().crops(100, 300);
        assert!(crops.iter().all(|r| r.width() == 50));
        assert_eq!(crops.len(), 3 * 11);
    }

    #[test]
    fn one_crop_per_scale_is_centred_and_a_whole_side_crop_is_the_image() {
        let settings = LocateSettings {
            scales: vec![
                CropScale {
                    fraction: 0.5,
                    across: 1,
                },
                CropScale {
                    fraction: 1.0,
                    across: 3,
                },
            ],
            ..LocateSettings::default()
        };
        let crops = settings.crops(200, 100);
        assert_eq!(crops[0], rect(75, 25, 125, 75));
        // The full-height crop slides along the width by half its side.
        assert_eq!(
            crops[1..],
            [
                rect(0, 0, 100, 100),
                rect(50, 0, 150, 100),
                rect(100, 0, 200, 100)
            ]
        );
    }

    #[test]
    fn a_crop_is_a_view_of_the_right_pixels() {
        let (w, h) = (7u32, 5u32);
        let data: Vec<u8> = (0..w * h * 3).map(|i| i as u8).collect();
        let image = RgbImage::from_packed(w, h, data).unwrap();
        let view = crop(&image, rect(2, 1, 5, 4));
        assert_eq!((view.width, view.height), (3, 3));
        for y in 0..3 {
            let want: Vec<u8> = (0..9)
                .map(|i| (((y + 1) * w as usize + 2) * 3 + i) as u8)
                .collect();
            assert_eq!(view.row(y), &want[..]);
        }
    }

    #[test]
    fn the_map_takes_the_best_covering_crop_and_the_region_holds_the_peak() {
        // 4x4-pixel cells on a 16x8 image; crop A (left half) scores 0.2, crop B (cols
        // 8..12) 0.9, crop C (all) 0.1.
        let crops = [rect(0, 0, 8, 8), rect(8, 0, 12, 8), rect(0, 0, 16, 8)];
        let map = RelevanceMap::from_crops(16, 8, 2, &crops, &[0.2, 0.9, 0.1]);
        assert_eq!((map.cols, map.rows), (4, 2));
        assert_eq!(map.values, [0.2, 0.2, 0.9, 0.1, 0.2, 0.2, 0.9, 0.1]);
        let (point, bbox) = map.region(0.7);
        assert_eq!(bbox, rect(8, 0, 12, 8));
        assert_eq!(point, [10.0, 4.0]);
        // At a low threshold the region grows over the 0.2 cells, not the 0.1 one.
        let (_, bbox) = map.region(0.1);
        assert_eq!(bbox, rect(0, 0, 12, 8));
        assert_eq!(map.at(9.5, 7.9), 0.9);
    }

    #[test]
    fn the_region_is_the_part_holding_the_peak_and_a_flat_map_is_the_whole_image() {
        // Two separate high regions: the box is the one with the peak only.
        let map = RelevanceMap {
            cols: 5,
            rows: 1,
            width: 50,
            height: 10,
            values: vec![0.95, 0.0, 0.0, 1.0, 0.9],
        };
        let (point, bbox) = map.region(0.5);
        assert_eq!(bbox, rect(30, 0, 50, 10));
        // Weights 0.5 + 1e-6 and 0.4 + 1e-6 at x = 35 and 45.
        assert!((point[0] - (35.0 * 0.5 + 45.0 * 0.4) / 0.9).abs() < 1e-3);
        let flat = RelevanceMap {
            values: vec![0.3; 5],
            ..map
        };
        assert_eq!(flat.region(0.7), ([25.0, 5.0], rect(0, 0, 50, 10)));
    }

    #[test]
    fn locations_come_best_first_with_the_best_crop_score() {
        let crops = LocateSettings::default().crops(224, 224);
        // Phrase 0 peaks in the top-left crop, phrase 1 (higher) in the bottom-right.
        let scores: Vec<Vec<f32>> = (0..9)
            .map(|i| {
                vec![
                    if i == 0 { 0.3 } else { 0.1 },
                    if i == 8 { 0.4 } else { 0.0 },
                ]
            })
            .collect();
        let grid = LocateSettings {
            method: Method::Grid,
            ..LocateSettings::default()
        };
        let found = locate(&grid, 224, 224, &crops, &scores, &scores);
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].index, found[0].score), (1, 0.4));
        assert!(found[0].bbox.contains(200.0, 200.0) && !found[0].bbox.contains(50.0, 50.0));
        assert!((found[1].point[0] - 56.0).abs() < 4.0 && (found[1].point[1] - 56.0).abs() < 4.0);
        assert_eq!(found[1].bbox, rect(0, 0, 112, 112));
    }

    #[test]
    fn each_phrase_takes_the_candidate_it_wins_against_the_others() {
        // Candidate 0 is like both phrases (0.30 vs 0.29): phrase 0 wins it only narrowly.
        // Candidate 1 is clearly phrase 0's, candidate 2 clearly phrase 1's.
        let cos = vec![vec![0.30, 0.29], vec![0.28, 0.20], vec![0.10, 0.25]];
        assert_eq!(pick(&cos), [1, 2]);
        // One phrase: the highest cosine; ties keep the earlier candidate.
        assert_eq!(pick(&[vec![0.2], vec![0.5], vec![0.5]]), [1]);
        let regions = [rect(0, 0, 10, 10), rect(20, 0, 40, 10), rect(0, 20, 10, 30)];
        let found = locate(&LocateSettings::default(), 40, 30, &regions, &cos, &cos);
        // Scores in the node's unit: the picked candidate's (0.28 and 0.25).
        assert_eq!(
            (found[0].index, found[0].score, found[0].bbox),
            (0, 0.28, regions[1])
        );
        assert_eq!(found[0].point, [30.0, 5.0]);
        assert_eq!((found[1].index, found[1].bbox), (1, regions[2]));
    }

    #[test]
    fn a_context_crop_is_a_centred_square_padded_black() {
        let (w, h) = (8u32, 6u32);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i % 251) as u8 + 1).collect();
        let image = RgbImage::from_packed(w, h, data).unwrap();
        // A 4x2 box at the top-left corner, context 1.5: a 6x6 square from (-1, -2).
        let c = context_crop(&image, rect(0, 0, 4, 2), 1.5);
        assert_eq!((c.width, c.height), (6, 6));
        assert!(c.row(0).iter().chain(c.row(1)).all(|&v| v == 0));
        assert_eq!(&c.row(2)[..3], &[0, 0, 0]);
        assert_eq!(&c.row(2)[3..], &image.row(0)[..15]);
        assert_eq!(&c.row(5)[3..], &image.row(3)[..15]);
    }

    #[test]
    fn iou_of_known_boxes() {
        assert_eq!(iou(rect(0, 0, 10, 10), rect(0, 0, 10, 10)), 1.0);
        assert_eq!(iou(rect(0, 0, 10, 10), rect(10, 0, 20, 10)), 0.0);
        assert!((iou(rect(0, 0, 10, 10), rect(5, 0, 15, 10)) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(iou(rect(3, 3, 3, 3), rect(3, 3, 3, 3)), 0.0);
    }
}
