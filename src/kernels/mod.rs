//! The engine's own compute kernels, for products tract runs slowly on some CPUs:
//! [`int8_gemm`] is the int8 x int8 -> int32 matrix product of the int8 image encoder's
//! Linear layers, [`f32_gemm`] the fp32 product of the fp32 encoders' Linear layers (weights
//! packed once at load, micro-kernels chosen at run time).
//!
//! Each product is split by concern: the choice of micro-kernel and its self-check
//! (`choice`), the packing of the operands (`pack`), the x86-64 code (`x86`: the block loop
//! compiled per instruction set and the micro-kernels; the int8 product's portable block
//! loop and micro-kernel are in `block`), and a `mod.rs` with the entry point `gemm`;
//! what both share (the output stage [`Epilogue`] and its checks, the cut into blocks, the
//! one threaded driver and the output pointer its tasks write through) is in `driver`, and
//! the activation functions the output stages and the fused ops share in `activation`.

pub(crate) mod activation;
mod driver;
pub mod f32_gemm;
pub mod int8_gemm;

pub use driver::Epilogue;

/// How the kernel tests cover one micro-kernel on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Run on the CPU's own instructions.
    Native,
    /// Run with its instruction emulated (layout and block loop tested, not the instruction).
    Emulated,
    /// Not run: the CPU lacks what it needs (named).
    Skipped(&'static str),
}

/// Every micro-kernel of both products with how this CPU's kernel tests cover it, for the
/// summary line CI prints (`examples/kernel_coverage.rs`): which kernels the tests really
/// ran on the runner and which they could not.
pub fn coverage() -> Vec<(String, Coverage)> {
    use int8_gemm::Int8Kernel;
    let tested = Int8Kernel::tested_on_this_cpu();
    let mut out = Vec::new();
    for kernel in Int8Kernel::ALL {
        let runs = |emulated: bool| tested.contains(&(kernel, emulated));
        let coverage = match (runs(false), runs(true)) {
            (true, _) => Coverage::Native,
            (false, true) => Coverage::Emulated,
            (false, false) if kernel == Int8Kernel::Amx => {
                Coverage::Skipped("x86-64 (to emulate) or amx-int8 granted by Linux")
            }
            (false, false) if kernel.name().starts_with("avx512") => {
                Coverage::Skipped("avx2 (to emulate) or avx512f+vl+vnni")
            }
            (false, false) => Coverage::Skipped("avx2"),
        };
        out.push((format!("int8 {}", kernel.name()), coverage));
    }
    let avx2 = f32_gemm::PackedF32::is_available();
    out.push((
        "fp32 avx2+fma 6x16".to_string(),
        if avx2 {
            Coverage::Native
        } else {
            Coverage::Skipped("avx2+fma")
        },
    ));
    out.push((
        "fp32 avx512f 6x16".to_string(),
        if f32_gemm::wide_available() {
            Coverage::Native
        } else {
            Coverage::Skipped("avx512f")
        },
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_names_every_kernel_once_as_the_tests_run_it() {
        let all = coverage();
        assert_eq!(all.len(), int8_gemm::Int8Kernel::ALL.len() + 2);
        let mut names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert_eq!(all[0], ("int8 scalar".to_string(), Coverage::Native));
        for (kernel, emulated) in int8_gemm::Int8Kernel::tested_on_this_cpu() {
            let name = format!("int8 {}", kernel.name());
            let (_, how) = all.iter().find(|(n, _)| *n == name).unwrap();
            assert!(
                *how == Coverage::Native || (emulated && *how == Coverage::Emulated),
                "{name}: {how:?}"
            );
        }
    }
}
