//! Image input: a camera [`Frame`] (raw pixels borrowed from a message, a bag record or a
//! buffer), a [`CompressedFrame`] (JPEG/PNG bytes) or an image file, turned into the RGB8
//! pixels the preprocessor reads. Every malformed input is a typed [`FrameError`] with a
//! short machine-readable reason, so callers can count rejects by reason and skip them.

use std::borrow::Cow;
use std::path::Path;

use crate::error::{Error, Result};

/// Largest accepted side of any image, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// Largest accepted pixel count of any image (a 16k x 8k panorama).
pub const MAX_PIXELS: u64 = 1 << 27;

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

/// Why a frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown encoding `{0}` (expected rgb8, bgr8, rgba8, bgra8, mono8 or mono16)")]
    UnknownEncoding(String),
    #[error("empty image ({width}x{height})")]
    Empty { width: u32, height: u32 },
    #[error(
        "image of {width}x{height} exceeds the limit ({MAX_SIDE} per side, {MAX_PIXELS} pixels)"
    )]
    TooLarge { width: u32, height: u32 },
    #[error("step {step} is smaller than width*bytes_per_pixel = {min}")]
    StepTooSmall { step: u64, min: u64 },
    #[error("data holds {len} bytes, step*height needs {need}")]
    DataTooShort { len: u64, need: u64 },
    #[error("cannot decode compressed image ({format}): {message}")]
    Undecodable { format: String, message: String },
}

impl FrameError {
    /// A short stable name for counting rejects by reason (diagnostics, metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            FrameError::UnknownEncoding(_) => "unknown_encoding",
            FrameError::Empty { .. } => "empty",
            FrameError::TooLarge { .. } => "too_large",
            FrameError::StepTooSmall { .. } => "step_too_small",
            FrameError::DataTooShort { .. } => "data_too_short",
            FrameError::Undecodable { .. } => "undecodable",
        }
    }
}

fn check_size(width: u32, height: u32) -> Result<(), FrameError> {
    if width == 0 || height == 0 {
        return Err(FrameError::Empty { width, height });
    }
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(FrameError::TooLarge { width, height });
    }
    Ok(())
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
}

impl<'a> Frame<'a> {
    /// Validates the frame and returns its pixels as RGB8: borrowed for tightly usable
    /// `rgb8`, converted otherwise (BGR swapped, alpha dropped, grey replicated).
    pub fn to_rgb(&self) -> Result<RgbImage<'a>, FrameError> {
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

impl CompressedFrame<'_> {
    /// Decodes the JPEG/PNG bytes to RGB8.
    pub fn to_rgb(&self) -> Result<RgbImage<'static>, FrameError> {
        decode_bytes(self.data).map_err(|message| FrameError::Undecodable {
            format: self.format.to_string(),
            message,
        })
    }
}

/// Reads and decodes an image file (PNG, JPEG, BMP, GIF, TIFF, WebP, PNM) to RGB8.
pub fn load_image_file(path: &Path) -> Result<RgbImage<'static>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_bytes(&bytes).map_err(|message| Error::Decode {
        origin: path.display().to_string(),
        message,
    })
}

/// Composites one 8-bit sample with alpha `a` over white, as PIL's `alpha_composite` onto
/// an opaque white background rounds it: `round_half_up((c*a + 255*(255-a)) / 255)`.
#[inline]
fn over_white(c: u8, a: u8) -> u8 {
    let (c, a) = (u32::from(c), u32::from(a));
    let x = c * a + 255 * (255 - a);
    ((2 * x + 255) / 510) as u8
}

/// Decodes encoded image bytes to RGB8 the way the reference CLIP pipeline sees a PIL image
/// (transformers' `CLIPImageProcessor` on `Image.open(..)`): transparency (alpha, palette
/// or colour-key `tRNS`) is composited onto white, grey is replicated, 16-bit RGB keeps the
/// high byte, 16-bit grey is clipped to 255 (PIL's `I;16` to `RGB` conversion), and EXIF
/// orientation is ignored.
pub fn decode_bytes(bytes: &[u8]) -> std::result::Result<RgbImage<'static>, String> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        // libjpeg-turbo's decoder (as PIL uses it); the image crate's JPEG decoder differs
        // by a few levels after chroma upsampling. Formats libjpeg cannot turn into RGB
        // (CMYK, YCCK) fall through to the image crate.
        match decode_jpeg(bytes) {
            Ok(image) => return Ok(image),
            Err(JpegError::Unsupported) => {}
            Err(JpegError::Failed(message)) => return Err(message),
        }
    }
    use image::{DynamicImage, ImageReader};
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("unrecognised image format".into());
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| e.to_string())?;
    let (width, height) = (img.width(), img.height());
    check_size(width, height).map_err(|e| e.to_string())?;
    let grey = |v: u8| [v, v, v];
    let data: Vec<u8> = match img {
        DynamicImage::ImageRgb8(buf) => buf.into_raw(),
        DynamicImage::ImageLuma8(buf) => buf.into_raw().into_iter().flat_map(grey).collect(),
        DynamicImage::ImageLumaA8(buf) => buf
            .into_raw()
            .chunks_exact(2)
            .flat_map(|p| grey(over_white(p[0], p[1])))
            .collect(),
        DynamicImage::ImageRgba8(buf) => buf
            .into_raw()
            .chunks_exact(4)
            .flat_map(|p| {
                [
                    over_white(p[0], p[3]),
                    over_white(p[1], p[3]),
                    over_white(p[2], p[3]),
                ]
            })
            .collect(),
        DynamicImage::ImageLuma16(buf) => buf
            .into_raw()
            .into_iter()
            .flat_map(|v| grey(v.min(255) as u8))
            .collect(),
        DynamicImage::ImageLumaA16(buf) => buf
            .into_raw()
            .chunks_exact(2)
            .flat_map(|p| grey(over_white((p[0] >> 8) as u8, (p[1] >> 8) as u8)))
            .collect(),
        DynamicImage::ImageRgb16(buf) => {
            buf.into_raw().into_iter().map(|v| (v >> 8) as u8).collect()
        }
        DynamicImage::ImageRgba16(buf) => buf
            .into_raw()
            .chunks_exact(4)
            .flat_map(|p| {
                let a = (p[3] >> 8) as u8;
                [
                    over_white((p[0] >> 8) as u8, a),
                    over_white((p[1] >> 8) as u8, a),
                    over_white((p[2] >> 8) as u8, a),
                ]
            })
            .collect(),
        other => other.to_rgb8().into_raw(),
    };
    RgbImage::from_packed(width, height, data).map_err(|e| e.to_string())
}

