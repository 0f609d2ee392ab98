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
//!   the graph's own fp32 operations in its order, so results are bit-identical to it. With
//!   the AVX2 kernel the whole block loop is compiled for AVX2, so this stage is vectorised
//!   too (it took 8% of ViT-B/32's time as scalar code).
//! - With a thread pool of more than one thread, blocks of output columns (and of rows
//!   when there are few columns) are spread over the pool.
//!
//! `CLIP_PERCEPTION_INT8_KERNEL` (`scalar`, `avx2`, `tract`, `auto`) forces a kernel, for
//! tests and benchmarks ([`Int8Choice::from_env`]).

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

/// A micro-kernel of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Int8Kernel {
    /// Portable Rust, any CPU.
    Scalar,
    /// x86-64 AVX2 (`vpmovsxbw` + `vpmaddwd`), selected at run time.
    Avx2,
}

impl Int8Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Int8Kernel::Scalar => "scalar",
            Int8Kernel::Avx2 => "avx2",
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Int8Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx2 => std::is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            Int8Kernel::Avx2 => false,
        }
    }

    /// Every kernel this CPU can run, fastest last.
    pub fn available() -> Vec<Int8Kernel> {
        [Int8Kernel::Scalar, Int8Kernel::Avx2]
            .into_iter()
            .filter(|k| k.is_available())
            .collect()
    }

    /// The fastest kernel this CPU can run.
    pub fn best() -> Int8Kernel {
        *Int8Kernel::available()
            .last()
            .unwrap_or(&Int8Kernel::Scalar)
    }
}

/// Which int8 matrix product the int8 image encoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Choice {
    /// tract's `MatMulInteger` (with the engine's fused quantize and dequantize ops).
    Tract,
    /// This module's product with the given micro-kernel, dequantization in its output stage.
    Own(Int8Kernel),
}

impl Int8Choice {
    /// What runs when [`KERNEL_ENV`] is unset or `auto`: the AVX2 kernel on CPUs with AVX2
    /// and no int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI; every AMX CPU has
    /// AVX-512 VNNI), where tract's integer product has no fast kernel (measured ~80x
    /// slower than this module's on a 2-vCPU AMD EPYC, ViT-B/32 at batch 1); elsewhere
    /// tract's, until this module's kernel is measured faster there.
    pub fn default_for_cpu() -> Int8Choice {
        #[cfg(target_arch = "x86_64")]
        if Int8Kernel::Avx2.is_available()
            && !std::is_x86_feature_detected!("avx512vnni")
            && !std::is_x86_feature_detected!("avxvnni")
        {
            return Int8Choice::Own(Int8Kernel::Avx2);
        }
        Int8Choice::Tract
    }

    /// The product forced by [`KERNEL_ENV`], else [`Int8Choice::default_for_cpu`]. An
    /// unknown value, or a kernel this CPU lacks, is logged and the default is used.
    pub fn from_env() -> Int8Choice {
        let value = std::env::var(KERNEL_ENV).ok();
        match Int8Choice::parse(value.as_deref()) {
            Ok(choice) => choice,
            Err(message) => {
                log::warn!("{KERNEL_ENV}: {message}; using the default");
                Int8Choice::default_for_cpu()
            }
        }
    }

    /// Parses a [`KERNEL_ENV`] value (`None` or empty: the default).
    pub fn parse(value: Option<&str>) -> Result<Int8Choice, String> {
        let kernel = match value.map(str::trim) {
            None | Some("") | Some("auto") => return Ok(Int8Choice::default_for_cpu()),
            Some("tract") => return Ok(Int8Choice::Tract),
            Some("scalar") => Int8Kernel::Scalar,
            Some("avx2") => Int8Kernel::Avx2,
            Some(other) => {
                return Err(format!(
                    "unknown value `{other}` (expected scalar, avx2, tract or auto)"
                ))
            }
        };
        if kernel.is_available() {
            Ok(Int8Choice::Own(kernel))
        } else {
            Err(format!("this CPU cannot run the {} kernel", kernel.name()))
        }
    }
}

