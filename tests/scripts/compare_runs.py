#!/usr/bin/env python3
"""compare_runs.py A B [--tol T]: the JSON-lines outputs of two builds of one command (replay
results or `classify --json`), e.g. the aarch64 build under qemu against the x86-64 build.
Every line must hold the same images/frames in the same order, the same best phrase (top-1)
and every number (cosine, score, probability) within T (default 1e-5) of the other's.
Timings (latency_ms, encoder_ms) are not compared. Exit 1 with the differences listed."""
import argparse
import json
import sys

TIMINGS = {"latency_ms", "encoder_ms"}


def rows(line):
    """(key, [(phrase, {number fields})...]) of one line, best first."""
    if "labels" in line:  # replay / node matches
        key = (line["stamp"]["sec"], line["stamp"]["nanosec"], line.get("topic"))
        ranked = line["labels"]
        name = "phrase"
    else:  # classify --json
        key = line["image"]
        ranked = line["top"]
        name = "label"
    return key, [(r[name], {k: v for k, v in r.items() if isinstance(v, float)}) for r in ranked]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--tol", type=float, default=1e-5)
    args = p.parse_args()
    a = [json.loads(l) for l in open(args.a) if l.strip()]
    b = [json.loads(l) for l in open(args.b) if l.strip()]
    problems = []
    if len(a) != len(b):
        problems.append(f"{len(a)} lines vs {len(b)}")
    worst = 0.0
    for i, (la, lb) in enumerate(zip(a, b)):
        ka, ra = rows(la)
        kb, rb = rows(lb)
        if ka != kb:
            problems.append(f"line {i + 1}: {ka} vs {kb}")
            continue
        if ra[0][0] != rb[0][0]:
            problems.append(f"line {i + 1} ({ka}): top-1 {ra[0][0]!r} vs {rb[0][0]!r}")
        values_b = {phrase: v for phrase, v in rb}
        for phrase, va in ra:
            vb = values_b.get(phrase)
            if vb is None:
                problems.append(f"line {i + 1}: {phrase!r} missing in {args.b}")
                continue
            for field, x in va.items():
                if field in TIMINGS:
                    continue
                d = abs(x - vb[field])
                worst = max(worst, d)
                if d > args.tol:
                    problems.append(f"line {i + 1} ({ka}) {phrase!r} {field}: {x} vs {vb[field]}")
    print(f"{args.a} vs {args.b}: {len(a)} lines, largest difference {worst:.2e} (tolerance {args.tol:g})")
    for problem in problems[:20]:
        print("  " + problem)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
