//! `clip_search_bench`: scoring an image index as `clip_perception search` does it (rows
//! split over the thread pool, 8-lane dot products, partial selection of the top k) next
//! to a plain loop (one thread, iterator dot products, a full sort), on the same seeded
//! random unit rows. Prints the CPU it ran on and the medians of repeated runs.
//!
//!     cargo run --release --bin clip_search_bench -- [--rows 100000] [--dim 512] [--k 10] [--runs 21]

use std::time::Instant;

use clap::Parser;

use clip_perception::index::{nearest, normalized};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    #[arg(long, default_value_t = 512)]
    dim: usize,
    #[arg(long, default_value_t = 10)]
    k: usize,
    #[arg(long, default_value_t = 21)]
    runs: usize,
}

/// Seeded uniform values in [-1, 1) (a 64-bit LCG: reproducible, no dependency).
fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn plain(rows: &[f32], d: usize, query: &[f32], k: usize) -> Vec<(usize, f32)> {
    let q = normalized(query);
    let mut scored: Vec<(usize, f32)> = rows
        .chunks(d)
        .enumerate()
        .map(|(i, row)| (i, row.iter().zip(&q).map(|(a, b)| a * b).sum()))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(k);
    scored
}

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let ms: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    clip_perception::eval::median(&ms)
}

fn main() {
    let args = Args::parse();
    let d = args.dim;
    let rows: Vec<f32> = random(args.rows * d, 1)
        .chunks(d)
        .flat_map(normalized)
        .collect();
    let query = random(d, 2);
    let (fast, slow) = (
        nearest(&rows, d, &query, args.k),
        plain(&rows, d, &query, args.k),
    );
    let same = fast.iter().map(|h| h.0).eq(slow.iter().map(|h| h.0));
    let t_plain = median_ms(args.runs, || {
        std::hint::black_box(plain(&rows, d, &query, args.k));
    });
    let t_index = median_ms(args.runs, || {
        std::hint::black_box(nearest(&rows, d, &query, args.k));
    });
    println!(
        "CPU: {}; {}",
        clip_perception::cpu::cpu_features(),
        clip_perception::cpu::engine_kernels()
    );
    println!(
        "{} rows x {d}, top {}, {} threads, median of {} runs; same top-k: {same}",
        args.rows,
        args.k,
        rayon::current_num_threads(),
        args.runs
    );
    println!("| scorer | ms | vs plain loop |");
    println!("|---|---|---|");
    println!("| plain loop (1 thread, full sort) | {t_plain:.2} | 1.00 |");
    println!(
        "| index search (clip_perception search) | {t_index:.2} | {:.2}x faster |",
        t_plain / t_index
    );
    if !same {
        eprintln!("error: the two scorers disagree on the top {}", args.k);
        std::process::exit(1);
    }
}
