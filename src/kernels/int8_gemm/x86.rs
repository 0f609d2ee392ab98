//! The x86-64 code of the int8 product: the block loop compiled for AVX2 and for AVX-512
//! VNNI, and the micro-kernels (`vpmaddwd` on int16 pairs, `vpmaddubsw` and `vpdpbusd` on
//! quads, 256- and 512-bit), whose output stage dequantizes straight from the accumulator
//! registers.

use std::arch::x86_64::*;

use super::block::Sink;
use super::{Int8Kernel, PackedB, MR, NR};

/// The micro-kernels of the block loop: int16 pairs (`vpmaddwd`), and quads with
/// `vpmaddubsw`, with `vpdpbusd`, or with `vpdpbusd` emulated ([`dpbusd_emulated`]).
pub(super) const PAIRS: u8 = 0;
pub(super) const MADDUBS: u8 = 1;
pub(super) const VNNI: u8 = 2;
pub(super) const VNNI_EMULATED: u8 = 3;
/// `vpdpbusd` on 512-bit registers ([`Int8Kernel::Avx512VnniZmm`]).
pub(super) const VNNI512: u8 = 4;

/// `b`'s micro-kernel.
pub(super) fn kind(b: &PackedB) -> u8 {
    match b.kernel {
        Int8Kernel::Avx2Maddubs => MADDUBS,
        Int8Kernel::Avx512Vnni | Int8Kernel::Avx512VnniZmm if b.emulated => VNNI_EMULATED,
        Int8Kernel::Avx512Vnni => VNNI,
        Int8Kernel::Avx512VnniZmm => VNNI512,
        _ => PAIRS,
    }
}

/// [`super::block::run_block`] compiled for AVX-512 VNNI (AVX-512VL's 256-bit forms).
///
/// # Safety
/// The CPU has AVX2, AVX-512F, AVX-512VL and AVX-512 VNNI; the rest as
/// [`super::block::run_block`].
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
pub(super) unsafe fn run_block_vnni(
    a: &[i32],
    m: usize,
    b: &PackedB,
    sink: Sink,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
) {
    // SAFETY: the caller's contract.
    unsafe { super::block::run_block_inline(a, m, b, sink, rows, panels) }
}

/// `vpdpbusd` (`_mm256_dpbusd_epi32`) in portable code: per 32-bit lane j,
/// `acc[j] + sum over e < 4 of u8(a[4j + e]) x i8(b[4j + e])`, wrapping (Intel's
/// definition: each product fits int16, the sum is 32-bit).
#[inline(always)]
pub(super) fn dpbusd_emulated(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    // SAFETY: __m256i is 32 plain bytes; every bit pattern is a valid array of them.
    let (mut acc, a, b): ([i32; 8], [u8; 32], [i8; 32]) = unsafe {
        (
            std::mem::transmute::<__m256i, [i32; 8]>(acc),
            std::mem::transmute::<__m256i, [u8; 32]>(a),
            std::mem::transmute::<__m256i, [i8; 32]>(b),
        )
    };
    for (j, lane) in acc.iter_mut().enumerate() {
        for e in 0..4 {
            let product = a[4 * j + e] as i32 * b[4 * j + e] as i32;
            *lane = lane.wrapping_add(product);
        }
    }
    // SAFETY: [i32; 8] and __m256i are both 32 plain bytes; every bit pattern is valid.
    unsafe { std::mem::transmute::<[i32; 8], __m256i>(acc) }
}

/// [`super::block::run_block`] compiled for AVX2 (the output stage is vectorised with it).
///
/// # Safety
/// The CPU has AVX2; the rest as [`super::block::run_block`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn run_block(
    a: &[i32],
    m: usize,
    b: &PackedB,
    sink: Sink,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
) {
    // SAFETY: the caller's contract.
    unsafe { super::block::run_block_inline(a, m, b, sink, rows, panels) }
}

/// One K pair: acc[r] += broadcast(a[r, p]) x panel pair `b`, 16 columns.
#[inline(always)]
unsafe fn step<const R: usize>(acc: &mut [[__m256i; 2]; R], a: *const i32, p: usize, b: *const i8) {
    // SAFETY: AVX2 and the loads' extents are the caller's contract: `a` holds kp x R
    // words, `b` kp x 2 x NR bytes, and p < kp.
    unsafe {
        let bp = b.add(p * 2 * NR);
        let b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp as *const __m128i));
        let b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp.add(16) as *const __m128i));
        for (r, acc) in acc.iter_mut().enumerate() {
            let av = _mm256_set1_epi32(*a.add(p * R + r));
            acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(av, b0));
            acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(av, b1));
        }
    }
}

