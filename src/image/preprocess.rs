//! Image preprocessing, bit-exact with the reference pipelines, all of which resize with
//! PIL (transformers' `CLIPImageProcessor` and `SiglipImageProcessor`, and torchvision's
//! `Resize` on PIL images in OpenAI's `clip.load` and open_clip): PIL's antialiased bicubic
//! or bilinear filter in PIL's 8-bit fixed-point arithmetic, then scale to [0, 1] and
//! normalise with the bundle's mean/std, written as planar CHW f32 into a caller-owned
//! (reused) tensor slice. The geometry is the family's ([`PreprocessSpec`]): shortest side to
//! S and a centre crop S x S (CLIP, MobileCLIP), or both sides to S (SigLIP's squash).
//!
//! Only the output pixels that survive the center crop are computed; since PIL's separable
//! passes compute each output row and column independently, the result is identical to
//! resizing the whole image and cropping afterwards.

use serde::{Deserialize, Serialize};

use super::frame::RgbImage;

/// How the image is brought to the encoder's square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Shortest side to S (the long side `int(S * long / short)`), then a centred S x S crop.
    ShortestEdgeCrop,
    /// Both sides to S; the aspect ratio is not kept (`SiglipImageProcessor`).
    Squash,
}

/// PIL's antialiased resampling filter (torchvision's `Resize` on PIL images uses it too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resample {
    Bicubic,
    Bilinear,
}

/// Where a centre crop starts when the margin `d` is odd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropOffset {
    /// transformers' `center_crop`: `d // 2`.
    Floor,
    /// torchvision's `CenterCrop` (open_clip): `int(round(d / 2))`, halves to even.
    RoundHalfEven,
}

impl CropOffset {
    /// The crop's first index for a margin of `margin` pixels.
    pub fn offset(self, margin: usize) -> usize {
        match self {
            CropOffset::Floor => margin / 2,
            // d / 2 is a whole or a half number; a half rounds to the even neighbour.
            CropOffset::RoundHalfEven => {
                let half = margin / 2;
                if margin % 2 == 1 && half % 2 == 1 {
                    half + 1
                } else {
                    half
                }
            }
        }
    }
}

/// The `preprocess:` section of a format-2 manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessSpec {
    pub resize: Resize,
    pub resample: Resample,
    #[serde(default = "default_crop_offset")]
    pub crop_offset: CropOffset,
}

fn default_crop_offset() -> CropOffset {
    CropOffset::Floor
}

impl PreprocessSpec {
    /// The reference CLIP pipeline (`CLIPImageProcessor`).
    pub const CLIP: PreprocessSpec = PreprocessSpec {
        resize: Resize::ShortestEdgeCrop,
        resample: Resample::Bicubic,
        crop_offset: CropOffset::Floor,
    };

    /// One line for `info` and logs, e.g. `shortest_edge_crop, bicubic, crop offset floor`.
    pub fn describe(&self) -> String {
        let resample = match self.resample {
            Resample::Bicubic => "bicubic",
            Resample::Bilinear => "bilinear",
        };
        match self.resize {
            Resize::ShortestEdgeCrop => {
                let offset = match self.crop_offset {
                    CropOffset::Floor => "floor",
                    CropOffset::RoundHalfEven => "round_half_even",
                };
                format!("shortest_edge_crop, {resample}, crop offset {offset}")
            }
            Resize::Squash => format!("squash, {resample}"),
        }
    }
}

/// PIL's fixed-point precision for 8-bit resampling (`32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

impl Resample {
    /// PIL's filter support (in input pixels at scale 1).
    fn support(self) -> f64 {
        match self {
            Resample::Bicubic => 2.0,
            Resample::Bilinear => 1.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Resample::Bicubic => bicubic(x),
            Resample::Bilinear => bilinear(x),
        }
    }
}

/// PIL's bilinear (triangle) kernel, support 1.
fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// PIL's bicubic kernel (a = -0.5), support 2.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Filter taps of one output sample: first input index and fixed-point weights.
#[derive(Debug, Clone)]
struct Taps {
    start: usize,
    weights: Vec<i32>,
}

/// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc` for output samples `range` of a
/// resize from `in_size` to `out_size` with `filter`.
fn taps(
    filter: Resample,
    in_size: usize,
    out_size: usize,
    range: std::ops::Range<usize>,
) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ss = 1.0 / filterscale;
    range
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) truncates toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin);
            let raw: Vec<f64> = (0..n)
                .map(|x| filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    let scaled = w * f64::from(1u32 << PRECISION_BITS);
                    if w < 0.0 {
                        (-0.5 + scaled) as i32
                    } else {
                        (0.5 + scaled) as i32
                    }
                })
                .collect();
            Taps {
                start: xmin,
                weights,
            }
        })
        .collect()
}

