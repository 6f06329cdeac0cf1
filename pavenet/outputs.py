"""What `pavenet-track` writes: the annotated video, tracks.json and tracks.csv.

The video is encoded by a thread fed through a bounded queue (encoding overlaps inference).
``close()`` always finalises everything written so far: the mp4 is playable and the JSON valid
even when the stream broke or the user pressed Ctrl-C.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import threading
from pathlib import Path

import numpy as np

from pavenet.errors import PavenetError
from pavenet.layouts import KeypointLayout
from pavenet.poses import Poses
from pavenet.video import VideoWriter

_END = object()


class TrackOutputs:
    """Collects per-frame results and writes ``video.mp4``, ``tracks.json``, ``tracks.csv`` in ``folder``."""

    def __init__(self, folder: str | Path, layout: KeypointLayout, fps: float, source: str, video: bool = True):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise PavenetError(f"{self.folder}: output folder is not writable ({exc.strerror})") from None
        self.layout, self.fps, self.source = layout, fps, source
        self.frames: list[dict] = []
        self.video_path = self.folder / "video.mp4" if video else None
        self._queue: queue.Queue = queue.Queue(8)
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._encode, daemon=True) if video else None
        if self._thread:
            self._thread.start()

    def _encode(self) -> None:
        try:
            with VideoWriter(self.video_path, self.fps) as writer:
                while (frame := self._queue.get()) is not _END:
                    writer.write(frame)
        except BaseException as exc:  # reported by close()
            self._error.append(exc)
            while self._queue.get() is not _END:  # keep draining so the producer never blocks
                pass

    def add(self, index: int, poses: Poses, annotated: np.ndarray | None = None) -> None:
        self.frames.append({"frame": index, **poses.to_dict()})
        if self._thread is not None and annotated is not None:
            self._queue.put(annotated)

    def close(self) -> list[Path]:
        """Finish the video and write the JSON and CSV; returns the files written."""
        written = []
        if self._thread is not None:
            self._queue.put(_END)
            self._thread.join()
            if self.video_path.exists():
                written.append(self.video_path)
        written += [self._write_json(), self._write_csv()]
        if self._error:
            raise PavenetError(f"{self.video_path}: video encoding failed ({self._error[0]})")
        return written

    def _write_json(self) -> Path:
        ids = sorted({p["track_id"] for f in self.frames for p in f["people"]})
        doc = {"source": self.source, "fps": self.fps, "num_frames": len(self.frames), "track_ids": ids,
               "keypoint_layout": self.layout.to_dict(), "frames": self.frames}
        return _atomic_write(self.folder / "tracks.json", json.dumps(doc))

    def _write_csv(self) -> Path:
        path = self.folder / "tracks.csv"
        tmp = path.with_name(f".{path.name}.partial")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            kp_cols = [f"{n}_{c}" for n in self.layout.keypoints for c in ("x", "y", "score")]
            out.writerow(["frame", "track_id", "score", "x1", "y1", "x2", "y2", *kp_cols])
            for f in self.frames:
                for p in f["people"]:
                    flat = [v for kp in p["keypoints"] for v in kp]
                    out.writerow([f["frame"], p["track_id"], p["score"], *p["box"], *flat])
        os.replace(tmp, path)
        return path


def _atomic_write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
