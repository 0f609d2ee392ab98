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
//! `CLIP_PERCEPTION_INT8_KERNEL` (`scalar`, `avx2`, `avx2-maddubs`, `avx512-vnni`,
//! `avx512-vnni-zmm`, `tract`, `auto`) forces a kernel, for tests and benchmarks
//! ([`Int8Choice::from_env`]).

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
    /// x86-64 AVX2 with `vpmaddubsw` on unsigned-offset activations, for weights where no
    /// two K-adjacent values of a column can overflow its int16 pair sum (every weight
    /// within -64..=64 does: 7-bit weights); other weights are packed for [`Int8Kernel::Avx2`]
    /// instead ([`PackedB::kernel`] says which runs).
    Avx2Maddubs,
    /// x86-64 AVX-512 VNNI (`vpdpbusd` on 256-bit registers, with AVX-512VL): the same
    /// layout as [`Int8Kernel::Avx2Maddubs`] (unsigned-offset activations, four K values
    /// per lane, the offset's column sums taken off), one instruction per four products
    /// instead of three, and no int16 step, so exact for any int8 weight.
    Avx512Vnni,
    /// [`Int8Kernel::Avx512Vnni`] on 512-bit registers: the same layout and block loop, one
    /// register per row holding a panel's 16 columns, so each quad step takes one panel load
    /// and one `vpdpbusd` per row instead of two (CPUs with two 512-bit FMA units run twice
    /// the products per cycle). The default where AVX-512 VNNI passes its self-check.
    Avx512VnniZmm,
}

