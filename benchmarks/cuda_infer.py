"""Eager PyTorch inference latency of one tracker step on CUDA (issue 13's GPU figure).

    python benchmarks/cuda_infer.py [--checkpoint weights/pavenet-t.pt] [--iters 200]

Times the model's forward for one 256x256 frame (batch 1) with N = 0 and N = 20 track queries,
eager and with CUDA graphs (``torch.cuda.graphs``: the whole step captured once per N, replayed),
and prints ms/frame for each.
"""

from __future__ import annotations

import argparse
import time

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
