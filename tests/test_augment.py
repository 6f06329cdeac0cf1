import cv2
import numpy as np
import pytest

from pavenet.clip import Clip, Frame
from pavenet.geometry import similarity_matrix
from pavenet.layouts import COCO17
from training.data.augment import AugmentConfig, ColorJitter, augment_clip, transform_clip
from training.data.coco import pseudo_clip


def _dot_frame(points: np.ndarray, size=(200, 150)) -> Frame:
    """A black image with one bright dot per keypoint of one person."""
    w, h = size
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, :2], kp[0, :, 2] = points, 2
    return Frame(image=np.zeros((h, w, 3), np.uint8), keypoints=kp,
                 boxes=np.array([[*points.min(0), *points.max(0)]], np.float32),
                 track_ids=np.array([7]), head_boxes=np.full((1, 4), np.nan, np.float32))


def _draw_dot(frame: Frame, k: int) -> Frame:
    image = np.zeros_like(frame.image)
    x, y = frame.keypoints[0, k, :2]
    cv2.circle(image, (int(round(x * 16)), int(round(y * 16))), 3 * 16, (255, 255, 255), -1, cv2.LINE_AA, 4)
    return Frame(image, frame.keypoints, frame.boxes, frame.track_ids, frame.head_boxes)


def _centroid(image: np.ndarray) -> np.ndarray:
    g = image[..., 0].astype(np.float64)
    g = np.where(g > 150, g - 150, 0)  # the dot only, not the grey border the warp fills in
    ys, xs = np.mgrid[: g.shape[0], : g.shape[1]]
    return np.array([(g * xs).sum(), (g * ys).sum()]) / g.sum()


@pytest.mark.parametrize("flip", [False, True])
def test_keypoints_move_with_the_pixels(flip):
    rng = np.random.default_rng(0)
    pts = rng.uniform([60, 45], [140, 105], (17, 2))
    matrix = similarity_matrix((100, 75), 1.2, 17.0, (6.0, -4.0))
    for k in (0, 9, 16):  # nose, left wrist, right ankle
        clip = Clip([_draw_dot(_dot_frame(pts), k)])
        out = transform_clip(clip, matrix, (180, 160), flip=flip).frames[0]
        # A flip moves the left wrist's dot into the right wrist's slot.
        slot = COCO17.flip_index[k] if flip else k
        assert np.allclose(_centroid(out.image), out.keypoints[0, slot, :2], atol=0.15)


def test_flip_twice_is_identity(small_clip):
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    size = small_clip.size
    twice = transform_clip(transform_clip(small_clip, identity, size, flip=True), identity, size, flip=True)
    for a, b in zip(small_clip.frames, twice.frames):
        assert np.array_equal(a.image, b.image)
        assert np.allclose(a.keypoints, b.keypoints, atol=1e-4)
        assert np.array_equal(a.track_ids, b.track_ids)


def test_one_augmentation_for_the_whole_clip(small_clip):
    frame = small_clip.frames[0]
    clip = Clip([frame, frame, frame], name="x", frame_indices=[0, 1, 2])
    out = augment_clip(clip, AugmentConfig(width=128, height=96), np.random.default_rng(3))
    assert out.size == (128, 96)
    for f in out.frames[1:]:
        assert np.array_equal(f.image, out.frames[0].image)
        assert np.array_equal(f.keypoints, out.frames[0].keypoints)


def test_keypoints_leaving_the_frame_become_unlabelled():
    pts = np.tile([[20.0, 20.0]], (17, 1))
    pts[3] = [190.0, 140.0]
    shift = np.array([[1.0, 0, 50], [0, 1.0, 0]])
    out = transform_clip(Clip([_dot_frame(pts)]), shift, (200, 150)).frames[0]
    assert out.keypoints[0, 3].tolist() == [0, 0, 0] and out.keypoints[0, 0, 2] == 2


def test_coco_pseudo_clip_keeps_identities(small_clip):
    frame = small_clip.frames[0]
    clip = pseudo_clip(frame, 5, np.random.default_rng(1))
    assert len(clip) == 5
    assert np.array_equal(clip.frames[0].keypoints, frame.keypoints), "starts from the still image"
    for f in clip.frames:
        assert set(f.track_ids) <= set(frame.track_ids)
    last, first = clip.frames[-1], clip.frames[0]
    common = np.intersect1d(last.track_ids, first.track_ids)
    assert len(common) >= 1


def test_color_jitter_tables_give_the_pixels_of_float_arithmetic():
    """The lookup-table jitter equals hue / saturation / contrast / brightness done in floats."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for _ in range(20):
        b, c, s = 1 + rng.uniform(-0.3, 0.3, 3)
        jitter = ColorJitter(brightness=b, contrast=c, saturation=s, hue=rng.uniform(-5, 5))
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + jitter.hue) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] * s, 0, 255)
        ref = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
        mean = ref.mean()
        ref = np.clip((ref.astype(np.float32) - mean) * c + mean * b, 0, 255).astype(np.uint8)
        out = jitter.apply(image)
        assert out.dtype == np.uint8 and out.shape == image.shape
        np.testing.assert_array_equal(out, ref)
    assert jitter.apply(image) is not image and (jitter.apply(image) != image).any()
    np.testing.assert_array_equal(ColorJitter().apply(image), image)
