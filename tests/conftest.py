"""Shared fixtures: small synthetic clips (generated, never downloaded)."""

from __future__ import annotations

import pytest

from training.synth import SynthConfig, generate_clip

SMALL = SynthConfig(width=160, height=120, min_people=3, max_people=6)


@pytest.fixture(scope="session")
def small_cfg() -> SynthConfig:
    return SMALL


@pytest.fixture(scope="session")
def small_clip():
    """A 12-frame clip with several people."""
    return generate_clip(SMALL, "val", 0, 1, 12)
