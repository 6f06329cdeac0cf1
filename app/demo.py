"""What the browser demo does, without Gradio: per-session trackers over one shared model, the
video job (stream previews, then the annotated video, tracks.json/csv and a per-ID summary) and
the webcam step (drops frames that arrive while one is being processed).

All tracking and drawing comes from :mod:`pavenet`; this module only wires it to sessions.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pavenet.draw import annotate, new_trails
from pavenet.errors import PavenetError
from pavenet.outputs import TrackOutputs
from pavenet.poses import Poses
from pavenet.sources import open_source
from pavenet.track_cli import load_tracker
from pavenet.tracker import Tracker


@dataclass(frozen=True)
class Settings:
    """What the user can change in the page."""

    score_thr: float | None = None  # a detection starts a track from this score (None: the model's new_track_thr)
    keypoint_thr: float | None = None  # keypoints below are not drawn (None: the model's tuned one)
    smooth: bool = False  # One-Euro smoothing of drawn keypoints
    trails: bool = True  # draw each person's recent path


@dataclass(frozen=True)
class Limits:
    """Server-side limits: video length and size, and how long files and idle sessions are kept
    (``cache_minutes``: uploads, annotated videos, tracks.json/csv and webcam sessions untouched
    for this long are deleted)."""

    max_upload_mb: float = 200.0
    max_seconds: float = 120.0
    cache_minutes: float = 60.0

    @property
    def cache_seconds(self) -> float:
        return 60.0 * self.cache_minutes


def remove_older_than(root: str | Path, max_age_s: float, keep: set[str] | frozenset[str] = frozenset()) -> int:
    """Delete files under ``root`` older than ``max_age_s`` seconds (except ``keep``), then the
    folders they leave empty; returns how many files went. Age counts from the later of the
    modification and inode-change times: a cached copy keeps its source's mtime but gets a new ctime."""
    root, now, removed = Path(root), time.time(), 0
    if not root.is_dir():
        return 0
    for dirpath, _, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
                if path not in keep and now - max(st.st_mtime, st.st_ctime) > max_age_s:
                    os.remove(path)
                    removed += 1
            except FileNotFoundError:
                continue
        if dirpath != str(root):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)  # only succeeds when empty
    return removed


