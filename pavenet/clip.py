"""The one sample structure every reader produces: a clip of T annotated frames.

Coordinates are pixels in OpenCV's convention (the centre of pixel (i, j) is at x=j, y=i).
Keypoint visibility follows COCO: 0 = not labelled (x = y = 0), 1 = labelled but occluded,
2 = labelled and visible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class Frame:
    """One frame and its people.

    Attributes:
        image: [H, W, 3] uint8 BGR, or ``None`` before it is loaded.
        keypoints: [n, K, 3] float32 (x, y, visibility).
        boxes: [n, 4] float32 x1, y1, x2, y2 (the person's extent, clipped to the image).
        track_ids: [n] int64, persistent within a video.
        head_boxes: [n, 4] float32 x1, y1, x2, y2; NaN where unknown (used for PCKh).
        ignore_regions: polygons [P, 2] (x, y) of image areas whose people are not labelled.
        labelled: False for frames of a video that carry no annotation at all.
    """

    image: np.ndarray | None
    keypoints: np.ndarray
    boxes: np.ndarray
    track_ids: np.ndarray
    head_boxes: np.ndarray
    ignore_regions: list[np.ndarray] = field(default_factory=list)
    labelled: bool = True

    @property
    def num_people(self) -> int:
        return len(self.track_ids)

    def ignore_mask(self, height: int, width: int) -> np.ndarray:
        """[height, width] bool: True inside any ignore region."""
        mask = np.zeros((height, width), dtype=np.uint8)
        for poly in self.ignore_regions:
            if len(poly) >= 3:
                cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
        return mask.astype(bool)

    def select(self, keep: np.ndarray) -> Frame:
        """A copy holding only the people where ``keep`` ([n] bool) is True."""
        return Frame(
            image=self.image,
            keypoints=self.keypoints[keep],
            boxes=self.boxes[keep],
            track_ids=self.track_ids[keep],
            head_boxes=self.head_boxes[keep],
            ignore_regions=list(self.ignore_regions),
            labelled=self.labelled,
        )


@dataclass
class Clip:
    """T consecutive (or strided) frames of one video.

    Attributes:
        frames: the T frames, in time order.
        layout: name of the keypoint layout of the K slots.
        name: the video's name.
        frame_indices: [T] index of each frame in its video.
        fps: frames per second of the source video.
    """

    frames: list[Frame]
    layout: str = "coco17"
    name: str = ""
    frame_indices: list[int] = field(default_factory=list)
    fps: float = 25.0

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames' images."""
        h, w = self.frames[0].image.shape[:2]
        return w, h

    @property
    def track_ids(self) -> np.ndarray:
        """Sorted unique track IDs over the whole clip."""
        ids = [f.track_ids for f in self.frames]
        return np.unique(np.concatenate(ids)) if ids else np.zeros(0, np.int64)
