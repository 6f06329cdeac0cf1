"""Where the exported step spends its time in ONNX Runtime (operator types and the costliest shapes).

    python benchmarks/ort_profile.py --weights weights/pavenet-t.onnx --tracks 5 --steps 60

Runs the step ``--steps`` times on the CPU with ONNX Runtime's profiler (after ``--warmup`` runs), with
``--tracks`` track queries fed in, and prints the kernel time per step by operator type and the
``--top`` costliest (operator, input shapes) groups with their calls per step. Node times add up to
a little less than the wall time of a step (the gaps between nodes are not counted). Figures are
this machine's, one run: compare settings within one run, not across machines.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile

import numpy as np
import onnxruntime as ort


def make_feed(session: ort.InferenceSession, tracks: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs of the streaming contract (``pavenet/model/step.py``) with ``tracks`` track queries."""
    shapes = {i.name: i.shape for i in session.get_inputs()}
    _, h, w, _ = shapes["image"]
    d = shapes["track_queries"][2]
    k = shapes["track_keypoints"][2]
    s = shapes["prev_tokens"][1]
    return {"image": rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8),
            "track_queries": (rng.standard_normal((1, tracks, d)) * 0.1).astype(np.float32),
            "track_keypoints": (0.3 + 0.4 * rng.random((1, tracks, k, 2))).astype(np.float32),
            "prev_tokens": rng.standard_normal((1, s, d)).astype(np.float32),
            "prev_valid": np.ones(1, np.float32)}


def profile(weights: str, tracks: int, steps: int, warmup: int) -> list[dict]:
    """Kernel events of ``steps`` profiled runs (ONNX Runtime's JSON trace, one dict per node run)."""
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "ort")
        session = ort.InferenceSession(weights, opts, providers=["CPUExecutionProvider"])
        feed = make_feed(session, tracks, np.random.default_rng(0))
        for _ in range(warmup + steps):  # the warm-up runs are dropped below
            session.run(None, feed)
        with open(session.end_profiling()) as f:
            trace = json.load(f)
    runs = [e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"]
    if len(runs) < steps:
        raise SystemExit(f"the profile holds {len(runs)} runs, expected {steps}")
    start = runs[-steps]["ts"]  # keep the last ``steps`` runs only
    return [e for e in trace if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="weights/pavenet-t.onnx", help="ONNX export of the step")
    for flag, default, text in (("--tracks", 5, "track queries fed to each step"), ("--steps", 60, "profiled steps"),
                                ("--warmup", 10, "unprofiled steps first"),
                                ("--top", 12, "how many (operator, shapes) groups to list")):
        p.add_argument(flag, type=int, default=default, help=f"{text} (default {default})")
    args = p.parse_args(argv)
    if args.steps < 1 or args.tracks < 0:
        p.error("--steps must be >= 1 and --tracks >= 0")
    events = profile(args.weights, args.tracks, args.steps, args.warmup)
    per_step = 1 / (args.steps * 1000)  # microseconds over all steps -> ms per step
    by_op, by_shape, calls = collections.Counter(), collections.Counter(), collections.Counter()
    for e in events:
        op = e["args"].get("op_name", "?")
        by_op[op] += e["dur"] * per_step
        key = (op, json.dumps(e["args"].get("input_type_shape"), separators=(",", ":"))[:100])
        by_shape[key] += e["dur"] * per_step
        calls[key] += 1
    total = sum(by_op.values())
    print(f"{args.weights}: {args.tracks} track queries, {args.steps} steps, ONNX Runtime {ort.__version__} (CPU)")
    print("\nby operator type (ms per step, share of node time):")
    for op, ms in by_op.most_common():
        if ms / total >= 0.005:
            print(f"  {op:28s} {ms:7.2f}  {ms / total:6.1%}")
    print("\ncostliest (operator, input shapes), ms per step and calls per step:")
    for key, ms in by_shape.most_common(args.top):
        print(f"  {ms:7.2f}  x{calls[key] // args.steps:<3d} {key[0]:12s} {key[1]}")
    print(f"\nnode time {total:.2f} ms per step; top operator {by_op.most_common(1)[0][0]} "
          f"{by_op.most_common(1)[0][1] / total:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
