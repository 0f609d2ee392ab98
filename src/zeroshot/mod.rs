//! The zero-shot benchmark (`clip_perception eval`): a labelled image set, either an
//! ImageFolder layout (one folder per class) or the CIFAR-10 / CIFAR-100 binary format,
//! classified against its class names by the engine, as the CLIP paper measures it: top-1,
//! top-5, mean per-class recall, per-class results, the accuracy of each prompt template
//! alone, and the most confident mistakes.

pub mod dataset;
pub mod report;
pub mod run;

use serde::Serialize;

use crate::engine::scoring::score;
use crate::text::LabelMatrix;

pub use dataset::{Dataset, CIFAR100_CLASSES, CIFAR10_CLASSES};
pub use run::{run, Benchmark, RunOptions};

/// One class's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassResult {
    pub class: String,
    /// Images of this class.
    pub count: usize,
    /// Of them, classified as this class (recall).
    pub correct: usize,
    pub recall: f64,
}

/// A mistake: an image put in the wrong class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mistake {
    /// The image (a path, or `file#record` for a CIFAR record).
    pub image: String,
    /// Its position in the images given to [`evaluate`].
    #[serde(skip)]
    pub index: usize,
    pub truth: String,
    pub predicted: String,
    /// Cosine of the predicted class.
    pub cosine: f32,
    /// Predicted cosine minus the true class's cosine.
    pub margin: f32,
}

/// The benchmark's numbers for one prompt set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZeroShot {
    pub images: usize,
    pub top1: f64,
    /// Top-5 accuracy (with fewer than 5 classes: every image counts, 1.0).
    pub top5: f64,
    pub mean_per_class_recall: f64,
    pub per_class: Vec<ClassResult>,
    /// `confusion[t][p]`: images of class t classified as p.
    pub confusion: Vec<Vec<u64>>,
    /// The most confident mistakes, most confident first.
    pub mistakes: Vec<Mistake>,
}

/// Scores unit-free image embeddings (`names[i]`, true class `truth[i]`) against the
/// class label matrix; keeps the `keep_mistakes` most confident mistakes.
pub fn evaluate(
    labels: &LabelMatrix,
    embeddings: &[Vec<f32>],
    truth: &[usize],
    names: &[String],
    keep_mistakes: usize,
) -> ZeroShot {
    let n_classes = labels.len();
    let mut confusion = vec![vec![0u64; n_classes]; n_classes];
    let (mut top1, mut top5) = (0usize, 0usize);
    let mut mistakes = Vec::new();
    for (index, ((embedding, &t), name)) in embeddings.iter().zip(truth).zip(names).enumerate() {
        let scores = score(labels, embedding);
        // Best first; ties keep the class order (a stable sort).
        let order: Vec<usize> = scores.ranked().iter().map(|r| r.index).collect();
        let cosine = &scores.cosine;
        let predicted = order[0];
        confusion[t][predicted] += 1;
        if predicted == t {
            top1 += 1;
        } else {
            mistakes.push(Mistake {
                image: name.clone(),
                index,
                truth: labels.labels[t].clone(),
                predicted: labels.labels[predicted].clone(),
                cosine: cosine[predicted],
                margin: cosine[predicted] - cosine[t],
            });
        }
        if order.iter().take(5).any(|&c| c == t) {
            top5 += 1;
        }
    }
    mistakes.sort_by(|a, b| b.margin.total_cmp(&a.margin).then(a.image.cmp(&b.image)));
    mistakes.truncate(keep_mistakes);
    let per_class: Vec<ClassResult> = (0..n_classes)
        .map(|c| {
            let count = confusion[c].iter().sum::<u64>() as usize;
            let correct = confusion[c][c] as usize;
            ClassResult {
                class: labels.labels[c].clone(),
                count,
                correct,
                recall: if count > 0 {
                    correct as f64 / count as f64
                } else {
                    0.0
                },
            }
        })
        .collect();
    let present: Vec<&ClassResult> = per_class.iter().filter(|c| c.count > 0).collect();
    let images = embeddings.len();
    let ratio = |k: usize| {
        if images > 0 {
            k as f64 / images as f64
        } else {
            0.0
        }
    };
    ZeroShot {
        images,
        top1: ratio(top1),
        top5: ratio(top5),
        mean_per_class_recall: if present.is_empty() {
            0.0
        } else {
            present.iter().map(|c| c.recall).sum::<f64>() / present.len() as f64
        },
        per_class,
        confusion,
        mistakes,
    }
}

/// Min, max, mean and (population) standard deviation.
pub fn spread(values: &[f64]) -> (f64, f64, f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0, 0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max, mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    #[test]
    fn metrics_on_known_scores() {
        // Three classes along the axes; images near an axis.
        let labels = LabelMatrix {
            labels: vec!["a".into(), "b".into(), "c".into()],
            matrix: DMatrix::identity(3, 3),
            scoring: crate::model::Scoring::softmax(100.0),
        };
        let embeddings = vec![
            vec![1.0, 0.1, 0.0], // a, right
            vec![0.9, 0.2, 0.0], // a, right
            vec![0.8, 0.1, 0.0], // b, wrong (predicted a)
            vec![0.0, 1.0, 0.0], // b, right
            vec![0.0, 0.0, 1.0], // c, right
        ];
        let truth = [0, 0, 1, 1, 2];
        let names: Vec<String> = (0..5).map(|i| format!("img{i}")).collect();
        let r = evaluate(&labels, &embeddings, &truth, &names, 10);
        assert_eq!(r.top1, 0.8);
        assert_eq!(r.top5, 1.0);
        assert!((r.mean_per_class_recall - (1.0 + 0.5 + 1.0) / 3.0).abs() < 1e-12);
        assert_eq!(
            r.confusion,
            vec![vec![2, 0, 0], vec![1, 1, 0], vec![0, 0, 1]]
        );
        assert_eq!(r.mistakes.len(), 1);
        assert_eq!(
            (
                r.mistakes[0].truth.as_str(),
                r.mistakes[0].predicted.as_str()
            ),
            ("b", "a")
        );
        assert!(r.mistakes[0].margin > 0.0);
        let (min, max, mean, std) = spread(&[0.5, 0.7]);
        assert_eq!((min, max), (0.5, 0.7));
        assert!((mean - 0.6).abs() < 1e-12 && (std - 0.1).abs() < 1e-12);
    }
}
