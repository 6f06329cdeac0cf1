"""PoseTrack18 / PoseTrack21 sequence files: reading (real and synthetic data) and writing.

One JSON file per video, COCO-like::

    {"images": [{"id", "file_name", "frame_id", "vid_id", "nframes", "is_labeled",
                 "ignore_regions_x": [[...]], "ignore_regions_y": [[...]]}, ...],
     "annotations": [{"id", "image_id", "track_id", "keypoints": [x, y, v] * K,
                      "bbox": [x, y, w, h], "bbox_head": [x, y, w, h]}, ...],
     "categories": [{"id": 1, "name": "person", "keypoints": [...], "skeleton": [...]}]}

``file_name`` is relative to the dataset root (the folder holding ``images/`` and
``posetrack_data/``). The synthetic writer may store frames in one video per sequence; its
images then carry ``file_name`` = the video and ``frame_index``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pavenet.clip import Clip, Frame
from pavenet.errors import DataError
from pavenet.layouts import KeypointLayout, get_layout, layout_from_names
from pavenet.video import VideoWriter, is_video_path, read_image, read_video_range, write_image

VIDEO_CHUNK = 25  # frames decoded per seek when a video is read frame by frame


@dataclass
class Sequence:
    """An annotated video whose images are read only when a clip needs them."""

    name: str
    layout: str
    frames: list[Frame]  # images not loaded
    sources: list[tuple[Path, int]]  # (image or video file, frame index inside a video)
    fps: float = 25.0
    _video_cache: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def labelled(self) -> np.ndarray:
        """[T] bool: which frames carry annotations."""
        return np.array([f.labelled for f in self.frames], bool)

    def load_image(self, index: int) -> np.ndarray:
        path, frame_index = self.sources[index]
        if not is_video_path(path):
            return read_image(path)
        frames = self._video_cache.get(path, {})
        if frame_index not in frames:  # sequential reading (evaluation) decodes a chunk at a time
            frames = self._read_video(path, frame_index, frame_index + VIDEO_CHUNK - 1)
        if frame_index not in frames:
            raise DataError(path, f"frame {frame_index} requested but the video ends before it")
        return frames[frame_index]

    def _read_video(self, path: Path, first: int, last: int) -> dict[int, np.ndarray]:
        """Decode frames ``first..last`` of one video into the cache (which holds one video's frames)."""
        self._video_cache.clear()
        frames = dict(enumerate(read_video_range(path, first, last - first + 1), first))
        self._video_cache[path] = frames
        return frames

    def clip(self, indices: list[int] | None = None) -> Clip:
        """The frames at ``indices`` (default: all) with their images loaded."""
        indices = list(range(len(self))) if indices is None else list(indices)
        wanted: dict[Path, list[int]] = {}
        for i in indices:
            path, frame_index = self.sources[i]
            if is_video_path(path):
                wanted.setdefault(path, []).append(frame_index)
        for path, frame_indices in wanted.items():  # one decode of the span a clip needs
            cached = self._video_cache.get(path, {})
            if any(f not in cached for f in frame_indices):
                self._read_video(path, min(frame_indices), max(frame_indices))
        frames = []
        for i in indices:
            f = self.frames[i]
            frames.append(Frame(self.load_image(i), f.keypoints, f.boxes, f.track_ids, f.head_boxes,
                                list(f.ignore_regions), f.labelled))
        return Clip(frames=frames, layout=self.layout, name=self.name, frame_indices=indices, fps=self.fps)


def load_json_annotations(path: Path) -> dict:
    if not path.exists():
        raise DataError(path, "no such annotation file")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"malformed JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except UnicodeDecodeError:
        raise DataError(path, "not a text JSON file") from None
    if not isinstance(data, dict):
        raise DataError(path, "expected a JSON object at the top level")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DataError(path, f"missing the {key!r} list of a PoseTrack/COCO file")
    return data


def _resolve_layout(path: Path, data: dict, layout: str | None) -> KeypointLayout:
    cats = data.get("categories") or []
    names = cats[0].get("keypoints") if cats and isinstance(cats[0], dict) else None
    if layout is not None:
        chosen = get_layout(layout)
        if names and len(names) != chosen.num_keypoints:
            raise DataError(path, f"file has {len(names)} keypoints, layout {chosen.name!r} has "
                                  f"{chosen.num_keypoints}")
        return chosen
    if not names:
        return get_layout("posetrack17")
    found = layout_from_names(names)
    if found is None:
        raise DataError(path, f"unknown keypoint names {names[:4]}...; pass layout= explicitly")
    return found


def _find_root(path: Path, first_file: str) -> Path:
    """The dataset root: the nearest ancestor of the JSON under which ``first_file`` exists."""
    for root in (path.parent.parent.parent, path.parent.parent, path.parent):
        if (root / first_file).exists():
            return root
    raise DataError(path, f"image {first_file!r} not found under any parent folder of the file; "
                          "pass image_root=")


def _boxes_xyxy(ann: dict, key: str) -> np.ndarray:
    box = ann.get(key)
    if not box or len(box) != 4:
        return np.full(4, np.nan, np.float32)
    x, y, w, h = (float(v) for v in box)
    return np.array([x, y, x + w, y + h], np.float32)


def _keypoints(path: Path, ann: dict, k: int) -> np.ndarray:
    raw = ann.get("keypoints")
    if raw is None:
        return np.zeros((k, 3), np.float32)
    if not isinstance(raw, list) or len(raw) != 3 * k:
        n = len(raw) if isinstance(raw, list) else type(raw).__name__
        raise DataError(path, f"annotation {ann.get('id')}: 'keypoints' has {n} values, expected {3 * k}")
    kp = np.asarray(raw, np.float32).reshape(k, 3)
    kp[kp[:, 2] <= 0] = 0  # COCO convention: unlabelled points are (0, 0, 0)
    return kp


def _ignore_regions(image: dict) -> list[np.ndarray]:
    xs, ys = image.get("ignore_regions_x") or [], image.get("ignore_regions_y") or []
    return [np.stack([np.asarray(x, np.float32), np.asarray(y, np.float32)], 1)
            for x, y in zip(xs, ys) if len(x) == len(y) and len(x) >= 3]


def read_posetrack(path: str | Path, image_root: str | Path | None = None,
                   layout: str | None = None) -> Sequence:
    """Read one PoseTrack18/21 sequence file (or a synthetic one written by this module)."""
    path = Path(path)
    data = load_json_annotations(path)
    lay = _resolve_layout(path, data, layout)
    images = sorted(data["images"], key=lambda im: (im.get("frame_id", im.get("id", 0)), im.get("frame_index", 0)))
    if not images:
        raise DataError(path, "the sequence has no images")
    for im in images:
        if "id" not in im or "file_name" not in im:
            raise DataError(path, "every image needs 'id' and 'file_name'")
    root = Path(image_root) if image_root is not None else _find_root(path, images[0]["file_name"])
    by_image: dict = {im["id"]: [] for im in images}
    for ann in data["annotations"]:
        if ann.get("image_id") not in by_image:
            raise DataError(path, f"annotation {ann.get('id')} points at unknown image {ann.get('image_id')}")
        if "track_id" not in ann:
            raise DataError(path, f"annotation {ann.get('id')} has no 'track_id'")
        by_image[ann["image_id"]].append(ann)
    frames, sources = [], []
    for im in images:
        anns = sorted(by_image[im["id"]], key=lambda a: a["track_id"])
        k = lay.num_keypoints
        frames.append(Frame(
            image=None,
            keypoints=np.array([_keypoints(path, a, k) for a in anns], np.float32).reshape(-1, k, 3),
            boxes=np.array([_boxes_xyxy(a, "bbox") for a in anns], np.float32).reshape(-1, 4),
            track_ids=np.array([int(a["track_id"]) for a in anns], np.int64),
            head_boxes=np.array([_boxes_xyxy(a, "bbox_head") for a in anns], np.float32).reshape(-1, 4),
            ignore_regions=_ignore_regions(im),
            labelled=bool(im.get("is_labeled", bool(anns))),
        ))
        file = root / im["file_name"]
        if not file.exists():
            raise DataError(path, f"image {im['file_name']!r} (image id {im['id']}) does not exist under {root}")
        sources.append((file, int(im.get("frame_index", 0))))
    fps = float((data.get("info") or {}).get("fps", 25.0))
    name = str(images[0].get("vid_id", path.stem))
    return Sequence(name=name, layout=lay.name, frames=frames, sources=sources, fps=fps)


def read_posetrack_dir(folder: str | Path, image_root: str | Path | None = None,
                       layout: str | None = None) -> list[Sequence]:
    """Every sequence file (``*.json``) in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "no such annotation folder")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise DataError(folder, "holds no PoseTrack sequence files (*.json)")
    return [read_posetrack(f, image_root, layout) for f in files]


def _xywh(box: np.ndarray) -> list[float] | None:
    if not np.all(np.isfinite(box)):
        return None
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def write_posetrack21(clip: Clip, root: str | Path, split: str, video_id: int,
                      image_format: str = "mp4") -> Path:
    """Write ``clip`` as a PoseTrack21 sequence under ``root``; returns the JSON path.

    Frames go to ``root/videos/<split>/<name>.mp4`` (``image_format="mp4"``) or to
    ``root/images/<split>/<name>/NNNNNN.<jpg|png>``; annotations to
    ``root/posetrack_data/<split>/<name>.json``.
    """
    root = Path(root)
    lay = get_layout(clip.layout)
    if image_format not in ("mp4", "jpg", "png"):
        raise DataError(root, f"unknown image format {image_format!r}; use mp4, jpg or png")
    images, annotations = [], []
    video_rel = f"videos/{split}/{clip.name}.mp4"
    writer = VideoWriter(root / video_rel, clip.fps) if image_format == "mp4" else None
    try:
        for t, frame in enumerate(clip.frames):
            image_id = video_id * 100000 + t
            entry = {"id": image_id, "frame_id": image_id, "vid_id": clip.name, "nframes": len(clip),
                     "is_labeled": frame.labelled, "has_labeled_person": frame.num_people > 0,
                     "ignore_regions_x": [p[:, 0].tolist() for p in frame.ignore_regions],
                     "ignore_regions_y": [p[:, 1].tolist() for p in frame.ignore_regions]}
            if writer is not None:
                writer.write(frame.image)
                entry.update(file_name=video_rel, frame_index=t)
            else:
                rel = f"images/{split}/{clip.name}/{t:06d}.{image_format}"
                write_image(root / rel, frame.image)
                entry["file_name"] = rel
            images.append(entry)
            for n in range(frame.num_people):
                ann = {"id": image_id * 100 + n, "image_id": image_id, "category_id": 1,
                       "track_id": int(frame.track_ids[n]), "person_id": int(frame.track_ids[n]),
                       "keypoints": [float(v) for v in frame.keypoints[n].reshape(-1)],
                       "bbox": _xywh(frame.boxes[n])}
                head = _xywh(frame.head_boxes[n])
                if head is not None:
                    ann["bbox_head"] = head
                annotations.append(ann)
    finally:
        if writer is not None:
            writer.close()
    categories = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(lay.keypoints),
                   "skeleton": [[a + 1, b + 1] for a, b in lay.skeleton]}]
    doc = {"info": {"fps": clip.fps, "generator": "pavenet"}, "images": images,
           "annotations": annotations, "categories": categories}
    out = root / "posetrack_data" / split / f"{clip.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, out)
    return out
