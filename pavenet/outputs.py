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
    """Writes ``video.mp4`` (or ``video_name``; ``.webm`` plays in browsers), ``tracks.json`` and
    ``tracks.csv`` in ``folder`` as frames arrive.

    Memory stays flat on long streams: CSV rows and per-frame JSON records go to disk at once;
    ``tracks.json`` is assembled from the records on :meth:`close`.
    """

    def __init__(self, folder: str | Path, layout: KeypointLayout, fps: float, source: str, video: bool = True,
                 video_name: str = "video.mp4"):
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
        self.video_path = self.folder / video_name if video else None
        self._per_id: dict[int, dict] = {}
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
            self._count(index, p)
            flat = [v for kp in p["keypoints"] for v in kp]
            self._csv.writerow([index, p["track_id"], p["score"], *p["box"], *flat])
        self.num_frames += 1
        if self._thread is not None and annotated is not None:
            self._queue.put(annotated)

    def _count(self, index: int, person: dict) -> None:
        s = self._per_id.setdefault(person["track_id"], {"frames": 0, "score_sum": 0.0, "segments": []})
        s["frames"] += 1
        s["score_sum"] += float(np.mean([kp[2] for kp in person["keypoints"]]))
        if s["segments"] and s["segments"][-1][1] == index - 1:
            s["segments"][-1][1] = index
        else:
            s["segments"].append([index, index])

    def summary(self) -> list[dict]:
        """Per track ID: frames present, first/last frame, mean keypoint score, and the
        ``segments`` ([first, last] frame ranges) in which it was present; sorted by ID."""
        return [{"track_id": tid, "frames": s["frames"], "first": s["segments"][0][0], "last": s["segments"][-1][1],
                 "mean_keypoint_score": s["score_sum"] / s["frames"], "segments": [list(x) for x in s["segments"]]}
                for tid, s in sorted(self._per_id.items())]

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
