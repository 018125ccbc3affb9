#!/usr/bin/env python3
"""Golden fixture for Semantic FPN test-time augmentation (crates/zoo `SegAug`,
tests/semantic_fpn_parity.rs `photo_multi_scale_flip_test`).

Reference side only: CI never runs this. It reuses the model, weights and photo pipeline of
tools/make_semantic_fpn_fixtures.py (same environment, see there): the mini Semantic FPN-PVT is
built with the official PVT-seg backbone and mmsegmentation's FPN / FPNHead and loaded from the
committed checkpoint assets/fixtures/semantic_fpn/mini_fpn_pvt_f16.pth.

The augmentation is mmseg's (0.x `MultiScaleFlipAug` + `EncoderDecoder.aug_test`; 1.x
`TestTimeAug` + `SegTTAModel.merge_preds`, the same arithmetic):
  * scales `(int(2048 * r), int(512 * r))` for each ratio r (`MultiScaleFlipAug` mode 2);
  * per scale, PVT-seg `AlignResize` (as the base fixture's `photo_input`), then for the flipped
    pass mmcv `imflip(direction='horizontal')` on the resized 8-bit image (`RandomFlip` runs
    after the resize and before `Normalize`), then `Normalize`;
  * per pass, `whole_inference` (head logits resized to the input, then to the original size,
    bilinear, align_corners=False), `softmax` over classes, flipped passes mirrored back
    (`output.flip(dims=(3,))`);
  * the mean over passes; labels are its argmax.

Writes assets/fixtures/semantic_fpn/tta_reference.safetensors and a `tta` entry in
manifest.json.
"""

import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_semantic_fpn_fixtures as base  # noqa: E402

RATIOS = [0.5, 0.75, 1.0]
ROW_STEP = base.PHOTO_ROW_STEP


def scaled_input(path, scale, flip):
    import cv2
    import mmcv
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    h, w = bgr.shape[:2]
    img = mmcv.imrescale(bgr, scale, return_scale=False)
    rh, rw = img.shape[:2]
    ah, aw = int(np.ceil(rh / 32)) * 32, int(np.ceil(rw / 32)) * 32
    img = mmcv.imresize(img, (aw, ah))
    if flip:
        img = mmcv.imflip(img, direction="horizontal")
    norm = mmcv.imnormalize(img, np.array(base.MEAN, np.float32), np.array(base.STD, np.float32),
                            to_rgb=True)
    return torch.from_numpy(norm.transpose(2, 0, 1).copy())[None], (h, w), (ah, aw)


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    base.install_mmcv_ops_stub()
    from safetensors.torch import save_file

    with open(os.path.join(base.PVT_FIX, "manifest.json")) as f:
        mini = dict(json.load(f)["config"]["constructor_kwargs"])
    model = base.build(base.import_seg_pvt(), mini)
    ck = torch.load(os.path.join(base.FIX, "mini_fpn_pvt_f16.pth"), map_location="cpu",
                    weights_only=False)["state_dict"]
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ck.items()},
                          strict=True)
    model.eval()

    photo = os.path.join(base.ROOT, "assets", "images", "chelsea.png")
    passes = []
    total = None
    with torch.no_grad():
        for r in RATIOS:
            scale = (int(base.ALIGN_SCALE[0] * r), int(base.ALIGN_SCALE[1] * r))
            for flip in (False, True):
                x, ori, aligned = scaled_input(photo, scale, flip)
                _, at_ori, _ = model.whole(x, ori)
                probs = F.softmax(at_ori, dim=1)
                if flip:
                    probs = probs.flip(dims=(3,))
                total = probs if total is None else total + probs
                passes.append(dict(ratio=r, scale=list(scale), flip=flip, aligned_hw=list(aligned)))
        mean = total / len(passes)
        labels = mean.argmax(dim=1)[0]
        top2 = mean[0].topk(2, dim=0).values
        gap = (top2[0] - top2[1]).min().item()

    ref = {
        "photo_tta_probs_rows": mean[:, :, ::ROW_STEP].contiguous(),
        "photo_tta_labels": labels.to(torch.uint8).contiguous(),
    }
    out = os.path.join(base.FIX, "tta_reference.safetensors")
    save_file(ref, out)
    man_path = os.path.join(base.FIX, "manifest.json")
    with open(man_path) as f:
        manifest = json.load(f)
    manifest["tta"] = dict(
        file="tta_reference.safetensors",
        ratios=RATIOS,
        flip=True,
        passes=passes,
        row_step=ROW_STEP,
        min_top2_probability_gap=gap,
        semantics="mmseg MultiScaleFlipAug(img_ratios, flip=True) + aug_test: mean of per-pass "
                  "softmax at the original size, flipped passes mirrored back; argmax",
        sha256=base.sha256(out),
        script="tools/make_semantic_fpn_tta_fixture.py",
    )
    with open(man_path, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(json.dumps(manifest["tta"], indent=2))


if __name__ == "__main__":
    main()
