//! The AMX product ([`Int8Kernel::Amx`]): Intel's Advanced Matrix Extensions multiply tiles
//! of 16 rows x 64 bytes, `tdpbssd` adding a 16 x 64 int8 tile of A times a 64 x 16 int8
//! tile of B (stored as 16 quad rows of 16 columns x 4 K values: the VNNI panels' layout)
//! into a 16 x 16 int32 tile, exact and wrapping like the other kernels.
//!
//! - **Permission.** Linux gives a process the tile registers only on request
//!   (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, once, for every thread of the
//!   process); [`available`] checks the CPU (CPUID: AMX-TILE and AMX-INT8), asks for the
//!   permission and says whether it was granted.
//! - **Operands.** A is copied into plain rows of its int8 values (signed: `tdpbssd`, so no
//!   offset and no column sums), padded with zeros to a multiple of [`ROWS`] rows and K to
//!   [`padded_k`]; B is the quad panels of [`PackedB`] with K padded to whole tiles.
//! - **Micro-kernel.** 32 rows x 2 panels (32 columns): four accumulator tiles, two A tiles
//!   and two B tiles (all eight tile registers), one pass over K per block in inline
//!   assembly ([`tiles`]: Rust has no stable AMX intrinsics), stored to two 32 x 16 buffers
//!   that the output stage ([`Sink`]) writes as the other kernels' blocks.
//! - **Order.** Per task: row blocks of at most 512 KiB of packed A ([`block_rows`]), then
//!   panel pairs, then the row pairs of the block, so a panel pair's B tiles (2 x K x 16
//!   bytes) stay in L1 for every row pair that reads them while the block's A stays in L2,
//!   and the weight streams from memory once per block.
//! - **Tests.** The same layouts and block loop run on any x86-64 CPU with the tile product
//!   computed in portable code ([`tiles_emulated`], `PackedB::emulated`); the instructions
//!   themselves only on AMX CPUs, and the default checks them first
//!   ([`Int8Kernel::self_check`]).

use std::ops::Range;

use super::block::Sink;
#[cfg(doc)]
use super::Int8Kernel;
use super::{PackedB, NR};

/// Rows of a micro-kernel block: two A tiles of 16 rows.
pub(super) const ROWS: usize = 32;
/// Rows of a tile.
const TILE_ROWS: usize = 16;
/// K values (bytes) of an A tile row.
const TILE_K: usize = 64;
/// Bytes of a B tile (16 quad rows x 16 columns x 4).
const B_TILE: usize = TILE_ROWS * TILE_K;
/// Bytes of packed A per cache block of a task: the block's rows stay in L2 while the
/// panel pairs stream past them. (The unit tests' shapes are small: they use 16 KiB so
/// that their products span several blocks, a short last one included.)
#[cfg(not(test))]
const A_BLOCK_BYTES: usize = 512 * 1024;
#[cfg(test)]
const A_BLOCK_BYTES: usize = 16 * 1024;

/// Rows per cache block of a task for K padded to `kp` (a multiple of [`ROWS`], at least
/// one row pair).
fn block_rows(kp: usize) -> usize {
    (A_BLOCK_BYTES / kp / ROWS).max(1) * ROWS
}

/// K padded to whole tiles (at least one: the micro-kernel runs its K loop once or more).
pub(super) fn padded_k(k: usize) -> usize {
    k.div_ceil(TILE_K).max(1) * TILE_K
}

/// Whether this CPU has AMX-TILE and AMX-INT8 and the kernel granted this process the tile
/// registers (asked once).
pub(super) fn available() -> bool {
    use std::sync::OnceLock;
    static GRANTED: OnceLock<bool> = OnceLock::new();
    *GRANTED.get_or_init(|| cpu_has_amx_int8() && request_tiles())
}

