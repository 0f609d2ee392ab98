//! The x86-64 code of the fp32 product: the block loop compiled for AVX2 + FMA and for
//! AVX-512F, its output stage (bias, QuickGELU, residual) on the accumulator registers, and
//! the 256- and 512-bit micro-kernels.

use std::arch::x86_64::*;
use std::ops::Range;

use super::{Epilogue, PackedF32, MR, NR};
use crate::kernels::driver::SharedOut;

/// Rows `rows` (starting on a block of [`MR`]) x panels `panels` of the product; A read
/// from `a_blocks` ([`super::pack::pack_a`]) when given, else from `a`.
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
    out: SharedOut<f32>,
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
    out: SharedOut<f32>,
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
    out: SharedOut<f32>,
    rows: Range<usize>,
    panels: Range<usize>,
) {
    // Packed A is addressed by blocks of MR rows ([`crate::kernels::driver::split_tasks`] cuts on them).
    assert!(
        a_blocks.is_none() || rows.start.is_multiple_of(MR),
        "a task's rows start at {}, not on a block of {MR}",
        rows.start
    );
    let mut p = panels.start;
    while p < panels.end {
        if WIDE && p + 1 < panels.end {
            // Two panels at once: 12 accumulator registers, enough chains in flight for
            // two FMA units (six are not).
            // SAFETY: the caller's contract.
            unsafe { run_panels::<WIDE, true>(a, a_blocks, b, epilogue, out, rows.clone(), p) };
            p += 2;
        } else {
            // SAFETY: the caller's contract.
            unsafe { run_panels::<WIDE, false>(a, a_blocks, b, epilogue, out, rows.clone(), p) };
            p += 1;
        }
    }
}

/// Rows `rows` x panel `p` of the product, or with `PAIR` (512-bit only) panels `p` and
/// `p + 1` at once ([`micro_wide_pair`]: each output the same fused multiply-adds).
///
/// # Safety
/// As [`run_block_inline`]; with `PAIR`, `WIDE` and panel `p + 1` exists.
#[inline(always)]
unsafe fn run_panels<const WIDE: bool, const PAIR: bool>(
    a: &[f32],
    a_blocks: Option<&[f32]>,
    b: &PackedF32,
    epilogue: Epilogue,
    out: SharedOut<f32>,
    rows: Range<usize>,
    p: usize,
) {
    debug_assert!(!PAIR || WIDE);
    let k = b.k;
    let panel = |q: usize| &b.panels[q * k * NR..][..k * NR];
    let mut r0 = rows.start;
    while r0 < rows.end {
        let count = MR.min(rows.end - r0);
        // A's rows: a packed block (r0 is on a block of MR rows: asserted in `run_block`),
        // or the rows as they are.
        let (a_rows, packed) = match a_blocks {
            Some(blocks) => (&blocks[r0 / MR * k * MR..][..k * MR], true),
            None => (&a[r0 * k..(r0 + count) * k], false),
        };
        // SAFETY: AVX2 + FMA (+ AVX-512F for WIDE: the caller's features); slices sized
        // here; the rows and panels are this task's (the caller's contract).
        unsafe {
            if PAIR {
                let [acc0, acc1] = if packed {
                    micro_pair_rows::<true>(count, a_rows, k, panel(p), panel(p + 1))
                } else {
                    micro_pair_rows::<false>(count, a_rows, k, panel(p), panel(p + 1))
                };
                store_rows(&acc0, b, epilogue, out, r0, count, p);
                store_rows(&acc1, b, epilogue, out, r0, count, p + 1);
            } else {
                let acc = if packed {
                    micro_rows::<true, WIDE>(count, a_rows, k, panel(p))
                } else {
                    micro_rows::<false, WIDE>(count, a_rows, k, panel(p))
                };
                store_rows(&acc, b, epilogue, out, r0, count, p);
            }
        }
        r0 += count;
    }
}

