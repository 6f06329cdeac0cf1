"""Choosing which frames of a video form a training clip.

PoseTrack labels only some frames (e.g. every 4th in validation videos), so clips are placed
where the frames that receive a loss are labelled.
"""

from __future__ import annotations

import numpy as np

from pavenet.errors import PavenetError

REQUIRE = ("last", "all", "any")


def clip_starts(labelled: np.ndarray, length: int, stride: int = 1, require: str = "last") -> np.ndarray:
    """Start indices of every valid clip.

    Args:
        labelled: [T] bool, which frames of the video are annotated.
        length: frames per clip; stride: step between them.
        require: ``last`` (the last frame is labelled), ``all`` or ``any``.

    Returns:
        [S] int64 start indices; the clip at start s is ``s, s + stride, ...``.
    """
    if length < 1 or stride < 1:
        raise PavenetError("clip length and stride must be >= 1")
    if require not in REQUIRE:
        raise PavenetError(f"require must be one of {REQUIRE}, got {require!r}")
    labelled = np.asarray(labelled, bool)
    span = (length - 1) * stride
    starts = np.arange(max(len(labelled) - span, 0))
    if len(starts) == 0:
        return starts.astype(np.int64)
    idx = starts[:, None] + np.arange(length) * stride  # [S, length]
    lab = labelled[idx]
    ok = {"last": lab[:, -1], "all": lab.all(1), "any": lab.any(1)}[require]
    return starts[ok].astype(np.int64)


def sample_clip(labelled: np.ndarray, length: int, rng: np.random.Generator, stride: int = 1,
                require: str = "last") -> list[int] | None:
    """Frame indices of one random valid clip, or ``None`` if the video has none."""
    starts = clip_starts(labelled, length, stride, require)
    if len(starts) == 0:
        return None
    s = int(rng.choice(starts))
    return [s + i * stride for i in range(length)]
