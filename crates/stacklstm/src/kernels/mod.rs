//! Numerical kernels: the matmul seam, fast activations and the fused gate pass.
//! The only place in the library allowed to use `unsafe` (for CPU-feature dispatch).

pub mod gates;
pub mod math;
pub mod matmul;
