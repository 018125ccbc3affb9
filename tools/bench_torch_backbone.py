#!/usr/bin/env python3
"""PyTorch counterpart of the Rust backbone benchmark: official whai362/PVT detection backbones.

Runs the OFFICIAL detection classes `pvt_tiny` / `pvt_small` (detection/pvt.py, imported through
tools/pvt_official.py) with their own random initialisation, batch 1, float32, CPU, eval mode,
torch.inference_mode(), all CPU threads. Every (model, input size) case runs in a fresh
subprocess so that its peak RSS (getrusage ru_maxrss) is its own. One JSON line per case on stdout.

    tools/.venv/bin/python tools/bench_torch_backbone.py
    tools/.venv/bin/python tools/bench_torch_backbone.py --models tiny --sizes 224x224 --runs-224 20
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def vm_hwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def run_case(model_name, size, runs, warmup, threads):
    import torch

    sys.path.insert(0, HERE)
    import pvt_official

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    det = pvt_official.detection_module()
    model = getattr(det, f"pvt_{model_name}")(pretrained=None).eval()
    n_params = sum(p.numel() for p in model.parameters())
    h, w = size
    x = torch.randn(1, 3, h, w)
    rss_before = vm_hwm_mb()
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            outs = model(x)
            dt = (time.perf_counter() - t0) * 1e3
            if i >= warmup:
                times.append(dt)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "impl": "pytorch-official",
        "model": f"pvt_{model_name}",
        "params": n_params,
        "input": [1, 3, h, w],
        "out_shapes": [list(o.shape) for o in outs],
        "dtype": "f32",
        "device": "cpu",
        "threads": threads,
        "warmup": warmup,
        "runs": runs,
        "median_ms": round(statistics.median(times), 2),
        "min_ms": round(min(times), 2),
        "max_ms": round(max(times), 2),
        "peak_rss_mb": round(peak_kb / 1024.0, 1),
        "rss_before_forward_mb": round(rss_before, 1),
        "torch": torch.__version__,
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,small", help="comma list of tiny,small")
    ap.add_argument("--sizes", default="224x224,800x1216", help="comma list of HxW")
    ap.add_argument("--runs-224", type=int, default=10, help="timed runs for inputs <= 224x224")
    ap.add_argument("--runs-large", type=int, default=3, help="timed runs for larger inputs")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--case", nargs=2, metavar=("MODEL", "HxW"), help=argparse.SUPPRESS)  # internal
    ap.add_argument("--runs", type=int, help=argparse.SUPPRESS)  # internal
    args = ap.parse_args()

    if args.case:
        m, s = args.case
        h, w = (int(v) for v in s.split("x"))
        print(json.dumps(run_case(m, (h, w), args.runs, args.warmup, args.threads)), flush=True)
        return

    for m in args.models.split(","):
        for s in args.sizes.split(","):
            h, w = (int(v) for v in s.split("x"))
            runs = args.runs_224 if h * w <= 224 * 224 else args.runs_large
            cmd = [sys.executable, os.path.abspath(__file__), "--case", m, s, "--runs", str(runs),
                   "--warmup", str(args.warmup), "--threads", str(args.threads)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                sys.stderr.write(res.stderr)
                raise SystemExit(f"case {m} {s} failed")
            line = [l for l in res.stdout.splitlines() if l.startswith("{")][-1]
            print(line, flush=True)


if __name__ == "__main__":
    main()
