//! What the machine a benchmark runs on can do: benchmarks print it next to their tables.

/// The CPU's model name and the vector/matrix extensions tract's kernels may use.
pub fn cpu_features() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let flags = field("flags");
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
    format!("{} [{}]", field("model name"), present.join(" "))
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
    format!("int8 Linear: {int8}; fp32 Linear: {fp32}")
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
    }
}
