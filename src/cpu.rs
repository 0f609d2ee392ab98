//! What the machine a benchmark runs on can do: benchmarks print it next to their tables.

/// The CPU's model name and the vector/matrix extensions the kernels (the engine's and
/// tract's) may use: on x86-64 from `/proc/cpuinfo`'s flags, on aarch64 from the CPU's own
/// feature registers as the OS reports them (`is_aarch64_feature_detected!`).
pub fn cpu_features() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    #[cfg(target_arch = "aarch64")]
    {
        arm_features(&info)
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        x86_features(&info)
    }
}

/// The first `name : value` field of `/proc/cpuinfo`.
#[cfg(not(target_arch = "aarch64"))]
fn cpuinfo_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

#[cfg(not(target_arch = "aarch64"))]
fn x86_features(info: &str) -> String {
    let flags = cpuinfo_field(info, "flags").unwrap_or_default();
    let wanted = [
        "avx2",
        "fma",
        "avx512f",
        "avx512bw",
        "avx512_vnni",
        "avx_vnni",
        "amx_tile",
        "amx_int8",
        "amx_bf16",
    ];
    let present: Vec<&str> = wanted
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    format!(
        "{} [{}]",
        cpuinfo_field(info, "model name").unwrap_or_default(),
        present.join(" ")
    )
}

/// An Arm core's name from its `CPU part` number (the cores of common robot computers; any
/// other is shown by number).
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
fn arm_core(part: &str) -> String {
    let name = match part {
        "0xd03" => "Cortex-A53",
        "0xd04" => "Cortex-A35",
        "0xd05" => "Cortex-A55",
        "0xd08" => "Cortex-A72 (Raspberry Pi 4)",
        "0xd09" => "Cortex-A73",
        "0xd0a" => "Cortex-A75",
        "0xd0b" => "Cortex-A76 (Raspberry Pi 5, RK3588)",
        "0xd0c" => "Neoverse-N1",
        "0xd40" => "Neoverse-V1",
        "0xd41" => "Cortex-A78",
        "0xd42" => "Cortex-A78AE (Jetson Orin)",
        "0xd49" => "Neoverse-N2",
        "0xd4f" => "Neoverse-V2",
        _ => return format!("Arm CPU part {part}"),
    };
    name.to_string()
}

/// The aarch64 line: the largest core's name (big.LITTLE boards list both kinds; qemu-user
/// shows the host's `/proc/cpuinfo`, which has no `CPU part`) and the features that decide
/// the products' speed: NEON (every ARMv8 core), the int8 dot product (ARMv8.2 `asimddp`),
/// the int8 matrix multiply (`i8mm`), SVE / SVE2, fp16 and bf16 arithmetic.
#[cfg(target_arch = "aarch64")]
fn arm_features(info: &str) -> String {
    use std::arch::is_aarch64_feature_detected as has;
    let part = info
        .lines()
        .filter(|l| l.starts_with("CPU part"))
        .filter_map(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
        .max();
    let core = part.as_deref().map_or_else(
        || "aarch64 (no CPU part in /proc/cpuinfo: emulated?)".to_string(),
        arm_core,
    );
    let features = [
        ("neon", has!("neon")),
        ("asimddp", has!("dotprod")),
        ("i8mm", has!("i8mm")),
        ("sve", has!("sve")),
        ("sve2", has!("sve2")),
        ("fp16", has!("fp16")),
        ("bf16", has!("bf16")),
    ];
    let present: Vec<&str> = features
        .iter()
        .filter(|(_, yes)| *yes)
        .map(|(name, _)| *name)
        .collect();
    format!("{core} [{}]", present.join(" "))
}

/// The matrix products the engine's Linear layers run on this CPU, after the
/// `CLIP_PERCEPTION_INT8_KERNEL` / `CLIP_PERCEPTION_F32_KERNEL` overrides: benchmarks print
/// it beside [`cpu_features`], because the same bundle runs different kernels on different
/// CPUs.
pub fn engine_kernels() -> String {
    use crate::kernels::f32_gemm;
    use crate::kernels::int8_gemm::{Int8Choice, Int8Kernel};
    let int8 = match Int8Choice::from_env() {
        Int8Choice::Tract => "tract's".to_string(),
        Int8Choice::Own(Int8Kernel::Avx2Maddubs) => {
            "own avx2-maddubs (vpmaddubsw for weights within -64..64, else avx2 widening)"
                .to_string()
        }
        Int8Choice::Own(kernel) => format!("own {}", kernel.name()),
    };
    let fp32 = match (f32_gemm::use_own_kernel(), f32_gemm::wide_kernel()) {
        (true, true) => "own avx512f 6x16",
        (true, false) => "own avx2+fma 6x16",
        (false, _) => "tract's",
    };
    // tract's own products (every Linear layer where the engine's kernels do not run, and
    // every other MatMul and convolution) pick their kernels from these instruction sets.
    let isa: Vec<String> = tract_linalg::isa::native()
        .iter()
        .map(|i| i.to_string())
        .collect();
    format!(
        "int8 Linear: {int8}; fp32 Linear: {fp32}; tract's kernels: {}",
        isa.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::int8_gemm::{Int8Choice, KERNEL_ENV};

    #[test]
    fn the_kernels_line_names_the_int8_product_that_runs() {
        let line = engine_kernels();
        let int8 = match Int8Choice::from_env() {
            Int8Choice::Tract => "int8 Linear: tract's".to_string(),
            Int8Choice::Own(kernel) => format!("int8 Linear: own {}", kernel.name()),
        };
        assert!(
            line.starts_with(&int8),
            "{line} (expected {int8}; {KERNEL_ENV})"
        );
        assert!(line.contains("; fp32 Linear: "), "{line}");
        assert!(line.contains("; tract's kernels: "), "{line}");
        #[cfg(target_arch = "aarch64")]
        assert!(line.contains("tract's kernels: aarch64"), "{line}");
        #[cfg(target_arch = "x86_64")]
        assert!(line.contains("tract's kernels: x86_64"), "{line}");
    }

    #[test]
    fn the_cpu_line_names_this_architectures_features() {
        let line = cpu_features();
        #[cfg(target_arch = "aarch64")]
        assert!(line.contains("[neon"), "every ARMv8 core has NEON: {line}");
        #[cfg(target_arch = "x86_64")]
        assert!(
            !std::is_x86_feature_detected!("avx2") || line.contains("avx2"),
            "{line}"
        );
        assert_eq!(arm_core("0xd08"), "Cortex-A72 (Raspberry Pi 4)");
        assert_eq!(arm_core("0xfff"), "Arm CPU part 0xfff");
    }
}
