//! CLIP image preprocessing, bit-exact with the reference pipeline (OpenAI `clip.load`'s
//! torchvision transform and transformers' `CLIPImageProcessor`, both of which resize with
//! PIL): shortest side to S with PIL's antialiased bicubic filter in PIL's 8-bit fixed-point
//! arithmetic, center crop S x S, scale to [0, 1], normalise with the bundle's mean/std,
//! written as planar CHW f32 into a caller-owned (reused) tensor slice.
//!
//! Only the output pixels that survive the center crop are computed; since PIL's separable
//! passes compute each output row and column independently, the result is identical to
//! resizing the whole image and cropping afterwards.

use super::frame::RgbImage;

/// PIL's fixed-point precision for 8-bit resampling (`32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

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
/// resize from `in_size` to `out_size`.
fn taps(in_size: usize, out_size: usize, range: std::ops::Range<usize>) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ss = 1.0 / filterscale;
    range
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) truncates toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin);
            let raw: Vec<f64> = (0..n)
                .map(|x| bicubic((x as f64 + xmin as f64 - center + 0.5) * ss))
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
/// `int(size * long / short)`, then a centered `size` x `size` crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub resized_width: usize,
    pub resized_height: usize,
    pub crop_left: usize,
    pub crop_top: usize,
}

impl Geometry {
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
    pub fn new(size: usize, mean: [f32; 3], std: [f32; 3]) -> Self {
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
            lut,
            scratch: Vec::new(),
            pixels: Vec::new(),
            taps: None,
        }
    }

    /// Side of the square output.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Number of f32 values one image occupies in the encoder input (3*S*S).
    pub fn tensor_len(&self) -> usize {
        3 * self.size * self.size
    }

    /// Resizes and crops `image` to S x S RGB8, exactly as PIL + center crop do
    /// (the tensor before scaling and normalisation).
    pub fn resize_crop(&mut self, image: &RgbImage) -> &[u8] {
        let s = self.size;
        let (w, h) = (image.width as usize, image.height as usize);
        let g = Geometry::new(w, h, s);
        let xs = g.crop_left..g.crop_left + s;
        let ys = g.crop_top..g.crop_top + s;

        if self.taps.as_ref().map(|t| t.input) != Some((w, h)) {
            self.taps = Some(CachedTaps {
                input: (w, h),
                horizontal: (g.resized_width != w).then(|| taps(w, g.resized_width, xs.clone())),
                vertical: (g.resized_height != h).then(|| taps(h, g.resized_height, ys.clone())),
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
