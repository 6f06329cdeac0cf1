"""Checkpoint -> ONNX: one streaming step with explicit track-query state (dynamo exporter)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from dataclasses import asdict
from pathlib import Path

import onnx
import torch

from pavenet.contract import INPUTS, OUTPUTS, TrackerThresholds, build_metadata, parse_metadata
from pavenet.errors import PavenetError
from pavenet.layouts import get_layout
from pavenet.model.checkpoint import checkpoint_config, load_checkpoint, save_checkpoint
from pavenet.model.config import ModelConfig
from pavenet.model.pavenet import PAVENet, build_model
from pavenet.model.step import StreamingStep


def load_model(checkpoint: str | Path, input_size: tuple[int, int] | None = None,
               queries: int | None = None, refine_top: int | None = None) -> PAVENet:
    """The model of a training checkpoint in eval mode (optionally at another input size, with
    another number of detect queries: the top-k proposals become queries, so k is free at run
    time, or with another ``refine_top``: how many detect rows the streaming step refines)."""
    state = load_checkpoint(checkpoint)
    cfg = checkpoint_config(state, checkpoint)
    if input_size is not None:
        cfg = cfg.override(input_width=input_size[0], input_height=input_size[1])
    if queries is not None:
        cfg = cfg.override(num_queries=queries)  # checked against the proposal tokens by the config
    if refine_top is not None:
        cfg = cfg.override(refine_top=refine_top)
    model = build_model(cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise PavenetError(f"{checkpoint}: weights do not fit the stored model config ({str(exc)[:120]})") from None
    return model.eval()


def num_tokens(cfg: ModelConfig) -> int:
    return sum((cfg.input_width // s) * (cfg.input_height // s) for s in cfg.strides)


def example_inputs(cfg: ModelConfig, n: int = 3, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Inputs of the contract with N = n track queries (n >= 2 keeps the dimension dynamic)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (1, cfg.input_height, cfg.input_width, 3), dtype=torch.uint8, generator=g),
            torch.randn(1, n, cfg.d_model, generator=g), torch.rand(1, n, cfg.num_keypoints, 2, generator=g),
            torch.randn(1, num_tokens(cfg), cfg.d_model, generator=g), torch.ones(1))


def export_onnx(model: PAVENet, out: str | Path, opset: int = 18, fp16: bool = False,
                thresholds: TrackerThresholds | None = None, quiet: bool = True) -> Path:
    """Export ``model`` to ``out`` (written atomically) with metadata; returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg
    step = StreamingStep(model).eval()
    n = torch.export.Dim("num_tracks", min=0, max=4096)
    shapes = {"image": None, "track_queries": {1: n}, "track_keypoints": {1: n}, "prev_tokens": None,
              "prev_valid": None}
    tmp = out.with_name(f".{out.name}.partial")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR if quiet else logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext(), warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        program = torch.onnx.export(step, example_inputs(cfg), input_names=list(INPUTS), output_names=list(OUTPUTS),
                                    dynamo=True, dynamic_shapes=shapes, opset_version=opset, verbose=False)
    proto = program.model_proto
    if fp16:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        proto = convert_float_to_float16(proto, keep_io_types=True)
    meta = build_metadata(cfg, get_layout(cfg.layout), thresholds or TrackerThresholds(), num_tokens(cfg))
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    os.replace(tmp, out)
    return out


def set_thresholds(path: str | Path, thresholds: TrackerThresholds) -> Path:
    """Store new default tracker thresholds in an exported model's metadata (``.onnx``) or a
    checkpoint (``.pt``, read by ``Tracker.from_checkpoint``); written atomically."""
    path = Path(path)
    if path.suffix != ".onnx":
        state = load_checkpoint(path)
        state["tracker_thresholds"] = asdict(thresholds)
        save_checkpoint(path, {k: v for k, v in state.items() if k not in ("format", "version")})
        return path
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    parse_metadata(meta, str(path))  # a PAVENet export, or a one-line error
    meta["thresholds"] = json.dumps(asdict(thresholds))
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    tmp = path.with_name(f".{path.name}.partial")
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    return path


def slim_checkpoint(src: str | Path, dst: str | Path, model_config: ModelConfig | None = None) -> Path:
    """A shippable copy of a training checkpoint: model and RLE flows in float16, both configs and
    the layout; no optimizer or RNG state. It loads like any checkpoint (``--load-from``,
    ``Tracker.from_checkpoint``, ``pavenet-export``; weights are cast back to float32).
    ``model_config`` replaces the stored one (the config an export ran with, e.g. more queries)."""
    state = load_checkpoint(src)
    if model_config is not None:
        state["model_config"] = model_config.to_dict()
    half = {k: {n: t.half() if t.is_floating_point() else t for n, t in state[k].items()}
            for k in ("model", "criterion") if isinstance(state.get(k), dict)}
    keep = {k: state[k] for k in ("model_config", "train_config", "layout", "step", "epoch", "metrics",
                                  "tracker_thresholds") if k in state}
    save_checkpoint(dst, {**keep, **half})
    return Path(dst)
