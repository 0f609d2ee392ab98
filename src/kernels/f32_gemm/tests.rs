//! The fp32 product against an f64 reference over odd shapes and thread counts, its output
//! stage bit for bit, A's packing, and the 512-bit kernel against the 256-bit one.

use super::choice::{values, wide_equals_narrow};
use super::*;

/// f64 reference.
fn naive(a: &[f32], w: &[f32], epilogue: Epilogue, m: usize, k: usize, n: usize) -> Vec<f64> {
    (0..m * n)
        .map(|ij| {
            let (i, j) = (ij / n, ij % n);
            (0..k)
                .map(|kk| a[i * k + kk] as f64 * w[kk * n + j] as f64)
                .sum::<f64>()
                + epilogue.bias.map_or(0.0, |b| b[j] as f64)
                + epilogue.residual.map_or(0.0, |r| r[ij] as f64)
        })
        .collect()
}

#[test]
fn equals_an_f64_reference_over_odd_shapes_on_one_and_two_threads() {
    if !PackedF32::is_available() {
        eprintln!("no AVX2 + FMA on this CPU: the fp32 kernel is not used here");
        return;
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut shapes = vec![
        (50, 768, 2304),
        (77, 512, 2048),
        (8, 2048, 512),
        (1, 768, 512),
    ];
    for m in [1, 2, 5, 6, 7, 13] {
        for k in [1, 3, 16, 37] {
            for n in [1, 7, 15, 16, 17, 33, 40] {
                shapes.push((m, k, n));
            }
        }
    }
    for (m, k, n) in shapes {
        let a = values(m * k, 1);
        let w = values(k * n, 2);
        let bias = values(n, 3);
        let residual = values(m * n, 4);
        let packed = PackedF32::pack(&w, k, n);
        for (with_bias, with_residual) in
            [(false, false), (true, false), (true, true), (false, true)]
        {
            let epilogue = Epilogue {
                bias: with_bias.then_some(&bias[..]),
                residual: with_residual.then_some(&residual[..]),
                quick_gelu: None,
            };
            let want = naive(&a, &w, epilogue, m, k, n);
            let mut one = vec![f32::NAN; m * n];
            gemm(&a, m, &packed, epilogue, &mut one, None);
            let mut two = vec![f32::NAN; m * n];
            gemm(&a, m, &packed, epilogue, &mut two, Some(&pool));
            assert_eq!(one, two, "{m}x{k}x{n}: thread count changed the result");
            // A read where it is: the same sums in the same order, bit for bit.
            for pool in [None, Some(&pool)] {
                let mut unpacked = vec![f32::NAN; m * n];
                gemm_with_a_packing(&a, m, &packed, epilogue, &mut unpacked, pool, false);
                assert_eq!(one, unpacked, "{m}x{k}x{n}: A unpacked");
            }
            // The product with its bias alone, for the output stage's other steps.
            let mut alone = vec![f32::NAN; m * n];
            gemm(
                &a,
                m,
                &packed,
                Epilogue::bias(epilogue.bias),
                &mut alone,
                None,
            );
            if with_residual {
                // The residual is the graph's next Add: exactly the product (with its
                // bias) plus the residual, rounded once.
                let added: Vec<f32> = alone.iter().zip(&residual).map(|(y, r)| r + y).collect();
                assert_eq!(one, added, "{m}x{k}x{n}: residual not the graph's Add");
            }
            // QuickGELU in the output stage: the separate pass's function on the biased
            // product, before the residual, bit for bit (any thread count).
            let gelu = Epilogue {
                quick_gelu: Some(1.702),
                ..epilogue
            };
            let want_gelu: Vec<f32> = alone
                .iter()
                .enumerate()
                .map(|(ij, &y)| {
                    let y = crate::kernels::activation::quick_gelu_value(y, 1.702);
                    epilogue.residual.map_or(y, |r| r[ij] + y)
                })
                .collect();
            for pool in [None, Some(&pool)] {
                let mut got = vec![f32::NAN; m * n];
                gemm(&a, m, &packed, gelu, &mut got, pool);
                assert_eq!(got, want_gelu, "{m}x{k}x{n}: QuickGELU in the output stage");
            }
            // f32 sums of k products of values up to 2: k * 4 * 2^-24 of absolute error
            // at worst (fused multiply-adds round once per step).
            let tol = 1e-6 + k as f64 * 4.0 * f32::EPSILON as f64;
            for (ij, (&g, &w)) in one.iter().zip(&want).enumerate() {
                assert!(
                    (g as f64 - w).abs() <= tol,
                    "{m}x{k}x{n} bias {with_bias} residual {with_residual} at {ij}: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn a_is_packed_in_blocks_of_six_rows_k_step_by_k_step() {
    // 7 rows of 3: one full block and one of a single row (five zero rows).
    let a: Vec<f32> = (0..21).map(|v| v as f32).collect();
    let packed = pack_a(&a, 7, 3);
    let mut want = vec![0f32; 2 * 3 * MR];
    for i in 0..7 {
        for kk in 0..3 {
            want[i / MR * 3 * MR + kk * MR + i % MR] = a[i * 3 + kk];
        }
    }
    assert_eq!(packed, want);
    assert_eq!(&packed[..MR], &[0.0, 3.0, 6.0, 9.0, 12.0, 15.0]);
    assert_eq!(&packed[3 * MR..4 * MR], &[18.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert!(pack_a(&[], 4, 0).is_empty());
}

#[test]
fn empty_products_write_nothing() {
    if !PackedF32::is_available() {
        return;
    }
    let packed = PackedF32::pack(&[], 0, 3);
    let mut out = vec![0f32; 6];
    gemm(
        &[],
        2,
        &packed,
        Epilogue::bias(Some(&[1.0, 2.0, 3.0])),
        &mut out,
        None,
    );
    assert_eq!(out, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0], "k = 0: the bias alone");
    let packed = PackedF32::pack(&[], 4, 0);
    gemm(&[0.0; 8], 2, &packed, Epilogue::default(), &mut [], None);
}

/// The 512-bit kernel's products equal the 256-bit kernel's bit for bit over odd shapes,
/// packed and unpacked A, every output stage, 1 and 2 threads. It runs only on CPUs with
/// AVX-512F; elsewhere the kernel is never chosen, which is checked instead.
#[test]
fn the_512_bit_kernel_equals_the_256_bit_kernel_bit_for_bit() {
    if !wide_available() {
        assert!(!wide_kernel(), "the 512-bit kernel chosen without AVX-512F");
        eprintln!("no AVX-512F on this CPU: the 512-bit fp32 kernel is not run here");
        return;
    }
    assert!(wide_equals_narrow(), "the self-check's shapes differ");
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for (m, k, n) in [
        (1, 1, 1),
        (5, 3, 15),
        (6, 64, 16),
        (7, 65, 17),
        (50, 768, 2304),
    ] {
        let (a, w) = (values(m * k, 5), values(k * n, 6));
        let (bias, residual) = (values(n, 7), values(m * n, 8));
        let b = PackedF32::pack(&w, k, n);
        let stages = [
            Epilogue::default(),
            Epilogue::bias(Some(&bias)),
            Epilogue {
                bias: Some(&bias),
                quick_gelu: Some(1.702),
                residual: Some(&residual),
            },
        ];
        for epilogue in stages {
            for pool in [None, Some(&two)] {
                for packed_a in [true, false] {
                    let product = |wide| {
                        let mut out = vec![0f32; m * n];
                        gemm_on(&a, m, &b, epilogue, &mut out, pool, packed_a, wide);
                        out.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                    };
                    assert_eq!(product(true), product(false), "{m} x {k} x {n}");
                }
            }
        }
    }
}
