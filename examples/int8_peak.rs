//! The peak of the AVX2 instruction mixes an exact int8 product can use, on this CPU: eight
//! independent accumulator chains of each mix in registers, no memory traffic, so the figure
//! is what the execution units allow (the bound `int8_gemm_bench`'s kernels are measured
//! against).
//!
//! ```sh
//! cargo run --release --example int8_peak
//! ```
//!
//! - `vpmaddwd + vpaddd`: 16 MACs per `vpmaddwd` (the widening kernel, `avx2`);
//! - `vpmaddubsw + vpmaddwd + vpaddd`: 32 MACs per pair (the `avx2-maddubs` kernel);
//! - `vpsignb + vpmaddubsw + vpmaddwd + vpaddd`: 32 MACs, the sign trick that would make
//!   `vpmaddubsw` exact for 8-bit weights (not used: slower than widening);
//! - fp32 `vfmadd231ps` with 12 chains, as the fp32 kernel's 6 x 16 accumulator block: 8
//!   MACs (16 flops) each, the bound `f32_gemm_bench`'s GFLOP/s are measured against (with
//!   FMA; printed as GMAC/s and GFLOP/s);
//! - the fp32 kernel's K step itself: the same 12 chains fed by two panel loads and six
//!   `vbroadcastss` of packed A per step, from 128 steps of A and panel that stay in L1
//!   (the kernel's instruction mix without its cache misses).

#[cfg(target_arch = "x86_64")]
mod mixes {
    use std::arch::x86_64::*;

    /// Hides `v` from the optimiser, so the loop body is computed every iteration.
    macro_rules! opaque {
        ($($v:ident),*) => {
            $(std::arch::asm!("/* {0} */", inout(ymm_reg) $v, options(nomem, nostack));)*
        };
    }