#[inline]
fn clip8(v: i32) -> u8 {
    if v >= (1 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// The resize geometry of the reference: the shortest side becomes `size`, the other
/// `int(size * long / short)`, then a centered `size` x `size` crop ([`Geometry::new`]);
/// or both sides `size` ([`Geometry::of`] with [`Resize::Squash`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub resized_width: usize,
    pub resized_height: usize,
    pub crop_left: usize,
    pub crop_top: usize,
}

impl Geometry {
    /// The geometry of `spec` for a `width` x `height` image.
    pub fn of(spec: &PreprocessSpec, width: usize, height: usize, size: usize) -> Self {
        match spec.resize {
            Resize::Squash => Geometry {
                resized_width: size,
                resized_height: size,
                crop_left: 0,
                crop_top: 0,
            },
            Resize::ShortestEdgeCrop => {
                let g = Self::new(width, height, size);
                Geometry {
                    crop_left: spec
                        .crop_offset
                        .offset(g.resized_width.saturating_sub(size)),
                    crop_top: spec
                        .crop_offset
                        .offset(g.resized_height.saturating_sub(size)),
                    ..g
                }
            }
        }
    }

    /// CLIP's geometry (shortest edge, transformers' crop offset).
    pub fn new(width: usize, height: usize, size: usize) -> Self {
        let (resized_width, resized_height) = if width <= height {
            (size, (size as f64 * height as f64 / width as f64) as usize)
        } else {
            ((size as f64 * width as f64 / height as f64) as usize, size)
        };
        Geometry {
            resized_width,
            resized_height,
            crop_left: resized_width.saturating_sub(size) / 2,
            crop_top: resized_height.saturating_sub(size) / 2,
        }
    }
}

/// Reusable preprocessing state for one model's image size and normalisation.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    size: usize,
    spec: PreprocessSpec,
    /// Per channel, the normalised value of each 8-bit level: `(v/255 - mean) / std`.
    lut: [[f32; 256]; 3],
    /// Horizontally resized rows (RGB8), reused between calls.
    scratch: Vec<u8>,
    pixels: Vec<u8>,
    /// Filter taps of the last input size (a camera keeps its resolution).
    taps: Option<CachedTaps>,
}

#[derive(Debug, Clone)]
struct CachedTaps {
    input: (usize, usize),
    horizontal: Option<Vec<Taps>>,
    vertical: Option<Vec<Taps>>,
}

impl Preprocessor {
    /// CLIP's preprocessing ([`PreprocessSpec::CLIP`]) at `size` with `mean` / `std`.
    pub fn new(size: usize, mean: [f32; 3], std: [f32; 3]) -> Self {
        Self::with_spec(PreprocessSpec::CLIP, size, mean, std)
    }

