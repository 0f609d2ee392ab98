//! The int8 product's own benchmark: GMAC/s of each micro-kernel this CPU has on the Linear
//! shapes of CLIP ViT-B/32 (50 tokens per image), at 1 and 2 threads, with the weight packed
//! once as the encoder does and the dequantizing output stage on.
//!
//! ```sh
//! cargo run --release --example int8_gemm_bench -- [--reps 40] [--batch 1] [--scalar] [--cold]
//! ```
//!
//! `--cold` cycles each call through enough copies of the weight (96 MiB in all) that it
//! comes from memory, as in the encoder, where a pass reads ViT-B/32's 85 MB of int8
//! weights once; without it the weight stays in cache between calls.
//!
//! The portable scalar kernel is slow and only measured with `--scalar`. The weights are
//! 7-bit (-64..=64), so `avx2-maddubs` runs its own kernel (the widening kernels do not care
//! about the values); the `kernel` column names the kernel that ran.
//!
//! Prints the minimum and the median over `--reps` calls (the minimum is the steadier figure
//! on a shared machine). The encoder's own numbers come from `models/benchmark.py`.

mod common;

use std::time::Instant;

use common::arg;

use clip_perception::kernels::int8_gemm::{gemm, Int8Kernel, Output, PackedB};
use clip_perception::kernels::Epilogue;

/// `len` values spread over `-half..=half`.
fn values(len: usize, seed: u64, half: i64) -> Vec<i8> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as i64 % (2 * half + 1) - half) as i8
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps = arg(&args, "--reps", 40).max(1);
    let batch = arg(&args, "--batch", 1).max(1);
    println!("cpu: {}", clip_perception::cpu::cpu_features());
    let m = 50 * batch;
    // (name, K, N): attention in-projection, out-projection, MLP up, MLP down.
    let shapes = [
        ("qkv", 768, 2304),
        ("out", 768, 768),
        ("fc1", 768, 3072),
        ("fc2", 3072, 768),
    ];
    println!("| kernel | threads | layer | M x K x N | min ms | median ms | GMAC/s (min) |");
    println!("|---|---|---|---|---|---|---|");
    let scalar = args.iter().any(|a| a == "--scalar");
    let cold = args.iter().any(|a| a == "--cold");
    for kernel in Int8Kernel::available() {
        if kernel == Int8Kernel::Scalar && !scalar {
            continue;
        }
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("thread pool");
            let mut total_min = 0.0;
            let mut macs = 0.0;
            for (name, k, n) in shapes {
                let a = values(m * k, 1, 127);
                let weight = values(k * n, 2, 64);
                let copies = if cold { (96 << 20) / (k * n) + 1 } else { 1 };
                let bs: Vec<PackedB> = (0..copies)
                    .map(|_| PackedB::pack(&weight, k, n, kernel))
                    .collect();
                let row_scale = vec![0.01f32; m];
                let col_scale = vec![0.02f32; n];
                let bias = vec![0.5f32; n];
                let mut out = vec![0f32; m * n];
                let mut times = Vec::with_capacity(reps);
                for rep in 0..reps + 2 {
                    let b = &bs[rep % copies];
                    let t = Instant::now();
                    gemm(
                        &a,
                        m,
                        b,
                        Output::Dequantize {
                            out: &mut out,
                            row_scale: &row_scale,
                            col_scale: &col_scale,
                            epilogue: Epilogue::bias(Some(&bias)),
                        },
                        Some(&pool),
                    );
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                }
                let mut times = times.split_off(2);
                times.sort_by(f64::total_cmp);
                let (min, median) = (times[0], times[times.len() / 2]);
                let mac = (m * k * n) as f64;
                total_min += min;
                macs += mac;
                println!(
                    "| {} | {threads} | {name} | {m} x {k} x {n} | {min:.3} | {median:.3} | {:.1} |",
                    bs[0].kernel().name(),
                    mac / min / 1e6
                );
            }
            println!(
                "| {} | {threads} | all four | | {total_min:.3} | | {:.1} |",
                kernel.name(),
                macs / total_min / 1e6
            );
        }
    }
}
