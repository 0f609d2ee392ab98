#!/usr/bin/env python3
"""Reference metrics for the replay evaluation, computed by scikit-learn and numpy on
synthetic frames (seeded), so tests/eval.rs can check clip_perception's metrics against an
implementation nobody here wrote.

    pip install scikit-learn==1.9.1 numpy
    python3 tests/data/eval/generate.py     # rewrites reference.json

Frames: per phrase a float32 cosine (rounded to 0.02 so that ties occur), a matched flag,
the best-scoring phrase, and the true phrases (none, one or two; some frames unlabelled).
Expected:
- per phrase precision / recall / F1 of the matched flag: precision_recall_fscore_support
  (multilabel indicators over the labelled frames, zero_division=0);
- top-1 accuracy on frames with one true phrase: accuracy_score(truth, best);
- confusion over phrases + none on frames with at most one true phrase: confusion_matrix,
  predicted = the highest-cosine matched phrase, else none;
- threshold sweep: precision_recall_curve(truth, cosine) (its final (1, 0) point dropped),
  F1-best threshold = the highest threshold with the largest F1;
- p50 / p99 of the timings: numpy.percentile (linear).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_curve, precision_recall_fscore_support

HERE = Path(__file__).resolve().parent
PHRASES = ["red cup", "blue ball", "green box", "yellow banana"]
THRESHOLDS = [0.25, 0.2, 0.3, 0.25]


def main() -> int:
    rng = np.random.default_rng(20261129)
    n, k = 60, len(PHRASES)
    cosine = (np.round(rng.uniform(-0.1, 0.5, size=(n, k)) / 0.02) * 0.02).astype(np.float32)
    matched = cosine >= np.array(THRESHOLDS, np.float32)
    # Hysteresis-like flips, so matched is not a plain threshold of cosine.
    flips = rng.random((n, k)) < 0.08
    matched = matched ^ flips
    best = np.argmax(cosine + np.arange(k)[None, :] * -1e-6, axis=1)  # ties: the first phrase
    truth: list[list[int] | None] = []
    for i in range(n):
        r = rng.random()
        if r < 0.1:
            truth.append(None)
        elif r < 0.3:
            truth.append([])
        elif r < 0.8:
            # Mostly the phrase with the highest cosine, so the metrics are not all zero.
            truth.append([int(best[i])] if rng.random() < 0.6 else [int(rng.integers(k))])
        else:
            truth.append(sorted(rng.choice(k, size=2, replace=False).tolist()))
    encoder_ms = rng.gamma(4.0, 5.0, size=n)
    latency_ms = encoder_ms + rng.gamma(2.0, 3.0, size=n)

    labelled = [i for i in range(n) if truth[i] is not None]
    y_true = np.zeros((len(labelled), k), bool)
    for row, i in enumerate(labelled):
        y_true[row, truth[i]] = True
    y_pred = matched[labelled]
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)

    single = [i for i in labelled if len(truth[i]) == 1]
    top1 = accuracy_score([truth[i][0] for i in single], [int(best[i]) for i in single])

    none = k
    rows, cols = [], []
    for i in labelled:
        if len(truth[i]) > 1:
            continue
        rows.append(truth[i][0] if truth[i] else none)
        m = [j for j in range(k) if matched[i, j]]
        cols.append(max(m, key=lambda j: (cosine[i, j], -j)) if m else none)
    confusion = confusion_matrix(rows, cols, labels=list(range(k + 1)))

    sweeps = []
    for j in range(k):
        if not y_true[:, j].any():
            sweeps.append(None)
            continue
        prec, rec, thr = precision_recall_curve(y_true[:, j], cosine[labelled, j].astype(np.float64))
        prec, rec = prec[:-1], rec[:-1]  # the final (precision 1, recall 0) point has no threshold
        f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-300), 0.0)
        best_f1 = f1.max()
        best_at = max(t for t, v in zip(thr, f1) if v == best_f1)
        sweeps.append({"thresholds": thr.tolist(), "precision": prec.tolist(), "recall": rec.tolist(),
                       "best_threshold": float(best_at), "best_f1": float(best_f1)})

    out = {
        "phrases": PHRASES,
        "thresholds": THRESHOLDS,
        "frames": [{"cosine": cosine[i].tolist(), "matched": matched[i].tolist(), "best": int(best[i]),
                    "truth": truth[i], "encoder_ms": float(encoder_ms[i]), "latency_ms": float(latency_ms[i])}
                   for i in range(n)],
        "expected": {
            "with_truth": len(labelled),
            "precision": p.tolist(), "recall": r.tolist(), "f1": f.tolist(), "support": support.tolist(),
            "top1": {"frames": len(single), "accuracy": float(top1)},
            "confusion": confusion.tolist(),
            "multi_label_frames": sum(1 for i in labelled if len(truth[i]) > 1),
            "sweeps": sweeps,
            "encoder_ms": [float(np.percentile(encoder_ms, 50)), float(np.percentile(encoder_ms, 99))],
            "latency_ms": [float(np.percentile(latency_ms, 50)), float(np.percentile(latency_ms, 99))],
        },
    }
    (HERE / "reference.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {HERE / 'reference.json'}: {n} frames, {len(labelled)} with truth")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
