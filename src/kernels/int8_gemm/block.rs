//! The block loop of the int8 product: one task's rows x panels, cut into cache blocks of
//! rows and row groups of the micro-kernel's height, each computed by the portable or an x86
//! micro-kernel and written by the output stage ([`Sink`]: the int32 accumulators, or the
//! graph's dequantization and the [`Epilogue`]).

use super::pack::group_rows;
#[cfg(target_arch = "x86_64")]
use super::x86;
#[cfg(target_arch = "x86_64")]
use super::Int8Kernel;
use super::{PackedB, MC, MR, NR};
use crate::kernels::driver::SharedOut;
use crate::kernels::Epilogue;

/// The output as the tasks write it (each its own block, through [`SharedOut`]).
#[derive(Clone, Copy)]
pub(super) enum Sink<'a> {
    Int32(SharedOut<'a, i32>),
    Dequantize {
        out: SharedOut<'a, f32>,
        row_scale: &'a [f32],
        col_scale: &'a [f32],
        epilogue: Epilogue<'a>,
    },
}

impl Sink<'_> {
    /// Writes rows `i0..i0 + rows`, columns `j0..j0 + cols` from `tile` (at least `rows`
    /// rows).
    ///
    /// # Safety
    /// The block lies inside the [M, N] output (`n` columns) and no other thread writes it.
    #[inline(always)]
    pub(super) unsafe fn write(
        self,
        n: usize,
        i0: usize,
        rows: usize,
        j0: usize,
        cols: usize,
        tile: &[[i32; NR]],
    ) {
        match self {
            Sink::Int32(out) => {
                for (r, acc) in tile.iter().enumerate().take(rows) {
                    // SAFETY: row i0 + r, columns j0..j0 + cols are inside the output and
                    // no other thread writes them (the caller's contract).
                    let row = unsafe { out.slice((i0 + r) * n + j0, cols) };
                    row.copy_from_slice(&acc[..cols]);
                }
            }
            Sink::Dequantize {
                out,
                row_scale,
                col_scale,
                epilogue:
                    Epilogue {
                        bias,
                        quick_gelu,
                        residual,
                    },
            } => {
                let cs = &col_scale[j0..j0 + cols];
                for (r, acc) in tile.iter().enumerate().take(rows) {
                    let rs = row_scale[i0 + r];
                    // SAFETY: row i0 + r, columns j0..j0 + cols are inside the output and
                    // no other thread writes them (the caller's contract).
                    let row = unsafe { out.slice((i0 + r) * n + j0, cols) };
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

/// Computes rows `rows` x panels `panels` of the product.
///
/// # Safety
/// The block is inside the output and no other thread writes it.
pub(super) unsafe fn run_block(
    a: &[i32],
    m: usize,
    b: &PackedB,
    sink: Sink,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
) {
    #[cfg(target_arch = "x86_64")]
    match b.kernel {
        Int8Kernel::Avx512Vnni | Int8Kernel::Avx512VnniZmm if !b.emulated => {
            // SAFETY: a PackedB for a VNNI kernel is only made where the CPU has AVX2,
            // AVX-512F, AVX-512VL and AVX-512 VNNI (`pack` checks `is_available`); the block
            // is the caller's contract.
            return unsafe { x86::run_block_vnni(a, m, b, sink, rows, panels) };
        }
        Int8Kernel::Avx2
        | Int8Kernel::Avx2Maddubs
        | Int8Kernel::Avx512Vnni
        | Int8Kernel::Avx512VnniZmm => {
            // SAFETY: a PackedB for these kernels is only made where the CPU has AVX2
            // (`pack` checks `is_available`; the emulated VNNI layout, made by the tests
            // only, where AVX2 is); the block is the caller's contract.
            return unsafe { x86::run_block(a, m, b, sink, rows, panels) };
        }
        Int8Kernel::Amx => unreachable!("the AMX product has its own block loop (`amx`)"),
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
pub(super) unsafe fn run_block_inline(
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
    let kind = x86::kind(b);
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
                        epilogue:
                            Epilogue {
                                bias,
                                quick_gelu,
                                residual,
                            },
                    },
                ) = (b.kernel, cols, sink)
                {
                    // A whole panel: dequantized from the accumulator registers.
                    // SAFETY: the CPU has the kernel's instructions (a PackedB is only made
                    // where it does); `group` holds r x steps words, the panel `steps` steps
                    // of NR columns, `sums` NR values for quads; the scales, bias and
                    // residual slices cover rows i..i + r and columns j0..j0 + NR, which are
                    // in this block: inside the output, written by this task alone (the
                    // caller's contract).
                    unsafe {
                        x86::micro(
                            r,
                            kind,
                            group.as_ptr(),
                            steps,
                            bp.as_ptr(),
                            sums,
                            x86::Store::Dequantize(x86::Dequantize {
                                out: out.at(i * b.n + j0),
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
                x86::micro(
                    rows,
                    x86::kind(b),
                    a.as_ptr(),
                    steps,
                    panel.as_ptr(),
                    sums,
                    x86::Store::Tile(tile),
                )
            }
        }
        _ => {
            // The portable kernel takes no offset sums (it reads no quads).
            let _ = sums;
            micro_scalar(a, steps, rows, panel, tile)
        }
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
