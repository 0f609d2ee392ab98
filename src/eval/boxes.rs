//! Where the phrases truly are, for replay's localisation metrics (`--truth-boxes`): a CSV
//! of `start,end,label,x0,y0,x1,y1` rows, `start`/`end` in seconds of the frames' header
//! stamps (half-open `[start, end)`, as `--truth`), one phrase per row, its box in the
//! image's pixels (`x1`, `y1` exclusive, as `locate` writes boxes); a header row and `#`
//! comment lines are allowed. A phrase seen in several places at once has a row per box.
//!
//! Per frame, every box whose interval holds the frame's stamp is one object: it is
//! *pointed at* when the phrase's located point lies inside it, and its IoU is that of the
//! phrase's located box with it (a frame without locations misses all its objects).
//! [`Localization`] sums them over the replay: pointing accuracy and mean IoU, overall and
//! per phrase.

use std::path::Path;

use serde::Serialize;

use super::truth::{csv_reader, read_csv, stamp_ns, TruthError};
use crate::engine::step::Stamp;
use crate::locate::{iou, LocatedPhrase, Rect};

#[derive(Debug, Clone, PartialEq)]
struct TruthBox {
    start_ns: i64,
    end_ns: i64,
    phrase: usize,
    rect: Rect,
}

/// True boxes over one recording, phrases as indices into the phrase list.
#[derive(Debug, Clone, PartialEq)]
pub struct TruthBoxes {
    boxes: Vec<TruthBox>,
}

impl TruthBoxes {
    /// Reads a `start,end,label,x0,y0,x1,y1` CSV file (see the module docs).
    pub fn from_csv(path: &Path, phrases: &[String]) -> Result<TruthBoxes, TruthError> {
        let (name, text) = read_csv(path, "a truth boxes CSV")?;
        Self::parse_csv(&name, &text, phrases)
    }

    /// [`TruthBoxes::from_csv`] on text already read (`name` for messages).
    pub fn parse_csv(name: &str, text: &str, phrases: &[String]) -> Result<TruthBoxes, TruthError> {
        let mut reader = csv_reader(text);
        let mut boxes = Vec::new();
        let mut header_seen = false;
        for (i, record) in reader.records().enumerate() {
            let at = |line: Option<u64>| format!("{name}:{}", line.unwrap_or(i as u64 + 1));
            let record = record.map_err(|e| TruthError::Invalid {
                at: at(e.position().map(|p| p.line())),
                message: format!("not CSV: {e}"),
            })?;
            let invalid = |message: String| TruthError::Invalid {
                at: at(record.position().map(|p| p.line())),
                message,
            };
            if record.len() != 7 {
                return Err(invalid(format!(
                    "{} fields, expected 7: start,end,label,x0,y0,x1,y1",
                    record.len()
                )));
            }
            if boxes.is_empty() && !header_seen && record[0].eq_ignore_ascii_case("start") {
                header_seen = true;
                continue;
            }
            let number = |field: usize, what: &str| -> Result<f64, TruthError> {
                record[field]
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| invalid(format!("{what} {:?} is not a number", &record[field])))
            };
            let (start, end) = (number(0, "start")?, number(1, "end")?);
            if end <= start {
                return Err(invalid(format!("end {end} is not after start {start}")));
            }
            let label = &record[2];
            let phrase = phrases.iter().position(|p| p == label).ok_or_else(|| {
                invalid(format!(
                    "label {label:?} is not one of the phrases ({})",
                    phrases.join("; ")
                ))
            })?;
            let mut edge = [0u32; 4];
            for (k, what) in ["x0", "y0", "x1", "y1"].iter().enumerate() {
                let v = number(3 + k, what)?;
                if v < 0.0 || v > f64::from(u32::MAX) {
                    return Err(invalid(format!("{what} {v} is not a pixel coordinate")));
                }
                edge[k] = v.round() as u32;
            }
            let [x0, y0, x1, y1] = edge;
            if x1 <= x0 || y1 <= y0 {
                return Err(invalid(format!(
                    "box [{x0}, {y0}, {x1}, {y1}] is empty (x1 > x0 and y1 > y0 needed)"
                )));
            }
            boxes.push(TruthBox {
                start_ns: (start * 1e9).round() as i64,
                end_ns: (end * 1e9).round() as i64,
                phrase,
                rect: Rect { x0, y0, x1, y1 },
            });
        }
        if boxes.is_empty() {
            return Err(TruthError::Empty {
                source_name: name.to_string(),
            });
        }
        Ok(TruthBoxes { boxes })
    }

    /// The boxes of the frame stamped `stamp`: `(phrase, box)`.
    pub fn at(&self, stamp: Stamp) -> impl Iterator<Item = (usize, Rect)> + '_ {
        let t = stamp_ns(stamp);
        self.boxes
            .iter()
            .filter(move |b| b.start_ns <= t && t < b.end_ns)
            .map(|b| (b.phrase, b.rect))
    }
}

/// One phrase's localisation over a replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhraseLocalization {
    pub phrase: String,
    /// True boxes in scored frames.
    pub objects: u64,
    /// Of them, with the phrase's point inside.
    pub pointed: u64,
    pub pointing: f64,
    pub mean_iou: f64,
}

/// Localisation metrics (`metrics.json` `localization`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Localization {
    pub objects: u64,
    pub pointed: u64,
    /// Pointing accuracy: the share of objects with their phrase's point inside.
    pub pointing: f64,
    pub mean_iou: f64,
    /// Phrases with at least one object, in phrase order.
    pub per_phrase: Vec<PhraseLocalization>,
}

