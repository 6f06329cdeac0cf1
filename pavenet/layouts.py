"""Keypoint layouts: names, skeleton, left/right flip pairs, OKS sigmas and drawing colours.

A layout travels inside every checkpoint and ONNX file (as JSON), so a model always knows what
its K output slots mean. Two layouts ship:

- ``coco17``: the 17 COCO keypoints in COCO order (the default).
- ``posetrack17``: PoseTrack18/21 files use the same 17 slots, with ``head_bottom`` in slot 1 and
  ``head_top`` in slot 2 instead of the eyes, and the ears (slots 3, 4) never labelled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from pavenet.errors import PavenetError

Color = tuple[int, int, int]


@dataclass(frozen=True)
class KeypointLayout:
    """Description of K keypoint slots.

    Attributes:
        name: short identifier, e.g. ``"coco17"``.
        keypoints: K slot names.
        skeleton: edges (i, j) between slots, drawn as limbs.
        flip_pairs: (left, right) slot pairs swapped by a horizontal flip.
        sigmas: K per-keypoint OKS constants (COCO's sigma, not 2*sigma).
        colors: K BGR colours used when drawing keypoints.
        unlabelled: slots the datasets of this layout never annotate.
    """

    name: str
    keypoints: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    colors: tuple[Color, ...]
    unlabelled: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.validate()

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def flip_index(self) -> np.ndarray:
        """[K] int: slot k of a flipped pose takes the value of slot ``flip_index[k]``."""
        index = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            index[a], index[b] = b, a
        return index

    def validate(self) -> None:
        k = len(self.keypoints)
        problems = []
        if len(set(self.keypoints)) != k:
            problems.append("keypoint names are not unique")
        if len(self.sigmas) != k or any(s <= 0 for s in self.sigmas):
            problems.append(f"need {k} positive sigmas, got {len(self.sigmas)}")
        if len(self.colors) != k:
            problems.append(f"need {k} colours, got {len(self.colors)}")
        for i, j in self.skeleton:
            if not (0 <= i < k and 0 <= j < k) or i == j:
                problems.append(f"skeleton edge ({i}, {j}) is not a pair of distinct slots")
        used = [s for pair in self.flip_pairs for s in pair]
        if len(set(used)) != len(used) or any(not 0 <= s < k for s in used):
            problems.append("flip pairs must use each valid slot at most once")
        if any(not 0 <= s < k for s in self.unlabelled):
            problems.append("unlabelled slots out of range")
        if problems:
            raise PavenetError(f"keypoint layout {self.name!r} is invalid: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict) -> KeypointLayout:
        try:
            return cls(
                name=str(data["name"]),
                keypoints=tuple(str(n) for n in data["keypoints"]),
                skeleton=tuple((int(i), int(j)) for i, j in data["skeleton"]),
                flip_pairs=tuple((int(i), int(j)) for i, j in data["flip_pairs"]),
                sigmas=tuple(float(s) for s in data["sigmas"]),
                colors=tuple(tuple(int(c) for c in col) for col in data["colors"]),
                unlabelled=tuple(int(s) for s in data.get("unlabelled", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PavenetError(f"not a keypoint layout description: {exc!r}") from None

    @classmethod
    def from_json(cls, text: str) -> KeypointLayout:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PavenetError(f"keypoint layout JSON is malformed: {exc}") from None
        return cls.from_dict(data)


_LIMB_COLORS: tuple[Color, ...] = (
    (0, 215, 255), (255, 191, 0), (0, 128, 255), (255, 128, 0), (0, 64, 255),
    (255, 64, 0), (0, 255, 128), (128, 255, 0), (0, 255, 64), (64, 255, 0),
    (0, 255, 0), (255, 0, 128), (128, 0, 255), (255, 0, 64), (64, 0, 255),
    (255, 0, 255), (255, 0, 200),
)

_COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
_BODY_SKELETON = (
    (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12),
    (11, 13), (13, 15), (12, 14), (14, 16),
)
_BODY_FLIPS = ((5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
_COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)

COCO17 = KeypointLayout(
    name="coco17",
    keypoints=_COCO_NAMES,
    skeleton=((0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6), *_BODY_SKELETON),
    flip_pairs=((1, 2), (3, 4), *_BODY_FLIPS),
    sigmas=_COCO_SIGMAS,
    colors=_LIMB_COLORS,
)

# head_bottom sits at the neck and head_top above the forehead; no OKS sigma is published for
# them, so they take the ear/shoulder-scale constant used by PoseTrack OKS re-implementations.
POSETRACK17 = KeypointLayout(
    name="posetrack17",
    keypoints=("nose", "head_bottom", "head_top", *_COCO_NAMES[3:]),
    skeleton=((0, 1), (1, 2), (1, 5), (1, 6), *_BODY_SKELETON),
    flip_pairs=((3, 4), *_BODY_FLIPS),
    sigmas=(0.026, 0.035, 0.035, *_COCO_SIGMAS[3:]),
    colors=_LIMB_COLORS,
    unlabelled=(3, 4),
)

LAYOUTS: dict[str, KeypointLayout] = {COCO17.name: COCO17, POSETRACK17.name: POSETRACK17}
DEFAULT_LAYOUT = COCO17.name


def get_layout(name: str | KeypointLayout) -> KeypointLayout:
    """Return the layout called ``name`` (``coco17`` or ``posetrack17``)."""
    if isinstance(name, KeypointLayout):
        return name
    try:
        return LAYOUTS[name]
    except KeyError:
        raise PavenetError(
            f"unknown keypoint layout {name!r}; known layouts: {', '.join(sorted(LAYOUTS))}"
        ) from None


def layout_from_names(names: list[str] | tuple[str, ...]) -> KeypointLayout | None:
    """The known layout whose slot names are exactly ``names``, or ``None``."""
    for layout in LAYOUTS.values():
        if tuple(names) == layout.keypoints:
            return layout
    return None
