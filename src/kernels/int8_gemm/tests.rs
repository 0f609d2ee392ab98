//! The int8 product against a naive one: every kernel (the VNNI ones emulated where the
//! CPU lacks the instruction), shapes with tails, thread pools, the output stage's fp32
//! arithmetic bit for bit, the kernel choice and self-check.

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
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        assert!(Int8Kernel::available().contains(&Int8Kernel::Avx2));
    }
    let two = pool(2);
    let mut checked = 0;
    for kernel in Int8Kernel::tested_on_this_cpu() {
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
    for kernel in Int8Kernel::tested_on_this_cpu() {
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
    for kernel in Int8Kernel::tested_on_this_cpu() {
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
            Int8Kernel::tested_on_this_cpu()
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
                epilogue: Epilogue {
                    bias: with_bias.then_some(&bias[..]),
                    quick_gelu: with_gelu.then_some(1.702),
                    residual: with_residual.then_some(&residual[..]),
                },
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
        std::mem::transmute(x86::dpbusd_emulated(
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
