"""Does `pavenet-track` keep flat memory on a long stream?

    python benchmarks/track_soak.py                    # 10,000 frames (a 100-frame video, looped)
    python benchmarks/track_soak.py --frames 2000 --loop 50

Writes one synthetic 320x240 video of people crossing, then runs the real `pavenet-track` command
twice on a folder that repeats it (`--loop` copies, read as one stream of image files would be, so
identities and tracker state carry across the joins): once stopping at 1,000 frames and once at
the full length. Prints each run's peak RSS (sampled from /proc while it runs) and their ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

from app_soak import rss_mb  # noqa: E402


def make_frames(folder: Path, frames: int, loop: int) -> str:
    """A glob of ``frames * loop`` JPEG files: one synthetic video repeated ``loop`` times (hard links)."""
    import cv2

    from pavenet.synth import SynthConfig, generate_clip, suite_config

    clip = generate_clip(suite_config("crossing", SynthConfig(width=320, height=240)), "test", 5, 0, frames)
    first = []
    for i, f in enumerate(clip.frames):
        path = folder / f"{i:06d}.jpg"
        cv2.imwrite(str(path), f.image)
        first.append(path)
    for rep in range(1, loop):
        for i, src in enumerate(first):
            (folder / f"{rep * frames + i:06d}.jpg").hardlink_to(src)
    return str(folder / "*.jpg")


def peak_rss(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd``; returns (peak RSS MB, seconds, last line of its output)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0.0
    while proc.poll() is None:
        try:
            peak = max(peak, rss_mb(proc.pid))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.2)
    out = proc.communicate()[0]
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out[-2000:]}")
    return peak, time.perf_counter() - start, out.strip().splitlines()[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=str(ROOT / "weights" / "pavenet-t.onnx"))
    p.add_argument("--frames", type=int, default=100, help="frames of the synthetic video (default 100)")
    p.add_argument("--loop", type=int, default=100, help="times it repeats (default 100: 10,000 frames)")
    p.add_argument("--short", type=int, default=1000, help="frames of the short run (default 1,000)")
    args = p.parse_args()
    total = args.frames * args.loop
    with tempfile.TemporaryDirectory(prefix="pavenet-track-soak-") as tmp:
        pattern = make_frames(Path(tmp), args.frames, args.loop)
        results = {}
        for n in (args.short, total):
            cmd = [sys.executable, "-m", "pavenet.track_cli", pattern, "--weights", args.weights, "--no-video",
                   "--quiet", "--max-frames", str(n), "-o", str(Path(tmp) / f"out-{n}")]
            results[n] = peak_rss(cmd)
            print(f"{n:>6} frames: peak RSS {results[n][0]:.0f} MB in {results[n][1]:.0f} s ({results[n][2]})")
    ratio = results[total][0] / results[args.short][0]
    print(f"track soak: peak RSS at {total} frames / at {args.short} frames = {ratio:.3f}")


if __name__ == "__main__":
    main()
