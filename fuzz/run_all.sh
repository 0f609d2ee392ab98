#!/bin/bash
# Runs fuzz targets one after another (one libFuzzer worker, at the lowest CPU priority) and
# appends each run's final statistics to fuzz/work/logs/summary.txt. Two of these can run at
# once (one per core) with different targets.
#
#   fuzz/run_all.sh SECONDS TARGET:MAX_LEN ...      # from the repository root
#   fuzz/run_all.sh 900 raw_frame:4096 image_bytes:16384 bag_mcap:40000
#
# Each target stops at 1,000,000 executions (RUNS=<n> changes it) or after SECONDS, whichever
# comes first. New corpus entries go to fuzz/work/<target> (ignored) and seed the next run;
# the committed corpus is read only. MALLOC=<MiB> changes libFuzzer's single-allocation
# limit (default 1024).
set -u
cd "$(dirname "$0")/.."
secs=$1
shift
mkdir -p fuzz/work/logs
for spec in "$@"; do
    t=${spec%%:*}
    len=${spec#*:}
    mkdir -p "fuzz/work/$t"
    start=$(date +%T)
    nice -n 19 cargo +nightly fuzz run --fuzz-dir fuzz --codegen-units 16 "$t" \
        "fuzz/work/$t" "fuzz/corpus/$t" -- \
        -runs="${RUNS:-1000000}" -rss_limit_mb=2048 -malloc_limit_mb="${MALLOC:-1024}" -timeout=10 \
        -max_len="$len" -max_total_time="$secs" -print_final_stats=1 \
        > "fuzz/work/logs/$t.log" 2>&1
    rc=$?
    # One append per target, so that two run_all.sh at once do not interleave their lines.
    {
        echo "=== $t start $start rc=$rc end $(date +%T)"
        grep -E "^#[0-9]+" "fuzz/work/logs/$t.log" | tail -1
        grep -E "stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|Done [0-9]+ runs|ERROR|SUMMARY|(crash|timeout|oom|leak)-" \
            "fuzz/work/logs/$t.log" | head -8
    } > "fuzz/work/logs/$t.summary"
    cat "fuzz/work/logs/$t.summary" >> fuzz/work/logs/summary.txt
done
echo "=== all done $(date +%T)" >> fuzz/work/logs/summary.txt
