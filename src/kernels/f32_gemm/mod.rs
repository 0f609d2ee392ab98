//! An fp32 matrix product with a constant right-hand side, `C[M, N] = A[M, K] x B[K, N]
//! (+ bias[N])`, for the Linear layers of the fp32 encoders (the text tower always, the
//! image tower at fp32).
//!
//! - B (the weight) is packed once ([`PackedF32::pack`], at load) into panels of [`NR`]
//!   columns, each panel K rows of [`NR`] values (`[panel][k][column]`), the last panel
//!   padded with zero columns.
//! - A is packed once per product into blocks of [`MR`] rows, each `[k][MR]`: the
//!   micro-kernel broadcasts the six values of one K step from adjacent addresses, one
//!   stream instead of six rows `k` apart. On a 2-vCPU AMD EPYC (Zen 3) that measured
//!   0.84-0.98x the time of reading A where it is on 33 of CLIP's 36 Linear shapes and
//!   thread counts, 1.00-1.09x on 3 (`examples/f32_gemm_bench.rs`, three runs); the sums
//!   are the same.
//! - The AVX2 + FMA micro-kernel keeps an [`MR`] x [`NR`] block of accumulators in 12
//!   registers (with the two panel registers and the broadcast: 15 of 16); per K step it
//!   loads the panel's 16 values once and issues 12 fused multiply-adds. Partial row blocks
//!   use the same kernel with fewer rows; the partial last panel goes through a small buffer.
//! - The output stage adds the bias (`acc + bias[j]`, as the graph's Add after its MatMul),
//!   then applies QuickGELU if asked (the MLP's activation after its first Linear layer,
//!   the same function as the engine's separate pass), then adds a residual of the output's
//!   shape if given (`+ residual[i, j]`, the transformer's skip connection: the graph's next
//!   Add). Neither costs a pass over the output of its own.
//! - With a thread pool of more than one thread, blocks of output columns (and of rows when
//!   there are few columns) are spread over the pool (the kernels' one threaded driver).
//! - On CPUs with AVX-512F the same micro-kernel runs on 512-bit registers (one register
//!   per row holds the panel's 16 columns: per K step one panel load, six broadcasts and
//!   six fused multiply-adds instead of two loads and twelve), once it has checked itself
//!   against the 256-bit kernel in the process ([`wide_kernel`]): each output is the same
//!   sequence of fused multiply-adds, so the results are the same bit for bit. It takes two
//!   panels at a time where a task has two (12 accumulator registers: one panel's six
//!   chains cannot keep two FMA units busy); on a 2-vCPU Xeon with AVX-512 that took
//!   ViT-B/32's Linear shapes 12-15% less time on one thread (`f32_gemm_bench`, two
//!   alternating runs of both builds; 2026-12-08).
//!
//! Each output is `sum_k A[i, k] * B[k, j]` accumulated in K order with fused multiply-adds,
//! then the bias: the results differ from tract's product (another summation order) by
//! rounding only. Only x86-64 CPUs with AVX2 and FMA run it ([`PackedF32::is_available`]);
//! elsewhere the graph keeps tract's product. `CLIP_PERCEPTION_F32_KERNEL=tract` keeps
//! tract's everywhere (for comparisons), `auto` (or unset) picks this one where it can run,
//! `avx2` this one on 256-bit registers even where AVX-512F is.

mod choice;
mod pack;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use crate::kernels::Epilogue;
pub use choice::{use_own_kernel, wide_available, wide_kernel};
pub use pack::PackedF32;

use crate::kernels::driver::{check_len, run_blocks, SharedOut};
use pack::pack_a;

/// Rows of the micro-kernel's accumulator block.
pub const MR: usize = 6;
/// Columns of the micro-kernel's accumulator block (two AVX2 registers of 8 x f32).
pub const NR: usize = 16;
// The dispatch (`match rows`) and the register budget are written for 6 x 16.
const _: () = assert!(MR == 6 && NR == 16);

/// The environment variable that chooses the fp32 product ([`use_own_kernel`]).
pub const KERNEL_ENV: &str = "CLIP_PERCEPTION_F32_KERNEL";

/// `out = a x b (+ bias) (+ residual)` ([`Epilogue`]): `a` row-major [m, b.k()], `out`
/// [m, b.n()]. With `pool` of more than one thread, the work is spread over it.
///
/// # Panics
/// If the slices' lengths do not match the shapes, or the CPU cannot run the kernel.
pub fn gemm(
    a: &[f32],
    m: usize,
    b: &PackedF32,
    epilogue: Epilogue,
    out: &mut [f32],
    pool: Option<&rayon::ThreadPool>,
) {
    gemm_with_a_packing(a, m, b, epilogue, out, pool, true)
}

/// [`gemm`] with A packed ([`pack_a`], as [`gemm`]) or read where it is (each of the
/// micro-kernel's rows its own stream), for `examples/f32_gemm_bench.rs` and the tests. The
/// results do not depend on it.
#[doc(hidden)]
pub fn gemm_with_a_packing(
    a: &[f32],
    m: usize,
    b: &PackedF32,
    epilogue: Epilogue,
    out: &mut [f32],
    pool: Option<&rayon::ThreadPool>,
    packed_a: bool,
) {
    gemm_on(a, m, b, epilogue, out, pool, packed_a, wide_kernel())
}

/// [`gemm_with_a_packing`] on the 512-bit (`wide`) or the 256-bit micro-kernel.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_on(
    a: &[f32],
    m: usize,
    b: &PackedF32,
    epilogue: Epilogue,
    out: &mut [f32],
    pool: Option<&rayon::ThreadPool>,
    packed_a: bool,
    wide: bool,
) {
    let (k, n) = (b.k, b.n);
    check_len("A", a.len(), m, k);
    check_len("output", out.len(), m, n);
    epilogue.check(m, n);
    assert!(
        PackedF32::is_available(),
        "the fp32 kernel needs AVX2 and FMA"
    );
    assert!(
        !wide || wide_available(),
        "the 512-bit kernel needs AVX-512F"
    );
    if m == 0 || n == 0 {
        return;
    }
    let a_blocks = packed_a.then(|| pack_a(a, m, k));
    let a_blocks = a_blocks.as_deref();
    let dst = SharedOut::new(out);
    run_blocks(m, MR, n.div_ceil(NR), pool, |(rows, panels)| {
        // SAFETY: the CPU has AVX2 and FMA, and AVX-512F if `wide` (asserted above);
        // `run_blocks`' blocks are disjoint and inside the [m, n] output, each run by one
        // task.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            if wide {
                x86::run_block_wide(a, a_blocks, b, epilogue, dst, rows, panels)
            } else {
                x86::run_block(a, a_blocks, b, epilogue, dst, rows, panels)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (rows, panels, dst, a_blocks);
            unreachable!("is_available is false off x86-64")
        }
    });
}
