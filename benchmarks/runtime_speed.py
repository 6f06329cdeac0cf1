"""Speed of the tracker runtime on this machine.

    python benchmarks/runtime_speed.py --weights weights/pavenet-t.onnx --checkpoint weights/pavenet-t.pt

Prints, for one model:
- model-only FPS of one tracker step in ONNX Runtime vs eager PyTorch (N = 0 and N = 20 track queries);
- tracker FPS (`Tracker.update`: letterbox, model, ID lifecycle) on synthetic clips with 1 and with
  about 20 people, and their ratio;
- end-to-end `pavenet-track` FPS on a synthetic 320x240 video (decode, track, draw, encode) vs model-only,
  with no track query and with as many as the tracker feeds on that video (its mean).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from pavenet.backends import OnnxBackend
from pavenet.synth import SynthConfig, generate_clip, suite_config
from pavenet.tracker import Tracker
from pavenet.video import VideoWriter


def _feeds(info, n: int) -> dict:
    cfg, rng = info.config, np.random.default_rng(0)
    return {"image": rng.integers(0, 255, (1, cfg.input_height, cfg.input_width, 3), dtype=np.uint8),
            "track_queries": rng.normal(size=(1, n, cfg.d_model)).astype(np.float32),
            "track_keypoints": rng.uniform(0.2, 0.8, (1, n, cfg.num_keypoints, 2)).astype(np.float32),
            "prev_tokens": rng.normal(size=(1, info.num_tokens, cfg.d_model)).astype(np.float32),
            "prev_valid": np.ones(1, np.float32)}


def rate(fn, seconds: float) -> float:
    fn()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="weights/pavenet-t.onnx", help="ONNX export")
    parser.add_argument("--checkpoint", help="the same model's .pt checkpoint, for the PyTorch comparison")
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement (default 5)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    args = parser.parse_args()
    backend = OnnxBackend(args.weights, args.device)
    print(f"model {backend.info.config.name} {backend.info.input_size[0]}x{backend.info.input_size[1]}, "
          f"provider {backend.provider}")
    torch_backend = None
    if args.checkpoint:
        from pavenet.backends import TorchBackend

        torch_backend = TorchBackend(args.checkpoint, args.device)
    model_fps = {}
    for n in (0, 20):
        feeds = _feeds(backend.info, n)
        model_fps[n] = rate(lambda f=feeds: backend.step(f), args.seconds)
        line = f"model-only, N={n:2d} track queries: ONNX Runtime {model_fps[n]:6.1f} FPS"
        if torch_backend is not None:
            torch_fps = rate(lambda f=feeds: torch_backend.step(f), args.seconds)
            line += f", eager PyTorch {torch_fps:6.1f} FPS, ratio {model_fps[n] / torch_fps:.2f}x"
        print(line)
    per_people = {}
    for label, cfg in (("1 person", SynthConfig(min_people=1, max_people=1, exit_rate=0.0)),
                       ("~20 people", suite_config("crowd").override(min_people=20, max_people=20))):
        clip = generate_clip(cfg, "test", 0, 0, 60)
        tracker = Tracker(backend)
        frames = [f.image for f in clip.frames]
        for f in frames[:5]:  # warm-up: lets the eager PyTorch threads of the step above go idle
            tracker.update(f)
        count, start = 0, time.perf_counter()
        while count == 0 or time.perf_counter() - start < args.seconds:  # whole passes over the clip
            tracker.reset()
            for f in frames:
                tracker.update(f)
            count += len(frames)
        per_people[label] = count / (time.perf_counter() - start)
        people = np.mean([f.num_people for f in clip.frames])
        print(f"Tracker.update with {label:10s} ({people:4.1f} in view): {per_people[label]:6.1f} FPS")
    print(f"time per frame, 20 people vs 1 person: {per_people['1 person'] / per_people['~20 people']:.2f}x")
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip.mp4"
        clip = generate_clip(SynthConfig(min_people=4, max_people=6), "test", 0, 1, 150)
        with VideoWriter(video, 25) as w:
            for f in clip.frames:
                w.write(f.image)
        from pavenet.track_cli import main as track_main

        out = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(out):
            track_main([str(video), "--weights", args.weights, "--output", str(Path(tmp) / "out"), "--quiet",
                        "--device", args.device])
        with_start = 150 / (time.perf_counter() - start)
    # pavenet-track's own summary: FPS of its frame loop and the tracker's share of that loop
    found = re.search(r"at ([\d.]+) FPS end-to-end \(([\d.]+) ms/frame in the tracker", out.getvalue())
    if found is None:
        raise SystemExit(f"pavenet-track printed no summary: {out.getvalue()!r}")
    e2e, tracker_fps = float(found.group(1)), 1000 / float(found.group(2))
    n_fed = round(mean_track_queries(backend, [f.image for f in clip.frames]))
    feeds_fed = _feeds(backend.info, n_fed)
    fps_fed = rate(lambda: backend.step(feeds_fed), args.seconds)
    print(f"end-to-end pavenet-track (decode + track + draw + encode), 4-6 people: {e2e:.1f} FPS "
          f"({with_start:.1f} with the model's loading) = {e2e / model_fps[0]:.2f}x model-only N=0, "
          f"{e2e / fps_fed:.2f}x model-only at the clip's mean track count N={n_fed} ({fps_fed:.1f} FPS), "
          f"{e2e / tracker_fps:.2f}x its own Tracker.update time ({tracker_fps:.1f} FPS: decode, draw and "
          "encode cost the rest)")


def mean_track_queries(backend, frames: list[np.ndarray]) -> float:
    """Mean number of track queries the tracker feeds the model over ``frames``."""
    counts = []

    class Counting:
        info, provider = backend.info, backend.provider

        @staticmethod
        def step(feeds):
            counts.append(feeds["track_queries"].shape[1])
            return backend.step(feeds)

    tracker = Tracker(Counting())
    for f in frames:
        tracker.update(f)
    return float(np.mean(counts))


if __name__ == "__main__":
    main()
