"""PyTorch counterpart of `pvt bench --arch pvt_v2_*`: timm's PVT v2 backbones (features of the
four stages, after each stage norm), random weights, batch 1, f32, CPU. Each (model, size) case
runs in a fresh subprocess so that its peak RSS (ru_maxrss) is its own. One JSON line per case.

    tools/.venv/bin/python tools/bench_torch_backbone_v2.py --models b0,b2 --sizes 224x224,800x1216
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def run_case(model, size, runs, warmup, threads):
    import timm
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    h, w = size
    net = timm.create_model(f"pvt_v2_{model}", pretrained=False, features_only=True).eval()
    x = torch.randn(1, 3, h, w)
    before = rss_mib()
    with torch.no_grad():
        for _ in range(warmup):
            net(x)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            feats = net(x)
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    print(json.dumps({
        "impl": "pytorch (timm pvt_v2, features_only)", "model": f"pvt_v2_{model}", "size": [h, w],
        "out_shapes": [list(f.shape) for f in feats], "threads": threads, "runs": runs, "warmup": warmup,
        "median_ms": round(times[len(times) // 2], 2), "min_ms": round(times[0], 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "rss_before_forward_mib": round(before, 1), "torch": torch.__version__, "timm": timm.__version__,
        "loadavg_1m_start": os.getloadavg()[0],
    }), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="b0,b2")
    ap.add_argument("--sizes", default="224x224,800x1216")
    ap.add_argument("--runs-224", type=int, default=10)
    ap.add_argument("--runs-large", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--runs", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.case:
        h, w = map(int, a.case[1].split("x"))
        run_case(a.case[0], (h, w), a.runs, a.warmup, a.threads)
        return
    for m in a.models.split(","):
        for s in a.sizes.split(","):
            h, w = map(int, s.split("x"))
            runs = a.runs_224 if h * w <= 224 * 224 else a.runs_large
            subprocess.run([sys.executable, __file__, "--case", m, s, "--runs", str(runs),
                            "--warmup", str(a.warmup), "--threads", str(a.threads)], check=True)


if __name__ == "__main__":
    main()