    fn sum(acc: [__m256i; 8]) -> i32 {
        // SAFETY: only called from the AVX2 functions below.
        unsafe {
            let mut s = acc[0];
            for a in &acc[1..] {
                s = _mm256_add_epi32(s, *a);
            }
            _mm256_extract_epi32::<0>(s)
        }
    }

    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn madd(n: usize) -> i32 {
        let mut x = _mm256_set1_epi16(3);
        let (mut y0, mut y1, mut y2, mut y3) = (
            _mm256_set1_epi16(1),
            _mm256_set1_epi16(2),
            _mm256_set1_epi16(3),
            _mm256_set1_epi16(4),
        );
        let mut acc = [_mm256_setzero_si256(); 8];
        for _ in 0..n {
            // SAFETY: register-only asm.
            unsafe {
                opaque!(x, y0, y1, y2, y3);
            }
            let ys = [y0, y1, y2, y3];
            let x2 = _mm256_add_epi16(x, x);
            for (i, a) in acc.iter_mut().enumerate() {
                let xx = if i < 4 { x } else { x2 };
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(xx, ys[i % 4]));
            }
        }
        sum(acc)
    }

    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn maddubs(n: usize, sign: bool) -> i32 {
        let mut x = _mm256_set1_epi8(3);
        let (mut y0, mut y1, mut y2, mut y3) = (
            _mm256_set1_epi8(1),
            _mm256_set1_epi8(-2),
            _mm256_set1_epi8(3),
            _mm256_set1_epi8(-4),
        );
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_si256(); 8];
        for _ in 0..n {
            // SAFETY: register-only asm.
            unsafe {
                opaque!(x, y0, y1, y2, y3);
            }
            let ys = [y0, y1, y2, y3];
            let x2 = _mm256_add_epi8(x, x);
            let ax = [_mm256_abs_epi8(x), _mm256_abs_epi8(x2)];
            for (i, a) in acc.iter_mut().enumerate() {
                let xx = if i < 4 { x } else { x2 };
                let p = if sign {
                    _mm256_maddubs_epi16(ax[i / 4], _mm256_sign_epi8(ys[i % 4], xx))
                } else {
                    _mm256_maddubs_epi16(xx, ys[i % 4])
                };
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(p, ones));
            }
        }
        sum(acc)
    }

    /// The fp32 kernel's K step, `n` times over 128 steps of packed A (`[k][6]`) and one
    /// panel (`[k][16]`) that stay in L1: two loads, six broadcasts, 12 fused multiply-adds.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn f32_kernel_step(n: usize) -> i32 {
        const STEPS: usize = 128;
        let a = std::hint::black_box(vec![1e-3f32; STEPS * 6]);
        let b = std::hint::black_box(vec![1e-3f32; STEPS * 16]);
        let mut acc = [[_mm256_setzero_ps(); 2]; 6];
        for round in 0..n.div_ceil(STEPS) {
            let (mut ap, mut bp) = (a.as_ptr(), b.as_ptr());
            for _ in 0..STEPS.min(n - round * STEPS) {
                // SAFETY: STEPS steps of 6 and 16 values: inside both buffers.
                unsafe {
                    let b0 = _mm256_loadu_ps(bp);
                    let b1 = _mm256_loadu_ps(bp.add(8));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let av = _mm256_broadcast_ss(&*ap.add(r));
                        acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
                        acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
                    }
                    ap = ap.add(6);
                    bp = bp.add(16);
                }
            }
        }
        let mut s = _mm256_setzero_ps();
        for [lo, hi] in acc {
            s = _mm256_add_ps(s, _mm256_add_ps(lo, hi));
        }
        _mm256_cvtss_f32(s) as i32
    }

    /// 12 chains of fp32 fused multiply-adds (the fp32 kernel's accumulator block).
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_f32(n: usize) -> i32 {
        let (mut x, mut y) = (_mm256_set1_ps(1.000_000_1), _mm256_set1_ps(0.999_999));
        let mut acc = [_mm256_setzero_ps(); 12];
        for _ in 0..n {
            // SAFETY: register-only asm.
            unsafe {
                opaque!(x, y);
            }
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(x, y, *a);
            }
        }
        let mut s = acc[0];
        for a in &acc[1..] {
            s = _mm256_add_ps(s, *a);
        }
        _mm256_cvtss_f32(s) as i32
    }
}

#[cfg(target_arch = "x86_64")]
fn main() {
    use std::time::Instant;
    if !std::is_x86_feature_detected!("avx2") {
        println!("this CPU has no AVX2");
        return;
    }
    println!("cpu: {}", clip_perception::cpu::cpu_features());
    let n = 20_000_000;
    let run = |name: &str, macs: usize, f: &dyn Fn() -> i32| {
        let mut best = f64::MAX;
        let mut check = 0;
        for _ in 0..3 {
            let t = Instant::now();
            check = f();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{name:<42} {:6.1} GMAC/s  (check {check})",
            (n * 8 * macs) as f64 / best / 1e9
        );
    };
    // SAFETY (all three): AVX2 checked above.
    run("vpmaddwd + vpaddd", 16, &|| unsafe { mixes::madd(n) });
    run("vpmaddubsw + vpmaddwd + vpaddd", 32, &|| unsafe {
        mixes::maddubs(n, false)
    });
    run("vpsignb + vpmaddubsw + vpmaddwd + vpaddd", 32, &|| unsafe {
        mixes::maddubs(n, true)
    });
    if std::is_x86_feature_detected!("fma") {
        // 12 chains of 8 MACs: 96 an iteration, `run` counts 8 x 12.
        // SAFETY: AVX2 and FMA checked.
        run("fp32 vfmadd231ps (x2 = GFLOP/s)", 12, &|| unsafe {
            mixes::fma_f32(n)
        });
        // SAFETY: AVX2 and FMA checked.
        run("fp32 kernel K step, L1 (x2 = GFLOP/s)", 12, &|| unsafe {
            mixes::f32_kernel_step(n)
        });
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("int8_peak measures x86-64 AVX2 instruction mixes only");
}
