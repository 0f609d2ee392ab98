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
//!   there are few columns) are spread over the pool ([`super::split_tasks`]).
//! - On CPUs with AVX-512F the same micro-kernel runs on 512-bit registers (one register
//!   per row holds the panel's 16 columns: per K step one panel load, six broadcasts and
//!   six fused multiply-adds instead of two loads and twelve), once it has checked itself
//!   against the 256-bit kernel in the process ([`wide_kernel`]): each output is the same
//!   sequence of fused multiply-adds, so the results are the same bit for bit. It was
//!   written on a CPU without AVX-512 and is unmeasured.
//!
//! Each output is `sum_k A[i, k] * B[k, j]` accumulated in K order with fused multiply-adds,
//! then the bias: the results differ from tract's product (another summation order) by
//! rounding only. Only x86-64 CPUs with AVX2 and FMA run it ([`PackedF32::is_available`]);
//! elsewhere the graph keeps tract's product. `CLIP_PERCEPTION_F32_KERNEL=tract` keeps
//! tract's everywhere (for comparisons), `auto` (or unset) picks this one where it can run,
//! `avx2` this one on 256-bit registers even where AVX-512F is.

use std::ops::Range;

/// Rows of the micro-kernel's accumulator block.
pub const MR: usize = 6;
/// Columns of the micro-kernel's accumulator block (two AVX2 registers of 8 x f32).
pub const NR: usize = 16;
// The dispatch (`match rows`) and the register budget are written for 6 x 16.
const _: () = assert!(MR == 6 && NR == 16);

/// The environment variable that chooses the fp32 product ([`use_own_kernel`]).
pub const KERNEL_ENV: &str = "CLIP_PERCEPTION_F32_KERNEL";

/// Whether the fp32 encoders' Linear layers run on this module's kernel: the CPU can run it,
/// and [`KERNEL_ENV`] is unset, `auto`, `own` or `avx2` (`tract` keeps tract's product; any
/// other value is reported and treated as `auto`).
pub fn use_own_kernel() -> bool {
    match std::env::var(KERNEL_ENV).as_deref() {
        Ok("tract") => false,
        Ok("auto" | "own" | "avx2") | Err(_) => PackedF32::is_available(),
        Ok(other) => {
            log::warn!("{KERNEL_ENV}={other:?}: expected tract, own, avx2 or auto; using auto");
            PackedF32::is_available()
        }
    }
}

/// Whether [`gemm`] runs the micro-kernel on 512-bit registers: the CPU has AVX-512F,
/// [`KERNEL_ENV`] is not `avx2`, and the 512-bit kernel's products equal the 256-bit
/// kernel's bit for bit on a few shapes (checked once per process; a difference is logged
/// as an error and the 256-bit kernel kept).
pub fn wide_kernel() -> bool {
    use std::sync::OnceLock;
    static WIDE: OnceLock<bool> = OnceLock::new();
    *WIDE.get_or_init(|| {
        if !wide_available() || std::env::var(KERNEL_ENV).as_deref() == Ok("avx2") {
            return false;
        }
        let ok = wide_equals_narrow();
        if !ok {
            log::error!(
                "the 512-bit fp32 kernel disagrees with the 256-bit one on this CPU; not using \
                 it (please report this with the CPU's model)"
            );
        }
        ok
    })
}

/// Whether the CPU can run the 512-bit micro-kernel (AVX2, FMA and AVX-512F).
fn wide_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        PackedF32::is_available() && std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `n` deterministic values in -2..2 (`seed` picks the sequence), for the self-check and
/// the tests.
fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i + seed) * 7919 + seed * 31) % 2003) as f32 / 2003.0 * 4.0 - 2.0)
        .collect()
}

