//! An exact int8 x int8 -> int32 matrix product, `C[M, N] = A[M, K] x B[K, N]`, for the
//! Linear layers of the int8 image encoder, where B (the weight) is a constant.
//!
//! - B is packed once ([`PackedB::pack`], at load) into panels of [`NR`] columns; within a
//!   panel, K is taken two at a time and each column holds its pair of K values next to
//!   each other (`B[2p, c], B[2p + 1, c]`), K padded to even and the last panel padded
//!   to [`NR`] columns with zeros.
//! - A is widened per call to int16 pairs `(A[i, 2p], A[i, 2p + 1])`, one 32-bit word each,
//!   in groups of [`MR`] rows with the rows of a group interleaved (`[group][p][row]`), so a
//!   micro-kernel reads one sequential stream of A instead of one per row.
//! - The AVX2 micro-kernel ([`Int8Kernel::Avx2`]) keeps an [`MR`] x [`NR`] block of int32
//!   accumulators in 12 registers (with the two panel registers, the broadcast row pair and
//!   the product's temporary: all 16, nothing spilled); per K pair it sign-extends two
//!   16-byte slices of the panel to int16 (`vpmovsxbw`), broadcasts each row's pair and
//!   multiplies-adds with `vpmaddwd` (two int8 x int8 products summed into an int32 lane: at
//!   most 2 x 128 x 128, so nothing saturates), K unrolled by 2. (The 4 x 24 block it
//!   replaced needed 17 registers and spilled one in its inner loop.) The scalar kernel ([`Int8Kernel::Scalar`])
//!   reads the same layout. Both are exact: accumulation wraps at 2^32 like the reference.
//! - The output stage ([`Output`]) writes the int32 accumulators, or applies the int8
//!   graph's dequantization `(float(acc) * col_scale[j]) * row_scale[i] (+ bias[j])` with
//!   the graph's own fp32 operations in its order (then `+ residual[i, j]`, the skip
//!   connection's Add that follows, if given), so results are bit-identical to it. With
//!   the AVX2 kernel the whole block loop is compiled for AVX2, so this stage is vectorised
//!   too (it took 8% of ViT-B/32's time as scalar code).
//! - With a thread pool of more than one thread, blocks of output columns (and of rows
//!   when there are few columns) are spread over the pool.
//!
//! - The quad kernels read A as unsigned bytes (`A + 128`), four K values per 32-bit word,
//!   and B as four K values per column lane; `128 x` each column's weight sum, computed at
//!   packing, is taken off the accumulators. [`Int8Kernel::Avx2Maddubs`] multiplies with
//!   `vpmaddubsw` + `vpmaddwd` (only for weights that cannot saturate its int16 step);
//!   [`Int8Kernel::Avx512Vnni`] with one `vpdpbusd` per register (6 x 16 blocks, exact for
//!   any weight), and [`Int8Kernel::Avx512VnniZmm`] the same on 512-bit registers (one
//!   register per row of a 16-column panel). The VNNI kernels were written on a CPU without
//!   VNNI: tests run their whole path there with the instruction emulated (the 512-bit
//!   accumulation loop itself only on VNNI CPUs), and the instructions themselves on VNNI
//!   CPUs; as the default each first checks itself against the portable kernel
//!   ([`Int8Kernel::self_check`]), the 512-bit one first.
//!
//! - The AMX kernel ([`Int8Kernel::Amx`], `amx`) multiplies tiles (`tdpbssd`: signed
//!   activations, no offset) from plain padded rows of A and the quad panels of B, 32 x 32
//!   output blocks in four accumulator tiles; the default where the CPU has AMX-INT8, Linux
//!   grants the tiles and it passes its self-check. It was written and measured on an AMX
//!   Xeon; other CPUs test its layouts and block loop with the tile product emulated.
//!
//! `CLIP_PERCEPTION_INT8_KERNEL` (`scalar`, `avx2`, `avx2-maddubs`, `avx512-vnni`,
//! `avx512-vnni-zmm`, `amx`, `tract`, `auto`) forces a kernel, for tests and benchmarks
//! ([`Int8Choice::from_env`]).