class JobFolders:
    """Per-job output folders under one root (``job-*``), removed once older than ``max_age_s``."""

    def __init__(self, root: str | Path | None = None, max_age_s: float = 3600.0):
        self.root = Path(root or tempfile.mkdtemp(prefix="pavenet-app-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s

    def new(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="job-", dir=self.root))

    def sweep(self) -> int:
        return remove_older_than(self.root, self.max_age_s)


class CacheSweeper:
    """A daemon thread that, every ``every_s`` seconds, deletes files older than ``max_age_s`` in
    ``folders`` (the app's job folders and Gradio's cache, whose own ``delete_cache`` misses the
    files a handler returns), sparing the paths ``keep()`` names (e.g. the bundled examples)."""

    def __init__(self, folders: list[Path], max_age_s: float, every_s: float, keep=lambda: frozenset()):
        self.folders, self.max_age_s, self.every_s, self.keep = folders, max_age_s, every_s, keep
        self.removed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pavenet-cache-sweeper", daemon=True)

    def start(self) -> CacheSweeper:
        self._thread.start()
        return self

    def sweep(self) -> int:
        keep = set(self.keep())
        n = sum(remove_older_than(f, self.max_age_s, keep) for f in self.folders)
        self.removed += n
        return n

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            with contextlib.suppress(Exception):  # a sweep that fails is retried at the next tick
                self.sweep()

    def stop(self) -> None:
        self._stop.set()


class SharedModel:
    """The model, loaded once; each session gets its own :class:`Tracker` over the same backend
    (ONNX Runtime sessions are safe to call from several threads)."""

    def __init__(self, weights: str | Path, device: str = "auto"):
        self.base = load_tracker(weights, device, smooth=False)
        self.weights = str(weights)

    @property
    def provider(self) -> str:
        return self.base.provider

    def new_tracker(self, settings: Settings, fps: float = 30.0) -> Tracker:
        given = {"new_track_thr": settings.score_thr, "keypoint_thr": settings.keypoint_thr}
        thresholds = self.base.thresholds.override(**{k: v for k, v in given.items() if v is not None})
        return Tracker(self.base.backend, thresholds, smooth=settings.smooth, fps=fps)


@dataclass
class VideoProgress:
    """One update of the video job: a preview while running; the results when ``done``."""

    frame: int
    total: int | None
    preview: np.ndarray | None  # RGB annotated frame
    done: bool = False
    video: Path | None = None
    tracks_json: Path | None = None
    tracks_csv: Path | None = None
    summary: list[dict] = field(default_factory=list)
    fps: float = 0.0


def track_video(model: SharedModel, path: str | Path, settings: Settings, limits: Limits = Limits(),
                out_dir: str | Path | None = None, preview_every: int = 5) -> Iterator[VideoProgress]:
    """Track an uploaded video with a fresh tracker, yielding a preview every ``preview_every``
    frames and finally the outputs (``annotated.webm``, ``tracks.json``, ``tracks.csv``) in
    ``out_dir`` (a new temporary folder when None; the app passes :meth:`JobFolders.new`)."""
    path = Path(path)
    if not path.is_file():
        raise PavenetError(f"{path.name}: the upload did not arrive")
    size_mb = path.stat().st_size / 2**20
    if size_mb > limits.max_upload_mb:
        raise PavenetError(f"{path.name}: {size_mb:.0f} MB is over this server's {limits.max_upload_mb:.0f} MB limit")
    source = open_source(str(path))
    try:
        if source.frame_count and source.fps and source.frame_count / source.fps > limits.max_seconds:
            raise PavenetError(f"{path.name}: {source.frame_count / source.fps:.0f} s is longer than this server's "
                               f"{limits.max_seconds:.0f} s limit")
        max_frames = int(limits.max_seconds * (source.fps or 30))
        tracker = model.new_tracker(settings, source.fps or 30.0)
        folder = Path(out_dir or tempfile.mkdtemp(prefix="pavenet-app-"))
        outputs = TrackOutputs(folder, tracker.layout, source.fps or 30.0, path.name, video_name="annotated.webm")
        trails = new_trails() if settings.trails else None
        start, n = time.perf_counter(), 0
        try:
            for frame in source:
                poses = tracker.update(frame)
                fps = (n + 1) / (time.perf_counter() - start)
                image = annotate(frame, poses, settings.keypoint_thr, trails, fps)
                outputs.add(n, poses, image)
                n += 1
                if n % preview_every == 1 or preview_every == 1:
                    yield VideoProgress(n, source.frame_count, cv2.cvtColor(image, cv2.COLOR_BGR2RGB), fps=fps)
                if n >= max_frames:
                    break
        finally:
            outputs.close()
    finally:
        source.close()
    if n == 0:
        raise PavenetError(f"{path.name}: no frame could be decoded")
    yield VideoProgress(n, n, None, True, outputs.video_path, folder / "tracks.json", folder / "tracks.csv",
                        outputs.summary(), n / (time.perf_counter() - start))


class WebcamSession:
    """One browser session's live tracker. ``step`` returns None for a frame that arrived while
    the previous one was still being processed (the frame is dropped, not queued)."""

    def __init__(self, model: SharedModel, settings: Settings = Settings()):
        self.model = model
        self._lock = threading.Lock()
        self.settings = settings
        self.dropped = 0
        self.reset()

    def reset(self, settings: Settings | None = None) -> None:
        self.settings = settings or self.settings
        self.tracker = self.model.new_tracker(self.settings)
        self.trails = new_trails()
        self._times: list[float] = []

    def close(self) -> None:
        """Release the tracker and its state (the session's tab closed or expired)."""
        with self._lock:
            self.tracker.reset()
            self.trails = new_trails()

    @property
    def fps(self) -> float:
        """Frames processed per second over the last ~30 frames."""
        t = self._times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def step(self, rgb: np.ndarray, settings: Settings | None = None) -> tuple[np.ndarray, Poses] | None:
        """[H, W, 3] RGB frame -> (annotated RGB frame, poses), or None when dropped."""
        if not self._lock.acquire(blocking=False):
            self.dropped += 1
            return None
        try:
            if settings is not None and settings != self.settings:
                self.reset(settings)  # new thresholds: a new tracker (identities restart)
            bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
            try:
                poses = self.tracker.update(bgr)
            except PavenetError:  # the camera changed resolution: start a new stream
                self.reset()
                poses = self.tracker.update(bgr)
            self._times = [*self._times[-29:], time.perf_counter()]
            image = annotate(bgr, poses, self.settings.keypoint_thr, self.trails if self.settings.trails else None,
                             self.fps)
            return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), poses
        finally:
            self._lock.release()
