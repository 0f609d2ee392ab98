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
echo "wrote $(ls "$out" | wc -l) files to $out"
