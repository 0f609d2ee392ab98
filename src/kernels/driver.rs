//! What the int8 and the fp32 products share around their micro-kernels: the output stage
//! they apply ([`Epilogue`]) and its length checks, the cut of a product into blocks
//! ([`split_tasks`]), the one threaded driver that runs the blocks on the engine's pool
//! ([`run_blocks`]), and the one pointer through which the blocks write their parts of the
//! output ([`SharedOut`]).

use std::marker::PhantomData;
use std::ops::Range;

/// What a product's output stage does with each value, in the graph's order: `+ bias[j]`
/// (if given), then QuickGELU (if given), then `+ residual[i, j]` (if given, row-major
/// [M, N] like the output). The int8 product applies it after its dequantization.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    /// QuickGELU's alpha: `y = x * sigmoid(alpha * x)` on the biased product, by the same
    /// function as the engine's separate QuickGELU pass
    /// (`kernels::activation::quick_gelu_value`), so the result is the same bit for
    /// bit.
    pub quick_gelu: Option<f32>,
    pub residual: Option<&'a [f32]>,
}

impl<'a> Epilogue<'a> {
    /// The bias alone.
    pub fn bias(bias: Option<&'a [f32]>) -> Self {
        Epilogue {
            bias,
            ..Epilogue::default()
        }
    }

    /// Checks that the bias holds `n` values and the residual `m` x `n`.
    ///
    /// # Panics
    /// If either does not.
    pub(crate) fn check(&self, m: usize, n: usize) {
        if let Some(bias) = self.bias {
            assert_eq!(bias.len(), n, "{} bias values for {n} columns", bias.len());
        }
        if let Some(residual) = self.residual {
            check_len("residual", residual.len(), m, n);
        }
    }
}

/// Checks that the matrix `what` holds `rows` x `cols` values.
///
/// # Panics
/// If it does not.
pub(crate) fn check_len(what: &str, len: usize, rows: usize, cols: usize) {
    assert_eq!(
        len,
        rows * cols,
        "{what}: {len} values, expected {rows} x {cols}"
    );
}

/// The output of one product as its blocks write it: the address of a buffer borrowed
/// mutably for `'a`, shared by the tasks of the product, each of which writes a block of
/// its own. Copying it copies the address, not the borrow: what makes a write sound is the
/// contract of [`SharedOut::slice`] and [`SharedOut::at`].
#[derive(Debug)]
pub(crate) struct SharedOut<'a, T> {
    ptr: *mut T,
    len: usize,
    _buffer: PhantomData<&'a mut [T]>,
}

impl<T> Clone for SharedOut<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SharedOut<'_, T> {}

// SAFETY: a SharedOut only hands out its buffer's address (reading or writing through it
// is unsafe, with the contract that each block is written by one task alone and read by
// none until every task has finished), and the buffer holds `T: Send` values that the
// borrow `'a` lets the tasks write from any thread.
unsafe impl<T: Send> Send for SharedOut<'_, T> {}
// SAFETY: as for Send: sharing the address between threads gives them no access of their
// own; every write goes through the unsafe methods and their disjoint-blocks contract.
unsafe impl<T: Send> Sync for SharedOut<'_, T> {}

impl<'a, T> SharedOut<'a, T> {
    /// The output `out`, borrowed for the whole product.
    pub(crate) fn new(out: &'a mut [T]) -> Self {
        SharedOut {
            ptr: out.as_mut_ptr(),
            len: out.len(),
            _buffer: PhantomData,
        }
    }

    /// The address of value `at`.
    ///
    /// # Safety
    /// `at` is at most the buffer's length; what is written through the address is a block
    /// of the caller's own (no other thread reads or writes it during the product).
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // the x86 kernels' stores
    pub(crate) unsafe fn at(self, at: usize) -> *mut T {
        debug_assert!(at <= self.len);
        // SAFETY: `at` is at most the length of the buffer `ptr` addresses (the caller's
        // contract), so the offset stays inside it or one past its end.
        unsafe { self.ptr.add(at) }
    }

    /// Values `at..at + len` to write.
    ///
    /// # Safety
    /// `at + len` is at most the buffer's length, and no other thread reads or writes those
    /// values while the slice lives (each task writes its own block).
    #[inline(always)]
    pub(crate) unsafe fn slice(self, at: usize, len: usize) -> &'a mut [T] {
        debug_assert!(at + len <= self.len);
        // SAFETY: the values are inside the buffer, which is borrowed mutably for 'a, and
        // this slice is their only reference (the caller's contract).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), len) }
    }
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

/// The threaded driver of both products: runs `block(rows, panels)` over the blocks
/// [`split_tasks`] cuts a product of `m` rows (in groups of `group`) and `panels` panels
/// into for `pool`'s threads, spread over `pool` when there is more than one block, else on
/// the calling thread. The blocks cover the product once and are disjoint, so `block` may
/// write its own part of the output ([`SharedOut`]) from any thread.
pub(crate) fn run_blocks(
    m: usize,
    group: usize,
    panels: usize,
    pool: Option<&rayon::ThreadPool>,
    block: impl Fn((Range<usize>, Range<usize>)) + Sync + Send,
) {
    let threads = pool.map_or(1, |p| p.current_num_threads());
    let tasks = split_tasks(m, group, panels, threads);
    match pool {
        Some(pool) if tasks.len() > 1 => pool.install(|| {
            use rayon::prelude::*;
            tasks.into_par_iter().for_each(block);
        }),
        _ => tasks.into_iter().for_each(block),
    }
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