fn cpu_has_amx_int8() -> bool {
    use std::arch::x86_64::__cpuid_count;
    // Leaf 7 exists (the maximum leaf is at least 7), then its EDX: bit 24 AMX-TILE,
    // bit 25 AMX-INT8.
    let max_leaf = __cpuid_count(0, 0).eax;
    if max_leaf < 7 {
        return false;
    }
    let edx = __cpuid_count(7, 0).edx;
    edx & (1 << 24) != 0 && edx & (1 << 25) != 0
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn request_tiles() -> bool {
    // arch/x86/include/uapi/asm/prctl.h and the kernel's Documentation/arch/x86/xstate.rst.
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with this request reads no memory of ours; it only grants (or
    // refuses) the permission, returning 0 or -1 with errno.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    if rc != 0 {
        log::info!(
            "the CPU has AMX but the kernel refused the tile registers ({}); \
             using the AVX-512 int8 kernels",
            std::io::Error::last_os_error()
        );
    }
    rc == 0
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn request_tiles() -> bool {
    false
}

/// A ([m, k] row-major) as the tiles read it, each tile's 16 rows x 64 K values one
/// contiguous KiB: per pair of row tiles (32 rows, padded with zero rows), per 64 K values
/// (padded with zeros to [`padded_k`]), the two tiles one after the other
/// (`[pair][chunk][tile][row][64]`), so a micro-kernel reads one sequential stream of A.
pub(super) fn pack_a(a: &[i8], m: usize, k: usize) -> Vec<i8> {
    let kp = padded_k(k);
    let mut out = vec![0i8; m.div_ceil(ROWS) * ROWS * kp];
    if k == 0 {
        return out;
    }
    for (i, row) in a.chunks_exact(k).enumerate() {
        let (pair, r) = (i / ROWS, i % ROWS);
        let pair_start = pair * ROWS * kp;
        for (chunk, values) in row.chunks(TILE_K).enumerate() {
            let at = pair_start + chunk * ROWS * TILE_K + r * TILE_K;
            out[at..at + values.len()].copy_from_slice(values);
        }
    }
    out
}

/// The tile configuration: palette 1, all eight tiles 16 rows x 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    const fn all_full() -> TileConfig {
        let mut bytes = [0u8; 64];
        bytes[0] = 1;
        let mut t = 0;
        while t < 8 {
            // colsb[t]: 16-bit little-endian at 16 + 2t; rows[t] at 48 + t.
            bytes[16 + 2 * t] = TILE_K as u8;
            bytes[48 + t] = TILE_ROWS as u8;
            t += 1;
        }
        TileConfig(bytes)
    }
}

static CONFIG: TileConfig = TileConfig::all_full();

/// Computes rows `rows` x panels `panels` of the product from [`pack_a`]'s `a`.
///
/// # Safety
/// The block is inside the output and no other thread writes it; `rows` starts at a
/// multiple of [`ROWS`] and ends at most at `m`; unless `b.emulated`, the CPU has AMX-INT8
/// and this process the tile permission ([`available`]).
pub(super) unsafe fn run_block(
    a: &[i8],
    m: usize,
    b: &PackedB,
    sink: Sink,
    rows: Range<usize>,
    panels: Range<usize>,
) {
    if b.emulated {
        // SAFETY: the caller's contract; the emulation needs no instruction.
        unsafe { block_body::<true>(a, m, b, sink, rows, panels) }
    } else {
        // SAFETY: the caller's contract (AMX CPUs have AVX-512F, BW and VL: every Xeon with
        // AMX is Sapphire Rapids or later).
        unsafe { block_amx(a, m, b, sink, rows, panels) }
    }
}

/// [`block_body`] with the output stage compiled for AVX-512.
///
/// # Safety
/// As [`run_block`], with AMX and AVX-512F/BW/VL.
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
unsafe fn block_amx(
    a: &[i8],
    m: usize,
    b: &PackedB,
    sink: Sink,
    rows: Range<usize>,
    panels: Range<usize>,
) {
    // SAFETY: the caller's contract; the tile configuration is loaded for this thread and
    // released before returning, so no tile state outlives the block.
    unsafe {
        std::arch::asm!("ldtilecfg [{cfg}]", cfg = in(reg) &CONFIG, options(nostack, readonly));
        block_body::<false>(a, m, b, sink, rows, panels);
        std::arch::asm!("tilerelease", options(nostack, nomem));
    }
}

/// The block loop (see the module docs for its order).
///
/// # Safety
/// As [`run_block`]; unless `EMULATED`, this thread has loaded [`CONFIG`].
#[inline(always)]
unsafe fn block_body<const EMULATED: bool>(
    a: &[i8],
    m: usize,
    b: &PackedB,
    sink: Sink,
    rows: Range<usize>,
    panels: Range<usize>,
) {
    let kp = padded_k(b.k);
    let chunks = kp / TILE_K;
    debug_assert!(rows.start.is_multiple_of(ROWS) && rows.end <= m);
    debug_assert_eq!(a.len(), m.div_ceil(ROWS) * ROWS * kp);
    debug_assert_eq!(b.steps() * 4, kp);
    let mut left = [[0i32; NR]; ROWS];
    let mut right = [[0i32; NR]; ROWS];
    let mut block = rows.start;
    while block < rows.end {
        let block_end = (block + block_rows(kp)).min(rows.end);
        let mut panel = panels.start;
        while panel < panels.end {
            let b0 = b.panel(panel);
            // The pair's second panel, when this task owns it; else the first again
            // (computed and not written).
            let second = panel + 1 < panels.end;
            let b1 = if second { b.panel(panel + 1) } else { b0 };
            let mut i = block;
            while i < block_end {
                // Row pair i / ROWS of the packed A (it holds whole row pairs).
                let a0 = &a[i * kp..(i + ROWS) * kp];
                if EMULATED {
                    // Only the rows and panels written below (the emulation is slow in the
                    // tests' debug builds; the rest of the buffers is never read).
                    let panels_used = if second { 2 } else { 1 };
                    let r = ROWS.min(block_end - i);
                    tiles_emulated(a0, [b0, b1], [&mut left, &mut right], r, panels_used);
                } else {
                    // SAFETY: `a0` holds `chunks` pairs of A tiles and each panel kp / 4
                    // quads of NR columns x 4 bytes (= `chunks` B tiles); the buffers are
                    // 32 x 16 int32; the configuration is loaded (the caller's contract).
                    unsafe {
                        tiles(
                            a0.as_ptr(),
                            b0.as_ptr(),
                            b1.as_ptr(),
                            chunks,
                            left.as_mut_ptr().cast(),
                            right.as_mut_ptr().cast(),
                        )
                    };
                }
                let r = ROWS.min(block_end - i);
                let j0 = panel * NR;
                // SAFETY: rows i..i + r and this task's panels' columns are in this block
                // (the caller's contract).
                unsafe {
                    sink.write(b.n, i, r, j0, NR.min(b.n - j0), &left);
                    if second {
                        let j1 = j0 + NR;
                        sink.write(b.n, i, r, j1, NR.min(b.n - j1), &right);
                    }
                }
                i += ROWS;
            }
            panel += 2;
        }
        block = block_end;
    }
}

