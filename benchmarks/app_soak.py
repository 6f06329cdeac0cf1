"""Soak test of `pavenet-app`: does a demo left running keep its memory and disk bounded?

    python benchmarks/app_soak.py                          # 4 clients x 25 jobs, 2,000 webcam frames
    python benchmarks/app_soak.py --cache-minutes 0.5      # a short window: watch the cache empty

Starts `pavenet-app` on 127.0.0.1 in its own process (its own temporary folder, so its disk use is
measurable), drives it with `gradio_client`: N concurrent clients each run M video jobs on a
short synthetic video, then one client streams webcam frames into one session through
`webcam_step` (the webcam stream's handler and per-session state as a plain API call: gradio_client
cannot drive streaming events).
Prints the server's RSS and the size of its temporary files at the start, after warm-up (the
first 10 jobs), at the end of the jobs, over the webcam stream and after the cache window has
passed, with the count of failed jobs. Figures, not assertions: the test suite runs a tiny
version for correctness.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def folder_mb(path: Path) -> tuple[float, int]:
    """(size in MB, number of files) under ``path``."""
    size, count = 0, 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                size += os.stat(os.path.join(root, f)).st_size
                count += 1
            except FileNotFoundError:
                pass
    return size / 2**20, count


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_video(folder: Path, frames: int) -> Path:
    from pavenet.synth import SynthConfig, generate_clip, suite_config
    from pavenet.video import VideoWriter

    clip = generate_clip(suite_config("crossing", SynthConfig(width=320, height=240)), "test", 3, 0, frames)
    path = folder / "soak.mp4"
    with VideoWriter(path, clip.fps) as w:
        for f in clip.frames:
            w.write(f.image)
    return path


@dataclass
class Server:
    """`pavenet-app` in a child process with its own TMPDIR (Gradio's cache and the job folders)."""

    weights: str
    cache_minutes: float
    tmp: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 120.0) -> None:
        env = {**os.environ, "TMPDIR": str(self.tmp), "GRADIO_TEMP_DIR": str(self.tmp / "gradio"),
               "GRADIO_ANALYTICS_ENABLED": "False"}
        cmd = [sys.executable, "-m", "app.cli", "--weights", self.weights, "--port", str(self.port),
               "--cache-minutes", str(self.cache_minutes), "--no-example"]
        # stderr to a file, not a pipe: nobody reads a pipe while jobs run, and a server whose
        # log fills the pipe's 64 KiB blocks on its next write
        self.log = self.tmp.with_name(self.tmp.name + ".log")  # beside the measured folder, not in it
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pavenet-app exited: {self.log_tail()}")
            try:
                urllib.request.urlopen(self.url, timeout=2).close()
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("pavenet-app did not answer in time")

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server's stderr (for error messages)."""
        return self.log.read_text(errors="replace")[-chars:] if self.log and self.log.exists() else ""

    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def disk(self) -> tuple[float, int]:
        return folder_mb(self.tmp)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def run_jobs(url: str, video: Path, clients: int, jobs: int, on_done=None) -> int:
    """``clients`` threads, each with its own gradio_client session, run ``jobs`` video jobs; returns failures."""
    from gradio_client import Client, handle_file

    failures, lock, done = [0], threading.Lock(), [0]

    def worker():
        client = Client(url, verbose=False)
        for _ in range(jobs):
            try:
                result = client.predict(handle_file(str(video)), 0.5, 0.3, False, True, api_name="/track_video")
                ok = str(result[1]).startswith("Done:")
            except Exception as exc:  # a failed job is counted, not fatal
                print(f"job failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                ok = False
            with lock:
                failures[0] += not ok
                done[0] += 1
                if on_done:
                    on_done(done[0])

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures[0]


def stream_webcam(url: str, frames: int, image: Path, sample_every: int, server: Server) -> tuple[int, list]:
    """One webcam session of ``frames`` frames; returns (failures, [(frame, RSS MB)])."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    failures, samples = 0, []
    for i in range(frames):
        try:
            client.predict(handle_file(str(image)), 0.5, 0.3, False, True, api_name="/webcam_step")
        except Exception as exc:
            failures += 1
            print(f"webcam frame failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if (i + 1) % sample_every == 0:
            samples.append((i + 1, server.rss()))
    return failures, samples


def soak(weights: str, clients: int = 4, jobs: int = 25, frames: int = 30, webcam_frames: int = 2000,
         cache_minutes: float = 60.0, wait_cache: bool = False, log=print) -> dict:
    """Run the soak; returns every figure it printed."""
    import cv2

    with tempfile.TemporaryDirectory(prefix="pavenet-soak-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "server").mkdir()
        video = make_video(tmp, frames)
        from pavenet.video import read_video

        frame = next(iter(read_video(video)))
        still = tmp / "webcam.png"
        cv2.imwrite(str(still), frame)
        server = Server(weights, cache_minutes, tmp / "server")
        server.start()
        out: dict = {}
        try:
            out["rss_start"], (out["disk_start_mb"], _) = server.rss(), server.disk()
            log(f"start: RSS {out['rss_start']:.0f} MB, temp files {out['disk_start_mb']:.1f} MB")
            warm = min(10, clients * jobs)

            def on_done(n):
                if n == warm:
                    out["rss_warm"] = server.rss()
                    out["disk_warm_mb"], out["files_warm"] = server.disk()

            t0 = time.perf_counter()
            out["failed_jobs"] = run_jobs(server.url, video, clients, jobs, on_done)
            out["jobs"] = clients * jobs
            out["jobs_s"] = time.perf_counter() - t0
            out["rss_jobs_end"] = server.rss()
            out["disk_jobs_end_mb"], out["files_jobs_end"] = server.disk()
            log(f"after {warm} jobs: RSS {out['rss_warm']:.0f} MB, temp files {out['disk_warm_mb']:.1f} MB "
                f"({out['files_warm']} files)")
            log(f"after {out['jobs']} jobs ({out['jobs_s']:.0f} s, {clients} clients): RSS "
                f"{out['rss_jobs_end']:.0f} MB ({out['rss_jobs_end'] / out['rss_warm']:.3f}x the warm RSS), temp "
                f"files {out['disk_jobs_end_mb']:.1f} MB ({out['files_jobs_end']} files); failed jobs "
                f"{out['failed_jobs']}")
            if webcam_frames:
                every = max(webcam_frames // 10, 1)
                out["webcam_failures"], samples = stream_webcam(server.url, webcam_frames, still, every, server)
                warm_rss = samples[min(1, len(samples) - 1)][1]
                out["webcam_rss_warm"], out["webcam_rss_end"] = warm_rss, samples[-1][1]
                out["webcam_frames"] = webcam_frames
                log(f"webcam session, {webcam_frames} frames: RSS " +
                    ", ".join(f"{n}: {r:.0f}" for n, r in samples) +
                    f" MB; end / after warm-up {out['webcam_rss_end'] / warm_rss:.3f}x; failed frames "
                    f"{out['webcam_failures']}")
            if wait_cache:
                window = 60 * cache_minutes
                time.sleep(window + max(min(window / 4, 3600), 1) + 2)
                out["disk_after_window_mb"], out["files_after_window"] = server.disk()
                log(f"after the {window:.0f} s cache window: temp files {out['disk_after_window_mb']:.1f} MB "
                    f"({out['files_after_window']} files)")
        finally:
            server.stop()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=str(ROOT / "weights" / "pavenet-t.onnx"), help="model the app serves")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    p.add_argument("--jobs", type=int, default=25, help="video jobs per client (default 25)")
    p.add_argument("--frames", type=int, default=30, help="frames of the test video (default 30)")
    p.add_argument("--webcam-frames", type=int, default=2000, help="frames streamed by one webcam session")
    p.add_argument("--cache-minutes", type=float, default=60.0, help="the app's --cache-minutes (default 60)")
    p.add_argument("--wait-cache", action="store_true", help="wait out the cache window and measure again")
    args = p.parse_args()
    out = soak(args.weights, args.clients, args.jobs, args.frames, args.webcam_frames, args.cache_minutes,
               args.wait_cache)
    ratio = out["rss_jobs_end"] / out["rss_warm"]
    print(f"soak: {out['jobs']} jobs, {out['failed_jobs']} failed; server RSS {out['rss_warm']:.0f} -> "
          f"{out['rss_jobs_end']:.0f} MB ({ratio:.3f}x after warm-up)")


if __name__ == "__main__":
    main()
