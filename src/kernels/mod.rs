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
