"""Where frames come from: a video file, a webcam, a stream URL, or a folder/glob of images.

Files are read ahead by a thread into a small queue, so decoding overlaps inference. Live
sources (webcam, RTSP/HTTP) are read by a thread that keeps only the newest frame: a slow
consumer drops frames instead of falling further and further behind.
"""

from __future__ import annotations

import glob
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from pavenet.errors import DataError, PavenetError
from pavenet.video import VideoReader, is_video_path, read_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_END = object()


class FrameSource:
    """Iterable of BGR frames with ``name``, ``fps``, ``frame_count`` (None when unknown), ``live``."""

    name: str
    fps: float
    frame_count: int | None
    live: bool

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Stop reading (threads end, devices are released)."""


class VideoFileSource(FrameSource):
    def __init__(self, path: str | Path, start: int = 0, prefetch: int = 8):
        with VideoReader(path) as probe:  # missing, unreadable and zero-frame files fail here, before any work
            next(iter(probe))
        self.reader = VideoReader(path)
        self.name, self.fps, self.live = Path(path).stem, self.reader.fps, False
        self.frame_count = max(self.reader.frame_count - start, 0) or None
        self.start, self.prefetch = start, prefetch
        self._stop = threading.Event()

    def __iter__(self) -> Iterator[np.ndarray]:
        q: queue.Queue = queue.Queue(self.prefetch)
        error: list[BaseException] = []

        def read() -> None:
            try:
                for i, frame in enumerate(self.reader):
                    if self._stop.is_set():
                        break
                    if i >= self.start:
                        q.put(frame)
            except BaseException as exc:  # handed to the consumer
                error.append(exc)
            finally:
                q.put(_END)

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        while (item := q.get()) is not _END:
            yield item
        if error:
            raise error[0]

    def close(self) -> None:
        self._stop.set()


class ImageFolderSource(FrameSource):
    def __init__(self, spec: str, start: int = 0):
        path = Path(spec)
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else \
            sorted(Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(spec, "no images (" + ", ".join(IMAGE_SUFFIXES) + ") found")
        self.files = files[start:]
        self.name = path.name if path.is_dir() else path.parent.name or "images"
        self.fps, self.frame_count, self.live = 25.0, len(self.files), False

    def __iter__(self) -> Iterator[np.ndarray]:
        for f in self.files:
            yield read_image(f)


class LiveSource(FrameSource):
    """A camera index or stream URL; a thread keeps only the newest frame."""

    def __init__(self, spec: str | int):
        self.cap = cv2.VideoCapture(spec)
        if not self.cap.isOpened():
            raise DataError(str(spec), "cannot open this camera or stream")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 240 else 30.0
        self.name = f"camera{spec}" if isinstance(spec, int) else "stream"
        self.frame_count, self.live = None, True
        self.dropped = 0
        self._latest: np.ndarray | None = None
        self._fresh = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._grab, daemon=True)
        self._thread.start()

    def _grab(self) -> None:
        while not self._stop.is_set():
            ok, frame = self.cap.read()
            with self._fresh:
                if not ok:
                    self._stop.set()
                elif self._latest is not None:
                    self.dropped += 1  # the consumer did not take the previous one in time
                self._latest = frame if ok else self._latest
                self._fresh.notify_all()

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            with self._fresh:
                while self._latest is None and not self._stop.is_set():
                    self._fresh.wait(timeout=1.0)
                if self._latest is None:
                    return
                frame, self._latest = self._latest, None
            yield frame

    def close(self) -> None:
        self._stop.set()
        time.sleep(0.01)
        self.cap.release()


def open_source(spec: str, start: int = 0) -> FrameSource:
    """A video file, a webcam index (``0``), an ``rtsp://``/``http(s)://`` URL, a folder or a glob."""
    if spec.isdigit():
        return LiveSource(int(spec))
    if "://" in spec:
        return LiveSource(spec)
    path = Path(spec)
    if path.is_dir() or any(c in spec for c in "*?["):
        return ImageFolderSource(spec, start)
    if not path.exists():
        raise DataError(spec, "no such file")
    if is_video_path(path) or path.suffix.lower() not in IMAGE_SUFFIXES:
        return VideoFileSource(path, start)
    raise PavenetError(f"{spec}: a single image is not a stream; pass its folder")
