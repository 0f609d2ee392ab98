//! Camera frames: a raw [`Frame`] (pixels borrowed from a message or a
//! buffer) or a [`CompressedFrame`] (JPEG/PNG bytes, decoded by [`super::decode`]), turned
//! into the [`RgbImage`] the preprocessor reads. A malformed frame is a typed
//! [`FrameError`], never a panic.

use std::borrow::Cow;

use crate::error::frame::{check_size, FrameError};

/// Raw pixel encodings accepted from cameras (the `sensor_msgs/Image` encoding names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Rgb8,
    Bgr8,
    Rgba8,
    Bgra8,
    Mono8,
    /// 16-bit grey, scaled to 8 bits by keeping the high byte (as PIL and cv_bridge do).
    Mono16,
}

impl Encoding {
    /// Parses a ROS encoding name (`rgb8`, `bgr8`, `rgba8`, `bgra8`, `mono8`, `mono16`;
    /// also the OpenCV aliases `8UC1`, `8UC3`, `16UC1` for single-plane formats).
    pub fn from_ros(name: &str) -> Option<Self> {
        Some(match name {
            "rgb8" => Encoding::Rgb8,
            "bgr8" | "8UC3" => Encoding::Bgr8,
            "rgba8" => Encoding::Rgba8,
            "bgra8" | "8UC4" => Encoding::Bgra8,
            "mono8" | "8UC1" => Encoding::Mono8,
            "mono16" | "16UC1" => Encoding::Mono16,
            _ => return None,
        })
    }

    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            Encoding::Rgb8 | Encoding::Bgr8 => 3,
            Encoding::Rgba8 | Encoding::Bgra8 => 4,
            Encoding::Mono8 => 1,
            Encoding::Mono16 => 2,
        }
    }
}

/// A raw camera frame, borrowing its pixel bytes (as `sensor_msgs/Image` carries them).
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub width: u32,
    pub height: u32,
    /// Bytes per row, at least `width * bytes_per_pixel`.
    pub step: u32,
    /// ROS encoding name.
    pub encoding: &'a str,
    /// Byte order of 16-bit encodings.
    pub is_bigendian: bool,
    pub data: &'a [u8],
}

/// A compressed frame (`sensor_msgs/CompressedImage`): `format` as ROS fills it
/// (`jpeg`, `png`, `rgb8; jpeg compressed bgr8`, ...); the bytes decide the codec.
#[derive(Debug, Clone, Copy)]
pub struct CompressedFrame<'a> {
    pub format: &'a str,
    pub data: &'a [u8],
}

/// RGB8 pixels, rows `stride` bytes apart, either borrowed or owned.
#[derive(Debug, Clone)]
pub struct RgbImage<'a> {
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub data: Cow<'a, [u8]>,
}

impl RgbImage<'static> {
    /// An owned, tightly packed image.
    pub fn from_packed(width: u32, height: u32, data: Vec<u8>) -> Result<Self, FrameError> {
        check_size(width, height)?;
        let need = u64::from(width) * u64::from(height) * 3;
        if (data.len() as u64) < need {
            return Err(FrameError::DataTooShort {
                len: data.len() as u64,
                need,
            });
        }
        Ok(RgbImage {
            width,
            height,
            stride: width as usize * 3,
            data: Cow::Owned(data),
        })
    }
}

impl RgbImage<'_> {
    /// Row `y` as `width*3` bytes.
    #[inline]
    pub fn row(&self, y: usize) -> &[u8] {
        let start = y * self.stride;
        &self.data[start..start + self.width as usize * 3]
    }

    /// The pixels as one tightly packed buffer (rows `width*3` bytes apart), copied.
    pub fn to_packed(&self) -> Vec<u8> {
        let mut pixels = Vec::with_capacity(self.width as usize * self.height as usize * 3);
        for y in 0..self.height as usize {
            pixels.extend_from_slice(self.row(y));
        }
        pixels
    }
}

