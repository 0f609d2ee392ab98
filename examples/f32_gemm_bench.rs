//! The fp32 product's speed and its cache blocking, measured: the engine's kernel with rows
//! taken in blocks of `BENCH_ROW_BLOCK` (96, whose rows of A stay in L2 across a task's
//! panels) against the default, no row blocking (every row of A streamed again for every
//! panel), on the Linear
//! shapes of CLIP ViT-B/32's image tower (50 tokens an image) and text tower (77 tokens a
//! phrase), at 1 and 2 threads. The two variants alternate call by call, so drift in the
//! machine's speed falls on both.
//!
//! ```sh
//! cargo run --release --example f32_gemm_bench -- [--reps 20] [--batch 8]
//! ```
//!
//! Prints the medians over `--reps` calls of each and their ratio (blocked / unblocked:
//! below 1 is faster). Results are equal whatever the blocking; the encoders' own numbers
//! come from `models/benchmark.py`.

mod common;

use std::time::Instant;

use common::arg;

use clip_perception::kernels::f32_gemm::{
    gemm_with_row_block, Epilogue, PackedF32, BENCH_ROW_BLOCK,
};

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i + seed) * 7919 + seed * 31) % 2003) as f32 / 2003.0 - 0.5)
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps = arg(&args, "--reps", 20).max(1);
    let batch = arg(&args, "--batch", 8).max(1);
    println!("cpu: {}", clip_perception::cpu::cpu_features());
    if !PackedF32::is_available() {
        println!("this CPU cannot run the fp32 kernel (AVX2 + FMA)");
        return;
    }
    // (tower, layer, tokens per item, K, N).
    let shapes = [
        ("image", "qkv", 50, 768, 2304),
        ("image", "fc1", 50, 768, 3072),
        ("image", "fc2", 50, 3072, 768),
        ("text", "qkv", 77, 512, 1536),
        ("text", "fc1", 77, 512, 2048),
        ("text", "fc2", 77, 2048, 512),
    ];
    println!(
        "batch {batch}, medians of {reps} calls each, the two variants alternating call by call"
    );
    println!("| tower | layer | M x K x N | threads | blocked ms | unblocked (default) ms | blocked / unblocked | GFLOP/s unblocked |");
    println!("|---|---|---|---|---:|---:|---:|---:|");
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        for (tower, layer, tokens, k, n) in shapes {
            let m = tokens * batch;
            let a = values(m * k, 1);
            let packed = PackedF32::pack(&values(k * n, 2), k, n);
            let bias = values(n, 3);
            let mut out = vec![0f32; m * n];
            let pool = (threads > 1).then_some(&pool);
            let mut time = |row_block: usize| {
                let t = Instant::now();
                gemm_with_row_block(
                    &a,
                    m,
                    &packed,
                    Epilogue::bias(Some(&bias)),
                    &mut out,
                    pool,
                    row_block,
                );
                t.elapsed().as_secs_f64() * 1e3
            };
            time(BENCH_ROW_BLOCK);
            time(usize::MAX);
            let (mut blocked, mut unblocked) = (Vec::new(), Vec::new());
            for _ in 0..reps {
                blocked.push(time(BENCH_ROW_BLOCK));
                unblocked.push(time(usize::MAX));
            }
            let (b, u) = (median(blocked), median(unblocked));
            let gflops = 2.0 * (m * k * n) as f64 / (u * 1e-3) / 1e9;
            println!(
                "| {tower} | {layer} | {m} x {k} x {n} | {threads} | {b:.2} | {u:.2} | {:.3} | {gflops:.1} |",
                b / u
            );
        }
    }
}
