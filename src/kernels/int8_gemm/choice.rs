//! Which int8 product runs: the micro-kernels ([`Int8Kernel`]), which of them this CPU can
//! run and whether each agrees with the portable kernel here ([`Int8Kernel::self_check`]),
//! and the choice between them and tract's product ([`Int8Choice`], from the CPU or
//! [`KERNEL_ENV`]).

use super::{gemm, Output, PackedB, KERNEL_ENV};

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
    /// the products per cycle). The default where AVX-512 VNNI passes its self-check and
    /// AMX does not run.
    Avx512VnniZmm,
    /// x86-64 AMX (`tdpbssd` on tiles, Linux): signed activations in plain rows padded to
    /// 32 rows and K to a multiple of 64, the weight in the quad panels of the VNNI kernels
    /// (one 16 x 64-byte B tile per 16 quads, K padded with zeros); 32 x 32 output blocks in
    /// four accumulator tiles (`amx`). The default where the CPU and the kernel grant AMX
    /// and it passes its self-check.
    Amx,
}

impl Int8Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Int8Kernel::Scalar => "scalar",
            Int8Kernel::Avx2 => "avx2",
            Int8Kernel::Avx2Maddubs => "avx2-maddubs",
            Int8Kernel::Avx512Vnni => "avx512-vnni",
            Int8Kernel::Avx512VnniZmm => "avx512-vnni-zmm",
            Int8Kernel::Amx => "amx",
        }
    }

    /// K values per step of a packed panel column: pairs, or quads.
    pub(super) fn step_values(self) -> usize {
        if self.quads() || self == Int8Kernel::Amx {
            4
        } else {
            2
        }
    }

    /// Whether the kernel reads A and B in quads (four K values per 32-bit lane, the
    /// activations offset to unsigned bytes).
    pub(super) fn quads(self) -> bool {
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
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Amx => super::amx::available(),
            #[cfg(not(target_arch = "x86_64"))]
            Int8Kernel::Avx2
            | Int8Kernel::Avx2Maddubs
            | Int8Kernel::Avx512Vnni
            | Int8Kernel::Avx512VnniZmm
            | Int8Kernel::Amx => false,
        }
    }

    /// Every kernel this CPU can run, fastest last.
    pub fn available() -> Vec<Int8Kernel> {
        Int8Kernel::ALL
            .into_iter()
            .filter(|k| k.is_available())
            .collect()
    }

    /// The kernels the int8 tests run on this CPU (`true`: emulated): every available one,
    /// the two VNNI kernels with `vpdpbusd` emulated in AVX2 wherever the CPU has AVX2
    /// (on a CPU without AVX-512 VNNI that tests their layout and block loop, not their
    /// instruction), and on every x86-64 CPU the AMX kernel with its tile product
    /// emulated in portable code.
    pub fn tested_on_this_cpu() -> Vec<(Int8Kernel, bool)> {
        let mut kernels: Vec<_> = Int8Kernel::available()
            .into_iter()
            .map(|k| (k, false))
            .collect();
        if Int8Kernel::Avx2.is_available() {
            // Also where the CPU has VNNI: the emulation is what CPUs without it test.
            kernels.push((Int8Kernel::Avx512Vnni, true));
            kernels.push((Int8Kernel::Avx512VnniZmm, true));
        }
        #[cfg(target_arch = "x86_64")]
        kernels.push((Int8Kernel::Amx, true));
        kernels
    }

    /// Every kernel of this module, slowest first.
    pub const ALL: [Int8Kernel; 6] = [
        Int8Kernel::Scalar,
        Int8Kernel::Avx2,
        Int8Kernel::Avx2Maddubs,
        Int8Kernel::Avx512Vnni,
        Int8Kernel::Avx512VnniZmm,
        Int8Kernel::Amx,
    ];

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
        [
            (1, 1, 1),
            (7, 37, 33),
            (13, 301, 17),
            (50, 96, 64),
            (70, 200, 40),
        ]
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
    /// - CPUs with AMX-INT8 whose kernel grants the tiles (Linux): [`Int8Kernel::Amx`], once
    ///   it has passed [`Int8Kernel::self_check`] in this process (else as below).
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
            if Int8Kernel::Amx.is_available() && Int8Kernel::Amx.self_check() {
                return Int8Choice::Own(Int8Kernel::Amx);
            }
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
            Some("amx") => Int8Kernel::Amx,
            Some(other) => {
                return Err(format!(
                    "unknown value `{other}` (expected scalar, avx2, avx2-maddubs, \
                     avx512-vnni, avx512-vnni-zmm, amx, tract or auto)"
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
