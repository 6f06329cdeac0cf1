"""Knobs of the synthetic pose-tracking video generator, its splits and its named suites."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pavenet.errors import PavenetError
from pavenet.model.config import override_fields

# Disjoint random streams: a clip is drawn from SeedSequence(seed, spawn_key=(split, index)).
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class SynthConfig:
    """Difficulty and appearance knobs (all probabilities are per clip unless stated).

    Attributes:
        width, height: frame size in pixels.
        fps: frame rate; sets how far people move between frames.
        min_people, max_people: people per clip (inclusive range). Not all are in view at once.
        min_scale, max_scale: person height as a fraction of the frame height (each clip picks
            a band inside this range, so both crowds of small people and close-ups occur).
        crossing_rate: probability that a person's route crosses the view laterally in the
            clip's busy depth band, so people pass in front of each other.
        reentry_rate: probability that a person who walks out comes back later.
        exit_rate: probability that a new waypoint lies outside the view.
        occlusion: expected number of foreground occluders (poles, signs, moving objects).
        speed: multiplier on walking and running speeds.
        run_prob, stand_prob: probability that a new leg of a route is run / a pause.
        lookalike_prob: probability that a clip has look-alike people (same clothes and build).
        camera_motion: probability of each of camera pan, zoom and shake.
        blur_prob: probability of motion blur.
        noise: maximum standard deviation of pixel noise (0-255 scale).
        clutter: amount of background clutter and distractor shapes.
        warmup_frames: maximum number of simulated frames before the first rendered one, so
            short clips start from varied states.
        min_labelled_height: people shorter than this fraction of the frame height are not
            labelled; their box becomes an ignore region (as PoseTrack leaves small people).
        min_labelled_visible: people with fewer visible keypoints than this (crowded, occluded or
            mostly out of view) are not labelled either; their box becomes an ignore region.
    """

    width: int = 320
    height: int = 240
    fps: float = 25.0
    min_people: int = 0
    max_people: int = 10
    min_scale: float = 0.08
    max_scale: float = 0.9
    crossing_rate: float = 0.4
    reentry_rate: float = 0.4
    exit_rate: float = 0.15
    occlusion: float = 1.0
    speed: float = 1.0
    run_prob: float = 0.15
    stand_prob: float = 0.2
    lookalike_prob: float = 0.3
    camera_motion: float = 0.4
    blur_prob: float = 0.3
    noise: float = 6.0
    clutter: float = 1.0
    warmup_frames: int = 60
    min_labelled_height: float = 0.1
    min_labelled_visible: int = 3

    def __post_init__(self) -> None:
        problems = []
        if self.width < 32 or self.height < 32:
            problems.append("frames must be at least 32x32")
        if not 0 <= self.min_people <= self.max_people:
            problems.append("need 0 <= min_people <= max_people")
        if not 0 < self.min_scale <= self.max_scale:
            problems.append("need 0 < min_scale <= max_scale")
        if self.fps <= 0 or self.speed <= 0:
            problems.append("fps and speed must be positive")
        if problems:
            raise PavenetError("invalid synthetic data config: " + "; ".join(problems))

    def override(self, **changes) -> SynthConfig:
        """A copy with ``changes`` (strings are parsed; unknown names and wrong types are errors)."""
        return override_fields(self, changes, "synthetic data option")


# Named benchmark suites (fixed knobs; pair them with the `test` split and a fixed seed).
SUITES: dict[str, dict] = {
    "mixed": {},
    "crossing": {"min_people": 3, "max_people": 6, "crossing_rate": 0.9, "lookalike_prob": 1.0,
                 "exit_rate": 0.05},
    "reentry": {"min_people": 2, "max_people": 5, "exit_rate": 0.6, "reentry_rate": 1.0},
    "crowd": {"min_people": 15, "max_people": 20, "max_scale": 0.45, "exit_rate": 0.05},
}


def suite_config(name: str, base: SynthConfig | None = None) -> SynthConfig:
    """The config of a named suite (``mixed``, ``crossing``, ``reentry``, ``crowd``)."""
    if name not in SUITES:
        raise PavenetError(f"unknown synthetic suite {name!r}; known: {', '.join(SUITES)}")
    return (base or SynthConfig()).override(**SUITES[name])


def clip_rng(split: str, seed: int, index: int) -> np.random.Generator:
    """The random generator of clip ``index`` of ``split``: the same inputs give the same clip."""
    if split not in SPLITS:
        raise PavenetError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if seed < 0 or index < 0:
        raise PavenetError("seed and clip index must be >= 0")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SPLITS[split], index)))
