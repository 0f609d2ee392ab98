#!/usr/bin/env bash
# mutation_check.sh: shows that the value tests fail when the product is wrong. Each case
# breaks one line of the source on purpose (int8 quietly running the fp32 graph, a typo in
# a paper template, a BGR swap, ensembles without per-template normalisation, a wrong
# logit scale, no hysteresis, reversed smoothing, three evaluation metrics), runs the tests that must catch it,
# checks that each of them FAILED, and restores the file. Not run by CI (one rebuild per
# case, ~10 minutes in all); run it by hand after changing these tests:
#   tests/scripts/mutation_check.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
status=0

# mutate FILE SED_EXPR TEST...
mutate() {
    local file=$1 expr=$2
    shift 2
    cp "$file" "$file.orig"
    sed -i "$expr" "$file"
    if cmp -s "$file" "$file.orig"; then
        echo "MUTATION DID NOT APPLY: $file: $expr"
        mv "$file.orig" "$file"
        status=1
        return
    fi
    local out
    out=$(cargo test --no-fail-fast --test tests --lib -- "$@" 2>&1)
    mv "$file.orig" "$file"
    # The restored file keeps its old mtime, older than the mutated build: without a touch
    # cargo would keep the mutant compiled into every later case (and the next test run).
    touch "$file"
    if ! grep -q "^test result" <<<"$out"; then
        echo "DID NOT BUILD $file ($expr):"
        grep -E "^error" -A5 <<<"$out" | head -20
        status=1
        return
    fi
    for t in "$@"; do
        if grep -q "^test [^ ]*$t[^ ]* \.\.\. FAILED" <<<"$out"; then
            echo "caught    $file ($expr): $t"
        else
            echo "MISSED    $file ($expr): $t"
            status=1
        fi
    done
}

mutate src/model/encoder.rs 's/bundle.image_encoder_graph(precision)?/bundle.image_encoder_graph(Precision::Fp32)?/' \
    embeddings::int8_image_encoder_matches_onnxruntime embeddings::int8_rankings_over_40_phrases \
    tabletop::int8_is_onnxruntime_int8_not_fp32 cli::embed_image_and_text_match_golden
mutate src/text/prompt_sets.rs '/^pub const CIFAR10/,/^];/s/"a photo of a {}."/"a photo of the {}."/' \
    cli::builtin_ensembles_are_the_papers_templates cli::classify_values_equal_pytorch
mutate src/image/frame.rs '0,/out.extend_from_slice(&\[p\[2\], p\[1\], p\[0\]\])/s//out.extend_from_slice(\&[p[0], p[1], p[2]])/' \
    colour_encodings_give_known_rgb
mutate src/text/embedder.rs 's/^\( *\)normalize(&mut e);/\1let _ = \&mut e;/' \
    cli::classify_values_equal_pytorch
mutate src/text/embedder.rs 's/logit_scale: self.bundle.manifest.logit_scale,/logit_scale: self.bundle.manifest.logit_scale * 0.5,/' \
    cli::classify_values_equal_pytorch
mutate src/engine/scoring.rs 's/cosine >= if was_matched { t - hysteresis } else { t }/cosine >= t + 0.0 * hysteresis + f32::from(u8::from(was_matched)) * 0.0/' \
    hysteresis_holds_a_match thresholds_override_per_label node::matched_flips_with_threshold_and_hysteresis
mutate src/engine/step.rs 's/\*s = a \* \*s + (1.0 - a) \* c;/*s = (1.0 - a) * *s + a * c;/' \
    smoothing_is_an_exponential_average
# Replay evaluation: ties of the F1 sweep to the lower threshold; the confusion column from
# the best phrase even when it is not matched; truth intervals closed at their end.
mutate src/eval/metrics.rs 's/Some(b) if b.f1 >= p.f1 => Some(b),/Some(b) if b.f1 > p.f1 => Some(b),/' \
    sweep_ties_go_to_the_higher_threshold
mutate src/eval/metrics.rs 's/.filter(|&i| f.matched\[i\])/.filter(|\&i| f.matched[i] || i == f.best)/' \
    eval::metrics_equal_scikit_learn replay::known_truth_gives_exact_metrics_and_a_report
mutate src/eval/truth.rs 's/interval.start_ns <= t \&\& t < interval.end_ns/interval.start_ns <= t \&\& t <= interval.end_ns/' \
    csv_intervals_are_half_open_and_add_up topic_labels_hold_until_the_next_message

exit $status
