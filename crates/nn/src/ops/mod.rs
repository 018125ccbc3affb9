//! Numerics that must equal PyTorch's and run fast on the CPU, one module per concern (all items
//! are re-exported here, so `pvt_nn::ops::X` is the path to use):
//!
//! - `gelu`: the exact-erf GELU ([`gelu_erf`], [`GeluErfModule`], [`erf_f32_fast`]) with its fused
//!   backward.
//! - `layer_norm`: [`LayerNorm`] over the last dimension, candle-nn's kernel for inference and one
//!   with a backward pass for training.
//! - `softmax`: [`softmax_last_dim`], likewise.
//! - `upsample`: [`upsample_nearest2d`], nearest upsampling whose backward pass accumulates.
//! - `interp`: bilinear `align_corners=False` matrices ([`linear_interp_matrix`]) and
//!   [`resize_token_table`].
//! - `patch_conv`: [`PatchConv`], a patch convolution written as a matmul.
//!
//! The element trait and slice helper the CPU kernels share live in `crate::elem`.

mod gelu;
#[cfg(test)]
pub(crate) mod grad_check;
mod interp;
mod layer_norm;
mod patch_conv;
mod softmax;
mod upsample;

pub use gelu::{erf_f32_fast, gelu_erf, GeluErfModule};
pub use interp::{linear_interp_matrix, resize_token_table};
pub use layer_norm::LayerNorm;
pub use patch_conv::PatchConv;
pub use softmax::softmax_last_dim;
pub use upsample::upsample_nearest2d;
