#!/usr/bin/env bash
# cli_snapshot.sh BIN OUTDIR: runs the CLI commands whose output must not change across a
# refactor (issue 10: classify, tokenize, embed-image --json, info --json on the bundled
# samples, plus the tiny fixture's int8/fp32 paths) and writes each command's stdout to
# OUTDIR. Compare two builds with:
#   tests/scripts/cli_snapshot.sh OLD_BIN /tmp/before
#   tests/scripts/cli_snapshot.sh target/debug/clip_perception /tmp/after
#   diff -r /tmp/before /tmp/after && echo identical
set -euo pipefail
bin=$1
out=$2
cd "$(dirname "$0")/../.."
mkdir -p "$out"
labels="red cup; blue ball; yellow banana; green box; white phone; purple book"
samples=(models/tabletop/samples/*.jpg)
tiny=tests/fixtures/tiny-clip
# --no-cache: a warm cache must not hide a change in the text side.
"$bin" classify "${samples[@]}" --labels "$labels" --no-cache > "$out/classify.txt"
"$bin" classify "${samples[@]}" --labels "$labels" --no-cache --json --top-k 0 > "$out/classify.jsonl"
"$bin" classify "${samples[@]}" --labels "$labels" --no-cache --json --precision fp32 --ensemble cifar10 > "$out/classify_fp32_cifar10.jsonl"
"$bin" classify "${samples[@]}" --labels "$labels" --no-cache --json --template "a blurry photo of a {}." --batch-size 2 > "$out/classify_template_b2.jsonl"
"$bin" classify --model "$tiny" tests/data/preprocess/w641_h479.png --labels "$labels" --no-cache --json --ensemble imagenet --top-k 0 > "$out/classify_tiny_imagenet.jsonl"
"$bin" tokenize "a photo of a red cup." "Ünïcödé &amp; html" "  many   spaces " > "$out/tokenize.txt"
"$bin" tokenize --json "a photo of a red cup." "l'été" > "$out/tokenize.jsonl"
"$bin" embed-image --json "${samples[@]}" > "$out/embed_image.jsonl"
"$bin" embed-image --json --precision fp32 "${samples[@]}" > "$out/embed_image_fp32.jsonl"
"$bin" embed-image --model "$tiny" "${samples[@]}" > "$out/embed_image_tiny.txt"
"$bin" embed-text --json --model "$tiny" "a photo of a red cup." "blue ball" > "$out/embed_text_tiny.jsonl"
"$bin" info --json models/tabletop > "$out/info.json"
"$bin" info models/tabletop > "$out/info.txt"
"$bin" info --json "$tiny" > "$out/info_tiny.json"
"$bin" preprocess models/tabletop/samples/red_cup.jpg --out "$out/preprocess_red_cup.npy"
# The other command groups (issue 30): replay with truth, report metrics and results bag,
# index and search, eval on an ImageFolder made from the samples, the other families.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rec=models/tabletop/recording/tabletop
"$bin" replay "$rec" --params-file config/clip_node.yaml --truth models/tabletop/recording/truth.csv --out "$out/replay.jsonl" --report "$work/report" --out-bag "$work/results.mcap" 2>/dev/null | grep -v 'ms per frame' > "$out/replay_summary.txt"
# Timings differ run to run: dropped.
untime() { sed -E 's/"(latency_ms|encoder_ms)":[0-9.e+-]+/"\1":T/g' "$@"; }
untime -i "$out/replay.jsonl"
python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); m.pop("timing_ms", None); m.pop("generated", None); print(json.dumps(m, sort_keys=True, indent=1))' "$work/report/metrics.json" > "$out/replay_metrics.json"
"$bin" replay "$rec" --labels "$labels" --every 3 --precision fp32 --out - 2>/dev/null | untime > "$out/replay_fp32_every3.jsonl"
"$bin" replay tests/data/bags/no_summary.mcap --labels "$labels" --out "$work/x.jsonl" > /dev/null 2>&1 | sed -E "s/[0-9.]+ s, [0-9.]+ frames\/s/TIME/" > "$out/replay_no_summary.stderr" || true
"$bin" index models/tabletop/samples --out "$work/index" 2>/dev/null
"$bin" search "$work/index" "a red cup" -k 3 | sed "s#$work#WORK#" > "$out/search.txt"
"$bin" search "$work/index" --image models/tabletop/samples/blue_ball.jpg --json | sed "s#$work#WORK#" > "$out/search_image.jsonl"
"$bin" search "$work/index" "red cup" --template "a photo of a {}." --json | sed "s#$work#WORK#" > "$out/search_template.jsonl"
for s in models/tabletop/samples/*.jpg; do
  c=$(basename "$s" .jpg); c=${c%%_*}; mkdir -p "$work/set/$c"; cp "$s" "$work/set/$c/"
done
"$bin" eval "$work/set" --ensemble cifar10 --per-template --failures 3 2>/dev/null | sed "s#$work#WORK#" > "$out/eval.txt"
"$bin" eval "$work/set" --json --limit 4 2>/dev/null | sed "s#$work#WORK#" > "$out/eval.json"
for fam in tiny-siglip tiny-mobileclip2; do
  "$bin" info --json "tests/fixtures/$fam" > "$out/info_$fam.json"
  "$bin" classify --model "tests/fixtures/$fam" "${samples[@]}" --labels "$labels" --no-cache --json --top-k 0 > "$out/classify_$fam.jsonl"
  "$bin" tokenize --model "tests/fixtures/$fam" --json "a photo of a red cup." > "$out/tokenize_$fam.jsonl"
done
echo "wrote $(ls "$out" | wc -l) files to $out"
