//! Replay's evaluation metrics against scikit-learn and numpy (`tests/data/eval/reference.json`,
//! made by `generate.py` there): the same synthetic frames (cosines, matched flags, truth)
//! through `clip_perception::eval::Evaluator` give sklearn's precision / recall / F1,
//! accuracy, confusion matrix and precision-recall curve points, and numpy's percentiles.

use clip_perception::engine::scoring::Thresholds;
use clip_perception::engine::step::MatchPolicy;
use clip_perception::eval::metrics::FrameScores;
use clip_perception::eval::Evaluator;
use serde_json::Value;

use crate::common::{data, read_json, strings};

/// Equal within a few ulps: both sides compute the same ratios in double precision.
fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-12, "{what}: {a} != {b}");
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn metrics_equal_scikit_learn() {
    let reference = read_json(&data("eval/reference.json"));
    let phrases = strings(&reference["phrases"]);
    let thresholds = f64s(&reference["thresholds"]);
    let policy = MatchPolicy {
        thresholds: Thresholds {
            default: 0.25,
            per_label: phrases
                .iter()
                .zip(&thresholds)
                .map(|(p, t)| (p.clone(), *t as f32))
                .collect(),
        },
        ..MatchPolicy::default()
    };
    let mut evaluator = Evaluator::new(&phrases, &policy, None);
    for (i, f) in reference["frames"].as_array().unwrap().iter().enumerate() {
        let frame = FrameScores {
            stamp_ns: i as i64 * 100_000_000,
            log_time_ns: i as u64 * 100_000_000,
            score: f64s(&f["cosine"]).iter().map(|&c| c as f32).collect(),
            matched: f["matched"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_bool().unwrap())
                .collect(),
            best: f["best"].as_u64().unwrap() as usize,
            truth: f["truth"]
                .as_array()
                .map(|t| t.iter().map(|l| l.as_u64().unwrap() as usize).collect()),
        };
        evaluator.add_frame(
            frame,
            f["encoder_ms"].as_f64().unwrap(),
            f["latency_ms"].as_f64().unwrap(),
        );
    }
    let eval = evaluator.finish();
    let expected = &reference["expected"];
    assert_eq!(
        eval.frames.with_truth,
        expected["with_truth"].as_u64().unwrap()
    );
    for (i, m) in eval.per_phrase.iter().enumerate() {
        close(
            m.precision,
            expected["precision"][i].as_f64().unwrap(),
            "precision",
        );
        close(m.recall, expected["recall"][i].as_f64().unwrap(), "recall");
        close(m.f1, expected["f1"][i].as_f64().unwrap(), "f1");
        assert_eq!(m.support, expected["support"][i].as_u64().unwrap());
        assert_eq!(m.threshold, thresholds[i] as f32);
    }
    let top1 = eval.top1.as_ref().unwrap();
    assert_eq!(top1.frames, expected["top1"]["frames"].as_u64().unwrap());
    close(
        top1.accuracy,
        expected["top1"]["accuracy"].as_f64().unwrap(),
        "top-1",
    );
    let confusion = eval.confusion.as_ref().unwrap();
    let want: Vec<Vec<u64>> = expected["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(confusion.matrix, want);
    assert_eq!(confusion.labels.last().map(String::as_str), Some("none"));
    assert_eq!(
        confusion.multi_label_frames,
        expected["multi_label_frames"].as_u64().unwrap()
    );
    let mut pasted = Vec::new();
    for (i, m) in eval.per_phrase.iter().enumerate() {
        let want = &expected["sweeps"][i];
        let Some(sweep) = &m.sweep else {
            assert!(want.is_null(), "{}: sklearn has a curve", m.phrase);
            continue;
        };
        // sklearn stops its curve where recall reaches 1; every point it has, we have.
        let thr = f64s(&want["thresholds"]);
        let (p, r) = (f64s(&want["precision"]), f64s(&want["recall"]));
        for k in 0..thr.len() {
            let point = sweep
                .curve
                .iter()
                // Thresholds are float32 cosines; serde_json's default float parsing may be
                // an ulp off in f64, never in f32.
                .find(|c| c.threshold == thr[k] as f32)
                .unwrap_or_else(|| panic!("{}: no point at threshold {}", m.phrase, thr[k]));
            close(point.precision, p[k], "curve precision");
            close(point.recall, r[k], "curve recall");
        }
        assert_eq!(
            sweep.best_threshold,
            want["best_threshold"].as_f64().unwrap() as f32,
            "{}",
            m.phrase
        );
        close(sweep.best_f1, want["best_f1"].as_f64().unwrap(), "best F1");
        pasted.push(format!(
            "{}={}",
            m.phrase,
            sweep.best_threshold.clamp(0.0, 1.0)
        ));
    }
    assert_eq!(eval.label_thresholds, pasted);
    let enc = eval.timing_ms.encoder.as_ref().unwrap();
    let e2e = eval.timing_ms.end_to_end.as_ref().unwrap();
    close(
        enc.p50,
        expected["encoder_ms"][0].as_f64().unwrap(),
        "encoder p50",
    );
    close(
        enc.p99,
        expected["encoder_ms"][1].as_f64().unwrap(),
        "encoder p99",
    );
    close(
        e2e.p50,
        expected["latency_ms"][0].as_f64().unwrap(),
        "e2e p50",
    );
    close(
        e2e.p99,
        expected["latency_ms"][1].as_f64().unwrap(),
        "e2e p99",
    );
}
