//! The detectors' losses: sigmoid focal loss, L1 and smooth L1, kept in [`pvt_nn::loss`].
pub use pvt_nn::loss::*;