/// `left = A x panel b0`, `right = A x panel b1` for one row pair: per step of K
/// (`chunks` >= 1), two A tiles ([`pack_a`]'s layout) and one B tile of each panel (16
/// quads x 64 bytes), all at stride 64; the four 16 x 16 accumulator tiles stored to the two
/// 32 x 16 buffers.
///
/// # Safety
/// The CPU has AMX-INT8, this thread has loaded [`CONFIG`]; `a` points to `chunks` pairs of
/// A tiles, `b0` and `b1` to `chunks` B tiles each, `left` and `right` to 32 x 16 int32
/// each.
#[inline(always)]
unsafe fn tiles(
    a: *const i8,
    b0: *const i8,
    b1: *const i8,
    chunks: usize,
    left: *mut i32,
    right: *mut i32,
) {
    debug_assert!(chunks >= 1);
    // SAFETY: the caller's contract: every tile load reads inside the operands, every store
    // writes inside the buffers (16 rows x 64 bytes at stride 64 from each quarter).
    unsafe {
        std::arch::asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "2:",
            "tileloadd tmm4, [{a0} + {sb}*1]",
            "tileloadd tmm6, [{b0} + {sb}*1]",
            "tileloadd tmm5, [{a1} + {sb}*1]",
            "tileloadd tmm7, [{b1} + {sb}*1]",
            "tdpbssd tmm0, tmm4, tmm6",
            "tdpbssd tmm1, tmm4, tmm7",
            "tdpbssd tmm2, tmm5, tmm6",
            "tdpbssd tmm3, tmm5, tmm7",
            "add {a0}, 2048",
            "add {a1}, 2048",
            "add {b0}, 1024",
            "add {b1}, 1024",
            "dec {n}",
            "jnz 2b",
            "tilestored [{l0} + {sb}*1], tmm0",
            "tilestored [{r0} + {sb}*1], tmm1",
            "tilestored [{l1} + {sb}*1], tmm2",
            "tilestored [{r1} + {sb}*1], tmm3",
            a0 = inout(reg) a => _,
            a1 = inout(reg) a.add(B_TILE) => _,
            b0 = inout(reg) b0 => _,
            b1 = inout(reg) b1 => _,
            n = inout(reg) chunks => _,
            sb = in(reg) 64usize,
            l0 = in(reg) left,
            r0 = in(reg) right,
            l1 = in(reg) left.add(TILE_ROWS * NR),
            r1 = in(reg) right.add(TILE_ROWS * NR),
            options(nostack),
        );
    }
    const _: () = assert!(B_TILE == 1024 && 2 * B_TILE == ROWS * TILE_K && NR * 4 == 64);
}

/// [`tiles`] in portable code for the first `rows` rows and `panels` (1 or 2) panels: per
/// tile, `C[r, c] += sum over e < 64 of A[r, e] x B[e / 4, 4c + e % 4]` (Intel's
/// `tdpbssd`: int8 x int8, 32-bit wrapping sums).
fn tiles_emulated(
    a: &[i8],
    b: [&[i8]; 2],
    out: [&mut [[i32; NR]; ROWS]; 2],
    rows: usize,
    panels: usize,
) {
    for (out, b) in out.into_iter().zip(b).take(panels) {
        for (r, acc) in out.iter_mut().enumerate().take(rows) {
            *acc = [0; NR];
            // Row r's 64 values of each K step: tile r / 16, row r % 16 of the step's pair.
            let rows = a.chunks_exact(2 * B_TILE).map(|pair| {
                let at = (r / TILE_ROWS) * B_TILE + (r % TILE_ROWS) * TILE_K;
                &pair[at..at + TILE_K]
            });
            for (chunk, tile) in rows.zip(b.chunks_exact(B_TILE)) {
                for (e, &x) in chunk.iter().enumerate() {
                    let quad = &tile[(e / 4) * 4 * NR..(e / 4 + 1) * 4 * NR];
                    for (c, v) in acc.iter_mut().enumerate() {
                        *v = v.wrapping_add(x as i32 * quad[4 * c + e % 4] as i32);
                    }
                }
            }
        }
    }
}