/// The accumulators of `a x panel`, `a` one row group of [`super::pack::pack_a`]
/// (`[p][row]`).
///
/// # Safety
/// The CPU has AVX2; `a` points to kp x R words, `b` to kp x 2 x NR bytes.
#[inline(always)]
unsafe fn accumulate<const R: usize>(a: *const i32, kp: usize, b: *const i8) -> [[__m256i; 2]; R] {
    // SAFETY: AVX2, by the caller's contract.
    let mut acc = [[unsafe { _mm256_setzero_si256() }; 2]; R];
    let mut p = 0;
    // SAFETY: p < kp in every step; the rest is the caller's contract.
    unsafe {
        while p + 2 <= kp {
            step::<R>(&mut acc, a, p, b);
            step::<R>(&mut acc, a, p + 1, b);
            p += 2;
        }
        if p < kp {
            step::<R>(&mut acc, a, p, b);
        }
    }
    acc
}

/// The accumulators of `a x panel` for quads: `a` one row group of
/// [`super::pack::pack_a_quads`] (`[q][row]`, bytes offset by +128), less the offset sums;
/// `KIND`: [`MADDUBS`], [`VNNI`] or [`VNNI_EMULATED`].
///
/// # Safety
/// The CPU has AVX2 (and AVX-512 VNNI and VL for [`VNNI`]); `a` points to kq x R
/// words, `b` to kq x 4 x NR bytes, `sums` to NR values.
#[inline(always)]
unsafe fn accumulate_quads<const R: usize, const KIND: u8>(
    a: *const i32,
    kq: usize,
    b: *const i8,
    sums: *const i32,
) -> [[__m256i; 2]; R] {
    // SAFETY: AVX2 (and VNNI for KIND = VNNI) and the loads' extents (`a` kq x R words,
    // `b` kq x 4 x NR bytes, `sums` NR values) are the caller's contract.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        for q in 0..kq {
            let bp = b.add(q * 4 * NR);
            let b0 = _mm256_loadu_si256(bp as *const __m256i);
            let b1 = _mm256_loadu_si256(bp.add(32) as *const __m256i);
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_epi32(*a.add(q * R + r));
                match KIND {
                    VNNI => {
                        // Four u8 x s8 products into each int32 lane, no int16 step.
                        acc[0] = _mm256_dpbusd_epi32(acc[0], av, b0);
                        acc[1] = _mm256_dpbusd_epi32(acc[1], av, b1);
                    }
                    VNNI_EMULATED => {
                        acc[0] = dpbusd_emulated(acc[0], av, b0);
                        acc[1] = dpbusd_emulated(acc[1], av, b1);
                    }
                    _ => {
                        // u8 x s8 pairs into int16: exact, the packing checked the
                        // weights.
                        let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones);
                        let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones);
                        acc[0] = _mm256_add_epi32(acc[0], p0);
                        acc[1] = _mm256_add_epi32(acc[1], p1);
                    }
                }
            }
        }
        let s0 = _mm256_loadu_si256(sums as *const __m256i);
        let s1 = _mm256_loadu_si256(sums.add(8) as *const __m256i);
        for acc in acc.iter_mut() {
            acc[0] = _mm256_sub_epi32(acc[0], s0);
            acc[1] = _mm256_sub_epi32(acc[1], s1);
        }
        acc
    }
}

/// [`accumulate_quads`] for [`VNNI512`]: one 512-bit accumulator per row holds the
/// panel's 16 columns, and one load takes a quad step's 64 panel bytes (columns 0-15,
/// four K values each), so a step is one load, R broadcasts and R `vpdpbusd` (the
/// 256-bit kernel: two loads and 2R). Returned as the 256-bit halves the output stage
/// reads: columns 0-7, then 8-15.
///
/// # Safety
/// The CPU has AVX-512F and AVX-512 VNNI; as [`accumulate_quads`].
#[inline(always)]
unsafe fn accumulate_quads_512<const R: usize>(
    a: *const i32,
    kq: usize,
    b: *const i8,
    sums: *const i32,
) -> [[__m256i; 2]; R] {
    // SAFETY: AVX-512F and VNNI and the loads' extents (`a` kq x R words, `b` kq x 4 x NR
    // bytes, `sums` NR values) are the caller's contract.
    unsafe {
        let mut acc = [_mm512_setzero_si512(); R];
        for q in 0..kq {
            let panel = _mm512_loadu_si512(b.add(q * 4 * NR) as *const __m512i);
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_epi32(*a.add(q * R + r));
                *acc = _mm512_dpbusd_epi32(*acc, av, panel);
            }
        }
        let s = _mm512_loadu_si512(sums as *const __m512i);
        let mut halves = [[_mm256_setzero_si256(); 2]; R];
        for (half, acc) in halves.iter_mut().zip(acc) {
            let v = _mm512_sub_epi32(acc, s);
            half[0] = _mm512_castsi512_si256(v);
            half[1] = _mm512_extracti64x4_epi64::<1>(v);
        }
        halves
    }
}