/// B [K, N] packed for a micro-kernel (see the module docs for the layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedB {
    k: usize,
    n: usize,
    kernel: Int8Kernel,
    /// ceil(n / NR) panels of ceil(k / 2) pairs x NR columns x 2 values.
    data: Vec<i8>,
}

impl PackedB {
    /// Packs the row-major `b` ([k, n]) for `kernel`.
    ///
    /// # Panics
    /// If `b.len() != k * n` or `kernel` is not available on this CPU.
    pub fn pack(b: &[i8], k: usize, n: usize, kernel: Int8Kernel) -> PackedB {
        assert_eq!(
            b.len(),
            k * n,
            "B has {} values, expected {k} x {n}",
            b.len()
        );
        assert!(
            kernel.is_available(),
            "this CPU cannot run the {} int8 kernel",
            kernel.name()
        );
        let kp = k.div_ceil(2);
        let panels = n.div_ceil(NR);
        let mut data = vec![0i8; panels * kp * 2 * NR];
        for (panel, chunk) in data.chunks_exact_mut(kp * 2 * NR).enumerate() {
            for (p, pair) in chunk.chunks_exact_mut(2 * NR).enumerate() {
                for c in 0..NR.min(n - panel * NR) {
                    let col = panel * NR + c;
                    pair[2 * c] = b[2 * p * n + col];
                    if 2 * p + 1 < k {
                        pair[2 * c + 1] = b[(2 * p + 1) * n + col];
                    }
                }
            }
        }
        PackedB { k, n, kernel, data }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn kernel(&self) -> Int8Kernel {
        self.kernel
    }

    fn panel(&self, panel: usize) -> &[i8] {
        let len = self.k.div_ceil(2) * 2 * NR;
        &self.data[panel * len..(panel + 1) * len]
    }
}

/// Where the product goes.
#[derive(Debug)]
pub enum Output<'a> {
    /// The int32 accumulators, row-major [M, N].
    Int32(&'a mut [i32]),
    /// `(acc as f32 * col_scale[j]) * row_scale[i]`, then `+ bias[j]` if given: row-major
    /// [M, N] f32.
    Dequantize {
        out: &'a mut [f32],
        row_scale: &'a [f32],
        col_scale: &'a [f32],
        bias: Option<&'a [f32]>,
    },
}

/// The output as raw parts, shared by the tasks (each writes its own block).
#[derive(Clone, Copy)]
enum Sink<'a> {
    Int32(*mut i32),
    Dequantize {
        out: *mut f32,
        row_scale: &'a [f32],
        col_scale: &'a [f32],
        bias: Option<&'a [f32]>,
    },
}

// SAFETY: the pointers address an [M, N] buffer borrowed mutably for the whole product;
// tasks write disjoint blocks of it and nothing reads it until every task has finished.
unsafe impl Send for Sink<'_> {}
unsafe impl Sync for Sink<'_> {}

impl Sink<'_> {
    /// Writes rows `i0..i0 + rows`, columns `j0..j0 + cols` from `tile`.
    ///
    /// # Safety
    /// The block lies inside the [M, N] output (`n` columns) and no other thread writes it.
    #[inline(always)]
    unsafe fn write(
        self,
        n: usize,
        i0: usize,
        rows: usize,
        j0: usize,
        cols: usize,
        tile: &[[i32; NR]; MR],
    ) {
        match self {
            Sink::Int32(out) => {
                for (r, acc) in tile.iter().enumerate().take(rows) {
                    // SAFETY: inside the output, by the caller's contract.
                    let row =
                        unsafe { std::slice::from_raw_parts_mut(out.add((i0 + r) * n + j0), cols) };
                    row.copy_from_slice(&acc[..cols]);
                }
            }
            Sink::Dequantize {
                out,
                row_scale,
                col_scale,
                bias,
            } => {
                let cs = &col_scale[j0..j0 + cols];
                for (r, acc) in tile.iter().enumerate().take(rows) {
                    let rs = row_scale[i0 + r];
                    // SAFETY: inside the output, by the caller's contract.
                    let row =
                        unsafe { std::slice::from_raw_parts_mut(out.add((i0 + r) * n + j0), cols) };
                    for ((y, &v), &c) in row.iter_mut().zip(&acc[..cols]).zip(cs) {
                        *y = (v as f32 * c) * rs;
                    }
                    if let Some(bias) = bias {
                        for (y, &b) in row.iter_mut().zip(&bias[j0..j0 + cols]) {
                            *y += b;
                        }
                    }
                }
            }
        }
    }
}

