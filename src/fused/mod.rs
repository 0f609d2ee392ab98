//! The engine's own fused operators, swapped into the ONNX graphs before tract parses them:
//! [`rewrite`] finds node chains in the ONNX protobuf, [`int8`] replaces the int8 encoder's
//! quantize/dequantize chains, [`transformer_ops`] the attention softmax and QuickGELU, and
//! [`simd`] dispatches their kernels to AVX-512/AVX2 at run time. Each fused op computes
//! what the chain it replaces computes (tests compare them).

#[macro_use]
mod simd;
pub mod int8;
mod rewrite;
pub mod transformer_ops;