/// Whether the JPEG stream has an end-of-image marker (`FF D9`) after its last
/// start-of-scan marker (`FF DA`).
fn has_end_marker(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let last_eoi = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]);
    matches!((last_sos, last_eoi), (Some(sos), Some(eoi)) if eoi > sos)
}

enum JpegError {
    Unsupported,
    Failed(String),
}

/// Decodes a JPEG with libjpeg (mozjpeg's build of the libjpeg-turbo decoder): islow IDCT
/// and fancy upsampling, the library defaults PIL decodes with. libjpeg reports fatal
/// errors by unwinding, which is caught here and turned into an error message.
fn decode_jpeg(bytes: &[u8]) -> std::result::Result<RgbImage<'static>, JpegError> {
    use mozjpeg::{ColorSpace, Decompress};
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let header = Decompress::new_mem(bytes).map_err(|e| JpegError::Failed(e.to_string()))?;
        let (w, h) = header.size();
        let (width, height) = (w as u32, h as u32);
        check_size(width, height).map_err(|e| JpegError::Failed(e.to_string()))?;
        if !matches!(
            header.color_space(),
            ColorSpace::JCS_GRAYSCALE | ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB
        ) {
            return Err(JpegError::Unsupported);
        }
        let mut started = header.rgb().map_err(|e| JpegError::Failed(e.to_string()))?;
        let data = started
            .read_scanlines::<u8>()
            .map_err(|e| JpegError::Failed(e.to_string()))?;
        started
            .finish()
            .map_err(|e| JpegError::Failed(e.to_string()))?;
        // libjpeg pads a truncated stream with grey rows and only warns; PIL refuses it
        // ("image file is truncated"). A complete stream has its end-of-image marker after
        // the last start-of-scan.
        if !has_end_marker(bytes) {
            return Err(JpegError::Failed(
                "truncated JPEG: no end-of-image marker after the last scan".into(),
            ));
        }
        RgbImage::from_packed(width, height, data).map_err(|e| JpegError::Failed(e.to_string()))
    }));
    match result {
        Ok(r) => r,
        Err(panic) => Err(JpegError::Failed(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libjpeg failed".into()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compositing_over_white_rounds_like_pil() {
        assert_eq!(over_white(0, 0), 255);
        assert_eq!(over_white(10, 255), 10);
        assert_eq!(over_white(0, 128), 127);
    }

    #[test]
    fn truncated_jpeg_is_rejected() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/preprocess/jpeg420_w640_h480.jpg"
        );
        let bytes = std::fs::read(path).unwrap();
        assert!(decode_bytes(&bytes).is_ok());
        let err = decode_bytes(&bytes[..bytes.len() * 2 / 3]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        let compressed = CompressedFrame {
            format: "jpeg",
            data: &bytes[..bytes.len() / 2],
        };
        assert_eq!(compressed.to_rgb().unwrap_err().reason(), "undecodable");
    }

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
            "unknown_encoding"
        );
        assert_eq!(
            frame(0, 0, 0, "rgb8", &data[..])
                .to_rgb()
                .unwrap_err()
                .reason(),
            "empty"
        );
        assert_eq!(
            frame(2, 2, 5, "rgb8", &data[..])
                .to_rgb()
                .unwrap_err()
                .reason(),
            "step_too_small"
        );
        assert_eq!(
            frame(2, 3, 6, "rgb8", &data[..])
                .to_rgb()
                .unwrap_err()
                .reason(),
            "data_too_short"
        );
        assert_eq!(
            frame(100_000, 100_000, 300_000, "rgb8", &data[..])
                .to_rgb()
                .unwrap_err()
                .reason(),
            "too_large"
        );
        let ok = frame(2, 2, 6, "bgr8", &data[..]).to_rgb().unwrap();
        assert_eq!(ok.data.len(), 12);
    }
}
