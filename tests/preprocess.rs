//! Preprocessing parity with transformers' PIL-based `CLIPImageProcessor`
//! (`CLIPImageProcessorPil` in transformers 5) on awkward images:
//! `tests/data/preprocess/generate.py` made the inputs and the reference outputs before
//! normalisation (`*.expected.png`, the resized and cropped RGB8 image) and two normalised
//! tensors (`*.pixel_values.npy`). The required tolerance is every pixel within 2/255 and a
//! mean absolute difference <= 0.5/255; the implementation is bit-exact (PIL's fixed-point
//! resampling, libjpeg's decoder, the reference's float rounding), so exactness is asserted,
//! for the RGB8 images and for the normalised tensors.

use clip_perception::image::Preprocessor;
use clip_perception::image::{decode_bytes, load_image_file};
use clip_perception::npy;

use crate::common::{data, read_json};

/// The mean/std the reference used, as its manifest records them.
fn preprocessor() -> Preprocessor {
    let manifest = read_json(&data("preprocess/manifest.json"));
    let three = |key: &str| -> [f32; 3] {
        let v = crate::common::f32s(&manifest[key]);
        [v[0], v[1], v[2]]
    };
    Preprocessor::new(224, three("image_mean"), three("image_std"))
}

fn png_rgb(path: &std::path::Path) -> Vec<u8> {
    let img = decode_bytes(&std::fs::read(path).unwrap()).unwrap();
    img.data.into_owned()
}

#[test]
fn resize_crop_matches_pil_reference() {
    let manifest = read_json(&data("preprocess/manifest.json"));
    let images = manifest["images"].as_array().unwrap();
    assert!(images.len() >= 20);
    let mut pre = preprocessor();
    let mut report = Vec::new();
    let mut failed = false;
    for case in images {
        let name = case["name"].as_str().unwrap();
        let file = data("preprocess").join(case["file"].as_str().unwrap());
        let expected = png_rgb(&data("preprocess").join(case["expected"].as_str().unwrap()));
        let image = load_image_file(&file).unwrap();
        let got = pre.resize_crop(&image);
        assert_eq!(got.len(), expected.len(), "{name}: size");
        let diffs: Vec<u8> = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let max = *diffs.iter().max().unwrap();
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        let ok = max == 0 && mean == 0.0;
        failed |= !ok;
        report.push(format!(
            "{name:<28} max {max} mean {mean:.4}{}",
            if ok { "" } else { "  <-- FAIL" }
        ));
    }
    println!("{}", report.join("\n"));
    assert!(
        !failed,
        "preprocessing differs from the reference:\n{}",
        report.join("\n")
    );
}

/// Where the reference differs by how it is handed the image (`*.expected_from_path.png`:
/// given a path, transformers applies EXIF orientation and drops alpha instead of
/// compositing on white), the engine is the PIL-image pipeline, as documented, and not the
/// path one.
#[test]
fn files_follow_the_pil_image_pipeline_not_the_path_one() {
    let manifest = read_json(&data("preprocess/manifest.json"));
    let mut pre = preprocessor();
    let mut checked = Vec::new();
    for case in manifest["images"].as_array().unwrap() {
        let Some(from_path) = case.get("expected_from_path").and_then(|d| d.as_str()) else {
            continue;
        };
        let name = case["name"].as_str().unwrap();
        let image =
            load_image_file(&data("preprocess").join(case["file"].as_str().unwrap())).unwrap();
        let got = pre.resize_crop(&image).to_vec();
        let expected = png_rgb(&data("preprocess").join(case["expected"].as_str().unwrap()));
        let path_pipeline = png_rgb(&data("preprocess").join(from_path));
        assert_eq!(got, expected, "{name}");
        assert_ne!(got, path_pipeline, "{name}: the path pipeline's result");
        checked.push(name.to_string());
    }
    assert_eq!(checked.len(), 3, "{checked:?}");
}

#[test]
fn resize_is_bit_exact_on_reference_decoded_jpegs() {
    // Pillow's own decoding of the JPEG inputs, so only the resampling is compared.
    let manifest = read_json(&data("preprocess/manifest.json"));
    let mut pre = preprocessor();
    let mut checked = 0;
    for case in manifest["images"].as_array().unwrap() {
        let Some(decoded) = case.get("decoded").and_then(|d| d.as_str()) else {
            continue;
        };
        let image = load_image_file(&data("preprocess").join(decoded)).unwrap();
        let expected = png_rgb(&data("preprocess").join(case["expected"].as_str().unwrap()));
        assert_eq!(pre.resize_crop(&image), &expected[..], "{}", case["name"]);
        checked += 1;
    }
    assert!(checked >= 2);
}

#[test]
fn normalised_tensor_matches_reference() {
    let mut pre = preprocessor();
    let mut checked = 0;
    for entry in std::fs::read_dir(data("preprocess")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".pixel_values.npy") else {
            continue;
        };
        let (shape, expected) = npy::read_f32(&path).unwrap();
        assert_eq!(shape, vec![1, 3, 224, 224]);
        let image = load_image_file(&data("preprocess").join(format!("{stem}.png"))).unwrap();
        let mut got = vec![0f32; pre.tensor_len()];
        pre.preprocess_into(&image, &mut got);
        let max = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert_eq!(max, 0.0, "{stem}: max abs diff {max}");
        checked += 1;
    }
    assert!(checked >= 2);
}