    /// The preprocessing of `spec` at `size` with `mean` / `std`.
    pub fn with_spec(spec: PreprocessSpec, size: usize, mean: [f32; 3], std: [f32; 3]) -> Self {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, value) in table.iter_mut().enumerate() {
                // As the reference: rescale in f64, round to f32, then (x - mean) / std in f32.
                let scaled = (v as f64 * (1.0 / 255.0)) as f32;
                *value = (scaled - mean[c]) / std[c];
            }
        }
        Preprocessor {
            size,
            spec,
            lut,
            scratch: Vec::new(),
            pixels: Vec::new(),
            taps: None,
        }
    }

    /// The geometry and filter.
    pub fn spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    /// Side of the square output.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Number of f32 values one image occupies in the encoder input (3*S*S).
    pub fn tensor_len(&self) -> usize {
        3 * self.size * self.size
    }

    /// Resizes (and crops) `image` to S x S RGB8, exactly as PIL (+ the centre crop) do
    /// (the tensor before scaling and normalisation).
    pub fn resize_crop(&mut self, image: &RgbImage) -> &[u8] {
        let s = self.size;
        let filter = self.spec.resample;
        let (w, h) = (image.width as usize, image.height as usize);
        let g = Geometry::of(&self.spec, w, h, s);
        let xs = g.crop_left..g.crop_left + s;
        let ys = g.crop_top..g.crop_top + s;

        if self.taps.as_ref().map(|t| t.input) != Some((w, h)) {
            self.taps = Some(CachedTaps {
                input: (w, h),
                horizontal: (g.resized_width != w)
                    .then(|| taps(filter, w, g.resized_width, xs.clone())),
                vertical: (g.resized_height != h)
                    .then(|| taps(filter, h, g.resized_height, ys.clone())),
            });
        }
        let cached = self.taps.as_ref().expect("set above");
        let (htaps, vtaps) = (&cached.horizontal, &cached.vertical);

        // Horizontal pass over the source rows the vertical taps will read.
        let (row_first, row_last) = match vtaps {
            Some(t) => (
                t.iter().map(|t| t.start).min().unwrap_or(0),
                t.iter()
                    .map(|t| t.start + t.weights.len())
                    .max()
                    .unwrap_or(0),
            ),
            None => (ys.start, ys.end),
        };
        let rows = row_last - row_first;
        self.scratch.clear();
        self.scratch.resize(rows * s * 3, 0);
        for (r, y) in (row_first..row_last).enumerate() {
            let src = image.row(y);
            let dst = &mut self.scratch[r * s * 3..(r + 1) * s * 3];
            match htaps {
                Some(taps) => {
                    for (ox, t) in taps.iter().enumerate() {
                        let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
                        for (k, &wgt) in t.weights.iter().enumerate() {
                            let p = &src[(t.start + k) * 3..(t.start + k) * 3 + 3];
                            acc[0] += i32::from(p[0]) * wgt;
                            acc[1] += i32::from(p[1]) * wgt;
                            acc[2] += i32::from(p[2]) * wgt;
                        }
                        dst[ox * 3] = clip8(acc[0]);
                        dst[ox * 3 + 1] = clip8(acc[1]);
                        dst[ox * 3 + 2] = clip8(acc[2]);
                    }
                }
                None => dst.copy_from_slice(&src[xs.start * 3..xs.end * 3]),
            }
        }

        // Vertical pass.
        self.pixels.clear();
        self.pixels.resize(s * s * 3, 0);
        match vtaps {
            Some(taps) => {
                for (oy, t) in taps.iter().enumerate() {
                    let out = &mut self.pixels[oy * s * 3..(oy + 1) * s * 3];
                    for (i, o) in out.iter_mut().enumerate() {
                        let mut acc = 1i32 << (PRECISION_BITS - 1);
                        for (k, &wgt) in t.weights.iter().enumerate() {
                            let r = t.start + k - row_first;
                            acc += i32::from(self.scratch[r * s * 3 + i]) * wgt;
                        }
                        *o = clip8(acc);
                    }
                }
            }
            None => {
                let start = (ys.start - row_first) * s * 3;
                self.pixels
                    .copy_from_slice(&self.scratch[start..start + s * s * 3]);
            }
        }
        &self.pixels
    }

    /// Full preprocessing of one image into `out` (length 3*S*S, planar CHW).
    pub fn preprocess_into(&mut self, image: &RgbImage, out: &mut [f32]) {
        let plane = self.size * self.size;
        assert_eq!(out.len(), 3 * plane, "output slice must hold 3*S*S values");
        self.resize_crop(image);
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for (i, px) in self.pixels.chunks_exact(3).enumerate() {
            r[i] = self.lut[0][px[0] as usize];
            g[i] = self.lut[1][px[1] as usize];
            b[i] = self.lut[2][px[2] as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_offsets_follow_python() {
        // Python: int(round(d / 2)) for d in 0..8 -> 0 0 1 2 2 2 3 4; d // 2 -> 0 0 1 1 2 2 3 3.
        let round: Vec<usize> = (0..8)
            .map(|d| CropOffset::RoundHalfEven.offset(d))
            .collect();
        assert_eq!(round, vec![0, 0, 1, 2, 2, 2, 3, 4]);
        let floor: Vec<usize> = (0..8).map(|d| CropOffset::Floor.offset(d)).collect();
        assert_eq!(floor, vec![0, 0, 1, 1, 2, 2, 3, 3]);
    }

    #[test]
    fn geometry_matches_reference_rounding() {
        // int() truncation of the long side, floor of the crop offset.
        assert_eq!(
            Geometry::new(640, 480, 224),
            Geometry {
                resized_width: 298,
                resized_height: 224,
                crop_left: 37,
                crop_top: 0
            }
        );
        let g = Geometry::new(300, 1, 224);
        assert_eq!((g.resized_width, g.resized_height), (67200, 224));
        assert_eq!(Geometry::new(224, 224, 224).crop_left, 0);
    }

    #[test]
    fn identity_size_is_a_copy() {
        let data: Vec<u8> = (0..224 * 224 * 3).map(|i| (i % 251) as u8).collect();
        let img = RgbImage::from_packed(224, 224, data.clone()).unwrap();
        let mut p = Preprocessor::new(224, [0.0; 3], [1.0; 3]);
        assert_eq!(p.resize_crop(&img), &data[..]);
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_packed(37, 91, vec![77; 37 * 91 * 3]).unwrap();
        let mut p = Preprocessor::new(32, [0.0; 3], [1.0; 3]);
        assert!(p.resize_crop(&img).iter().all(|&v| v == 77));
    }
}
