"""Deterministic synthetic multi-person pose-tracking clips (torch-free).

``generate_clip(cfg, split, seed, index, num_frames)`` always returns the same clip for the
same arguments. :class:`SyntheticVideos` is the on-the-fly iterator used for training.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from pavenet.clip import Clip, Frame
from pavenet.synth.body import HEAD, Bodies, body_joints, sample_bodies
from pavenet.synth.config import SynthConfig, clip_rng
from pavenet.synth.motion import Camera, Trajectories, camera_path, sample_camera, simulate_people
from pavenet.synth.render import (
    PersonView,
    draw_person,
    head_box,
    keypoint_visibility,
    person_box,
    torso_points,
)
from pavenet.synth.scene import (
    Effects,
    Occluder,
    canvas_offset,
    make_background,
    sample_effects,
    sample_occluders,
)


@dataclass
class _Scene:
    """Everything sampled for one clip before rendering."""

    cfg: SynthConfig
    cam: Camera
    bodies: Bodies
    traj: Trajectories
    warmup: int
    cameras: np.ndarray  # [T, 2, 3]
    background: np.ndarray
    occluders: list[Occluder]
    effects: Effects


def _sample_scene(cfg: SynthConfig, rng: np.random.Generator, num_frames: int) -> _Scene:
    cam = sample_camera(rng, cfg)
    people = int(rng.integers(cfg.min_people, cfg.max_people + 1))
    bodies = sample_bodies(rng, people, lookalike=rng.random() < cfg.lookalike_prob)
    warmup = int(rng.integers(0, cfg.warmup_frames + 1))
    traj = simulate_people(rng, cfg, cam, people, warmup + num_frames)
    return _Scene(
        cfg=cfg, cam=cam, bodies=bodies, traj=traj, warmup=warmup,
        cameras=camera_path(rng, cfg, num_frames),
        background=make_background(rng, cfg, cam),
        occluders=sample_occluders(rng, cfg),
        effects=sample_effects(rng, cfg, num_frames),
    )


def _person_views(scene: _Scene, step: int, affine: np.ndarray) -> list[PersonView]:
    """Project every person at simulation step ``step`` into the frame."""
    tr, bodies = scene.traj, scene.bodies
    if len(bodies) == 0:
        return []
    joints = body_joints(bodies, tr.phase[step], tr.speed[step], tr.gesture[step], tr.gesture_phase[step])
    hair = joints[:, HEAD:HEAD + 1] + np.stack([-0.02 * bodies.height, 0 * bodies.height,
                                               0.015 * bodies.height], -1)[:, None]
    local = np.concatenate([joints, torso_points(joints, bodies.height), hair], 1)  # [P, 34, (F, L, Y)]
    yaw, x, z = tr.yaw[step][:, None], tr.x[step][:, None], tr.z[step][:, None]
    world = np.stack([
        x + local[..., 0] * np.cos(yaw) - local[..., 1] * np.sin(yaw),
        local[..., 2],
        z + local[..., 0] * np.sin(yaw) + local[..., 1] * np.cos(yaw),
    ], -1)
    pix, depth = scene.cam.project(world)
    pix = pix @ affine[:, :2].T + affine[:, 2]
    zoom = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
    to_cam = -np.stack([tr.x[step], tr.z[step]], -1)
    to_cam /= np.maximum(np.linalg.norm(to_cam, axis=-1, keepdims=True), 1e-6)
    yaw1 = tr.yaw[step]
    facing = np.cos(yaw1) * to_cam[:, 0] + np.sin(yaw1) * to_cam[:, 1]
    left = -np.sin(yaw1) * to_cam[:, 0] + np.cos(yaw1) * to_cam[:, 1]
    return [
        PersonView(joints=pix[i, :25], depth=depth[i, :25], torso=pix[i, 25:33], hair=pix[i, 33],
                   px_per_m=scene.cam.focal * zoom / float(tr.z[step, i]),
                   facing=float(facing[i]), left_to_camera=float(left[i]))
        for i in range(len(bodies))
    ]


def _render_frame(scene: _Scene, t: int) -> tuple[Frame, np.ndarray]:
    """Frame ``t`` of the clip and its [H, W] int32 part-label map."""
    cfg = scene.cfg
    w, h = cfg.width, cfg.height
    affine = scene.cameras[t]
    to_canvas = affine.copy()
    to_canvas[:, 2] -= affine[:, :2] @ canvas_offset(cfg)
    img = cv2.warpAffine(scene.background, to_canvas, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)
    label = np.zeros((h, w), np.int32)
    frac = t / max(len(scene.cameras) - 1, 1)
    for occ in scene.occluders:
        if not occ.in_front:
            occ.draw(img, None, frac, affine)
    views = _person_views(scene, scene.warmup + t, affine)
    boxes = {i: person_box(v, float(scene.bodies.height[i]), w, h) for i, v in enumerate(views)}
    on_screen = [i for i, b in boxes.items() if b[2] > b[0] and b[3] > b[1]]
    for i in sorted(on_screen, key=lambda i: -scene.traj.z[scene.warmup + t, i]):
        draw_person(img, label, i, views[i], scene.bodies)
    for occ in scene.occluders:
        if occ.in_front:
            occ.draw(img, label, frac, affine)
    img = scene.effects.apply(img, t)

    kpts, bxs, ids, heads, ignore = [], [], [], [], []
    for i in sorted(on_screen):
        vis = keypoint_visibility(label, i, views[i])
        if not vis.any():
            continue
        tall = float(scene.bodies.height[i]) * views[i].px_per_m
        if tall < cfg.min_labelled_height * h or (vis == 2).sum() < cfg.min_labelled_visible:
            x1, y1, x2, y2 = boxes[i]
            ignore.append(np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32))
            continue
        xy = np.where(vis[:, None] > 0, views[i].joints[:17], 0)
        kpts.append(np.concatenate([xy, vis[:, None]], 1))
        bxs.append(boxes[i])
        ids.append(i)
        heads.append(head_box(views[i], float(scene.bodies.height[i])))
    frame = Frame(
        image=img,
        keypoints=np.array(kpts, np.float32).reshape(-1, 17, 3),
        boxes=np.array(bxs, np.float32).reshape(-1, 4),
        track_ids=np.array(ids, np.int64),
        head_boxes=np.array(heads, np.float32).reshape(-1, 4),
        ignore_regions=ignore,
    )
    return frame, label


def generate_clip(
    cfg: SynthConfig, split: str, seed: int, index: int, num_frames: int, with_labels: bool = False
) -> Clip | tuple[Clip, list[np.ndarray]]:
    """Clip ``index`` of ``split`` under ``seed``: ``num_frames`` annotated frames.

    With ``with_labels`` also returns each frame's [H, W] int32 part-label map
    (``(track_id + 1) * 16 + part``, -1 for occluders, 0 for background), used by the tests.
    """
    rng = clip_rng(split, seed, index)
    scene = _sample_scene(cfg, rng, num_frames)
    rendered = [_render_frame(scene, t) for t in range(num_frames)]
    clip = Clip(
        frames=[f for f, _ in rendered],
        layout="coco17",
        name=f"synth-{split}-s{seed}-{index:06d}",
        frame_indices=list(range(num_frames)),
        fps=cfg.fps,
    )
    return (clip, [lab for _, lab in rendered]) if with_labels else clip


class SyntheticVideos:
    """Indexable, iterable collection of synthetic clips (numpy frames + annotations).

    ``SyntheticVideos(cfg, "train", seed=0, num_frames=2)`` yields clip 0, 1, 2, ... of the
    train split; ``length=None`` iterates forever (for training), otherwise ``length`` clips.
    """

    def __init__(self, cfg: SynthConfig | None = None, split: str = "train", seed: int = 0,
                 num_frames: int = 2, length: int | None = None, start: int = 0):
        self.cfg = cfg or SynthConfig()
        self.split, self.seed, self.num_frames = split, seed, num_frames
        self.length, self.start = length, start
        clip_rng(split, seed, 0)  # validates split and seed now, not at the first clip

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("an endless SyntheticVideos has no length")
        return self.length

    def __getitem__(self, index: int) -> Clip:
        if self.length is not None and not 0 <= index < self.length:
            raise IndexError(index)
        return generate_clip(self.cfg, self.split, self.seed, self.start + index, self.num_frames)

    def __iter__(self) -> Iterator[Clip]:
        index = 0
        while self.length is None or index < self.length:
            yield self[index]
            index += 1
