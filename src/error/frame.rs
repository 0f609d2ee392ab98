//! Why an image could not be used: [`FrameError`] for frames (with a stable reason for
//! counting rejects) and [`DecodeError`] for encoded bytes, and the size limits both check
//! before any pixel memory is reserved. On the crate's floor so that [`super::Error`] wraps
//! them without a circle; `crate::image::error` is this module.

/// Largest accepted side of any image, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// Largest accepted pixel count of any image (a 16k x 8k panorama).
pub const MAX_PIXELS: u64 = 1 << 27;

/// Largest accepted compressed frame or image file, in bytes (a 16k x 8k PNG of noise
/// fits; a camera JPEG is a few hundred kB).
pub const MAX_COMPRESSED_BYTES: u64 = 256 << 20;

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
    #[error("compressed image of {len} bytes exceeds the limit ({MAX_COMPRESSED_BYTES} bytes)")]
    CompressedTooLarge { len: u64 },
    #[error("step {step} is smaller than width*bytes_per_pixel = {min}")]
    StepTooSmall { step: u64, min: u64 },
    #[error("data holds {len} bytes, step*height needs {need}")]
    DataTooShort { len: u64, need: u64 },
    #[error("cannot decode compressed image ({format}): {cause}")]
    Undecodable { format: String, cause: DecodeError },
}

impl FrameError {
    /// The reason under which this reject is counted (diagnostics, metrics).
    pub fn reason(&self) -> RejectReason {
        match self {
            FrameError::UnknownEncoding(_) => RejectReason::UnknownEncoding,
            FrameError::Empty { .. } => RejectReason::Empty,
            FrameError::TooLarge { .. } | FrameError::CompressedTooLarge { .. } => {
                RejectReason::TooLarge
            }
            FrameError::StepTooSmall { .. } => RejectReason::StepTooSmall,
            FrameError::DataTooShort { .. } => RejectReason::DataTooShort,
            FrameError::Undecodable { .. } => RejectReason::Undecodable,
        }
    }
}

/// Why encoded image bytes (a compressed frame or an image file) could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are none of the formats the decoders know.
    #[error("unrecognised image format")]
    UnknownFormat,
    /// A JPEG stream that ends before its last scan does.
    #[error("truncated JPEG: no end-of-image marker after the last scan")]
    TruncatedJpeg,
    /// libjpeg refused the stream (its own message).
    #[error("{0}")]
    Jpeg(String),
    /// The `image` crate refused the bytes (its own message).
    #[error("{0}")]
    Image(String),
    /// The decoded size is empty or over the limits.
    #[error(transparent)]
    Size(Box<FrameError>),
}

/// Why a frame produced no result, with the stable name it is counted under (diagnostics,
/// metrics): the frame's own fault ([`FrameError`]), the transport's (a message that does
/// not deserialize), or the engine's (an encoder error, a panic on that frame). Variants
/// are in the alphabetical order of their names, so sorted counts list as the names sort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    DataTooShort,
    Empty,
    EncoderError,
    Panic,
    StepTooSmall,
    TooLarge,
    Undecodable,
    Undeserializable,
    UnknownEncoding,
}

impl RejectReason {
    /// The stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            RejectReason::UnknownEncoding => "unknown_encoding",
            RejectReason::Empty => "empty",
            RejectReason::TooLarge => "too_large",
            RejectReason::StepTooSmall => "step_too_small",
            RejectReason::DataTooShort => "data_too_short",
            RejectReason::Undecodable => "undecodable",
            RejectReason::Undeserializable => "undeserializable",
            RejectReason::EncoderError => "encoder_error",
            RejectReason::Panic => "panic",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Checks an image size against [`MAX_SIDE`] and [`MAX_PIXELS`] before pixels are reserved.
pub fn check_size(width: u32, height: u32) -> Result<(), FrameError> {
    if width == 0 || height == 0 {
        return Err(FrameError::Empty { width, height });
    }
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(FrameError::TooLarge { width, height });
    }
    Ok(())
}