/// A's rows as int16 pairs `(A[i, 2p], A[i, 2p + 1])`, one word each, K padded to even,
/// in groups of [`MR`] rows (the last may hold fewer): group `g` starts at word
/// `g * MR * kp` and holds pair `p` of its row `r` at `p * rows + r`.
fn pack_a(a: &[i8], m: usize, k: usize) -> Vec<i32> {
    let kp = k.div_ceil(2);
    let mut out = vec![0i32; m * kp];
    if k == 0 {
        return out;
    }
    for (g, (rows, packed)) in a.chunks(MR * k).zip(out.chunks_mut(MR * kp)).enumerate() {
        let r_count = MR.min(m - g * MR);
        for (r, row) in rows.chunks_exact(k).enumerate() {
            let pairs = row.chunks_exact(2);
            let tail = pairs.remainder();
            for (p, pair) in pairs.enumerate() {
                packed[p * r_count + r] = pair_word(pair[0], pair[1]);
            }
            if let [last] = tail {
                packed[(kp - 1) * r_count + r] = pair_word(*last, 0);
            }
        }
    }
    out
}

#[inline(always)]
fn pair_word(lo: i8, hi: i8) -> i32 {
    ((lo as i16 as u16 as u32) | ((hi as i16 as u16 as u32) << 16)) as i32
}

/// `C = A x B`: `a` row-major [m, b.k()], written to `out` as [m, b.n()]. With `pool` of
/// more than one thread, the work is spread over it.
///
/// # Panics
/// If the slices' lengths do not match the shapes.
pub fn gemm(a: &[i8], m: usize, b: &PackedB, out: Output, pool: Option<&rayon::ThreadPool>) {
    let (k, n) = (b.k, b.n);
    assert_eq!(
        a.len(),
        m * k,
        "A has {} values, expected {m} x {k}",
        a.len()
    );
    let sink = match out {
        Output::Int32(c) => {
            assert_eq!(
                c.len(),
                m * n,
                "C has {} values, expected {m} x {n}",
                c.len()
            );
            Sink::Int32(c.as_mut_ptr())
        }
        Output::Dequantize {
            out,
            row_scale,
            col_scale,
            bias,
        } => {
            assert_eq!(
                out.len(),
                m * n,
                "output: {} values, expected {m} x {n}",
                out.len()
            );
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
            if let Some(bias) = bias {
                assert_eq!(bias.len(), n, "{} bias values for {n} columns", bias.len());
            }
            Sink::Dequantize {
                out: out.as_mut_ptr(),
                row_scale,
                col_scale,
                bias,
            }
        }
    };
    if m == 0 || n == 0 {
        return;
    }
    let a = pack_a(a, m, k);
    let panels = n.div_ceil(NR);
    let threads = pool.map_or(1, |p| p.current_num_threads());
    if threads <= 1 {
        // SAFETY: the whole output, on this thread only.
        unsafe { run_block(&a, m, b, sink, 0..m, 0..panels) };
        return;
    }
    // Enough tasks for the pool to balance (others may be using the cores too): column
    // blocks first (each task then reads its own part of B), row blocks when the columns
    // alone give too few.
    let wanted = 4 * threads;
    let col_tasks = panels.min(wanted);
    let micro_rows = m.div_ceil(MR);
    let row_tasks = wanted.div_ceil(col_tasks).min(micro_rows).max(1);
    let rows_per_task = micro_rows.div_ceil(row_tasks) * MR;
    let tasks: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = (0..row_tasks)
        .flat_map(|rt| {
            let rows = (rt * rows_per_task).min(m)..((rt + 1) * rows_per_task).min(m);
            (0..col_tasks).map(move |ct| {
                let cols = ct * panels / col_tasks..(ct + 1) * panels / col_tasks;
                (rows.clone(), cols)
            })
        })
        .filter(|(rows, cols)| !rows.is_empty() && !cols.is_empty())
        .collect();
    let a = &a;
    pool.expect("threads > 1 only with a pool").install(|| {
        use rayon::prelude::*;
        tasks.into_par_iter().for_each(|(rows, cols)| {
            // SAFETY: the tasks' blocks are disjoint and inside the output.
            unsafe { run_block(a, m, b, sink, rows, cols) }
        });
    });
}