/// The accumulators for `KIND`'s layout.
///
/// # Safety
/// As [`accumulate`] or [`accumulate_quads`].
#[inline(always)]
unsafe fn accumulate_any<const R: usize, const KIND: u8>(
    a: *const i32,
    steps: usize,
    b: *const i8,
    sums: *const i32,
) -> [[__m256i; 2]; R] {
    // SAFETY: the caller's contract.
    unsafe {
        if KIND == PAIRS {
            accumulate::<R>(a, steps, b)
        } else if KIND == VNNI512 {
            accumulate_quads_512::<R>(a, steps, b, sums)
        } else {
            accumulate_quads::<R, KIND>(a, steps, b, sums)
        }
    }
}

/// Where [`micro`] puts one block's results.
#[derive(Clone, Copy)]
pub(super) enum Store {
    /// The int32 accumulators (less the offset sums for quads), into a tile.
    Tile(*mut [[i32; NR]; MR]),
    /// Dequantized, straight from the registers, into the output: a full panel.
    Dequantize(Dequantize),
}

/// Where [`Store::Dequantize`] writes one full panel of R rows, and its scales.
#[derive(Clone, Copy)]
pub(super) struct Dequantize {
    /// Row 0, column 0 of the block; rows are `n` floats apart.
    pub out: *mut f32,
    pub n: usize,
    /// R row scales.
    pub row_scale: *const f32,
    /// NR column scales.
    pub col_scale: *const f32,
    /// NR bias values, or null for none.
    pub bias: *const f32,
    /// QuickGELU's alpha, applied after the bias, or none.
    pub quick_gelu: Option<f32>,
    /// R rows of NR values `n` apart (as `out`) to add last, or null for none.
    pub residual: *const f32,
}

/// One block of R rows x NR columns (`KIND`: the micro-kernel). [`Store::Dequantize`]
/// writes `(float(acc[r, c]) * col_scale[c]) * row_scale[r] (+ bias[c])`, then QuickGELU
/// if asked, then `(+ residual[r, c])`: the same fp32 operations, in the same order, as
/// [`super::block::Sink`].
///
/// # Safety
/// The CPU has AVX2; as [`block_body`].
#[target_feature(enable = "avx2")]
unsafe fn block<const R: usize, const KIND: u8>(
    a: *const i32,
    steps: usize,
    b: *const i8,
    sums: *const i32,
    store: Store,
) {
    // SAFETY: the caller's contract.
    unsafe { block_body::<R, KIND>(a, steps, b, sums, store) }
}

/// [`block`] compiled for AVX-512 VNNI (`KIND`: [`VNNI`] or [`VNNI512`]).
///
/// # Safety
/// The CPU has AVX2, AVX-512F, AVX-512VL and AVX-512 VNNI; as [`block_body`].
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
unsafe fn block_vnni<const R: usize, const KIND: u8>(
    a: *const i32,
    steps: usize,
    b: *const i8,
    sums: *const i32,
    store: Store,
) {
    // SAFETY: the caller's contract.
    unsafe { block_body::<R, KIND>(a, steps, b, sums, store) }
}