#[cfg(target_arch = "x86_64")]
mod amx;
mod block;
mod choice;
mod pack;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use choice::{Int8Choice, Int8Kernel};
pub use pack::{fits_maddubs, PackedB};

use crate::kernels::driver::{check_len, run_blocks, SharedOut};
use crate::kernels::Epilogue;
use block::{run_block, Sink};
use pack::{group_rows, pack_a};

/// Rows of the micro-kernel's accumulator block.
pub const MR: usize = 6;
/// Columns of the micro-kernel's accumulator block (two AVX2 registers of 8 x int32).
pub const NR: usize = 16;
// The AVX2 dispatch (`match rows`) and its register budget are written for 6 x 16.
const _: () = assert!(MR == 6 && NR == 16);
/// Rows per cache block (a multiple of [`MR`]): A's rows of one block stay in cache across a
/// task's panels (48 rows of K = 3072 widened to int16: 288 KiB, inside a 512 KiB L2).
const MC: usize = 48;

/// The environment variable that forces the int8 product ([`Int8Choice::from_env`]).
pub const KERNEL_ENV: &str = "CLIP_PERCEPTION_INT8_KERNEL";

/// Where the product goes.
#[derive(Debug)]
pub enum Output<'a> {
    /// The int32 accumulators, row-major [M, N].
    Int32(&'a mut [i32]),
    /// `(acc as f32 * col_scale[j]) * row_scale[i]`, then the [`Epilogue`]: `+ bias[j]`,
    /// QuickGELU with alpha `quick_gelu` (the engine's one definition,
    /// `kernels::activation::quick_gelu_value`) and `+ residual[i, j]`
    /// (row-major [M, N]), each if given: row-major [M, N] f32.
    Dequantize {
        out: &'a mut [f32],
        row_scale: &'a [f32],
        col_scale: &'a [f32],
        epilogue: Epilogue<'a>,
    },
}

/// `C = A x B`: `a` row-major [m, b.k()], written to `out` as [m, b.n()]. With `pool` of
/// more than one thread, the work is spread over it.
///
/// # Panics
/// If the slices' lengths do not match the shapes.
pub fn gemm(a: &[i8], m: usize, b: &PackedB, out: Output, pool: Option<&rayon::ThreadPool>) {
    let (k, n) = (b.k, b.n);
    check_len("A", a.len(), m, k);
    let sink = match out {
        Output::Int32(c) => {
            check_len("C", c.len(), m, n);
            Sink::Int32(SharedOut::new(c))
        }
        Output::Dequantize {
            out,
            row_scale,
            col_scale,
            epilogue,
        } => {
            check_len("output", out.len(), m, n);
            assert_eq!(
                row_scale.len(),
                m,
                "{} row scales for {m} rows",
                row_scale.len()
            );
            assert_eq!(
                col_scale.len(),
                n,
                "{} column scales for {n} columns",
                col_scale.len()
            );
            epilogue.check(m, n);
            Sink::Dequantize {
                out: SharedOut::new(out),
                row_scale,
                col_scale,
                epilogue,
            }
        }
    };
    if m == 0 || n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if b.kernel == Int8Kernel::Amx {
        let a = amx::pack_a(a, m, k);
        let a = &a;
        run_blocks(m, amx::ROWS, n.div_ceil(NR), pool, |(rows, panels)| {
            // SAFETY: `run_blocks`' blocks are disjoint and inside the [m, n] output, each run
            // by one task, their rows starting at multiples of amx::ROWS; a PackedB for the
            // AMX kernel is only made where the CPU and this process have AMX (`pack` checks
            // `is_available`), or by the tests with the tile product emulated.
            unsafe { amx::run_block(a, m, b, sink, rows, panels) }
        });
        return;
    }
    let a = pack_a(a, m, b);
    let a = &a;
    run_blocks(
        m,
        group_rows(b.kernel),
        n.div_ceil(NR),
        pool,
        |(rows, panels)| {
            // SAFETY: `run_blocks`' blocks are disjoint and inside the [m, n] output, each run
            // by one task.
            unsafe { run_block(a, m, b, sink, rows, panels) }
        },
    );
}
