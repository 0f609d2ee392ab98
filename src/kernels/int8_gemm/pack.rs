//! The operands in the micro-kernels' layouts: B (the weight) packed once at load into
//! panels of [`NR`] columns of K pairs or quads ([`PackedB`]), and A widened per product
//! into row groups of int16 pairs or offset unsigned quads ([`pack_a`]; the AMX kernel
//! packs its A itself, as plain padded rows).

use super::{Int8Kernel, MR, NR};

/// B [K, N] packed for a micro-kernel (see the module docs for the layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedB {
    pub(super) k: usize,
    pub(super) n: usize,
    pub(super) kernel: Int8Kernel,
    /// ceil(n / NR) panels of ceil(k / 2) pairs x NR columns x 2 values, or for the
    /// quad kernels ceil(k / 4) quads x NR columns x 4 values.
    pub(super) data: Vec<i8>,
    /// Quad kernels: `128 * sum_k B[k, j]` (wrapping) per column, padded to whole panels:
    /// what the activations' +128 offset adds to column j.
    pub(super) offset_sums: Vec<i32>,
    /// The kernel's layout and block loop with its one instruction computed by portable
    /// code: `vpdpbusd` for the VNNI kernels (on AVX2, `x86::dpbusd_emulated`), the tile
    /// product for [`Int8Kernel::Amx`] (`amx`'s `tiles_emulated`). How the tests check a
    /// kernel on CPUs without its instruction. Never set outside tests.
    pub(super) emulated: bool,
}

/// Rows of a row group of A for a kernel ([`pack_a`]): the micro-kernel's block height.
pub(super) const fn group_rows(kernel: Int8Kernel) -> usize {
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

    /// [`PackedB::pack`] without the CPU check (`emulated`: see the field).
    pub(super) fn pack_unchecked(
        b: &[i8],
        k: usize,
        n: usize,
        kernel: Int8Kernel,
        emulated: bool,
    ) -> PackedB {
        let kernel = match kernel {
            Int8Kernel::Avx2Maddubs if !fits_maddubs(b, k, n) => Int8Kernel::Avx2,
            other => other,
        };
        // Values per K step of a panel: pairs, or quads.
        let step = kernel.step_values();
        let steps = steps(kernel, k);
        let panels = n.div_ceil(NR);
        let mut data = vec![0i8; panels * steps * step * NR];
        for (panel, chunk) in data.chunks_exact_mut(steps * step * NR).enumerate() {
            for (p, values) in chunk.chunks_exact_mut(step * NR).enumerate() {
                for c in 0..NR.min(n - panel * NR) {
                    let col = panel * NR + c;
                    // The AMX layout pads K beyond its last quad with zeros.
                    for e in 0..step.min(k.saturating_sub(p * step)) {
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
            emulated,
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
    pub(super) fn steps(&self) -> usize {
        steps(self.kernel, self.k)
    }

    pub(super) fn panel(&self, panel: usize) -> &[i8] {
        let len = self.steps() * self.kernel.step_values() * NR;
        &self.data[panel * len..(panel + 1) * len]
    }
}

/// K steps of a panel for `kernel`: pairs, or quads; for [`Int8Kernel::Amx`] whole tiles of
/// 16 quads (K padded to a multiple of 64, at least one tile).
fn steps(kernel: Int8Kernel, k: usize) -> usize {
    match kernel {
        Int8Kernel::Amx => k.div_ceil(64).max(1) * 16,
        _ => k.div_ceil(kernel.step_values()),
    }
}

/// A packed for `b`'s kernel: [`pack_a_pairs`], or for the quad kernels [`pack_a_quads`].
pub(super) fn pack_a(a: &[i8], m: usize, b: &PackedB) -> Vec<i32> {
    if b.kernel.quads() {
        pack_a_quads(a, m, b.k, group_rows(b.kernel))
    } else {
        pack_a_pairs(a, m, b.k)
    }
}

/// A's rows as quads of unsigned bytes `A[i, 4q + e] + 128`, one word each, K padded to a
/// multiple of 4 (with 128: the padded weights are 0), in groups of `g` rows laid out as
/// [`pack_a_pairs`] does.
pub(super) fn pack_a_quads(a: &[i8], m: usize, k: usize, g: usize) -> Vec<i32> {
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
pub(super) fn pack_a_pairs(a: &[i8], m: usize, k: usize) -> Vec<i32> {
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
