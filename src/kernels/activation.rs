//! The activation functions the kernels' output stages and the fused elementwise ops
//! share, one definition each, so a value computed in a product's output stage and in a
//! separate pass has the same bits: the vectorisable `exp` and QuickGELU (scalar, and 8
//! values in an AVX register for the kernels' output stages).

/// e^x for f32, vectorisable: x = n ln2 + r with |r| <= ln2/2, e^r by Cephes' expf
/// polynomial, 2^n from the exponent bits. Inputs below -87.3 give 0 (e^x is below the
/// smallest normal f32 there: a masked key's weight in
/// [`crate::fused::transformer_ops::softmax_row`] is exactly 0, which lets
/// [`crate::fused::attention`] skip such keys); above 88.7 give ~3e38; softmax and sigmoid
/// never need more.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let underflow = x < -87.3;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: rounds to an integer, ties to even
    let x = if x < -87.3 { -87.3 } else { x };
    let x = if x > 88.7 { 88.7 } else { x };
    let t = x * LOG2E + MAGIC;
    let n_int = t.to_bits() as i32 - MAGIC.to_bits() as i32;
    let n = t - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let y = y * f32::from_bits(((n_int + 127) << 23) as u32);
    if underflow {
        0.0
    } else {
        y
    }
}

/// QuickGELU of one value, `x * sigmoid(alpha * x)` computed as `x / (1 + e^(-alpha x))`:
/// the one definition of the separate pass ([`crate::fused::transformer_ops`]) and of the
/// Linear layers' output stage ([`crate::kernels::f32_gemm::Epilogue::quick_gelu`]), so the two give the
/// same bits (IEEE operations round alike in scalar and vector form, and Rust does not
/// contract them into fused multiply-adds).
#[inline(always)]
pub(crate) fn quick_gelu_value(x: f32, alpha: f32) -> f32 {
    x / (1.0 + exp(-alpha * x))
}

/// QuickGELU of 8 values in a register, by the engine's one definition
/// ([`quick_gelu_value`]): the output stages of both
/// kernels apply it; inlined into their AVX2 code, the loop is vectorised there.
///
/// # Safety
/// The CPU has AVX.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn quick_gelu_8(
    y: std::arch::x86_64::__m256,
    alpha: f32,
) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::{_mm256_loadu_ps, _mm256_storeu_ps};
    let mut v = [0f32; 8];
    // SAFETY: `v` holds 8 values; AVX by the caller's contract.
    unsafe { _mm256_storeu_ps(v.as_mut_ptr(), y) };
    for x in v.iter_mut() {
        *x = quick_gelu_value(*x, alpha);
    }
    // SAFETY: `v` holds 8 values to load; AVX by the caller's contract.
    unsafe { _mm256_loadu_ps(v.as_ptr()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_the_range_softmax_and_sigmoid_use() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 4e-7, "relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-87.4), 0.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(f32::MIN), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
    }
}
