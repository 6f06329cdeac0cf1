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
    """Writes ``video.mp4``, ``tracks.json``, ``tracks.csv`` in ``folder`` as frames arrive.

    Memory stays flat on long streams: CSV rows and per-frame JSON records go to disk at once;
    ``tracks.json`` is assembled from the records on :meth:`close`.
    """

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
        self.num_frames = 0
        self.track_ids: set[int] = set()
        self._records_path = self.folder / ".tracks.jsonl.partial"
        self._records = open(self._records_path, "w", encoding="utf-8")
        self._csv_tmp = self.folder / ".tracks.csv.partial"
        self._csv_file = open(self._csv_tmp, "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._csv_file)
        kp_cols = [f"{n}_{c}" for n in layout.keypoints for c in ("x", "y", "score")]
        self._csv.writerow(["frame", "track_id", "score", "x1", "y1", "x2", "y2", *kp_cols])
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
        record = {"frame": index, **poses.to_dict()}
        self._records.write(json.dumps(record) + "\n")
        for p in record["people"]:
            self.track_ids.add(p["track_id"])
            flat = [v for kp in p["keypoints"] for v in kp]
            self._csv.writerow([index, p["track_id"], p["score"], *p["box"], *flat])
        self.num_frames += 1
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
        self._csv_file.close()
        os.replace(self._csv_tmp, self.folder / "tracks.csv")
        self._records.close()
        written += [self._write_json(), self.folder / "tracks.csv"]
        if self._error:
            raise PavenetError(f"{self.video_path}: video encoding failed ({self._error[0]})")
        return written

    def _write_json(self) -> Path:
        """``tracks.json`` from the per-frame records, streamed (one frame in memory at a time)."""
        head = {"source": self.source, "fps": self.fps, "num_frames": self.num_frames,
                "track_ids": sorted(self.track_ids), "keypoint_layout": self.layout.to_dict()}
        path = self.folder / "tracks.json"
        tmp = path.with_name(f".{path.name}.partial")
        with open(tmp, "w", encoding="utf-8") as out, open(self._records_path, encoding="utf-8") as records:
            out.write(json.dumps(head)[:-1] + ', "frames": [')
            for i, line in enumerate(records):
                out.write(("," if i else "") + line.strip())
            out.write("]}")
        os.replace(tmp, path)
        self._records_path.unlink()
        return path