impl<'a> Frame<'a> {
    /// The checks [`Frame::to_rgb`] makes before touching a pixel (encoding, size limits,
    /// step, data length): constant time, so a receiver can refuse a malformed frame the
    /// moment it arrives. Returns the parsed encoding.
    pub fn check(&self) -> Result<Encoding, FrameError> {
        let encoding = Encoding::from_ros(self.encoding)
            .ok_or_else(|| FrameError::UnknownEncoding(self.encoding.to_string()))?;
        check_size(self.width, self.height)?;
        let bpp = encoding.bytes_per_pixel() as u64;
        let min_step = u64::from(self.width) * bpp;
        let step = u64::from(self.step);
        if step < min_step {
            return Err(FrameError::StepTooSmall {
                step,
                min: min_step,
            });
        }
        // The last row only needs its pixels, but ROS publishers always send step*height.
        let need = step * u64::from(self.height);
        if (self.data.len() as u64) < need {
            return Err(FrameError::DataTooShort {
                len: self.data.len() as u64,
                need,
            });
        }
        Ok(encoding)
    }

    /// Validates the frame and returns its pixels as RGB8: borrowed for tightly usable
    /// `rgb8`, converted otherwise (BGR swapped, alpha dropped, grey replicated).
    pub fn to_rgb(&self) -> Result<RgbImage<'a>, FrameError> {
        let encoding = self.check()?;
        let bpp = encoding.bytes_per_pixel() as u64;
        let (w, h, step) = (
            self.width as usize,
            self.height as usize,
            self.step as usize,
        );
        if encoding == Encoding::Rgb8 {
            return Ok(RgbImage {
                width: self.width,
                height: self.height,
                stride: step,
                data: Cow::Borrowed(&self.data[..step * h]),
            });
        }
        let mut out = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            let row = &self.data[y * step..y * step + w * bpp as usize];
            match encoding {
                Encoding::Rgb8 => unreachable!("handled above"),
                Encoding::Bgr8 => row
                    .chunks_exact(3)
                    .for_each(|p| out.extend_from_slice(&[p[2], p[1], p[0]])),
                Encoding::Rgba8 => row
                    .chunks_exact(4)
                    .for_each(|p| out.extend_from_slice(&p[..3])),
                Encoding::Bgra8 => row
                    .chunks_exact(4)
                    .for_each(|p| out.extend_from_slice(&[p[2], p[1], p[0]])),
                Encoding::Mono8 => row.iter().for_each(|&v| out.extend_from_slice(&[v, v, v])),
                Encoding::Mono16 => row.chunks_exact(2).for_each(|p| {
                    let hi = if self.is_bigendian { p[0] } else { p[1] };
                    out.extend_from_slice(&[hi, hi, hi]);
                }),
            }
        }
        Ok(RgbImage {
            width: self.width,
            height: self.height,
            stride: w * 3,
            data: Cow::Owned(out),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::frame::RejectReason;

    #[test]
    fn malformed_frames_are_typed_errors() {
        let data = [0u8; 12];
        let frame = |w, h, step, enc, data| Frame {
            width: w,
            height: h,
            step,
            encoding: enc,
            is_bigendian: false,
            data,
        };
        assert_eq!(
            frame(2, 2, 6, "yuv422", &data[..])
                .to_rgb()
                .unwrap_err()
                .reason(),
            RejectReason::UnknownEncoding
        );
        assert_eq!(
            frame(0, 0, 0, "rgb8", &data[..])
                .to_rgb()
                .unwrap_err()
                .reason(),
            RejectReason::Empty
        );
        assert_eq!(
            frame(2, 2, 5, "rgb8", &data[..])
                .to_rgb()
                .unwrap_err()
                .reason(),
            RejectReason::StepTooSmall
        );
        assert_eq!(
            frame(2, 3, 6, "rgb8", &data[..])
                .to_rgb()
                .unwrap_err()
                .reason(),
            RejectReason::DataTooShort
        );
        assert_eq!(
            frame(100_000, 100_000, 300_000, "rgb8", &data[..])
                .to_rgb()
                .unwrap_err()
                .reason(),
            RejectReason::TooLarge
        );
        let ok = frame(2, 2, 6, "bgr8", &data[..]).to_rgb().unwrap();
        assert_eq!(ok.data.len(), 12);
    }

    /// A 3x2 image whose pixel (x, y) has the RGB value (10x+y, 100+10x+y, 200+10x+y),
    /// packed row by row: what every encoding below must come out as.
    fn expected_rgb() -> Vec<u8> {
        let mut out = Vec::new();
        for y in 0..2u8 {
            for x in 0..3u8 {
                out.extend_from_slice(&[10 * x + y, 100 + 10 * x + y, 200 + 10 * x + y]);
            }
        }
        out
    }

    /// The same image in `encoding`, each row followed by `pad` junk bytes.
    fn encode(encoding: &str, pad: usize) -> (Vec<u8>, u32) {
        let rgb = expected_rgb();
        let mut data = Vec::new();
        for row in rgb.chunks_exact(9) {
            for p in row.chunks_exact(3) {
                let (r, g, b) = (p[0], p[1], p[2]);
                match encoding {
                    "rgb8" => data.extend_from_slice(&[r, g, b]),
                    "bgr8" => data.extend_from_slice(&[b, g, r]),
                    "rgba8" => data.extend_from_slice(&[r, g, b, 77]),
                    "bgra8" => data.extend_from_slice(&[b, g, r, 77]),
                    other => unreachable!("{other}"),
                }
            }
            data.extend(std::iter::repeat_n(0xEE, pad));
        }
        let step = (data.len() / 2) as u32;
        (data, step)
    }

    fn convert(encoding: &str, step: u32, is_bigendian: bool, data: &[u8]) -> Vec<u8> {
        let frame = Frame {
            width: 3,
            height: 2,
            step,
            encoding,
            is_bigendian,
            data,
        };
        let rgb = frame.to_rgb().unwrap();
        (0..2).flat_map(|y| rgb.row(y).to_vec()).collect()
    }

    #[test]
    fn colour_encodings_give_known_rgb_with_and_without_row_padding() {
        for encoding in ["rgb8", "bgr8", "rgba8", "bgra8"] {
            for pad in [0, 1, 5] {
                let (data, step) = encode(encoding, pad);
                assert_eq!(
                    convert(encoding, step, false, &data),
                    expected_rgb(),
                    "{encoding}, {pad} padding bytes per row"
                );
            }
        }
        // OpenCV aliases.
        let (data, step) = encode("bgr8", 0);
        assert_eq!(convert("8UC3", step, false, &data), expected_rgb());
        let (data, step) = encode("bgra8", 2);
        assert_eq!(convert("8UC4", step, false, &data), expected_rgb());
    }

    #[test]
    fn grey_encodings_replicate_and_mono16_keeps_the_high_byte_in_either_order() {
        // mono8, step 4 (one padding byte), odd width 3.
        let mono8 = [1, 2, 3, 0xEE, 4, 5, 6, 0xEE];
        let grey = |vals: &[u8]| -> Vec<u8> { vals.iter().flat_map(|&v| [v, v, v]).collect() };
        assert_eq!(
            convert("mono8", 4, false, &mono8),
            grey(&[1, 2, 3, 4, 5, 6])
        );
        assert_eq!(convert("8UC1", 4, false, &mono8), grey(&[1, 2, 3, 4, 5, 6]));
        // mono16 values 0x1234, 0xAB00, 0x00FF / 0xFFFF, 0x0100, 0x7F80, two padding bytes.
        let values: [u16; 6] = [0x1234, 0xAB00, 0x00FF, 0xFFFF, 0x0100, 0x7F80];
        let high = grey(&[0x12, 0xAB, 0x00, 0xFF, 0x01, 0x7F]);
        for big in [false, true] {
            let mut data = Vec::new();
            for row in values.chunks_exact(3) {
                for v in row {
                    data.extend_from_slice(&if big {
                        v.to_be_bytes()
                    } else {
                        v.to_le_bytes()
                    });
                }
                data.extend_from_slice(&[0xEE, 0xEE]);
            }
            assert_eq!(convert("mono16", 8, big, &data), high, "big endian: {big}");
            assert_eq!(convert("16UC1", 8, big, &data), high, "big endian: {big}");
        }
    }

    #[test]
    fn tight_rgb8_is_borrowed_not_copied() {
        let (data, step) = encode("rgb8", 3);
        let frame = Frame {
            width: 3,
            height: 2,
            step,
            encoding: "rgb8",
            is_bigendian: false,
            data: &data,
        };
        let rgb = frame.to_rgb().unwrap();
        assert!(matches!(rgb.data, Cow::Borrowed(_)));
        assert_eq!(rgb.stride, step as usize);
    }
}