/// Computes rows `rows` x panels `panels` of the product.
///
/// # Safety
/// The block is inside the output and no other thread writes it.
unsafe fn run_block(
    a: &[i32],
    m: usize,
    b: &PackedB,
    sink: Sink,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
) {
    #[cfg(target_arch = "x86_64")]
    if b.kernel == Int8Kernel::Avx2 {
        // SAFETY: a PackedB for Avx2 is only made where the CPU has AVX2 (`pack`); the rest
        // is the caller's contract.
        return unsafe { avx2::run_block(a, m, b, sink, rows, panels) };
    }
    // SAFETY: the caller's contract.
    unsafe { run_block_inline(a, m, b, sink, rows, panels) }
}

/// [`run_block`]'s body, inlined into each instruction set's copy.
///
/// # Safety
/// As [`run_block`].
#[inline(always)]
unsafe fn run_block_inline(
    a: &[i32],
    m: usize,
    b: &PackedB,
    sink: Sink,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
) {
    let kp = b.k.div_ceil(2);
    debug_assert!(rows.end <= m && a.len() == m * kp);
    let mut tile = [[0i32; NR]; MR];
    let mut block = rows.start;
    while block < rows.end {
        let block_end = (block + MC).min(rows.end);
        for panel in panels.clone() {
            let bp = b.panel(panel);
            let j0 = panel * NR;
            let cols = NR.min(b.n - j0);
            let mut i = block;
            while i < block_end {
                let r = MR.min(block_end - i);
                // Row groups start at multiples of MR (blocks and tasks do).
                debug_assert_eq!(i % MR, 0);
                let group = &a[i * kp..(i + r) * kp];
                #[cfg(target_arch = "x86_64")]
                if let (
                    Int8Kernel::Avx2,
                    NR,
                    Sink::Dequantize {
                        out,
                        row_scale,
                        col_scale,
                        bias,
                    },
                ) = (b.kernel, cols, sink)
                {
                    // A whole panel: dequantized from the accumulator registers.
                    // SAFETY: the CPU has AVX2 (an Avx2 PackedB); `group` holds r x kp
                    // words, the panel kp pairs of NR columns, the scales and bias cover
                    // rows i..i + r and columns j0..j0 + NR, which are in this block.
                    unsafe {
                        avx2::micro_dequantize(
                            r,
                            group.as_ptr(),
                            kp,
                            bp.as_ptr(),
                            avx2::Dequantize {
                                out: out.add(i * b.n + j0),
                                n: b.n,
                                row_scale: row_scale[i..i + r].as_ptr(),
                                col_scale: col_scale[j0..j0 + NR].as_ptr(),
                                bias: bias.map_or(std::ptr::null(), |b| b[j0..j0 + NR].as_ptr()),
                            },
                        )
                    };
                    i += r;
                    continue;
                }
                micro(b.kernel, group, kp, r, bp, &mut tile);
                // SAFETY: rows i..i + r and columns j0..j0 + cols are in this block.
                unsafe { sink.write(b.n, i, r, j0, cols, &tile) };
                i += r;
            }
        }
        block = block_end;
    }
}

