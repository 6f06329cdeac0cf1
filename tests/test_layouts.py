import json

import numpy as np
import pytest

from pavenet.errors import PavenetError
from pavenet.layouts import COCO17, LAYOUTS, POSETRACK17, KeypointLayout, get_layout, layout_from_names


@pytest.mark.parametrize("layout", list(LAYOUTS.values()), ids=list(LAYOUTS))
def test_layout_is_consistent(layout: KeypointLayout):
    k = layout.num_keypoints
    assert k == 17
    flip = layout.flip_index
    assert np.array_equal(flip[flip], np.arange(k)), "flipping twice must be the identity"
    for a, b in layout.flip_pairs:
        assert layout.keypoints[a].replace("left", "right") == layout.keypoints[b]
    assert all(0 <= i < k and 0 <= j < k for i, j in layout.skeleton)
    assert len(layout.sigmas) == len(layout.colors) == k


@pytest.mark.parametrize("layout", list(LAYOUTS.values()), ids=list(LAYOUTS))
def test_json_round_trip(layout):
    text = layout.to_json()
    json.loads(text)  # plain JSON, as stored in checkpoints and ONNX metadata
    assert KeypointLayout.from_json(text) == layout


def test_posetrack_slots():
    assert POSETRACK17.keypoints[1:3] == ("head_bottom", "head_top")
    assert POSETRACK17.unlabelled == (3, 4)
    assert POSETRACK17.keypoints[5:] == COCO17.keypoints[5:]
    assert layout_from_names(list(POSETRACK17.keypoints)) is POSETRACK17


def test_bad_layouts_are_reported():
    with pytest.raises(PavenetError, match="unknown keypoint layout 'mpii'"):
        get_layout("mpii")
    with pytest.raises(PavenetError, match="skeleton edge"):
        KeypointLayout("bad", ("a", "b"), ((0, 5),), (), (0.1, 0.1), ((0, 0, 0),) * 2)
    with pytest.raises(PavenetError, match="malformed"):
        KeypointLayout.from_json("{not json")
    with pytest.raises(PavenetError, match="not a keypoint layout"):
        KeypointLayout.from_json('{"name": "x"}')