/// Sums localisation results frame by frame.
#[derive(Debug, Clone)]
pub struct LocalizationTally {
    boxes: TruthBoxes,
    /// Per phrase: objects, pointed, IoU sum.
    sums: Vec<(u64, u64, f64)>,
}

impl LocalizationTally {
    pub fn new(boxes: TruthBoxes, phrases: usize) -> Self {
        LocalizationTally {
            boxes,
            sums: vec![(0, 0, 0.0); phrases],
        }
    }

    /// A scored frame stamped `stamp` with its `located` phrases (`None`: not localised,
    /// every object missed); `phrases` names the indices.
    pub fn add(&mut self, stamp: Stamp, located: Option<&[LocatedPhrase]>, phrases: &[String]) {
        for (phrase, truth) in self.boxes.at(stamp) {
            let found = located.and_then(|l| l.iter().find(|l| l.label == phrases[phrase]));
            let sum = &mut self.sums[phrase];
            sum.0 += 1;
            if let Some(l) = found {
                sum.1 += u64::from(truth.contains(l.point[0], l.point[1]));
                sum.2 += f64::from(iou(l.rect(), truth));
            }
        }
    }

    pub fn finish(&self, phrases: &[String]) -> Localization {
        let ratio = |a: f64, n: u64| if n > 0 { a / n as f64 } else { 0.0 };
        let per_phrase: Vec<PhraseLocalization> = self
            .sums
            .iter()
            .zip(phrases)
            .filter(|((objects, _, _), _)| *objects > 0)
            .map(
                |(&(objects, pointed, iou_sum), phrase)| PhraseLocalization {
                    phrase: phrase.clone(),
                    objects,
                    pointed,
                    pointing: ratio(pointed as f64, objects),
                    mean_iou: ratio(iou_sum, objects),
                },
            )
            .collect();
        let objects: u64 = self.sums.iter().map(|s| s.0).sum();
        let pointed: u64 = self.sums.iter().map(|s| s.1).sum();
        let iou_sum: f64 = self.sums.iter().map(|s| s.2).sum();
        Localization {
            objects,
            pointed,
            pointing: ratio(pointed as f64, objects),
            mean_iou: ratio(iou_sum, objects),
            per_phrase,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phrases() -> Vec<String> {
        vec!["red cup".into(), "blue ball".into()]
    }

    #[test]
    fn boxes_parse_and_bad_rows_name_their_line() {
        let text = "start,end,label,x0,y0,x1,y1\n# comment\n10,11,red cup,0,0,10,10\n10.5,12,blue ball,5,5,9,9\n";
        let b = TruthBoxes::parse_csv("t.csv", text, &phrases()).unwrap();
        let at = |sec: i32, nanosec: u32| b.at(Stamp { sec, nanosec }).collect::<Vec<_>>();
        assert_eq!(at(10, 0).len(), 1);
        assert_eq!(at(10, 600_000_000).len(), 2);
        assert_eq!(
            at(11, 0),
            [(
                1,
                Rect {
                    x0: 5,
                    y0: 5,
                    x1: 9,
                    y1: 9
                }
            )]
        );
        assert!(at(12, 0).is_empty());
        for (row, needle) in [
            ("1,2,green box,0,0,1,1", "not one of the phrases"),
            ("1,2,red cup,0,0,1", "6 fields, expected 7"),
            ("2,1,red cup,0,0,1,1", "not after start"),
            ("1,2,red cup,5,0,5,1", "is empty"),
            ("1,2,red cup,-1,0,5,1", "not a pixel coordinate"),
            ("1,2,red cup,a,0,5,1", "x0 \"a\" is not a number"),
        ] {
            let e = TruthBoxes::parse_csv("t.csv", &format!("{row}\n"), &phrases())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("t.csv:1: ") && e.contains(needle), "{e}");
        }
        assert!(TruthBoxes::parse_csv("t.csv", "# nothing\n", &phrases()).is_err());
    }

    #[test]
    fn the_tally_counts_points_inside_and_ious() {
        let text = "10,11,red cup,0,0,10,10\n10,11,blue ball,20,0,30,10\n";
        let b = TruthBoxes::parse_csv("t.csv", text, &phrases()).unwrap();
        let mut t = LocalizationTally::new(b, 2);
        let located = |label: &str, point: [f32; 2], bbox: [u32; 4]| LocatedPhrase {
            label: label.into(),
            score: 0.5,
            point,
            bbox,
        };
        let stamp = Stamp {
            sec: 10,
            nanosec: 0,
        };
        // red cup: point inside, box = truth (IoU 1); blue ball: point outside, half overlap.
        t.add(
            stamp,
            Some(&[
                located("red cup", [5.0, 5.0], [0, 0, 10, 10]),
                located("blue ball", [12.0, 5.0], [15, 0, 25, 10]),
            ]),
            &phrases(),
        );
        // A frame without locations misses both.
        t.add(stamp, None, &phrases());
        // A frame outside every interval counts nothing.
        t.add(
            Stamp {
                sec: 50,
                nanosec: 0,
            },
            None,
            &phrases(),
        );
        let l = t.finish(&phrases());
        assert_eq!((l.objects, l.pointed), (4, 1));
        assert!((l.pointing - 0.25).abs() < 1e-12);
        assert!((l.mean_iou - (1.0 + 50.0 / 150.0) / 4.0).abs() < 1e-6);
        assert_eq!(l.per_phrase[0].phrase, "red cup");
        assert_eq!((l.per_phrase[0].objects, l.per_phrase[0].pointed), (2, 1));
        assert!((l.per_phrase[1].mean_iou - (50.0 / 150.0) / 2.0).abs() < 1e-6);
    }
}
