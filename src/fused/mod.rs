//! The engine's own fused operators, swapped into the ONNX graphs before tract parses them:
//! [`rewrite`] finds node chains in the ONNX protobuf, [`int8`] replaces the int8 encoder's
//! quantize/dequantize chains, [`attention`] each layer's attention, [`transformer_ops`]
//! the remaining softmax nodes and QuickGELU, and
//! [`simd`] dispatches their kernels to AVX-512/AVX2 at run time and [`parallel`] spreads
//! them over the engine's thread pool. Each fused op computes
//! what the chain it replaces computes (tests compare them).

#[macro_use]
mod simd;
pub mod attention;
pub mod int8;
mod parallel;
mod rewrite;
pub mod transformer_ops;
