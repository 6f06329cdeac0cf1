"""COCO keypoints (``person_keypoints_*.json``) as pseudo-video clips.

Trackers are commonly pre-trained on still images by moving each image with a smooth random
affine motion across T frames (CenterTrack, TrackFormer, PAVE-Net's COCO "pseudo-video"
stage); every person keeps their identity across the frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pavenet.clip import Clip, Frame
from pavenet.errors import DataError
from pavenet.geometry import similarity_matrix
from pavenet.video import read_image
from training.data.augment import warp_frame
from training.data.posetrack import load_json_annotations


class CocoKeypoints:
    """Images of a COCO keypoints file that show at least one annotated person."""

    def __init__(self, json_path: str | Path, image_dir: str | Path):
        self.path, self.image_dir = Path(json_path), Path(image_dir)
        if not self.image_dir.is_dir():
            raise DataError(self.image_dir, "no such image folder")
        data = load_json_annotations(self.path)
        self.images = {im["id"]: im for im in data["images"] if "id" in im and "file_name" in im}
        self.anns: dict[int, list[dict]] = {}
        for ann in data["annotations"]:
            if ann.get("image_id") not in self.images:
                raise DataError(self.path, f"annotation {ann.get('id')} points at unknown image {ann.get('image_id')}")
            raw = ann.get("keypoints")
            if not isinstance(raw, list) or len(raw) != 51:
                n = len(raw) if isinstance(raw, list) else "no"
                raise DataError(self.path, f"annotation {ann.get('id')}: 'keypoints' has {n} values, expected 51")
            self.anns.setdefault(ann["image_id"], []).append(ann)
        self.ids = sorted(i for i, anns in self.anns.items()
                          if any(a.get("num_keypoints", 1) > 0 and not a.get("iscrowd") for a in anns))
        if not self.ids:
            raise DataError(self.path, "no image has an annotated person")

    def __len__(self) -> int:
        return len(self.ids)

    def frame(self, index: int) -> Frame:
        """Image ``index`` with its people; crowd annotations become ignore regions."""
        image_id = self.ids[index]
        image = read_image(self.image_dir / self.images[image_id]["file_name"])
        people = [a for a in self.anns[image_id] if not a.get("iscrowd")]
        crowds = [a for a in self.anns[image_id] if a.get("iscrowd") and a.get("bbox")]
        kp = np.array([a["keypoints"] for a in people], np.float32).reshape(-1, 17, 3)
        kp[kp[..., 2] <= 0] = 0
        boxes = np.array([_xyxy(a.get("bbox"), k) for a, k in zip(people, kp)], np.float32).reshape(-1, 4)
        ignore = [np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32)
                  for x, y, w, h in (a["bbox"] for a in crowds)]
        return Frame(image=image, keypoints=kp, boxes=boxes, track_ids=np.arange(len(people), dtype=np.int64),
                     head_boxes=np.full((len(people), 4), np.nan, np.float32), ignore_regions=ignore)

    def pseudo_clip(self, index: int, length: int, rng: np.random.Generator, max_shift: float = 0.06,
                    max_rotate: float = 5.0, max_zoom: float = 0.1) -> Clip:
        """``length`` frames of image ``index`` moving smoothly under a random similarity transform."""
        return pseudo_clip(self.frame(index), length, rng, max_shift, max_rotate, max_zoom,
                           name=f"coco-{self.ids[index]}")


def _xyxy(bbox, keypoints: np.ndarray) -> np.ndarray:
    if bbox and len(bbox) == 4:
        x, y, w, h = bbox
        return np.array([x, y, x + w, y + h], np.float32)
    pts = keypoints[keypoints[:, 2] > 0, :2]
    return np.concatenate([pts.min(0), pts.max(0)]) if len(pts) else np.zeros(4, np.float32)


def pseudo_clip(frame: Frame, length: int, rng: np.random.Generator, max_shift: float = 0.06,
                max_rotate: float = 5.0, max_zoom: float = 0.1, name: str = "pseudo") -> Clip:
    """Turn one annotated image into a clip by a smooth random camera motion (identity at t=0)."""
    h, w = frame.image.shape[:2]
    centre = ((w - 1) / 2, (h - 1) / 2)
    end_shift = rng.uniform(-max_shift, max_shift, 2) * (w, h)
    end_angle = rng.uniform(-max_rotate, max_rotate)
    end_zoom = np.exp(rng.uniform(-max_zoom, max_zoom))
    frames = []
    for t in range(length):
        s = t / max(length - 1, 1)
        s = s * s * (3 - 2 * s)  # smoothstep: starts and ends gently
        m = similarity_matrix(centre, end_zoom**s, end_angle * s, tuple(end_shift * s))
        frames.append(warp_frame(frame, m, (w, h)))
    return Clip(frames=frames, layout="coco17", name=name, frame_indices=list(range(length)))
