//! The operands in the micro-kernel's layout: the weight packed once at load into panels
//! of [`NR`] columns ([`PackedF32`]), and A packed per product into blocks of [`MR`] rows
//! ([`pack_a`]).

use super::{MR, NR};

/// A weight [K, N] packed into [`NR`]-column panels.
#[derive(Debug)]
pub struct PackedF32 {
    pub(super) k: usize,
    pub(super) n: usize,
    /// `[panel][k][NR]` (read by the x86 kernels; elsewhere the product is tract's).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) panels: Vec<f32>,
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

/// A (row-major [m, k]) in blocks of [`MR`] rows, each block `[k][MR]` (the rows past `m`
/// zero): the micro-kernel's six values of one K step are then adjacent, one stream of A
/// instead of six rows `k` apart.
///
/// A full block is written K step by K step, six values at a time from six row streams
/// (sequential writes): on a 2-vCPU AMD EPYC (Zen 3) 12 us for 77 x 512 and 50 us for
/// 77 x 2048, where scattering each row's values with a stride of six took 65 and 270 us
/// (about 5% of a text pass at 77 tokens).
pub(super) fn pack_a(a: &[f32], m: usize, k: usize) -> Vec<f32> {
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