/// `tile[..rows] = a x panel`, `a` one row group of [`pack_a`] (`[p][row]`, `rows` rows).
#[inline(always)]
fn micro(
    kernel: Int8Kernel,
    a: &[i32],
    kp: usize,
    rows: usize,
    panel: &[i8],
    tile: &mut [[i32; NR]; MR],
) {
    debug_assert!((1..=MR).contains(&rows) && a.len() == rows * kp && panel.len() == kp * 2 * NR);
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a PackedB for Avx2 is only made where the CPU has AVX2 (`pack`); the
        // slices hold `rows` x `kp` words and `kp` pairs of NR columns (checked above).
        Int8Kernel::Avx2 => unsafe {
            match rows {
                6 => avx2::micro::<6>(a.as_ptr(), kp, panel.as_ptr(), tile),
                5 => avx2::micro::<5>(a.as_ptr(), kp, panel.as_ptr(), tile),
                4 => avx2::micro::<4>(a.as_ptr(), kp, panel.as_ptr(), tile),
                3 => avx2::micro::<3>(a.as_ptr(), kp, panel.as_ptr(), tile),
                2 => avx2::micro::<2>(a.as_ptr(), kp, panel.as_ptr(), tile),
                _ => avx2::micro::<1>(a.as_ptr(), kp, panel.as_ptr(), tile),
            }
        },
        _ => micro_scalar(a, kp, rows, panel, tile),
    }
}

