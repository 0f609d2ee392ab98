//! The fp32 product's speed and its packing of A, measured: the engine's kernel as it runs
//! (A packed once per product into blocks of 6 rows, `[k][6]`, so that each K step's six
//! values are adjacent) against A read where it is (six rows `k` apart, six streams), on the
//! Linear shapes of CLIP ViT-B/32's image tower (50 tokens an image) and text tower (77 tokens a
//! phrase), at 1 and 2 threads. The two variants alternate call by call, so drift in the
//! machine's speed falls on both.
//!
//! ```sh
//! cargo run --release --example f32_gemm_bench -- [--reps 20] [--batch 8]
//! ```
//!
//! Prints the medians over `--reps` calls of each, their ratio (packed / unpacked: below 1
//! is faster) and the packed kernel's GFLOP/s. Results are equal either way; the encoders'
//! own numbers come from `models/benchmark.py`.

mod common;

use std::time::Instant;

use common::arg;

use clip_perception::kernels::f32_gemm::{gemm_with_a_packing, Epilogue, PackedF32};

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
    println!("| tower | layer | M x K x N | threads | A packed (default) ms | A unpacked ms | packed / unpacked | GFLOP/s packed |");
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
            let mut time = |packed_a: bool| {
                let t = Instant::now();
                gemm_with_a_packing(
                    &a,
                    m,
                    &packed,
                    Epilogue::bias(Some(&bias)),
                    &mut out,
                    pool,
                    packed_a,
                );
                t.elapsed().as_secs_f64() * 1e3
            };
            time(true);
            time(false);
            let (mut packed_ms, mut unpacked_ms) = (Vec::new(), Vec::new());
            for _ in 0..reps {
                packed_ms.push(time(true));
                unpacked_ms.push(time(false));
            }
            let (b, u) = (median(packed_ms), median(unpacked_ms));
            let gflops = 2.0 * (m * k * n) as f64 / (b * 1e-3) / 1e9;
            println!(
                "| {tower} | {layer} | {m} x {k} x {n} | {threads} | {b:.2} | {u:.2} | {:.3} | {gflops:.1} |",
                b / u
            );
        }
    }
}
