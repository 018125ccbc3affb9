//! Bilinear resizing with PyTorch's `align_corners=False` rule: the 1-D interpolation matrices
//! ([`linear_interp_matrix`]) and the resize of a token-major table ([`resize_token_table`], PVT's
//! position embeddings) written as two matmuls.

use anyhow::{ensure, Result};
use candle::Tensor;

/// The `[out, in]` matrix of 1-D linear interpolation weights that PyTorch's
/// `F.interpolate(mode="bilinear", align_corners=False, size=...)` applies along one axis
/// (no antialias): source coordinate `(dst + 0.5)·in/out − 0.5`, clamped below at 0, upper
/// neighbour clamped to `in − 1`. Weights are computed in f32 as PyTorch does for f32 input.
pub fn linear_interp_matrix(in_len: usize, out_len: usize) -> Vec<f32> {
    let mut m = vec![0f32; out_len * in_len];
    let scale = in_len as f32 / out_len as f32;
    for d in 0..out_len {
        let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(in_len - 1);
        let i1 = if i0 + 1 < in_len { i0 + 1 } else { i0 };
        let l1 = (src - i0 as f32).clamp(0.0, 1.0);
        let l0 = 1.0 - l1;
        m[d * in_len + i0] += l0;
        m[d * in_len + i1] += l1;
    }
    m
}

/// Resizes a token-major table `[h·w, C]` laid out row by row (token `y·w + x`) to
/// `[out_h·out_w, C]` with PyTorch's bilinear `align_corners=False` rule. Written as two
/// matmuls, so it is differentiable and runs on any device.
pub fn resize_token_table(
    table: &Tensor,
    (h, w): (usize, usize),
    (out_h, out_w): (usize, usize),
) -> Result<Tensor> {
    let (n, c) = table.dims2()?;
    ensure!(n == h * w, "token table has {n} rows, expected {h}x{w}");
    if (h, w) == (out_h, out_w) {
        return Ok(table.clone());
    }
    let dev = table.device();
    let ry = Tensor::from_vec(linear_interp_matrix(h, out_h), (out_h, h), dev)?;
    let rx = Tensor::from_vec(linear_interp_matrix(w, out_w), (out_w, w), dev)?;
    // rows: [out_h, h] @ [h, w·C] -> [out_h, w, C]
    let t = ry
        .matmul(&table.reshape((h, w * c))?)?
        .reshape((out_h, w, c))?;
    // columns: [out_h, out_w, w] @ [out_h, w, C] -> [out_h, out_w, C]
    let t = rx
        .unsqueeze(0)?
        .broadcast_as((out_h, out_w, w))?
        .contiguous()?
        .matmul(&t)?;
    Ok(t.reshape((out_h * out_w, c))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    #[test]
    fn interp_matrix_hand_computed() {
        // upsample 2 -> 4: sources -0.25 (clamped 0), 0.25, 0.75, 1.25 (upper clamped)
        let m = linear_interp_matrix(2, 4);
        assert_eq!(m, vec![1.0, 0.0, 0.75, 0.25, 0.25, 0.75, 0.0, 1.0]);
        // downsample 4 -> 2: sources 0.5 and 2.5
        let m = linear_interp_matrix(4, 2);
        assert_eq!(m, vec![0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5]);
        // identity
        assert_eq!(
            linear_interp_matrix(3, 3),
            vec![1., 0., 0., 0., 1., 0., 0., 0., 1.]
        );
    }

    #[test]
    fn resize_table_matches_separable_formula() -> anyhow::Result<()> {
        let (h, w, c) = (3, 4, 2);
        let vals: Vec<f32> = (0..h * w * c).map(|v| (v as f32 * 0.37).sin()).collect();
        let t = Tensor::from_vec(vals.clone(), (h * w, c), &Device::Cpu)?;
        let (oh, ow) = (5, 2);
        let r = resize_token_table(&t, (h, w), (oh, ow))?.to_vec2::<f32>()?;
        let my = linear_interp_matrix(h, oh);
        let mx = linear_interp_matrix(w, ow);
        for y in 0..oh {
            for x in 0..ow {
                for ch in 0..c {
                    let mut s = 0f32;
                    for sy in 0..h {
                        for sx in 0..w {
                            s += my[y * h + sy] * mx[x * w + sx] * vals[(sy * w + sx) * c + ch];
                        }
                    }
                    assert!((s - r[y * ow + x][ch]).abs() < 1e-6);
                }
            }
        }
        Ok(())
    }
}