/// The 512-bit and 256-bit kernels on shapes with partial row blocks, partial panels and
/// every output stage: equal bit for bit. Only called where [`wide_available`].
fn wide_equals_narrow() -> bool {
    [(1, 1, 1), (7, 37, 33), (13, 301, 17), (50, 96, 64)]
        .into_iter()
        .all(|(m, k, n)| {
            let (a, w) = (values(m * k, 1), values(k * n, 2));
            let (bias, residual) = (values(n, 3), values(m * n, 4));
            let b = PackedF32::pack(&w, k, n);
            let epilogue = Epilogue {
                bias: Some(&bias),
                quick_gelu: Some(1.702),
                residual: Some(&residual),
            };
            let product = |wide| {
                let mut out = vec![0f32; m * n];
                gemm_on(&a, m, &b, epilogue, &mut out, None, true, wide);
                out
            };
            let (narrow, wide) = (product(false), product(true));
            narrow
                .iter()
                .zip(&wide)
                .all(|(x, y)| x.to_bits() == y.to_bits())
        })
}

/// A weight [K, N] packed into [`NR`]-column panels.
#[derive(Debug)]
pub struct PackedF32 {
    k: usize,
    n: usize,
    /// `[panel][k][NR]`.
    panels: Vec<f32>,
}

impl PackedF32 {
    /// Whether this CPU can run the kernel (x86-64 with AVX2 and FMA).
    pub fn is_available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Packs `w`, row-major [k, n].
    ///
    /// # Panics
    /// If `w` does not hold k x n values.
    pub fn pack(w: &[f32], k: usize, n: usize) -> PackedF32 {
        assert_eq!(w.len(), k * n, "weight of {} values for {k} x {n}", w.len());
        let panels_n = n.div_ceil(NR);
        let mut panels = vec![0f32; panels_n * k * NR];
        for (p, panel) in panels
            .chunks_exact_mut((k * NR).max(1))
            .enumerate()
            .take(panels_n)
        {
            let c0 = p * NR;
            let width = NR.min(n - c0);
            for (kk, dst) in panel.chunks_exact_mut(NR).enumerate() {
                dst[..width].copy_from_slice(&w[kk * n + c0..][..width]);
            }
        }
        PackedF32 { k, n, panels }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }
}

/// What the output stage does with each product, in the graph's order: `acc + bias[j]` (if
/// given), then QuickGELU (if given), then `+ residual[i, j]` (if given, row-major [M, N]
/// like the output).
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    /// QuickGELU's alpha: `y = x * sigmoid(alpha * x)` on the biased product, by the same
    /// function as the engine's separate QuickGELU pass
    /// ([`crate::kernels::activation::quick_gelu_value`]), so the result is the same bit for bit.
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
}

/// The output buffer shared by the tasks of one product.
#[derive(Clone, Copy)]
struct Out(*mut f32);

// SAFETY: the pointer addresses an [M, N] buffer borrowed mutably for the whole product;
// tasks write disjoint blocks of it and nothing reads it until every task has finished.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

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
fn gemm_on(
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
    assert_eq!(
        a.len(),
        m * k,
        "A has {} values, expected {m} x {k}",
        a.len()
    );
    assert_eq!(
        out.len(),
        m * n,
        "output: {} values, expected {m} x {n}",
        out.len()
    );
    if let Some(bias) = epilogue.bias {
        assert_eq!(bias.len(), n, "{} bias values for {n} columns", bias.len());
    }
    if let Some(residual) = epilogue.residual {
        assert_eq!(
            residual.len(),
            m * n,
            "residual: {} values, expected {m} x {n}",
            residual.len()
        );
    }
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
    let panels = n.div_ceil(NR);
    let a_blocks = packed_a.then(|| pack_a(a, m, k));
    let a_blocks = a_blocks.as_deref();
    let dst = Out(out.as_mut_ptr());
    let threads = pool.map_or(1, |p| p.current_num_threads());
    let tasks = super::split_tasks(m, MR, panels, threads);
    let run = |(rows, cols): (Range<usize>, Range<usize>)| {
        // SAFETY: the CPU has AVX2 and FMA, and AVX-512F if `wide` (asserted above); the
        // tasks' blocks are disjoint and inside the [m, n] output.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            if wide {
                avx2::run_block_wide(a, a_blocks, b, epilogue, dst, rows, cols)
            } else {
                avx2::run_block(a, a_blocks, b, epilogue, dst, rows, cols)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (rows, cols, dst, a_blocks);
            unreachable!("is_available is false off x86-64")
        }
    };
    match pool {
        Some(pool) if tasks.len() > 1 => pool.install(|| {
            use rayon::prelude::*;
            tasks.into_par_iter().for_each(run);
        }),
        _ => tasks.into_iter().for_each(run),
    }
}

