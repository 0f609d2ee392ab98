//! Localisation on the engine's image encoder: the regions [`crate::locate`] chooses,
//! encoded a batch at a time like whole images, scored in the node's unit (the cosine, or
//! a sigmoid-scored bundle's per-phrase probability), turned into each phrase's location.

use crate::error::Result;
use crate::image::frame::RgbImage;
use crate::locate::{locate, LocateSettings, Location};
use crate::model::encoder::ImageEncoder;
use crate::text::LabelMatrix;

use super::scoring::score;

/// Every phrase of `labels` located in `image`, best score first; the crops go through
/// `encoder` `batch` at a time.
pub fn locate_image(
    encoder: &mut ImageEncoder,
    batch: usize,
    image: &RgbImage,
    labels: &LabelMatrix,
    settings: &LocateSettings,
) -> Result<Vec<Location>> {
    let regions = settings.regions(image);
    let per_phrase = labels.scoring.per_phrase();
    let mut scores = Vec::with_capacity(regions.len());
    let mut cosines = Vec::with_capacity(regions.len());
    for chunk in regions.chunks(batch.max(1)) {
        let views: Vec<RgbImage> = chunk.iter().map(|&r| settings.crop(image, r)).collect();
        for embedding in encoder.encode(&views)? {
            let s = score(labels, &embedding);
            scores.push(if per_phrase {
                s.probability
            } else {
                s.cosine.clone()
            });
            cosines.push(s.cosine);
        }
    }
    Ok(locate(
        settings,
        image.width,
        image.height,
        &regions,
        &scores,
        &cosines,
    ))
}
