"""Export parity: ONNX Runtime against PyTorch on a real synthetic clip, streaming with state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pavenet.backends import OnnxBackend
from pavenet.contract import INPUTS, OUTPUTS
from pavenet.model.pavenet import PAVENet
from pavenet.model.step import StreamingStep
from pavenet.preprocess import letterbox
from pavenet.synth import SynthConfig, generate_clip


def verify_onnx(model: PAVENet, onnx_path: str | Path, frames: int = 4, track_counts=(0, 1, 7),
                atol: float = 1e-4) -> dict[str, float]:
    """Run both for ``frames`` steps of a synthetic clip, for each N in ``track_counts``.

    Frame t feeds back the first N rows of step t-1 (N = 0: no track queries) and its tokens.
    Returns the max abs error per output; raises ``AssertionError`` above ``atol`` on
    keypoints and scores.
    """
    cfg = model.cfg
    step = StreamingStep(model).eval()
    backend = OnnxBackend(onnx_path, "cpu")
    clip = generate_clip(SynthConfig(min_people=3, max_people=6), "val", 0, 0, frames)
    errors = dict.fromkeys(OUTPUTS, 0.0)
    for n in track_counts:
        feeds = {"track_queries": np.zeros((1, 0, cfg.d_model), np.float32),
                 "track_keypoints": np.zeros((1, 0, cfg.num_keypoints, 2), np.float32),
                 "prev_tokens": np.zeros((1, backend.info.num_tokens, cfg.d_model), np.float32),
                 "prev_valid": np.zeros(1, np.float32)}
        for frame in clip.frames:
            feeds["image"] = letterbox(frame.image, (cfg.input_width, cfg.input_height))[0][None]
            got = backend.step(feeds)
            with torch.no_grad():
                want = step(*(torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in INPUTS))
            for name, w in zip(OUTPUTS, want):
                errors[name] = max(errors[name], float(np.abs(got[name] - w.numpy()).max()))
            # Feed back the reference outputs, so both sides see identical state.
            hidden, kps, tokens = want[3].numpy(), want[1].numpy(), want[4].numpy()
            feeds.update(track_queries=hidden[:, :n], track_keypoints=kps[:, :n], prev_tokens=tokens,
                         prev_valid=np.ones(1, np.float32))
    worst = max(errors["keypoints"], errors["scores"])
    if worst > atol:
        raise AssertionError(f"ONNX Runtime differs from PyTorch by {worst:.2e} (> {atol:.0e}): {errors}")
    return errors