/// A (row-major [m, k]) in blocks of [`MR`] rows, each block `[k][MR]` (the rows past `m`
/// zero): the micro-kernel's six values of one K step are then adjacent, one stream of A
/// instead of six rows `k` apart.
///
/// A full block is written K step by K step, six values at a time from six row streams
/// (sequential writes): on a 2-vCPU AMD EPYC (Zen 3) 12 us for 77 x 512 and 50 us for
/// 77 x 2048, where scattering each row's values with a stride of six took 65 and 270 us
/// (about 5% of a text pass at 77 tokens).
fn pack_a(a: &[f32], m: usize, k: usize) -> Vec<f32> {
    let mut blocks = vec![0f32; m.div_ceil(MR) * k * MR];
    if k == 0 {
        return blocks;
    }
    for (rows, block) in a[..m * k]
        .chunks(MR * k)
        .zip(blocks.chunks_exact_mut(MR * k))
    {
        if rows.len() == MR * k {
            let r: [&[f32]; MR] = std::array::from_fn(|i| &rows[i * k..][..k]);
            for (kk, step) in block.chunks_exact_mut(MR).enumerate() {
                step.copy_from_slice(&[r[0][kk], r[1][kk], r[2][kk], r[3][kk], r[4][kk], r[5][kk]]);
            }
        } else {
            // The last, partial block: its missing rows stay zero.
            for (i, row) in rows.chunks_exact(k).enumerate() {
                for (step, &x) in block.chunks_exact_mut(MR).zip(row) {
                    step[i] = x;
                }
            }
        }
    }
    blocks
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Epilogue, Out, PackedF32, Range, MR, NR};
    use std::arch::x86_64::*;

    /// Rows `rows` (starting on a block of [`MR`]) x panels `panels` of the product; A read
    /// from `a_blocks` ([`super::pack_a`]) when given, else from `a`.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; the block is inside the output and no other thread
    /// writes it.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run_block(
        a: &[f32],
        a_blocks: Option<&[f32]>,
        b: &PackedF32,
        epilogue: Epilogue,
        out: Out,
        rows: Range<usize>,
        panels: Range<usize>,
    ) {
        // SAFETY: the caller's contract.
        unsafe { run_block_inline::<false>(a, a_blocks, b, epilogue, out, rows, panels) }
    }

    /// [`run_block`] on 512-bit registers ([`micro_wide`]).
    ///
    /// # Safety
    /// As [`run_block`], and the CPU has AVX-512F.
    #[target_feature(enable = "avx2,fma,avx512f")]
    pub(super) unsafe fn run_block_wide(
        a: &[f32],
        a_blocks: Option<&[f32]>,
        b: &PackedF32,
        epilogue: Epilogue,
        out: Out,
        rows: Range<usize>,
        panels: Range<usize>,
    ) {
        // SAFETY: the caller's contract.
        unsafe { run_block_inline::<true>(a, a_blocks, b, epilogue, out, rows, panels) }
    }

    /// [`run_block`]'s body, inlined into each instruction set's copy (`WIDE`: 512-bit
    /// accumulators).
    ///
    /// # Safety
    /// As [`run_block`] (and [`run_block_wide`] for `WIDE`).
    #[inline(always)]
    unsafe fn run_block_inline<const WIDE: bool>(
        a: &[f32],
        a_blocks: Option<&[f32]>,
        b: &PackedF32,
        epilogue: Epilogue,
        out: Out,
        rows: Range<usize>,
        panels: Range<usize>,
    ) {
        // Packed A is addressed by blocks of MR rows ([`super::split_tasks`] cuts on them).
        assert!(
            a_blocks.is_none() || rows.start.is_multiple_of(MR),
            "a task's rows start at {}, not on a block of {MR}",
            rows.start
        );
        for p in panels {
            // SAFETY: the caller's contract.
            unsafe { run_panel::<WIDE>(a, a_blocks, b, epilogue, out, rows.clone(), p) };
        }
    }

    /// Rows `rows` x panel `p` of the product.
    ///
    /// # Safety
    /// As [`run_block_inline`].
    #[inline(always)]
    unsafe fn run_panel<const WIDE: bool>(
        a: &[f32],
        a_blocks: Option<&[f32]>,
        b: &PackedF32,
        epilogue: Epilogue,
        out: Out,
        rows: Range<usize>,
        p: usize,
    ) {
        let (k, n) = (b.k, b.n);
        {
            let panel = &b.panels[p * k * NR..][..k * NR];
            let c0 = p * NR;
            let width = NR.min(n - c0);
            let mut bias_block = [0f32; NR];
            if let Some(bias) = epilogue.bias {
                bias_block[..width].copy_from_slice(&bias[c0..c0 + width]);
            }
            let mut r0 = rows.start;
            while r0 < rows.end {
                let count = MR.min(rows.end - r0);
                // SAFETY: AVX2 + FMA (+ AVX-512F for WIDE: the caller's features); slices
                // sized here.
                let acc = unsafe {
                    match a_blocks {
                        Some(blocks) => {
                            // r0 is on a block of MR rows: asserted in `run_block`.
                            let block = &blocks[r0 / MR * k * MR..][..k * MR];
                            micro_rows::<true, WIDE>(count, block, k, panel)
                        }
                        None => {
                            micro_rows::<false, WIDE>(count, &a[r0 * k..(r0 + count) * k], k, panel)
                        }
                    }
                };
                // SAFETY: AVX2 by the caller's contract (this body is inlined into
                // `run_block`/`run_block_wide`, compiled with it); `bias_block` holds NR = 16
                // floats, so both 8-float loads are inside it.
                let (bias_lo, bias_hi) = unsafe {
                    (
                        _mm256_loadu_ps(bias_block.as_ptr()),
                        _mm256_loadu_ps(bias_block.as_ptr().add(8)),
                    )
                };
                for (r, [lo, hi]) in acc.iter().enumerate().take(count) {
                    // SAFETY: AVX2, as above.
                    let (mut lo, mut hi) =
                        unsafe { (_mm256_add_ps(*lo, bias_lo), _mm256_add_ps(*hi, bias_hi)) };
                    if let Some(alpha) = epilogue.quick_gelu {
                        // SAFETY: AVX2, as above (all `quick_gelu_8` needs).
                        unsafe {
                            lo = crate::kernels::activation::quick_gelu_8(lo, alpha);
                            hi = crate::kernels::activation::quick_gelu_8(hi, alpha);
                        }
                    }
                    let at = (r0 + r) * n + c0;
                    if width == NR {
                        if let Some(res) = epilogue.residual {
                            // The slice check keeps both loads inside the residual.
                            let res = res[at..at + NR].as_ptr();
                            // SAFETY: AVX2, as above; `res` points to NR = 16 floats.
                            unsafe {
                                lo = _mm256_add_ps(lo, _mm256_loadu_ps(res));
                                hi = _mm256_add_ps(hi, _mm256_loadu_ps(res.add(8)));
                            }
                        }
                        // SAFETY: AVX2, as above; row r0 + r < m and columns c0..c0 + NR <= n
                        // are inside the [m, n] output (the caller's contract: the block is
                        // inside it), and this task alone writes them.
                        unsafe {
                            let row = out.0.add(at);
                            _mm256_storeu_ps(row, lo);
                            _mm256_storeu_ps(row.add(8), hi);
                        }
                    } else {
                        let mut tile = [0f32; NR];
                        // SAFETY: AVX2, as above; `tile` holds NR = 16 floats.
                        unsafe {
                            _mm256_storeu_ps(tile.as_mut_ptr(), lo);
                            _mm256_storeu_ps(tile.as_mut_ptr().add(8), hi);
                        }
                        if let Some(res) = epilogue.residual {
                            for (y, &v) in tile.iter_mut().zip(&res[at..at + width]) {
                                *y += v;
                            }
                        }
                        // SAFETY: row r0 + r < m and columns c0..c0 + width <= n are inside
                        // the [m, n] output (the caller's contract), this task alone writes
                        // them, and `tile` holds width <= NR floats.
                        unsafe {
                            std::ptr::copy_nonoverlapping(tile.as_ptr(), out.0.add(at), width)
                        };
                    }
                }
                r0 += count;
            }
        }
    }

    /// [`micro`] (or [`micro_wide`] for `WIDE`) for `count` (1..=[`MR`]) rows.
    ///
    /// # Safety
    /// As [`micro`] (or [`micro_wide`]), with R = `count`.
    #[inline(always)]
    unsafe fn micro_rows<const PACKED: bool, const WIDE: bool>(
        count: usize,
        a: &[f32],
        k: usize,
        panel: &[f32],
    ) -> [[__m256; 2]; MR] {
        // SAFETY: the caller's contract.
        unsafe {
            match (count, WIDE) {
                (6, false) => micro::<6, PACKED>(a, k, panel),
                (5, false) => micro::<5, PACKED>(a, k, panel),
                (4, false) => micro::<4, PACKED>(a, k, panel),
                (3, false) => micro::<3, PACKED>(a, k, panel),
                (2, false) => micro::<2, PACKED>(a, k, panel),
                (_, false) => micro::<1, PACKED>(a, k, panel),
                (6, true) => micro_wide::<6, PACKED>(a, k, panel),
                (5, true) => micro_wide::<5, PACKED>(a, k, panel),
                (4, true) => micro_wide::<4, PACKED>(a, k, panel),
                (3, true) => micro_wide::<3, PACKED>(a, k, panel),
                (2, true) => micro_wide::<2, PACKED>(a, k, panel),
                (_, true) => micro_wide::<1, PACKED>(a, k, panel),
            }
        }
    }

    /// The [`MR`] x [`NR`] block (first `R` rows valid) of R rows of A times one panel; A is
    /// one packed block `[k][MR]` (`PACKED`) or R rows of `k` values.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `a` holds k x [`MR`] (`PACKED`) or R x k values and
    /// `panel` k x [`NR`].
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn micro<const R: usize, const PACKED: bool>(
        a: &[f32],
        k: usize,
        panel: &[f32],
    ) -> [[__m256; 2]; MR] {
        debug_assert!(a.len() == if PACKED { k * MR } else { R * k });
        debug_assert!(panel.len() == k * NR);
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        let mut ap = a.as_ptr();
        let mut bp = panel.as_ptr();
        for _ in 0..k {
            // SAFETY: k steps: inside both slices.
            unsafe {
                let b0 = _mm256_loadu_ps(bp);
                let b1 = _mm256_loadu_ps(bp.add(8));
                for (r, acc) in acc.iter_mut().enumerate().take(R) {
                    let av = _mm256_broadcast_ss(&*ap.add(if PACKED { r } else { r * k }));
                    acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
                }
                bp = bp.add(NR);
                ap = ap.add(if PACKED { MR } else { 1 });
            }
        }
        acc
    }

    /// [`micro`] on 512-bit registers: one accumulator per row holds the panel's 16
    /// columns, so a K step is one panel load, R broadcasts and R fused multiply-adds. Each
    /// output gets the same fused multiply-adds in the same order as in [`micro`], so the
    /// results are the same bit for bit; returned as [`micro`]'s 256-bit halves (columns
    /// 0-7, 8-15).
    ///
    /// # Safety
    /// As [`micro`], and the CPU has AVX-512F (the caller's features: this function is
    /// always inlined into [`run_block_wide`]).
    #[inline(always)]
    unsafe fn micro_wide<const R: usize, const PACKED: bool>(
        a: &[f32],
        k: usize,
        panel: &[f32],
    ) -> [[__m256; 2]; MR] {
        debug_assert!(a.len() == if PACKED { k * MR } else { R * k });
        debug_assert!(panel.len() == k * NR);
        // SAFETY: the intrinsics need AVX-512F, the caller's features; the loads stay inside
        // both slices (k steps of MR or 1 values of `a` and NR of `panel`, sizes asserted above).
        unsafe {
            let mut acc = [_mm512_setzero_ps(); R];
            let mut ap = a.as_ptr();
            let mut bp = panel.as_ptr();
            for _ in 0..k {
                let b = _mm512_loadu_ps(bp);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*ap.add(if PACKED { r } else { r * k }));
                    *acc = _mm512_fmadd_ps(av, b, *acc);
                }
                bp = bp.add(NR);
                ap = ap.add(if PACKED { MR } else { 1 });
            }
            let mut halves = [[_mm256_setzero_ps(); 2]; MR];
            for (half, acc) in halves.iter_mut().zip(acc) {
                half[0] = _mm512_castps512_ps256(acc);
                half[1] = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc)));
            }
            halves
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f64 reference.
    fn naive(a: &[f32], w: &[f32], epilogue: Epilogue, m: usize, k: usize, n: usize) -> Vec<f64> {
        (0..m * n)
            .map(|ij| {
                let (i, j) = (ij / n, ij % n);
                (0..k)
                    .map(|kk| a[i * k + kk] as f64 * w[kk * n + j] as f64)
                    .sum::<f64>()
                    + epilogue.bias.map_or(0.0, |b| b[j] as f64)
                    + epilogue.residual.map_or(0.0, |r| r[ij] as f64)
            })
            .collect()
    }

    #[test]
    fn equals_an_f64_reference_over_odd_shapes_on_one_and_two_threads() {
        if !PackedF32::is_available() {
            eprintln!("no AVX2 + FMA on this CPU: the fp32 kernel is not used here");
            return;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let mut shapes = vec![
            (50, 768, 2304),
            (77, 512, 2048),
            (8, 2048, 512),
            (1, 768, 512),
        ];
        for m in [1, 2, 5, 6, 7, 13] {
            for k in [1, 3, 16, 37] {
                for n in [1, 7, 15, 16, 17, 33, 40] {
                    shapes.push((m, k, n));
                }
            }
        }
        for (m, k, n) in shapes {
            let a = values(m * k, 1);
            let w = values(k * n, 2);
            let bias = values(n, 3);
            let residual = values(m * n, 4);
            let packed = PackedF32::pack(&w, k, n);
            for (with_bias, with_residual) in
                [(false, false), (true, false), (true, true), (false, true)]
            {
                let epilogue = Epilogue {
                    bias: with_bias.then_some(&bias[..]),
                    residual: with_residual.then_some(&residual[..]),
                    quick_gelu: None,
                };
                let want = naive(&a, &w, epilogue, m, k, n);
                let mut one = vec![f32::NAN; m * n];
                gemm(&a, m, &packed, epilogue, &mut one, None);
                let mut two = vec![f32::NAN; m * n];
                gemm(&a, m, &packed, epilogue, &mut two, Some(&pool));
                assert_eq!(one, two, "{m}x{k}x{n}: thread count changed the result");
                // A read where it is: the same sums in the same order, bit for bit.
                for pool in [None, Some(&pool)] {
                    let mut unpacked = vec![f32::NAN; m * n];
                    gemm_with_a_packing(&a, m, &packed, epilogue, &mut unpacked, pool, false);
                    assert_eq!(one, unpacked, "{m}x{k}x{n}: A unpacked");
                }
                // The product with its bias alone, for the output stage's other steps.
                let mut alone = vec![f32::NAN; m * n];
                gemm(
                    &a,
                    m,
                    &packed,
                    Epilogue::bias(epilogue.bias),
                    &mut alone,
                    None,
                );
                if with_residual {
                    // The residual is the graph's next Add: exactly the product (with its
                    // bias) plus the residual, rounded once.
                    let added: Vec<f32> = alone.iter().zip(&residual).map(|(y, r)| r + y).collect();
                    assert_eq!(one, added, "{m}x{k}x{n}: residual not the graph's Add");
                }
                // QuickGELU in the output stage: the separate pass's function on the biased
                // product, before the residual, bit for bit (any thread count).
                let gelu = Epilogue {
                    quick_gelu: Some(1.702),
                    ..epilogue
                };
                let want_gelu: Vec<f32> = alone
                    .iter()
                    .enumerate()
                    .map(|(ij, &y)| {
                        let y = crate::kernels::activation::quick_gelu_value(y, 1.702);
                        epilogue.residual.map_or(y, |r| r[ij] + y)
                    })
                    .collect();
                for pool in [None, Some(&pool)] {
                    let mut got = vec![f32::NAN; m * n];
                    gemm(&a, m, &packed, gelu, &mut got, pool);
                    assert_eq!(got, want_gelu, "{m}x{k}x{n}: QuickGELU in the output stage");
                }
                // f32 sums of k products of values up to 2: k * 4 * 2^-24 of absolute error
                // at worst (fused multiply-adds round once per step).
                let tol = 1e-6 + k as f64 * 4.0 * f32::EPSILON as f64;
                for (ij, (&g, &w)) in one.iter().zip(&want).enumerate() {
                    assert!(
                        (g as f64 - w).abs() <= tol,
                        "{m}x{k}x{n} bias {with_bias} residual {with_residual} at {ij}: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_is_packed_in_blocks_of_six_rows_k_step_by_k_step() {
        // 7 rows of 3: one full block and one of a single row (five zero rows).
        let a: Vec<f32> = (0..21).map(|v| v as f32).collect();
        let packed = pack_a(&a, 7, 3);
        let mut want = vec![0f32; 2 * 3 * MR];
        for i in 0..7 {
            for kk in 0..3 {
                want[i / MR * 3 * MR + kk * MR + i % MR] = a[i * 3 + kk];
            }
        }
        assert_eq!(packed, want);
        assert_eq!(&packed[..MR], &[0.0, 3.0, 6.0, 9.0, 12.0, 15.0]);
        assert_eq!(&packed[3 * MR..4 * MR], &[18.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(pack_a(&[], 4, 0).is_empty());
    }

    #[test]
    fn empty_products_write_nothing() {
        if !PackedF32::is_available() {
            return;
        }
        let packed = PackedF32::pack(&[], 0, 3);
        let mut out = vec![0f32; 6];
        gemm(
            &[],
            2,
            &packed,
            Epilogue::bias(Some(&[1.0, 2.0, 3.0])),
            &mut out,
            None,
        );
        assert_eq!(out, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0], "k = 0: the bias alone");
        let packed = PackedF32::pack(&[], 4, 0);
        gemm(&[0.0; 8], 2, &packed, Epilogue::default(), &mut [], None);
    }

    /// The 512-bit kernel's products equal the 256-bit kernel's bit for bit over odd shapes,
    /// packed and unpacked A, every output stage, 1 and 2 threads. It runs only on CPUs with
    /// AVX-512F; elsewhere the kernel is never chosen, which is checked instead.
    #[test]
    fn the_512_bit_kernel_equals_the_256_bit_kernel_bit_for_bit() {
        if !wide_available() {
            assert!(!wide_kernel(), "the 512-bit kernel chosen without AVX-512F");
            eprintln!("no AVX-512F on this CPU: the 512-bit fp32 kernel is not run here");
            return;
        }
        assert!(wide_equals_narrow(), "the self-check's shapes differ");
        let two = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for (m, k, n) in [
            (1, 1, 1),
            (5, 3, 15),
            (6, 64, 16),
            (7, 65, 17),
            (50, 768, 2304),
        ] {
            let (a, w) = (values(m * k, 5), values(k * n, 6));
            let (bias, residual) = (values(n, 7), values(m * n, 8));
            let b = PackedF32::pack(&w, k, n);
            let stages = [
                Epilogue::default(),
                Epilogue::bias(Some(&bias)),
                Epilogue {
                    bias: Some(&bias),
                    quick_gelu: Some(1.702),
                    residual: Some(&residual),
                },
            ];
            for epilogue in stages {
                for pool in [None, Some(&two)] {
                    for packed_a in [true, false] {
                        let product = |wide| {
                            let mut out = vec![0f32; m * n];
                            gemm_on(&a, m, &b, epilogue, &mut out, pool, packed_a, wide);
                            out.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                        };
                        assert_eq!(product(true), product(false), "{m} x {k} x {n}");
                    }
                }
            }
        }
    }
}
