//! What the kernel benchmarks under `examples/` share.

/// The number after `name` on the command line, else `default`.
///
/// # Panics
/// If the value after `name` is not a number.
pub fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
        })
        .unwrap_or(default)
}