/// The model families' geometries and filters (bundle format 2) against their own reference
/// code: open_clip's transform (torchvision Resize + CenterCrop on PIL images, bilinear as
/// MobileCLIP 2 and bicubic) and transformers' `SiglipImageProcessorPil` (squash, bicubic
/// and bilinear), on every plain RGB image of `tests/data/preprocess`
/// (`generate_families.py` wrote `families.json`: sha256 of each RGB8 result). Exact,
/// except where Pillow 13 ran the vertical pass first (`order: vertical_first`: two squash
/// sizes here, whose rows shrink more than their columns): the engine keeps PIL's classic
/// horizontal-then-vertical order there, and must equal PIL's single-axis passes composed
/// in that order (`sha256_horizontal_first`), exactly.
#[test]
fn family_resizes_match_their_references() {
    use clip_perception::model::family::PreprocessSpec;
    let refs = read_json(&data("preprocess/families.json"));
    let size = refs["size"].as_u64().unwrap() as usize;
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, pipeline) in refs["pipelines"].as_object().unwrap() {
        let spec: PreprocessSpec = serde_json::from_value(pipeline["spec"].clone()).unwrap();
        let mut pre = Preprocessor::with_spec(spec, size, [0.0; 3], [1.0; 3]);
        for case in pipeline["cases"].as_array().unwrap() {
            let file = case["file"].as_str().unwrap();
            let image = load_image_file(&data("preprocess").join(file)).unwrap();
            let got = pre.resize_crop(&image);
            let digest = clip_perception::model::bundle::hex_sha256(got);
            let sum: u64 = got.iter().map(|&v| u64::from(v)).sum();
            let expected = match case["order"].as_str().unwrap() {
                "vertical_first" => {
                    assert!(
                        name.starts_with("siglip"),
                        "{name} {file}: only squash differs"
                    );
                    case["sha256_horizontal_first"].as_str().unwrap()
                }
                _ => case["sha256"].as_str().unwrap(),
            };
            if digest != expected {
                failures.push(format!(
                    "{name} {file}: pixel sum {sum}, reference {}",
                    case["sum"]
                ));
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// CRC-32 (ISO-HDLC, PNG's), for the hand-made PNG headers below.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG whose header says `width` x `height` RGB8 and whose data is one short row: only
/// the header is valid, as in a file crafted to make a reader reserve a huge buffer.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], body: &[u8]| {
        let mut c = (body.len() as u32).to_be_bytes().to_vec();
        let mut typed = kind.to_vec();
        typed.extend_from_slice(body);
        c.extend_from_slice(&typed);
        c.extend_from_slice(&crc32(&typed).to_be_bytes());
        c
    };
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    // zlib stream of one filter byte and 3 zero pixels (stored block).
    png.extend(chunk(
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x0a, 0x00, 0xf5, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x0a,
            0x00, 0x01,
        ],
    ));
    png.extend(chunk(b"IEND", &[]));
    png
}

/// Image files beyond the size limits (16384 per side, 2^27 pixels) are refused from their
/// header, naming the file and the size, before any pixel buffer is reserved; the checksum
/// of the hand-made header is right (the same maker at 3x1 gives a file the decoder reads).
#[test]
fn image_files_beyond_the_size_limits_are_refused_from_the_header() {
    use clip_perception::image::error::{MAX_PIXELS, MAX_SIDE};
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.png");
    std::fs::write(&small, png_header_only(3, 1)).unwrap();
    let img = load_image_file(&small).unwrap();
    assert_eq!((img.width, img.height), (3, 1));
    // 11586^2 = 134,235,396 > 2^27 = 134,217,728 while each side is within MAX_SIDE.
    let over_pixels = (MAX_PIXELS as f64).sqrt().ceil() as u32;
    assert!(over_pixels <= MAX_SIDE && u64::from(over_pixels).pow(2) > MAX_PIXELS);
    for (w, h) in [
        (MAX_SIDE + 1, 1),
        (1, MAX_SIDE + 1),
        (over_pixels, over_pixels),
        (1 << 30, 1 << 30),
    ] {
        let path = dir.path().join(format!("{w}x{h}.png"));
        std::fs::write(&path, png_header_only(w, h)).unwrap();
        let err = load_image_file(&path).unwrap_err().to_string();
        assert!(
            err.contains(&path.display().to_string())
                && err.contains(&format!("image of {w}x{h} exceeds the limit")),
            "{err}"
        );
    }
    // The limit itself is allowed: a real 16384x1 image decodes.
    let edge = dir.path().join("edge.png");
    image::RgbImage::new(MAX_SIDE, 1).save(&edge).unwrap();
    assert_eq!(load_image_file(&edge).unwrap().width, MAX_SIDE);
}
