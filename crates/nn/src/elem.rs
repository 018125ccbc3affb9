//! What the hand-written CPU kernels of this crate share: the element trait [`Real`] (f32 and
//! f64, computed in f64 internally), the contiguous slice of a candle storage, and the test for
//! whether a tensor is recorded for a backward pass. The ops in [`crate::ops`] and
//! [`crate::channel`] both build on this module; it depends on neither.

use candle::{Layout, Tensor};

/// Element types of the CPU kernels (computed in f64 internally).
pub(crate) trait Real:
    Copy + Send + Sync + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self>
{
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

impl Real for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Real for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// The elements of a contiguous `layout` in `v`; an error naming `what` otherwise.
pub(crate) fn contiguous_slice<'a, T>(
    v: &'a [T],
    layout: &Layout,
    what: &str,
) -> candle::Result<&'a [T]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle::Error::Msg(format!("{what}: input must be contiguous")))?;
    Ok(&v[start..end])
}

/// Whether anything about `t` is recorded for a backward pass.
pub(crate) fn tracks(t: &Tensor) -> bool {
    t.track_op()
}
