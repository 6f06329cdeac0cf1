"""How fast the synthetic generator produces frames (it must keep a training loop fed).

    python benchmarks/synth_speed.py [--seconds 10]

Prints frames/s for long videos and for the 2-frame clips training draws, per core.
"""

from __future__ import annotations

import argparse
import time

from pavenet.synth import SynthConfig, generate_clip, suite_config


def measure(cfg: SynthConfig, frames: int, seconds: float) -> tuple[float, float]:
    """(frames per second, people in view per frame) generating clips for about ``seconds``."""
    start, done, people, index = time.perf_counter(), 0, 0, 0
    while time.perf_counter() - start < seconds:
        clip = generate_clip(cfg, "train", 0, index, frames)
        done += len(clip)
        people += sum(f.num_people for f in clip.frames)
        index += 1
    return done / (time.perf_counter() - start), people / max(done, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement (default 10)")
    args = parser.parse_args()
    cases = [
        ("default 320x240, 100-frame videos", SynthConfig(), 100),
        ("default 320x240, 2-frame training clips", SynthConfig(), 2),
        ("256x256, 2-frame training clips", SynthConfig(width=256, height=256), 2),
        ("crowd suite 320x240, 100-frame videos", suite_config("crowd"), 100),
        ("640x480, 100-frame videos", SynthConfig(width=640, height=480), 100),
    ]
    for name, cfg, frames in cases:
        fps, people = measure(cfg, frames, args.seconds)
        print(f"{name:45s} {fps:8.1f} frames/s on one core  ({people:.1f} people in view per frame)")


if __name__ == "__main__":
    main()
