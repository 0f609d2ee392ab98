//! The engine's own compute kernels, for products tract runs slowly on some CPUs:
//! [`int8_gemm`] is the int8 x int8 -> int32 matrix product of the int8 image encoder's
//! Linear layers (weights packed once at load, micro-kernels chosen at run time).

pub mod int8_gemm;
