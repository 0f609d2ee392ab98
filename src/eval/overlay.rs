//! Localisation overlays: `locate --out-dir` (the image with the best location's relevance
//! map blended over it, blue = low, red = high, transparent where the map is lowest, and
//! every location's box, point and label with its score) and the frame strip of a replay
//! report (`locate.png`: located boxes and the true boxes in thin green). Drawn by
//! `plotters` into the image's own pixels and written as PNG by `image`.

use std::path::Path;

use plotters::prelude::*;

use super::report::{error, register_font, short, ReportError, FONT};
use crate::image::RgbImage;
use crate::locate::{LocatedPhrase, Location, Rect, RelevanceMap};

/// A colour of the jet-like ramp for `v` in 0..=1.
fn ramp(v: f32) -> [f32; 3] {
    let ch = |c: f32| (1.5 - (4.0 * v - c).abs()).clamp(0.0, 1.0);
    [ch(3.0), ch(2.0), ch(1.0)]
}

/// Distinct colours for the boxes, in location order.
const BOX_COLOURS: [RGBColor; 6] = [
    RGBColor(255, 255, 255),
    RGBColor(255, 221, 0),
    RGBColor(0, 230, 255),
    RGBColor(255, 80, 200),
    RGBColor(120, 255, 80),
    RGBColor(255, 140, 0),
];

/// Blends `map` over packed RGB `pixels` of its image: alpha 0.55 at the map's highest
/// value, 0 at its lowest.
pub fn blend_map(pixels: &mut [u8], map: &RelevanceMap) {
    let (lo, hi) = map.range();
    let span = if hi > lo { hi - lo } else { 1.0 };
    let w = map.width as usize;
    for (i, px) in pixels.chunks_exact_mut(3).enumerate() {
        let (x, y) = ((i % w) as f32 + 0.5, (i / w) as f32 + 0.5);
        let v = (map.at(x, y) - lo) / span;
        let c = ramp(v);
        let a = 0.55 * v;
        for (p, c) in px.iter_mut().zip(c) {
            *p = ((1.0 - a) * *p as f32 + a * 255.0 * c).round() as u8;
        }
    }
}

/// Writes the overlay of `locations` (best first; `labels` names them) over `image` to
/// `path` as PNG: the best location's relevance map, every box with its label and score.
pub fn write_overlay(
    path: &Path,
    image: &RgbImage,
    locations: &[Location],
    labels: &[String],
) -> Result<(), ReportError> {
    let mut pixels = image.to_packed();
    if let Some(best) = locations.first() {
        blend_map(&mut pixels, &best.map);
    }
    let named: Vec<LocatedPhrase> = locations.iter().map(|l| l.named(labels)).collect();
    draw_boxes(&mut pixels, (image.width, image.height), &named, &[])
        .map_err(|e| error(path)(e))?;
    let out = image::RgbImage::from_raw(image.width, image.height, pixels)
        .expect("buffer of w * h * 3 bytes");
    out.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| error(path)(e.to_string()))
}

/// A frame of a replay report's strip: the located phrases' boxes and points over the
/// image, and the true boxes (`(phrase, box)`) as dashed-looking thin green frames.
pub fn frame_tile(
    image: &RgbImage,
    located: &[LocatedPhrase],
    truth: &[(String, Rect)],
) -> Result<image::RgbImage, String> {
    let mut pixels = image.to_packed();
    draw_boxes(&mut pixels, (image.width, image.height), located, truth)?;
    Ok(image::RgbImage::from_raw(image.width, image.height, pixels)
        .expect("buffer of w * h * 3 bytes"))
}

