"""Eager PyTorch inference latency of one tracker step on CUDA (issue 13's GPU figure).

    python benchmarks/cuda_infer.py [--checkpoint weights/pavenet-t.pt] [--iters 200]

Times the model's forward for one 256x256 frame (batch 1) with N = 0 and N = 20 track queries,
eager and with CUDA graphs (``torch.cuda.graphs``: the whole step captured once per N, replayed),
and prints ms/frame for each. Then the runtime's own path, ``TorchBackend.step`` (numpy in,
numpy out, as ``Tracker.from_checkpoint(..., device="cuda")`` runs it): eager against its CUDA
graphs (one graph per track-query count), same feeds, with the largest output difference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pavenet.model.checkpoint import checkpoint_config, load_checkpoint
from pavenet.model.pavenet import build_model


def timed(fn, iters: int) -> float:
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / iters * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="weights/pavenet-t.pt", help="a .pt checkpoint")
    parser.add_argument("--iters", type=int, default=200, help="timed frames per measurement (default 200)")
    args = parser.parse_args()
    state = load_checkpoint(args.checkpoint)
    cfg = checkpoint_config(state, args.checkpoint)
    model = build_model(cfg)
    model.load_state_dict({k: v.float() for k, v in state["model"].items()})
    model = model.cuda().eval()
    print(f"{torch.cuda.get_device_name()}: {cfg.name} {cfg.input_width}x{cfg.input_height}")
    for n in (0, 20):
        image = torch.rand(1, 3, cfg.input_height, cfg.input_width, device="cuda") * 255
        tq = torch.randn(1, n, cfg.d_model, device="cuda")
        tk = torch.rand(1, n, cfg.num_keypoints, 2, device="cuda") * 0.6 + 0.2
        with torch.no_grad():
            context = [model(image)["tokens"]]

            def step(image=image, tq=tq, tk=tk, context=context):
                return model(image, tq, tk, context)

            eager = timed(step, args.iters)
            try:
                replay = f"{graph_time(step, args.iters):.2f} ms/frame"
            except RuntimeError as exc:  # a host-to-device copy inside the step cannot be captured
                replay = f"not capturable ({str(exc).splitlines()[0][:80]})"
        print(f"N={n:2d} track queries: eager {eager:.2f} ms/frame, CUDA graph {replay}")
    backend_times(args.checkpoint, args.iters)


def backend_times(path: str, iters: int) -> None:
    """TorchBackend.step eager vs CUDA graphs on the same random feeds: ms/frame and max |diff|."""
    from pavenet.backends import TorchBackend

    eager = TorchBackend(path, device="cuda", cuda_graphs=False)
    graphs = TorchBackend(path, device="cuda")
    cfg = eager.info.config
    rng = np.random.default_rng(0)
    for n in (0, 5, 20):
        feeds = {
            "image": rng.integers(0, 256, (1, cfg.input_height, cfg.input_width, 3), dtype=np.uint8),
            "track_queries": rng.standard_normal((1, n, cfg.d_model), dtype=np.float32),
            "track_keypoints": rng.uniform(0.2, 0.8, (1, n, cfg.num_keypoints, 2)).astype(np.float32),
            "prev_tokens": rng.standard_normal((1, eager.info.num_tokens, cfg.d_model), dtype=np.float32),
            "prev_valid": np.ones(1, np.float32),
        }
        a, b = eager.step(feeds), graphs.step(feeds)
        diff = max(float(np.abs(a[k] - b[k]).max()) for k in a)
        times = []
        for backend in (eager, graphs):
            for _ in range(5):
                backend.step(feeds)
            t = time.perf_counter()
            for _ in range(iters):
                backend.step(feeds)
            times.append((time.perf_counter() - t) / iters * 1000)
        print(f"TorchBackend.step N={n:2d}: eager {times[0]:.2f} ms/frame, CUDA graphs {times[1]:.2f} ms/frame "
              f"({times[0] / times[1]:.1f}x), max |diff| {diff:.1e}")


def graph_time(step, iters: int) -> float:
    """ms per replay of ``step`` captured as one CUDA graph."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return timed(graph.replay, iters)


if __name__ == "__main__":
    main()
