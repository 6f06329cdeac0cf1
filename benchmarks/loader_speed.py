"""How many training clips per second the data loader delivers, as ``pavenet-train`` builds it.

    python benchmarks/loader_speed.py [--workers 2] [--batch-size 8] [--seconds 20] [--data SPEC ...]

5-frame clips at 320x256 with the training augmentation, ``--workers`` processes, from each
``--data`` source (default ``synthetic``: generated and rendered on the fly, as ``pavenet-train``
draws them; ``posetrack21:DIR`` reads videos from disk, e.g. synthetic ones written beforehand by
``pavenet-data synth --split train``). For each source it measures twice in one run: workers
drawing with OpenCV's default thread pool (one thread per core in every worker) and with one
OpenCV thread each (what ``pavenet-train``'s workers use). A GPU run is data-bound when this rate
is below batch size x the model's steps per second.
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
from torch.utils.data import DataLoader

from pavenet.synth import SynthConfig
from training.data.augment import AugmentConfig
from training.data.dataset import ClipDataset, StepSampler, build_source, collate
from training.loop.stop import ignore_stop_signals


def _default_threads(worker_id: int) -> None:
    cv2.setNumThreads(-1)  # OpenCV's default pool


def measure(spec: str, workers: int, batch: int, seconds: float, length: int, init) -> float:
    """Clips per second of data source ``spec`` over about ``seconds`` after two warm-up batches."""
    data = ClipDataset(build_source(spec, "train", 0, SynthConfig()), length, 320, 256, 0,
                       AugmentConfig(width=320, height=256))
    loader = DataLoader(data, batch_size=batch, sampler=StepSampler(batch, 0, 10**6), collate_fn=collate,
                        num_workers=workers, persistent_workers=workers > 0, worker_init_fn=init if workers else None,
                        prefetch_factor=4 if workers else None)
    it = iter(loader)
    for _ in range(2):
        next(it)
    start, clips = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        clips += len(next(it)["index"])
    rate = clips / (time.perf_counter() - start)
    del it, loader
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2,
                        help="data-loading processes (default 2; 0 = in this process: the rate of one core)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per batch (default 8)")
    parser.add_argument("--seq-length", type=int, default=5, help="frames per clip (default 5, the training default)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time per measurement (default 20)")
    parser.add_argument("--data", action="append", default=[],
                        help="training data source, repeatable (default synthetic; e.g. posetrack21:DIR)")
    args = parser.parse_args()
    cores = os.cpu_count()
    rates = {}
    for spec in args.data or ["synthetic"]:
        results = {}
        for name, init in (("OpenCV default threads", _default_threads), ("one OpenCV thread", ignore_stop_signals)):
            results[name] = measure(spec, args.workers, args.batch_size, args.seconds, args.seq_length, init)
            print(f"{spec[:30]:<30} {name:<24} {results[name]:7.1f} clips/s  ({args.workers} workers, {cores} "
                  f"cores, {args.seq_length}-frame clips at 320x256)")
        a, b = results.values()
        rates[spec] = b
        print(f"{spec[:30]:<30} one OpenCV thread per worker: {b / a:.2f}x the default pool's rate")
    first = next(iter(rates.values()))
    print("summary: " + "; ".join(f"{spec} {r:.1f} clips/s ({r / first:.2f}x)" for spec, r in rates.items()))


if __name__ == "__main__":
    main()
