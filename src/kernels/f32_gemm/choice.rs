//! Which fp32 product runs: this module's kernel or tract's ([`use_own_kernel`], from the
//! CPU and [`KERNEL_ENV`]), and whether the micro-kernel runs on 512-bit registers
//! ([`wide_kernel`]), once it has checked itself against the 256-bit one in the process.

use super::{gemm_on, Epilogue, PackedF32, KERNEL_ENV};

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

/// Whether [`super::gemm`] runs the micro-kernel on 512-bit registers: the CPU has AVX-512F,
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
pub fn wide_available() -> bool {
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
pub(super) fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i + seed) * 7919 + seed * 31) % 2003) as f32 / 2003.0 * 4.0 - 2.0)
        .collect()
}

/// The 512-bit and 256-bit kernels on shapes with partial row blocks, partial panels and
/// every output stage: equal bit for bit. Only called where [`wide_available`].
pub(super) fn wide_equals_narrow() -> bool {
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