/// Writes `tiles` side by side (scaled to `height` pixels high) as one PNG.
pub fn write_strip(path: &Path, tiles: &[image::RgbImage], height: u32) -> Result<(), ReportError> {
    let scaled: Vec<image::RgbImage> = tiles
        .iter()
        .map(|t| {
            let w = ((t.width() as f64 * height as f64 / t.height() as f64).round() as u32).max(1);
            image::imageops::resize(t, w, height, image::imageops::FilterType::Triangle)
        })
        .collect();
    let gap = 6;
    let width = scaled.iter().map(|t| t.width() + gap).sum::<u32>().max(1);
    let mut strip = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut x = 0;
    for t in &scaled {
        image::imageops::replace(&mut strip, t, i64::from(x), 0);
        x += t.width() + gap;
    }
    strip
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| error(path)(e.to_string()))
}

/// Draws the located phrases (box, point, `label score`) and the true boxes into packed
/// RGB `pixels` of a `w` x `h` image.
fn draw_boxes(
    pixels: &mut [u8],
    (w, h): (u32, u32),
    located: &[LocatedPhrase],
    truth: &[(String, Rect)],
) -> Result<(), String> {
    register_font();
    let root = BitMapBackend::with_buffer(pixels, (w, h)).into_drawing_area();
    let size = (h.min(w) as f64 / 22.0).clamp(11.0, 28.0);
    let stroke = (h.min(w) / 200).max(2);
    let draw = |e: Result<(), DrawingAreaErrorKind<_>>| e.map_err(|e| e.to_string());
    for (_, b) in truth {
        draw(root.draw(&Rectangle::new(
            [
                (b.x0 as i32, b.y0 as i32),
                (b.x1 as i32 - 1, b.y1 as i32 - 1),
            ],
            RGBColor(0, 200, 0).stroke_width(1),
        )))?;
    }
    for (i, loc) in located.iter().enumerate() {
        let colour = BOX_COLOURS[i % BOX_COLOURS.len()];
        let b = loc.rect();
        let (x0, y0) = (b.x0 as i32, b.y0 as i32);
        let (x1, y1) = (b.x1 as i32 - 1, b.y1 as i32 - 1);
        draw(root.draw(&Rectangle::new(
            [(x0, y0), (x1, y1)],
            colour.stroke_width(stroke),
        )))?;
        let (px, py) = (loc.point[0] as i32, loc.point[1] as i32);
        draw(root.draw(&Circle::new((px, py), stroke as i32 + 3, colour.filled())))?;
        draw(root.draw(&Circle::new(
            (px, py),
            stroke as i32 + 3,
            BLACK.stroke_width(1),
        )))?;
        let label = format!("{} {:.2}", short(&loc.label, 28), loc.score);
        // Above the box, or inside its top when the box touches the top edge.
        let ty = if y0 as f64 > size + 2.0 {
            y0 - size as i32 - 2
        } else {
            y0 + 2
        };
        let style = TextStyle::from((FONT, size).into_font()).color(&colour);
        let (tw, th) = root
            .estimate_text_size(&label, &style)
            .map_err(|e| e.to_string())?;
        draw(root.draw(&Rectangle::new(
            [(x0, ty), (x0 + tw as i32 + 4, ty + th as i32 + 2)],
            BLACK.mix(0.6).filled(),
        )))?;
        draw(root.draw_text(&label, &style, (x0 + 2, ty + 1)))?;
    }
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramp_runs_blue_to_red_and_the_blend_leaves_the_lowest_cells_alone() {
        assert_eq!(ramp(0.0), [0.0, 0.0, 0.5]);
        assert_eq!(ramp(1.0), [0.5, 0.0, 0.0]);
        let map = RelevanceMap {
            cols: 2,
            rows: 1,
            width: 2,
            height: 1,
            values: vec![0.1, 0.3],
        };
        let mut px = vec![100u8; 6];
        blend_map(&mut px, &map);
        assert_eq!(&px[..3], &[100, 100, 100]);
        // 0.45 * 100 + 0.55 * 127.5 = 115.1 in red, 45 in green and blue.
        assert_eq!(&px[3..], &[115, 45, 45]);
    }
}
