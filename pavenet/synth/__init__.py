"""Synthetic multi-person pose-tracking videos with exact keypoints, visibility and identities."""

from pavenet.synth.config import SPLITS, SUITES, SynthConfig, suite_config
from pavenet.synth.generator import SyntheticVideos, generate_clip

__all__ = ["SPLITS", "SUITES", "SynthConfig", "SyntheticVideos", "generate_clip", "suite_config"]
