//! [`PatchConv`]: a non-overlapping patch convolution (kernel = stride, no padding) computed as
//! patchify + matmul on channels-last tokens (PVT's patch embeddings and spatial reductions).

use candle::Tensor;

/// A `Conv2d` whose kernel equals its stride and has no padding (PVT's patch embeddings and
/// spatial-reduction convs), computed as patchify + matmul on channels-last tokens.
#[derive(Debug, Clone)]
pub struct PatchConv {
    /// `[C_out, P·P·C_in]`, inner order `(ky, kx, c_in)` to match channels-last patches.
    weight: Tensor,
    /// `[C_out, C_in, P, P]` as loaded: when it is a training variable the layout above is
    /// derived from it at every call (a copy made once would keep the values it was made from).
    raw: Tensor,
    /// `[C_out]`.
    bias: Tensor,
    patch: usize,
    in_channels: usize,
}

impl PatchConv {
    /// Loads `weight` `[C_out, C_in, P, P]` and `bias` `[C_out]` (PyTorch layout) from `vb`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        patch: usize,
        vb: candle_nn::VarBuilder,
    ) -> candle::Result<Self> {
        let w = vb.get((out_channels, in_channels, patch, patch), "weight")?;
        let bias = vb.get(out_channels, "bias")?;
        let weight = Self::channels_last(&w)?;
        Ok(Self {
            weight,
            raw: w,
            bias,
            patch,
            in_channels,
        })
    }

    fn channels_last(w: &Tensor) -> candle::Result<Tensor> {
        let (o, c, p, _) = w.dims4()?;
        w.permute((0, 2, 3, 1))?.reshape((o, p * p * c))
    }

    /// The patch size (kernel and stride).
    pub fn patch(&self) -> usize {
        self.patch
    }

    /// `x`: channels-last `[B, H, W, C_in]`. Returns tokens `[B, (H/P)·(W/P), C_out]` and the
    /// output grid `(H/P, W/P)` (floor, as PyTorch's convolution drops the remainder).
    pub fn forward_nhwc(&self, x: &Tensor) -> candle::Result<(Tensor, (usize, usize))> {
        let (b, h, w, c) = x.dims4()?;
        if c != self.in_channels {
            candle::bail!(
                "patch conv expects {} input channels, got {c}",
                self.in_channels
            )
        }
        let p = self.patch;
        let (oh, ow) = (h / p, w / p);
        if oh == 0 || ow == 0 {
            candle::bail!("input {h}x{w} is smaller than the {p}x{p} patch")
        }
        let x = if oh * p != h || ow * p != w {
            x.narrow(1, 0, oh * p)?.narrow(2, 0, ow * p)?.contiguous()?
        } else {
            x.clone()
        };
        let patches = x
            .reshape((b, oh, p, ow, p, c))?
            .permute((0, 1, 3, 2, 4, 5))?
            .contiguous()?
            .reshape((b, oh * ow, p * p * c))?;
        let y = if self.raw.is_variable() {
            // training: one 2-D matmul (no broadcast weight, whose gradient candle would sum
            // with its slow strided reduction)
            let weight = Self::channels_last(&self.raw)?;
            patches
                .reshape((b * oh * ow, p * p * c))?
                .matmul(&weight.t()?)?
                .reshape((b, oh * ow, ()))?
        } else {
            patches.broadcast_matmul(&self.weight.t()?)?
        };
        let y = crate::channel::add_bias(&y, &self.bias, 2)?;
        Ok((y, (oh, ow)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    #[test]
    fn patch_conv_equals_conv2d() -> candle::Result<()> {
        let dev = Device::Cpu;
        let (cin, cout, p) = (3, 5, 2);
        let w = Tensor::randn(0f32, 1., (cout, cin, p, p), &dev)?;
        let b = Tensor::randn(0f32, 1., cout, &dev)?;
        let vb = candle_nn::VarBuilder::from_tensors(
            [
                ("weight".to_string(), w.clone()),
                ("bias".to_string(), b.clone()),
            ]
            .into(),
            candle::DType::F32,
            &dev,
        );
        let pc = PatchConv::new(cin, cout, p, vb)?;
        let x = Tensor::randn(0f32, 1., (2, cin, 7, 6), &dev)?; // 7 rows: remainder dropped
        let want = x
            .conv2d(&w, 0, p, 1, 1)?
            .broadcast_add(&b.reshape((1, cout, 1, 1))?)?;
        let (got, (oh, ow)) = pc.forward_nhwc(&x.permute((0, 2, 3, 1))?.contiguous()?)?;
        assert_eq!((oh, ow), (3, 3));
        let got = got.reshape((2, oh, ow, cout))?.permute((0, 3, 1, 2))?;
        let diff = (got - want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        Ok(())
    }
}
