"""Run one streaming step: ONNX Runtime (torch-free) or the PyTorch checkpoint.

Both take and return numpy arrays in the contract of :mod:`pavenet.model.step`, so the tracker
logic above them is the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from pavenet.contract import INPUTS, ModelInfo, TrackerThresholds, parse_metadata
from pavenet.errors import PavenetError
from pavenet.layouts import get_layout


def _choose_providers(device: str, available: list[str]) -> list[str]:
    if device not in ("auto", "cpu", "cuda"):
        raise PavenetError(f"unknown device {device!r}; use auto, cpu or cuda")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        if device == "cuda":
            raise PavenetError("device cuda requested but this ONNX Runtime has no CUDA provider "
                               "(install onnxruntime-gpu)")
        return ["CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


class OnnxBackend:
    """An exported PAVENet graph in ONNX Runtime.

    ``device="auto"`` uses CUDA when ONNX Runtime can, else the CPU; ``provider`` says which one
    is really active (a GPU build without CUDA libraries falls back to the CPU, and we say so).
    """

    def __init__(self, path: str | Path, device: str = "auto", threads: int = 0):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise PavenetError(f"{self.path}: no such ONNX file")
        providers = _choose_providers(device, ort.get_available_providers())
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        if providers[0] != "CPUExecutionProvider":
            ort.set_default_logger_severity(4)  # a failed CUDA probe is reported below, in one line
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise PavenetError(f"{self.path}: not a loadable ONNX model ({first})") from None
        finally:
            ort.set_default_logger_severity(2)
        self.provider = self.session.get_providers()[0]
        if providers[0] == "CUDAExecutionProvider" and self.provider != "CUDAExecutionProvider":
            if device == "cuda":
                raise PavenetError("device cuda requested but ONNX Runtime could not start CUDA (drivers or "
                                   "CUDA libraries missing)")
            print("note: CUDA is not usable here; ONNX Runtime runs on the CPU", file=sys.stderr)
        names = {i.name for i in self.session.get_inputs()}
        missing = [n for n in INPUTS if n not in names]
        if missing:
            raise PavenetError(f"{self.path}: ONNX model has no track-query state inputs {missing}; "
                               "is it a PAVENet export?")
        self.info: ModelInfo = parse_metadata(self.session.get_modelmeta().custom_metadata_map, str(self.path))

    def step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(None, feeds)
        return {o.name: v for o, v in zip(self.session.get_outputs(), outs)}


class _GraphedStep:
    """The step replayed as CUDA graphs, one per track-query count N, each captured on first use.

    A step is ~700 small kernels; on a GPU their launches, not the arithmetic, set the frame time,
    and a replayed graph launches them all at once. Inputs are copied into the graph's static
    tensors, its static outputs are read (and copied to the host) before the next replay, so
    graphs of different N can share one memory pool. Past ``max_graphs`` distinct N the step runs
    eagerly.
    """

    def __init__(self, module, torch, device, max_graphs: int = 48):
        self.module, self.torch, self.device, self.max_graphs = module, torch, device, max_graphs
        self.graphs: dict[int, tuple] = {}
        self.pool = torch.cuda.graph_pool_handle()

    def __call__(self, inputs: list):
        """inputs: the step's INPUTS as host tensors -> its OUTPUTS as device tensors."""
        n = inputs[1].shape[1]
        entry = self.graphs.get(n)
        if entry is None:
            if len(self.graphs) >= self.max_graphs:
                return self.module(*(x.to(self.device) for x in inputs))
            entry = self.graphs[n] = self._capture([x.to(self.device) for x in inputs])
        graph, static, outs = entry
        for dst, src in zip(static, inputs):
            dst.copy_(src)
        graph.replay()
        return outs

    def _capture(self, static: list) -> tuple:
        torch = self.torch
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture stream, as torch.cuda.graphs asks
            for _ in range(2):
                self.module(*static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            outs = self.module(*static)
        return graph, static, outs


class TorchBackend:
    """A training checkpoint run in PyTorch (same contract; imports torch).

    On CUDA the step is replayed as CUDA graphs (one per track-query count; ``cuda_graphs=False``
    runs it eagerly); on the CPU it runs eagerly.
    """

    def __init__(self, path: str | Path, device: str = "auto", cuda_graphs: bool = True):
        try:
            import torch
        except ImportError:
            raise PavenetError("Tracker.from_checkpoint needs PyTorch; use an ONNX export instead") from None
        from pavenet.model.checkpoint import checkpoint_config, load_checkpoint
        from pavenet.model.pavenet import build_model

        state = load_checkpoint(path)
        cfg = checkpoint_config(state, path)
        if cfg.window == "centred":
            cfg = cfg.override(window="causal")
        model = build_model(cfg)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise PavenetError(f"{path}: weights do not fit the stored model config ({str(exc)[:120]})") from None
        use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        thresholds = TrackerThresholds().override(**state.get("tracker_thresholds", {}))  # set by tuning
        self._wrap(model.to(torch.device("cuda" if use_cuda else "cpu")), thresholds, cuda_graphs)

    @classmethod
    def from_model(cls, model, thresholds: TrackerThresholds) -> TorchBackend:
        """Around a causal-window PAVENet already in memory, on its device, sharing its weights
        (training's tracker validation); eager, no CUDA graphs (the weights change between calls)."""
        self = cls.__new__(cls)
        self._wrap(model, thresholds, cuda_graphs=False)
        return self

    def _wrap(self, model, thresholds: TrackerThresholds, cuda_graphs: bool) -> None:
        import torch

        from pavenet.model.step import StreamingStep

        cfg = model.cfg
        self.device = next(model.parameters()).device
        self.provider = "torch-" + self.device.type
        self.torch = torch
        self.step_module = StreamingStep(model).eval()
        use_graphs = self.device.type == "cuda" and cuda_graphs
        self.graphed = _GraphedStep(self.step_module, torch, self.device) if use_graphs else None
        if self.graphed is not None:
            self.provider += "-graphs"
        n_tok = sum((cfg.input_width // s) * (cfg.input_height // s) for s in cfg.strides)
        self.info = ModelInfo(cfg, get_layout(cfg.layout), thresholds, n_tok)

    def step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        with torch.no_grad():
            if self.graphed is not None:
                outs = self.graphed([torch.from_numpy(feeds[n]) for n in INPUTS])
            else:
                outs = self.step_module(*(torch.from_numpy(feeds[n]).to(self.device) for n in INPUTS))
        from pavenet.contract import OUTPUTS

        return {n: v.cpu().numpy() for n, v in zip(OUTPUTS, outs)}
