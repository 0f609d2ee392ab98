//! Encoded image bytes to RGB8, as the reference CLIP pipeline's PIL sees them: image
//! files ([`load_image_file`]), compressed frames ([`CompressedFrame::to_rgb`]) and any
//! JPEG/PNG/BMP/GIF/TIFF/WebP/PNM buffer ([`decode_bytes`]).

use std::path::Path;

use super::frame::{CompressedFrame, RgbImage};
use crate::error::frame::{
    check_size, DecodeError, FrameError, MAX_COMPRESSED_BYTES, MAX_PIXELS, MAX_SIDE,
};
use crate::error::{Error, Result};

/// Reads and decodes an image file (PNG, JPEG, BMP, GIF, TIFF, WebP, PNM) to RGB8.
pub fn load_image_file(path: &Path) -> Result<RgbImage<'static>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let too_large = |len: u64| Error::Decode {
        origin: path.display().to_string(),
        cause: DecodeError::Size(Box::new(FrameError::CompressedTooLarge { len })),
    };
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > MAX_COMPRESSED_BYTES {
        return Err(too_large(len));
    }
    // Read at most one byte past the limit: a file that grows meanwhile is still refused.
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_COMPRESSED_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_COMPRESSED_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    decode_bytes(&bytes).map_err(|cause| Error::Decode {
        origin: path.display().to_string(),
        cause,
    })
}

impl CompressedFrame<'_> {
    /// The checks that need no decoding: not empty, at most [`MAX_COMPRESSED_BYTES`], and
    /// starting with the signature of a format the decoders know.
    pub fn check(&self) -> std::result::Result<(), FrameError> {
        let undecodable = |cause| FrameError::Undecodable {
            format: self.format.to_string(),
            cause,
        };
        if self.data.is_empty() {
            return Err(FrameError::Empty {
                width: 0,
                height: 0,
            });
        }
        if self.data.len() as u64 > MAX_COMPRESSED_BYTES {
            return Err(FrameError::CompressedTooLarge {
                len: self.data.len() as u64,
            });
        }
        if image::guess_format(self.data).is_err() {
            return Err(undecodable(DecodeError::UnknownFormat));
        }
        Ok(())
    }

    /// Decodes the JPEG/PNG bytes to RGB8.
    pub fn to_rgb(&self) -> std::result::Result<RgbImage<'static>, FrameError> {
        self.check()?;
        decode_bytes(self.data).map_err(|cause| FrameError::Undecodable {
            format: self.format.to_string(),
            cause,
        })
    }
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
pub fn decode_bytes(bytes: &[u8]) -> std::result::Result<RgbImage<'static>, DecodeError> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        // libjpeg-turbo's decoder (as PIL uses it); the image crate's JPEG decoder differs
        // by a few levels after chroma upsampling. Formats libjpeg cannot turn into RGB
        // (CMYK, YCCK) fall through to the image crate.
        match decode_jpeg(bytes) {
            Ok(image) => return Ok(image),
            Err(JpegError::Unsupported) => {}
            Err(JpegError::Failed(cause)) => return Err(cause),
        }
    }
    use image::{DynamicImage, ImageReader};
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DecodeError::Image(e.to_string()))?;
    if reader.format().is_none() {
        return Err(DecodeError::UnknownFormat);
    }
    // The header's size first: a file that claims more pixels than the limit is refused
    // before a pixel buffer is reserved or any data decoded.
    let (width, height) = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .and_then(|mut r| {
            r.no_limits();
            r.into_dimensions().map_err(std::io::Error::other)
        })
        .map_err(|e| DecodeError::Image(e.to_string()))?;
    check_size(width, height).map_err(|e| DecodeError::Size(Box::new(e)))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| DecodeError::Image(e.to_string()))?;
    let (width, height) = (img.width(), img.height());
    check_size(width, height).map_err(|e| DecodeError::Size(Box::new(e)))?;
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
    RgbImage::from_packed(width, height, data).map_err(|e| DecodeError::Size(Box::new(e)))
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
    Failed(DecodeError),
}

fn libjpeg(e: impl std::fmt::Display) -> JpegError {
    JpegError::Failed(DecodeError::Jpeg(e.to_string()))
}

/// Decodes a JPEG with libjpeg (mozjpeg's build of the libjpeg-turbo decoder): islow IDCT
/// and fancy upsampling, the library defaults PIL decodes with. libjpeg reports fatal
/// errors by unwinding, which is caught here and turned into an error message.
fn decode_jpeg(bytes: &[u8]) -> std::result::Result<RgbImage<'static>, JpegError> {
    use mozjpeg::{ColorSpace, Decompress};
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let header = Decompress::new_mem(bytes).map_err(libjpeg)?;
        let (w, h) = header.size();
        let (width, height) = (w as u32, h as u32);
        check_size(width, height).map_err(|e| JpegError::Failed(DecodeError::Size(Box::new(e))))?;
        if !matches!(
            header.color_space(),
            ColorSpace::JCS_GRAYSCALE | ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB
        ) {
            return Err(JpegError::Unsupported);
        }
        let mut started = header.rgb().map_err(libjpeg)?;
        let data = started.read_scanlines::<u8>().map_err(libjpeg)?;
        started.finish().map_err(libjpeg)?;
        // libjpeg pads a truncated stream with grey rows and only warns; PIL refuses it
        // ("image file is truncated"). A complete stream has its end-of-image marker after
        // the last start-of-scan.
        if !has_end_marker(bytes) {
            return Err(JpegError::Failed(DecodeError::TruncatedJpeg));
        }
        RgbImage::from_packed(width, height, data)
            .map_err(|e| JpegError::Failed(DecodeError::Size(Box::new(e))))
    }));
    match result {
        Ok(r) => r,
        Err(panic) => Err(JpegError::Failed(DecodeError::Jpeg(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libjpeg failed".into()),
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_compressed_frame_over_the_size_limit_is_refused_before_decoding() {
        // calloc'd, never touched: the check reads the length and the first bytes only.
        let mut data = vec![0u8; MAX_COMPRESSED_BYTES as usize + 1];
        data[..3].copy_from_slice(&[0xFF, 0xD8, 0xFF]);
        let e = CompressedFrame {
            format: "jpeg",
            data: &data,
        }
        .to_rgb()
        .unwrap_err();
        assert_eq!(
            e,
            FrameError::CompressedTooLarge {
                len: MAX_COMPRESSED_BYTES + 1
            }
        );
        assert_eq!(e.reason().name(), "too_large");
        let e = CompressedFrame {
            format: "jpeg",
            data: b"not an image",
        }
        .check()
        .unwrap_err();
        assert_eq!(e.reason().name(), "undecodable");
    }

    use super::*;
    use crate::error::frame::RejectReason;

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
        assert_eq!(err, DecodeError::TruncatedJpeg);
        let compressed = CompressedFrame {
            format: "jpeg",
            data: &bytes[..bytes.len() / 2],
        };
        assert_eq!(
            compressed.to_rgb().unwrap_err().reason(),
            RejectReason::Undecodable
        );
    }
}
