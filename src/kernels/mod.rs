//! The engine's own compute kernels, for products tract runs slowly on some CPUs:
//! [`int8_gemm`] is the int8 x int8 -> int32 matrix product of the int8 image encoder's
//! Linear layers, [`f32_gemm`] the fp32 product of the fp32 encoders' Linear layers (weights
//! packed once at load, micro-kernels chosen at run time).

use std::ops::Range;

pub(crate) mod activation;
pub mod f32_gemm;
pub mod int8_gemm;

/// How a product of `m` rows and `panels` column panels is cut into (rows, panels) blocks
/// for `threads` threads: one block on one thread; otherwise enough blocks for the pool to
/// balance (others may be using the cores too), column blocks first (each task then reads
/// its own part of the packed weight), row blocks (whole groups of `group` rows) when the
/// columns alone give too few. The blocks cover the product exactly once.
pub(crate) fn split_tasks(
    m: usize,
    group: usize,
    panels: usize,
    threads: usize,
) -> Vec<(Range<usize>, Range<usize>)> {
    if threads <= 1 {
        return vec![(0..m, 0..panels)];
    }
    let wanted = 4 * threads;
    let col_tasks = panels.min(wanted).max(1);
    let micro_rows = m.div_ceil(group);
    let row_tasks = wanted.div_ceil(col_tasks).min(micro_rows).max(1);
    let rows_per_task = micro_rows.div_ceil(row_tasks) * group;
    (0..row_tasks)
        .flat_map(|rt| {
            let rows = (rt * rows_per_task).min(m)..((rt + 1) * rows_per_task).min(m);
            (0..col_tasks).map(move |ct| {
                let cols = ct * panels / col_tasks..(ct + 1) * panels / col_tasks;
                (rows.clone(), cols)
            })
        })
        .filter(|(rows, cols)| !rows.is_empty() && !cols.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_cover_the_product_once() {
        for (m, group, panels, threads) in [
            (50, 6, 48, 2),
            (50, 5, 144, 2),
            (1, 6, 32, 2),
            (8, 6, 1, 2),
            (77, 6, 3, 3),
            (13, 6, 7, 1),
        ] {
            let tasks = split_tasks(m, group, panels, threads);
            let mut seen = vec![0u8; m * panels];
            for (rows, cols) in &tasks {
                assert!(rows.start % group == 0, "rows start on a group");
                for r in rows.clone() {
                    for c in cols.clone() {
                        seen[r * panels + c] += 1;
                    }
                }
            }
            assert!(
                seen.iter().all(|&s| s == 1),
                "{m} {group} {panels} {threads}"
            );
            if threads > 1 {
                assert!(tasks.len() >= threads.min(m.div_ceil(group) * panels));
            }
        }
    }
}
