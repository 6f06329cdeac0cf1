"""The PAVENet model. ``config`` is torch-free; the other modules need torch."""

from pavenet.model.config import PRESETS, ModelConfig, preset

__all__ = ["PRESETS", "ModelConfig", "preset"]
