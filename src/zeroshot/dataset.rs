//! Labelled image sets for the zero-shot benchmark: an ImageFolder layout (one folder per
//! class, class names from the folder names with `_` as a space, or from `classes.txt`:
//! one name per line, in the folders' sorted order), or the CIFAR-10 / CIFAR-100 binary
//! format (`test_batch.bin` and `data_batch_*.bin`: a label byte + 3072 bytes of 32x32 RGB
//! planes per record; `test.bin` / `train.bin`: a coarse and a fine label byte + 3072;
//! class names built in, or from `batches.meta.txt` / `fine_label_names.txt` beside it).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::image::{load_image_file, RgbImage};
use crate::index::image_files;

/// CIFAR-10's classes, in label order.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// CIFAR-100's fine classes, in label order (`_` as a space).
pub const CIFAR100_CLASSES: [&str; 100] = [
    "apple",
    "aquarium fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak tree",
    "orange",
    "orchid",
    "otter",
    "palm tree",
    "pear",
    "pickup truck",
    "pine tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow tree",
    "wolf",
    "woman",
    "worm",
];

const CIFAR_PIXELS: usize = 32 * 32;

/// Where the images of a labelled set are.
#[derive(Debug, Clone)]
enum Source {
    /// (path, class) per image.
    Folder(Vec<(PathBuf, usize)>),
    /// A CIFAR binary file: `label_bytes` before the pixels, the label at `label_at`.
    Cifar {
        file: PathBuf,
        bytes: Vec<u8>,
        label_bytes: usize,
        label_at: usize,
    },
}

/// A labelled image set.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub classes: Vec<String>,
    source: Source,
}

/// One image of a set: its name (path, or `file#record`), its class, and the pixels or why
/// they could not be read.
pub struct Sample {
    pub name: String,
    pub label: usize,
    pub image: Result<RgbImage<'static>>,
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Names from a text file, one per line (blank lines skipped), if it exists.
fn names_file(path: &Path) -> Result<Option<Vec<String>>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        crate::config::read_text_limited(path, crate::config::limits::CONFIG_BYTES, "a class list")
            .map_err(|e| Error::io(path, e))?;
    Ok(Some(
        text.lines()
            .map(|l| l.trim().replace('_', " "))
            .filter(|l| !l.is_empty())
            .collect(),
    ))
}

impl Dataset {
    /// Opens `data`: a CIFAR binary file, a folder holding one, or an ImageFolder layout.
    pub fn open(data: &Path) -> Result<Dataset> {
        if data.is_file() {
            return Self::cifar(data);
        }
        for name in ["test_batch.bin", "test.bin"] {
            if data.join(name).is_file() {
                return Self::cifar(&data.join(name));
            }
        }
        Self::folder(data)
    }

    fn cifar(file: &Path) -> Result<Dataset> {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let dir = file.parent().unwrap_or(Path::new("."));
        let hundred = matches!(name, "test.bin" | "train.bin");
        let ten = name == "test_batch.bin" || name.starts_with("data_batch_");
        if !hundred && !ten {
            return Err(bad(
                file,
                "not a CIFAR binary file (expected test_batch.bin or data_batch_N.bin for \
                 CIFAR-10, test.bin or train.bin for CIFAR-100) nor an image folder",
            ));
        }
        let (label_bytes, label_at, classes) = if hundred {
            let names = names_file(&dir.join("fine_label_names.txt"))?
                .unwrap_or_else(|| CIFAR100_CLASSES.map(String::from).to_vec());
            (2, 1, names)
        } else {
            let names = names_file(&dir.join("batches.meta.txt"))?
                .unwrap_or_else(|| CIFAR10_CLASSES.map(String::from).to_vec());
            (1, 0, names)
        };
        let bytes = crate::config::read_limited(
            file,
            crate::config::limits::DATA_FILE_BYTES,
            "a CIFAR batch",
        )
        .map_err(|e| Error::io(file, e))?;
        let record = label_bytes + 3 * CIFAR_PIXELS;
        if bytes.is_empty() || bytes.len() % record != 0 {
            return Err(bad(
                file,
                format!(
                    "{} bytes is not a whole number of {record}-byte records: truncated or \
                     not this format",
                    bytes.len()
                ),
            ));
        }
        if let Some(i) = (0..bytes.len() / record)
            .find(|i| bytes[i * record + label_at] as usize >= classes.len())
        {
            return Err(bad(
                file,
                format!(
                    "record {i}: label {} but only {} classes",
                    bytes[i * record + label_at],
                    classes.len()
                ),
            ));
        }
        Ok(Dataset {
            classes,
            source: Source::Cifar {
                file: file.to_path_buf(),
                bytes,
                label_bytes,
                label_at,
            },
        })
    }

    fn folder(dir: &Path) -> Result<Dataset> {
        if !dir.is_dir() {
            return Err(bad(dir, "does not exist"));
        }
        let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        folders.sort();
        if folders.is_empty() {
            return Err(bad(
                dir,
                "has no class folders (expected one folder of images per class, or CIFAR's \
                 test_batch.bin / test.bin)",
            ));
        }
        let classes = match names_file(&dir.join("classes.txt"))? {
            Some(names) if names.len() != folders.len() => {
                return Err(bad(
                    &dir.join("classes.txt"),
                    format!("{} names for {} class folders", names.len(), folders.len()),
                ))
            }
            Some(names) => names,
            None => folders
                .iter()
                .map(|f| {
                    f.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .replace('_', " ")
                })
                .collect(),
        };
        let mut items = Vec::new();
        for (class, folder) in folders.iter().enumerate() {
            for (_, path, _) in image_files(folder)? {
                items.push((path, class));
            }
        }
        if items.is_empty() {
            return Err(bad(dir, "its class folders hold no images"));
        }
        Ok(Dataset {
            classes,
            source: Source::Folder(items),
        })
    }

    /// Images in the set.
    pub fn len(&self) -> usize {
        match &self.source {
            Source::Folder(items) => items.len(),
            Source::Cifar {
                bytes, label_bytes, ..
            } => bytes.len() / (label_bytes + 3 * CIFAR_PIXELS),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Image `i`: decoded from its file, or from its CIFAR record.
    pub fn sample(&self, i: usize) -> Sample {
        match &self.source {
            Source::Folder(items) => {
                let (path, label) = &items[i];
                Sample {
                    name: path.display().to_string(),
                    label: *label,
                    image: load_image_file(path),
                }
            }
            Source::Cifar {
                file,
                bytes,
                label_bytes,
                label_at,
            } => {
                let record = &bytes[i * (label_bytes + 3 * CIFAR_PIXELS)..]
                    [..label_bytes + 3 * CIFAR_PIXELS];
                let planes = &record[*label_bytes..];
                let packed: Vec<u8> = (0..CIFAR_PIXELS)
                    .flat_map(|p| {
                        [
                            planes[p],
                            planes[CIFAR_PIXELS + p],
                            planes[2 * CIFAR_PIXELS + p],
                        ]
                    })
                    .collect();
                Sample {
                    name: format!("{}#{i}", file.display()),
                    label: record[*label_at] as usize,
                    image: RgbImage::from_packed(32, 32, packed).map_err(Error::from),
                }
            }
        }
    }
}
