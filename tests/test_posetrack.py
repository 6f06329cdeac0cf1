import json

import numpy as np
import pytest

from pavenet.errors import DataError
from training.data.posetrack import read_posetrack, read_posetrack_dir, write_posetrack21


def _annotations_equal(a, b):
    assert len(a) == len(b) and a.layout == b.layout
    for fa, fb in zip(a.frames, b.frames):
        for name in ("keypoints", "boxes", "track_ids"):
            assert np.array_equal(getattr(fa, name), getattr(fb, name)), name
        assert np.array_equal(fa.head_boxes, fb.head_boxes, equal_nan=True)
        assert fa.labelled == fb.labelled


def test_png_round_trip_is_exact(tmp_path, small_clip):
    path = write_posetrack21(small_clip, tmp_path, "val", video_id=1, image_format="png")
    assert path == tmp_path / "posetrack_data" / "val" / f"{small_clip.name}.json"
    back = read_posetrack(path).clip()
    _annotations_equal(small_clip, back)
    for fa, fb in zip(small_clip.frames, back.frames):
        assert np.array_equal(fa.image, fb.image)
    assert back.name == small_clip.name and back.fps == small_clip.fps


def test_mp4_round_trip(tmp_path, small_clip):
    path = write_posetrack21(small_clip, tmp_path, "val", video_id=1, image_format="mp4")
    seq = read_posetrack(path)
    back = seq.clip([0, 5, 11])
    _annotations_equal(small_clip, seq.clip())
    for t, f in zip([0, 5, 11], back.frames):
        err = np.abs(f.image.astype(int) - small_clip.frames[t].image.astype(int)).mean()
        assert err < 12, "lossy video, but the same frame"
    assert back.frame_indices == [0, 5, 11]


def test_json_follows_posetrack21(tmp_path, small_clip):
    data = json.loads(write_posetrack21(small_clip, tmp_path, "val", 3, "jpg").read_text())
    image, ann = data["images"][0], data["annotations"][0]
    assert {"file_name", "id", "frame_id", "vid_id", "nframes", "is_labeled", "ignore_regions_x"} <= set(image)
    assert {"bbox", "bbox_head", "keypoints", "track_id", "image_id", "person_id"} <= set(ann)
    assert len(ann["keypoints"]) == 51 and (tmp_path / image["file_name"]).exists()
    assert data["categories"][0]["keypoints"][0] == "nose"


def _posetrack18_file(tmp_path, anns, images=None):
    (tmp_path / "images" / "val" / "seq").mkdir(parents=True)
    import cv2

    for i in range(2):
        cv2.imwrite(str(tmp_path / "images" / "val" / "seq" / f"{i:06d}.jpg"), np.zeros((40, 60, 3), np.uint8))
    images = images or [{"id": 10 + i, "file_name": f"images/val/seq/{i:06d}.jpg", "frame_id": 10 + i,
                         "vid_id": "seq", "is_labeled": i == 0, "nframes": 2,
                         "ignore_regions_x": [[0, 10, 10]], "ignore_regions_y": [[0, 0, 10]]} for i in range(2)]
    names = ["nose", "head_bottom", "head_top", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
             "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
             "right_knee", "left_ankle", "right_ankle"]
    doc = {"images": images, "annotations": anns, "categories": [{"id": 1, "keypoints": names}]}
    path = tmp_path / "annotations" / "val" / "seq.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    return path


def test_reads_posetrack18(tmp_path):
    kp = [5.0, 6.0, 1.0] * 17
    path = _posetrack18_file(tmp_path, [{"id": 1, "image_id": 10, "track_id": 4, "keypoints": kp,
                                         "bbox_head": [1, 2, 3, 4]}])
    seq = read_posetrack(path)
    assert seq.layout == "posetrack17" and len(seq) == 2 and list(seq.labelled) == [True, False]
    f = seq.clip().frames[0]
    assert f.track_ids.tolist() == [4] and f.image.shape == (40, 60, 3)
    assert np.allclose(f.head_boxes[0], [1, 2, 4, 6]) and np.isnan(f.boxes[0]).all()
    assert f.ignore_mask(40, 60)[2, 5] and not f.ignore_mask(40, 60)[30, 50]
    assert len(read_posetrack_dir(path.parent)) == 1


@pytest.mark.parametrize("anns, message", [
    ([{"id": 1, "image_id": 99, "track_id": 0, "keypoints": [0] * 51}], "unknown image 99"),
    ([{"id": 1, "image_id": 10, "track_id": 0, "keypoints": [0] * 50}], "has 50 values, expected 51"),
    ([{"id": 1, "image_id": 10, "keypoints": [0] * 51}], "has no 'track_id'"),
])
def test_bad_annotations_name_file_and_problem(tmp_path, anns, message):
    path = _posetrack18_file(tmp_path, anns)
    with pytest.raises(DataError, match=message) as info:
        read_posetrack(path)
    assert str(path) in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(DataError, match="no such annotation file"):
        read_posetrack(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(DataError, match=r"bad.json: malformed JSON \(line 1"):
        read_posetrack(bad)
    bad.write_text('{"images": []}')
    with pytest.raises(DataError, match="missing the 'annotations' list"):
        read_posetrack(bad)
    with pytest.raises(DataError, match="unknown keypoint layout|no such annotation folder"):
        read_posetrack_dir(tmp_path / "nowhere")


def test_missing_image_is_reported(tmp_path):
    images = [{"id": 1, "file_name": "images/val/seq/000000.jpg"},
              {"id": 2, "file_name": "images/val/seq/000099.jpg"}]
    path = _posetrack18_file(tmp_path, [], images=images)
    with pytest.raises(DataError, match="000099.jpg' .* does not exist"):
        read_posetrack(path)


def test_mp4_clips_decode_only_their_span_and_equal_a_full_decode(tmp_path):
    """Training clips seek into the video; every frame equals the one a full decode gives,
    for clips anywhere in the video (past its first key frames), for frame-by-frame reading,
    and past the end."""
    from pavenet.synth import generate_clip
    from pavenet.video import read_video, read_video_range
    from tests.conftest import SMALL

    clip = generate_clip(SMALL, "val", 0, 2, 40)
    path = write_posetrack21(clip, tmp_path, "val", video_id=1, image_format="mp4")
    seq = read_posetrack(path)
    video = seq.sources[0][0]
    full = read_video(video)
    assert len(full) == len(clip)
    for start in (0, 3, 17, 29, len(full) - 2):
        span = read_video_range(video, start, 4)
        assert len(span) == min(4, len(full) - start)
        for i, frame in enumerate(span):
            assert np.array_equal(frame, full[start + i])
    assert read_video_range(video, len(full) + 5, 3) == []
    for indices in ([27, 28, 29], [2, 4, 6], [33, 14]):
        for t, f in zip(indices, seq.clip(indices).frames):
            assert np.array_equal(f.image, full[t])
        assert len(seq._video_cache[video]) == max(indices) - min(indices) + 1  # the span, not the video
    for t in range(len(full)):  # frame by frame, as evaluation reads it
        assert np.array_equal(seq.load_image(t), full[t])
    seq.sources[0] = (video, len(full) + 1)
    with pytest.raises(DataError, match="ends before"):
        seq.load_image(0)
