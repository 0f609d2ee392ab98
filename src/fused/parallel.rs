//! Spreading the fused elementwise ops over the engine's thread pool (the tract executor's
//! rayon pool, the one the matrix products use), so that they take 1/threads of their time
//! too. Each row is still computed by one thread with the same code, so the results do not
//! depend on the thread count.

use std::sync::Arc;

/// Values per task below which an op stays on the calling thread: a rayon task costs a few
/// microseconds, an elementwise pass over 8k values about as much.
const MIN_VALUES_PER_TASK: usize = 8 * 1024;

/// The engine's thread pool: the tract executor's rayon pool, where the plan runs on one.
pub(crate) fn engine_pool() -> Option<Arc<rayon::ThreadPool>> {
    match tract_linalg::multithread::current_tract_executor() {
        tract_linalg::multithread::Executor::MultiThread(pool) => Some(pool),
        _ => None,
    }
}

/// How to cut `rows` rows of `row_len` values over the engine's pool: the pool and the rows
/// per task, or `None` where the op is better run on the calling thread (no pool of more than
/// one thread, or too little work).
pub(crate) fn row_tasks(rows: usize, row_len: usize) -> Option<(Arc<rayon::ThreadPool>, usize)> {
    let values = rows.checked_mul(row_len)?;
    if values < 2 * MIN_VALUES_PER_TASK || rows < 2 {
        return None;
    }
    let pool = engine_pool()?;
    let threads = pool.current_num_threads();
    if threads <= 1 {
        return None;
    }
    // Two tasks per thread balance a pool whose threads the OS also gives to others.
    let tasks = (2 * threads)
        .min(values / MIN_VALUES_PER_TASK)
        .min(rows)
        .max(1);
    Some((pool, rows.div_ceil(tasks)))
}

/// Runs `op` on `data`, rows of `len` values (`len` > 0), in place: on the engine's pool in
/// blocks of whole rows where [`row_tasks`] says it pays, else on the calling thread.
pub(crate) fn rows_in_place(data: &mut [f32], len: usize, op: impl Fn(&mut [f32]) + Sync + Send) {
    match row_tasks(data.len() / len, len) {
        Some((pool, per_task)) => pool.install(|| {
            use rayon::prelude::*;
            data.par_chunks_mut(per_task * len).for_each(op)
        }),
        None => op(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_work_and_single_threads_stay_on_the_caller() {
        assert!(row_tasks(1, 1 << 20).is_none());
        assert!(row_tasks(100, 10).is_none());
        // No multi-thread executor is set in this test thread.
        assert!(row_tasks(1000, 1000).is_none());
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap(),
        );
        let executor = tract_linalg::multithread::Executor::MultiThread(pool);
        tract_linalg::multithread::multithread_tract_scope(executor, || {
            let (_, per) = row_tasks(50, 3072).unwrap();
            assert_eq!(per, 13, "four tasks of 13, 13, 13, 11 rows");
            let (_, per) = row_tasks(3, 8192).unwrap();
            assert_eq!(per, 1);
            assert!(row_tasks(10, 1000).is_none());
        });
    }
}
