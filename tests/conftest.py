"""Shared fixtures: small synthetic clips (generated, never downloaded)."""

from __future__ import annotations

import pytest

from pavenet.synth import SynthConfig, generate_clip

SMALL = SynthConfig(width=160, height=120, min_people=3, max_people=6)


@pytest.fixture(scope="session")
def small_cfg() -> SynthConfig:
    return SMALL


@pytest.fixture(scope="session")
def small_clip():
    """A 12-frame clip with several people."""
    return generate_clip(SMALL, "val", 0, 1, 12)


@pytest.fixture(scope="session")
def shipped_onnx():
    """The shipped model (weights/pavenet-t.onnx), or PAVENET_TEST_WEIGHTS when set."""
    import os
    from pathlib import Path

    path = Path(os.environ.get("PAVENET_TEST_WEIGHTS") or Path(__file__).parents[1] / "weights" / "pavenet-t.onnx")
    if not path.is_file():
        pytest.fail(f"{path} is missing: the shipped weights are part of the repository")
    return path


@pytest.fixture(scope="session")
def crossing_video(tmp_path_factory):
    """A 40-frame synthetic video (WebM, plays in browsers) of people crossing, and its clip."""
    from pavenet.synth.config import suite_config
    from pavenet.video import VideoWriter

    clip = generate_clip(suite_config("crossing", SynthConfig(width=320, height=240)), "val", 0, 3, 40)
    path = tmp_path_factory.mktemp("video") / "crossing.webm"
    with VideoWriter(path, clip.fps) as w:
        for f in clip.frames:
            w.write(f.image)
    return path, clip
