"""Video and image files through OpenCV, with one-line errors and atomic writes.

Frames are ``[H, W, 3]`` uint8 BGR arrays (OpenCV's order) everywhere in PAVENet.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from pavenet.errors import DataError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
# pip OpenCV has no H.264 encoder; VP8 WebM is what browsers play (it logs a harmless tag warning).
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG", ".webm": "VP80"}


def is_video_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


class VideoReader:
    """Iterate the frames of a video file.

    Raises :class:`DataError` (naming the file) when the file is missing, is not a video
    OpenCV can decode, or holds no frames.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(self.path, "no such file")
        if self.path.is_dir():
            raise DataError(self.path, "is a directory, not a video file")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise DataError(self.path, "not a video OpenCV can open (corrupt or unsupported format)")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 25.0
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        # The container's count; can be wrong for some files, so only use it for progress bars.
        self.frame_count = max(int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)

    def __iter__(self) -> Iterator[np.ndarray]:
        index = 0
        while True:
            ok, frame = self._cap.read()
            if not ok or frame is None:
                break
            index += 1
            yield frame
        self.close()
        if index == 0:
            raise DataError(self.path, "video has no readable frames")

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_video(path: str | Path) -> list[np.ndarray]:
    """All frames of a video, ``T x [H, W, 3]`` uint8 BGR."""
    with VideoReader(path) as reader:
        return list(reader)


def read_video_range(path: str | Path, start: int, count: int) -> list[np.ndarray]:
    """Frames ``start .. start + count - 1`` of a video (fewer at its end), ``[H, W, 3]`` uint8 BGR.

    Seeks (OpenCV decodes from the key frame before ``start``) instead of decoding the video from
    its first frame: a training clip of 5 frames from a 100-frame video costs ~6 ms instead of
    ~20 ms. Where the container does not land on ``start`` exactly, it reads from the beginning.
    """
    if start < 0 or count < 0:
        raise ValueError("start and count must be >= 0")
    with VideoReader(path) as reader:
        cap = reader._cap
        if start and not (cap.set(cv2.CAP_PROP_POS_FRAMES, start) and int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == start):
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            for _ in range(start):
                if not cap.grab():
                    return []
        frames = []
        for _ in range(count):
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            frames.append(frame)
        return frames


class VideoWriter:
    """Write frames to a video file; the file appears at ``path`` only when it is complete.

    Frames go to a temporary file beside ``path`` which is renamed on :meth:`close`, so a reader
    never sees a half-written file. Closing after an error keeps the frames written so far.
    """

    def __init__(self, path: str | Path, fps: float = 25.0):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in _FOURCC:
            raise DataError(self.path, f"unsupported video suffix {suffix!r}; use one of {sorted(_FOURCC)}")
        self.fps = float(fps)
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{suffix}")
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one ``[H, W, 3]`` uint8 BGR frame (all frames must have the same size)."""
        h, w = frame.shape[:2]
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*_FOURCC[self.path.suffix.lower()])
            self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise DataError(self.path, "OpenCV could not open a video writer for this file")
            self._size = (w, h)
        elif (w, h) != self._size:
            raise DataError(self.path, f"frame size {w}x{h} differs from the video's {self._size}")
        self._writer.write(np.ascontiguousarray(frame, dtype=np.uint8))
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            os.replace(self._tmp, self.path)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_image(path: str | Path) -> np.ndarray:
    """An image file as ``[H, W, 3]`` uint8 BGR, or a :class:`DataError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such image file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(path, "not an image OpenCV can decode (corrupt or unsupported format)")
    return image


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write an image atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix.lower() or ".png", image)
    if not ok:
        raise DataError(path, "OpenCV could not encode this image format")
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data.tobytes())
    os.replace(tmp, path)
