//! Which of the engine's micro-kernels the kernel tests ran on this CPU and which they
//! could not (CI prints this after the tests, so a green run says what it proved):
//! `cargo run --example kernel_coverage`.

use clip_perception::cpu::{cpu_features, engine_kernels};
use clip_perception::kernels::{coverage, Coverage};

fn main() {
    let (mut native, mut emulated, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for (kernel, how) in coverage() {
        match how {
            Coverage::Native => native.push(kernel),
            Coverage::Emulated => emulated.push(kernel),
            Coverage::Skipped(needs) => skipped.push(format!("{kernel} (needs {needs})")),
        }
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    println!("cpu: {}", cpu_features());
    println!("kernels: {}", engine_kernels());
    println!(
        "kernel tests ran natively: {}; emulated: {}; skipped: {}",
        list(&native),
        list(&emulated),
        list(&skipped)
    );
}
