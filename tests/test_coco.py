import json

import cv2
import numpy as np
import pytest

from pavenet.errors import DataError
from training.data.coco import CocoKeypoints


def _coco(tmp_path, anns):
    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "a.jpg"), np.full((80, 100, 3), 90, np.uint8))
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}], "annotations": anns,
           "categories": [{"id": 1, "name": "person"}]}
    path = tmp_path / "person_keypoints_val.json"
    path.write_text(json.dumps(doc))
    return path


def _ann(i, x):
    kp = [0.0] * 51
    kp[15:18] = [x, 30.0, 2]  # left shoulder
    kp[30:33] = [x + 5, 60.0, 1]  # right wrist
    return {"id": i, "image_id": 1, "keypoints": kp, "num_keypoints": 2, "bbox": [x - 5, 20, 20, 50],
            "iscrowd": 0}


def test_pseudo_clip_from_coco(tmp_path):
    crowd = {"id": 9, "image_id": 1, "keypoints": [0] * 51, "num_keypoints": 0, "bbox": [0, 0, 10, 10],
             "iscrowd": 1}
    data = CocoKeypoints(_coco(tmp_path, [_ann(1, 30), _ann(2, 60), crowd]), tmp_path / "img")
    assert len(data) == 1
    frame = data.frame(0)
    assert frame.track_ids.tolist() == [0, 1] and len(frame.ignore_regions) == 1
    clip = data.pseudo_clip(0, 4, np.random.default_rng(0), max_shift=0.02)
    assert [f.track_ids.tolist() for f in clip.frames] == [[0, 1]] * 4
    # Person 0 stays left of person 1 in every frame: identities are not swapped.
    for f in clip.frames:
        assert f.keypoints[0, 5, 0] < f.keypoints[1, 5, 0]


def test_coco_errors(tmp_path):
    bad = _ann(1, 30)
    bad["keypoints"] = bad["keypoints"][:48]
    with pytest.raises(DataError, match="annotation 1: 'keypoints' has 48 values, expected 51"):
        CocoKeypoints(_coco(tmp_path, [bad]), tmp_path / "img")
    with pytest.raises(DataError, match="no such image folder"):
        CocoKeypoints(tmp_path / "x.json", tmp_path / "nope")
