"""Whole-process timings for BENCHMARKS.md: `pvt eval coco` (the eval_cli example, which runs
crates/cli/src/eval_cmd.rs) against pycocotools and faster-coco-eval on the same files, in the
same run, on the same machine. JSON loading is included in every time.

    python bench.py DATADIR --ours "LABEL=COMMAND" [--ours ...] [--repeat N]

COMMAND is how to call our `eval` subcommands, e.g. "pvt eval coco=target/release/pvt eval";
`coco --gt ... --dt ... --iou-type ... --json` is appended. DATADIR holds gt.json, dt_bbox.json,
dt_segm.json (tools/eval/bench_gen.py). Prints a Markdown table and checks that every tool's 12
stats agree with pycocotools' (ours within 1e-12).
    python bench.py fce GT DT IOU     (internal: faster-coco-eval run, prints its stats)
"""

import contextlib
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def fce(gt_path, dt_path, iou):
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(sys.stderr):
        gt = COCO(gt_path)
        dt = gt.loadRes(dt_path)
        ev = COCOeval_faster(gt, dt, iou)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    print(json.dumps({"stats": [float(s) for s in ev.stats[:12]]}))


def timed(cmd):
    """Wall time, CPU time (user + sys of the child) and stdout of one whole process."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, out


def main(argv):
    if argv and argv[0] == "fce":
        return fce(argv[1], argv[2], argv[3])
    data = argv[0]
    repeat = int(argv[argv.index("--repeat") + 1]) if "--repeat" in argv else 3
    ours = [argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--ours"]
    py = sys.executable
    rows = []
    for iou in ["bbox", "segm"]:
        gt, dt = os.path.join(data, "gt.json"), os.path.join(data, f"dt_{iou}.json")
        runs = {label: shlex.split(cmd) + ["coco", "--gt", gt, "--dt", dt, "--iou-type", iou, "--json"]
                for label, cmd in ours}
        runs["pycocotools 2.0.11"] = [py, os.path.join(HERE, "coco_reference.py"), "eval", gt, dt, iou]
        runs["faster-coco-eval 1.8.0"] = [py, os.path.abspath(__file__), "fce", gt, dt, iou]
        mine = [label for label, _ in ours]
        times, cpus, stats = {}, {}, {}
        for name, cmd in runs.items():
            n = repeat if name in mine else 1
            ts, cs = [], []
            for _ in range(n):
                t, c, out = timed(cmd)
                ts.append(t)
                cs.append(c)
            times[name] = statistics.median(ts)
            cpus[name] = statistics.median(cs)
            v = json.loads(out)
            stats[name] = [v[k] for k in ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10",
                                          "AR100", "ARs", "ARm", "ARl"]] if "stats" not in v else v["stats"]
            print(f"{iou} {name}: {times[name]:.2f} s wall, {cpus[name]:.2f} s CPU (median of {n})",
                  file=sys.stderr)
        ref = stats["pycocotools 2.0.11"]
        diff = max(abs(a - b) for m in mine for a, b in zip(stats[m], ref))
        diff_fce = max(abs(a - b) for a, b in zip(stats["faster-coco-eval 1.8.0"], ref))
        for name in runs:
            rows.append((iou, name, times[name], times["pycocotools 2.0.11"] / times[name],
                         cpus[name], cpus["pycocotools 2.0.11"] / cpus[name]))
        print(f"{iou}: max |ours - pycocotools| = {diff:.3g}, "
              f"max |faster-coco-eval - pycocotools| = {diff_fce:.3g}", file=sys.stderr)
        assert diff <= 1e-12, "our stats differ from pycocotools"
    print("| IoU type | tool | wall (s) | wall speed-up | CPU user+sys (s) | CPU speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    for iou, name, t, ratio, c, cratio in rows:
        print(f"| {iou} | {name} | {t:.2f} | {ratio:.1f}x | {c:.2f} | {cratio:.1f}x |")


if __name__ == "__main__":
    main(sys.argv[1:])
