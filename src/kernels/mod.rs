//! The engine's own compute kernels, for products tract runs slowly on some CPUs:
//! [`int8_gemm`] is the int8 x int8 -> int32 matrix product of the int8 image encoder's
//! Linear layers, [`f32_gemm`] the fp32 product of the fp32 encoders' Linear layers (weights
//! packed once at load, micro-kernels chosen at run time).

use std::ops::Range;

pub mod f32_gemm;
pub mod int8_gemm;

/// QuickGELU of 8 values in a register, by the engine's one definition
/// ([`crate::fused::transformer_ops::quick_gelu_value`]): the output stages of both
/// kernels apply it; inlined into their AVX2 code, the loop is vectorised there.
///
/// # Safety
/// The CPU has AVX.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn quick_gelu_8(y: std::arch::x86_64::__m256, alpha: f32) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::{_mm256_loadu_ps, _mm256_storeu_ps};
    let mut v = [0f32; 8];
    // SAFETY: `v` holds 8 values; AVX by the caller's contract.
    unsafe { _mm256_storeu_ps(v.as_mut_ptr(), y) };
    for x in v.iter_mut() {
        *x = crate::fused::transformer_ops::quick_gelu_value(*x, alpha);
    }
    // SAFETY: as above.
    unsafe { _mm256_loadu_ps(v.as_ptr()) }
}

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