/// [`block`]'s body, inlined into each instruction set's copy.
///
/// # Safety
/// The CPU has the instructions of `KIND`; as [`accumulate_any`]; a tile is valid for
/// writes; a [`Dequantize`]'s `out` points to R rows of `n` floats with NR writable
/// from each (and `residual`, unless null, readable), `row_scale` to R floats,
/// `col_scale` and `bias` (unless null) to NR floats.
#[inline(always)]
unsafe fn block_body<const R: usize, const KIND: u8>(
    a: *const i32,
    steps: usize,
    b: *const i8,
    sums: *const i32,
    store: Store,
) {
    // SAFETY: the caller's contract.
    unsafe {
        let acc = accumulate_any::<R, KIND>(a, steps, b, sums);
        match store {
            Store::Tile(tile) => {
                for (out, acc) in (*tile).iter_mut().zip(&acc) {
                    for (v, reg) in acc.iter().enumerate() {
                        _mm256_storeu_si256(out.as_mut_ptr().add(8 * v) as *mut __m256i, *reg);
                    }
                }
            }
            Store::Dequantize(to) => {
                let cs = [
                    _mm256_loadu_ps(to.col_scale),
                    _mm256_loadu_ps(to.col_scale.add(8)),
                ];
                for (r, acc) in acc.iter().enumerate() {
                    let rs = _mm256_set1_ps(*to.row_scale.add(r));
                    for (v, reg) in acc.iter().enumerate() {
                        let x = _mm256_cvtepi32_ps(*reg);
                        let mut y = _mm256_mul_ps(_mm256_mul_ps(x, cs[v]), rs);
                        if !to.bias.is_null() {
                            y = _mm256_add_ps(y, _mm256_loadu_ps(to.bias.add(8 * v)));
                        }
                        if let Some(alpha) = to.quick_gelu {
                            y = crate::kernels::activation::quick_gelu_8(y, alpha);
                        }
                        if !to.residual.is_null() {
                            let res = to.residual.add(r * to.n + 8 * v);
                            y = _mm256_add_ps(y, _mm256_loadu_ps(res));
                        }
                        _mm256_storeu_ps(to.out.add(r * to.n + 8 * v), y);
                    }
                }
            }
        }
    }
}

/// [`block`] of `kind` ([`kind`]) for `rows` rows (1..=6, 1..=5 for [`MADDUBS`]).
///
/// # Safety
/// The CPU has AVX2 (and AVX-512 VNNI and VL for [`VNNI`]); as [`block`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn micro(
    rows: usize,
    kind: u8,
    a: *const i32,
    steps: usize,
    b: *const i8,
    sums: *const i32,
    store: Store,
) {
    // SAFETY: the caller's contract.
    unsafe {
        match (kind, rows) {
            (VNNI, _) => micro_vnni::<VNNI>(rows, a, steps, b, sums, store),
            (VNNI512, _) => micro_vnni::<VNNI512>(rows, a, steps, b, sums, store),
            (PAIRS, 6) => block::<6, PAIRS>(a, steps, b, sums, store),
            (PAIRS, 5) => block::<5, PAIRS>(a, steps, b, sums, store),
            (PAIRS, 4) => block::<4, PAIRS>(a, steps, b, sums, store),
            (PAIRS, 3) => block::<3, PAIRS>(a, steps, b, sums, store),
            (PAIRS, 2) => block::<2, PAIRS>(a, steps, b, sums, store),
            (PAIRS, _) => block::<1, PAIRS>(a, steps, b, sums, store),
            (MADDUBS, 5) => block::<5, MADDUBS>(a, steps, b, sums, store),
            (MADDUBS, 4) => block::<4, MADDUBS>(a, steps, b, sums, store),
            (MADDUBS, 3) => block::<3, MADDUBS>(a, steps, b, sums, store),
            (MADDUBS, 2) => block::<2, MADDUBS>(a, steps, b, sums, store),
            (MADDUBS, _) => block::<1, MADDUBS>(a, steps, b, sums, store),
            (_, 6) => block::<6, VNNI_EMULATED>(a, steps, b, sums, store),
            (_, 5) => block::<5, VNNI_EMULATED>(a, steps, b, sums, store),
            (_, 4) => block::<4, VNNI_EMULATED>(a, steps, b, sums, store),
            (_, 3) => block::<3, VNNI_EMULATED>(a, steps, b, sums, store),
            (_, 2) => block::<2, VNNI_EMULATED>(a, steps, b, sums, store),
            (_, _) => block::<1, VNNI_EMULATED>(a, steps, b, sums, store),
        }
    }
}

/// [`micro`] for [`VNNI`] and [`VNNI512`] (`KIND`).
///
/// # Safety
/// The CPU has AVX2, AVX-512F, AVX-512VL and AVX-512 VNNI; as [`block`].
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
unsafe fn micro_vnni<const KIND: u8>(
    rows: usize,
    a: *const i32,
    steps: usize,
    b: *const i8,
    sums: *const i32,
    store: Store,
) {
    // SAFETY: the caller's contract.
    unsafe {
        match rows {
            6 => block_vnni::<6, KIND>(a, steps, b, sums, store),
            5 => block_vnni::<5, KIND>(a, steps, b, sums, store),
            4 => block_vnni::<4, KIND>(a, steps, b, sums, store),
            3 => block_vnni::<3, KIND>(a, steps, b, sums, store),
            2 => block_vnni::<2, KIND>(a, steps, b, sums, store),
            _ => block_vnni::<1, KIND>(a, steps, b, sums, store),
        }
    }
}