impl Int8Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Int8Kernel::Scalar => "scalar",
            Int8Kernel::Avx2 => "avx2",
            Int8Kernel::Avx2Maddubs => "avx2-maddubs",
            Int8Kernel::Avx512Vnni => "avx512-vnni",
            Int8Kernel::Avx512VnniZmm => "avx512-vnni-zmm",
        }
    }

    /// Whether the kernel reads A and B in quads (four K values per 32-bit lane, the
    /// activations offset to unsigned bytes).
    fn quads(self) -> bool {
        matches!(
            self,
            Int8Kernel::Avx2Maddubs | Int8Kernel::Avx512Vnni | Int8Kernel::Avx512VnniZmm
        )
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Int8Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx2 | Int8Kernel::Avx2Maddubs => std::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx512Vnni | Int8Kernel::Avx512VnniZmm => {
                std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Int8Kernel::Avx2
            | Int8Kernel::Avx2Maddubs
            | Int8Kernel::Avx512Vnni
            | Int8Kernel::Avx512VnniZmm => false,
        }
    }

    /// Every kernel this CPU can run, fastest last.
    pub fn available() -> Vec<Int8Kernel> {
        [
            Int8Kernel::Scalar,
            Int8Kernel::Avx2,
            Int8Kernel::Avx2Maddubs,
            Int8Kernel::Avx512Vnni,
            Int8Kernel::Avx512VnniZmm,
        ]
        .into_iter()
        .filter(|k| k.is_available())
        .collect()
    }

    /// Whether the kernel's products equal the portable kernel's on a few shapes with the
    /// int8 extremes (tails of rows, columns and K included), once per process; a failure
    /// is logged as an error, once. For kernels that the test suite of the machine they were
    /// written on could not run.
    pub fn self_check(self) -> bool {
        use std::sync::OnceLock;
        static CHECKED: OnceLock<std::collections::HashMap<Int8Kernel, bool>> = OnceLock::new();
        let checked = CHECKED.get_or_init(|| {
            Int8Kernel::available()
                .into_iter()
                .map(|kernel| (kernel, kernel.equals_the_portable_kernel()))
                .collect()
        });
        let ok = checked.get(&self).copied().unwrap_or(false);
        static REPORTED: std::sync::Once = std::sync::Once::new();
        if !ok && self.is_available() {
            REPORTED.call_once(|| {
                log::error!(
                    "the {} int8 kernel disagrees with the portable kernel on this CPU; \
                 not using it (please report this with the CPU's model)",
                    self.name()
                )
            });
        }
        ok
    }

    fn equals_the_portable_kernel(self) -> bool {
        // A stream with the extremes -128 and 127 every few values.
        let values = |len: usize, seed: u32| -> Vec<i8> {
            (0..len as u32)
                .map(|i| match (i.wrapping_mul(2654435761) ^ seed) % 7 {
                    0 => -128,
                    1 => 127,
                    r => (i.wrapping_mul(40503).wrapping_add(seed * r) >> 3) as i8,
                })
                .collect()
        };
        [(1, 1, 1), (7, 37, 33), (13, 301, 17), (50, 96, 64)]
            .into_iter()
            .all(|(m, k, n)| {
                let a = values(m * k, 1);
                let b = values(k * n, 2);
                let product = |kernel| {
                    let mut c = vec![0i32; m * n];
                    gemm(
                        &a,
                        m,
                        &PackedB::pack(&b, k, n, kernel),
                        Output::Int32(&mut c),
                        None,
                    );
                    c
                };
                product(self) == product(Int8Kernel::Scalar)
            })
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
    /// What runs when [`KERNEL_ENV`] is unset or `auto`:
    /// - CPUs with AVX-512 VNNI (every AMX CPU has it): [`Int8Kernel::Avx512VnniZmm`], once
    ///   it has passed [`Int8Kernel::self_check`] in this process, else
    ///   [`Int8Kernel::Avx512Vnni`] if that passes, else tract's (a failure is logged).
    ///   The kernels were written on a CPU without VNNI: their block loop, packing
    ///   and output stage are tested there with the one instruction emulated, and the unit
    ///   tests run the instruction itself only on VNNI CPUs, so the default checks it
    ///   first.
    /// - CPUs with AVX2 and no int8 dot-product instructions: the AVX2 kernels
    ///   (`vpmaddubsw` for weights that allow it, else the widening one). tract's integer
    ///   product has no fast kernel there (measured ~80x slower than this module's on a
    ///   2-vCPU AMD EPYC, ViT-B/32 at batch 1).
    /// - Elsewhere (AVX-VNNI without AVX-512, other architectures): tract's.
    pub fn default_for_cpu() -> Int8Choice {
        #[cfg(target_arch = "x86_64")]
        {
            if Int8Kernel::Avx512VnniZmm.is_available() {
                // The 512-bit kernel, else the 256-bit one, else tract's.
                for kernel in [Int8Kernel::Avx512VnniZmm, Int8Kernel::Avx512Vnni] {
                    if kernel.self_check() {
                        return Int8Choice::Own(kernel);
                    }
                }
                return Int8Choice::Tract;
            }
            if Int8Kernel::Avx2.is_available() && !std::is_x86_feature_detected!("avxvnni") {
                // vpmaddubsw where a weight allows it, else the widening kernel (`pack`).
                return Int8Choice::Own(Int8Kernel::Avx2Maddubs);
            }
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
            Some("avx2-maddubs") => Int8Kernel::Avx2Maddubs,
            Some("avx512-vnni") => Int8Kernel::Avx512Vnni,
            Some("avx512-vnni-zmm") => Int8Kernel::Avx512VnniZmm,
            Some(other) => {
                return Err(format!(
                    "unknown value `{other}` (expected scalar, avx2, avx2-maddubs, \
                     avx512-vnni, avx512-vnni-zmm, tract or auto)"
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
    /// ceil(n / NR) panels of ceil(k / 2) pairs x NR columns x 2 values, or for the
    /// quad kernels ceil(k / 4) quads x NR columns x 4 values.
    data: Vec<i8>,
    /// Quad kernels: `128 * sum_k B[k, j]` (wrapping) per column, padded to whole panels:
    /// what the activations' +128 offset adds to column j.
    offset_sums: Vec<i32>,
    /// [`Int8Kernel::Avx512Vnni`]'s layout and block loop on AVX2, with `vpdpbusd` computed
    /// by portable code ([`dpbusd_emulated`]): how the tests check that kernel on CPUs
    /// without VNNI (everything but the one instruction). Never set outside tests.
    emulate_vnni: bool,
}

/// Rows of a row group of A for a kernel ([`pack_a`]): the micro-kernel's block height.
const fn group_rows(kernel: Int8Kernel) -> usize {
    match kernel {
        // 10 accumulators, 2 panel registers, the broadcast, the product and the ones.
        Int8Kernel::Avx2Maddubs => MR_MADDUBS,
        // 12 accumulators, 2 panel registers and the broadcast, as the widening kernel.
        _ => MR,
    }
}

/// Rows of the `vpmaddubsw` micro-kernel's block.
const MR_MADDUBS: usize = 5;

/// Whether `vpmaddubsw` on activations offset to 0..=255 is exact for `b` ([k, n]): for
/// every column and K pair (2p, 2p + 1), 255 x (sum of the pair's positive values) and
/// 255 x (sum of its negative values) fit in int16, i.e. both sums are within 128.
pub fn fits_maddubs(b: &[i8], k: usize, n: usize) -> bool {
    (0..k.div_ceil(2)).all(|p| {
        let row0 = &b[2 * p * n..(2 * p + 1) * n];
        let row1 = b.get((2 * p + 1) * n..(2 * p + 2) * n);
        (0..n).all(|j| {
            let (x, y) = (row0[j] as i32, row1.map_or(0, |r| r[j] as i32));
            x.max(0) + y.max(0) <= 128 && x.min(0) + y.min(0) >= -128
        })
    })
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
        PackedB::pack_unchecked(b, k, n, kernel, false)
    }

    /// [`PackedB::pack`] without the CPU check (`emulate_vnni`: see the field).
    fn pack_unchecked(
        b: &[i8],
        k: usize,
        n: usize,
        kernel: Int8Kernel,
        emulate_vnni: bool,
    ) -> PackedB {
        let kernel = match kernel {
            Int8Kernel::Avx2Maddubs if !fits_maddubs(b, k, n) => Int8Kernel::Avx2,
            other => other,
        };
        // Values per K step of a panel: pairs, or quads.
        let step = if kernel.quads() { 4 } else { 2 };
        let steps = k.div_ceil(step);
        let panels = n.div_ceil(NR);
        let mut data = vec![0i8; panels * steps * step * NR];
        for (panel, chunk) in data.chunks_exact_mut(steps * step * NR).enumerate() {
            for (p, values) in chunk.chunks_exact_mut(step * NR).enumerate() {
                for c in 0..NR.min(n - panel * NR) {
                    let col = panel * NR + c;
                    for e in 0..step.min(k - p * step) {
                        values[step * c + e] = b[(p * step + e) * n + col];
                    }
                }
            }
        }
        let mut offset_sums = Vec::new();
        if kernel.quads() {
            offset_sums = vec![0i32; panels * NR];
            for row in b.chunks_exact(n.max(1)).take(k) {
                for (sum, &v) in offset_sums.iter_mut().zip(row) {
                    *sum = sum.wrapping_add(128 * v as i32);
                }
            }
        }
        PackedB {
            k,
            n,
            kernel,
            data,
            offset_sums,
            emulate_vnni,
        }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// The kernel that runs this weight (an [`Int8Kernel::Avx2Maddubs`] request whose
    /// weight does not fit it gets [`Int8Kernel::Avx2`]).
    pub fn kernel(&self) -> Int8Kernel {
        self.kernel
    }

    /// K steps of a panel: pairs, or quads.
    fn steps(&self) -> usize {
        if self.kernel.quads() {
            self.k.div_ceil(4)
        } else {
            self.k.div_ceil(2)
        }
    }

    fn panel(&self, panel: usize) -> &[i8] {
        let len = self.data.len() / self.n.div_ceil(NR);
        &self.data[panel * len..(panel + 1) * len]
    }
}

/// Where the product goes.
#[derive(Debug)]
pub enum Output<'a> {
    /// The int32 accumulators, row-major [M, N].
    Int32(&'a mut [i32]),
    /// `(acc as f32 * col_scale[j]) * row_scale[i]`, then `+ bias[j]`, QuickGELU with
    /// alpha `quick_gelu` (the engine's one definition,
    /// [`crate::kernels::activation::quick_gelu_value`]) and `+ residual[i, j]`
    /// (row-major [M, N]), each if given: row-major [M, N] f32.
    Dequantize {
        out: &'a mut [f32],
        row_scale: &'a [f32],
        col_scale: &'a [f32],
        bias: Option<&'a [f32]>,
        quick_gelu: Option<f32>,
        residual: Option<&'a [f32]>,
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
        quick_gelu: Option<f32>,
        residual: Option<&'a [f32]>,
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
                quick_gelu,
                residual,
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
                    if let Some(alpha) = quick_gelu {
                        for y in row.iter_mut() {
                            *y = crate::kernels::activation::quick_gelu_value(*y, alpha);
                        }
                    }
                    if let Some(residual) = residual {
                        let at = (i0 + r) * n + j0;
                        for (y, &v) in row.iter_mut().zip(&residual[at..at + cols]) {
                            *y += v;
                        }
                    }
                }
            }
        }
    }
}

/// A packed for `b`'s kernel: [`pack_a_pairs`], or for the quad kernels [`pack_a_quads`].
fn pack_a(a: &[i8], m: usize, b: &PackedB) -> Vec<i32> {
    if b.kernel.quads() {
        pack_a_quads(a, m, b.k, group_rows(b.kernel))
    } else {
        pack_a_pairs(a, m, b.k)
    }
}

/// A's rows as quads of unsigned bytes `A[i, 4q + e] + 128`, one word each, K padded to a
/// multiple of 4 (with 128: the padded weights are 0), in groups of `g` rows laid out as
/// [`pack_a_pairs`] does.
fn pack_a_quads(a: &[i8], m: usize, k: usize, g: usize) -> Vec<i32> {
    let kq = k.div_ceil(4);
    let mut out = vec![0i32; m * kq];
    if k == 0 {
        return out;
    }
    for (group, (rows, packed)) in a.chunks(g * k).zip(out.chunks_mut(g * kq)).enumerate() {
        let r_count = g.min(m - group * g);
        for (r, row) in rows.chunks_exact(k).enumerate() {
            // `v + 128` as an unsigned byte is v's bits with the top one flipped.
            let quads = row.chunks_exact(4);
            let tail = quads.remainder();
            for (q, quad) in quads.enumerate() {
                let bytes = [quad[0] as u8, quad[1] as u8, quad[2] as u8, quad[3] as u8];
                packed[q * r_count + r] = (u32::from_le_bytes(bytes) ^ 0x8080_8080) as i32;
            }
            if !tail.is_empty() {
                let mut word = [128u8; 4];
                for (byte, &v) in word.iter_mut().zip(tail) {
                    *byte = v as u8 ^ 0x80;
                }
                packed[(kq - 1) * r_count + r] = i32::from_le_bytes(word);
            }
        }
    }
    out
}

/// A's rows as int16 pairs `(A[i, 2p], A[i, 2p + 1])`, one word each, K padded to even,
/// in groups of [`MR`] rows (the last may hold fewer): group `g` starts at word
/// `g * MR * kp` and holds pair `p` of its row `r` at `p * rows + r`.
fn pack_a_pairs(a: &[i8], m: usize, k: usize) -> Vec<i32> {
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
            quick_gelu,
            residual,
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
            if let Some(residual) = residual {
                assert_eq!(
                    residual.len(),
                    m * n,
                    "residual: {} values, expected {m} x {n}",
                    residual.len()
                );
            }
            Sink::Dequantize {
                out: out.as_mut_ptr(),
                row_scale,
                col_scale,
                bias,
                quick_gelu,
                residual,
            }
        }
    };
    if m == 0 || n == 0 {
        return;
    }
    let a = pack_a(a, m, b);
    let group = group_rows(b.kernel);
    let panels = n.div_ceil(NR);
    let threads = pool.map_or(1, |p| p.current_num_threads());
    if threads <= 1 {
        // SAFETY: the whole output, on this thread only.
        unsafe { run_block(&a, m, b, sink, 0..m, 0..panels) };
        return;
    }
    let tasks = super::split_tasks(m, group, panels, threads);
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
    match b.kernel {
        Int8Kernel::Avx512Vnni | Int8Kernel::Avx512VnniZmm if !b.emulate_vnni => {
            // SAFETY: a PackedB for a VNNI kernel is only made where the CPU has AVX2,
            // AVX-512F, AVX-512VL and AVX-512 VNNI (`pack` checks `is_available`); the block
            // is the caller's contract.
            return unsafe { avx2::run_block_vnni(a, m, b, sink, rows, panels) };
        }
        Int8Kernel::Avx2
        | Int8Kernel::Avx2Maddubs
        | Int8Kernel::Avx512Vnni
        | Int8Kernel::Avx512VnniZmm => {
            // SAFETY: a PackedB for these kernels is only made where the CPU has AVX2
            // (`pack` checks `is_available`; the emulated VNNI layout, made by the tests
            // only, where AVX2 is); the block is the caller's contract.
            return unsafe { avx2::run_block(a, m, b, sink, rows, panels) };
        }
        Int8Kernel::Scalar => {}
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
    // K steps (pairs, or quads for vpmaddubsw) and the rows of a row group.
    let steps = b.steps();
    let g = group_rows(b.kernel);
    let quads = b.kernel.quads();
    #[cfg(target_arch = "x86_64")]
    let kind = avx2::kind(b);
    debug_assert!(rows.end <= m && a.len() == m * steps);
    let mut tile = [[0i32; NR]; MR];
    let mut block = rows.start;
    while block < rows.end {
        let block_end = (block + MC / g * g).min(rows.end);
        for panel in panels.clone() {
            let bp = b.panel(panel);
            let j0 = panel * NR;
            let cols = NR.min(b.n - j0);
            let sums = if quads {
                b.offset_sums[j0..j0 + NR].as_ptr()
            } else {
                std::ptr::null()
            };
            let mut i = block;
            while i < block_end {
                let r = g.min(block_end - i);
                // Row groups start at multiples of g (blocks and tasks do).
                debug_assert_eq!(i % g, 0);
                let group = &a[i * steps..(i + r) * steps];
                #[cfg(target_arch = "x86_64")]
                if let (
                    Int8Kernel::Avx2
                    | Int8Kernel::Avx2Maddubs
                    | Int8Kernel::Avx512Vnni
                    | Int8Kernel::Avx512VnniZmm,
                    NR,
                    Sink::Dequantize {
                        out,
                        row_scale,
                        col_scale,
                        bias,
                        quick_gelu,
                        residual,
                    },
                ) = (b.kernel, cols, sink)
                {
                    // A whole panel: dequantized from the accumulator registers.
                    // SAFETY: the CPU has the kernel's instructions (its PackedB); `group`
                    // holds r x steps
                    // words, the panel `steps` steps of NR columns, `sums` NR values for
                    // quads; the scales, bias and residual cover rows i..i + r and
                    // columns j0..j0 + NR, which are in this block.
                    unsafe {
                        avx2::micro(
                            r,
                            kind,
                            group.as_ptr(),
                            steps,
                            bp.as_ptr(),
                            sums,
                            avx2::Store::Dequantize(avx2::Dequantize {
                                out: out.add(i * b.n + j0),
                                n: b.n,
                                row_scale: row_scale[i..i + r].as_ptr(),
                                col_scale: col_scale[j0..j0 + NR].as_ptr(),
                                bias: bias.map_or(std::ptr::null(), |b| b[j0..j0 + NR].as_ptr()),
                                quick_gelu,
                                residual: residual.map_or(std::ptr::null(), |res| {
                                    res[i * b.n + j0..(i + r - 1) * b.n + j0 + NR].as_ptr()
                                }),
                            }),
                        )
                    };
                    i += r;
                    continue;
                }
                micro(b, group, steps, r, bp, sums, &mut tile);
                // SAFETY: rows i..i + r and columns j0..j0 + cols are in this block.
                unsafe { sink.write(b.n, i, r, j0, cols, &tile) };
                i += r;
            }
        }
        block = block_end;
    }
}

/// `tile[..rows] = a x panel`, `a` one row group of [`pack_a`] (`[step][row]`, `rows`
/// rows) for `b`'s kernel; for quads, less the column's offset sums (`sums`, NR values).
#[inline(always)]
fn micro(
    b: &PackedB,
    a: &[i32],
    steps: usize,
    rows: usize,
    panel: &[i8],
    sums: *const i32,
    tile: &mut [[i32; NR]; MR],
) {
    debug_assert!((1..=group_rows(b.kernel)).contains(&rows) && a.len() == rows * steps);
    match b.kernel {
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::Avx2
        | Int8Kernel::Avx2Maddubs
        | Int8Kernel::Avx512Vnni
        | Int8Kernel::Avx512VnniZmm => {
            // SAFETY: a PackedB is only made where the CPU has its kernel's instructions
            // (`pack`); the slices hold `rows` x `steps` words and `steps` steps of NR
            // columns, `sums` NR values for quads; `tile` is a valid MR x NR tile.
            unsafe {
                avx2::micro(
                    rows,
                    avx2::kind(b),
                    a.as_ptr(),
                    steps,
                    panel.as_ptr(),
                    sums,
                    avx2::Store::Tile(tile),
                )
            }
        }
        _ => micro_scalar(a, steps, rows, panel, tile),
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

    use super::{Int8Kernel, PackedB, Sink, MR, NR};

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
            Int8Kernel::Avx512Vnni | Int8Kernel::Avx512VnniZmm if b.emulate_vnni => VNNI_EMULATED,
            Int8Kernel::Avx512Vnni => VNNI,
            Int8Kernel::Avx512VnniZmm => VNNI512,
            _ => PAIRS,
        }
    }

    /// [`super::run_block`] compiled for AVX-512 VNNI (AVX-512VL's 256-bit forms).
    ///
    /// # Safety
    /// The CPU has AVX2, AVX-512F, AVX-512VL and AVX-512 VNNI; the rest as
    /// [`super::run_block`].
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
        unsafe { super::run_block_inline(a, m, b, sink, rows, panels) }
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
        // SAFETY: as above.
        unsafe { std::mem::transmute::<[i32; 8], __m256i>(acc) }
    }

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

    /// The accumulators of `a x panel` for quads: `a` one row group of
    /// [`super::pack_a_quads`] (`[q][row]`, bytes offset by +128), less the offset sums;
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
    /// [`super::Sink::write`].
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

    /// Every kernel this CPU can run, and [`Int8Kernel::Avx512Vnni`] with its instruction
    /// emulated where the CPU has AVX2 (`true`: emulated).
    fn tested_kernels() -> Vec<(Int8Kernel, bool)> {
        let mut kernels: Vec<_> = Int8Kernel::available()
            .into_iter()
            .map(|k| (k, false))
            .collect();
        if Int8Kernel::Avx2.is_available() {
            kernels.push((Int8Kernel::Avx512Vnni, true));
            kernels.push((Int8Kernel::Avx512VnniZmm, true));
        }
        kernels
    }

    fn pack_as(b: &[i8], k: usize, n: usize, (kernel, emulated): (Int8Kernel, bool)) -> PackedB {
        if emulated {
            PackedB::pack_unchecked(b, k, n, kernel, true)
        } else {
            PackedB::pack(b, k, n, kernel)
        }
    }

    fn label((kernel, emulated): (Int8Kernel, bool)) -> String {
        format!(
            "{}{}",
            kernel.name(),
            if emulated { " (emulated)" } else { "" }
        )
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
        for kernel in tested_kernels() {
            for m in 1..=37 {
                for k in 1..=37 {
                    for n in [1, 2, 7, 8, 15, 16, 17, 23, 24, 25, 31, 33, 37] {
                        let a = values(m * k, (m * 1000 + k) as u64);
                        let b = values(k * n, (k * 1000 + n) as u64 + 7);
                        let want = naive(&a, &b, m, k, n);
                        let packed = pack_as(&b, k, n, kernel);
                        for threads in [None, Some(&two)] {
                            let mut c = vec![i32::MIN; m * n];
                            gemm(&a, m, &packed, Output::Int32(&mut c), threads);
                            assert_eq!(
                                c,
                                want,
                                "{} kernel, m {m} k {k} n {n}, pool {}",
                                label(kernel),
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

    /// Weights that fit `vpmaddubsw` (every K pair's same-sign sum within 128), with the
    /// limits themselves mixed in often.
    fn fitting_weights(k: usize, n: usize, seed: u64) -> Vec<i8> {
        let raw = values(k * n, seed);
        let mut b: Vec<i8> = raw
            .iter()
            .map(|&v| (v as i32 / 2).clamp(-64, 64) as i8)
            .collect();
        // Pairs at the limit: (128, 0), (-128, 0), (64, 64), (-64, -64), (100, 28).
        let limits = [
            (127, 0),
            (-128, 0),
            (64, 64),
            (-64, -64),
            (100, 28),
            (-100, -28),
        ];
        for (j, &(x, y)) in (0..n).zip(limits.iter().cycle()) {
            if k >= 2 && j % 3 == 0 {
                b[j] = x;
                b[n + j] = y;
            }
        }
        assert!(fits_maddubs(&b, k, n));
        b
    }

    #[test]
    fn the_maddubs_kernel_equals_the_naive_product_where_the_weights_fit() {
        if !Int8Kernel::Avx2Maddubs.is_available() {
            return;
        }
        let two = pool(2);
        for m in 1..=23 {
            for k in 1..=37 {
                for n in [1, 7, 15, 16, 17, 33] {
                    let a = values(m * k, (m * 1000 + k) as u64);
                    let b = fitting_weights(k, n, (k * 1000 + n) as u64 + 7);
                    let want = naive(&a, &b, m, k, n);
                    let packed = PackedB::pack(&b, k, n, Int8Kernel::Avx2Maddubs);
                    assert_eq!(packed.kernel(), Int8Kernel::Avx2Maddubs);
                    for threads in [None, Some(&two)] {
                        let mut c = vec![i32::MIN; m * n];
                        gemm(&a, m, &packed, Output::Int32(&mut c), threads);
                        assert_eq!(c, want, "m {m} k {k} n {n}, pool {}", threads.is_some());
                    }
                }
            }
        }
        let (m, k, n) = (50, 768, 40);
        let a = values(m * k, 5);
        let b = fitting_weights(k, n, 6);
        let packed = PackedB::pack(&b, k, n, Int8Kernel::Avx2Maddubs);
        let mut c = vec![0; m * n];
        gemm(&a, m, &packed, Output::Int32(&mut c), Some(&two));
        assert_eq!(c, naive(&a, &b, m, k, n));
    }

    #[test]
    fn weights_that_could_saturate_maddubs_get_the_widening_kernel() {
        // 101 + 28 = 129 > 128: 255 x 129 does not fit in int16.
        assert!(!fits_maddubs(&[101, 28], 2, 1));
        assert!(!fits_maddubs(&[-101, -28], 2, 1));
        // Columns (100, 28), (-128, 0), (127, -128): at the limit, or of opposite signs.
        assert!(fits_maddubs(&[100, -128, 127, 28, 0, -128], 2, 3));
        // One K value per column: any value fits.
        assert!(fits_maddubs(&[-128, 127], 1, 2));
        // K pairs are (0, 1), (2, 3): 100 + 100 across pairs is fine, within one is not.
        assert!(fits_maddubs(&[0, 100, 100, 0], 4, 1));
        assert!(!fits_maddubs(&[100, 100], 2, 1));
        if !Int8Kernel::Avx2Maddubs.is_available() {
            return;
        }
        let (m, k, n) = (7, 9, 20);
        let b = values(k * n, 11);
        assert!(!fits_maddubs(&b, k, n));
        let packed = PackedB::pack(&b, k, n, Int8Kernel::Avx2Maddubs);
        assert_eq!(packed.kernel(), Int8Kernel::Avx2);
        let a = values(m * k, 12);
        let mut c = vec![0; m * n];
        gemm(&a, m, &packed, Output::Int32(&mut c), None);
        assert_eq!(c, naive(&a, &b, m, k, n));
    }

    #[test]
    fn extreme_values_do_not_saturate() {
        // Every product 128 * 128 (pairs sum to 32768, one past i16::MAX) and the mixed
        // signs, over a K long enough to matter, with every kernel.
        for kernel in tested_kernels() {
            for (x, y) in [(-128i8, -128i8), (-128, 127), (127, 127), (127, -128)] {
                let (m, k, n) = (5, 301, 29);
                let a = vec![x; m * k];
                let b = vec![y; k * n];
                let packed = pack_as(&b, k, n, kernel);
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
        for kernel in tested_kernels() {
            for (m, k, n) in [(150, 96, 200), (50, 77, 768), (3, 768, 50)] {
                let a = values(m * k, 1);
                let b = values(k * n, 2);
                let want = naive(&a, &b, m, k, n);
                let packed = pack_as(&b, k, n, kernel);
                for threads in [None, Some(&two), Some(&three)] {
                    let mut c = vec![0; m * n];
                    gemm(&a, m, &packed, Output::Int32(&mut c), threads);
                    assert_eq!(c, want, "{} kernel, m {m} k {k} n {n}", label(kernel));
                }
            }
        }
    }

    #[test]
    fn the_output_stage_is_the_graphs_fp32_arithmetic() {
        let (m, k, n) = (9, 33, 50);
        let a = values(m * k, 3);
        let rows: Vec<f32> = (0..m).map(|i| 0.013 + i as f32 * 1.7e-3).collect();
        let cols: Vec<f32> = (0..n).map(|j| 3.1e-3 / (1.0 + j as f32)).collect();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.37 - 9.0).collect();
        let residual: Vec<f32> = (0..m * n).map(|ij| (ij % 17) as f32 * 0.53 - 4.1).collect();
        // Any weights, and weights that fit vpmaddubsw (so every layout is checked).
        for (b, kernel) in [values(k * n, 4), fitting_weights(k, n, 4)]
            .into_iter()
            .flat_map(|b| {
                tested_kernels()
                    .into_iter()
                    .map(move |kernel| (b.clone(), kernel))
            })
        {
            let acc = naive(&a, &b, m, k, n);
            let packed = pack_as(&b, k, n, kernel);
            for (with_bias, with_gelu, with_residual) in [
                (false, false, false),
                (true, false, false),
                (true, false, true),
                (false, false, true),
                (true, true, false),
                (true, true, true),
                (false, true, false),
            ] {
                let mut y = vec![0f32; m * n];
                let out = Output::Dequantize {
                    out: &mut y,
                    row_scale: &rows,
                    col_scale: &cols,
                    bias: with_bias.then_some(&bias[..]),
                    quick_gelu: with_gelu.then_some(1.702),
                    residual: with_residual.then_some(&residual[..]),
                };
                gemm(&a, m, &packed, out, None);
                for i in 0..m {
                    for j in 0..n {
                        let mut want = (acc[i * n + j] as f32 * cols[j]) * rows[i];
                        if with_bias {
                            // The graph's Add(bias, y): float addition commutes.
                            want += bias[j];
                        }
                        if with_gelu {
                            // The separate QuickGELU pass's function.
                            want = crate::kernels::activation::quick_gelu_value(want, 1.702);
                        }
                        if with_residual {
                            // The skip connection's Add(residual, y): it commutes too.
                            want += residual[i * n + j];
                        }
                        assert_eq!(
                            y[i * n + j].to_bits(),
                            want.to_bits(),
                            "{} kernel, bias {with_bias}, QuickGELU {with_gelu}, residual \
                             {with_residual}, {i} {j}",
                            label(kernel)
                        );
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
        assert_eq!(
            Int8Choice::parse(Some("avx2-maddubs")).is_ok(),
            Int8Kernel::Avx2Maddubs.is_available()
        );
        assert_eq!(
            Int8Choice::parse(Some("avx512-vnni")).is_ok(),
            Int8Kernel::Avx512Vnni.is_available()
        );
        assert_eq!(
            Int8Choice::parse(Some("avx512-vnni-zmm")).is_ok(),
            Int8Kernel::Avx512VnniZmm.is_available()
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_emulated_dpbusd_is_intels_definition() {
        use std::arch::x86_64::__m256i;
        // Lane 0: 255 x -128 + 1 x 127 + 128 x -1 + 0 x 5 = -32641, on top of 10.
        // Lane 1: 255 x -128 four times: -130560 (beyond int16: no saturation), on top of
        // i32::MIN + 100000: wraps like the hardware's 32-bit sum.
        let mut a = [0u8; 32];
        let mut b = [0i8; 32];
        a[..4].copy_from_slice(&[255, 1, 128, 0]);
        b[..4].copy_from_slice(&[-128, 127, -1, 5]);
        a[4..8].copy_from_slice(&[255; 4]);
        b[4..8].copy_from_slice(&[-128; 4]);
        let mut acc = [0i32; 8];
        acc[0] = 10;
        acc[1] = i32::MIN + 100_000;
        acc[2] = 7;
        // SAFETY: __m256i is 32 plain bytes.
        let got: [i32; 8] = unsafe {
            std::mem::transmute(avx2::dpbusd_emulated(
                std::mem::transmute::<[i32; 8], __m256i>(acc),
                std::mem::transmute::<[u8; 32], __m256i>(a),
                std::mem::transmute::<[i8; 32], __m256i>(b),
            ))
        };
        assert_eq!(got[0], 10 - 32641);
        assert_eq!(got[1], (i32::MIN + 100_000).wrapping_sub(130_560));
        assert_eq!(got[2..], [7, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn every_available_kernel_passes_its_self_check() {
        for kernel in Int8Kernel::available() {
            assert!(kernel.self_check(), "{}", kernel.name());
        }
        for kernel in [Int8Kernel::Avx512Vnni, Int8Kernel::Avx512VnniZmm] {
            if !kernel.is_available() {
                assert!(!kernel.self_check(), "{}", kernel.name());
            }
        }
    }
}