/// The output stage of `count` rows from `r0` of panel `p`: bias, QuickGELU and residual
/// on the accumulators, then the store.
///
/// # Safety
/// The CPU has AVX2 (this is inlined into the `run_block`s); rows `r0..r0 + count` of
/// panel `p` are inside the output and this task alone writes them.
#[inline(always)]
unsafe fn store_rows(
    acc: &[[__m256; 2]; MR],
    b: &PackedF32,
    epilogue: Epilogue,
    out: SharedOut<f32>,
    r0: usize,
    count: usize,
    p: usize,
) {
    let n = b.n;
    let c0 = p * NR;
    let width = NR.min(n - c0);
    let mut bias_block = [0f32; NR];
    if let Some(bias) = epilogue.bias {
        bias_block[..width].copy_from_slice(&bias[c0..c0 + width]);
    }
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
        // SAFETY: AVX2, the features of the `run_block` this body is inlined into.
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
                let row = out.at(at);
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
            unsafe { std::ptr::copy_nonoverlapping(tile.as_ptr(), out.at(at), width) };
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

/// [`micro_wide_pair`] for `count` (1..=[`MR`]) rows.
///
/// # Safety
/// As [`micro_wide_pair`], with R = `count`.
#[inline(always)]
unsafe fn micro_pair_rows<const PACKED: bool>(
    count: usize,
    a: &[f32],
    k: usize,
    panel0: &[f32],
    panel1: &[f32],
) -> [[[__m256; 2]; MR]; 2] {
    // SAFETY: the caller's contract.
    unsafe {
        match count {
            6 => micro_wide_pair::<6, PACKED>(a, k, panel0, panel1),
            5 => micro_wide_pair::<5, PACKED>(a, k, panel0, panel1),
            4 => micro_wide_pair::<4, PACKED>(a, k, panel0, panel1),
            3 => micro_wide_pair::<3, PACKED>(a, k, panel0, panel1),
            2 => micro_wide_pair::<2, PACKED>(a, k, panel0, panel1),
            _ => micro_wide_pair::<1, PACKED>(a, k, panel0, panel1),
        }
    }
}

/// [`micro_wide`] for two panels at once: per K step two panel loads, R broadcasts and 2R
/// fused multiply-adds into 2R accumulators (12 for six rows: two FMA units with a
/// 4-cycle latency need at least 8 independent chains, and one panel gives six). Each
/// output is the same fused multiply-adds in the same order as in [`micro_wide`] and
/// [`micro`], so the results are the same bit for bit.
///
/// # Safety
/// As [`micro_wide`], for both panels.
#[inline(always)]
unsafe fn micro_wide_pair<const R: usize, const PACKED: bool>(
    a: &[f32],
    k: usize,
    panel0: &[f32],
    panel1: &[f32],
) -> [[[__m256; 2]; MR]; 2] {
    debug_assert!(a.len() == if PACKED { k * MR } else { R * k });
    debug_assert!(panel0.len() == k * NR && panel1.len() == k * NR);
    // SAFETY: the intrinsics need AVX-512F, the caller's features; the loads stay inside
    // the slices (k steps of MR or 1 values of `a` and NR of each panel, asserted above).
    unsafe {
        let mut acc0 = [_mm512_setzero_ps(); R];
        let mut acc1 = [_mm512_setzero_ps(); R];
        let mut ap = a.as_ptr();
        let (mut bp0, mut bp1) = (panel0.as_ptr(), panel1.as_ptr());
        for _ in 0..k {
            let b0 = _mm512_loadu_ps(bp0);
            let b1 = _mm512_loadu_ps(bp1);
            for r in 0..R {
                let av = _mm512_set1_ps(*ap.add(if PACKED { r } else { r * k }));
                acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
                acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
            }
            bp0 = bp0.add(NR);
            bp1 = bp1.add(NR);
            ap = ap.add(if PACKED { MR } else { 1 });
        }
        let mut halves = [[[_mm256_setzero_ps(); 2]; MR]; 2];
        for (out, acc) in halves.iter_mut().zip([acc0, acc1]) {
            for (half, acc) in out.iter_mut().zip(acc) {
                half[0] = _mm512_castps512_ps256(acc);
                half[1] = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc)));
            }
        }
        halves
    }
}