fn micro_scalar(a: &[i32], kp: usize, rows: usize, panel: &[i8], tile: &mut [[i32; NR]; MR]) {
    for (r, acc) in tile.iter_mut().enumerate().take(rows) {
        *acc = [0; NR];
        let a_row = a.iter().skip(r).step_by(rows);
        for (&w, pair) in a_row.zip(panel.chunks_exact(2 * NR)) {
            let (a0, a1) = (w as i16 as i32, (w >> 16) as i16 as i32);
            for (c, v) in acc.iter_mut().enumerate() {
                let sum = a0 * pair[2 * c] as i32 + a1 * pair[2 * c + 1] as i32;
                *v = v.wrapping_add(sum);
            }
        }
    }
    if kp == 0 {
        tile.iter_mut().take(rows).for_each(|acc| *acc = [0; NR]);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{PackedB, Sink, MR, NR};

    /// [`super::run_block`] compiled for AVX2 (the output stage is vectorised with it).
    ///
    /// # Safety
    /// The CPU has AVX2; the rest as [`super::run_block`].
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
        unsafe { super::run_block_inline(a, m, b, sink, rows, panels) }
    }

    /// One K pair: acc[r] += broadcast(a[r, p]) x panel pair `b`, 16 columns.
    #[inline(always)]
    unsafe fn step<const R: usize>(
        acc: &mut [[__m256i; 2]; R],
        a: *const i32,
        p: usize,
        b: *const i8,
    ) {
        // SAFETY (all loads): the caller's contract: `a` holds kp x R words, `b` kp x 2 x NR
        // bytes, and p < kp.
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

    /// The accumulators of `a x panel`, `a` one row group of [`super::pack_a`]
    /// (`[p][row]`).
    ///
    /// # Safety
    /// The CPU has AVX2; `a` points to kp x R words, `b` to kp x 2 x NR bytes.
    #[inline(always)]
    unsafe fn accumulate<const R: usize>(
        a: *const i32,
        kp: usize,
        b: *const i8,
    ) -> [[__m256i; 2]; R] {
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

    /// `tile[..R] = a x panel`, `a` one row group of [`super::pack_a`] (`[p][row]`).
    ///
    /// # Safety
    /// The CPU has AVX2; `a` points to kp x R words, `b` to kp x 2 x NR bytes.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn micro<const R: usize>(
        a: *const i32,
        kp: usize,
        b: *const i8,
        tile: &mut [[i32; NR]; MR],
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            let acc = accumulate::<R>(a, kp, b);
            for (out, acc) in tile.iter_mut().zip(&acc) {
                for (v, reg) in acc.iter().enumerate() {
                    _mm256_storeu_si256(out.as_mut_ptr().add(8 * v) as *mut __m256i, *reg);
                }
            }
        }
    }

    /// Where [`micro_dequantize`] writes one full panel of R rows, and its scales.
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
    }

    /// `out[r, c] = (float(acc[r, c]) * col_scale[c]) * row_scale[r] (+ bias[c])` for the R
    /// rows and NR columns of one full panel, straight from the accumulator registers (the
    /// same fp32 operations, in the same order, as [`super::Sink::write`]).
    ///
    /// # Safety
    /// The CPU has AVX2; `a` points to kp x R words, `b` to kp x 2 x NR bytes; `to.out` to R
    /// rows of `to.n` floats with NR writable from each; `to.row_scale` to R floats;
    /// `to.col_scale` and `to.bias` (unless null) to NR floats.
    #[target_feature(enable = "avx2")]
    unsafe fn dequantize<const R: usize>(a: *const i32, kp: usize, b: *const i8, to: Dequantize) {
        // SAFETY: the caller's contract.
        unsafe {
            let acc = accumulate::<R>(a, kp, b);
            let cs = [
                _mm256_loadu_ps(to.col_scale),
                _mm256_loadu_ps(to.col_scale.add(8)),
            ];
            for (r, acc) in acc.iter().enumerate() {
                let rs = _mm256_set1_ps(*to.row_scale.add(r));
                for (v, reg) in acc.iter().enumerate() {
                    let mut y = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(*reg), cs[v]), rs);
                    if !to.bias.is_null() {
                        y = _mm256_add_ps(y, _mm256_loadu_ps(to.bias.add(8 * v)));
                    }
                    _mm256_storeu_ps(to.out.add(r * to.n + 8 * v), y);
                }
            }
        }
    }

    /// [`dequantize`] for `rows` (1..=MR) rows.
    ///
    /// # Safety
    /// As [`dequantize`] with R = `rows`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn micro_dequantize(
        rows: usize,
        a: *const i32,
        kp: usize,
        b: *const i8,
        to: Dequantize,
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            match rows {
                6 => dequantize::<6>(a, kp, b, to),
                5 => dequantize::<5>(a, kp, b, to),
                4 => dequantize::<4>(a, kp, b, to),
                3 => dequantize::<3>(a, kp, b, to),
                2 => dequantize::<2>(a, kp, b, to),
                _ => dequantize::<1>(a, kp, b, to),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded stream of int8 values, with the extremes -128 and 127 mixed in often.
    fn values(len: usize, seed: u64) -> Vec<i8> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                match (s >> 33) % 8 {
                    0 => -128,
                    1 => 127,
                    _ => (s >> 40) as i8,
                }
            })
            .collect()
    }

    fn naive(a: &[i8], b: &[i8], m: usize, k: usize, n: usize) -> Vec<i32> {
        let mut c = vec![0i32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0i32;
                for kk in 0..k {
                    acc = acc.wrapping_add(a[i * k + kk] as i32 * b[kk * n + j] as i32);
                }
                c[i * n + j] = acc;
            }
        }
        c
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    fn accumulators_equal_the_naive_product_for_every_kernel() {
        let kernels = Int8Kernel::available();
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            assert!(kernels.contains(&Int8Kernel::Avx2));
        }
        let two = pool(2);
        let mut checked = 0;
        for kernel in kernels {
            for m in 1..=37 {
                for k in 1..=37 {
                    for n in [1, 2, 7, 8, 15, 16, 17, 23, 24, 25, 31, 33, 37] {
                        let a = values(m * k, (m * 1000 + k) as u64);
                        let b = values(k * n, (k * 1000 + n) as u64 + 7);
                        let want = naive(&a, &b, m, k, n);
                        let packed = PackedB::pack(&b, k, n, kernel);
                        for threads in [None, Some(&two)] {
                            let mut c = vec![i32::MIN; m * n];
                            gemm(&a, m, &packed, Output::Int32(&mut c), threads);
                            assert_eq!(
                                c,
                                want,
                                "{} kernel, m {m} k {k} n {n}, pool {}",
                                kernel.name(),
                                threads.is_some()
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 0);
    }

    #[test]
    fn extreme_values_do_not_saturate() {
        // Every product 128 * 128 (pairs sum to 32768, one past i16::MAX) and the mixed
        // signs, over a K long enough to matter, with every kernel.
        for kernel in Int8Kernel::available() {
            for (x, y) in [(-128i8, -128i8), (-128, 127), (127, 127), (127, -128)] {
                let (m, k, n) = (5, 301, 29);
                let a = vec![x; m * k];
                let b = vec![y; k * n];
                let packed = PackedB::pack(&b, k, n, kernel);
                let mut c = vec![0; m * n];
                gemm(&a, m, &packed, Output::Int32(&mut c), None);
                assert!(c.iter().all(|&v| v == x as i32 * y as i32 * k as i32));
            }
        }
    }

    #[test]
    fn larger_shapes_and_threads_equal_the_naive_product() {
        // The encoder's shapes in small: several cache blocks of rows, many panels.
        let two = pool(2);
        let three = pool(3);
        for kernel in Int8Kernel::available() {
            for (m, k, n) in [(150, 96, 200), (50, 77, 768), (3, 768, 50)] {
                let a = values(m * k, 1);
                let b = values(k * n, 2);
                let want = naive(&a, &b, m, k, n);
                let packed = PackedB::pack(&b, k, n, kernel);
                for threads in [None, Some(&two), Some(&three)] {
                    let mut c = vec![0; m * n];
                    gemm(&a, m, &packed, Output::Int32(&mut c), threads);
                    assert_eq!(c, want, "{} kernel, m {m} k {k} n {n}", kernel.name());
                }
            }
        }
    }

    #[test]
    fn the_output_stage_is_the_graphs_fp32_arithmetic() {
        let (m, k, n) = (9, 33, 50);
        let a = values(m * k, 3);
        let b = values(k * n, 4);
        let acc = naive(&a, &b, m, k, n);
        let rows: Vec<f32> = (0..m).map(|i| 0.013 + i as f32 * 1.7e-3).collect();
        let cols: Vec<f32> = (0..n).map(|j| 3.1e-3 / (1.0 + j as f32)).collect();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.37 - 9.0).collect();
        for kernel in Int8Kernel::available() {
            let packed = PackedB::pack(&b, k, n, kernel);
            for with_bias in [false, true] {
                let mut y = vec![0f32; m * n];
                let out = Output::Dequantize {
                    out: &mut y,
                    row_scale: &rows,
                    col_scale: &cols,
                    bias: with_bias.then_some(&bias[..]),
                };
                gemm(&a, m, &packed, out, None);
                for i in 0..m {
                    for j in 0..n {
                        let mut want = (acc[i * n + j] as f32 * cols[j]) * rows[i];
                        if with_bias {
                            // The graph's Add(bias, y): float addition commutes.
                            want += bias[j];
                        }
                        assert_eq!(y[i * n + j].to_bits(), want.to_bits(), "{i} {j}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_environment_variable_values() {
        assert_eq!(Int8Choice::parse(Some("tract")), Ok(Int8Choice::Tract));
        assert_eq!(
            Int8Choice::parse(Some("scalar")),
            Ok(Int8Choice::Own(Int8Kernel::Scalar))
        );
        assert_eq!(Int8Choice::parse(None), Ok(Int8Choice::default_for_cpu()));
        assert_eq!(
            Int8Choice::parse(Some("auto")),
            Ok(Int8Choice::default_for_cpu())
        );
        assert!(Int8Choice::parse(Some("vnni")).is_err());
        assert_eq!(
            Int8Choice::parse(Some("avx2")).is_ok(),
            Int8Kernel::Avx2.is_available()
        );
    }
}
