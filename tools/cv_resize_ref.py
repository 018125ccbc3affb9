"""Pure-numpy re-implementation of OpenCV's `cv2.resize(src_uint8, (W, H), interpolation=INTER_LINEAR)`.

This is the kernel mmcv's `imresize`/`imrescale` (backend 'cv2', 'bilinear') runs in the mmdet test pipeline.
It is written from OpenCV's modules/imgproc/src/resize.cpp (`cv::hal::resize` -> `resizeGeneric_` with
`HResizeLinear<uchar, int, short, INTER_RESIZE_COEF_SCALE>` and the `VResizeLinear<uchar, int, short,
FixedPtCast<int, uchar, 22>, VResizeLinearVec_32s8u>` specialisation) and is checked bit for bit against
the installed cv2 by tools/make_resize_fixtures.py. It is the specification the Rust kernel follows.

Algorithm (uint8, INTER_LINEAR, any channel count, dst size != src size):

* inv_scale_x = dst_w / src_w (float64), scale_x = 1.0 / inv_scale_x (float64; NOT src_w / dst_w, which can
  differ in the last bit); same for y.
* Special case: if scale_x and scale_y are both exactly the integer 2 (|scale - 2| < DBL_EPSILON), OpenCV
  switches to INTER_AREA's fast 2x2 box average: dst = (a + b + c + d + 2) >> 2 (only exact halving).
* Per destination column dx (per row dy likewise, with the y quantities):
      f  = float32((dx + 0.5) * scale_x - 0.5)    # computed in float64, rounded once to float32
      sx = floor(f);  f = f - sx                   # float32 subtraction
  x only: if sx < 0: f = 0, sx = 0;  if sx >= src_w - 1: f = 0, sx = src_w - 1   (y is NOT clamped this way)
      a0 = rint((1.0f - f) * 2048), a1 = rint(f * 2048)  # float32 products, round half to even, int16
* Horizontal pass (int32), per source row r and destination column dx:
      H[r, dx] = S[r, sx] * a0 + S[r, sx + 1] * a1    if sx + 1 < src_w (before the clamp above), else
      H[r, dx] = S[r, sx] * 2048
* Vertical pass: rows r0 = clip(sy, 0, src_h - 1), r1 = clip(sy + 1, 0, src_h - 1) with the UNclamped sy and
  its weights b0, b1 (so at the top edge sy = -1 reads row 0 twice with weights summing to 2048):
      dst = ((((b0 * (H[r0] >> 4)) >> 16) + ((b1 * (H[r1] >> 4)) >> 16) + 2) >> 2)   (arithmetic shifts)
  i.e. NOT the exact round((b0*H0 + b1*H1) / 2^22): the intermediate >> 4 and the two separate >> 16 truncate.
"""

import numpy as np

INTER_RESIZE_COEF_BITS = 11
INTER_RESIZE_COEF_SCALE = 1 << INTER_RESIZE_COEF_BITS
DBL_EPSILON = np.finfo(np.float64).eps


def _coeffs(src_len, dst_len, clamp):
    inv_scale = dst_len / src_len
    scale = 1.0 / inv_scale
    d = np.arange(dst_len, dtype=np.float64)
    f = ((d + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = (f - s.astype(np.float32)).astype(np.float32)
    has_right = (s + 1) < src_len  # x: dx < xmax
    if clamp:
        left = s < 0
        f[left] = 0
        s[left] = 0
        right = s >= src_len - 1
        f[right] = 0
        s[right] = src_len - 1
    one = np.float32(1.0)
    scale_f = np.float32(INTER_RESIZE_COEF_SCALE)
    a0 = np.rint((one - f) * scale_f).astype(np.int64)  # float32 product, rint = round half to even
    a1 = np.rint(f * scale_f).astype(np.int64)
    return s, a0, a1, has_right


def resize_linear_u8(src, dst_w, dst_h):
    """src: uint8 array HxW or HxWxC. Returns uint8 array dst_h x dst_w (x C)."""
    assert src.dtype == np.uint8
    squeeze = src.ndim == 2
    if squeeze:
        src = src[:, :, None]
    sh, sw, cn = src.shape
    if (sw, sh) == (dst_w, dst_h):
        out = src.copy()
        return out[:, :, 0] if squeeze else out
    scale_x = 1.0 / (dst_w / sw)
    scale_y = 1.0 / (dst_h / sh)
    if abs(scale_x - 2) < DBL_EPSILON and abs(scale_y - 2) < DBL_EPSILON:
        s = src.astype(np.int64)
        out = (s[0:2 * dst_h:2, 0:2 * dst_w:2] + s[0:2 * dst_h:2, 1:2 * dst_w:2] +
               s[1:2 * dst_h:2, 0:2 * dst_w:2] + s[1:2 * dst_h:2, 1:2 * dst_w:2] + 2) >> 2
        out = out.astype(np.uint8)
        return out[:, :, 0] if squeeze else out

    sx, a0, a1, has_right = _coeffs(sw, dst_w, clamp=True)
    sy, b0, b1, _ = _coeffs(sh, dst_h, clamp=False)
    s = src.astype(np.int64)
    sx1 = np.minimum(sx + 1, sw - 1)
    H = s[:, sx, :] * a0[None, :, None] + s[:, sx1, :] * a1[None, :, None]
    H = np.where(has_right[None, :, None], H, s[:, sx, :] * INTER_RESIZE_COEF_SCALE)
    r0 = np.clip(sy, 0, sh - 1)
    r1 = np.clip(sy + 1, 0, sh - 1)
    v = (((b0[:, None, None] * (H[r0] >> 4)) >> 16) + ((b1[:, None, None] * (H[r1] >> 4)) >> 16) + 2) >> 2
    assert v.min() >= 0 and v.max() <= 255
    out = v.astype(np.uint8)
    return out[:, :, 0] if squeeze else out
